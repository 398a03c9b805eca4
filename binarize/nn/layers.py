r"""Binary layers: drop-in subclasses of the torch layers they replace.

A binary layer computes

.. math::
    h = x + b \ (\text{optional shift}), \quad
    y = \operatorname{op}\bigl(B_x(h),\ \alpha \cdot B_w(\hat W)\bigr) + \text{bias}, \quad
    \text{out} = \operatorname{act}(y) + x \ (\text{optional shortcut})

where ``op`` is the convolution or matrix product of the torch layer, :math:`B_x` and :math:`B_w` the input and
weight binarizers, :math:`(\hat W, \alpha)` the output of the weight scale (see :mod:`binarize.scaling`), ``act`` an
optional RPReLU or PReLU, and the shortcut adds the un-shifted input. With every option off the layer computes
exactly what the torch layer computes (the same kernels on the same tensors, bit for bit).

Every constructor argument of the torch layer is honoured (stride, padding including ``"same"``, dilation, groups,
bias, padding_mode, output_padding); options that cannot be honoured raise
:class:`~binarize.errors.UnsupportedLayerError`.

Training cost: the weight is binarized once per forward pass. When a binarizer has a fused form (every registered
sign estimator; see :meth:`~binarize.binarizers.Binarizer.surrogate`), the layer binarizes inside one autograd
function with the operation (:mod:`binarize.nn.functional`): it saves only the un-binarized input, as the
full-precision twin saves its input, and recomputes the binary tensor in the backward pass. Other binarizers (a
step to {0, 1}, a user function) and layouts the fused functions do not cover (a padding mode other than zeros, an
asymmetric ``"same"`` padding) run the binarizer as a module, with the same values and gradients.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from binarize._registry import Registry
from binarize.binarizers import Binarizer, BinarizerSpec, Surrogate, get_binarizer
from binarize.errors import UnsupportedLayerError
from binarize.nn.activations import ACTIVATIONS, ChannelPReLU, ShiftedPReLUParameters
from binarize.nn.channels import ChannelDim
from binarize.nn.functional import binary_conv, binary_linear, binary_weight, scale_binary
from binarize.nn.handover import may_take_over
from binarize.nn.shift import LearnableBias
from binarize.nn.timestep import TimestepState
from binarize.scaling import ScaleSpec, WeightScale, make_scale

LAYERS: Registry[type["BinaryLayerMixin"]] = Registry("binary layer")
"""Float layer class name ("Conv2d", ...) -> the binary class that replaces it."""

Shortcut = bool | str

#: The parameters of a binary layer that can be held once per timestep group.
TIMESTEP_PARTS: tuple[str, ...] = ("input_shift", "activation")

OPTION_DEFAULTS: dict[str, Any] = {
    "weight_binarizer": None,
    "input_binarizer": None,
    "scale": None,
    "scale_gradient": True,
    "input_shift": False,
    "activation": None,
    "shortcut": False,
    "pad_value": None,
    "fold_bias": False,
    "timestep_groups": None,
    "timestep_parts": TIMESTEP_PARTS,
}
"""The binary-layer options, with their defaults (everything off). ``timestep_groups`` (:math:`K`) makes the
parameters named in ``timestep_parts`` (the input shift, the output activation, or both) timestep-aware (see
:mod:`binarize.nn.timestep`); recipes set both through their ``timestep`` section and the ``timestep_aware`` option.
``fold_bias`` removes the layer's bias, adding it to the output activation's input shift instead (the same
function, one parameter vector fewer; it needs an activation with an input shift, such as RPReLU).
``scale_gradient`` says whether the latent weight's gradient carries the weight scale :math:`\alpha` (``True``,
the chain rule) or not (``False``, as BI-DiffSR's release trains; see :func:`~binarize.nn.functional.scale_binary`)."""


_SKIP_RESET: ContextVar[bool] = ContextVar("binarize_skip_reset", default=False)
"""True while :meth:`BinaryLayerMixin.from_float` builds a layer whose weights it overwrites."""


class _Operands(NamedTuple):
    """What a binary layer's operation receives. Without a surrogate on either side, ``x`` and ``weight`` as used
    (shifted and binarized), no ``shift`` and no ``activation``. Otherwise the fused operation shifts, binarizes and
    activates: ``x`` is the layer's input, ``shift`` the input shift ready to broadcast (or ``None``), a side with a
    surrogate holds the un-binarized tensor (``alpha_dims``: the weight scale's), and ``activation`` the output
    PReLU / RPReLU's arguments when the operation applies it (``None``: the layer applies its activation itself)."""

    x: Tensor
    shift: Tensor | None
    weight: Tensor
    alpha_dims: tuple[int, ...]
    input_surrogate: Surrogate | None
    weight_surrogate: Surrogate | None
    activation: ShiftedPReLUParameters | None = None

    @property
    def fused(self) -> bool:
        """Whether the fused operation runs (a surrogate on either side)."""
        return self.input_surrogate is not None or self.weight_surrogate is not None


class BinaryLayerMixin:
    """The binary machinery shared by all binary layers. Mixed in before the torch layer class."""

    float_class: ClassVar[type[nn.Module]]
    weight_out_dim: ClassVar[int] = 0
    activation_channel_dim: ClassVar[ChannelDim] = 1

    weight: nn.Parameter
    weight_binarizer: Binarizer | None
    input_binarizer: Binarizer | None
    scale: WeightScale | None
    scale_gradient: bool
    shift: LearnableBias | None
    activation: nn.Module | None
    shortcut: bool
    pad_value: float | None

    # -- construction ---------------------------------------------------------------------------------------
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """The torch layer's arguments, plus the binary-layer options (:data:`OPTION_DEFAULTS`) as keywords."""
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in OPTION_DEFAULTS}
        self.float_class.__init__(self, *args, **kwargs)  # type: ignore[misc]
        self._init_binary(**options)

    def reset_parameters(self) -> None:
        """The torch layer's initialisation, skipped while :meth:`from_float` builds the layer (the weights are
        overwritten at once)."""
        if not _SKIP_RESET.get():
            super().reset_parameters()  # type: ignore[misc]

    def _init_binary(
        self,
        *,
        weight_binarizer: BinarizerSpec = None,
        input_binarizer: BinarizerSpec = None,
        scale: ScaleSpec = None,
        scale_gradient: bool = True,
        input_shift: bool = False,
        activation: str | None = None,
        shortcut: Shortcut = False,
        pad_value: float | None = None,
        fold_bias: bool = False,
        timestep_groups: int | None = None,
        timestep_parts: tuple[str, ...] | list[str] = TIMESTEP_PARTS,
    ) -> None:
        assert isinstance(self, nn.Module)
        if timestep_groups is not None and (
            isinstance(timestep_groups, bool) or not isinstance(timestep_groups, int) or timestep_groups < 1
        ):
            raise TypeError(f"timestep_groups must be a positive integer or None, got {timestep_groups!r}")
        parts = tuple(timestep_parts)
        if not parts or any(p not in TIMESTEP_PARTS for p in parts) or len(set(parts)) != len(parts):
            raise TypeError(
                f"timestep_parts must name one or both of {list(TIMESTEP_PARTS)} once each, got {timestep_parts!r}"
            )
        self.timestep_groups = timestep_groups
        self.timestep_parts = tuple(p for p in TIMESTEP_PARTS if p in parts)
        self.timestep_state: TimestepState | None = None
        for flag_name, flag in (
            ("scale_gradient", scale_gradient), ("input_shift", input_shift), ("fold_bias", fold_bias)
        ):
            if not isinstance(flag, bool):
                raise TypeError(f"{flag_name} must be True or False, got {flag!r}")
        if pad_value is not None and (isinstance(pad_value, bool) or not isinstance(pad_value, (int, float))):
            raise TypeError(f"pad_value must be a number or None, got {pad_value!r}")
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        self.weight_binarizer = get_binarizer(weight_binarizer)
        self.input_binarizer = get_binarizer(input_binarizer)
        self.scale = make_scale(scale, self.weight.detach(), self.weight_out_dim)
        self.scale_gradient = scale_gradient
        shift_groups = timestep_groups if "input_shift" in self.timestep_parts else None
        activation_groups = timestep_groups if "activation" in self.timestep_parts else None
        self.shift = (
            LearnableBias(self._in_channels(), self.activation_channel_dim, groups=shift_groups, **factory)
            if input_shift
            else None
        )
        if activation is None or activation == "none":
            self.activation = None
        elif isinstance(activation, str):
            self.activation = ACTIVATIONS.get(activation)(
                self._out_channels(), self.activation_channel_dim, groups=activation_groups, **factory
            )
        else:
            raise TypeError(f"activation must be None or one of {ACTIVATIONS.names()}, got {activation!r}")
        self.shortcut = self._resolve_shortcut(shortcut)
        self.pad_value = None if pad_value is None else float(pad_value)
        self._check_pad_value()
        self.fold_bias = fold_bias
        if fold_bias:
            self._fold_bias()

    def _fold_bias(self) -> None:
        r"""Move the bias into the activation's input shift, then drop the bias parameter.

        :math:`\operatorname{act}(y + b + s) = \operatorname{act}(y + s')` with :math:`s' = s + b` (for every
        timestep group), so the layer computes the same function with one parameter vector fewer.
        """
        assert isinstance(self, nn.Module)
        shift_in = getattr(self.activation, "shift_in", None)
        if not isinstance(shift_in, nn.Parameter):
            raise UnsupportedLayerError(
                f"fold_bias moves the bias into the output activation's input shift, but {self._describe()} has "
                f"activation {self.options()['activation']!r}; use activation: rprelu, or fold_bias: false"
            )
        bias = getattr(self, "bias", None)
        if bias is not None:
            with torch.no_grad():
                shift_in.add_(bias.to(shift_in.dtype))
            self.register_parameter("bias", None)

    def _resolve_shortcut(self, shortcut: Shortcut) -> bool:
        if shortcut not in (True, False, "auto"):
            raise TypeError(f"shortcut must be true, false or 'auto', got {shortcut!r}")
        if shortcut is False:
            return False
        preserving = self._shape_preserving()
        if shortcut is True and not preserving:
            raise UnsupportedLayerError(
                f"an identity shortcut needs equal input and output shapes, but {self._describe()} changes them; "
                f"use shortcut: auto to add shortcuts only where shapes match"
            )
        return preserving

    def _check_pad_value(self) -> None:
        """Refuse a padding value the layer cannot apply (overridden by convolutions)."""

    # -- per-class geometry (overridden where it differs) ------------------------------------------------------
    def _in_channels(self) -> int:
        return self.in_channels  # type: ignore[attr-defined, no-any-return]

    def _out_channels(self) -> int:
        return self.out_channels  # type: ignore[attr-defined, no-any-return]

    def _shape_preserving(self) -> bool:
        raise NotImplementedError

    def _describe(self) -> str:
        return f"{type(self).__name__}({nn.Module.extra_repr(self)})"  # type: ignore[arg-type]

    # -- forward pieces -------------------------------------------------------------------------------------
    def binary_weight_tensor(self) -> Tensor:
        r"""The weight the operation uses: :math:`\alpha \cdot B_w(\hat W)` (the plain weight when all is off)."""
        weight, alpha_dims, surrogate = self._weight_operands(fuse=True)
        if surrogate is None:
            return weight
        return binary_weight(weight, alpha_dims, surrogate, scale_gradient=self.scale_gradient)

    def _weight_operands(self, fuse: bool) -> tuple[Tensor, tuple[int, ...], Surrogate | None]:
        """``(W, alpha_dims, surrogate)`` for a fused operation, or ``(weight as used, (), None)``.

        The weight side is fused when ``fuse`` is true, the weight binarizer has a fused form and the scale is a
        mean of :math:`|W|` without gradient (:meth:`~binarize.scaling.WeightScale.mean_abs_dims`). Unfused, the
        scaled binary weight is :func:`~binarize.nn.functional.scale_binary` of the binarizer's output, so that
        ``scale_gradient`` means the same on both paths.
        """
        weight: Tensor = self.weight
        binarizer = self.weight_binarizer
        surrogate = binarizer.surrogate(weight) if binarizer is not None and fuse else None
        if surrogate is not None:
            alpha_dims = () if self.scale is None else self.scale.mean_abs_dims(weight)
            if alpha_dims is not None:
                return weight, alpha_dims, surrogate
        alpha = None
        if self.scale is not None:
            weight, alpha = self.scale(weight)
        if binarizer is not None:
            weight = binarizer(weight)
        if alpha is None:
            return weight, (), None
        return scale_binary(weight, alpha, scale_gradient=self.scale_gradient), (), None

    def _operands(self, x: Tensor, groups: Tensor | None) -> _Operands:
        """The operation's input and weight, shifted and binarized here or left to a fused operation (see
        :class:`_Operands`)."""
        fuse = self._fusable()
        binarizer = self.input_binarizer
        input_surrogate = binarizer.surrogate(x) if binarizer is not None and fuse else None
        weight, alpha_dims, weight_surrogate = self._weight_operands(fuse)
        operands = _Operands(x, None, weight, alpha_dims, input_surrogate, weight_surrogate)
        # The operation adds the shift only where it also binarizes the input (or leaves it as is); an input
        # binarizer run as a module here needs the shifted input.
        if self.shift is not None and operands.fused and (binarizer is None or input_surrogate is not None):
            operands = operands._replace(shift=self.shift.broadcast(x, groups))
        elif self.shift is not None:
            x = self.shift(x, groups)
        if binarizer is not None and input_surrogate is None:
            x = binarizer(x)
        activation = self._fused_activation(x, groups) if operands.fused else None
        return operands._replace(x=x, activation=activation)

    def _fused_activation(self, x: Tensor, groups: Tensor | None) -> ShiftedPReLUParameters | None:
        """The output activation's arguments, ready for the fused operation, when it is a PReLU or RPReLU with the
        stock forward (the fused operation runs the same kernels in its own node); else ``None``."""
        activation = self.activation
        if isinstance(activation, ChannelPReLU) and type(activation).forward is ChannelPReLU.forward:
            return activation.fused_parameters(x, groups)
        return None

    def _fusable(self) -> bool:
        """Whether the fused operation covers this layer's arguments (overridden where a layout rules it out)."""
        return True

    def _groups(self, timestep_groups: Tensor | None) -> Tensor | None:
        """The per-sample timestep groups for this call (``None`` for a layer that is not timestep-aware)."""
        if self.timestep_groups is None:
            return None
        if timestep_groups is not None:
            return timestep_groups
        if self.timestep_state is None:
            raise RuntimeError(
                f"this timestep-aware {type(self).__name__} needs timestep groups: pass timestep_groups= (a long "
                f"tensor of group indices per sample), or binarize the model with a recipe whose `timestep` section "
                f"names its timestep input"
            )
        return self.timestep_state.require()

    def _finish(self, y: Tensor, x: Tensor, groups: Tensor | None, operands: _Operands) -> Tensor:
        """The output activation (unless the fused operation applied it, see :class:`_Operands`) and the shortcut."""
        if self.activation is not None and operands.activation is None:
            y = self.activation(y, groups)
        if self.shortcut:
            y = y + x
        return y

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[misc]
        extras = [f"shortcut={self.shortcut}"] if self.shortcut else []
        if self.pad_value is not None:
            extras.append(f"pad_value={self.pad_value}")
        if not self.scale_gradient:
            extras.append("scale_gradient=False")
        return ", ".join([base, *extras]) if extras else base

    # -- introspection --------------------------------------------------------------------------------------
    @property
    def binary_weight(self) -> bool:
        """True when the weight is binarized."""
        return self.weight_binarizer is not None

    @property
    def binary_input(self) -> bool:
        """True when the input is binarized."""
        return self.input_binarizer is not None

    @property
    def is_binary(self) -> bool:
        """True when both weight and input are binary, so the operation is an XNOR-popcount one."""
        return self.binary_weight and self.binary_input

    def options(self) -> dict[str, Any]:
        """The layer options as plain data (the keys of :data:`OPTION_DEFAULTS`)."""
        return {
            "weight_binarizer": None if self.weight_binarizer is None else self.weight_binarizer.config(),
            "input_binarizer": None if self.input_binarizer is None else self.input_binarizer.config(),
            "scale": None if self.scale is None else self.scale.config(),
            "scale_gradient": self.scale_gradient,
            "input_shift": self.shift is not None,
            "activation": None if self.activation is None else _activation_name(self.activation),
            "shortcut": self.shortcut,
            "pad_value": self.pad_value,
            "fold_bias": self.fold_bias,
            "timestep_groups": self.timestep_groups,
            "timestep_parts": self.timestep_parts,
        }

    # -- conversion -----------------------------------------------------------------------------------------
    @classmethod
    def _float_init_args(cls, module: nn.Module) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_float(cls, module: nn.Module, **options: Any) -> "BinaryLayerMixin":
        """Build the binary twin of ``module`` (same arguments, device and dtype; weights copied, or taken over
        where the caller hands them over, see :mod:`binarize.nn.handover`).

        Args:
            module: an instance of exactly :attr:`float_class` (subclasses with their own forward are refused).
            **options: binary-layer options (see :data:`OPTION_DEFAULTS`).

        Raises:
            UnsupportedLayerError: when the module or an option cannot be reproduced faithfully.
            TypeError: for a module of another class or an option of the wrong type.
        """
        if not isinstance(module, cls.float_class):
            raise TypeError(
                f"{cls.__name__}.from_float expects a {cls.float_class.__name__}, got {type(module).__name__}"
            )
        if type(module) is not cls.float_class and type(module).forward is not cls.float_class.forward:
            raise UnsupportedLayerError(
                f"{type(module).__module__}.{type(module).__qualname__} subclasses {cls.float_class.__name__} "
                f"with its own forward; a {cls.__name__} would not compute the same function"
            )
        unknown = sorted(set(options) - set(OPTION_DEFAULTS))
        if unknown:
            raise TypeError(f"unknown binary-layer option(s) {unknown}; allowed: {sorted(OPTION_DEFAULTS)}")
        if torch.nn.utils.parametrize.is_parametrized(module):
            raise UnsupportedLayerError(
                "the layer's weight is parametrized (torch.nn.utils.parametrize); remove the parametrization first"
            )
        weight = module.weight
        if isinstance(weight, nn.parameter.UninitializedParameter):
            raise UnsupportedLayerError("the layer is lazy and uninitialised; run one forward pass first")
        # Built on the meta device without the torch layer's random initialisation (the weights are overwritten at
        # once); then the weight and bias are taken over or copied, and anything else gets uninitialised storage.
        token = _SKIP_RESET.set(True)
        try:
            new = cls(**cls._float_init_args(module), device="meta", dtype=weight.dtype)
        finally:
            _SKIP_RESET.reset(token)
        for name in ("weight", "bias"):
            old = getattr(module, name, None)
            if old is not None:
                _take_or_copy(new, name, old, weight.device)
        _materialize(new, weight.device)
        new.train(module.training)
        new._init_binary(**options)
        return new


