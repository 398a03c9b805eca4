"""Noise schedule, prediction targets, losses and DDIM sampling (binarize.diffusion)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from binarize.diffusion import (
    PREDICTION_TARGETS,
    DDIMSampler,
    NoiseSchedule,
    TiledDenoiser,
    ddim_timesteps,
    denoising_loss,
    draw_timesteps,
    pad_to_multiple,
    training_loss,
    zero_output,
)
from binarize.zoo import ZOO

SCHEDULE = NoiseSchedule.linear()


def test_linear_schedule_is_sr3s() -> None:
    betas = torch.linspace(1e-6, 1e-2, 2000, dtype=torch.float64)
    expected = torch.cumprod(1 - betas, 0)
    assert SCHEDULE.steps == 2000 and torch.equal(SCHEDULE.alpha_bar, expected)
    assert SCHEDULE.alpha_bar_at(-1) == 1.0
    assert SCHEDULE.alpha_bar_at(0) == pytest.approx(1 - 1e-6)


@pytest.mark.parametrize(("steps", "start", "end"), [(1, 1e-6, 1e-2), (10, 0.0, 0.1), (10, 0.2, 0.1), (10, 0.1, 1.0)])
def test_bad_schedules_are_refused(steps: int, start: float, end: float) -> None:
    with pytest.raises(ValueError, match="steps|betas"):
        NoiseSchedule.linear(steps, start, end)


def test_add_noise_and_timestep_checks() -> None:
    x0, noise = torch.rand(3, 3, 4, 4), torch.randn(3, 3, 4, 4)
    t = torch.tensor([0, 999, 1999])
    bar = SCHEDULE.alpha_bar[t].float().view(-1, 1, 1, 1)
    torch.testing.assert_close(SCHEDULE.add_noise(x0, t, noise), bar.sqrt() * x0 + (1 - bar).sqrt() * noise)
    with pytest.raises(ValueError, match=r"\[0, 1999\]"):
        SCHEDULE.add_noise(x0, torch.tensor([0, 1, 2000]), noise)
    with pytest.raises(TypeError, match="integer"):
        SCHEDULE.add_noise(x0, torch.tensor([0.5, 1.0, 2.0]), noise)


def test_ddim_timesteps_leading_spacing() -> None:
    steps = ddim_timesteps(2000, 50)
    assert steps[0] == 1960 and steps[-1] == 0 and len(steps) == 50
    assert all(a - b == 40 for a, b in zip(steps, steps[1:]))
    with pytest.raises(ValueError, match="sampling steps"):
        ddim_timesteps(2000, 0)


def oracle(target_name: str, hr: Tensor, cond: Tensor):  # noqa: ANN201 - a denoiser
    """A denoiser that knows the answer: with it, deterministic DDIM must return ``hr`` exactly (up to rounding)."""
    target = PREDICTION_TARGETS.get(target_name)
    x0 = target.clean(hr, cond)

    def denoise(x_t: Tensor, t: Tensor, c: Tensor) -> Tensor:
        signal, sigma = SCHEDULE.coefficients(t, x_t)
        return target.training_target(x0, (x_t - signal * x0) / sigma, x_t, signal, sigma)

    return denoise


@pytest.mark.parametrize("target", PREDICTION_TARGETS.names())
def test_ddim_with_an_oracle_recovers_the_image(target: str) -> None:
    hr, cond = torch.rand(2, 3, 8, 8, dtype=torch.float64), torch.rand(2, 3, 8, 8, dtype=torch.float64)
    sampler = DDIMSampler(SCHEDULE, PREDICTION_TARGETS.get(target), steps=10)
    out = sampler.sample(oracle(target, hr, cond), cond, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, hr, rtol=0, atol=1e-9)


def test_residual_model_with_zero_output_returns_bicubic_exactly() -> None:
    unet = zero_output(ZOO.get("bidiffsr-unet-tiny").build().eval())
    sampler = DDIMSampler(SCHEDULE, PREDICTION_TARGETS.get("residual"), steps=3)
    cond = torch.rand(1, 3, 16, 16)
    assert torch.equal(sampler.sample(unet, cond, generator=torch.Generator().manual_seed(1)), cond)
    with pytest.raises(ValueError, match="no layer 'head'"):
        zero_output(unet, "head")


@settings(max_examples=20)
@given(height=st.integers(1, 30), width=st.integers(1, 30), multiple=st.sampled_from([1, 4, 8]))
def test_pad_to_multiple_and_crop_back(height: int, width: int, multiple: int) -> None:
    x = torch.rand(1, 3, height, width)
    padded, size = pad_to_multiple(x, multiple)
    assert size == (height, width)
    assert padded.shape[-2] % multiple == 0 and padded.shape[-1] % multiple == 0
    assert torch.equal(padded[..., :height, :width], x)


class Pointwise(nn.Module):
    """A denoiser with no spatial context: tiling cannot change its output."""

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return 0.5 * torch.tanh(x_t + cond) * (t.view(-1, 1, 1, 1) / 2000)


@settings(max_examples=10)
@given(height=st.integers(9, 40), width=st.integers(9, 40), tile=st.sampled_from([8, 16]), overlap=st.integers(0, 7))
def test_tiles_blend_to_the_untiled_result_for_a_pointwise_denoiser(
    height: int, width: int, tile: int, overlap: int
) -> None:
    x, cond, t = torch.randn(2, 3, height, width), torch.rand(2, 3, height, width), torch.tensor([10, 1500])
    torch.testing.assert_close(TiledDenoiser(Pointwise(), tile, overlap)(x, t, cond), Pointwise()(x, t, cond))


def test_upscale_handles_any_size_with_and_without_tiles() -> None:
    torch.manual_seed(0)
    unet = ZOO.get("bidiffsr-unet-tiny").build().eval()
    sampler = DDIMSampler(SCHEDULE, PREDICTION_TARGETS.get("residual"), steps=2)
    cond = torch.rand(1, 3, 21, 35)
    whole = sampler.upscale(unet, cond, generator=torch.Generator().manual_seed(0))
    tiled = sampler.upscale(unet, cond, tile=16, overlap=4, generator=torch.Generator().manual_seed(0))
    assert whole.shape == tiled.shape == cond.shape
    assert whole.min() >= 0 and whole.max() <= 1
    with pytest.raises(ValueError, match="multiple of 8"):
        sampler.upscale(unet, cond, tile=12)


def test_stochastic_sampling_is_reproducible_with_a_generator() -> None:
    sampler = DDIMSampler(SCHEDULE, PREDICTION_TARGETS.get("epsilon"), steps=4, eta=1.0)
    denoise = Pointwise()
    cond = torch.rand(1, 3, 8, 8)
    a = sampler.sample(denoise, cond, generator=torch.Generator().manual_seed(3))
    b = sampler.sample(denoise, cond, generator=torch.Generator().manual_seed(3))
    c = sampler.sample(denoise, cond, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_training_and_held_out_losses() -> None:
    hr, cond = torch.rand(2, 3, 8, 8, dtype=torch.float64), torch.rand(2, 3, 8, 8, dtype=torch.float64)
    for name in PREDICTION_TARGETS.names():
        target = PREDICTION_TARGETS.get(name)
        assert denoising_loss(oracle(name, hr, cond), SCHEDULE, target, hr, cond) == pytest.approx(0, abs=1e-9)
    zero = lambda x_t, t, c: torch.zeros_like(x_t)  # noqa: E731
    t, noise = torch.tensor([5, 1000]), torch.randn(2, 3, 8, 8, dtype=torch.float64)
    loss = training_loss(zero, SCHEDULE, PREDICTION_TARGETS.get("x0"), hr, cond, t, noise)
    assert float(loss) == pytest.approx(float(hr.abs().mean()))
    gen = torch.Generator().manual_seed(0)
    assert len(set(draw_timesteps(64, 2000, gen).tolist())) > 1
    assert len(set(draw_timesteps(64, 2000, gen, per_sample=False).tolist())) == 1


EDM = PREDICTION_TARGETS.get("residual-edm")


@settings(max_examples=50, deadline=None)
@given(st.floats(1e-4, 1 - 1e-6), st.floats(-1.0, 1.0), st.floats(-3.0, 3.0))  # the schedule's range
def test_preconditioned_target_round_trips(bar: float, x0_value: float, noise_value: float) -> None:
    """Training on F* and sampling with c_skip x_t + c_out F give x0 back at every noise level."""
    signal, sigma = torch.tensor(bar, dtype=torch.float64).sqrt(), torch.tensor(1 - bar, dtype=torch.float64).sqrt()
    x0, noise = torch.tensor([x0_value], dtype=torch.float64), torch.tensor([noise_value], dtype=torch.float64)
    x_t = signal * x0 + sigma * noise
    wanted = EDM.training_target(x0, noise, x_t, signal, sigma)
    torch.testing.assert_close(EDM.predicted_x0(wanted, x_t, signal, sigma), x0, rtol=0, atol=1e-9)


def test_preconditioning_keeps_x_t_at_low_noise_and_predicts_the_residual_at_high_noise() -> None:
    data = EDM.sigma_data
    skip, out = EDM.preconditioning(torch.tensor(1.0), torch.tensor(0.0))
    assert float(skip) == pytest.approx(1.0) and float(out) == 0.0  # no noise: x_t is the answer
    skip, out = EDM.preconditioning(torch.tensor(0.0), torch.tensor(1.0))
    assert float(skip) == 0.0 and float(out) == pytest.approx(data)  # pure noise: the network says it all
    # the training target has unit scale for a clean variable of standard deviation sigma_data, at any noise
    generator = torch.Generator().manual_seed(0)
    x0, noise = data * torch.randn(200_000, generator=generator), torch.randn(200_000, generator=generator)
    for bar in (0.999999, 0.99, 0.5, 1e-4):
        signal, sigma = torch.tensor(bar).sqrt(), torch.tensor(1 - bar).sqrt()
        wanted = EDM.training_target(x0, noise, signal * x0 + sigma * noise, signal, sigma)
        assert float(wanted.std()) == pytest.approx(1.0, rel=0.02), bar
    with pytest.raises(ValueError, match="not preconditioned"):
        PREDICTION_TARGETS.get("residual").preconditioning(torch.tensor(1.0), torch.tensor(0.0))


def test_distillation_adds_the_distance_to_the_teacher() -> None:
    hr, cond = torch.rand(2, 3, 8, 8, dtype=torch.float64), torch.rand(2, 3, 8, 8, dtype=torch.float64)
    t, noise = torch.tensor([5, 1000]), torch.randn(2, 3, 8, 8, dtype=torch.float64)
    student = lambda x_t, t, c: 0.5 * x_t  # noqa: E731
    zero = lambda x_t, t, c: torch.zeros_like(x_t)  # noqa: E731
    plain = float(training_loss(student, SCHEDULE, EDM, hr, cond, t, noise))
    assert float(training_loss(student, SCHEDULE, EDM, hr, cond, t, noise, teacher=student)) == plain
    x_t = SCHEDULE.add_noise(EDM.clean(hr, cond), t, noise)
    taught = float(training_loss(student, SCHEDULE, EDM, hr, cond, t, noise, teacher=zero, teacher_weight=0.25))
    assert taught == pytest.approx(plain + 0.25 * float((0.5 * x_t).abs().mean()))
