r"""Learnable per-channel shift applied before an activation binarizer (the "RSign" of ReActNet)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from binarize.nn.channels import ChannelDim, broadcast_channels


class LearnableBias(nn.Module):
    r"""Adds a learnable per-channel bias: :math:`y = x + b`, :math:`b \in \mathbb{R}^C` initialised to 0.

    Placed in front of a sign, it learns the binarization threshold of each channel:
    :math:`\operatorname{sign}(x + b)` is ReActNet's RSign.

    Reference: Liu, Shen, Savvides, Cheng, "ReActNet: Towards Precise Binary Neural Network with Generalized
    Activation Functions", ECCV 2020.

    Args:
        num_channels: number of channels :math:`C`.
        channel_dim: ``1`` for ``(B, C, ...)`` activations (convolutions), ``-1`` for ``(..., C)`` (linear layers).
    """

    def __init__(
        self,
        num_channels: int,
        channel_dim: ChannelDim = 1,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.channel_dim: ChannelDim = channel_dim
        self.bias = nn.Parameter(torch.zeros(num_channels, device=device, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        return x + broadcast_channels(self.bias, x, self.channel_dim)

    def extra_repr(self) -> str:
        return f"{self.bias.numel()}, channel_dim={self.channel_dim}"
