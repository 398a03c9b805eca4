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
    packed: Tensor,
    weight: Tensor,
    *,
    channels: int,
    stride: Sequence[int],
    dilation: Sequence[int],
    prepared: Tensor | None = None,
) -> Tensor:
    r"""The integer accumulators :math:`a` of the valid convolution of ``packed`` ``(N, G, Hp, Wp, Wg)`` with
    ``weight`` ``(G, Og, kh, kw, Wg)`` over ``channels`` (:math:`C_g`) signs per tap: ``int32`` ``(N, G Og, Ho,
    Wo)``. ``prepared`` (the compiled kernels' regrouped weight) is accepted and unused."""
    n, g, hp, wp, words = packed.shape
    wg, og, kh, kw, wwords = weight.shape
    if g != wg or words != wwords or words != packed_words(channels):
        raise ValueError(
            f"packed activations {tuple(packed.shape)} and weights {tuple(weight.shape)} do not fit each other for "
            f"{channels} channels per group"
        )
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
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
    out = torch.empty(n, g, og, ho * wo, dtype=torch.int32)
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
    prepared: Tensor | None = None,
    border: tuple[int, int, int, int, Tensor, float] | None = None,
    prelu: tuple[Tensor | None, Tensor, Tensor | None] | None = None,
    residual: Tensor | None = None,
) -> Tensor:
    r"""The accumulators :math:`a` of :func:`xnor_accumulate` through the epilogue, in ``float32`` ``(N, O, Ho,
    Wo)``, each step rounded once, in this order:

    .. math::
        a' = a + c\,S_{o,y,x}, \qquad y = \alpha_o a' + \beta_o, \qquad
        z = y + s_{n,o}, \quad y = (z > 0\ ?\ z : q_{n,o} z) + t_{n,o}, \qquad y = y + r_{n,o,y,x}.

    ``alpha`` is ``None`` (1), a scalar or ``(O,)``, ``bias`` ``None`` or ``(O,)``; ``border`` is ``None`` or
    ``(top, left, height, width, tap_sums, coef)``: :math:`S_{o,y,x}` sums ``tap_sums[o]`` (``(O, kh, kw)``) over the
    taps of output :math:`(y, x)` that read the padding around the ``height x width`` input placed at ``(top,
    left)``, and ``coef`` is :math:`c`; ``prelu`` is ``None`` or ``(shift_in, slope, shift_out)``, each ``(N, O)``
    (the shifts may be ``None``); ``residual`` is ``None`` or ``(N, O, Ho, Wo)``. ``prepared`` is accepted and
    unused."""
    out = xnor_accumulate(packed, weight, channels=channels, stride=stride, dilation=dilation).to(torch.float32)
    if border is not None:
        top, left, height, width, tap_sums, coef = border
        sums = _border_sums(packed.shape[2:4], (top, left, height, width), tap_sums, stride, dilation)
        out = out + torch.tensor(coef, dtype=torch.float32) * sums.to(torch.float32)
    if alpha is not None:
        out = out * (alpha.view(1, -1, 1, 1) if alpha.dim() else alpha)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    if prelu is not None:
        shift_in, slope, shift_out = prelu
        z = out if shift_in is None else out + shift_in[:, :, None, None]
        out = torch.where(z > 0, z, slope[:, :, None, None] * z)
        if shift_out is not None:
            out = out + shift_out[:, :, None, None]
    if residual is not None:
        out = out + residual
    return out


def _border_sums(
    padded: Sequence[int], place: Sequence[int], tap_sums: Tensor, stride: Sequence[int], dilation: Sequence[int]
) -> Tensor:
    r""":math:`S_{o,y,x}`: ``tap_sums[o]`` summed over the taps of output :math:`(y, x)` that fall outside the
    ``height x width`` input at ``(top, left)`` of the padded ``Hp x Wp`` plane (``float64``, exact)."""
    top, left, height, width = (int(v) for v in place)
    mask = torch.ones(1, 1, *padded, dtype=torch.float64)
    mask[:, :, top:top + height, left:left + width] = 0.0
    weight = tap_sums.to(torch.float64).unsqueeze(1)  # (O, 1, kh, kw)
    return F.conv2d(mask, weight, stride=_pair(stride), dilation=_pair(dilation))


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


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
