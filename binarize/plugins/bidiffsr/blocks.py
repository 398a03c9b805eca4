r"""BI-DiffSR's dimension-consistent blocks: CP-Down, CP-Up and CS-Fusion, built from channel-preserving branches.

A binary convolution keeps full-precision information flowing only through an identity shortcut, and a shortcut
needs equal input and output shapes. BI-DiffSR therefore writes every convolution that changes the channel count
as several :math:`m \to m` convolutions (*branches*), :math:`m = \min(C_\text{in}, C_\text{out})`:

* :math:`C_\text{in} = n\,m` (fewer outputs): the input is split into :math:`n` channel chunks, branch :math:`i`
  convolves chunk :math:`i`, and the outputs are summed, :math:`y = \sum_i \operatorname{conv}_i(x_i)`;
* :math:`C_\text{out} = n\,m` (more outputs): every branch sees the whole input and the outputs are concatenated,
  :math:`y = [\operatorname{conv}_1(x), \dots, \operatorname{conv}_n(x)]`;
* a ratio such as 3 : 2 (a 96 -> 64 skip fusion) combines both with :math:`m = \gcd(C_\text{in}, C_\text{out})`:
  each output group sums branches over the input groups.

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
  a :math:`1 \times 1` branch, and the results summed; skips of other widths are dealt round-robin into as many
  groups as the branches need.

Reference: Chen, Zhang, Gu, Kong, Zhang, Yang, Ding, "Binarized Diffusion Model for Image Super-Resolution"
(BI-DiffSR), NeurIPS 2024, Sections 3.2-3.3 and Fig. 3.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from binarize.errors import UnsupportedLayerError

__all__ = ["BranchedConv", "CPDown", "CPUp", "CSFusion", "PARITIES", "Parity", "SizedCPUp"]

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

    The branch width is :math:`m = \gcd(C_\text{in}, C_\text{out})`. The input splits into
    :math:`n_\text{in} = C_\text{in} / m` channel groups and the output into :math:`n_\text{out} = C_\text{out} / m`;
    output group :math:`o` is the sum over the input groups :math:`i` of branch :math:`(o, i)` (index
    :math:`o \cdot n_\text{in} + i`):

    .. math:: y_o = \sum_{i=0}^{n_\text{in}-1} \operatorname{conv}_{o, i}(x_i), \qquad y = [y_0, \dots, y_{n_\text{out}-1}]

    With :math:`C_\text{in} = n C_\text{out}` this is BI-DiffSR's split-and-sum (CP-Down, CS-Fusion), with
    :math:`C_\text{out} = n C_\text{in}` its shared-input concatenation (CP-Up); a ratio such as 3 : 2 gives a grid of
    both (``mode="grid"``). The narrower side may split into at most two groups, so every branch sees at least half
    of the narrower side's channels.

    Args:
        in_channels: :math:`C_\text{in}`.
        out_channels: :math:`C_\text{out}`.
        kernel_size: of every branch (stride 1, "same" padding, so each branch keeps the spatial size).
        bias: whether the branches have biases.
        dilation: of every branch.
        padding_mode: of every branch.

    Raises:
        UnsupportedLayerError: when the channel ratio, in lowest terms, has both terms above 2 (say 5 : 3).
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
        width = math.gcd(in_channels, out_channels)
        if min(in_channels, out_channels) < 1 or min(in_channels, out_channels) > 2 * width:
            raise UnsupportedLayerError(
                f"cannot make a {in_channels} -> {out_channels} convolution dimension-consistent: the channel ratio "
                f"{in_channels / max(out_channels, 1):g} ({in_channels // max(width, 1)} : "
                f"{out_channels // max(width, 1)} in lowest terms) would split the narrower side into more than two "
                f"groups of channel-preserving branches; one channel count must be a multiple of the other, or of "
                f"half the other"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.groups_in, self.groups_out = in_channels // width, out_channels // width
        self.mode: Literal["sum", "concat", "grid"] = (
            "sum" if self.groups_out == 1 else "concat" if self.groups_in == 1 else "grid"
        )
        self.branches = nn.ModuleList(
            nn.Conv2d(
                width, width, kernel_size, padding="same", dilation=dilation, bias=bias, padding_mode=padding_mode,
                device=device, dtype=dtype,
            )
            for _ in range(self.groups_in * self.groups_out)
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
        width = self.branches[0].in_channels
        parts = x.split(width, dim=1) if self.groups_in > 1 else (x,)
        outputs = []
        for o in range(self.groups_out):
            first = o * self.groups_in
            out = self.branch(first, parts[0], timestep_groups)
            for i in range(1, self.groups_in):
                out = out + self.branch(first + i, parts[i], timestep_groups)
            outputs.append(out)
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)

    def forward(self, x: Tensor, timestep_groups: Tensor | None = None) -> Tensor:
        return self.convolve(x, timestep_groups)

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}, {self.mode} of {len(self.branches)} branches"

    def load_conv(self, weight: Tensor, bias: Tensor | None) -> None:
        r"""Copy a full convolution's ``weight`` (:math:`C_\text{out} \times C_\text{in} \times k \times k`) and
        ``bias`` into the branches, so that :meth:`convolve` computes exactly that convolution.

        Branch :math:`(o, i)` takes the weight block of output group :math:`o` and input group :math:`i`; the bias
        of output group :math:`o` goes to its first branch :math:`(o, 0)`, the other branches' biases are zero.
        """
        width = self.branches[0].in_channels
        with torch.no_grad():
            for index, branch in enumerate(self.branches):
                o, i = divmod(index, self.groups_in)
                rows, cols = slice(o * width, (o + 1) * width), slice(i * width, (i + 1) * width)
                branch.weight.copy_(weight[rows, cols])
                if branch.bias is None:
                    continue
                if bias is None or i > 0:
                    branch.bias.zero_()
                else:
                    branch.bias.copy_(bias[rows])

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


class SizedCPUp(CPUp):
    r"""CP-Up of a nearest-neighbour upsampling *to a size* followed by a convolution, where the size is twice the
    input's (``F.interpolate(x, size=skip.shape[-2:])`` in a UNet whose skip is twice as large).

    Nearest upsampling to exactly :math:`2H \times 2W` reads source pixel :math:`\lfloor i / 2 \rfloor`, as a 2x
    scale factor does, so the rewrite is :meth:`CPUp.from_nearest_conv`. Any other size has no such form: the
    block checks the size on every call and raises a clear error instead of computing something else.

    Args:
        size: a fixed target size (the call's constant ``size=``), or ``None`` when the size is computed in the
            forward pass and passed to the block after ``x``.
        **kwargs: see :class:`CPUp`.
    """

    def __init__(self, *args: Any, size: tuple[int, int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.size = size

    def forward(self, x: Tensor, *size: Any, timestep_groups: Tensor | None = None) -> Tensor:  # type: ignore[override]
        target = _as_size(size) if size else self.size
        expected = (2 * x.shape[-2], 2 * x.shape[-1])
        if target is not None and target != expected:
            raise ValueError(
                f"this CP-Up replaced a nearest upsampling to twice the input's size, but it was called with size "
                f"{target} for a {x.shape[-2]} x {x.shape[-1]} input (expected {expected}); binarize the model "
                f"with example inputs of the sizes it will see, or keep this upsampling in full precision"
            )
        return super().forward(x, timestep_groups)

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", size={self.size}" if self.size is not None else ", size=2x input")

    @classmethod
    def from_nearest_conv_to_size(cls, conv: nn.Conv2d, size: tuple[int, int] | None) -> SizedCPUp:
        """The exact rewrite of ``conv(F.interpolate(x, size, mode="nearest"))`` for a size twice the input's."""
        from binarize.plugins.bidiffsr.conversions import nearest_to_shuffled

        weight, bias = nearest_to_shuffled(conv)
        return cls._from_weights(weight, bias, conv, factor=2, size=size)  # type: ignore[return-value]


def _as_size(values: tuple[Any, ...]) -> tuple[int, int]:
    """``(torch.Size([h, w]),)`` or ``(h, w)`` -> ``(h, w)``."""
    flat = tuple(values[0]) if len(values) == 1 and not isinstance(values[0], int) else values
    spatial = tuple(int(v) for v in flat)
    return (spatial[0], spatial[0]) if len(spatial) == 1 else (spatial[-2], spatial[-1])


class CSFusion(BranchedConv):
    r"""Channel-shuffle fusion of a decoder tensor and a skip tensor into :math:`C` channels.

    For two :math:`C`-channel inputs with ``parity="opposite"`` (the authors' release; 0-based channel indices)

    .. math:: f_1 = [x_{1::2},\ s_{0::2}], \quad f_2 = [x_{0::2},\ s_{1::2}], \quad
              y = \operatorname{conv}_a(f_1) + \operatorname{conv}_b(f_2)

    and with ``parity="same"`` (the paper's Eq. 3) :math:`f_1 = [x_{0::2}, s_{0::2}]`,
    :math:`f_2 = [x_{1::2}, s_{1::2}]`. Both branches are :math:`C \to C`. With the weights of a
    ``Conv(2C -> C)`` permuted accordingly it equals ``conv(cat([x, s], 1))``.

    Inputs of other widths (:math:`C_x + C_s` channels, common in UNets whose levels differ in width, e.g.
    :math:`64 + 32 \to 64`) generalise the pairing: with :math:`m = \gcd(C_x + C_s, C)` and
    :math:`n = (C_x + C_s) / m` groups, decoder channel :math:`j` goes to group :math:`(j + a) \bmod n` and skip
    channel :math:`j` to group :math:`(j + b) \bmod n`, each group listing its decoder channels first. ``"opposite"``
    takes :math:`a = 1, b = 0` and ``"same"`` :math:`a = b = 0` (both give the formulas above for :math:`n = 2`);
    when :math:`C_x` is not a multiple of :math:`n`, :math:`b = a + (C_x \bmod n)` so that every group holds exactly
    :math:`m` channels. The groups feed a :class:`BranchedConv` (:math:`n` branches summed, or a grid of them).

    Args:
        channels: :math:`C`, the output channels.
        parity: ``"opposite"`` or ``"same"``.
        kernel_size: of each branch (1 in BI-DiffSR).
        widths: ``(C_x, C_s)``, the decoder and skip channels; ``(C, C)`` when not given.
        **kwargs: see :class:`BranchedConv`.

    Examples:
        >>> fusion = CSFusion(64)
        >>> fusion(torch.zeros(1, 64, 8, 8), torch.zeros(1, 64, 8, 8)).shape
        torch.Size([1, 64, 8, 8])
        >>> wide = CSFusion(64, widths=(64, 32))  # 96 -> 64: a 3 x 2 grid of 32 -> 32 branches
        >>> len(wide.branches), wide(torch.zeros(1, 64, 8, 8), torch.zeros(1, 32, 8, 8)).shape
        (6, torch.Size([1, 64, 8, 8]))
    """

    def __init__(
        self,
        channels: int,
        parity: Parity = "opposite",
        kernel_size: int | tuple[int, int] = 1,
        *,
        widths: tuple[int, int] | None = None,
        **kwargs: object,
    ) -> None:
        if parity not in PARITIES:
            raise ValueError(f"parity must be one of {list(PARITIES)}, got {parity!r}")
        decoder, skip = widths if widths is not None else (channels, channels)
        if min(decoder, skip) < 1:
            raise UnsupportedLayerError(f"CS-Fusion fuses two non-empty tensors, got widths {decoder} and {skip}")
        super().__init__(decoder + skip, channels, kernel_size, **kwargs)  # type: ignore[arg-type]
        self.parity: Parity = parity
        self.widths = (decoder, skip)
        self.register_buffer("order", _fusion_order(self.widths, self.groups_in, parity), persistent=False)

    def forward(self, x: Tensor, skip: Tensor | None = None, timestep_groups: Tensor | None = None) -> Tensor:
        """Fuse ``x`` and ``skip``; with ``skip=None``, ``x`` holds both, concatenated along the channels (as a
        graph rule with context leaves them: ``cat([x, skip], 1)`` after channel-wise operations)."""
        both = x if skip is None else torch.cat([x, skip], dim=1)
        return self.convolve(both.index_select(1, self.order), timestep_groups)

    def extra_repr(self) -> str:
        decoder, skip = self.widths
        return f"{decoder} + {skip} -> {self.out_channels}, parity={self.parity}, {self.mode} of {len(self.branches)} branches"

    @classmethod
    def from_fusion_conv(
        cls, conv: nn.Conv2d, parity: Parity = "opposite", widths: tuple[int, int] | None = None
    ) -> CSFusion:
        """The exact rewrite of ``conv(cat([x, skip], 1))`` (any kernel, "same" padding); ``widths`` are the
        channels of ``x`` and ``skip``, by default half of ``conv.in_channels`` each."""
        cls.check_conv(conv, "CS-Fusion")
        if widths is None and conv.in_channels != 2 * conv.out_channels:
            raise UnsupportedLayerError(
                f"CS-Fusion of two equally wide tensors fuses C + C channels into C, but {conv} has in_channels "
                f"{conv.in_channels} != 2 * out_channels {conv.out_channels}; give the two inputs' widths"
            )
        if widths is not None and sum(widths) != conv.in_channels:
            raise UnsupportedLayerError(
                f"CS-Fusion of {widths[0]} + {widths[1]} channels needs a convolution with that many input channels, "
                f"got {conv}"
            )
        block = cls(
            conv.out_channels, parity, tuple(conv.kernel_size), widths=widths, bias=conv.bias is not None,
            dilation=conv.dilation, padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype,
        )
        block.load_conv(conv.weight[:, block.order.to(conv.weight.device)], conv.bias)
        block.train(conv.training)
        return block


def _fusion_order(widths: tuple[int, int], groups: int, parity: str) -> Tensor:
    """Indices into ``cat([x, skip])`` of the channels the branch groups see, group after group (see
    :class:`CSFusion`)."""
    decoder, skip = widths
    offset_decoder = 1 % groups if parity == "opposite" else 0
    remainder = decoder % groups
    if remainder and parity == "same":
        raise UnsupportedLayerError(
            f"CS-Fusion with parity 'same' deals both inputs alike into {groups} groups, which needs each input's "
            f"channel count to be a multiple of {groups} (an even channel count for two groups), got {decoder} "
            f"and {skip}; use parity 'opposite'"
        )
    if parity == "same":
        offset_skip = offset_decoder
    elif remainder:  # the skip's first channel continues where the decoder's extra channels stopped
        offset_skip = (offset_decoder + remainder) % groups
    else:
        offset_skip = (offset_decoder - 1) % groups
    members: list[list[int]] = [[] for _ in range(groups)]
    for j in range(decoder):
        members[(j + offset_decoder) % groups].append(j)
    for j in range(skip):
        members[(j + offset_skip) % groups].append(decoder + j)
    if len({len(group) for group in members}) != 1:
        raise AssertionError(f"unbalanced CS-Fusion groups for widths {widths}")  # the offsets above balance them
    order = [index for group in members for index in group]
    return torch.tensor(order, dtype=torch.long)
