r"""Packed signs: the bit layout of binary tensors and the reference xnor-popcount arithmetic on it.

A tensor of signs :math:`s \in \{-1, +1\}` is stored one bit per value along one axis (the reduction axis of the
operation: a convolution's input channels, a linear layer's input features), in little-endian 64-bit words:

* bit :math:`j` of word :math:`w` holds value :math:`64 w + j` along the packed axis;
* a set bit means :math:`-1`, a clear bit :math:`+1` (so the bit is the sign bit, and :math:`+0` packs as
  :math:`+1`, as the sign binarizers map 0 to +1);
* the last word's unused bits are clear, so they contribute nothing to a popcount of a XOR.

For two packed vectors of :math:`n` signs, :math:`a \cdot b = \sum_i a_i b_i = n - 2\,\operatorname{popcount}(a
\oplus b)`: equal signs contribute +1, different signs -1. :func:`xnor_matmul` computes every such dot product
between the rows of two packed matrices in integers; it is the oracle the fast kernels are tested against, written
in plain torch (popcount through a 256-entry table over the words' bytes), so it runs anywhere torch does.

Reference: Courbariaux et al., "Binarized Neural Networks", NeurIPS 2016; Rastegari et al., "XNOR-Net", ECCV 2016.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["WORD_BITS", "pack_signs", "packed_words", "popcount", "unpack_signs", "xnor_matmul"]

#: Bits per packed word.
WORD_BITS = 64

_BYTE_POPCOUNT = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.int32)
_BIT_WEIGHTS = torch.tensor([1 << j for j in range(WORD_BITS - 1)] + [-(1 << (WORD_BITS - 1))], dtype=torch.int64)


def packed_words(count: int) -> int:
    """Words needed for ``count`` signs.

    Examples:
        >>> packed_words(1), packed_words(64), packed_words(65)
        (1, 1, 2)
    """
    return -(-count // WORD_BITS)


def pack_signs(values: Tensor, dim: int = -1) -> Tensor:
    """Pack the signs of ``values`` along ``dim`` into ``int64`` words (the last axis of the result).

    The packed axis moves to the end: a ``(O, I, kh, kw)`` weight packed along ``dim=1`` gives ``(O, kh, kw,
    packed_words(I))``. Values below zero set their bit; zero and above clear it.

    Examples:
        >>> pack_signs(torch.tensor([1.0, -1.0, -1.0, 1.0]))
        tensor([6])
        >>> unpack_signs(pack_signs(torch.tensor([[1.0, -2.0], [0.0, -0.5]])), 2)
        tensor([[ 1., -1.],
                [ 1., -1.]])
    """
    moved = values.movedim(dim, -1)
    count = moved.shape[-1]
    bits = (moved < 0).to(torch.int64)
    pad = packed_words(count) * WORD_BITS - count
    if pad:
        bits = torch.nn.functional.pad(bits, (0, pad))
    bits = bits.reshape(*bits.shape[:-1], -1, WORD_BITS)
    return (bits * _BIT_WEIGHTS.to(bits.device)).sum(-1)


def unpack_signs(words: Tensor, count: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The ``count`` signs (+1 / -1 as ``dtype``) held in the last axis of ``words`` (see :func:`pack_signs`)."""
    if words.shape[-1] != packed_words(count):
        raise ValueError(f"{count} signs need {packed_words(count)} words, got {words.shape[-1]}")
    shifts = torch.arange(WORD_BITS, device=words.device)
    bits = (words.unsqueeze(-1) >> shifts) & 1
    bits = bits.reshape(*words.shape[:-1], -1)[..., :count]
    return (1 - 2 * bits).to(dtype)


def popcount(words: Tensor) -> Tensor:
    """Set bits per word, summed over the last axis (``int32``)."""
    table = _BYTE_POPCOUNT.to(words.device)
    per_byte = table[words.contiguous().view(torch.uint8).long()]
    return per_byte.reshape(*words.shape[:-1], -1).sum(-1, dtype=torch.int32)


def xnor_matmul(a: Tensor, b: Tensor, count: int, *, rows_per_chunk: int = 256) -> Tensor:
    """Dot products of ``count`` signs between every row of ``a`` ``(M, W)`` and of ``b`` ``(N, W)`` (packed
    words), as ``int32`` ``(M, N)``: :math:`n - 2\\,\\operatorname{popcount}(a_i \\oplus b_j)`.

    Examples:
        >>> x = torch.tensor([[1.0, -1.0, 1.0], [-1.0, -1.0, -1.0]])
        >>> xnor_matmul(pack_signs(x), pack_signs(x), 3)
        tensor([[ 3, -1],
                [-1,  3]], dtype=torch.int32)
    """
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected packed matrices (M, W) and (N, W), got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] != packed_words(count):
        raise ValueError(f"{count} signs need {packed_words(count)} words, got {a.shape[1]}")
    out = torch.empty(a.shape[0], b.shape[0], dtype=torch.int32, device=a.device)
    for start in range(0, a.shape[0], rows_per_chunk):
        chunk = a[start:start + rows_per_chunk]
        out[start:start + rows_per_chunk] = count - 2 * popcount(chunk[:, None, :] ^ b[None, :, :])
    return out
