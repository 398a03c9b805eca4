r"""Fused binary operations: binarize inside one autograd function that saves only what its backward pass needs.

A binary layer computes :math:`y = \operatorname{op}(s, \hat W) + b` with :math:`s = B_x(h)` (the binarized input)
and :math:`\hat W = \alpha \cdot B_w(W)`, ``op`` a convolution or a matrix product. Left to autograd, ``op`` saves
:math:`s` for its weight gradient while a binarizer whose surrogate gradient needs the value (ApproxSign,
SignSwish, EDE, the clipped STE's mask) saves :math:`h` as well, so a binary layer keeps about twice the activation
memory of its full-precision twin; and every binarizer adds Python-level autograd nodes to both passes.

Given the binarizers' fused forms (:class:`~binarize.binarizers.functions.Surrogate`: the forward pass is
:math:`\operatorname{sign}`, the backward pass :func:`~binarize.binarizers.functions.surrogate_gradient`),
:func:`binary_conv` and :func:`binary_linear` do the whole layer operation in one autograd function, including the
learnable input shift :math:`h = x + b` (ReActNet's RSign threshold, BI-DiffSR's TaR) when there is one:

* forward: :math:`h = x + (b + 0)`, :math:`s = \operatorname{sign}(h)`, :math:`\alpha = \operatorname{mean}|W|`
  (per output channel or per tensor, computed in the buffer that then receives
  :math:`\hat W = \alpha \operatorname{sign}(W)`), and ``op`` with the same kernel autograd would run. Adding
  :math:`+0` to the (small) shift first removes any :math:`-0` from it, so that :math:`h` holds no :math:`-0` and
  its sign (:math:`+1` at zero) is one :func:`torch.copysign` pass instead of two. Saved: :math:`h` (one
  activation-sized tensor, as the full-precision twin's convolution saves its shifted input), :math:`W` (a
  parameter, alive anyway), :math:`\alpha` and :math:`\hat W`; never :math:`s`. The backward pass writes the
  weight's surrogate gradient into the buffer of the operation's weight gradient.
* backward: :math:`s` is recomputed from :math:`h` (one vectorised pass), then ``op``'s own backward kernel and the
  surrogates give

  .. math::
      \frac{\partial L}{\partial h} = \operatorname{op}^\top_s\Bigl(\frac{\partial L}{\partial y}\Bigr) \odot
      F_x'(h),
      \qquad
      \frac{\partial L}{\partial W} = [\alpha\,\cdot]\ \operatorname{op}^\top_W\Bigl(\frac{\partial L}{\partial y},\
      s\Bigr) \odot F_w'(W),
      \qquad
      \frac{\partial L}{\partial b} = \textstyle\sum \frac{\partial L}{\partial h},

  with :math:`F'` each estimator's surrogate derivative (e.g. :math:`\max(0, 2 - 2|h|)` for ApproxSign,
  :math:`\mathbb{1}_{|W| \le 1}` for the clipped STE) and the sum over the dimensions :math:`b` is broadcast along.
  The factor :math:`\alpha` of the weight's gradient is there with ``scale_gradient=True`` (the default: the
  chain rule through :math:`\hat W = \alpha \operatorname{sign}(W)`) and left out with ``scale_gradient=False``
  (see :func:`scale_binary`).
  The recomputed signs are no longer needed once ``op``'s backward kernel has run, so a surrogate that needs a work
  tensor (ApproxSign's :math:`|h|`) writes into them instead of allocating one.

The layer's output activation, when it is a PReLU or RPReLU (:mod:`binarize.nn.activations`), runs in the same
node with the same kernels (:func:`~binarize.nn.activations.shifted_prelu` forward, saving :math:`z = y + \gamma`
as the activation's own node does, and :func:`~binarize.nn.activations.shifted_prelu_backward`): a binary layer is
then one Python-level autograd node, where its full-precision twin has the activation's node next to torch's C++
convolution node.

Either side may be left out (``None``): the input is then used as given, or the weight is the given tensor (already
binarized and scaled by autograd, e.g. with a learnable scale). Values equal those of the unfused layer (the same
kernels on the same tensors); gradients equal them up to the order of the factors of the surrogate products. The
functions are traced by ``torch.compile`` without graph breaks.

Reference: the estimators are those of :mod:`binarize.binarizers.functions`; recomputing a cheap forward value in the
backward pass instead of saving it is the activation-recomputation trade of Chen et al., "Training Deep Nets with
Sublinear Memory Cost", arXiv:1604.06174, 2016, here at the cost of one elementwise pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from binarize.binarizers.functions import Surrogate, scalar_like, sign, surrogate_gradient
from binarize.nn.activations import (
    ShiftedPReLUParameters,
    shift_shapes,
    shifted_prelu,
    shifted_prelu_backward,
    unviewed,
)
from binarize.nn.channels import ChannelDim

__all__ = [
    "BinaryOperation",
    "BinaryWeight",
    "ScaleBinary",
    "binary_conv",
    "binary_linear",
    "binary_weight",
    "scale_binary",
    "scaled_binary_weight",
]

_convolution_backward = torch.ops.aten.convolution_backward.default

class BinaryOperation(torch.autograd.Function):
    r"""``op(sign(x + shift), alpha * sign(W)) + bias`` with surrogate gradients, saving :math:`h = x + \text{shift}`
    instead of the binary input.

    Forward arguments: ``x`` (the input), ``shift`` (a learnable shift ready to broadcast against ``x``, gathered per
    sample when timestep-aware, or ``None``; :math:`h` is ``x`` plus it, binarized when ``input_surrogate`` is given
    and used as is otherwise), ``weight``
    (:math:`W`, or the weight as used when ``weight_surrogate`` is ``None``), ``alpha_dims`` (the dimensions
    :math:`\alpha = \operatorname{mean}|W|` averages over; ``()`` for no :math:`\alpha`), ``bias`` (or ``None``), the
    two :class:`~binarize.binarizers.functions.Surrogate` forms (or ``None``), the
    ``op`` (``"convolution"`` or ``"linear"``) and, for a convolution, the arguments of :func:`torch.convolution`
    (``stride``, ``padding``, ``dilation``, ``transposed``, ``output_padding``, ``groups``) followed by an optional
    constant padding of the input (``pads`` in :func:`torch.nn.functional.pad` order, ``pad_value``); then the output
    activation's slope rows, input and output shifts and channel dimension (``None, None, None, 1``: no activation;
    see :class:`~binarize.nn.activations.ShiftedPReLU`); last, ``scale_gradient`` (whether the weight's surrogate
    gradient is multiplied by :math:`\alpha`, see :func:`scale_binary`).
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        shift: Tensor | None,
        weight: Tensor,
        alpha_dims: tuple[int, ...],
        bias: Tensor | None,
        input_surrogate: Surrogate | None,
        weight_surrogate: Surrogate | None,
        op: str,
        geometry: tuple[Any, ...],
        slope: Tensor | None,
        activation_shift_in: Tensor | None,
        activation_shift_out: Tensor | None,
        channel_dim: ChannelDim,
        scale_gradient: bool = True,
    ) -> Tensor:
        h = x if shift is None else _shifted(x, shift)
        operand = _binary_input(h, input_surrogate, shift is not None)
        effective, alpha = weight, None
        if weight_surrogate is not None:
            effective, alpha = scaled_binary_weight(weight, alpha_dims, weight_surrogate.sign_of_zero)
        ctx.surrogates = (input_surrogate, weight_surrogate)
        ctx.scale_gradient = scale_gradient
        ctx.op, ctx.geometry = op, geometry
        ctx.shift_shape = None if shift is None else shift.shape
        ctx.bias_sizes, ctx.bias_dtype = (None, None) if bias is None else (list(bias.shape), bias.dtype)
        # Under autocast the operation runs in the autocast dtype, as F.conv2d and F.linear would.
        ctx.compute = compute = _autocast_dtype(h)
        if compute is not None:
            operand, effective = operand.to(compute), effective.to(compute)
            bias = None if bias is None else bias.to(compute)
        if op == "linear":
            y = F.linear(operand, effective, bias)
        else:
            stride, padding, dilation, transposed, output_padding, groups, pads, pad_value = geometry
            if pads is not None:
                operand = F.pad(operand, pads, value=pad_value)
            y = torch.convolution(operand, effective, bias, stride, padding, dilation, transposed, output_padding,
                                  groups)
        z = None
        if slope is not None:  # the output activation in the same node, saving z = y + shift_in as its own would
            y, z = shifted_prelu(y, slope, activation_shift_in, activation_shift_out, channel_dim)
            ctx.activation = (channel_dim, shift_shapes(activation_shift_in, activation_shift_out))
        ctx.save_for_backward(h, weight, alpha, effective, z, slope)
        return unviewed(y)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        h, weight, alpha, effective, z, slope = ctx.saved_tensors
        input_surrogate, weight_surrogate = ctx.surrogates
        shift_shape = ctx.shift_shape
        needs = ctx.needs_input_grad
        activation_grads: list[Tensor | None] = [None, None, None]
        if z is not None:
            channel_dim, shapes = ctx.activation
            grad, *activation_grads = shifted_prelu_backward(grad, z, slope, channel_dim, shapes, needs[9:12])
        operand = signs = _binary_input(h, input_surrogate, shift_shape is not None)
        if ctx.compute is not None:
            operand, effective, grad = operand.to(ctx.compute), effective.to(ctx.compute), grad.to(ctx.compute)
        needs_operand = needs[0] or needs[1]
        if ctx.op == "linear":
            grad_operand, grad_effective, grad_bias = _linear_backward(grad, operand, effective,
                                                                       (needs_operand, needs[2], needs[4]))
        else:
            stride, padding, dilation, transposed, output_padding, groups, pads, pad_value = ctx.geometry
            if pads is not None:
                operand = F.pad(operand, pads, value=pad_value)
            grad_operand, grad_effective, grad_bias = _convolution_backward(
                grad, operand, effective, ctx.bias_sizes, stride, padding, dilation, transposed, output_padding,
                groups, [needs_operand, needs[2], needs[4]],
            )
            if grad_operand is not None and pads is not None:
                grad_operand = F.pad(grad_operand, [-p for p in pads])  # negative padding crops the border off
        if ctx.compute is not None:
            grad_operand = None if grad_operand is None else grad_operand.to(h.dtype)
            grad_effective = None if grad_effective is None else grad_effective.to(weight.dtype)
            grad_bias = None if grad_bias is None else grad_bias.to(ctx.bias_dtype)
        # The operation's gradients are temporaries of this function: the surrogates may overwrite them.
        grad_h = grad_operand
        if grad_operand is not None and input_surrogate is not None:
            # The operation is done with the signs: the surrogate may use them as its work space.
            grad_h = surrogate_gradient(input_surrogate.name, h, grad_operand, input_surrogate.args, overwrite=True,
                                        signs=signs if input_surrogate.uses_signs else None)
        grad_shift = None if grad_h is None or not needs[1] else grad_h.sum_to_size(shift_shape)
        grad_weight = grad_effective
        if grad_effective is not None and weight_surrogate is not None:
            grad_weight = surrogate_gradient(weight_surrogate.name, weight, grad_effective, weight_surrogate.args,
                                             alpha if ctx.scale_gradient else None, overwrite=True)
        return (grad_h if needs[0] else None, grad_shift, grad_weight, None, grad_bias, None, None, None, None,
                *activation_grads, None, None)


