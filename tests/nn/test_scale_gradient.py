r"""The layer option ``scale_gradient``: the latent weight's gradient against its closed form, on every binary layer
type, on the fused and the unfused path, for every weight scale whose :math:`\alpha` is not itself a function of a
transformed weight.

For the scaled binary weight :math:`\hat W = \alpha \odot B(W)` and :math:`g = \partial L / \partial \hat W` (computed
here by running the torch layer on :math:`\hat W` as a leaf tensor), by hand:

* ``scale_gradient=True``: :math:`\partial L / \partial W = \alpha \odot F'(W) \odot g`,
* ``scale_gradient=False``: :math:`\partial L / \partial W = F'(W) \odot g`,

plus, for ``channel_mean_abs`` with ``gradient: true``, the path through :math:`\alpha_o = \operatorname{mean}|W_o|`:
:math:`\operatorname{sign}(W) / n \cdot \sum (g \odot B(W))_o` in both cases. A learnable scale's own gradient is
:math:`\sum g \odot B(W)` in both cases.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.func import functional_call

from binarize.nn import BinaryConv1d, BinaryConv2d, BinaryConvTranspose2d, BinaryLinear

#: The surrogate derivative F'(W) of each weight binarizer, by hand.
DERIVATIVES = {
    "ste": lambda w: torch.ones_like(w),
    "clipped_ste": lambda w: (w.abs() <= 1).to(w.dtype),
    "approx_sign": lambda w: (2 - 2 * w.abs()).clamp_min(0),
}
SCALES = ["mean_abs", "channel_mean_abs", {"name": "channel_mean_abs", "gradient": True}, "learnable", "factorized"]


def _layer(kind: str, cin: int, cout: int, k: int) -> tuple[nn.Module, type, tuple[int, ...]]:
    """A float64 torch layer, its binary class and the input's trailing shape."""
    if kind == "Conv1d":
        return nn.Conv1d(cin, cout, k, padding=k // 2, dtype=torch.float64), BinaryConv1d, (cin, 6)
    if kind == "Conv2d":
        return nn.Conv2d(cin, cout, k, padding=k // 2, dtype=torch.float64), BinaryConv2d, (cin, 5, 4)
    if kind == "ConvTranspose2d":
        conv = nn.ConvTranspose2d(cin, cout, k, stride=2, dtype=torch.float64)
        return conv, BinaryConvTranspose2d, (cin, 3, 4)
    return nn.Linear(cin, cout, dtype=torch.float64), BinaryLinear, (cin,)


def _binary(w: Tensor) -> Tensor:
    return torch.where(w >= 0, 1.0, -1.0).to(w.dtype)


@settings(max_examples=120, deadline=None)
@given(
    kind=st.sampled_from(["Conv1d", "Conv2d", "ConvTranspose2d", "Linear"]),
    cin=st.integers(1, 4), cout=st.integers(1, 4), k=st.sampled_from([1, 2, 3]), batch=st.integers(1, 3),
    binarizer=st.sampled_from(sorted(DERIVATIVES)), scale=st.sampled_from(SCALES),
    spread=st.floats(0.2, 8.0), scale_gradient=st.booleans(), fused=st.booleans(), seed=st.integers(0, 2**16),
)
def test_the_latent_weight_gradient_is_the_closed_form(
    kind: str, cin: int, cout: int, k: int, batch: int, binarizer: str, scale: str | dict, spread: float,
    scale_gradient: bool, fused: bool, seed: int,
) -> None:
    torch.manual_seed(seed)
    float_layer, cls, trailing = _layer(kind, cin, cout, k)
    with torch.no_grad():  # weights on both sides of the clipping threshold
        float_layer.weight.copy_(torch.randn_like(float_layer.weight) * spread)
    layer = cls.from_float(float_layer, weight_binarizer=binarizer, scale=scale, scale_gradient=scale_gradient)
    if not fused:
        layer._fusable = lambda: False  # type: ignore[method-assign]
    x = torch.randn(batch, *trailing, dtype=torch.float64)
    out = layer(x)
    upstream = torch.randn_like(out)
    params = dict(layer.named_parameters())
    grads = dict(zip(params, torch.autograd.grad(out, list(params.values()), upstream)))

    w = layer.weight.detach()
    alpha = layer.scale(layer.weight)[1].detach()
    scaled = (alpha * _binary(w)).requires_grad_()
    reference = functional_call(float_layer, {"weight": scaled, "bias": float_layer.bias}, (x,))
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-12)
    (g,) = torch.autograd.grad(reference, [scaled], upstream)

    expected = DERIVATIVES[binarizer](w) * g * (alpha if scale_gradient else 1.0)
    reduce = tuple(d for d in range(w.dim()) if d != layer.weight_out_dim)
    if isinstance(scale, dict):  # alpha = mean |W| per output channel, with its own gradient path into W
        n = math.prod(w.shape[d] for d in reduce)
        expected = expected + torch.sign(w) / n * (g * _binary(w)).sum(dim=reduce, keepdim=True)
    torch.testing.assert_close(grads["weight"], expected, rtol=1e-10, atol=1e-12)
    if scale == "learnable":  # the scale's own gradient does not depend on the option
        torch.testing.assert_close(grads["scale.alpha"], (g * _binary(w)).sum(dim=reduce, keepdim=True))


@pytest.mark.parametrize("scale_gradient", [True, False])
@pytest.mark.parametrize("scale", ["mean_abs", "channel_mean_abs"])
def test_binary_weight_tensor_has_the_same_gradient(scale_gradient: bool, scale: str) -> None:
    """``layer.binary_weight_tensor()`` (the fused weight alone) differentiates as the layer does."""
    torch.manual_seed(0)
    layer = BinaryConv2d(3, 4, 3, weight_binarizer="clipped_ste", scale=scale, scale_gradient=scale_gradient,
                         dtype=torch.float64)
    with torch.no_grad():
        layer.weight.mul_(20.0)
    upstream = torch.randn_like(layer.weight)
    (grad,) = torch.autograd.grad(layer.binary_weight_tensor(), [layer.weight], upstream)
    w = layer.weight.detach()
    alpha = layer.scale(w)[1]
    torch.testing.assert_close(layer.binary_weight_tensor(), alpha * _binary(w), rtol=0, atol=0)
    expected = (w.abs() <= 1).to(w.dtype) * upstream * (alpha if scale_gradient else 1.0)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-14)


