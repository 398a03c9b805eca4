r"""Dimension-consistent downsampling (the reduction block of Bi-Real Net and ReActNet).

A binary convolution that halves the resolution and doubles the channels cannot carry an identity shortcut, so the
full-precision information of its input is lost. ReActNet's reduction block keeps every binary convolution
shape-preserving instead:

.. math:: y = \operatorname{concat}\bigl(\operatorname{conv}_a(p),\ \operatorname{conv}_b(p)\bigr), \qquad
          p = \operatorname{AvgPool}_{2\times 2}(x)

with two :math:`C \to C` stride-1 convolutions, each of which may then carry its own identity shortcut (the layer
rules' ``shortcut: auto`` adds them when the convolutions are binarized).

Reference: Liu et al., "ReActNet: Towards Precise Binary Neural Network with Generalized Activation Functions",
ECCV 2020 (Fig. 2, the reduction block); Liu et al., "Bi-Real Net", ECCV 2018.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from binarize.errors import UnsupportedLayerError

__all__ = ["ConsistentDownsample"]


class ConsistentDownsample(nn.Module):
    """``AvgPool2d(2)`` feeding ``branches`` stride-1 convolutions ``C -> C``, concatenated along channels.

    Not function-preserving: it replaces a strided convolution by pooling plus stride-1 convolutions. Built with
    :meth:`from_conv`, each branch starts from one half of the strided convolution's output channels (its weights
    and bias), a reasonable initialisation, not an equivalence.

    Args:
        channels: input channels ``C``; the output has ``branches * C``.
        kernel_size: of each branch.
        padding: of each branch (stride 1, so it keeps the size when ``2 * padding == dilation * (kernel_size - 1)``).
        dilation: of each branch.
        bias: whether each branch has a bias.
        ceil_mode: of the pooling; ``True`` reproduces the ``ceil(H / 2)`` outputs of a strided "same" convolution.
        branches: how many ``C -> C`` convolutions (2 doubles the channels).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: tuple[int, int] = (3, 3),
        padding: tuple[int, int] = (1, 1),
        dilation: tuple[int, int] = (1, 1),
        bias: bool = False,
        ceil_mode: bool = True,
        branches: int = 2,
    ) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(2, stride=2, ceil_mode=ceil_mode, count_include_pad=False)
        self.branches = nn.ModuleList(
            nn.Conv2d(channels, channels, kernel_size, padding=padding, dilation=dilation, bias=bias)
            for _ in range(branches)
        )

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.pool(x)
        return torch.cat([branch(pooled) for branch in self.branches], dim=1)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> ConsistentDownsample:
        """Build the block replacing ``conv`` (stride 2, ``out_channels`` a multiple of ``in_channels``).

        Raises:
            UnsupportedLayerError: when ``conv`` cannot be made dimension-consistent (another stride, grouped,
                output channels not a multiple of the input channels, non-zero padding modes, or padding other than
                "same", ``2 * padding == dilation * (kernel_size - 1)``).
        """
        if not isinstance(conv, nn.Conv2d):
            raise UnsupportedLayerError(f"expected a Conv2d, got {type(conv).__name__}")
        cin, cout = conv.in_channels, conv.out_channels
        problems = []
        if tuple(conv.stride) != (2, 2):
            problems.append(f"stride {tuple(conv.stride)} is not (2, 2)")
        if conv.groups != 1:
            problems.append(f"groups={conv.groups} (only ungrouped convolutions)")
        if cout % cin:
            problems.append(f"out_channels {cout} is not a multiple of in_channels {cin}")
        if conv.padding_mode != "zeros":
            problems.append(f"padding_mode={conv.padding_mode!r}")
        if isinstance(conv.padding, str):
            problems.append(f"padding={conv.padding!r}")
        elif any(2 * p != d * (k - 1) for p, d, k in zip(conv.padding, conv.dilation, conv.kernel_size)):
            # stride-1 branches keep the pooled size only with "same" padding; the strided conv then gives ceil(H/2)
            problems.append(
                f"padding {tuple(conv.padding)} is not 'same' for kernel {tuple(conv.kernel_size)} and dilation "
                f"{tuple(conv.dilation)} (needs 2 * padding == dilation * (kernel_size - 1))"
            )
        if problems:
            raise UnsupportedLayerError(
                f"cannot make {conv} dimension-consistent: " + "; ".join(problems)
            )
        block = cls(
            cin, tuple(conv.kernel_size), tuple(conv.padding), tuple(conv.dilation), conv.bias is not None,
            ceil_mode=True, branches=cout // cin,
        ).to(device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            for i, branch in enumerate(block.branches):
                branch.weight.copy_(conv.weight[i * cin : (i + 1) * cin])
                if conv.bias is not None:
                    branch.bias.copy_(conv.bias[i * cin : (i + 1) * cin])
        block.train(conv.training)
        return block
