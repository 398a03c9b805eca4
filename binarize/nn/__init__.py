"""Binary layers and their building blocks."""

from binarize.nn.activations import ACTIVATIONS, ChannelPReLU, RPReLU
from binarize.nn.layers import (
    LAYERS,
    OPTION_DEFAULTS,
    BinaryConv1d,
    BinaryConv2d,
    BinaryConvTranspose2d,
    BinaryLayerMixin,
    BinaryLinear,
    binary_class_for,
)
from binarize.nn.shift import LearnableBias

__all__ = [
    "ACTIVATIONS",
    "LAYERS",
    "OPTION_DEFAULTS",
    "BinaryConv1d",
    "BinaryConv2d",
    "BinaryConvTranspose2d",
    "BinaryLayerMixin",
    "BinaryLinear",
    "ChannelPReLU",
    "LearnableBias",
    "RPReLU",
    "binary_class_for",
]
