"""The ``bidiffsr`` recipe on diffusion UNets nobody here wrote: diffusers' UNet2DModel and UNets written in the
styles of guided-diffusion and SR3 (shape asserts, ``len()`` of shapes, shape unpacking kept).

Each gets CP-Down at every strided-convolution downsampler, CP-Up at every nearest-upsampling + convolution, and
CS-Fusion at every decoder skip concatenation, of equal or unequal widths (a 1x1 reduction, or the residual block's
first convolution after GroupNorm -> SiLU and its 1x1 shortcut), all exact with full-precision weights; average-pool
downsampling is reported as left alone; nothing is untraced and no match is dropped without a report entry. A
Restormer-style UNet adds convolution + pixel (un)shuffle resampling and ``F.interpolate(size=skip.shape[-2:])``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from torch import nn

from binarize import binarize
from binarize.data import SRPatches, embedded_photos, make_loader
from binarize.diffusion import PREDICTION_TARGETS, NoiseSchedule, draw_timesteps, training_loss
from binarize.nn import BinaryConv2d
from binarize.plugins.bidiffsr.blocks import CPDown, CPUp, CSFusion
from research_unets import GuidedStyleSuperRes, RestormerStyleUNet, SR3StyleUNet
from zoo_unet_checks import assert_release_precision


class DiffusersSR(nn.Module):
    """A diffusers UNet2DModel used for x2 super-resolution: ``forward(x_t, t, cond)``, cond concatenated."""

    def __init__(self, unet: UNet2DModel) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.unet(torch.cat([x_t, cond], dim=1), t, return_dict=False)[0]


def _diffusers_attention() -> nn.Module:
    return DiffusersSR(UNet2DModel(
        sample_size=16, in_channels=6, out_channels=3, block_out_channels=(16, 32, 32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8,
        attention_head_dim=8,
    ))


def _diffusers_resnet_resampling() -> nn.Module:
    return DiffusersSR(UNet2DModel(
        sample_size=16, in_channels=6, out_channels=3, block_out_channels=(16, 32, 32), layers_per_block=1,
        down_block_types=("ResnetDownsampleBlock2D",) * 3, up_block_types=("ResnetUpsampleBlock2D",) * 3,
        norm_num_groups=8,
    ))


class GuidedSR(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = GuidedStyleSuperRes()

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net(x_t, t, F.avg_pool2d(cond, 2))


class SR3SR(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = SR3StyleUNet()

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([cond, x_t], dim=1), t.float() / 2000)


class RestormerSR(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = RestormerStyleUNet()

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x_t, cond], dim=1), t)


#: name -> (builder, expected CP-Down, CP-Up, CS-Fusion, average-pool downsamplers reported)
UNETS: dict[str, tuple[Callable[[], nn.Module], int, int, int, int]] = {
    "diffusers-attention": (_diffusers_attention, 3, 3, 16, 0),
    "diffusers-resnet-resampling": (_diffusers_resnet_resampling, 0, 2, 12, 2),
    "guided-diffusion-style": (GuidedSR, 2, 2, 12, 0),
    "sr3-style": (SR3SR, 2, 2, 12, 0),
    "restormer-style": (RestormerSR, 2, 2, 2, 0),
}
RECIPE = {"name": "bidiffsr-real", "extends": "bidiffsr", "timestep": {"input": "t", "T": 2000, "K": 5}}


def _inputs(batch: int = 2, size: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.randn(batch, 3, size, size), torch.randint(0, 2000, (batch,)), torch.randn(batch, 3, size, size)


@pytest.mark.parametrize("name", list(UNETS))
def test_structure_is_rewritten_exactly_everywhere(name: str) -> None:
    build, downs, ups, fusions, pools = UNETS[name]
    torch.manual_seed(0)
    model = build().eval()
    inputs = _inputs()
    same = binarize(model, RECIPE, structure_only=True, example_inputs=inputs)
    report = same.binarize_report
    assert report.untraced == []
    kinds = Counter(r["new_type"].removeprefix("Sized") for r in report.graph_replaced)
    assert kinds == Counter({"CPDown": downs, "CPUp": ups, "CSFusion": fusions}) - Counter()
    assert [s["reason"].split(": ", 1)[1] for s in report.skipped].count(
        "average-pool downsampling mixes the four pixels it averages, so it has no exact CP-Down form; it stays as it is"
    ) == pools == len(report.skipped)
    for shape in ((2, 16), (3, 32)):  # the rewritten forward code also serves other batch and image sizes
        x = _inputs(*shape)
        with torch.no_grad():
            expected, got = model(*x), same(*x)
        assert float((got - expected).norm() / expected.norm()) <= 1e-5, shape


@pytest.mark.parametrize("name", ["diffusers-attention", "guided-diffusion-style"])
def test_the_full_recipe_binarizes_and_trains_with_per_sample_timesteps(name: str) -> None:
    torch.manual_seed(0)
    model = UNETS[name][0]()
    inputs = _inputs()
    binary = binarize(model, RECIPE, example_inputs=inputs)
    assert_release_precision(binary, inputs)
    x_t, _, cond = inputs
    t = torch.tensor([5, 1990])  # two timestep groups in one batch
    binary(x_t, t, cond).square().mean().backward()
    aware = [m for m in binary.modules() if isinstance(m, BinaryConv2d) and m.timestep_groups]
    assert aware and all(m.weight.grad is not None for m in aware)


@pytest.fixture(scope="module")
def photo_patches() -> list[dict[str, torch.Tensor]]:
    """50 batches of four aligned 16 x 16 x2 training patches cut from the embedded training photos."""
    photos = [image for _, image in embedded_photos("train", crop=96)]
    loader = make_loader(SRPatches(photos, scale=2, patch_size=16, length=200, seed=0), batch_size=4, seed=0)
    return list(loader)


@pytest.mark.parametrize("name", list(UNETS))
def test_the_binarized_unet_learns_on_the_embedded_photos(
    name: str, photo_patches: list[dict[str, torch.Tensor]]
) -> None:
    """50 Adam steps of the diffusion loss (per-sample timesteps) on real photographs: the loss falls."""
    torch.manual_seed(0)
    model = binarize(UNETS[name][0](), RECIPE, example_inputs=_inputs())
    schedule, target = NoiseSchedule.linear(), PREDICTION_TARGETS.get("epsilon")
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    losses = []
    for batch in photo_patches:
        t = draw_timesteps(4, schedule.steps, generator)
        noise = torch.randn(batch["hr"].shape, generator=generator)
        loss = training_loss(model, schedule, target, batch["hr"], batch["cond"], t, noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert all(math.isfinite(v) for v in losses)
    print(f"{name}: first 10 steps {first:.4f}, last 10 steps {last:.4f}")
    assert last < 0.8 * first, (first, last)


def test_a_match_that_is_lost_when_its_owner_is_traced_alone_is_reported() -> None:
    """The block's first call takes the other branch, so tracing it on its own (as first called) finds no match."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x: torch.Tensor, up: bool) -> torch.Tensor:
            if up:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            return self.conv(x)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = Block()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.block(self.block(x, False), True)

    net = Net().eval()
    recipe = {"name": "cp-up", "graph_rules": [{"pattern": [{"interpolate": {"scale_factor": 2}}, "Conv2d"],
                                                "replace": "cp_up"}]}
    out = binarize(net, recipe, structure_only=True, example_inputs=(torch.randn(1, 4, 4, 4),))
    report = out.binarize_report
    assert report.graph_replaced == []
    (lost,) = report.skipped
    assert lost["name"] == "block.conv" and lost["type"] == "interpolate -> Conv2d"
    assert "found in the model's trace, but not when block was traced on its own" in lost["reason"]