def _shifted(x: Tensor, shift: Tensor) -> Tensor:
    r""":math:`h = x + b`, computed as :math:`x + (b + 0)`, which has the same values and never holds :math:`-0`.

    In IEEE round-to-nearest arithmetic (without flushing subnormal results to zero, torch's default) a sum is
    :math:`-0` only when both terms are :math:`-0`, and :math:`b + 0` turns a :math:`-0` of the (small) shift into
    :math:`+0`; so :math:`\operatorname{sign}(h)` with :math:`s_0 = 1` is one :func:`torch.copysign` pass (see
    :func:`_binary_input`).
    """
    return x + (shift + 0.0)


def _binary_input(h: Tensor, surrogate: Surrogate | None, free_of_negative_zero: bool) -> Tensor:
    """The operation's input: ``h`` as given without a surrogate, else its sign (one pass where ``h`` holds no
    :math:`-0`, which :func:`torch.copysign` would map to :math:`-1`)."""
    if surrogate is None:
        return h
    if free_of_negative_zero and surrogate.sign_of_zero == 1.0 and h.is_floating_point():
        return torch.copysign(scalar_like(1.0, h), h)
    return sign(h, surrogate.sign_of_zero)


def _autocast_dtype(x: Tensor) -> torch.dtype | None:
    """The dtype autocast runs convolutions and matrix products in on ``x``'s device, or ``None`` outside autocast."""
    if not x.is_floating_point():
        return None
    device = x.device.type
    if device == "meta":  # shapes only (a model built on the meta device): no autocast to follow
        return None
    try:
        return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    except (TypeError, AttributeError):  # torch < 2.4: per-device functions
        if device == "cpu":
            return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
        return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None


