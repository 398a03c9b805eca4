r"""BI-DiffSR's dimension-consistent blocks: CP-Down, CP-Up and CS-Fusion, built from channel-preserving branches.

A binary convolution keeps full-precision information flowing only through an identity shortcut, and a shortcut
needs equal input and output shapes. BI-DiffSR therefore writes every convolution that changes the channel count
as several :math:`m \to m` convolutions (*branches*), :math:`m = \min(C_\text{in}, C_\text{out})`:

* :math:`C_\text{in} = n\,m` (fewer outputs): the input is split into :math:`n` channel chunks, branch :math:`i`
  convolves chunk :math:`i`, and the outputs are summed, :math:`y = \sum_i \operatorname{conv}_i(x_i)`;
* :math:`C_\text{out} = n\,m` (more outputs): every branch sees the whole input and the outputs are concatenated,
  :math:`y = [\operatorname{conv}_1(x), \dots, \operatorname{conv}_n(x)]`.

Built from a full-precision convolution (:meth:`BranchedConv.from_conv`), the branches hold the slices of its
weight (input channels for a sum, output channels for a concatenation), so the block computes exactly what the
convolution computed. The layer rules of a recipe then binarize each branch and give it an identity shortcut
(``shortcut: auto``).

* :class:`CPDown` (consistent-pixel downsampling): branches, then ``PixelUnshuffle(r)``; the release's CP-Down,
  :math:`C \to 2C` channels and :math:`H \to H/2`, is two :math:`C/2 \to C/2` branches on the two halves of the
  input, summed. The generalised form can also unshuffle *first* (a strided convolution is exactly a
  ``PixelUnshuffle`` followed by a stride-1 convolution, see
  :func:`~binarize.plugins.bidiffsr.conversions.strided_to_unshuffled`).
* :class:`CPUp` (consistent-pixel upsampling): branches concatenated, then ``PixelShuffle(r)``; the release's CP-Up,
  :math:`C \to C/2` channels and :math:`H \to 2H`, is two :math:`C \to C` branches.
* :class:`CSFusion` (channel-shuffle fusion of a skip connection): the decoder tensor and the skip tensor
  (:math:`C` channels each) are interleaved by channel parity into two :math:`C`-channel tensors, each convolved by
  a :math:`1 \times 1` branch, and the results summed.

Reference: Chen, Zhang, Gu, Kong, Zhang, Yang, Ding, "Binarized Diffusion Model for Image Super-Resolution"
(BI-DiffSR), NeurIPS 2024, Sections 3.2-3.3 and Fig. 3.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from binarize.errors import UnsupportedLayerError

__all__ = ["BranchedConv", "CPDown", "CPUp", "CSFusion", "PARITIES", "Parity"]

Parity = Literal["opposite", "same"]
#: CS-Fusion's channel pairings: ``opposite`` (the authors' release: odd decoder channels with even skip channels,
#: then even with odd) and ``same`` (the paper's Eq. 3: even with even, odd with odd).
PARITIES: tuple[str, ...] = ("opposite", "same")


def _same_padding(conv: nn.Conv2d) -> bool:
    if conv.padding == "same":
        return True
    if conv.padding == "valid":
        return all(k == 1 for k in conv.kernel_size)
    return all(2 * p == d * (k - 1) for p, d, k in zip(conv.padding, conv.dilation, conv.kernel_size))


class BranchedConv(nn.Module):
    r"""A :math:`C_\text{in} \to C_\text{out}` convolution written as channel-preserving :math:`m \to m` branches.

    With :math:`n = C_\text{in} / C_\text{out}` (split and sum) or :math:`n = C_\text{out} / C_\text{in}` (shared
    input, concatenate), one of which must be an integer.

    Args:
        in_channels: :math:`C_\text{in}`.
        out_channels: :math:`C_\text{out}`.
        kernel_size: of every branch (stride 1, "same" padding, so each branch keeps the spatial size).
        bias: whether the branches have biases.
        dilation: of every branch.
        padding_mode: of every branch.

    Raises:
        UnsupportedLayerError: when neither channel count divides the other.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        *,
        bias: bool = True,
        dilation: int | tuple[int, int] = 1,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        width = min(in_channels, out_channels)
        if width < 1 or in_channels % width or out_channels % width:
            raise UnsupportedLayerError(
                f"cannot make a {in_channels} -> {out_channels} convolution dimension-consistent: one channel count "
                f"must be a multiple of the other (channel ratio {in_channels / max(out_channels, 1):g}), so that it "
                f"splits into equal-width branches that each keep their channel count"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.mode: Literal["sum", "concat"] = "sum" if in_channels >= out_channels else "concat"
        count = max(in_channels, out_channels) // width
        self.branches = nn.ModuleList(
            nn.Conv2d(
                width, width, kernel_size, padding="same", dilation=dilation, bias=bias, padding_mode=padding_mode,
                device=device, dtype=dtype,
            )
            for _ in range(count)
        )

    @property
    def timestep_groups(self) -> int | None:
        """:math:`K` when the branches are timestep-aware (binarized with TaR / TaA), else ``None``.

        A timestep-aware block takes the per-sample groups as ``timestep_groups=`` and hands them to its branches,
        so the engine's graph route passes them to the block (an fx leaf) instead of to each branch.
        """
        return next((k for b in self.branches if (k := getattr(b, "timestep_groups", None)) is not None), None)

    def branch(self, index: int, x: Tensor, timestep_groups: Tensor | None) -> Tensor:
        """Branch ``index`` on ``x``, given the groups when it is timestep-aware."""
        branch = self.branches[index]
        if timestep_groups is not None and getattr(branch, "timestep_groups", None) is not None:
            return branch(x, timestep_groups=timestep_groups)
        return branch(x)

    def convolve(self, x: Tensor, timestep_groups: Tensor | None = None) -> Tensor:
        """The branches applied to ``x`` (:math:`C_\\text{in}` channels), combined."""
        if self.mode == "concat":
            return torch.cat([self.branch(i, x, timestep_groups) for i in range(len(self.branches))], dim=1)
        width = self.out_channels
        out = self.branch(0, x[:, :width], timestep_groups)
        for i in range(1, len(self.branches)):
            out = out + self.branch(i, x[:, i * width : (i + 1) * width], timestep_groups)
        return out

    def forward(self, x: Tensor, timestep_groups: Tensor | None = None) -> Tensor:
        return self.convolve(x, timestep_groups)

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}, {self.mode} of {len(self.branches)} branches"

    def load_conv(self, weight: Tensor, bias: Tensor | None) -> None:
        r"""Copy a full convolution's ``weight`` (:math:`C_\text{out} \times C_\text{in} \times k \times k`) and
        ``bias`` into the branches, so that :meth:`convolve` computes exactly that convolution.

        A sum takes input-channel slices (the bias goes to the first branch, the others' biases are zero); a
        concatenation takes output-channel slices (with their bias slices).
        """
        width = self.branches[0].in_channels
        with torch.no_grad():
            for i, branch in enumerate(self.branches):
                part = slice(i * width, (i + 1) * width)
                branch.weight.copy_(weight[:, part] if self.mode == "sum" else weight[part])
                if branch.bias is None:
                    continue
                if bias is None:
                    branch.bias.zero_()
                elif self.mode == "sum":
                    branch.bias.copy_(bias if i == 0 else torch.zeros_like(bias))
                else:
                    branch.bias.copy_(bias[part])

    @classmethod
    def check_conv(cls, conv: nn.Module, what: str) -> nn.Conv2d:
        """``conv`` checked to be an ungrouped, stride-1, "same"-padded ``nn.Conv2d`` (what the branches need)."""
        if type(conv) is not nn.Conv2d:
            raise UnsupportedLayerError(f"{what} replaces an nn.Conv2d, got {type(conv).__name__}")
        problems = []
        if conv.groups != 1:
            problems.append(f"groups={conv.groups} (only ungrouped convolutions)")
        if tuple(conv.stride) != (1, 1):
            problems.append(f"stride {tuple(conv.stride)} (the branches have stride 1)")
        if not _same_padding(conv):
            problems.append(f"padding {conv.padding} does not keep the size (needs 2 * padding == dilation * (k - 1))")
        if problems:
            raise UnsupportedLayerError(f"{what} cannot be made dimension-consistent from {conv}: " + "; ".join(problems))
        return conv

    @classmethod
    def _from_weights(cls, weight: Tensor, bias: Tensor | None, like: nn.Conv2d, **kwargs: object) -> BranchedConv:
        block = cls(
            weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), bias=bias is not None,
            dilation=like.dilation, padding_mode=like.padding_mode, device=weight.device, dtype=weight.dtype,
            **kwargs,  # type: ignore[arg-type]
        )
        block.load_conv(weight, bias)
        block.train(like.training)
        return block

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> BranchedConv:
        """The branched form of ``conv`` (same function). Raises :class:`UnsupportedLayerError` if impossible."""
        cls.check_conv(conv, cls.__name__)
        return cls._from_weights(conv.weight, conv.bias, conv)


