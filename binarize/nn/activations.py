r"""Output activations of binary layers: RPReLU (ReActNet) and per-channel PReLU, in a registry by name.

Both run as one autograd node, :class:`ShiftedPReLU`: torch's PReLU kernel forward, and a backward pass built from
vectorised kernels, which on the CPU is several times faster than the PReLU kernel's own backward.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from binarize._registry import Registry
from binarize.nn.channels import ChannelDim, broadcast_channels, channel_parameter, gather_rows, parameter_shape

ACTIVATIONS: Registry[type[nn.Module]] = Registry("activation")


class ShiftedPReLUParameters(NamedTuple):
    """The arguments of :class:`ShiftedPReLU` after ``x``: slope rows, input and output shifts (or ``None``),
    channel dimension."""

    slope: Tensor
    shift_in: Tensor | None
    shift_out: Tensor | None
    channel_dim: ChannelDim


def channel_prelu(x: Tensor, slope: Tensor, channel_dim: ChannelDim = 1) -> Tensor:
    r"""PReLU with a slope per channel, ``(C,)``, or per sample and channel, ``(B, C)``: :math:`\max(0,x) + a\min(0,x)`.

    Runs torch's fused PReLU kernel (one pass forward, one backward, for input and slope gradients together) in
    every case: a per-sample slope ``(B, C)`` on channels-first ``(B, C, ...)`` activations treats the ``B * C``
    sample-channel pairs as channels. Channels-last activations with per-sample slopes, which that trick does not
    cover, use :func:`torch.where`.

    Examples:
        >>> x = torch.tensor([[[-2.0, 1.0]], [[-2.0, 1.0]]])  # (B=2, C=1, L=2)
        >>> channel_prelu(x, torch.tensor([[0.5], [0.25]])).tolist()
        [[[-1.0, 1.0]], [[-0.5, 1.0]]]
    """
    if slope.dim() == 1:
        if channel_dim == 1:
            return nn.functional.prelu(x, slope)
        return nn.functional.prelu(x.reshape(-1, x.shape[-1]), slope).view(x.shape)
    if channel_dim == 1 and x.dim() >= 2:
        pairs = nn.functional.prelu(x.reshape((1, x.shape[0] * x.shape[1], -1)), slope.reshape(-1))
        return pairs.view(x.shape)
    return torch.where(x > 0, x, x * slope.view((slope.shape[0],) + (1,) * (x.dim() - 2) + (-1,)))


def shifted_prelu(
    x: Tensor, slope: Tensor, shift_in: Tensor | None, shift_out: Tensor | None, channel_dim: ChannelDim
) -> tuple[Tensor, Tensor]:
    r"""``(y, z)``: :math:`y = \operatorname{PReLU}_a(z) + t` with :math:`z = x + s`, without autograd (see
    :class:`ShiftedPReLU` for the arguments); :math:`z` is what :func:`shifted_prelu_backward` needs."""
    z = x if shift_in is None else x + shift_in
    y = channel_prelu(z, slope, channel_dim)
    if shift_out is not None:
        y = y.add_(shift_out)
    return y, z


def unviewed(y: Tensor) -> Tensor:
    """``y`` as a tensor of its own when it is a view (same storage, no view relation).

    A custom autograd Function must not return a view: autograd would then forbid in-place operations on its
    output (``F.hardswish(y, inplace=True)`` after a binary layer), since they would bypass its backward. The
    PReLU kernel's result reshaped to the input's shape is such a view; inside ``forward`` (no autograd) detaching
    it drops the relation without a copy.
    """
    return y.detach() if y._base is not None else y


def shift_shapes(shift_in: Tensor | None, shift_out: Tensor | None) -> tuple[torch.Size | None, torch.Size | None]:
    """The two shifts' shapes (``None`` for a missing one), which :func:`shifted_prelu_backward` sums gradients to."""
    return (None if shift_in is None else shift_in.shape, None if shift_out is None else shift_out.shape)


