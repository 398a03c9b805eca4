"""Shared helpers of the deployment tests (tests/deploy): which implementations of the packed operations to test,
and the float64 oracle of a binary layer's accumulators."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from binarize.deploy.packed import binary_signs
from binarize.nn import BinaryConv1d, BinaryConv2d, BinaryConvTranspose2d, BinaryLinear
from binarize.nn.layers import BinaryLayerMixin


def _kernels_build() -> bool:
    if importlib.util.find_spec("binarize.deploy.kernels") is None:
        return False
    from binarize.deploy import kernels

    return bool(kernels.kernels_available())


#: ``compiled`` values to run the packed layers with: the pure-torch reference, and the compiled kernels where
#: they build (CI builds them).
IMPLEMENTATIONS = [pytest.param(False, id="reference"),
                   pytest.param(True, id="compiled", marks=pytest.mark.skipif(
                       not _kernels_build(), reason="the compiled kernels do not build here"))]


def signed(h: Tensor) -> Tensor:
    """The two-valued sign (0 -> +1) in float64."""
    return torch.where(h < 0, -1.0, 1.0).to(torch.float64)


def oracle_accumulators(layer: BinaryLayerMixin, x: Tensor, groups: Tensor | None = None,
                        output_size: list[int] | None = None) -> Tensor:
    """What the layer's operation computes on its binarized input and the weight signs, in float64 (exact)."""
    h = x if layer.shift is None else layer.shift(x, groups if layer.timestep_groups else None)
    s = signed(h.detach())
    w = binary_signs(layer)[0].to(torch.float64)
    if isinstance(layer, BinaryLinear):
        return s @ w.T
    if isinstance(layer, BinaryConvTranspose2d):
        op = layer._output_padding(x, output_size, layer.stride, layer.padding, layer.kernel_size, 2, layer.dilation)
        return F.conv_transpose2d(s, w, None, layer.stride, layer.padding, op, layer.groups, layer.dilation)
    assert isinstance(layer, (BinaryConv1d, BinaryConv2d))
    pads = layer._explicit_padding()
    if layer.padding_mode == "zeros":
        value = 0.0 if layer.pad_value is None else layer.pad_value
        s = F.pad(s, pads, value=value)
    else:
        s = F.pad(s, pads, mode=layer.padding_mode)
    conv = F.conv1d if isinstance(layer, BinaryConv1d) else F.conv2d
    return conv(s, w, None, layer.stride, 0, layer.dilation, layer.groups)
