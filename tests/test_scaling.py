"""Every registered weight scale: shapes, values, gradients and errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from binarize.errors import UnknownNameError
from binarize.scaling import SCALES, make_scale

WEIGHT_SHAPES = [((6, 4, 3, 3), 0), ((4, 6, 3, 3), 1), ((5, 7), 0), ((6, 4, 5), 0)]


@pytest.mark.parametrize("name", SCALES.names())
@pytest.mark.parametrize(("shape", "out_dim"), WEIGHT_SHAPES)
def test_every_scale_broadcasts_and_backpropagates(name: str, shape: tuple, out_dim: int) -> None:
    weight = torch.randn(shape, requires_grad=True)
    scale = make_scale(name, weight.detach(), out_dim)
    if name == "none":
        assert scale is None
        return
    w_in, alpha = scale(weight)
    assert w_in.shape == weight.shape
    if alpha is not None:
        assert torch.broadcast_shapes(alpha.shape, weight.shape) == weight.shape
        assert alpha.dim() in (0, weight.dim())
        if alpha.dim():
            per_out = [s for d, s in enumerate(alpha.shape) if d != out_dim]
            assert alpha.shape[out_dim] in (1, weight.shape[out_dim])
            assert all(s in (1,) + tuple(weight.shape) for s in per_out)
    (torch.sign(w_in.detach()) * (alpha if alpha is not None else 1) + w_in).sum().backward()
    assert weight.grad is not None
    for p in scale.parameters():
        assert p.grad is not None


@settings(max_examples=30, deadline=None)
@given(out=st.integers(1, 6), inp=st.integers(1, 6), k=st.integers(1, 3), seed=st.integers(0, 1000))
def test_channel_mean_abs_values(out: int, inp: int, k: int, seed: int) -> None:
    w = torch.randn(out, inp, k, k, generator=torch.Generator().manual_seed(seed))
    _, alpha = make_scale("channel_mean_abs", w, 0)(w)
    torch.testing.assert_close(alpha.flatten(), torch.stack([w[o].abs().mean() for o in range(out)]))
    _, alpha_t = make_scale("mean_abs", w, 0)(w)
    torch.testing.assert_close(alpha_t, w.abs().mean())


def test_channel_mean_abs_gradient_switch() -> None:
    w = torch.randn(3, 2, 3, 3, requires_grad=True)
    _, alpha = make_scale("channel_mean_abs", w.detach(), 0)(w)
    assert not alpha.requires_grad
    _, alpha = make_scale({"name": "channel_mean_abs", "gradient": True}, w.detach(), 0)(w)
    alpha.sum().backward()
    torch.testing.assert_close(w.grad, torch.sign(w.detach()) / (2 * 9))


def test_irnet_is_balanced_with_power_of_two_scale() -> None:
    w = torch.randn(8, 4, 3, 3) * 3 + 1
    balanced, alpha = make_scale("irnet", w, 0)(w)
    flat = balanced.flatten(1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.std(1), torch.ones(8), atol=1e-3, rtol=0)
    exponent = torch.log2(alpha.flatten())
    torch.testing.assert_close(exponent, exponent.round())


def test_factorized_is_outer_product_and_learnable_initialises_from_weight() -> None:
    w = torch.randn(4, 3, 2, 5)
    fac = make_scale("factorized", w, 0)
    _, alpha = fac(w)
    assert alpha.shape == (4, 1, 2, 5)
    torch.testing.assert_close(alpha[:, 0, 0, 0], w.abs().mean(dim=(1, 2, 3)))
    learn = make_scale("learnable", w, 0)
    torch.testing.assert_close(learn(w)[1].flatten(), w.abs().mean(dim=(1, 2, 3)))
    assert sum(p.numel() for p in learn.parameters()) == 4


def test_scale_errors() -> None:
    w = torch.randn(2, 2)
    with pytest.raises(UnknownNameError, match="Did you mean 'mean_abs'"):
        make_scale("mean_ab", w, 0)
    with pytest.raises(TypeError, match="bad arguments for scale 'mean_abs'"):
        make_scale({"name": "mean_abs", "gradient": True}, w, 0)
    with pytest.raises(TypeError, match="a scale must be"):
        make_scale(1.5, w, 0)
    with pytest.raises(ValueError, match="out_dim 3"):
        make_scale("learnable", w, 3)


def test_mean_abs_dims_only_for_scales_whose_alpha_is_a_mean_without_gradient() -> None:
    weight = torch.randn(4, 3, 3, 3)
    dims = {name: make_scale(name, weight, 0).mean_abs_dims(weight) for name in SCALES.names() if name != "none"}
    assert dims == {
        "channel_mean_abs": (1, 2, 3), "factorized": None, "irnet": None, "learnable": None, "mean_abs": (0, 1, 2, 3)
    }
    assert make_scale("channel_mean_abs", weight, 1).mean_abs_dims(weight) == (0, 2, 3)
    assert make_scale({"name": "channel_mean_abs", "gradient": True}, weight, 0).mean_abs_dims(weight) is None
    assert SCALES.get("none")(weight, 0).mean_abs_dims(weight) == ()
    for name, reduced in dims.items():
        if reduced is None:
            continue
        w = weight.clone().requires_grad_()
        w_in, alpha = make_scale(name, weight, 0)(w)
        assert w_in is w and not alpha.requires_grad
        assert torch.equal(alpha.reshape(-1), w.detach().abs().mean(dim=reduced).reshape(-1))
