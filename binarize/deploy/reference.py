r"""The packed binary convolution in plain torch: the definition the fast kernels are tested against, and the
fallback where they cannot be built.

Three operations, with the same signatures as the compiled ones (:mod:`binarize.deploy.kernels`):

* :func:`pack_activations`: a float ``(N, C, H, W)`` activation becomes its sign bits, channels packed
  (:mod:`binarize.deploy.bits`), one row of words per pixel and channel group: ``(N, G, H', W', Wg)`` with
  :math:`W_g` = ``packed_words(C / G)``, after adding a per-sample shift (:math:`\operatorname{sign}(x + b)`,
  ReActNet's RSign and BI-DiffSR's TaR) and padding with a constant sign.
* :func:`xnor_accumulate`: the valid (pre-padded) convolution of packed activations with packed weights
  ``(G, O_g, k_h, k_w, W_g)`` in integers,

  .. math::
      a_{n,o,y,x} = \sum_{k_y, k_x} \sum_{c < C_g} s^x_{n, c, y s_h + k_y d_h, x s_w + k_x d_w}\,
      s^w_{o, c, k_y, k_x} = k_h k_w C_g - 2 \sum_{k_y, k_x, w} \operatorname{popcount}(X \oplus W),

  exact (``int32``) wherever the ``+-1`` float convolution is.
* :func:`xnor_conv2d`: the epilogue :math:`y = \alpha_o a + \beta_o` on top, in ``float32``.

Each tap gathers a strided view of the packed words (an im2col of words, not of floats), so the work is one
XOR-popcount product per output row (:func:`~binarize.deploy.bits.popcount` of the XOR).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from binarize.deploy.bits import pack_signs, packed_words, popcount

__all__ = ["pack_activations", "xnor_accumulate", "xnor_conv2d"]


def pack_activations(
    x: Tensor, *, groups: int, pads: Sequence[int], shift: Tensor | None = None, pad_negative: bool = False
) -> Tensor:
    """Sign bits of ``x + shift``, channels packed per group, padded: ``(N, G, H + top + bottom, W + left + right,
    Wg)`` ``int64``.

    Args:
        x: ``(N, C, H, W)`` ``float32``.
        groups: :math:`G`, the convolution's channel groups (each packed separately).
        pads: ``(top, bottom, left, right)`` pixels of padding.
        shift: ``None`` or ``(N, C)`` ``float32``, added before the sign (one float add, as torch adds).
        pad_negative: pad with :math:`-1` (set bits) instead of :math:`+1` (clear bits).
    """
    n, c, h, w = x.shape
    _check_groups(c, groups)
    top, bottom, left, right = (int(p) for p in pads)
    values = x if shift is None else x + shift[:, :, None, None]
    fill = -1.0 if pad_negative else 1.0
    padded = F.pad(values, (left, right, top, bottom), value=fill) if any((top, bottom, left, right)) else values
    grouped = padded.reshape(n, groups, c // groups, *padded.shape[2:])
    return pack_signs(grouped, dim=2)


def xnor_accumulate(
    packed: Tensor, weight: Tensor, *, channels: int, stride: Sequence[int], dilation: Sequence[int]
) -> Tensor:
    r"""The integer accumulators :math:`a` of the valid convolution of ``packed`` ``(N, G, Hp, Wp, Wg)`` with
    ``weight`` ``(G, Og, kh, kw, Wg)`` over ``channels`` (:math:`C_g`) signs per tap: ``int32`` ``(N, G Og, Ho,
    Wo)``."""
    n, g, hp, wp, words = packed.shape
    wg, og, kh, kw, wwords = weight.shape
    if g != wg or words != wwords or words != packed_words(channels):
        raise ValueError(
            f"packed activations {tuple(packed.shape)} and weights {tuple(weight.shape)} do not fit each other for "
            f"{channels} channels per group"
        )
    sh, sw = stride
    dh, dw = dilation
    ho = (hp - dh * (kh - 1) - 1) // sh + 1
    wo = (wp - dw * (kw - 1) - 1) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"a {kh}x{kw} kernel (dilation {dh}, {dw}) does not fit a padded {hp}x{wp} input")
    taps = [
        packed[:, :, ky * dh:ky * dh + sh * (ho - 1) + 1:sh, kx * dw:kx * dw + sw * (wo - 1) + 1:sw, :]
        for ky in range(kh)
        for kx in range(kw)
    ]
    columns = torch.stack(taps, dim=4)  # (N, G, Ho, Wo, taps, Wg)
    out = torch.empty(n, g, og, ho * wo, dtype=torch.int32, device=packed.device)
    for group in range(g):
        rows = columns[:, group].reshape(n * ho * wo, kh * kw * words)
        # Unused bits are clear on both sides, so a tap's spare bits never count: the reduction is taps x words.
        product = _xnor_rows(rows, weight[group].reshape(og, kh * kw * words), kh * kw * channels)
        out[:, group] = product.view(n, ho * wo, og).transpose(1, 2)
    return out.view(n, g * og, ho, wo)


def xnor_conv2d(
    packed: Tensor,
    weight: Tensor,
    *,
    channels: int,
    stride: Sequence[int],
    dilation: Sequence[int],
    alpha: Tensor | None = None,
    bias: Tensor | None = None,
) -> Tensor:
    r""":math:`y = \alpha_o a + \beta_o` in ``float32`` ``(N, O, Ho, Wo)``, for :math:`a` the accumulators of
    :func:`xnor_accumulate`; ``alpha`` is ``None`` (1), a scalar or ``(O,)``, ``bias`` ``None`` or ``(O,)``."""
    out = xnor_accumulate(packed, weight, channels=channels, stride=stride, dilation=dilation).to(torch.float32)
    if alpha is not None:
        out = out * (alpha.view(1, -1, 1, 1) if alpha.dim() else alpha)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def _xnor_rows(a: Tensor, b: Tensor, count: int, rows_per_chunk: int = 128) -> Tensor:
    """:math:`n - 2 \\operatorname{popcount}(a_i \\oplus b_j)` for every row pair (``int32`` ``(M, N)``); unlike
    :func:`~binarize.deploy.bits.xnor_matmul`, the rows may hold several packed vectors (taps) back to back."""
    out = torch.empty(a.shape[0], b.shape[0], dtype=torch.int32, device=a.device)
    for start in range(0, a.shape[0], rows_per_chunk):
        chunk = a[start:start + rows_per_chunk]
        out[start:start + rows_per_chunk] = count - 2 * popcount(chunk[:, None, :] ^ b[None, :, :])
    return out


def _check_groups(channels: int, groups: int) -> None:
    if groups < 1 or channels % groups:
        raise ValueError(f"{channels} channels do not split into {groups} groups")
