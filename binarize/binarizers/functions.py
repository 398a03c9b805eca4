r"""Sign estimators as :class:`torch.autograd.Function` objects, and their surrogate gradients as plain functions.

Each function binarizes its input in the forward pass and replaces the (almost everywhere zero) derivative of the
sign function with a surrogate gradient in the backward pass. All of them take ``sign_of_zero``, the value that
:math:`x = 0` maps to: ``1.0`` (default, a true two-valued binarizer) or ``0.0`` (reproduces :func:`torch.sign`).

The backward formulas live in plain functions ``gradient(x, grad, *args)``, registered by binarizer name in
:data:`SURROGATE_GRADIENTS` and applied by :func:`surrogate_gradient`, so that a fused operation (see
:mod:`binarize.nn.functional`) can binarize inside its own autograd function and apply the same surrogate in its
backward pass.

Memory: a function saves either a boolean mask (1 byte per element) or its input when the surrogate needs the value;
never a float copy of an intermediate result.

Speed: the sign uses vectorised kernels only (:func:`torch.sign` and an in-place :func:`torch.copysign`), never
:func:`torch.where`, whose CPU kernel is many times slower; the backward passes work in place on one temporary
tensor where they can.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from binarize._registry import Registry


_CPU_SCALARS: dict[float, Tensor] = {value: torch.tensor(value, dtype=torch.float32) for value in (1.0, 2.0)}


def scalar_like(value: float, like: Tensor) -> Tensor:
    """A 0-dim tensor holding ``value`` to combine with ``like`` in an elementwise operation.

    For a CPU tensor this is one cached float32 scalar tensor per value, which costs no allocation; a 0-dim
    tensor's dtype yields to ``like``'s under type promotion, so the result has ``like``'s dtype (``value`` must be
    exact in every floating dtype, as small integers are). Elsewhere, a new tensor on ``like``'s device and dtype.

    Examples:
        >>> scalar_like(2.0, torch.zeros(3, dtype=torch.float64)).add(torch.zeros(3, dtype=torch.float64)).dtype
        torch.float64
    """
    if like.device.type != "cpu":
        return like.new_full((), value)
    scalar = _CPU_SCALARS.get(value)
    if scalar is None:
        with torch.inference_mode(False):
            scalar = _CPU_SCALARS.setdefault(value, torch.tensor(value, dtype=torch.float32))
    return scalar


def sign(x: Tensor, sign_of_zero: float = 1.0) -> Tensor:
    r"""Elementwise sign with a configurable value at zero.

    .. math:: \operatorname{sign}(x) = \begin{cases} +1 & x > 0 \\ s_0 & x = 0 \\ -1 & x < 0 \end{cases}

    ``sign_of_zero`` :math:`s_0` is ``1.0`` by default, which makes the output strictly binary (``-0.0`` maps to +1
    as well); ``0.0`` gives :func:`torch.sign`.

    Examples:
        >>> sign(torch.tensor([-2.0, -0.0, 0.0, 3.0])).tolist()
        [-1.0, 1.0, 1.0, 1.0]
        >>> sign(torch.tensor([-2.0, 0.0, 3.0]), sign_of_zero=0.0).tolist()
        [-1.0, 0.0, 1.0]
    """
    if sign_of_zero == 0.0:
        return torch.sign(x)
    if sign_of_zero == 1.0 and x.is_floating_point():
        return scaled_sign(x, None)
    return torch.where(x > 0, 1.0, torch.where(x < 0, -1.0, float(sign_of_zero))).to(x.dtype)


def scaled_sign(x: Tensor, scale: Tensor | None, sign_of_zero: float = 1.0) -> Tensor:
    r""":math:`\alpha \cdot \operatorname{sign}(x)` for a floating-point ``x`` and a non-negative ``scale``
    :math:`\alpha` broadcastable to it (``None``: :math:`\alpha = 1`), with ``sign_of_zero`` 1 or 0.

    Two vectorised passes for :math:`s_0 = 1`: :func:`torch.sign` (which maps both zeros to ``+0.0``), then
    :func:`torch.copysign` of :math:`\alpha` onto it in place, which gives :math:`+\alpha` at zero. Values equal
    ``alpha * sign(x, sign_of_zero)`` exactly.

    Examples:
        >>> scaled_sign(torch.tensor([[-2.0, 0.0], [3.0, -1.0]]), torch.tensor([[0.5], [2.0]])).tolist()
        [[-0.5, 0.5], [2.0, -2.0]]
    """
    signs = torch.sign(x)
    if sign_of_zero == 0.0:
        return signs if scale is None else signs.mul_(scale)
    magnitude = scalar_like(1.0, signs) if scale is None else scale
    if signs.requires_grad or magnitude.requires_grad:  # out= is not differentiable; keep the graph
        return torch.copysign(magnitude, signs)
    return torch.copysign(magnitude, signs, out=signs)


# ---------------------------------------------------------------------------------------------------------------
# Surrogate gradients: gradient(x, grad, *args) -> grad * F'(x), F the estimator's smooth stand-in for the sign
# ---------------------------------------------------------------------------------------------------------------
SURROGATE_GRADIENTS: Registry[Callable[..., Tensor]] = Registry("surrogate gradient")
r"""Binarizer name -> ``gradient(x, grad, *args, overwrite=False)``: :math:`g \cdot F'(x)` for the estimator's
surrogate derivative :math:`F'`, as a new tensor (which the caller may overwrite), or ``grad`` itself when
:math:`F' = 1`; with ``overwrite=True``, ``grad`` is a temporary that may hold the result instead. ``x`` carries no
gradient. A function may also take ``signs=None``: :math:`\operatorname{sign}(x)` as a temporary it may overwrite
(a fused layer has it at hand). See :func:`surrogate_gradient`."""


@SURROGATE_GRADIENTS.register("ste")
def ste_gradient(x: Tensor, grad: Tensor, *, overwrite: bool = False) -> Tensor:
    r"""Straight-through: :math:`F'(x) = 1`, so ``grad`` itself."""
    return grad


@SURROGATE_GRADIENTS.register("clipped_ste")
def clipped_ste_gradient(
    x: Tensor, grad: Tensor, clip: float = 1.0, bounds: tuple[float, float] | None = None, *, overwrite: bool = False
) -> Tensor:
    r"""Clipped straight-through: :math:`g \cdot \mathbb{1}_{|x| \le c}`.

    For float32 and float64 this is one pass of hardtanh's backward kernel, which keeps ``grad`` where
    :math:`-c' < x < c'`; with :math:`c'` the next representable value above :math:`c` (``bounds``, from
    :func:`clip_bounds`, computed here when not given), that is exactly :math:`|x| \le c`.

    Examples:
        >>> clipped_ste_gradient(torch.tensor([-1.0, 1.5, 0.2]), torch.tensor([2.0, 2.0, 2.0])).tolist()
        [2.0, 0.0, 2.0]
    """
    if x.dtype in (torch.float32, torch.float64):
        above32, above64 = bounds if bounds is not None else clip_bounds(clip)
        bound = above64 if x.dtype == torch.float64 else above32
        if overwrite:
            return torch.ops.aten.hardtanh_backward.grad_input(grad, x, -bound, bound, grad_input=grad)
        return torch.ops.aten.hardtanh_backward(grad, x, -bound, bound)
    inside = x.abs() <= clip
    return grad.mul_(inside) if overwrite else grad * inside


def clip_bounds(clip: float) -> tuple[float, float]:
    """The smallest float32 and float64 values above ``clip`` (for float32, ``clip`` rounded to float32 first).

    Examples:
        >>> clip_bounds(1.0)
        (1.0000001192092896, 1.0000000000000002)
    """
    if not abs(clip) < 3.4e38:  # beyond float32: every float32 lies inside
        return math.inf, math.nextafter(clip, math.inf)
    (single,) = struct.unpack("<f", struct.pack("<f", clip))
    (bits,) = struct.unpack("<i", struct.pack("<f", single))
    step = 1 if single >= 0 else -1
    if single == 0:
        bits, step = 0, 1
    (above32,) = struct.unpack("<f", struct.pack("<i", bits + step))
    return above32, math.nextafter(clip, math.inf)


@SURROGATE_GRADIENTS.register("approx_sign")
def approx_sign_gradient(
    x: Tensor, grad: Tensor, *, overwrite: bool = False, signs: Tensor | None = None
) -> Tensor:
    r"""ApproxSign: :math:`g \cdot \max(0,\ 2 - 2|x|)`, computed in place on one tensor.

    That tensor is ``signs`` when given (:math:`\operatorname{sign}(x)`, any value at :math:`x = 0`: a temporary of
    the caller's, such as the signs a fused layer no longer needs), so that no activation-sized tensor is allocated;
    then :math:`2 - 2|x| = 2 - 2\,x \operatorname{sign}(x)` is one multiply-add pass (the products by 2 and by
    :math:`\pm 1` are exact, so the values are those of :math:`2 - 2|x|`). Without it, :math:`|x|` goes into a new
    tensor first.

    Examples:
        >>> approx_sign_gradient(torch.tensor([-1.5, -0.5, 0.0, 0.25, 1.0]), torch.ones(5)).tolist()
        [0.0, 1.0, 2.0, 1.5, 0.0]
        >>> x = torch.tensor([-1.5, -0.5, 0.0, 0.25, 1.0])
        >>> approx_sign_gradient(x, torch.ones(5), signs=torch.sign(x)).tolist()
        [0.0, 1.0, 2.0, 1.5, 0.0]
    """
    if signs is None:
        derivative = x.abs()
        torch.sub(scalar_like(2.0, derivative), derivative, alpha=2.0, out=derivative)  # 2 - 2|x|
    else:
        derivative = torch.addcmul(scalar_like(2.0, signs), x, signs, value=-2.0, out=signs)  # 2 - 2 x sign(x)
    return derivative.clamp_min_(0.0).mul_(grad)


@SURROGATE_GRADIENTS.register("swish_sign")
def swish_sign_gradient(x: Tensor, grad: Tensor, beta: float = 5.0, *, overwrite: bool = False) -> Tensor:
    r"""SignSwish: :math:`g \cdot \beta\,(2 - \beta x \tanh(\beta x / 2)) / (1 + \cosh(\beta x))`."""
    bx = beta * x
    # cosh overflows to inf for large |bx|, where the derivative is 0; the formula then gives 0 as well.
    derivative = beta * (2.0 - bx * torch.tanh(bx / 2.0)) / (1.0 + torch.cosh(bx))
    return derivative.mul_(grad)


@SURROGATE_GRADIENTS.register("ede")
def ede_gradient(x: Tensor, grad: Tensor, k: Tensor, t: Tensor, *, overwrite: bool = False) -> Tensor:
    r"""EDE: :math:`g \cdot k\,t\,(1 - \tanh^2(t x))` (``k``, ``t``: 0-dim tensors of ``x``'s dtype)."""
    tanh = torch.tanh(t * x)
    return (grad.mul_(k * t) if overwrite else grad * (k * t)).mul_(1.0 - tanh * tanh)


class Surrogate(NamedTuple):
    """A binarizer in fused form: forward ``sign(x, sign_of_zero)``, backward ``surrogate_gradient(name, x, grad,
    args)`` (see :meth:`binarize.binarizers.Binarizer.surrogate`); ``uses_signs``: the gradient function takes the
    ``signs`` work space."""

    name: str
    args: tuple[Any, ...] = ()
    sign_of_zero: float = 1.0
    uses_signs: bool = False


def surrogate_gradient(
    name: str,
    x: Tensor,
    grad: Tensor,
    args: tuple[Any, ...] = (),
    scale: Tensor | None = None,
    *,
    overwrite: bool = False,
    signs: Tensor | None = None,
) -> Tensor:
    r"""The backward pass of the estimator ``name`` at ``x``: :math:`g_x = F'(x) \cdot g_y\,[\cdot\,\alpha]`.

    ``scale`` (:math:`\alpha`, broadcastable to ``x``) is the factor of a scaled binary weight
    :math:`\alpha\operatorname{sign}(x)`. The surrogate is evaluated on ``x``'s values (it is not itself
    differentiated). ``overwrite=True`` allows writing the result into ``grad`` (a temporary of the caller's), which
    saves an allocation. ``signs``, :math:`\operatorname{sign}(x)` as a temporary the caller no longer needs, is
    handed to the surrogate as its work space; pass it only to a surrogate that takes it (see
    :attr:`Surrogate.uses_signs`).

    Examples:
        >>> surrogate_gradient("clipped_ste", torch.tensor([0.5, 2.0]), torch.tensor([3.0, 3.0])).tolist()
        [3.0, 0.0]
    """
    gradient = SURROGATE_GRADIENTS.get(name)
    if x.requires_grad and torch.is_grad_enabled():
        x = x.detach()
    if signs is not None:
        result = gradient(x, grad, *args, overwrite=overwrite, signs=signs)
    else:
        result = gradient(x, grad, *args, overwrite=overwrite)
    if scale is None:
        return result
    return result * scale if result is grad and not overwrite else result.mul_(scale)


# ---------------------------------------------------------------------------------------------------------------
# Autograd functions
# ---------------------------------------------------------------------------------------------------------------
class SignSTE(torch.autograd.Function):
    r"""Sign with the plain straight-through estimator.

    Forward: :math:`y = \operatorname{sign}(x)`. Backward: :math:`\partial y / \partial x := 1`, so
    :math:`g_x = g_y`.

    Reference: Bengio, Léonard, Courville, "Estimating or Propagating Gradients Through Stochastic Neurons for
    Conditional Computation", arXiv:1308.3432, 2013.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, sign_of_zero: float = 1.0) -> Tensor:
        return sign(x, sign_of_zero)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


class SignClippedSTE(torch.autograd.Function):
    r"""Sign with the clipped straight-through estimator of BinaryNet.

    Forward: :math:`y = \operatorname{sign}(x)`. Backward: the gradient of :math:`\operatorname{htanh}(x / c)\,c`,

    .. math:: g_x = g_y \cdot \mathbb{1}_{|x| \le c}, \qquad c = 1 \text{ by default.}

    Reference: Hubara, Courbariaux, Soudry, El-Yaniv, Bengio, "Binarized Neural Networks", NeurIPS 2016.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, sign_of_zero: float = 1.0, clip: float = 1.0) -> Tensor:
        ctx.save_for_backward(x.abs() <= clip)
        return sign(x, sign_of_zero)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None


class SignApprox(torch.autograd.Function):
    r"""Sign with the piecewise-polynomial ApproxSign gradient of Bi-Real Net.

    Forward: :math:`y = \operatorname{sign}(x)`. Backward: the derivative of the piecewise quadratic
    :math:`F(x) = -1` for :math:`x < -1`, :math:`2x + x^2` on :math:`[-1, 0)`, :math:`2x - x^2` on :math:`[0, 1)`,
    :math:`1` above, i.e.

    .. math:: g_x = g_y \cdot \max(0,\ 2 - 2|x|).

    Reference: Liu, Wu, Luo, Yang, Liu, Cheng, "Bi-Real Net: Enhancing the Performance of 1-bit CNNs with Improved
    Representational Capability and Advanced Training Algorithm", ECCV 2018.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, sign_of_zero: float = 1.0) -> Tensor:
        ctx.save_for_backward(x)
        return sign(x, sign_of_zero)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        return surrogate_gradient("approx_sign", x, grad), None


class SignSwish(torch.autograd.Function):
    r"""Sign with the SignSwish gradient of BNN+.

    Forward: :math:`y = \operatorname{sign}(x)`. Backward: the derivative of
    :math:`SS_\beta(x) = 2\sigma(\beta x)\,[1 + \beta x (1 - \sigma(\beta x))] - 1`,

    .. math:: g_x = g_y \cdot \frac{\beta\,\bigl(2 - \beta x \tanh(\beta x / 2)\bigr)}{1 + \cosh(\beta x)}.

    Reference: Darabi, Belbahri, Courbariaux, Partovi Nia, "BNN+: Improved Binary Network Training", 2018
    (arXiv:1812.11800).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, sign_of_zero: float = 1.0, beta: float = 5.0) -> Tensor:
        ctx.save_for_backward(x)
        ctx.beta = beta
        return sign(x, sign_of_zero)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (x,) = ctx.saved_tensors
        return surrogate_gradient("swish_sign", x, grad, (ctx.beta,)), None, None


