r"""Output activations of binary layers: RPReLU (ReActNet) and per-channel PReLU, in a registry by name."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from binarize._registry import Registry
from binarize.nn.channels import ChannelDim, channel_parameter, parameter_shape

ACTIVATIONS: Registry[type[nn.Module]] = Registry("activation")


@ACTIVATIONS.register("prelu")
class ChannelPReLU(nn.Module):
    r"""PReLU with one slope per channel: :math:`y = \max(0, x) + a_c \min(0, x)`, :math:`a_c` initialised to 0.25.

    Unlike :class:`torch.nn.PReLU` it also handles channels-last activations of linear layers, and with ``groups``
    it holds one slope vector per timestep group (see :mod:`binarize.nn.timestep`).

    Reference: He, Zhang, Ren, Sun, "Delving Deep into Rectifiers", ICCV 2015.
    """

    def __init__(
        self,
        num_channels: int,
        channel_dim: ChannelDim = 1,
        *,
        init: float = 0.25,
        groups: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.channel_dim: ChannelDim = channel_dim
        self.groups = groups
        self._shape = parameter_shape(num_channels, groups)
        self.slope = nn.Parameter(torch.full(self._shape, float(init), device=device, dtype=dtype))

    def _prelu(self, x: Tensor, groups: Tensor | None) -> Tensor:
        if self.channel_dim == 1 and self.groups is None:
            return nn.functional.prelu(x, self.slope)
        return torch.where(x > 0, x, x * channel_parameter(self.slope, x, self.channel_dim, self.groups, groups))

    def forward(self, x: Tensor, groups: Tensor | None = None) -> Tensor:
        return self._prelu(x, groups)

    def extra_repr(self) -> str:
        extra = f", groups={self.groups}" if self.groups is not None else ""
        return f"{self.slope.shape[-1]}, channel_dim={self.channel_dim}{extra}"


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
        groups: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(num_channels, channel_dim, init=init, groups=groups, device=device, dtype=dtype)
        self.shift_in = nn.Parameter(torch.zeros(self._shape, device=device, dtype=dtype))
        self.shift_out = nn.Parameter(torch.zeros(self._shape, device=device, dtype=dtype))

    def forward(self, x: Tensor, groups: Tensor | None = None) -> Tensor:
        h = self._prelu(x + channel_parameter(self.shift_in, x, self.channel_dim, self.groups, groups), groups)
        return h + channel_parameter(self.shift_out, x, self.channel_dim, self.groups, groups)