def _linear_backward(
    grad: Tensor, operand: Tensor, weight: Tensor, needs: tuple[bool, bool, bool]
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """The gradients of ``F.linear(operand, weight, bias)`` wanted by ``needs`` (operand, weight, bias)."""
    rows = grad.reshape(-1, grad.shape[-1])
    grad_operand = grad.matmul(weight) if needs[0] else None
    grad_weight = rows.t().matmul(operand.reshape(-1, operand.shape[-1])) if needs[1] else None
    grad_bias = rows.sum(0) if needs[2] else None
    return grad_operand, grad_weight, grad_bias


def scaled_binary_weight(
    weight: Tensor, alpha_dims: tuple[int, ...], sign_of_zero: float = 1.0
) -> tuple[Tensor, Tensor | None]:
    r"""``(alpha * sign(W), alpha)`` with :math:`\alpha = \operatorname{mean}|W|` over ``alpha_dims`` (kept as size-1
    dimensions; ``()``: no :math:`\alpha`, returned as ``None``), computed without gradient in one new buffer.

    Examples:
        >>> w = torch.tensor([[-2.0, 0.0], [1.0, -3.0]])
        >>> binary, alpha = scaled_binary_weight(w, (1,))
        >>> binary.tolist(), alpha.flatten().tolist()
        ([[-1.0, 1.0], [2.0, -2.0]], [1.0, 2.0])
    """
    if torch.is_grad_enabled():
        weight = weight.detach()
    if not alpha_dims:
        return sign(weight, sign_of_zero), None
    buffer = weight.abs()
    alpha = buffer.mean(dim=alpha_dims, keepdim=True)
    torch.sign(weight, out=buffer)
    if sign_of_zero == 0.0:
        return buffer.mul_(alpha), alpha
    return torch.copysign(alpha, buffer, out=buffer), alpha


class BinaryWeight(torch.autograd.Function):
    r""":math:`\hat W = \alpha \cdot \operatorname{sign}(W)` with a surrogate gradient (see :func:`binary_weight`).

    Forward arguments: ``weight``, ``alpha_dims``, the weight binarizer's
    :class:`~binarize.binarizers.functions.Surrogate` and ``scale_gradient`` (whether the surrogate gradient is
    multiplied by :math:`\alpha`).
    """

    @staticmethod
    def forward(
        ctx: Any, weight: Tensor, alpha_dims: tuple[int, ...], surrogate: Surrogate, scale_gradient: bool = True
    ) -> Tensor:
        binary, alpha = scaled_binary_weight(weight, alpha_dims, surrogate.sign_of_zero)
        ctx.save_for_backward(weight, alpha if scale_gradient else None)
        ctx.surrogate = surrogate
        return binary

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None]:
        weight, alpha = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        surrogate = ctx.surrogate
        return surrogate_gradient(surrogate.name, weight, grad, surrogate.args, alpha), None, None, None