def test_nearest_upsampling_to_a_size_is_rewritten_only_where_the_size_doubles() -> None:
    class Net(nn.Module):
        def __init__(self, size: tuple[int, int] | None) -> None:
            super().__init__()
            self.size = size
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
            return self.conv(F.interpolate(x, size=self.size or skip.shape[-2:], mode="nearest")) + skip

    recipe = {"name": "up", "graph_rules": [{"pattern": [{"interpolate": {"mode": "nearest"}}, "Conv2d"],
                                             "replace": "cp_up"}]}
    x, skip = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 8, 8)
    net = Net(None).eval()
    computed = binarize(net, recipe, structure_only=True, example_inputs=(x, skip))
    fixed = binarize(Net((8, 8)).eval(), recipe, structure_only=True, example_inputs=(x, skip))
    assert [r["new_type"] for r in computed.binarize_report.graph_replaced] == ["SizedCPUp"]
    assert [r["new_type"] for r in fixed.binarize_report.graph_replaced] == ["SizedCPUp"]
    with torch.no_grad():
        big_x, big_skip = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 12, 12)
        torch.testing.assert_close(computed(big_x, big_skip), net(big_x, big_skip))
    # a skip that is not twice the input's size: a clear error, never a silently different result
    with pytest.raises(ValueError, match=r"called with size \(9, 9\) for a 4 x 4 input \(expected \(8, 8\)\)"):
        computed(x, torch.randn(1, 4, 9, 9))
    with pytest.raises(ValueError, match=r"size \(8, 8\) for a 5 x 5 input"):
        fixed(torch.randn(1, 4, 5, 5), torch.randn(1, 4, 8, 8))
    # an upsampling by another factor is reported, not rewritten
    other = binarize(Net((12, 12)).eval(), recipe, structure_only=True, example_inputs=(x, torch.randn(1, 4, 12, 12)))
    (skipped,) = other.binarize_report.skipped
    assert other.binarize_report.graph_replaced == []
    assert "resizes 4 x 4 to 12 x 12, not by 2, so it has no exact CP-Up form" in skipped["reason"]