def shifted_prelu_backward(
    grad: Tensor,
    z: Tensor,
    slope: Tensor,
    channel_dim: ChannelDim,
    shapes: tuple[torch.Size | None, torch.Size | None],
    needs: tuple[bool, bool, bool],
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """The gradients for ``x``, the slope and the two shifts (see :class:`ShiftedPReLU`); ``shapes`` are the two
    shifts' shapes, ``needs`` says which of slope, input shift and output shift want a gradient."""
    positive = torch.ops.aten.threshold_backward(grad, z, 0)
    negative = grad - positive
    broadcast = broadcast_channels(slope, z, channel_dim)
    grad_slope = (negative * z).sum_to_size(broadcast.shape).view(slope.shape) if needs[0] else None
    grad_x = negative.mul_(broadcast).add_(positive)
    grad_in = grad_x.sum_to_size(shapes[0]) if needs[1] else None
    grad_out = grad.sum_to_size(shapes[1]) if needs[2] else None
    return grad_x, grad_slope, grad_in, grad_out


class ShiftedPReLU(torch.autograd.Function):
    r""":math:`y = \operatorname{PReLU}_a(x + s) + t` in one node, saving only :math:`z = x + s`.

    Forward arguments: ``x``; ``slope`` :math:`a` as rows, ``(C,)`` or per sample ``(B, C)``; ``shift_in``
    :math:`s` and ``shift_out`` :math:`t` viewed to broadcast against ``x`` (or ``None``); ``channel_dim``.
    Backward, with :math:`g` the incoming gradient, :math:`g^+ = g\,\mathbb{1}_{z > 0}` and :math:`g^- = g - g^+`:

    .. math::
        \frac{\partial L}{\partial x} = g^+ + a\,g^-, \qquad
        \frac{\partial L}{\partial a} = \textstyle\sum g^- z, \qquad
        \frac{\partial L}{\partial s} = \textstyle\sum \frac{\partial L}{\partial x}, \qquad
        \frac{\partial L}{\partial t} = \textstyle\sum g,

    the sums running over the dimensions each parameter is broadcast along. A binary layer's fused operation runs
    the same two functions (:func:`shifted_prelu`, :func:`shifted_prelu_backward`) inside its own node.

    Reference: He, Zhang, Ren, Sun, "Delving Deep into Rectifiers", ICCV 2015 (PReLU); Liu, Shen, Savvides, Cheng,
    "ReActNet", ECCV 2020 (the shifts).
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        slope: Tensor,
        shift_in: Tensor | None,
        shift_out: Tensor | None,
        channel_dim: ChannelDim,
    ) -> Tensor:
        y, z = shifted_prelu(x, slope, shift_in, shift_out, channel_dim)
        ctx.save_for_backward(z, slope)
        ctx.channel_dim = channel_dim
        ctx.shapes = shift_shapes(shift_in, shift_out)
        return unviewed(y)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        z, slope = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grads = shifted_prelu_backward(grad, z, slope, ctx.channel_dim, ctx.shapes, (needs[1], needs[2], needs[3]))
        return (*grads, None)


@ACTIVATIONS.register("prelu")
class ChannelPReLU(nn.Module):
    r"""PReLU with one slope per channel: :math:`y = \max(0, x) + a_c \min(0, x)`, :math:`a_c` initialised to 0.25.

    Unlike :class:`torch.nn.PReLU` it also handles channels-last activations of linear layers, and with ``groups``
    it holds one slope vector per timestep group (see :mod:`binarize.nn.timestep`).

    Reference: He, Zhang, Ren, Sun, "Delving Deep into Rectifiers", ICCV 2015.
    """

    def __init__(
        self,
        num_channels: int,
        channel_dim: ChannelDim = 1,
        *,
        init: float = 0.25,
        groups: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.channel_dim: ChannelDim = channel_dim
        self.groups = groups
        self._shape = parameter_shape(num_channels, groups)
        self.slope = nn.Parameter(torch.full(self._shape, float(init), device=device, dtype=dtype))

    def _slope(self, groups: Tensor | None) -> Tensor:
        return self.slope if self.groups is None else gather_rows(self.slope, groups)

    def fused_parameters(self, x: Tensor, groups: Tensor | None = None) -> ShiftedPReLUParameters:
        """The arguments of :class:`ShiftedPReLU` for an input shaped like ``x``: the slope rows, the two shifts
        ready to broadcast (``None`` for a plain PReLU) and the channel dimension."""
        return ShiftedPReLUParameters(self._slope(groups), None, None, self.channel_dim)

    def forward(self, x: Tensor, groups: Tensor | None = None) -> Tensor:
        return ShiftedPReLU.apply(x, *self.fused_parameters(x, groups))

    def extra_repr(self) -> str:
        extra = f", groups={self.groups}" if self.groups is not None else ""
        return f"{self.slope.shape[-1]}, channel_dim={self.channel_dim}{extra}"


@ACTIVATIONS.register("rprelu")
class RPReLU(ChannelPReLU):
    r"""ReActNet's RPReLU: a PReLU whose origin is moved by two learnable per-channel shifts.

    .. math:: y = \operatorname{PReLU}_a(x - \gamma) + \zeta

    with :math:`\gamma, \zeta` initialised to 0 and the slope :math:`a` to 0.25 (one value per channel each). Here
    the shifts are stored as ``shift_in`` :math:`= -\gamma` and ``shift_out`` :math:`= \zeta`.

    Reference: Liu, Shen, Savvides, Cheng, "ReActNet: Towards Precise Binary Neural Network with Generalized
    Activation Functions", ECCV 2020.
    """

    def __init__(
        self,
        num_channels: int,
        channel_dim: ChannelDim = 1,
        *,
        init: float = 0.25,
        groups: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(num_channels, channel_dim, init=init, groups=groups, device=device, dtype=dtype)
        self.shift_in = nn.Parameter(torch.zeros(self._shape, device=device, dtype=dtype))
        self.shift_out = nn.Parameter(torch.zeros(self._shape, device=device, dtype=dtype))

    def fused_parameters(self, x: Tensor, groups: Tensor | None = None) -> ShiftedPReLUParameters:
        """The slope rows and both shifts for an input shaped like ``x`` (see :meth:`ChannelPReLU.fused_parameters`)."""
        shift_in = channel_parameter(self.shift_in, x, self.channel_dim, self.groups, groups)
        shift_out = channel_parameter(self.shift_out, x, self.channel_dim, self.groups, groups)
        return ShiftedPReLUParameters(self._slope(groups), shift_in, shift_out, self.channel_dim)