def binary_weight(
    weight: Tensor, alpha_dims: tuple[int, ...], surrogate: Surrogate, *, scale_gradient: bool = True
) -> Tensor:
    r""":math:`\alpha \cdot \operatorname{sign}(W)`, :math:`\alpha = \operatorname{mean}|W|` over ``alpha_dims``
    (without gradient; ``()`` for none), with ``surrogate``'s gradient for :math:`W`.

    The gradient is :math:`\alpha \cdot F'(W) \odot \partial L / \partial \hat W` with ``scale_gradient`` (the
    chain rule), :math:`F'(W) \odot \partial L / \partial \hat W` without it (see :func:`scale_binary`).

    Args:
        weight: :math:`W`.
        alpha_dims: the dimensions :math:`\alpha` averages over (see
            :meth:`~binarize.scaling.WeightScale.mean_abs_dims`).
        surrogate: the weight binarizer's fused form (:meth:`~binarize.binarizers.Binarizer.surrogate`).
        scale_gradient: whether :math:`W`'s gradient carries the factor :math:`\alpha`.

    Examples:
        >>> w = torch.tensor([[-2.0, 0.5]], requires_grad=True)
        >>> binary_weight(w, (1,), Surrogate("clipped_ste", (1.0,))).tolist()
        [[-1.25, 1.25]]
    """
    return BinaryWeight.apply(weight, tuple(alpha_dims), surrogate, scale_gradient)


