"""Automatic tiling: the memory model fitted on two probes predicts larger inputs, and the chosen tile fits."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from binarize.bench.memory import peak_memory
from binarize.diffusion import PREDICTION_TARGETS, DDIMSampler, NoiseSchedule
from binarize.diffusion.sampler import TiledDenoiser
from binarize.diffusion.tiles import IMAGE_BUFFERS, MIN_TILE, TilingError, plan_tiles, tile_count


class ConvDenoiser(nn.Module):
    """Memory linear in the pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(6, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1))

    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return self.body(torch.cat([x, cond], dim=1))


class AttentionDenoiser(ConvDenoiser):
    """Self-attention over every position of a 4x downsampled map (as in a UNet): memory quadratic in the pixels."""

    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        features = nn.functional.avg_pool2d(self.body[0](torch.cat([x, cond], dim=1)), 4)
        tokens = features.flatten(2)
        weights = torch.softmax(tokens.transpose(1, 2) @ tokens, dim=-1)
        mixed = (tokens @ weights.transpose(1, 2)).view_as(features)
        return self.body[2](nn.functional.interpolate(mixed, scale_factor=4.0))


def _measured(model: nn.Module, side: int) -> int:
    x = torch.zeros(1, 3, side, side)
    with torch.no_grad():
        return peak_memory(lambda: model(x, torch.zeros(1, dtype=torch.long), x), torch.device("cpu"))


class DataDependentDenoiser(AttentionDenoiser):
    """Reads a value in its forward pass, which the meta device cannot: measured for real instead."""

    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        scale = float(cond.abs().amax()) + 1.0
        return super().forward(x, t, cond) / scale


@pytest.mark.parametrize("model", [ConvDenoiser(), AttentionDenoiser()], ids=["conv", "attention"])
@pytest.mark.parametrize(("height", "width"), [(192, 192), (200, 136)])
def test_the_memory_counted_on_the_meta_device_is_the_real_peak(model: nn.Module, height: int, width: int) -> None:
    plan = plan_tiles(model.eval(), (1, 3, height, width), 1, tile=None)
    x, t = torch.zeros(1, 3, plan.height, plan.width), torch.zeros(1, dtype=torch.long)
    with torch.no_grad():
        measured = peak_memory(lambda: model(x, t, x), torch.device("cpu"))
    assert plan.exact and plan.tile is None and plan.tiles == 1
    assert plan.peak_bytes - IMAGE_BUFFERS * 3 * plan.height * plan.width * 4 == measured


def test_a_model_the_meta_device_cannot_run_is_extrapolated_from_two_real_probes() -> None:
    model = DataDependentDenoiser().eval()
    side = 192
    plan = plan_tiles(model, (1, 3, side, side), 1, tile=None)
    predicted = plan.peak_bytes - IMAGE_BUFFERS * 3 * side * side * 4
    assert not plan.exact and "(extrapolated) of memory" in plan.describe()
    assert 0.8 < predicted / _measured(model, side) < 1.25


def test_auto_keeps_the_tile_within_a_tight_budget_and_a_conv_net_whole_within_a_roomy_one() -> None:
    model = AttentionDenoiser().eval()
    side = 256
    buffers = IMAGE_BUFFERS * 3 * side * side * 4
    budget = buffers + _measured(model, 128) + 1
    plan = plan_tiles(model, (1, 3, side, side), 3, budget=budget)
    assert plan.tile is not None and MIN_TILE <= plan.tile <= 136 and plan.tile % 8 == 0
    assert plan.peak_bytes <= budget and plan.tiles == tile_count(side, side, plan.tile, 32) > 1
    assert "tiles of" in plan.describe() and plan.seconds > 0
    roomy = plan_tiles(ConvDenoiser().eval(), (1, 3, side, side), 3, budget=100 * budget)
    assert roomy.tile is None and "in one pass" in roomy.describe()


def test_with_attention_smaller_tiles_are_chosen_when_they_do_less_work() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    model = AttentionDenoiser().eval()
    side = 512
    plan = plan_tiles(model, (1, 3, side, side), 1, budget=2**40)
    assert plan.tile is not None and plan.tile < side

    def work(height: int, width: int) -> int:
        x = torch.zeros(1, 3, height, width, device="meta")
        meta = AttentionDenoiser().to("meta")
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            meta(x, torch.zeros(1, dtype=torch.long, device="meta"), x)
        return int(counter.get_total_flops())

    assert plan.tiles * work(plan.tile, plan.tile) < work(side, side)


def test_budgets_too_small_for_any_tile_are_clear_errors() -> None:
    model = AttentionDenoiser().eval()
    with pytest.raises(TilingError, match="full-size images alone, more than the"):
        plan_tiles(model, (1, 3, 512, 512), 1, budget=1000)
    buffers = IMAGE_BUFFERS * 3 * 512 * 512 * 4
    with pytest.raises(TilingError, match="even a 64 px tile needs"):
        plan_tiles(model, (1, 3, 512, 512), 1, budget=buffers + 1000)


@settings(max_examples=40, deadline=None)
@given(height=st.integers(1, 400), width=st.integers(1, 400), tile=st.sampled_from([64, 72, 128, 200]))
def test_tile_count_is_the_number_of_windows_the_tiled_denoiser_runs(height: int, width: int, tile: int) -> None:
    calls = []

    def denoiser(x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        calls.append(x.shape)
        return x

    TiledDenoiser(denoiser, tile, 32)(torch.zeros(1, 1, height, width), torch.zeros(1), torch.zeros(1, 1, height, width))
    assert len(calls) == tile_count(height, width, tile, 32)


def test_sampling_with_the_planned_tile_matches_the_explicit_tile() -> None:
    model = ConvDenoiser().eval()
    sampler = DDIMSampler(NoiseSchedule.linear(), PREDICTION_TARGETS.get("residual"), steps=2)
    cond = torch.rand(1, 3, 200, 136)
    buffers = IMAGE_BUFFERS * 3 * 200 * 136 * 4
    plan = plan_tiles(model, tuple(cond.shape), 2, budget=buffers + _measured(model, 96))
    assert plan.tile is not None
    noise = torch.randn(cond.shape, generator=torch.Generator().manual_seed(0))
    planned = sampler.upscale(model, cond, tile=plan.tile, generator=torch.Generator().manual_seed(0))
    explicit = sampler.sample(TiledDenoiser(model, plan.tile, 32), cond, noise=noise)
    torch.testing.assert_close(planned, explicit)