def _materialize(module: nn.Module, device: torch.device) -> None:
    """Give every parameter and buffer of ``module`` still on the meta device uninitialised storage on ``device``."""
    for table in (module._parameters, module._buffers):
        for name, tensor in table.items():
            if tensor is not None and tensor.is_meta:
                table[name] = _allocated(tensor, device)


def _allocated(template: Tensor, device: torch.device) -> Tensor:
    """Uninitialised storage on ``device`` with ``template``'s shape, strides and dtype; a parameter (with
    ``template``'s ``requires_grad``) if ``template`` is one."""
    storage = torch.empty_strided(template.shape, template.stride(), dtype=template.dtype, device=device)
    return nn.Parameter(storage, template.requires_grad) if isinstance(template, nn.Parameter) else storage


def _take_or_copy(new: nn.Module, name: str, old: Tensor, device: torch.device) -> None:
    """Give ``new.<name>`` (a parameter on the meta device) the values of ``old`` on ``device``: ``old`` itself
    where it is handed over (see :mod:`binarize.nn.handover`), else a copy in new storage with the layer's own
    layout."""
    fresh = getattr(new, name)
    if may_take_over(old, fresh, device):
        setattr(new, name, old)
        return
    duplicate = _allocated(fresh, device)
    with torch.no_grad():
        duplicate.copy_(old)
    setattr(new, name, duplicate.requires_grad_(old.requires_grad))


