"""Registered binarizer modules: thin, configurable wrappers around the autograd functions.

A binarizer is an :class:`torch.nn.Module` mapping a tensor to a binary tensor of the same shape. Binary layers hold
two of them (weights, inputs). They are looked up by name in :data:`BINARIZERS`; :func:`get_binarizer` also
accepts a ``{"name": ..., **kwargs}`` mapping, an instance, or any callable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from binarize._registry import Registry
from binarize.binarizers import functions as F

BINARIZERS: Registry[type["Binarizer"]] = Registry("binarizer")

_ALLOWED_ZERO = (1.0, 0.0)


class Binarizer(nn.Module):
    """Base class: maps ``x`` to a binary tensor of the same shape.

    Args:
        sign_of_zero: the value 0 maps to, ``1.0`` (default, strictly binary) or ``0.0`` (as :func:`torch.sign`).
    """

    name: str = ""
    values: tuple[float, float] = (-1.0, 1.0)

    def __init__(self, *, sign_of_zero: float = 1.0) -> None:
        super().__init__()
        if sign_of_zero not in _ALLOWED_ZERO:
            raise ValueError(
                f"sign_of_zero must be 1.0 (0 maps to +1, strictly binary) or 0.0 (as torch.sign), "
                f"got {sign_of_zero!r}"
            )
        self.sign_of_zero = float(sign_of_zero)

    def config(self) -> dict[str, Any]:
        """The binarizer as plain data: ``{"name": ..., **non-default kwargs}``; ``get_binarizer`` inverts it."""
        out: dict[str, Any] = {"name": self.name}
        if self.sign_of_zero != 1.0:
            out["sign_of_zero"] = self.sign_of_zero
        out.update(self._extra_config())
        return out

    def _extra_config(self) -> dict[str, Any]:
        return {}

    def surrogate(self, x: Tensor) -> F.Surrogate | None:
        """How a fused operation may reproduce this binarizer on ``x``, or ``None``.

        A :class:`~binarize.binarizers.functions.Surrogate` ``(name, args, sign_of_zero)`` promises that the
        forward pass is ``sign(x, sign_of_zero)`` and the backward pass ``surrogate_gradient(name, x, grad, args)``;
        a binary layer then binarizes inside its own autograd function (see :mod:`binarize.nn.functional`), which
        saves less and runs fewer Python-level steps. The base class returns ``None`` (the layer calls the binarizer
        as a module); the registered sign estimators return ``None`` for a subclass that overrides ``forward``.
        """
        return None

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")


@BINARIZERS.register("ste")
class STE(Binarizer):
    """``sign`` with the identity (straight-through) gradient. See :class:`~binarize.binarizers.functions.SignSTE`."""

    name = "ste"

    def forward(self, x: Tensor) -> Tensor:
        return F.SignSTE.apply(x, self.sign_of_zero)

    def surrogate(self, x: Tensor) -> F.Surrogate | None:
        return F.Surrogate("ste", (), self.sign_of_zero) if type(self).forward is STE.forward else None


@BINARIZERS.register("clipped_ste")
class ClippedSTE(Binarizer):
    """``sign`` with the gradient passed where ``|x| <= clip`` (BinaryNet).

    See :class:`~binarize.binarizers.functions.SignClippedSTE`.
    """

    name = "clipped_ste"

    def __init__(self, *, clip: float = 1.0, sign_of_zero: float = 1.0) -> None:
        super().__init__(sign_of_zero=sign_of_zero)
        if not clip > 0:
            raise ValueError(f"clip must be > 0, got {clip!r}")
        self.clip = float(clip)
        self._bounds = F.clip_bounds(self.clip)

    def forward(self, x: Tensor) -> Tensor:
        return F.SignClippedSTE.apply(x, self.sign_of_zero, self.clip)

    def surrogate(self, x: Tensor) -> F.Surrogate | None:
        if type(self).forward is not ClippedSTE.forward:
            return None
        return F.Surrogate("clipped_ste", (self.clip, self._bounds), self.sign_of_zero)

    def _extra_config(self) -> dict[str, Any]:
        return {} if self.clip == 1.0 else {"clip": self.clip}


@BINARIZERS.register("approx_sign")
class ApproxSign(Binarizer):
    """``sign`` with Bi-Real Net's polynomial gradient ``max(0, 2 - 2|x|)``.

    See :class:`~binarize.binarizers.functions.SignApprox`.
    """

    name = "approx_sign"

    def forward(self, x: Tensor) -> Tensor:
        return F.SignApprox.apply(x, self.sign_of_zero)

    def surrogate(self, x: Tensor) -> F.Surrogate | None:
        if type(self).forward is not ApproxSign.forward:
            return None
        return F.Surrogate("approx_sign", (), self.sign_of_zero, uses_signs=True)


@BINARIZERS.register("swish_sign")
class SwishSign(Binarizer):
    """``sign`` with the SignSwish gradient of BNN+ (``beta`` sets its width).

    See :class:`~binarize.binarizers.functions.SignSwish`.
    """

    name = "swish_sign"

    def __init__(self, *, beta: float = 5.0, sign_of_zero: float = 1.0) -> None:
        super().__init__(sign_of_zero=sign_of_zero)
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta!r}")
        self.beta = float(beta)

    def forward(self, x: Tensor) -> Tensor:
        return F.SignSwish.apply(x, self.sign_of_zero, self.beta)

    def surrogate(self, x: Tensor) -> F.Surrogate | None:
        if type(self).forward is not SwishSign.forward:
            return None
        return F.Surrogate("swish_sign", (self.beta,), self.sign_of_zero)

    def _extra_config(self) -> dict[str, Any]:
        return {} if self.beta == 5.0 else {"beta": self.beta}


@BINARIZERS.register("ede")
class EDE(Binarizer):
    """``sign`` with IR-Net's error-decay estimator, whose ``k`` and ``t`` follow the training progress.

    The progress (0 at the start of training, 1 at the end) is held in a buffer, so it is saved with the model and
    changing it does not retrace ``torch.compile`` graphs; set it with :func:`set_progress`.
    See :class:`~binarize.binarizers.functions.SignEDE`.
    """

    name = "ede"

    def __init__(self, *, t_min: float = 0.1, t_max: float = 10.0, sign_of_zero: float = 1.0) -> None:
        super().__init__(sign_of_zero=sign_of_zero)
        if not 0 < t_min <= t_max:
            raise ValueError(f"EDE needs 0 < t_min <= t_max, got t_min={t_min!r}, t_max={t_max!r}")
        self.t_min, self.t_max = float(t_min), float(t_max)
        self.register_buffer("progress", torch.zeros(()), persistent=True)

    def set_progress(self, progress: float) -> None:
        """Set the training progress in [0, 1] (values outside are clamped)."""
        self.progress.fill_(min(max(float(progress), 0.0), 1.0))

    def coefficients(self) -> tuple[Tensor, Tensor]:
        """The current ``(k, t)`` as 0-dim tensors (see :func:`~binarize.binarizers.functions.ede_coefficients`)."""
        t = self.t_min * torch.pow(self.t_max / self.t_min, self.progress)
        return torch.clamp(1.0 / t, min=1.0), t

    def forward(self, x: Tensor) -> Tensor:
        k, t = self.coefficients()
        return F.SignEDE.apply(x, self.sign_of_zero, k.to(x.dtype), t.to(x.dtype))

    def surrogate(self, x: Tensor) -> F.Surrogate | None:
        if type(self).forward is not EDE.forward:
            return None
        k, t = self.coefficients()
        return F.Surrogate("ede", (k.to(x.dtype), t.to(x.dtype)), self.sign_of_zero)

    def _extra_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.t_min != 0.1:
            out["t_min"] = self.t_min
        if self.t_max != 10.0:
            out["t_max"] = self.t_max
        return out


@BINARIZERS.register("heaviside")
class Heaviside(Binarizer):
    """Unit step to {0, 1} at ``threshold`` with a straight-through gradient where ``|x - threshold| <= clip``.

    ``threshold=0.5, clip=0.5`` gives DoReFa-Net's 1-bit activations. See
    :class:`~binarize.binarizers.functions.Heaviside`.
    """

    name = "heaviside"
    values = (0.0, 1.0)

    def __init__(self, *, threshold: float = 0.0, clip: float = 1.0, sign_of_zero: float = 1.0) -> None:
        super().__init__(sign_of_zero=sign_of_zero)
        if not clip > 0:
            raise ValueError(f"clip must be > 0, got {clip!r}")
        self.threshold, self.clip = float(threshold), float(clip)

    def forward(self, x: Tensor) -> Tensor:
        return F.Heaviside.apply(x, self.sign_of_zero, self.threshold, self.clip)

    def _extra_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.threshold != 0.0:
            out["threshold"] = self.threshold
        if self.clip != 1.0:
            out["clip"] = self.clip
        return out


class CallableBinarizer(Binarizer):
    """Wraps a user function ``fn(x) -> Tensor`` as a binarizer (not serialisable into a recipe)."""

    name = "callable"

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return repr(self.fn)


BinarizerSpec = Binarizer | str | Mapping[str, Any] | Callable[[Tensor], Tensor] | None
"""What :func:`get_binarizer` (and a binary layer's ``weight_binarizer`` / ``input_binarizer``) accepts:

- a registered name: ``"ste"``, ``"clipped_ste"``, ``"approx_sign"``, ... (:data:`BINARIZERS` lists them);
- a mapping with the name and keyword arguments: ``{"name": "swish_sign", "beta": 2.0}``, as in a recipe;
- a :class:`Binarizer` instance, used as it is;
- any other callable from tensor to tensor, wrapped in a :class:`CallableBinarizer`;
- ``None``, ``"none"`` or ``"identity"``: no binarizer (the values stay in full precision).
"""


def get_binarizer(spec: BinarizerSpec) -> Binarizer | None:
    """Build a binarizer from a name, a ``{"name": ..., **kwargs}`` mapping, an instance or a callable.

    ``None`` (and the names ``"none"``/``"identity"``) mean full precision and return ``None``. An instance is
    returned as is, so share it only where sharing is meant.

    Raises:
        UnknownNameError: for an unknown name (the message lists the known ones and suggests the closest).
        TypeError / ValueError: for a wrong type or bad keyword arguments.
    """
    if spec is None or (isinstance(spec, str) and spec in ("none", "identity")):
        return None
    if isinstance(spec, Binarizer):
        return spec
    if isinstance(spec, str):
        return BINARIZERS.get(spec)()
    if isinstance(spec, Mapping):
        kwargs = dict(spec)
        name = kwargs.pop("name", None)
        if not isinstance(name, str):
            raise TypeError(f"a binarizer mapping needs a 'name' string, got {dict(spec)!r}")
        cls = BINARIZERS.get(name)
        try:
            return cls(**kwargs)
        except TypeError as err:
            raise TypeError(f"bad arguments for binarizer {name!r}: {err}") from None
    if callable(spec):
        return CallableBinarizer(spec)
    raise TypeError(
        f"a binarizer must be None, a name ({', '.join(BINARIZERS.names())}), a mapping with 'name', a Binarizer "
        f"or a callable; got {type(spec).__name__}: {spec!r}"
    )


def set_progress(model: nn.Module, progress: float) -> int:
    """Set the training progress (0 = start, 1 = end) of every scheduled binarizer in ``model``.

    Returns the number of binarizers updated. Call it once per step or epoch, e.g. ``set_progress(model, step /
    total_steps)``.
    """
    count = 0
    for module in model.modules():
        setter = getattr(module, "set_progress", None)
        if isinstance(module, Binarizer) and callable(setter):
            setter(progress)
            count += 1
    return count