class SignEDE(torch.autograd.Function):
    r"""Sign with the Error Decay Estimator (EDE) of IR-Net.

    Forward: :math:`y = \operatorname{sign}(x)`. Backward: the derivative of :math:`k \tanh(t x)`,

    .. math:: g_x = g_y \cdot k\,t\,\bigl(1 - \tanh^2(t x)\bigr),

    where :math:`t` and :math:`k` follow the training progress :math:`p \in [0, 1]`:
    :math:`t = T_{min} \cdot 10^{\,p \log_{10}(T_{max} / T_{min})}` and :math:`k = \max(1 / t, 1)`, with
    :math:`T_{min} = 0.1`, :math:`T_{max} = 10` (see :func:`ede_coefficients`). Early in training the surrogate is
    close to the identity (strong updates); late, close to the sign (small mismatch).

    Reference: Qin, Gong, Liu, Shen, Wei, Yu, Song, "Forward and Backward Information Retention for Accurate Binary
    Neural Networks" (IR-Net), CVPR 2020.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, sign_of_zero: float, k: Tensor, t: Tensor) -> Tensor:
        # k and t are 0-dim tensors so that a changing schedule never forces torch.compile to recompile.
        ctx.save_for_backward(x, k, t)
        return sign(x, sign_of_zero)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        x, k, t = ctx.saved_tensors
        return surrogate_gradient("ede", x, grad, (k, t)), None, None, None


def ede_coefficients(progress: float, t_min: float = 0.1, t_max: float = 10.0) -> tuple[float, float]:
    r"""The EDE coefficients :math:`(k, t)` at training progress ``progress`` in [0, 1].

    .. math:: t = T_{min} \cdot 10^{\,p \log_{10}(T_{max}/T_{min})}, \qquad k = \max(1/t,\ 1).
    """
    p = min(max(float(progress), 0.0), 1.0)
    t = t_min * 10.0 ** (p * math.log10(t_max / t_min))
    return max(1.0 / t, 1.0), t


class Heaviside(torch.autograd.Function):
    r"""Unit step to {0, 1} with a clipped straight-through gradient (DoReFa-style 1-bit activations).

    Forward: :math:`y = \mathbb{1}_{x > \theta}`, with :math:`y = s_0` at :math:`x = \theta` where
    :math:`s_0` is 1 by default (``sign_of_zero=1``) and 0 with ``sign_of_zero=0``. Backward:

    .. math:: g_x = g_y \cdot \mathbb{1}_{|x - \theta| \le c}.

    With :math:`\theta = 0.5,\ c = 0.5` this is DoReFa-Net's 1-bit activation quantizer
    :math:`\operatorname{round}(\operatorname{clip}(x, 0, 1))` with its straight-through gradient on :math:`[0, 1]`.

    Reference: Zhou, Wu, Ni, Zhou, Wen, Zou, "DoReFa-Net: Training Low Bitwidth Convolutional Neural Networks with
    Low Bitwidth Gradients", arXiv:1606.06160, 2016.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, sign_of_zero: float = 1.0, threshold: float = 0.0, clip: float = 1.0
    ) -> Tensor:
        shifted = x - threshold
        ctx.save_for_backward(shifted.abs() <= clip)
        return (sign(shifted, sign_of_zero) + 1.0) * 0.5 if sign_of_zero != 0.0 else (shifted > 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None