def _activation_name(module: nn.Module) -> str:
    for name, cls in ACTIVATIONS.items():
        if type(module) is cls:
            return name
    return type(module).__name__


def _register(cls: type[BinaryLayerMixin]) -> type[BinaryLayerMixin]:
    LAYERS.register(cls.float_class.__name__, cls)
    return cls


def _conv_init_args(module: nn.Module) -> dict[str, Any]:
    """The constructor arguments of a (transposed) convolution, read back from the module."""
    return {
        "in_channels": module.in_channels,
        "out_channels": module.out_channels,
        "kernel_size": module.kernel_size,
        "stride": module.stride,
        "padding": module.padding,
        "dilation": module.dilation,
        "groups": module.groups,
        "bias": module.bias is not None,
        "padding_mode": module.padding_mode,
    }


def binary_class_for(module: nn.Module) -> type[BinaryLayerMixin] | None:
    """The binary class that replaces ``module``, or ``None`` when its exact class has no binary twin."""
    name = type(module).__name__
    if name in LAYERS and LAYERS.get(name).float_class is type(module):
        return LAYERS.get(name)
    return None


# ---------------------------------------------------------------------------------------------------------------
# Convolutions
# ---------------------------------------------------------------------------------------------------------------
class _BinaryConvNd(BinaryLayerMixin):
    """Shared geometry and padding logic of the direct convolutions."""

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: str | tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    padding_mode: str
    bias: nn.Parameter | None

    def _shape_preserving(self) -> bool:
        if self.in_channels != self.out_channels or any(s != 1 for s in self.stride):
            return False
        if self.padding == "same":
            return True
        if self.padding == "valid":
            return all(k == 1 for k in self.kernel_size)
        return all(2 * p == d * (k - 1) for p, d, k in zip(self.padding, self.dilation, self.kernel_size))

    def _check_pad_value(self) -> None:
        if self.pad_value is not None and self.padding_mode != "zeros":
            raise UnsupportedLayerError(
                f"pad_value={self.pad_value} needs padding_mode='zeros', but this layer pads with "
                f"padding_mode={self.padding_mode!r}; drop pad_value (that mode already pads with input values)"
            )

    def _explicit_padding(self) -> list[int]:
        """``F.pad`` amounts (last dimension first) equal to the layer's own padding."""
        pads: list[int] = []
        for i in reversed(range(len(self.kernel_size))):
            if self.padding == "same":
                total = self.dilation[i] * (self.kernel_size[i] - 1)
                pads += [total // 2, total - total // 2]
            elif self.padding == "valid":
                pads += [0, 0]
            else:
                pads += [self.padding[i], self.padding[i]]
        return pads

    def _convolve(self, operands: _Operands) -> Tensor:
        x, shift, weight, alpha_dims, input_surrogate, weight_surrogate, activation = operands
        if operands.fused:
            padding = self._integer_padding()
            assert padding is not None  # _fusable() checked it
            pads = self._explicit_padding() if self.pad_value is not None else []
            return binary_conv(
                x, weight, self.bias, shift=shift, alpha_dims=alpha_dims, input_surrogate=input_surrogate,
                weight_surrogate=weight_surrogate, stride=self.stride, padding=padding, dilation=self.dilation,
                groups=self.groups, pads=pads if any(pads) else None, pad_value=self.pad_value or 0.0,
                activation=activation, scale_gradient=self.scale_gradient,
            )
        if self.pad_value is None:
            return self._conv_forward(x, weight, self.bias)  # type: ignore[attr-defined]
        pads = self._explicit_padding()
        if any(pads):
            x = F.pad(x, pads, mode="constant", value=self.pad_value)
        return self._functional(x, weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def _fusable(self) -> bool:
        return self._integer_padding() is not None

    def _integer_padding(self) -> list[int] | None:
        """The padding of the convolution proper as integers (0 with ``pad_value``, which pads the input first).

        ``None`` for a padding mode other than zeros or an asymmetric ``"same"``, which the fused convolution does
        not cover.
        """
        if self.pad_value is not None:
            return [0] * len(self.kernel_size)
        if self.padding_mode != "zeros":
            return None
        if self.padding == "valid":
            return [0] * len(self.kernel_size)
        if self.padding == "same":
            totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            return None if any(t % 2 for t in totals) else [t // 2 for t in totals]
        return list(self.padding)

    _functional: ClassVar[Any]

    def forward(self, input: Tensor, timestep_groups: Tensor | None = None) -> Tensor:
        groups = self._groups(timestep_groups)
        unbatched = input.dim() == len(self.kernel_size) + 1
        x = input.unsqueeze(0) if unbatched else input
        operands = self._operands(x, groups)
        y = self._finish(self._convolve(operands), x, groups, operands)
        return y.squeeze(0) if unbatched else y

    @classmethod
    def _float_init_args(cls, module: nn.Module) -> dict[str, Any]:
        return _conv_init_args(module)


@_register
class BinaryConv1d(_BinaryConvNd, nn.Conv1d):
    r"""Binary :class:`torch.nn.Conv1d`.

    The arguments up to ``dtype`` are :class:`torch.nn.Conv1d`'s, with the same meaning and defaults; the
    keyword-only ones are the binary-layer options (:data:`OPTION_DEFAULTS`), all off by default, and then the layer
    computes exactly what :class:`torch.nn.Conv1d` computes.

    Args:
        weight_binarizer: :math:`B_w`, the weight binarizer: a registered name (``"ste"``, ``"clipped_ste"``,
            ...), a mapping ``{"name": ..., **kwargs}``, a :class:`~binarize.binarizers.Binarizer` or a callable
            (see :func:`~binarize.binarizers.get_binarizer`); ``None`` keeps the weight in full precision.
        input_binarizer: :math:`B_x`, the input binarizer (the same kinds of value); ``None`` keeps the input in
            full precision.
        scale: the weight scale :math:`\alpha`: a registered name (``"mean_abs"``, ``"channel_mean_abs"``,
            ``"learnable"``, ...) or a mapping ``{"name": ..., **kwargs}`` (see :mod:`binarize.scaling`);
            ``None`` for no scale.
        scale_gradient: whether the latent weight's gradient carries the scale: ``True`` gives
            :math:`\alpha \odot F_w'(W) \odot g` (the chain rule through :math:`\alpha B_w(W)`), ``False`` gives
            :math:`F_w'(W) \odot g` (as BI-DiffSR's release trains), for :math:`g` the gradient of the scaled
            binary weight (see :func:`~binarize.nn.functional.scale_binary`). No effect without a scale.
        input_shift: add a learnable per-channel shift :math:`b` (initialised to 0) to the input before
            :math:`B_x` (ReActNet's RSign, BI-DiffSR's TaR).
        activation: ``"rprelu"`` or ``"prelu"``, a per-channel activation after the operation; ``None`` for none.
        shortcut: ``True`` adds the un-shifted input to the output (refused where the output's shape differs),
            ``"auto"`` adds it only where the shapes match, ``False`` never.
        pad_value: the value that pads the binarized input (``None``: zeros, as torch pads; needs
            ``padding_mode="zeros"``).
        fold_bias: remove the bias and add it to the RPReLU's input shift instead (the same function, one
            parameter vector fewer; needs ``activation="rprelu"``).
        timestep_groups: :math:`K`, one set of the ``timestep_parts`` parameters per timestep group, stored
            ``(K, C)``; ``forward`` then takes each sample's group (``timestep_groups=``). ``None``: not
            timestep-aware.
        timestep_parts: which parameters ``timestep_groups`` applies to: ``"input_shift"``, ``"activation"`` or
            both.

    Raises:
        UnsupportedLayerError: for an option the layer cannot honour (a ``shortcut=True`` across a shape change,
            ``fold_bias`` without an RPReLU, ...).
        TypeError: for an option of the wrong type.
    """

    float_class = nn.Conv1d
    _functional = staticmethod(F.conv1d)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int],
        stride: int | tuple[int] = 1,
        padding: str | int | tuple[int] = 0,
        dilation: int | tuple[int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        weight_binarizer: BinarizerSpec = None,
        input_binarizer: BinarizerSpec = None,
        scale: ScaleSpec = None,
        scale_gradient: bool = True,
        input_shift: bool = False,
        activation: str | None = None,
        shortcut: Shortcut = False,
        pad_value: float | None = None,
        fold_bias: bool = False,
        timestep_groups: int | None = None,
        timestep_parts: tuple[str, ...] | list[str] = TIMESTEP_PARTS,
    ) -> None:
        nn.Conv1d.__init__(
            self, in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
            groups=groups, bias=bias, padding_mode=padding_mode, device=device, dtype=dtype,
        )
        self._init_binary(
            weight_binarizer=weight_binarizer, input_binarizer=input_binarizer, scale=scale,
            scale_gradient=scale_gradient, input_shift=input_shift, activation=activation, shortcut=shortcut,
            pad_value=pad_value, fold_bias=fold_bias, timestep_groups=timestep_groups, timestep_parts=timestep_parts,
        )


@_register
class BinaryConv2d(_BinaryConvNd, nn.Conv2d):
    r"""Binary :class:`torch.nn.Conv2d`.

    The arguments up to ``dtype`` are :class:`torch.nn.Conv2d`'s, with the same meaning and defaults; the
    keyword-only ones are the binary-layer options (:data:`OPTION_DEFAULTS`), all off by default, and then the layer
    computes exactly what :class:`torch.nn.Conv2d` computes.

    Args:
        weight_binarizer: :math:`B_w`, the weight binarizer: a registered name (``"ste"``, ``"clipped_ste"``,
            ...), a mapping ``{"name": ..., **kwargs}``, a :class:`~binarize.binarizers.Binarizer` or a callable
            (see :func:`~binarize.binarizers.get_binarizer`); ``None`` keeps the weight in full precision.
        input_binarizer: :math:`B_x`, the input binarizer (the same kinds of value); ``None`` keeps the input in
            full precision.
        scale: the weight scale :math:`\alpha`: a registered name (``"mean_abs"``, ``"channel_mean_abs"``,
            ``"learnable"``, ...) or a mapping ``{"name": ..., **kwargs}`` (see :mod:`binarize.scaling`);
            ``None`` for no scale.
        scale_gradient: whether the latent weight's gradient carries the scale: ``True`` gives
            :math:`\alpha \odot F_w'(W) \odot g` (the chain rule through :math:`\alpha B_w(W)`), ``False`` gives
            :math:`F_w'(W) \odot g` (as BI-DiffSR's release trains), for :math:`g` the gradient of the scaled
            binary weight (see :func:`~binarize.nn.functional.scale_binary`). No effect without a scale.
        input_shift: add a learnable per-channel shift :math:`b` (initialised to 0) to the input before
            :math:`B_x` (ReActNet's RSign, BI-DiffSR's TaR).
        activation: ``"rprelu"`` or ``"prelu"``, a per-channel activation after the operation; ``None`` for none.
        shortcut: ``True`` adds the un-shifted input to the output (refused where the output's shape differs),
            ``"auto"`` adds it only where the shapes match, ``False`` never.
        pad_value: the value that pads the binarized input (``None``: zeros, as torch pads; needs
            ``padding_mode="zeros"``).
        fold_bias: remove the bias and add it to the RPReLU's input shift instead (the same function, one
            parameter vector fewer; needs ``activation="rprelu"``).
        timestep_groups: :math:`K`, one set of the ``timestep_parts`` parameters per timestep group, stored
            ``(K, C)``; ``forward`` then takes each sample's group (``timestep_groups=``). ``None``: not
            timestep-aware.
        timestep_parts: which parameters ``timestep_groups`` applies to: ``"input_shift"``, ``"activation"`` or
            both.

    Raises:
        UnsupportedLayerError: for an option the layer cannot honour (a ``shortcut=True`` across a shape change,
            ``fold_bias`` without an RPReLU, ...).
        TypeError: for an option of the wrong type.

    Examples:
        >>> import torch
        >>> layer = BinaryConv2d(8, 8, 3, padding=1, input_binarizer="approx_sign", weight_binarizer="ste",
        ...                      scale="channel_mean_abs", shortcut="auto")
        >>> layer(torch.randn(1, 8, 5, 5)).shape
        torch.Size([1, 8, 5, 5])
    """

    float_class = nn.Conv2d
    _functional = staticmethod(F.conv2d)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: str | int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        weight_binarizer: BinarizerSpec = None,
        input_binarizer: BinarizerSpec = None,
        scale: ScaleSpec = None,
        scale_gradient: bool = True,
        input_shift: bool = False,
        activation: str | None = None,
        shortcut: Shortcut = False,
        pad_value: float | None = None,
        fold_bias: bool = False,
        timestep_groups: int | None = None,
        timestep_parts: tuple[str, ...] | list[str] = TIMESTEP_PARTS,
    ) -> None:
        nn.Conv2d.__init__(
            self, in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
            groups=groups, bias=bias, padding_mode=padding_mode, device=device, dtype=dtype,
        )
        self._init_binary(
            weight_binarizer=weight_binarizer, input_binarizer=input_binarizer, scale=scale,
            scale_gradient=scale_gradient, input_shift=input_shift, activation=activation, shortcut=shortcut,
            pad_value=pad_value, fold_bias=fold_bias, timestep_groups=timestep_groups, timestep_parts=timestep_parts,
        )


@_register
class BinaryConvTranspose2d(BinaryLayerMixin, nn.ConvTranspose2d):
    r"""Binary :class:`torch.nn.ConvTranspose2d`.

    The arguments up to ``dtype`` are :class:`torch.nn.ConvTranspose2d`'s, with the same meaning and defaults; the
    keyword-only ones are the binary-layer options (:data:`OPTION_DEFAULTS`), all off by default, and then the layer
    computes exactly what :class:`torch.nn.ConvTranspose2d` computes. A transposed convolution does not pad its input (its ``padding`` crops
    the output), so ``pad_value`` is refused.

    Args:
        weight_binarizer: :math:`B_w`, the weight binarizer: a registered name (``"ste"``, ``"clipped_ste"``,
            ...), a mapping ``{"name": ..., **kwargs}``, a :class:`~binarize.binarizers.Binarizer` or a callable
            (see :func:`~binarize.binarizers.get_binarizer`); ``None`` keeps the weight in full precision.
        input_binarizer: :math:`B_x`, the input binarizer (the same kinds of value); ``None`` keeps the input in
            full precision.
        scale: the weight scale :math:`\alpha`: a registered name (``"mean_abs"``, ``"channel_mean_abs"``,
            ``"learnable"``, ...) or a mapping ``{"name": ..., **kwargs}`` (see :mod:`binarize.scaling`);
            ``None`` for no scale.
        scale_gradient: whether the latent weight's gradient carries the scale: ``True`` gives
            :math:`\alpha \odot F_w'(W) \odot g` (the chain rule through :math:`\alpha B_w(W)`), ``False`` gives
            :math:`F_w'(W) \odot g` (as BI-DiffSR's release trains), for :math:`g` the gradient of the scaled
            binary weight (see :func:`~binarize.nn.functional.scale_binary`). No effect without a scale.
        input_shift: add a learnable per-channel shift :math:`b` (initialised to 0) to the input before
            :math:`B_x` (ReActNet's RSign, BI-DiffSR's TaR).
        activation: ``"rprelu"`` or ``"prelu"``, a per-channel activation after the operation; ``None`` for none.
        shortcut: ``True`` adds the un-shifted input to the output (refused where the output's shape differs),
            ``"auto"`` adds it only where the shapes match, ``False`` never.
        pad_value: must stay ``None``: a transposed convolution does not pad its input.
        fold_bias: remove the bias and add it to the RPReLU's input shift instead (the same function, one
            parameter vector fewer; needs ``activation="rprelu"``).
        timestep_groups: :math:`K`, one set of the ``timestep_parts`` parameters per timestep group, stored
            ``(K, C)``; ``forward`` then takes each sample's group (``timestep_groups=``). ``None``: not
            timestep-aware.
        timestep_parts: which parameters ``timestep_groups`` applies to: ``"input_shift"``, ``"activation"`` or
            both.

    Raises:
        UnsupportedLayerError: for an option the layer cannot honour (a ``shortcut=True`` across a shape change,
            ``fold_bias`` without an RPReLU, ...).
        TypeError: for an option of the wrong type.
    """

    float_class = nn.ConvTranspose2d
    weight_out_dim = 1

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        output_padding: int | tuple[int, int] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | tuple[int, int] = 1,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        weight_binarizer: BinarizerSpec = None,
        input_binarizer: BinarizerSpec = None,
        scale: ScaleSpec = None,
        scale_gradient: bool = True,
        input_shift: bool = False,
        activation: str | None = None,
        shortcut: Shortcut = False,
        pad_value: float | None = None,
        fold_bias: bool = False,
        timestep_groups: int | None = None,
        timestep_parts: tuple[str, ...] | list[str] = TIMESTEP_PARTS,
    ) -> None:
        nn.ConvTranspose2d.__init__(
            self, in_channels, out_channels, kernel_size, stride=stride, padding=padding,
            output_padding=output_padding, groups=groups, bias=bias, dilation=dilation, padding_mode=padding_mode,
            device=device, dtype=dtype,
        )
        self._init_binary(
            weight_binarizer=weight_binarizer, input_binarizer=input_binarizer, scale=scale,
            scale_gradient=scale_gradient, input_shift=input_shift, activation=activation, shortcut=shortcut,
            pad_value=pad_value, fold_bias=fold_bias, timestep_groups=timestep_groups, timestep_parts=timestep_parts,
        )

    def _shape_preserving(self) -> bool:
        if self.in_channels != self.out_channels or any(s != 1 for s in self.stride):
            return False
        return all(
            d * (k - 1) + op == 2 * p
            for p, d, k, op in zip(self.padding, self.dilation, self.kernel_size, self.output_padding)
        )

    def _check_pad_value(self) -> None:
        if self.pad_value is not None:
            raise UnsupportedLayerError(
                "pad_value does not apply to ConvTranspose2d (a transposed convolution does not pad its input); "
                "leave pad_value unset for transposed convolutions"
            )

    def forward(
        self, input: Tensor, output_size: list[int] | None = None, timestep_groups: Tensor | None = None
    ) -> Tensor:
        groups = self._groups(timestep_groups)
        num_spatial_dims = 2
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size, num_spatial_dims, self.dilation
        )
        unbatched = input.dim() == num_spatial_dims + 1
        x = input.unsqueeze(0) if unbatched else input
        operands = self._operands(x, groups)
        h, shift, weight, alpha_dims, input_surrogate, weight_surrogate, activation = operands
        if operands.fused:
            y = binary_conv(
                h, weight, self.bias, shift=shift, alpha_dims=alpha_dims, activation=activation,
                input_surrogate=input_surrogate, weight_surrogate=weight_surrogate, stride=self.stride,
                padding=self.padding, dilation=self.dilation, groups=self.groups, transposed=True,
                output_padding=output_padding, scale_gradient=self.scale_gradient,
            )
        else:
            y = F.conv_transpose2d(h, weight, self.bias, self.stride, self.padding, output_padding, self.groups,
                                   self.dilation)
        y = self._finish(y, x, groups, operands)
        return y.squeeze(0) if unbatched else y

    @classmethod
    def _float_init_args(cls, module: nn.Module) -> dict[str, Any]:
        return {**_conv_init_args(module), "output_padding": module.output_padding}


