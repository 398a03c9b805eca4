r"""Learnable per-channel shift applied before an activation binarizer (the "RSign" of ReActNet)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from binarize.nn.channels import ChannelDim, channel_parameter, parameter_shape


class LearnableBias(nn.Module):
    r"""Adds a learnable per-channel bias: :math:`y = x + b`, :math:`b \in \mathbb{R}^C` initialised to 0.

    Placed in front of a sign, it learns the binarization threshold of each channel:
    :math:`\operatorname{sign}(x + b)` is ReActNet's RSign.

    Reference: Liu, Shen, Savvides, Cheng, "ReActNet: Towards Precise Binary Neural Network with Generalized
    Activation Functions", ECCV 2020.

    Args:
        num_channels: number of channels :math:`C`.
        channel_dim: ``1`` for ``(B, C, ...)`` activations (convolutions), ``-1`` for ``(..., C)`` (linear layers).
        groups: with a number :math:`K`, one bias per timestep group, stored ``(K, C)`` and gathered per sample
            (see :mod:`binarize.nn.timestep`); ``forward`` then needs the group indices.
    """

    def __init__(
        self,
        num_channels: int,
        channel_dim: ChannelDim = 1,
        *,
        groups: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.channel_dim: ChannelDim = channel_dim
        self.groups = groups
        self.bias = nn.Parameter(torch.zeros(parameter_shape(num_channels, groups), device=device, dtype=dtype))

    def broadcast(self, x: Tensor, groups: Tensor | None = None) -> Tensor:
        """The bias ready to add to ``x``: viewed to broadcast, gathered per sample when timestep-aware."""
        return channel_parameter(self.bias, x, self.channel_dim, self.groups, groups)

    def forward(self, x: Tensor, groups: Tensor | None = None) -> Tensor:
        return x + self.broadcast(x, groups)

    def extra_repr(self) -> str:
        extra = f", groups={self.groups}" if self.groups is not None else ""
        return f"{self.bias.shape[-1]}, channel_dim={self.channel_dim}{extra}"
