r"""Packed binary layers: inference modules that compute a binary layer's function on packed bits.

A binary layer (:mod:`binarize.nn.layers`) with a sign input binarizer and a weight :math:`\alpha_o \cdot
\operatorname{sign}(\hat W)` computes, in eval mode,

.. math::
    y = \alpha_o \sum \operatorname{sign}(x + b)\,\operatorname{sign}(\hat W) + \beta_o, \qquad
    \text{out} = \operatorname{act}(y) + x\ (\text{shortcut}).

Its packed twin holds the weight signs as bits (:mod:`binarize.deploy.bits`) and :math:`\alpha` per output channel,
signs and packs its input once per call (the shift added on the way), accumulates XOR-popcounts in integers
(:mod:`binarize.deploy.ops`: compiled kernels, or the pure-torch reference) and applies the epilogue in float.
Everything else of the layer (bias, shift, RPReLU / PReLU and their per-timestep tables, shortcut) is kept as it
is, so timestep-aware layers read their groups exactly as before.

**Padding.** A zero-padded binarized input is not :math:`\pm 1` at the border. The packed input is padded with a
constant sign :math:`p` (:math:`-1` for ``pad_value=-1``, else :math:`+1`), and the difference is added back:
:math:`a = a_p + (v - p) S`, where :math:`v` is the value the layer pads with (0 by default) and :math:`S_{o, y,
x}` the sum of the weight signs over the taps that fall into the padding at that output position (nonzero only
along the border; computed once per input size). Padding modes other than zeros pad the signed input itself
(reflected or replicated signs are signs), so they need no correction.

Layers that cannot run packed (a weight that is not :math:`\pm\alpha_o`, an input binarizer that is not a
two-valued sign, a weight-only binary layer) stay fake-quantised; :func:`~binarize.deploy.freeze` reports them.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from binarize.deploy.bits import pack_signs
from binarize.deploy.kernels import prepare_weight
from binarize.deploy.ops import packed_ops
from binarize.errors import BinarizeError
from binarize.nn.activations import ChannelPReLU
from binarize.nn.channels import gather_rows
from binarize.nn.layers import BinaryConv1d, BinaryConv2d, BinaryConvTranspose2d, BinaryLayerMixin, BinaryLinear

__all__ = [
    "NotPackableError",
    "PackedConv",
    "PackedConvTranspose2d",
    "PackedLayer",
    "PackedLinear",
    "binary_signs",
    "output_rows",
    "pack_layer",
    "rows_to_weight",
]


class NotPackableError(BinarizeError):
    """A binary layer whose function has no packed form (the message says why)."""


def binary_signs(layer: BinaryLayerMixin) -> tuple[Tensor, Tensor]:
    r"""The layer's weight as ``(signs, alpha)``: :math:`\pm 1` in the weight's own layout and :math:`\alpha_o`
    (``(O,)``, ``float32``) with :math:`\alpha_o \cdot \text{signs} = \alpha \cdot B_w(\hat W)` exactly.

    Raises:
        NotPackableError: the weight is not binarized, or its magnitude varies within an output channel (a
            factorized scale, a binarizer to {0, 1}, a sign with ``sign_of_zero: 0`` hitting zeros).
    """
    if layer.weight_binarizer is None:
        raise NotPackableError("its weight is not binarized")
    with torch.no_grad():
        weight = layer.binary_weight_tensor().detach().to(torch.float32)
    magnitude = output_rows(weight.abs(), layer)
    alpha = magnitude.amax(dim=1)
    if not torch.equal(magnitude, alpha[:, None].expand_as(magnitude)):
        scale = layer.options()["scale"]
        raise NotPackableError(
            f"its binary weight is not +-alpha per output channel (weight binarizer "
            f"{layer.options()['weight_binarizer']}, scale {scale})"
        )
    signs = torch.ones_like(weight).masked_fill_(weight < 0, -1.0)
    return signs, alpha


def output_rows(weight: Tensor, layer: BinaryLayerMixin) -> Tensor:
    """``weight`` (in the layer's layout) as ``(O, R)``: one row per output channel, in any order within a row (a
    transposed convolution's ``(C_in, O / G, kh, kw)`` weight holds output channel ``g O / G + j`` in column ``j`` of
    group ``g``'s rows)."""
    if isinstance(layer, BinaryConvTranspose2d):
        groups = layer.groups
        cin, og = weight.shape[:2]
        grouped = weight.reshape(groups, cin // groups, og, -1).transpose(1, 2)
        return grouped.reshape(groups * og, -1)
    return weight.reshape(weight.shape[0], -1)


def rows_to_weight(rows: Tensor, layer: BinaryLayerMixin) -> Tensor:
    """The inverse of :func:`output_rows`: ``(O, R)`` rows back to the layer's weight layout."""
    shape = tuple(layer.weight.shape)
    if isinstance(layer, BinaryConvTranspose2d):
        groups = layer.groups
        cin, og = shape[:2]
        return rows.reshape(groups, og, cin // groups, -1).transpose(1, 2).reshape(shape)
    return rows.reshape(shape)


def _check_input_sign(layer: BinaryLayerMixin) -> None:
    binarizer = layer.input_binarizer
    if binarizer is None:
        raise NotPackableError("its input is not binarized (1-bit weights with a float input run as float)")
    surrogate = binarizer.surrogate(torch.zeros(1))
    if surrogate is None or surrogate.sign_of_zero != 1.0:
        raise NotPackableError(
            f"its input binarizer {layer.options()['input_binarizer']} is not a two-valued sign (sign(0) = +1)"
        )


class PackedLayer(nn.Module):
    """What the packed layers share: the packed weight, the scale, and the binary layer's other parts.

    Attributes:
        weight_words: ``(G, Og, kh, kw, Wg)`` ``int64`` packed weight signs (see :mod:`binarize.deploy.bits`).
        alpha: ``(O,)`` per-output-channel scale :math:`\\alpha_o`.
        channels: :math:`C_g`, input channels per group (valid bits per tap).
        compiled: which operations run: ``None`` the compiled kernels when available, ``False`` the pure-torch
            reference, ``True`` the kernels or an error.
    """

    weight_words: Tensor
    alpha: Tensor

    def __init__(self, layer: BinaryLayerMixin, words: Tensor, alpha: Tensor, channels: int) -> None:
        super().__init__()
        assert isinstance(layer, nn.Module)
        self.register_buffer("weight_words", words.contiguous())
        # The kernels' blocked layout of the weight, derived once (not saved; rebuilt when missing or stale).
        self.register_buffer("weight_prepared", prepare_weight(self.weight_words), persistent=False)
        self._prepared_from = self._weight_version()
        self.register_buffer("alpha", alpha.to(torch.float32).contiguous())
        bias = getattr(layer, "bias", None)
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.float32).clone())
        self.channels = channels
        self.shift = copy.deepcopy(layer.shift)
        self.activation = copy.deepcopy(layer.activation)
        self.shortcut = layer.shortcut
        self.timestep_groups = layer.timestep_groups
        self.timestep_state = layer.timestep_state
        self.compiled: bool | None = None
        self.source_options = layer.options()

    def _weight_version(self) -> tuple[int, int]:
        return self.weight_words.data_ptr(), self.weight_words._version

    def _prepared_weight(self) -> Tensor:
        """The weight in the kernels' layout, recomputed when missing or when ``weight_words`` changed (a loaded
        state dict copies into it in place)."""
        prepared = getattr(self, "weight_prepared", None)
        if prepared is None or getattr(self, "_prepared_from", None) != self._weight_version():
            prepared = prepare_weight(self.weight_words)
            self.register_buffer("weight_prepared", prepared, persistent=False)
            self._prepared_from = self._weight_version()
        return prepared

    def _fused_prelu(
        self, rows: int, groups: Tensor | None, channel_dims: tuple[int, ...], per_sample: bool = True
    ) -> tuple[Tensor | None, Tensor, Tensor | None] | None:
        """The output activation as the kernels' ``prelu=(shift_in, slope, shift_out)``, each ``(rows, O)``
        ``float32``, when it is a PReLU or RPReLU with the stock forward on one of ``channel_dims``; else ``None``
        (also for per-sample parameters unless each sample is one row, ``per_sample``)."""
        activation = self.activation
        if not (isinstance(activation, ChannelPReLU) and type(activation).forward is ChannelPReLU.forward):
            return None
        if activation.channel_dim not in channel_dims or (activation.groups is not None and not per_sample):
            return None
        names = ("shift_in", "slope", "shift_out")
        values = [getattr(activation, name, None) for name in names]
        if activation.groups is not None:
            return self._prelu_rows([None if v is None else gather_rows(v, groups) for v in values], rows)
        # Per-channel parameters: the rows only change with the batch size or the parameters (cached).
        key = (rows, *[None if v is None else (v.data_ptr(), v._version, v.dtype) for v in values])
        cached = getattr(self, "_prelu_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, self._prelu_rows(values, rows))
            self._prelu_cache = cached
        return cached[1]

    def _prelu_rows(
        self, values: list[Tensor | None], rows: int
    ) -> tuple[Tensor | None, Tensor, Tensor | None] | None:
        """``(shift_in, slope, shift_out)`` from per-channel ``(O,)`` or per-sample ``(B, O)`` values, each expanded
        to ``(rows, O)`` ``float32``; ``None`` when their shapes do not fit."""
        channels = self.alpha.numel()
        parts: list[Tensor | None] = []
        for value in values:
            if value is None:
                parts.append(None)
                continue
            batch = value.shape[0] if value.dim() == 2 else 1
            if value.shape[-1] != channels or value.dim() > 2 or batch not in (1, rows):
                return None
            parts.append(value.detach().to(torch.float32).reshape(-1, channels).expand(rows, channels).contiguous())
        return parts[0], parts[1], parts[2]  # type: ignore[return-value]

    def _groups(self, timestep_groups: Tensor | None) -> Tensor | None:
        return BinaryLayerMixin._groups(self, timestep_groups)  # type: ignore[arg-type]

    def _ops(self) -> Any:
        return packed_ops(compiled=self.compiled)

    def _finish(self, y: Tensor, x: Tensor, groups: Tensor | None) -> Tensor:
        if self.activation is not None:
            y = self.activation(y, groups)
        return y + x if self.shortcut else y

    def extra_repr(self) -> str:
        return f"packed {tuple(self.weight_words.shape)} words, {self.channels} channels per group"


def _copy_geometry(packed: nn.Module, layer: nn.Module, names: tuple[str, ...]) -> None:
    """Keep the replaced layer's geometry attributes (code around a layer reads ``in_channels`` and the like)."""
    for name in names:
        setattr(packed, name, getattr(layer, name))


def _conv_words(signs: Tensor, groups: int) -> Tensor:
    """``(O, Cg, kh, kw)`` signs -> ``(G, Og, kh, kw, Wg)`` words."""
    out = signs.shape[0]
    return pack_signs(signs, dim=1).reshape(groups, out // groups, *signs.shape[2:], -1)


class PackedConv(PackedLayer):
    """Packed :class:`~binarize.nn.BinaryConv2d` and :class:`~binarize.nn.BinaryConv1d` (a 1-d convolution runs as a
    2-d one of height 1)."""

    def __init__(self, layer: BinaryConv1d | BinaryConv2d, signs: Tensor, alpha: Tensor) -> None:
        one_d = isinstance(layer, BinaryConv1d)
        if one_d:
            signs = signs.unsqueeze(2)
        super().__init__(layer, _conv_words(signs, layer.groups), alpha, layer.in_channels // layer.groups)
        self.spatial_dims = 1 if one_d else 2
        _copy_geometry(self, layer, ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                                     "groups"))
        self.stride2d = (1, *layer.stride) if one_d else tuple(layer.stride)
        self.dilation2d = (1, *layer.dilation) if one_d else tuple(layer.dilation)
        left_first = layer._explicit_padding()  # F.pad order: last dimension first
        self.pads = (0, 0, *left_first) if one_d else (left_first[2], left_first[3], left_first[0], left_first[1])
        self.padding_mode = layer.padding_mode
        pad_value = 0.0 if layer.pad_value is None else layer.pad_value
        self.pad_negative = pad_value == -1.0 and self.padding_mode == "zeros"
        self.correction = (pad_value - (-1.0 if self.pad_negative else 1.0)) if self.padding_mode == "zeros" else 0.0
        self.register_buffer("tap_sums", signs.sum(dim=1, keepdim=True), persistent=False)

    def forward(self, input: Tensor, timestep_groups: Tensor | None = None) -> Tensor:
        groups = self._groups(timestep_groups)
        unbatched = input.dim() == self.spatial_dims + 1
        x = input.unsqueeze(0) if unbatched else input
        y = self._convolve(x, groups)
        return y.squeeze(0) if unbatched else y

    def _signed_input(self, x: Tensor, groups: Tensor | None) -> tuple[Tensor, Tensor | None, tuple[int, ...]]:
        """The 4-d input, the per-sample shift ``(N, C)`` (or ``None``) and the pads left to the packing."""
        x4 = x.unsqueeze(2) if self.spatial_dims == 1 else x
        shift = None
        if self.shift is not None:
            rows = self.shift.broadcast(x, groups)
            shift = rows.reshape(rows.shape[0], -1).expand(x.shape[0], -1).to(torch.float32).contiguous()
        if self.padding_mode != "zeros":
            shifted = x4 if shift is None else x4 + shift[:, :, None, None]
            top, bottom, left, right = self.pads
            return F.pad(shifted, (left, right, top, bottom), mode=self.padding_mode), None, (0, 0, 0, 0)
        return x4, shift, self.pads

    def accumulate(self, x: Tensor, groups: Tensor | None = None) -> Tensor:
        """The accumulators :math:`a` (``float64`` ``(N, O, Ho, Wo)``, padding corrected: integers, plus multiples
        of a ``pad_value`` that is not one) for a batched input: exactly what the convolution of the layer's
        binarized input with the weight signs computes, before :math:`\\alpha` and the bias."""
        x4, shift, pads = self._signed_input(x, self._groups(groups))
        ops = self._ops()
        packed = ops.pack_activations(x4.to(torch.float32).contiguous(), groups=self.groups, pads=pads, shift=shift,
                                      pad_negative=self.pad_negative)
        acc = ops.xnor_accumulate(packed, self.weight_words, channels=self.channels, stride=self.stride2d,
                                  dilation=self.dilation2d).to(torch.float64)
        if self.correction and any(pads):
            acc = acc + self.correction * self._border_sums(x4.shape[2], x4.shape[3]).to(torch.float64)
        return acc.squeeze(2) if self.spatial_dims == 1 else acc

    def _convolve(self, x: Tensor, groups: Tensor | None) -> Tensor:
        """The layer's output for a batched input: the packed convolution, its epilogue, the activation and the
        shortcut. A PReLU / RPReLU activation and the shortcut run inside the kernel's epilogue (float32 inputs),
        and so does the border correction of a zero padding."""
        x4, shift, pads = self._signed_input(x, groups)
        stride = self.stride2d
        if self.tap_sums.shape[2:] == (1, 1) and not any(pads) and stride != (1, 1):
            x4, stride = x4[:, :, ::stride[0], ::stride[1]], (1, 1)  # a strided 1 x 1 reads only these pixels
        ops = self._ops()
        packed = ops.pack_activations(x4.to(torch.float32).contiguous(), groups=self.groups, pads=pads, shift=shift,
                                      pad_negative=self.pad_negative)
        border = None
        if self.correction and any(pads):
            sums = self.tap_sums.view(self.tap_sums.shape[0], *self.tap_sums.shape[2:])
            border = (pads[0], pads[2], x4.shape[2], x4.shape[3], sums, self.correction)
        fuse = x.dtype == torch.float32
        prelu = self._fused_prelu(x.shape[0], groups, (1,)) if fuse and self.activation is not None else None
        activated = self.activation is None or prelu is not None
        source = x.unsqueeze(2) if self.spatial_dims == 1 else x
        shape = (x.shape[0], self.alpha.numel(), *self._output_size(source))
        residual = source if fuse and self.shortcut and activated and tuple(source.shape) == shape else None
        y = ops.xnor_conv2d(packed, self.weight_words, channels=self.channels, stride=stride,
                            dilation=self.dilation2d, alpha=self.alpha, bias=self.bias,
                            prepared=self._prepared_weight(), border=border, prelu=prelu, residual=residual)
        y = y.to(x.dtype)
        y = y.squeeze(2) if self.spatial_dims == 1 else y
        if not activated:
            y = self.activation(y, groups)
        return y + x if self.shortcut and residual is None else y

    def _output_size(self, x4: Tensor) -> tuple[int, int]:
        """The output's ``(Ho, Wo)`` for a 4-d input before padding."""
        top, bottom, left, right = self.pads
        (kh, kw), (sh, sw), (dh, dw) = self.tap_sums.shape[2:], self.stride2d, self.dilation2d
        return ((x4.shape[2] + top + bottom - dh * (kh - 1) - 1) // sh + 1,
                (x4.shape[3] + left + right - dw * (kw - 1) - 1) // sw + 1)

    def _border_sums(self, height: int, width: int) -> Tensor:
        r""":math:`S` for an input of ``height x width``: per output channel and position, the sum of the weight
        signs over the taps that land in the padding (``float32``, exact integers)."""
        top, bottom, left, right = self.pads
        mask = torch.ones(1, 1, height + top + bottom, width + left + right, device=self.tap_sums.device)
        mask[:, :, top:top + height, left:left + width] = 0.0
        return F.conv2d(mask, self.tap_sums, stride=self.stride2d, dilation=self.dilation2d)


class PackedLinear(PackedLayer):
    """Packed :class:`~binarize.nn.BinaryLinear`: every row of ``(..., K)`` is one packed vector; the product runs as
    a 1 x 1 convolution over the rows."""

    def __init__(self, layer: BinaryLinear, signs: Tensor, alpha: Tensor) -> None:
        words = pack_signs(signs, dim=1).reshape(1, signs.shape[0], 1, 1, -1)
        super().__init__(layer, words, alpha, layer.in_features)
        _copy_geometry(self, layer, ("in_features", "out_features"))

    def accumulate(self, x: Tensor, groups: Tensor | None = None) -> Tensor:
        """The integer accumulators (``float64`` ``(..., O)``, exact)."""
        packed = self._packed_rows(x, self._groups(groups))
        acc = self._ops().xnor_accumulate(packed, self.weight_words, channels=self.channels, stride=(1, 1),
                                          dilation=(1, 1))
        return acc.reshape(*x.shape[:-1], self.out_features).to(torch.float64)

    def _packed_rows(self, x: Tensor, groups: Tensor | None) -> Tensor:
        h = x if self.shift is None else self.shift(x, groups)
        rows = h.reshape(-1, self.channels, 1, 1).to(torch.float32).contiguous()
        return self._ops().pack_activations(rows, groups=1, pads=(0, 0, 0, 0))

    def forward(self, input: Tensor, timestep_groups: Tensor | None = None) -> Tensor:
        groups = self._groups(timestep_groups)
        packed = self._packed_rows(input, groups)
        rows = packed.shape[0]
        fuse = input.dtype == torch.float32
        prelu = None
        if fuse and self.activation is not None:
            prelu = self._fused_prelu(rows, groups, (-1, input.dim() - 1), per_sample=input.dim() == 2)
        activated = self.activation is None or prelu is not None
        fused_shortcut = fuse and self.shortcut and activated and self.in_features == self.out_features
        residual = input.reshape(rows, self.out_features, 1, 1) if fused_shortcut else None
        y = self._ops().xnor_conv2d(packed, self.weight_words, channels=self.channels, stride=(1, 1),
                                    dilation=(1, 1), alpha=self.alpha, bias=self.bias,
                                    prepared=self._prepared_weight(), prelu=prelu, residual=residual)
        y = y.reshape(*input.shape[:-1], self.out_features).to(input.dtype)
        if not activated:
            y = self.activation(y, groups)
        return y + input if self.shortcut and residual is None else y


class PackedConvTranspose2d(PackedLayer):
    r"""Packed :class:`~binarize.nn.BinaryConvTranspose2d`: every input pixel's packed channels meet every (output
    channel, tap) row of the weight in one 1 x 1 XOR-popcount product, and the per-tap integers are summed into
    place (``fold``, exact in ``float64``): :math:`a_{o, y s - p + k_y d, \dots} \mathrel{+}= \sum_c s^x_c
    s^w_{c, o, k_y, k_x}`. No input padding, so no correction."""

    def __init__(self, layer: BinaryConvTranspose2d, signs: Tensor, alpha: Tensor) -> None:
        groups = layer.groups
        cin, og, kh, kw = signs.shape
        rows = signs.reshape(groups, cin // groups, og, kh, kw).permute(0, 2, 3, 4, 1)  # (G, Og, kh, kw, Cg)
        words = pack_signs(rows, dim=-1).reshape(groups, og * kh * kw, 1, 1, -1)
        super().__init__(layer, words, alpha, cin // groups)
        _copy_geometry(self, layer, ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                                     "groups", "output_padding"))

    def accumulate(self, x: Tensor, groups: Tensor | None = None, output_size: list[int] | None = None) -> Tensor:
        """The integer accumulators (``float64`` ``(N, O, Hout, Wout)``, exact) for a batched input."""
        return self._accumulate(x, self._groups(groups), output_size)

    def _accumulate(self, x: Tensor, groups: Tensor | None, output_size: list[int] | None) -> Tensor:
        n, _, height, width = x.shape
        shift = None
        if self.shift is not None:
            rows = self.shift.broadcast(x, groups)
            shift = rows.reshape(rows.shape[0], -1).expand(n, -1).to(torch.float32).contiguous()
        ops = self._ops()
        packed = ops.pack_activations(x.to(torch.float32).contiguous(), groups=self.groups, pads=(0, 0, 0, 0),
                                      shift=shift)
        taps = ops.xnor_accumulate(packed, self.weight_words, channels=self.channels, stride=(1, 1), dilation=(1, 1))
        kh, kw = self.kernel_size
        (sh, sw), (dh, dw), (ph, pw) = self.stride, self.dilation, self.padding
        full = ((height - 1) * sh + dh * (kh - 1) + 1, (width - 1) * sw + dw * (kw - 1) + 1)
        columns = taps.to(torch.float64).reshape(n, self.out_channels * kh * kw, height * width)
        summed = F.fold(columns, full, (kh, kw), dilation=(dh, dw), stride=(sh, sw))
        op = nn.ConvTranspose2d._output_padding(  # type: ignore[arg-type]
            self, x, output_size, list(self.stride), list(self.padding), list(self.kernel_size), 2,
            list(self.dilation),
        )
        out_h = (height - 1) * sh - 2 * ph + dh * (kh - 1) + op[0] + 1
        out_w = (width - 1) * sw - 2 * pw + dw * (kw - 1) + op[1] + 1
        cropped = summed[:, :, ph:ph + out_h, pw:pw + out_w]
        return F.pad(cropped, (0, out_w - cropped.shape[3], 0, out_h - cropped.shape[2]))

    def forward(
        self, input: Tensor, output_size: list[int] | None = None, timestep_groups: Tensor | None = None
    ) -> Tensor:
        groups = self._groups(timestep_groups)
        unbatched = input.dim() == 3
        x = input.unsqueeze(0) if unbatched else input
        y = self._accumulate(x, groups, output_size).to(torch.float32) * self.alpha.view(1, -1, 1, 1)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        y = self._finish(y.to(x.dtype), x, groups)
        return y.squeeze(0) if unbatched else y


#: Binary layer class -> its packed twin.
PACKED_CLASSES: dict[type[BinaryLayerMixin], type[PackedLayer]] = {
    BinaryConv1d: PackedConv,
    BinaryConv2d: PackedConv,
    BinaryLinear: PackedLinear,
    BinaryConvTranspose2d: PackedConvTranspose2d,
}


def pack_layer(
    layer: BinaryLayerMixin, signs: Tensor | None = None, alpha: Tensor | None = None
) -> PackedLayer:
    """The packed twin of ``layer`` (in eval mode), from its own weight or from given ``signs`` / ``alpha`` (as
    :func:`binary_signs` returns them, e.g. read from an exported file).

    Raises:
        NotPackableError: the layer has no packed form (the message says why).
    """
    packed_class = PACKED_CLASSES.get(type(layer))
    if packed_class is None:
        raise NotPackableError(f"{type(layer).__name__} has no packed form")
    _check_input_sign(layer)
    if signs is None or alpha is None:
        signs, alpha = binary_signs(layer)
    return packed_class(layer, signs.to(torch.float32), alpha)  # type: ignore[arg-type]