class CPDown(BranchedConv):
    r"""Consistent-pixel downsampling: ``[PixelUnshuffle(before)] -> branches -> [PixelUnshuffle(after)]``.

    The release's CP-Down (``after=2``, ``before=1``) maps :math:`C` channels at :math:`H \times W` to :math:`2C` at
    :math:`H/2 \times W/2`: two :math:`C/2 \to C/2` branches on the two channel halves, summed, then
    ``PixelUnshuffle(2)``. It equals ``Conv3x3(C -> C/2)`` followed by ``PixelUnshuffle(2)`` with the weight split
    along its input channels. With ``before=2`` (and ``after=1``) it is the exact rewrite of a stride-2 convolution.

    Args:
        in_channels: channels of the branched convolution's input (after the ``before`` unshuffle).
        out_channels: channels of its output (before the ``after`` unshuffle).
        kernel_size: of each branch.
        before: ``PixelUnshuffle`` factor applied to the input first (1: none).
        after: ``PixelUnshuffle`` factor applied to the branches' output (1: none).
        **kwargs: see :class:`BranchedConv`.

    Examples:
        >>> block = CPDown(64, 32)                          # the release's CP-Down at C = 64
        >>> [tuple(b.weight.shape) for b in block.branches]
        [(32, 32, 3, 3), (32, 32, 3, 3)]
        >>> block(torch.zeros(1, 64, 8, 8)).shape
        torch.Size([1, 128, 4, 4])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        *,
        before: int = 1,
        after: int = 2,
        **kwargs: object,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, **kwargs)  # type: ignore[arg-type]
        self.before = nn.PixelUnshuffle(before) if before > 1 else nn.Identity()
        self.after = nn.PixelUnshuffle(after) if after > 1 else nn.Identity()

    def forward(self, x: Tensor, timestep_groups: Tensor | None = None) -> Tensor:
        return self.after(self.convolve(self.before(x), timestep_groups))

    @classmethod
    def from_conv_unshuffle(cls, conv: nn.Conv2d, factor: int) -> CPDown:
        """The exact rewrite of ``conv`` followed by ``PixelUnshuffle(factor)`` (the release's downsampling)."""
        cls.check_conv(conv, "CP-Down")
        return cls._from_weights(conv.weight, conv.bias, conv, before=1, after=factor)  # type: ignore[return-value]

    @classmethod
    def from_strided_conv(cls, conv: nn.Conv2d) -> CPDown:
        """The exact rewrite of a stride-2 convolution: ``PixelUnshuffle(2)``, then the equivalent stride-1 branches.

        The strided convolution becomes a stride-1 convolution on the unshuffled input (``4 C_in`` channels;
        :func:`~binarize.plugins.bidiffsr.conversions.strided_to_unshuffled`), written as branches.
        """
        from binarize.plugins.bidiffsr.conversions import strided_to_unshuffled

        weight, bias = strided_to_unshuffled(conv)
        return cls._from_weights(weight, bias, conv, before=2, after=1)  # type: ignore[return-value]


class CPUp(BranchedConv):
    r"""Consistent-pixel upsampling: branches concatenated, then ``PixelShuffle(factor)``.

    The release's CP-Up maps :math:`C` channels at :math:`H \times W` to :math:`C/2` at :math:`2H \times 2W`: two
    :math:`C \to C` branches on the same input, concatenated (:math:`2C`), then ``PixelShuffle(2)``. It equals
    ``Conv3x3(C -> 2C)`` followed by ``PixelShuffle(2)`` with the weight split along its output channels.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the branches' concatenated output (before the shuffle).
        kernel_size: of each branch.
        factor: the ``PixelShuffle`` factor.
        **kwargs: see :class:`BranchedConv`.

    Examples:
        >>> block = CPUp(64, 128)                           # the release's CP-Up at C = 64
        >>> len(block.branches), block(torch.zeros(1, 64, 4, 4)).shape
        (2, torch.Size([1, 32, 8, 8]))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        *,
        factor: int = 2,
        **kwargs: object,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, **kwargs)  # type: ignore[arg-type]
        self.shuffle = nn.PixelShuffle(factor)

    def forward(self, x: Tensor, timestep_groups: Tensor | None = None) -> Tensor:
        return self.shuffle(self.convolve(x, timestep_groups))

    @classmethod
    def from_conv_shuffle(cls, conv: nn.Conv2d, factor: int) -> CPUp:
        """The exact rewrite of ``conv`` followed by ``PixelShuffle(factor)`` (the release's upsampling)."""
        cls.check_conv(conv, "CP-Up")
        return cls._from_weights(conv.weight, conv.bias, conv, factor=factor)  # type: ignore[return-value]

    @classmethod
    def from_nearest_conv(cls, conv: nn.Conv2d) -> CPUp:
        """The exact rewrite of a 2x nearest-neighbour upsampling followed by ``conv``.

        The convolution of the upsampled image is four phase convolutions of the low-resolution image followed by
        ``PixelShuffle(2)`` (:func:`~binarize.plugins.bidiffsr.conversions.nearest_to_shuffled`), written as
        branches.
        """
        from binarize.plugins.bidiffsr.conversions import nearest_to_shuffled

        weight, bias = nearest_to_shuffled(conv)
        return cls._from_weights(weight, bias, conv, factor=2)  # type: ignore[return-value]


class CSFusion(BranchedConv):
    r"""Channel-shuffle fusion of a decoder tensor and a skip tensor (:math:`C` channels each) into :math:`C`.

    With ``parity="opposite"`` (the authors' release; 0-based channel indices)

    .. math:: f_1 = [x_{1::2},\ s_{0::2}], \quad f_2 = [x_{0::2},\ s_{1::2}], \quad
              y = \operatorname{conv}_a(f_1) + \operatorname{conv}_b(f_2)

    and with ``parity="same"`` (the paper's Eq. 3) :math:`f_1 = [x_{0::2}, s_{0::2}]`,
    :math:`f_2 = [x_{1::2}, s_{1::2}]`. Both branches are :math:`1 \times 1`, :math:`C \to C`. With the weights of a
    ``Conv1x1(2C -> C)`` permuted accordingly it equals ``conv(cat([x, s], 1))``.

    Args:
        channels: :math:`C`.
        parity: ``"opposite"`` or ``"same"``.
        kernel_size: of each branch (1 in BI-DiffSR).
        **kwargs: see :class:`BranchedConv`.

    Examples:
        >>> fusion = CSFusion(64)
        >>> fusion(torch.zeros(1, 64, 8, 8), torch.zeros(1, 64, 8, 8)).shape
        torch.Size([1, 64, 8, 8])
    """

    def __init__(
        self, channels: int, parity: Parity = "opposite", kernel_size: int | tuple[int, int] = 1, **kwargs: object
    ) -> None:
        if parity not in PARITIES:
            raise ValueError(f"parity must be one of {list(PARITIES)}, got {parity!r}")
        if parity == "same" and channels % 2:
            raise UnsupportedLayerError(
                f"CS-Fusion with parity 'same' needs an even channel count (each branch takes the even or the odd "
                f"channels of both inputs), got {channels}; use parity 'opposite'"
            )
        super().__init__(2 * channels, channels, kernel_size, **kwargs)  # type: ignore[arg-type]
        self.parity: Parity = parity

    def forward(self, x: Tensor, skip: Tensor | None = None, timestep_groups: Tensor | None = None) -> Tensor:
        """Fuse ``x`` and ``skip``; with ``skip=None``, ``x`` holds both, concatenated along the channels (the two
        halves, as a graph rule with context leaves them: ``cat([x, skip], 1)`` after channel-wise operations)."""
        if skip is None:
            x, skip = x.split(self.out_channels, dim=1)
        decoder_first = 1 if self.parity == "opposite" else 0
        first = torch.cat([x[:, decoder_first::2], skip[:, 0::2]], dim=1)
        second = torch.cat([x[:, 1 - decoder_first :: 2], skip[:, 1::2]], dim=1)
        return self.branch(0, first, timestep_groups) + self.branch(1, second, timestep_groups)

    def extra_repr(self) -> str:
        return f"{self.out_channels} + {self.out_channels} -> {self.out_channels}, parity={self.parity}"

    @classmethod
    def from_fusion_conv(cls, conv: nn.Conv2d, parity: Parity = "opposite") -> CSFusion:
        """The exact rewrite of ``conv(cat([x, skip], 1))`` for a ``Conv2d(2C -> C)`` (any kernel, "same" padding)."""
        cls.check_conv(conv, "CS-Fusion")
        if conv.in_channels != 2 * conv.out_channels:
            raise UnsupportedLayerError(
                f"CS-Fusion fuses two C-channel tensors into C channels, but {conv} has in_channels "
                f"{conv.in_channels} != 2 * out_channels {conv.out_channels}"
            )
        block = cls(
            conv.out_channels, parity, tuple(conv.kernel_size), bias=conv.bias is not None, dilation=conv.dilation,
            padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype,
        )
        block.load_conv(conv.weight[:, _fusion_order(conv.out_channels, parity).to(conv.weight.device)], conv.bias)
        block.train(conv.training)
        return block


def _fusion_order(channels: int, parity: str) -> Tensor:
    """Indices into ``cat([x, skip])`` of the channels the two branches see, first branch then second."""
    decoder = torch.arange(channels)
    skip = torch.arange(channels, 2 * channels)
    decoder_first = 1 if parity == "opposite" else 0
    first = torch.cat([decoder[decoder_first::2], skip[0::2]])
    second = torch.cat([decoder[1 - decoder_first :: 2], skip[1::2]])
    return torch.cat([first, second])
