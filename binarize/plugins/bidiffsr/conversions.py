r"""Exact rewrites of resolution-changing convolutions into stride-1 convolutions around pixel (un)shuffles.

They let :class:`~binarize.plugins.bidiffsr.blocks.CPDown` and :class:`~binarize.plugins.bidiffsr.blocks.CPUp` take
over the downsampling and upsampling of UNets written in the SR3 style, while computing exactly the same function.

**Strided convolution** (stride 2, kernel :math:`k`, padding :math:`p = \lfloor (k-1)/2 \rfloor`). Per spatial
dimension, output :math:`i` reads input :math:`2i + e` for the taps :math:`e = d - p`. Writing
:math:`2i + e = 2(i + o) + \phi` with :math:`o = \lfloor e/2 \rfloor` and :math:`\phi = e \bmod 2`, tap :math:`e` reads
pixel phase :math:`\phi` of the ``PixelUnshuffle(2)`` image at offset :math:`o`. So

.. math:: \begin{gathered}
          \operatorname{conv}_{s=2}(x) = \operatorname{conv}'_{s=1}\bigl(\operatorname{PixelUnshuffle}_2(x)\bigr),
          \\ W'[o_c,\ 4c + 2\phi_y + \phi_x,\ o_y,\ o_x] \mathrel{+}= W[o_c, c, d_y, d_x]
          \end{gathered}

a stride-1 "same" convolution with :math:`4 C_\text{in}` input channels.

**Nearest-neighbour 2x upsampling, then a convolution** (stride 1, odd :math:`k`, padding :math:`p = (k-1)/2`).
Output pixel :math:`2j + a` (phase :math:`a \in \{0, 1\}`) reads the upsampled image at :math:`2j + a + e`, that is
the low-resolution pixel :math:`j + \lfloor (a + e)/2 \rfloor`. Each output phase is therefore a convolution of the
low-resolution image, and

.. math:: \begin{gathered}
          \operatorname{conv}(\operatorname{up}_2(x)) = \operatorname{PixelShuffle}_2\bigl(\operatorname{conv}'(x)\bigr),
          \\ W'[4 o_c + 2 a_y + a_x,\ c,\ o_y,\ o_x] \mathrel{+}= W[o_c, c, d_y, d_x]
          \end{gathered}

with :math:`o = \lfloor (a + e)/2 \rfloor` and :math:`4 C_\text{out}` output channels. Zero padding maps to zero
padding in both rewrites (a pixel outside the image is outside the unshuffled or low-resolution image too), for
even input sizes.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from binarize.errors import UnsupportedLayerError

__all__ = ["nearest_to_shuffled", "strided_to_unshuffled"]


def _check(conv: nn.Module, what: str, stride: int, padding_rule: Callable[[int], int], rule_text: str) -> nn.Conv2d:
    if type(conv) is not nn.Conv2d:
        raise UnsupportedLayerError(f"{what} needs an nn.Conv2d, got {type(conv).__name__}")
    problems = []
    if tuple(conv.stride) != (stride, stride):
        problems.append(f"stride {tuple(conv.stride)} is not ({stride}, {stride})")
    if conv.groups != 1:
        problems.append(f"groups={conv.groups} (only ungrouped convolutions)")
    if tuple(conv.dilation) != (1, 1):
        problems.append(f"dilation {tuple(conv.dilation)} (only 1)")
    if conv.padding_mode != "zeros":
        problems.append(f"padding_mode={conv.padding_mode!r} (only zeros)")
    if isinstance(conv.padding, str) or any(p != padding_rule(k) for p, k in zip(conv.padding, conv.kernel_size)):
        problems.append(f"padding {conv.padding} for kernel {tuple(conv.kernel_size)} (needs {rule_text})")
    if problems:
        raise UnsupportedLayerError(f"{what}: cannot rewrite {conv} exactly: " + "; ".join(problems))
    return conv


def _taps(kernel: int, padding: int, offset: Callable[[int], int]) -> tuple[list[int], int]:
    """Per tap its offset in the new kernel, and the new kernel's half-width (so it has ``2 * half + 1`` taps)."""
    offsets = [offset(d - padding) for d in range(kernel)]
    half = max(max(offsets), -min(offsets))
    return offsets, half


def strided_to_unshuffled(conv: nn.Conv2d) -> tuple[Tensor, Tensor | None]:
    """The weight and bias of the stride-1 convolution equal to ``conv`` applied after ``PixelUnshuffle(2)``.

    Raises:
        UnsupportedLayerError: ``conv`` is not an ungrouped, undilated, zero-padded stride-2 ``nn.Conv2d`` with
            padding ``(k - 1) // 2``.
    """
    _check(conv, "strided convolution to CP-Down", 2, lambda k: (k - 1) // 2, "(kernel_size - 1) // 2")
    weight = conv.weight.detach()
    out_c, in_c, kh, kw = weight.shape
    (rows, half_h), (cols, half_w) = (
        _taps(k, p, lambda e: e // 2) for k, p in zip((kh, kw), conv.padding)
    )
    new = weight.new_zeros(out_c, in_c, 2, 2, 2 * half_h + 1, 2 * half_w + 1)
    for dy in range(kh):
        phase_y = (dy - conv.padding[0]) % 2
        for dx in range(kw):
            phase_x = (dx - conv.padding[1]) % 2
            new[:, :, phase_y, phase_x, rows[dy] + half_h, cols[dx] + half_w] += weight[:, :, dy, dx]
    # channel 4c + 2 phase_y + phase_x of PixelUnshuffle(2)
    new = new.reshape(out_c, in_c * 4, 2 * half_h + 1, 2 * half_w + 1)
    bias = None if conv.bias is None else conv.bias.detach().clone()
    return new, bias


def nearest_to_shuffled(conv: nn.Conv2d) -> tuple[Tensor, Tensor | None]:
    """The weight and bias of the convolution that, followed by ``PixelShuffle(2)``, equals ``conv`` after a 2x
    nearest-neighbour upsampling.

    Raises:
        UnsupportedLayerError: ``conv`` is not an ungrouped, undilated, zero-padded stride-1 ``nn.Conv2d`` with an odd
            kernel and padding ``(k - 1) // 2``.
    """
    _check(conv, "nearest upsampling + convolution to CP-Up", 1, lambda k: (k - 1) // 2 if k % 2 else -1,
           "an odd kernel and padding (kernel_size - 1) // 2")
    weight = conv.weight.detach()
    out_c, in_c, kh, kw = weight.shape
    half = [max(abs((a + d - p) // 2) for a in (0, 1) for d in range(k)) for k, p in zip((kh, kw), conv.padding)]
    new = weight.new_zeros(out_c, 2, 2, in_c, 2 * half[0] + 1, 2 * half[1] + 1)
    for a_y in (0, 1):
        for a_x in (0, 1):
            for dy in range(kh):
                oy = (a_y + dy - conv.padding[0]) // 2 + half[0]
                for dx in range(kw):
                    ox = (a_x + dx - conv.padding[1]) // 2 + half[1]
                    new[:, a_y, a_x, :, oy, ox] += weight[:, :, dy, dx]
    # output channel 4 o + 2 a_y + a_x feeds PixelShuffle(2) phase (a_y, a_x) of channel o
    new = new.reshape(out_c * 4, in_c, 2 * half[0] + 1, 2 * half[1] + 1)
    bias = None if conv.bias is None else conv.bias.detach().repeat_interleave(4)
    return new, bias