class ScaleBinary(torch.autograd.Function):
    r""":math:`\alpha \cdot B` whose gradient to :math:`B` is not multiplied by :math:`\alpha` (see
    :func:`scale_binary`). Forward arguments: ``binary`` (:math:`B`) and ``alpha``."""

    @staticmethod
    def forward(ctx: Any, binary: Tensor, alpha: Tensor) -> Tensor:
        ctx.save_for_backward(binary if ctx.needs_input_grad[1] else None)
        ctx.shapes = (binary.shape, alpha.shape)
        return binary * alpha

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        (binary,) = ctx.saved_tensors
        binary_shape, alpha_shape = ctx.shapes
        grad_binary = grad.sum_to_size(binary_shape) if ctx.needs_input_grad[0] else None
        grad_alpha = (grad * binary).sum_to_size(alpha_shape) if ctx.needs_input_grad[1] else None
        return grad_binary, grad_alpha


def scale_binary(binary: Tensor, alpha: Tensor, *, scale_gradient: bool = True) -> Tensor:
    r"""The scaled binary weight :math:`\hat W = \alpha \cdot B`, :math:`B = B_w(W)`; with
    ``scale_gradient=False`` the gradient that reaches :math:`B` is not multiplied by :math:`\alpha`.

    The value is :math:`\alpha \cdot B` either way (the same product, bit for bit). The gradients, for
    :math:`g = \partial L / \partial \hat W`:

    .. math::
        \texttt{scale\_gradient=True:}\quad \frac{\partial L}{\partial B} = \alpha \odot g
        \qquad
        \texttt{scale\_gradient=False:}\quad \frac{\partial L}{\partial B} = g

    and in both cases :math:`\partial L / \partial \alpha = \sum g \odot B` over the dimensions :math:`\alpha` is
    broadcast along, so a learnable scale learns as before (and a scale computed from :math:`W` with gradient keeps
    its own path into :math:`W`). Through the binarizer's estimator :math:`F'`, the latent weight's gradient is then
    :math:`\alpha \odot F'(W) \odot g` (the chain rule) or :math:`F'(W) \odot g`. The second is what BI-DiffSR's
    release trains with: it adds :math:`\alpha \operatorname{sign}(W) - \operatorname{clip}(W, -1, 1)` as a constant
    to :math:`\operatorname{clip}(W, -1, 1)`, so that :math:`\partial L / \partial W = g \odot
    \mathbb{1}_{|W| \le 1}`.

    Reference: Chen et al., "Binarized Diffusion Model for Image Super-Resolution" (BI-DiffSR), NeurIPS 2024, the
    authors' release (its binary convolution); the scaled form is XNOR-Net's (Rastegari et al., ECCV 2016) chain rule
    with :math:`\alpha` a constant.

    Examples:
        >>> b = torch.tensor([[1.0, -1.0]], requires_grad=True)
        >>> scale_binary(b, torch.tensor([[0.5]]), scale_gradient=False).sum().backward()
        >>> b.grad.tolist()
        [[1.0, 1.0]]
    """
    if scale_gradient:
        return binary * alpha
    return ScaleBinary.apply(binary, alpha)


