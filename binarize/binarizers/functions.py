r"""Sign estimators as :class:`torch.autograd.Function` objects.

Each function binarizes its input in the forward pass and replaces the (almost everywhere zero) derivative of the
sign function with a surrogate gradient in the backward pass. All of them take ``sign_of_zero``, the value that
:math:`x = 0` maps to: ``1.0`` (default, a true two-valued binarizer) or ``0.0`` (reproduces :func:`torch.sign`).

Memory: a function saves either a boolean mask (1 byte per element) or its input when the surrogate needs the value;
never a float copy of an intermediate result.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


def sign(x: Tensor, sign_of_zero: float = 1.0) -> Tensor:
    r"""Elementwise sign with a configurable value at zero.

    .. math:: \operatorname{sign}(x) = \begin{cases} +1 & x > 0 \\ s_0 & x = 0 \\ -1 & x < 0 \end{cases}

    ``sign_of_zero`` :math:`s_0` is ``1.0`` by default, which makes the output strictly binary; ``0.0`` gives
    :func:`torch.sign`.
    """
    if sign_of_zero == 0.0:
        return torch.sign(x)
    if sign_of_zero == 1.0:
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
    return torch.where(x > 0, 1.0, torch.where(x < 0, -1.0, float(sign_of_zero))).to(x.dtype)


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
        return grad * (2.0 - 2.0 * x.abs()).clamp_(min=0.0), None


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
        bx = ctx.beta * x
        # cosh overflows to inf for large |bx|, where the derivative is 0; the formula then gives 0 as well.
        derivative = ctx.beta * (2.0 - bx * torch.tanh(bx / 2.0)) / (1.0 + torch.cosh(bx))
        return grad * derivative, None, None


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
        tanh = torch.tanh(t * x)
        return grad * (k * t) * (1.0 - tanh * tanh), None, None, None


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
