"""Per-channel parameters that broadcast over either channel layout.

Convolution activations keep channels in dimension 1 (``(B, C, ...)``), linear-layer activations in the last
dimension (``(..., C)``). Per-channel parameters are stored as vectors ``(C,)`` and viewed to broadcast.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

ChannelDim = Literal[1, -1]


def parameter_shape(num_channels: int, groups: int | None) -> tuple[int, ...]:
    """Shape of a per-channel parameter: ``(C,)``, or ``(K, C)`` stacked per timestep group."""
    return (num_channels,) if groups is None else (groups, num_channels)


def broadcast_channels(vector: Tensor, x: Tensor, channel_dim: ChannelDim) -> Tensor:
    """View a ``(C,)`` vector so that it broadcasts against ``x`` along ``channel_dim``."""
    if channel_dim == -1 or x.dim() <= 2:
        return vector
    return vector.view((1, -1) + (1,) * (x.dim() - 2))


def channel_parameter(
    param: Tensor, x: Tensor, channel_dim: ChannelDim, stacked: int | None, groups: Tensor | None
) -> Tensor:
    """A per-channel parameter ready to combine with ``x``: ``(C,)`` broadcast, or ``(K, C)`` gathered per sample.

    Raises:
        RuntimeError: a stacked (timestep-aware) parameter used without group indices.
    """
    if stacked is None:
        return broadcast_channels(param, x, channel_dim)
    if groups is None:
        raise RuntimeError(
            "a timestep-aware parameter needs the group index of each sample; the binarized model sets it from its "
            "timestep input (see binarize.nn.timestep)"
        )
    from binarize.nn.timestep import gather_groups

    return gather_groups(param, groups, x, channel_dim)