def binary_conv(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    *,
    shift: Tensor | None = None,
    alpha_dims: Sequence[int] = (),
    input_surrogate: Surrogate | None = None,
    weight_surrogate: Surrogate | None = None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    transposed: bool = False,
    output_padding: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    pad_value: float = 0.0,
    activation: ShiftedPReLUParameters | None = None,
    scale_gradient: bool = True,
) -> Tensor:
    r"""A (transposed) convolution of ``sign(x + shift)`` with ``alpha * sign(weight)``, saving only ``x + shift``
    and the weights.

    Equal in value to ``torch.convolution(F.pad(B_x(x + shift), pads, value=pad_value), alpha * B_w(weight), bias,
    stride, padding, dilation, transposed, output_padding, groups)`` for the binarizers whose fused forms are
    ``input_surrogate`` and ``weight_surrogate`` (a side that is ``None`` is used as given), with their surrogate
    gradients; :math:`\alpha = \operatorname{mean}|W|` over ``alpha_dims`` (``()``: no scale). ``scale_gradient``:
    whether the weight's surrogate gradient is multiplied by :math:`\alpha` (see :func:`scale_binary`).

    Examples:
        >>> from binarize.binarizers import get_binarizer
        >>> h = torch.randn(2, 4, 5, 5, requires_grad=True)
        >>> w = torch.randn(4, 4, 3, 3)
        >>> y = binary_conv(h, w, None, input_surrogate=Surrogate("approx_sign"), stride=[1, 1], padding=[1, 1],
        ...                 dilation=[1, 1], groups=1)
        >>> torch.equal(y, torch.nn.functional.conv2d(get_binarizer("approx_sign")(h), w, padding=1))
        True
    """
    spatial = weight.dim() - 2
    geometry = (
        list(stride), list(padding), list(dilation), transposed,
        list(output_padding) if output_padding is not None else [0] * spatial, groups,
        list(pads) if pads is not None else None, float(pad_value),
    )
    return BinaryOperation.apply(x, shift, weight, tuple(alpha_dims), bias, input_surrogate, weight_surrogate,
                                 "convolution", geometry, *_activation_arguments(activation), scale_gradient)


def binary_linear(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    *,
    shift: Tensor | None = None,
    alpha_dims: Sequence[int] = (),
    input_surrogate: Surrogate | None = None,
    weight_surrogate: Surrogate | None = None,
    activation: ShiftedPReLUParameters | None = None,
    scale_gradient: bool = True,
) -> Tensor:
    r"""``F.linear(sign(x + shift), alpha * sign(weight), bias)``, saving only ``x + shift`` and the weights (see
    :func:`binary_conv`).

    Examples:
        >>> h = torch.randn(3, 4, requires_grad=True)
        >>> w = torch.randn(2, 4)
        >>> y = binary_linear(h, w, None, input_surrogate=Surrogate("ste"))
        >>> torch.equal(y, torch.nn.functional.linear(sign(h), w))
        True
    """
    return BinaryOperation.apply(x, shift, weight, tuple(alpha_dims), bias, input_surrogate, weight_surrogate, "linear",
                                 (), *_activation_arguments(activation), scale_gradient)


def _activation_arguments(activation: ShiftedPReLUParameters | None) -> tuple[Any, ...]:
    """The fused operation's trailing arguments: the activation's tensors one by one (autograd sees only direct
    tensor arguments), or ``None``s."""
    return (None, None, None, 1) if activation is None else tuple(activation)
