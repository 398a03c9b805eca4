"""Per-channel parameters that broadcast over either channel layout.

Convolution activations keep channels in dimension 1 (``(B, C, ...)``), linear-layer activations in the last
dimension (``(..., C)``). Per-channel parameters are stored as vectors ``(C,)`` and viewed to broadcast.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

ChannelDim = Literal[1, -1]


def broadcast_channels(vector: Tensor, x: Tensor, channel_dim: ChannelDim) -> Tensor:
    """View a ``(C,)`` vector so that it broadcasts against ``x`` along ``channel_dim``."""
    if channel_dim == -1 or x.dim() <= 2:
        return vector
    return vector.view((1, -1) + (1,) * (x.dim() - 2))