def test_scale_gradient_changes_the_gradient_only() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, 3, padding=1)
    options = {"weight_binarizer": "clipped_ste", "input_binarizer": "approx_sign", "scale": "channel_mean_abs"}
    on = BinaryConv2d.from_float(conv, **options)
    off = BinaryConv2d.from_float(conv, **options, scale_gradient=False)
    assert on.options()["scale_gradient"] is True and off.options()["scale_gradient"] is False
    assert "scale_gradient=False" in repr(off) and "scale_gradient" not in repr(on)
    x = torch.randn(2, 4, 5, 5)
    y_on, y_off = on(x), off(x)
    assert torch.equal(y_on, y_off)
    y_on.sum().backward()
    y_off.sum().backward()
    alpha = conv.weight.detach().abs().mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(on.weight.grad, off.weight.grad * alpha)
    assert not torch.allclose(on.weight.grad, off.weight.grad)
    assert copy.deepcopy(off).scale_gradient is False


@pytest.mark.parametrize("value", [0, 1, "false", None])
def test_scale_gradient_must_be_a_bool(value: object) -> None:
    with pytest.raises(TypeError, match="scale_gradient must be True or False"):
        BinaryLinear(3, 3, weight_binarizer="ste", scale="mean_abs", scale_gradient=value)  # type: ignore[arg-type]
