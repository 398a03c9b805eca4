r"""The BI-Conv unit of BI-DiffSR, as a configuration of the core binary convolution.

For an input :math:`x` with :math:`C` channels and the sample's timestep group :math:`g`:

.. math::
    \begin{gathered}
    x_r = x + b_g \quad (\text{TaR}), \qquad
    y = \operatorname{conv}\bigl(\operatorname{sign}(x_r),\ \alpha \operatorname{sign}(W)\bigr), \\
    \text{out} = \operatorname{RPReLU}_g(y) + x \quad (\text{TaA, identity shortcut})
    \end{gathered}

* :math:`\operatorname{sign}(x_r)` has the ApproxSign gradient (:math:`2 + 2x` on :math:`[-1, 0)`, :math:`2 - 2x` on
  :math:`[0, 1)`, 0 elsewhere);
* :math:`\alpha` is the mean of :math:`|W|` over each output channel's weights, without gradient; the gradient to
  :math:`W` is straight-through, masked to :math:`|W| \le 1`: :math:`\partial L / \partial W = \alpha \odot
  \partial L / \partial \hat W \odot \mathbb{1}_{|W| \le 1}` by default (the chain rule through
  :math:`\hat W = \alpha \operatorname{sign}(W)`), and without the factor :math:`\alpha` with ``release=True``,
  as the authors' release trains (layer option ``scale_gradient``, see
  :func:`~binarize.nn.functional.scale_binary`);
* there is no convolution bias (a bias of the full-precision layer is folded into RPReLU's input shift, which
  computes the same function);
* :math:`b_g` (TaR) and the RPReLU (TaA: shift, per-channel PReLU with slope 0.25 at initialisation, shift) exist
  once per timestep group, stacked ``(K, C)`` and gathered per sample.

``sign(0)`` is +1 (strictly binary); ``release=True`` maps 0 to 0 as the authors' release does (``torch.sign``), and
leaves :math:`\alpha` out of the weight's gradient as the release does.

Reference: Chen et al., "Binarized Diffusion Model for Image Super-Resolution" (BI-DiffSR), NeurIPS 2024, Sec. 3.1
and 3.4.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from binarize.nn import BinaryConv2d

__all__ = ["bi_conv", "bi_conv_options", "binarize_branches"]


def bi_conv_options(timestep_groups: int | None = 5, *, release: bool = False) -> dict[str, Any]:
    """The binary-layer options that make a ``BinaryConv2d`` a BI-Conv (``timestep_groups=None``: no TaR/TaA groups;
    ``release=True``: the authors' release, with ``sign(0) = 0`` and ``scale_gradient=False``).

    Examples:
        >>> sorted(bi_conv_options())[:4]
        ['activation', 'fold_bias', 'input_binarizer', 'input_shift']
    """
    zero = {"sign_of_zero": 0.0} if release else {}
    return {
        "input_binarizer": {"name": "approx_sign", **zero},
        "weight_binarizer": {"name": "clipped_ste", **zero},
        "scale": "channel_mean_abs",
        "scale_gradient": not release,
        "input_shift": True,
        "activation": "rprelu",
        "shortcut": True,
        "fold_bias": True,
        "timestep_groups": timestep_groups,
    }


def bi_conv(
    channels: int, kernel_size: int = 3, *, timestep_groups: int | None = 5, release: bool = False
) -> BinaryConv2d:
    """A new BI-Conv: ``channels -> channels``, stride 1, padding ``kernel_size // 2``, no bias.

    Examples:
        >>> import torch
        >>> unit = bi_conv(8)
        >>> unit(torch.randn(2, 8, 5, 5), timestep_groups=torch.tensor([0, 4])).shape
        torch.Size([2, 8, 5, 5])
    """
    return BinaryConv2d(
        channels, channels, kernel_size, padding=kernel_size // 2, bias=False,
        **bi_conv_options(timestep_groups, release=release),
    )


def binarize_branches(block: nn.Module, **options: Any) -> nn.Module:
    """A copy of ``block`` (a CP-Down, CP-Up or CS-Fusion) whose ``Conv2d`` branches are BI-Convs.

    Args:
        block: a block with full-precision branches (``block.branches``).
        **options: overrides of :func:`bi_conv_options` (``timestep_groups``, ``release``).
    """
    new = copy.deepcopy(block)
    branch_options = bi_conv_options(**options)
    branches = getattr(new, "branches", None)
    if not isinstance(branches, nn.ModuleList):
        raise TypeError(f"expected a block with a `branches` ModuleList, got {type(block).__name__}")
    for i, branch in enumerate(branches):
        branches[i] = BinaryConv2d.from_float(branch, **branch_options)
    return new
