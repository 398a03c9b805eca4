"""Per-channel parameters that broadcast over either channel layout, optionally stacked per timestep group.

Convolution activations keep channels in dimension 1 (``(B, C, ...)``), linear-layer activations in the last
dimension (``(..., C)``). Per-channel parameters are stored as vectors ``(C,)``, or stacked ``(K, C)`` with one row
per timestep group; a stacked parameter is gathered per sample with one indexing operation (``param[groups]``,
``(B, C)``), never with a Python loop over samples or groups, then viewed to broadcast.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

ChannelDim = Literal[1, -1]


def parameter_shape(num_channels: int, groups: int | None) -> tuple[int, ...]:
    """Shape of a per-channel parameter: ``(C,)``, or ``(K, C)`` stacked per timestep group."""
    return (num_channels,) if groups is None else (groups, num_channels)


def gather_rows(param: Tensor, groups: Tensor | None) -> Tensor:
    """The rows of a stacked ``(K, C)`` parameter for each sample: ``(B, C)`` for groups ``(B,)``, ``(C,)`` for a
    0-dim group shared by the batch.

    Raises:
        RuntimeError: no group indices were given.
    """
    if groups is None:
        raise RuntimeError(
            "a timestep-aware parameter needs the group index of each sample; the binarized model sets it from its "
            "timestep input (see binarize.nn.timestep)"
        )
    return param[groups]


def broadcast_channels(values: Tensor, x: Tensor, channel_dim: ChannelDim) -> Tensor:
    """View per-channel ``values`` so that they broadcast against ``x`` along ``channel_dim``.

    ``values`` is ``(C,)`` (one vector for the batch) or ``(B, C)`` (one row per sample, ``x`` batched).

    Examples:
        >>> import torch
        >>> broadcast_channels(torch.zeros(2, 3), torch.zeros(2, 3, 4, 5), 1).shape
        torch.Size([2, 3, 1, 1])
        >>> broadcast_channels(torch.zeros(2, 3), torch.zeros(2, 7, 3), -1).shape
        torch.Size([2, 1, 3])
    """
    ones = (1,) * (x.dim() - 2)
    if values.dim() == 1:
        return values if channel_dim == -1 or x.dim() <= 2 else values.view((1, -1) + ones)
    batch = values.shape[0]
    return values.view((batch,) + ones + (-1,)) if channel_dim == -1 else values.view((batch, -1) + ones)


def channel_parameter(
    param: Tensor, x: Tensor, channel_dim: ChannelDim, stacked: int | None, groups: Tensor | None
) -> Tensor:
    """A per-channel parameter ready to combine with ``x``: ``(C,)`` broadcast, or ``(K, C)`` gathered per sample.

    Raises:
        RuntimeError: a stacked (timestep-aware) parameter used without group indices.
    """
    return broadcast_channels(param if stacked is None else gather_rows(param, groups), x, channel_dim)
