r"""Output activations of binary layers: RPReLU (ReActNet) and per-channel PReLU, in a registry by name."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from binarize._registry import Registry
from binarize.nn.channels import ChannelDim, broadcast_channels

ACTIVATIONS: Registry[type[nn.Module]] = Registry("activation")


@ACTIVATIONS.register("prelu")
class ChannelPReLU(nn.Module):
    r"""PReLU with one slope per channel: :math:`y = \max(0, x) + a_c \min(0, x)`, :math:`a_c` initialised to 0.25.

    Unlike :class:`torch.nn.PReLU` it also handles channels-last activations of linear layers.

    Reference: He, Zhang, Ren, Sun, "Delving Deep into Rectifiers", ICCV 2015.
    """

    def __init__(
        self,
        num_channels: int,
        channel_dim: ChannelDim = 1,
        *,
        init: float = 0.25,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.channel_dim: ChannelDim = channel_dim
        self.slope = nn.Parameter(torch.full((num_channels,), float(init), device=device, dtype=dtype))

    def _prelu(self, x: Tensor) -> Tensor:
        if self.channel_dim == 1:
            return nn.functional.prelu(x, self.slope)
        return torch.where(x > 0, x, x * self.slope)

    def forward(self, x: Tensor) -> Tensor:
        return self._prelu(x)

    def extra_repr(self) -> str:
        return f"{self.slope.numel()}, channel_dim={self.channel_dim}"


@ACTIVATIONS.register("rprelu")
class RPReLU(ChannelPReLU):
    r"""ReActNet's RPReLU: a PReLU whose origin is moved by two learnable per-channel shifts.

    .. math:: y = \operatorname{PReLU}_a(x - \gamma) + \zeta

    with :math:`\gamma, \zeta` initialised to 0 and the slope :math:`a` to 0.25 (one value per channel each). Here
    the shifts are stored as ``shift_in`` :math:`= -\gamma` and ``shift_out`` :math:`= \zeta`.

    Reference: Liu, Shen, Savvides, Cheng, "ReActNet: Towards Precise Binary Neural Network with Generalized
    Activation Functions", ECCV 2020.
    """

    def __init__(
        self,
        num_channels: int,
        channel_dim: ChannelDim = 1,
        *,
        init: float = 0.25,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(num_channels, channel_dim, init=init, device=device, dtype=dtype)
        self.shift_in = nn.Parameter(torch.zeros(num_channels, device=device, dtype=dtype))
        self.shift_out = nn.Parameter(torch.zeros(num_channels, device=device, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        h = self._prelu(x + broadcast_channels(self.shift_in, x, self.channel_dim))
        return h + broadcast_channels(self.shift_out, x, self.channel_dim)