# ---------------------------------------------------------------------------------------------------------------
# Linear
# ---------------------------------------------------------------------------------------------------------------
@_register
class BinaryLinear(BinaryLayerMixin, nn.Linear):
    r"""Binary :class:`torch.nn.Linear`.

    The arguments up to ``dtype`` are :class:`torch.nn.Linear`'s, with the same meaning and defaults; the
    keyword-only ones are the binary-layer options (:data:`OPTION_DEFAULTS`), all off by default, and then the layer
    computes exactly what :class:`torch.nn.Linear` computes. Activations are channels-last (``(..., in_features)``), so shifts and RPReLU
    broadcast over the last dimension.

    Args:
        weight_binarizer: :math:`B_w`, the weight binarizer: a registered name (``"ste"``, ``"clipped_ste"``,
            ...), a mapping ``{"name": ..., **kwargs}``, a :class:`~binarize.binarizers.Binarizer` or a callable
            (see :func:`~binarize.binarizers.get_binarizer`); ``None`` keeps the weight in full precision.
        input_binarizer: :math:`B_x`, the input binarizer (the same kinds of value); ``None`` keeps the input in
            full precision.
        scale: the weight scale :math:`\alpha`: a registered name (``"mean_abs"``, ``"channel_mean_abs"``,
            ``"learnable"``, ...) or a mapping ``{"name": ..., **kwargs}`` (see :mod:`binarize.scaling`);
            ``None`` for no scale.
        scale_gradient: whether the latent weight's gradient carries the scale: ``True`` gives
            :math:`\alpha \odot F_w'(W) \odot g` (the chain rule through :math:`\alpha B_w(W)`), ``False`` gives
            :math:`F_w'(W) \odot g` (as BI-DiffSR's release trains), for :math:`g` the gradient of the scaled
            binary weight (see :func:`~binarize.nn.functional.scale_binary`). No effect without a scale.
        input_shift: add a learnable per-channel shift :math:`b` (initialised to 0) to the input before
            :math:`B_x` (ReActNet's RSign, BI-DiffSR's TaR).
        activation: ``"rprelu"`` or ``"prelu"``, a per-channel activation after the operation; ``None`` for none.
        shortcut: ``True`` adds the un-shifted input to the output (refused where the output's shape differs),
            ``"auto"`` adds it only where the shapes match, ``False`` never.
        pad_value: accepted and unused (a linear layer has nothing to pad).
        fold_bias: remove the bias and add it to the RPReLU's input shift instead (the same function, one
            parameter vector fewer; needs ``activation="rprelu"``).
        timestep_groups: :math:`K`, one set of the ``timestep_parts`` parameters per timestep group, stored
            ``(K, C)``; ``forward`` then takes each sample's group (``timestep_groups=``). ``None``: not
            timestep-aware.
        timestep_parts: which parameters ``timestep_groups`` applies to: ``"input_shift"``, ``"activation"`` or
            both.

    Raises:
        UnsupportedLayerError: for an option the layer cannot honour (a ``shortcut=True`` across a shape change,
            ``fold_bias`` without an RPReLU, ...).
        TypeError: for an option of the wrong type.
    """

    float_class = nn.Linear
    activation_channel_dim: ClassVar[ChannelDim] = -1

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        weight_binarizer: BinarizerSpec = None,
        input_binarizer: BinarizerSpec = None,
        scale: ScaleSpec = None,
        scale_gradient: bool = True,
        input_shift: bool = False,
        activation: str | None = None,
        shortcut: Shortcut = False,
        pad_value: float | None = None,
        fold_bias: bool = False,
        timestep_groups: int | None = None,
        timestep_parts: tuple[str, ...] | list[str] = TIMESTEP_PARTS,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._init_binary(
            weight_binarizer=weight_binarizer, input_binarizer=input_binarizer, scale=scale,
            scale_gradient=scale_gradient, input_shift=input_shift, activation=activation, shortcut=shortcut,
            pad_value=pad_value, fold_bias=fold_bias, timestep_groups=timestep_groups, timestep_parts=timestep_parts,
        )

    def _in_channels(self) -> int:
        return self.in_features

    def _out_channels(self) -> int:
        return self.out_features

    def _shape_preserving(self) -> bool:
        return self.in_features == self.out_features

    def forward(self, input: Tensor, timestep_groups: Tensor | None = None) -> Tensor:
        groups = self._groups(timestep_groups)
        operands = self._operands(input, groups)
        h, shift, weight, alpha_dims, input_surrogate, weight_surrogate, activation = operands
        if operands.fused:
            y = binary_linear(h, weight, self.bias, shift=shift, alpha_dims=alpha_dims, activation=activation,
                              input_surrogate=input_surrogate, weight_surrogate=weight_surrogate,
                              scale_gradient=self.scale_gradient)
        else:
            y = F.linear(h, weight, self.bias)
        return self._finish(y, input, groups, operands)

    @classmethod
    def _float_init_args(cls, module: nn.Module) -> dict[str, Any]:
        return {"in_features": module.in_features, "out_features": module.out_features, "bias": module.bias is not None}
