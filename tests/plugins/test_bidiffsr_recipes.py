"""The bidiffsr recipes on diffusion UNets: the paper's cost figures, exact structure, timestep groups, generality."""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from binarize import binarize, load_recipe
from binarize.cost import measure_cost
from binarize.nn import BinaryConv2d
from binarize.plugins.bidiffsr import CPDown, CPUp, CSFusion
from binarize.zoo import ZOO
from binarize.zoo.bidiffsr_unet import BiDiffSRUNet
from unets import FunctionalStyleUNet
from zoo_unet_checks import assert_release_precision

PAPER_PARAMS_M = {  # BI-DiffSR, Table 1 (x2): parameters in millions
    "bidiffsr": 4.58,
    "bidiffsr-no-shortcut": 4.29,
    "bidiffsr-identity": 4.29,
    "bidiffsr-cp": 4.29,
    "bidiffsr-cs": 4.30,
    "bidiffsr-tar": 4.37,
    "bidiffsr-taa": 4.51,
    "bidiffsr-k1": 4.30,
    "bidiffsr-k2": 4.37,
    "bidiffsr-release": 4.58,
}


def unet_inputs(batch: int, size: int, t: list[int] | None = None, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    steps = torch.tensor(t) if t is not None else torch.randint(0, 2000, (batch,), generator=g)
    return torch.randn(batch, 3, size, size, generator=g), steps, torch.randn(batch, 3, size, size, generator=g)


@pytest.fixture(scope="module")
def paper_unet() -> nn.Module:
    torch.manual_seed(0)
    return ZOO.get("bidiffsr-unet").build().eval()


def test_summary_gives_the_papers_cost() -> None:
    """The issue's acceptance command: 4.58 M parameters, 36.67 G OPs (within 0.5%), 56 binary convolutions."""
    out = subprocess.run(
        [sys.executable, "-m", "binarize", "summary", "zoo:bidiffsr-unet", "--recipe", "bidiffsr", "--size", "256",
         "--json"],
        capture_output=True, text=True, check=True,
    )
    report = json.loads(out.stdout)
    assert report["params_m"] == pytest.approx(4.58, rel=0.005)
    assert report["ops_g"] == pytest.approx(36.67, rel=0.005)
    assert report["binary_layers"] == 56 == report["binary_weight_layers"]
    # the independent recount of the release network (reference section 7), exactly
    assert report["fp_params"] == 3_068_419 and report["binary_params"] == 48_211_968
    assert report["binary_macs"] == 98_650_030_080
    fp = report["fp_reference"]
    assert fp["binary_layers"] == 0 and fp["params_m"] == pytest.approx(50.947747)
    assert fp["ops_g"] > 3.5 * report["ops_g"]


@pytest.mark.parametrize("recipe", sorted(PAPER_PARAMS_M))
def test_ablation_recipes_give_the_papers_parameter_counts(recipe: str, paper_unet: nn.Module) -> None:
    inputs = unet_inputs(1, 16)
    binary = binarize(paper_unet, recipe, example_inputs=inputs)
    cost = measure_cost(binary, inputs)
    assert abs(cost.params_m - PAPER_PARAMS_M[recipe]) <= 0.01, (recipe, cost.params_m)
    assert load_recipe(recipe).name == recipe


def test_bidiffsr_structure_of_the_paper_unet(paper_unet: nn.Module) -> None:
    binary = binarize(paper_unet, "bidiffsr", example_inputs=unet_inputs(1, 16))
    report = binary.binarize_report
    kinds = sorted(r["new_type"] for r in report.graph_replaced)
    assert kinds == ["CPDown"] * 3 + ["CPUp"] * 3 + ["CSFusion"] * 12
    assert all(r["function_preserving"] for r in report.graph_replaced)
    layers = {n: m for n, m in binary.named_modules() if isinstance(m, BinaryConv2d)}
    assert len(layers) == 56
    for name, layer in layers.items():
        assert layer.shortcut and layer.bias is None and layer.is_binary, name
        assert layer.in_channels == layer.out_channels
        assert tuple(layer.shift.bias.shape) == (5, layer.in_channels)
        assert tuple(layer.activation.slope.shape) == (5, layer.out_channels)
    # full precision: stem, output, attention, the two highest-resolution decoder levels (CP-Up always binary)
    fp = {n for n, m in binary.named_modules() if type(m) is nn.Conv2d}
    assert {"stem", "out_conv", "middle.attention.qkv", "middle.attention.proj"} <= fp
    assert any(n.startswith("decoder.1.fusions.0.conv.branches") for n in fp)
    assert not any(n.startswith("decoder.1.upsample") for n in fp)
    assert report.timestep["route"] == "graph" and report.timestep["K"] == 5


def test_structure_only_equals_the_paper_unet(paper_unet: nn.Module) -> None:
    inputs = unet_inputs(2, 32)
    same = binarize(paper_unet, "bidiffsr", structure_only=True, verify=inputs)
    assert same.binarize_report.verify["expected_equal"] and same.binarize_report.verify["max_abs_diff"] < 1e-5
    with torch.no_grad():
        torch.testing.assert_close(same(*inputs), paper_unet(*inputs), rtol=1e-5, atol=1e-5)


@settings(max_examples=6)
@given(width=st.sampled_from([16, 32]), levels=st.integers(1, 3), blocks=st.integers(1, 2), seed=st.integers(0, 99),
       parity=st.sampled_from(["opposite", "same"]))
def test_structure_only_is_exact_for_random_configurations(
    width: int, levels: int, blocks: int, seed: int, parity: str
) -> None:
    torch.manual_seed(seed)
    unet = BiDiffSRUNet(width=width, channel_mults=tuple(2**i for i in range(levels)), encoder_blocks=blocks,
                        decoder_blocks=blocks + 1, norm_groups=8, dropout=0.0).eval()
    recipe = load_recipe("bidiffsr").to_dict()
    for rule in recipe["graph_rules"]:
        if rule["replace"] == "cs_fusion":
            rule["args"] = {"parity": parity}
    inputs = unet_inputs(2, 16, seed=seed)
    same = binarize(unet, recipe, structure_only=True)
    with torch.no_grad():
        torch.testing.assert_close(same(*inputs), unet(*inputs), rtol=1e-5, atol=1e-5)
    assert len(same.binarize_report.graph_replaced) == (levels - 1) * 2 + levels * (blocks + 1)


def _tiny_pair() -> tuple[nn.Module, nn.Module]:
    """The tiny UNet binarized with K = 5 and with K = 1 from the same full-precision weights."""
    torch.manual_seed(0)
    entry = ZOO.get("bidiffsr-unet-tiny")
    unet = entry.build().eval()
    five = binarize(unet, "bidiffsr", example_inputs=entry.inputs(16))
    one = binarize(unet, "bidiffsr-k1", example_inputs=entry.inputs(16))
    return five, one


@pytest.mark.parametrize("t", [0, 399, 400, 1234, 1999])
def test_one_shared_timestep_equals_the_single_group_network(t: int) -> None:
    five, one = _tiny_pair()
    group = t * 5 // 2000
    with torch.no_grad():  # randomise the groups, then copy group `group` into the K = 1 twin
        for (name, p5), (_, p1) in zip(five.named_parameters(), one.named_parameters()):
            if p5.shape != p1.shape:
                p5.normal_(0, 0.2)
                p1.copy_(p5[group : group + 1])
            else:
                p1.copy_(p5)
    inputs = unet_inputs(3, 16, [t, t, t])
    with torch.no_grad():
        assert torch.equal(five(*inputs), one(*inputs))


def test_mixed_timesteps_equal_per_sample_runs() -> None:
    five, _ = _tiny_pair()
    with torch.no_grad():
        for p in five.parameters():
            if p.dim() == 2 and p.shape[0] == 5:
                p.normal_(0, 0.2)
    x_t, t, cond = unet_inputs(4, 16, [5, 700, 1300, 1999])
    with torch.no_grad():
        batch = five(x_t, t, cond)
        for i in range(4):
            alone = five(x_t[i : i + 1], t[i : i + 1], cond[i : i + 1])
            torch.testing.assert_close(batch[i : i + 1], alone, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(batch[0], five(x_t[:1], t[3:4], cond[:1])[0])  # the group matters


def test_binarized_unet_round_trips_and_trains() -> None:
    five, _ = _tiny_pair()
    five.train()
    inputs = unet_inputs(2, 16)
    loss = (five(*inputs) - inputs[0]).abs().mean()
    loss.backward()
    assert all(p.grad is not None for p in five.parameters() if p.requires_grad)
    buffer = io.BytesIO()
    torch.save(five.state_dict(), buffer)
    twin = copy.deepcopy(five)
    buffer.seek(0)
    twin.load_state_dict(torch.load(buffer))
    five.eval(), twin.eval()
    with torch.no_grad():
        assert torch.equal(five(*inputs), twin(*inputs))


def test_release_recipe_maps_zero_to_zero() -> None:
    torch.manual_seed(0)
    entry = ZOO.get("bidiffsr-unet-tiny")
    release = binarize(entry.build().eval(), "bidiffsr-release", example_inputs=entry.inputs(16))
    layer = next(m for m in release.modules() if isinstance(m, BinaryConv2d))
    assert layer.input_binarizer.sign_of_zero == 0.0 and layer.weight_binarizer.sign_of_zero == 0.0
    fusion = next(m for m in release.modules() if isinstance(m, CSFusion))
    assert fusion.parity == "opposite"
    assert all(not m.scale_gradient for m in release.modules() if isinstance(m, BinaryConv2d))
    strict = binarize(entry.build().eval(), "bidiffsr", example_inputs=entry.inputs(16))
    assert all(m.scale_gradient for m in strict.modules() if isinstance(m, BinaryConv2d))


def _release_bi_conv(layer: BinaryConv2d, x: torch.Tensor, timestep_groups: torch.Tensor | None = None) -> torch.Tensor:
    """A BI-Conv as the authors' release computes it (reference section 1), written from its formulas with plain
    torch operations on the layer's own parameters: TaR, sign(0) = 0 with the ApproxSign gradient, the weight
    alpha * sign(W) whose gradient is that of clip(W, -1, 1) alone, TaA, the identity shortcut."""
    g = layer._groups(timestep_groups)
    col = (slice(None), slice(None), None, None)
    h = x + layer.shift.bias[g][col]
    smooth = torch.where(h < -1, -1.0, torch.where(h < 0, 2 * h + h * h, torch.where(h < 1, 2 * h - h * h, 1.0)))
    signs = smooth + (torch.sign(h) - smooth).detach()
    w = layer.weight
    alpha = w.detach().abs().mean(dim=(1, 2, 3), keepdim=True)
    clipped = w.clamp(-1.0, 1.0)
    weight = (alpha * torch.sign(w) - clipped).detach() + clipped
    y = torch.nn.functional.conv2d(signs, weight, layer.bias, layer.stride, layer.padding, layer.dilation,
                                   layer.groups)
    act = layer.activation
    y = y + act.shift_in[g][col]
    y = torch.where(y > 0, y, act.slope[g][col] * y) + act.shift_out[g][col]
    return y + x if layer.shortcut else y


def test_release_recipe_trains_as_the_release_does() -> None:
    """The bidiffsr-release UNet against the same UNet whose BI-Convs compute the release's formulas: equal outputs
    and equal gradients for every parameter, the latent binary weights included."""
    torch.manual_seed(0)
    entry = ZOO.get("bidiffsr-unet-tiny")
    inputs = tuple(t.double() if t.is_floating_point() else t for t in entry.inputs(16))
    ours = binarize(entry.build().double().eval(), "bidiffsr-release", example_inputs=inputs)
    with torch.no_grad():  # move the learnable parts off their initial values; weights beyond [-1, 1] too
        for module in ours.modules():
            if isinstance(module, BinaryConv2d):
                module.weight.mul_(torch.empty_like(module.weight).uniform_(0.5, 40.0))
                for param in (module.shift.bias, module.activation.shift_in, module.activation.shift_out):
                    param.normal_(0, 0.3)
    reference = copy.deepcopy(ours)
    layers = [m for m in reference.modules() if isinstance(m, BinaryConv2d)]
    assert layers and all(m.shortcut and m.bias is None for m in layers)
    for layer in layers:
        layer.forward = _release_bi_conv.__get__(layer)  # type: ignore[method-assign]
    assert any(m.weight.abs().max() > 1 for m in layers)
    out, ref = ours(*inputs), reference(*inputs)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    out.backward(upstream)
    ref.backward(upstream)
    ours_params, ref_params = dict(ours.named_parameters()), dict(reference.named_parameters())
    assert ours_params.keys() == ref_params.keys()
    for name, param in ours_params.items():
        torch.testing.assert_close(param.grad, ref_params[name].grad, rtol=1e-8, atol=1e-10, msg=name)


# ---------------------------------------------------------------------------------------------------------------
# Generality
# ---------------------------------------------------------------------------------------------------------------
def test_a_unet_written_differently_gets_the_same_blocks() -> None:
    torch.manual_seed(0)
    unet = FunctionalStyleUNet(width=16, levels=3, blocks=1).eval()
    inputs = unet_inputs(2, 16)
    same = binarize(unet, "bidiffsr", structure_only=True, verify=inputs)
    kinds = sorted(r["new_type"] for r in same.binarize_report.graph_replaced)
    assert kinds == ["CPDown"] * 2 + ["CPUp"] * 2 + ["CSFusion"] * 6
    assert same.binarize_report.verify["max_abs_diff"] < 1e-5
    binary = binarize(unet, "bidiffsr", example_inputs=inputs)
    blocks = [m for m in binary.modules() if isinstance(m, (CPDown, CPUp, CSFusion))]
    assert len(blocks) == 10  # the blocks stay whole modules in the binarized model
    assert_release_precision(binary, inputs)
    binary(*inputs).mean().backward()


def test_sr3_style_unet_gets_generalised_cp_blocks() -> None:
    torch.manual_seed(0)
    entry = ZOO.get("sr3-unet-tiny")
    unet = entry.build().eval()
    inputs = unet_inputs(2, 16)
    same = binarize(unet, "bidiffsr", structure_only=True, verify=inputs)
    replaced = {r["new_type"]: r for r in same.binarize_report.graph_replaced}
    assert set(replaced) == {"CPDown", "CPUp", "CSFusion"}
    # the skip concatenations of equal widths feed a residual block: CS-Fusion takes the 1x1 shortcut convolution
    # (directly on the concatenation) and the first 3x3 convolution (after GroupNorm -> SiLU), the cat stays
    fusions = [r for r in same.binarize_report.graph_replaced if r["new_type"] == "CSFusion"]
    assert {r["old_types"] for r in fusions} == {"cat -> Conv2d", "cat -> GroupNorm -> SiLU -> Conv2d"}
    assert same.binarize_report.verify["max_abs_diff"] < 1e-5
    down = next(m for m in same.modules() if isinstance(m, CPDown))
    up = next(m for m in same.modules() if isinstance(m, CPUp))
    assert len(down.branches) == 4 and len(up.branches) == 4  # C -> C at half / double resolution: ratio 4
    binary = binarize(unet, "bidiffsr", example_inputs=inputs)
    blocks = [m for m in binary.modules() if isinstance(m, (CPDown, CPUp))]
    assert len(blocks) == 2
    assert all(isinstance(b, BinaryConv2d) and b.shortcut for block in blocks for b in block.branches)
    binary(*inputs).mean().backward()


class OddDownsample(nn.Module):
    """A strided convolution whose channels cannot be split into equal channel-preserving branches."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.down = nn.Conv2d(6, 20, 3, stride=2, padding=1)  # unshuffled: 24 -> 20 channels
        self.head = nn.Conv2d(20, 3, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.head(self.down(self.stem(x)))


def test_a_pattern_that_cannot_be_dimension_consistent_is_reported() -> None:
    model = OddDownsample()
    binary = binarize(model, "bidiffsr", example_inputs=(torch.randn(1, 3, 8, 8), torch.tensor([3])))
    (skip,) = [s for s in binary.binarize_report.skipped if s["type"] == "Conv2d" and "cp_down" in s["reason"]]
    assert skip["name"] == "down"
    assert "24 -> 20" in skip["reason"] and "ratio 1.2" in skip["reason"]
    assert isinstance(binary.down, BinaryConv2d) and not binary.down.shortcut  # binarized as it is
