"""Candidate layers: the modules of a model that layer rules may convert, and why others are left alone.

A *candidate* is a module whose exact class has a binary twin (see :func:`binarize.nn.binary_class_for`). Layers
that look like candidates but are not are reported as skipped, with the reason:

* already binary layers (and everything inside them);
* subclasses of a convertible class (timm's ``Conv2dSame``, ``StdConv2d``, ...): their forward differs, so a binary
  layer would not compute what they compute;
* lazy modules that have not run yet, and layers whose weight is reparametrised (``torch.nn.utils.parametrize``,
  the older ``weight_norm`` hooks).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.utils import parametrize

__all__ = ["Candidate", "find_candidates", "float_layer_types"]


@dataclass(frozen=True, eq=False)
class Candidate:
    """A module that layer rules may convert.

    Attributes:
        names: every path of the module in ``model.named_modules()`` (several when it is shared), in order.
        module: the module itself.
    """

    names: tuple[str, ...]
    module: nn.Module

    @property
    def name(self) -> str:
        """The module's first path."""
        return self.names[0]

    @property
    def cls(self) -> type:
        """The module's class."""
        return type(self.module)


def float_layer_types() -> dict[type[nn.Module], str]:
    """The float classes that have a binary twin, mapped to their registry name."""
    from binarize.nn import LAYERS

    return {LAYERS.get(name).float_class: name for name in LAYERS.names()}


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _skip_reason(module: nn.Module, float_types: dict[type[nn.Module], str]) -> str | None:
    """Why a layer-like module is not a candidate (``None`` when it is one)."""
    cls = type(module)
    base = next((t for t in float_types if isinstance(module, t)), None)
    if base is None:
        return None
    if isinstance(module, LazyModuleMixin) and module.has_uninitialized_params():
        return "lazy module with uninitialised parameters; run one forward pass before binarizing"
    if parametrize.is_parametrized(module):
        return (
            "its weight is parametrized (torch.nn.utils.parametrize); remove the parametrization "
            "(parametrize.remove_parametrizations) before binarizing"
        )
    if cls is not base:
        if cls.forward is not base.forward:
            return (
                f"{_qualname(cls)} subclasses {base.__name__} with its own forward; a binary {base.__name__} would "
                f"not compute the same function, so it is left in full precision"
            )
        return (
            f"{_qualname(cls)} subclasses {base.__name__}; only exact {base.__name__} modules are converted, since a "
            f"subclass may behave differently elsewhere"
        )
    if not isinstance(module._parameters.get("weight"), nn.Parameter):
        return (
            "its weight is not an nn.Parameter (a weight_norm / spectral_norm style reparametrisation); remove it "
            "before binarizing"
        )
    return None


def find_candidates(model: nn.Module) -> tuple[list[Candidate], list[dict[str, str]]]:
    """The candidate layers of ``model`` and the layer-like modules skipped, in registration order.

    Args:
        model: any module.

    Returns:
        ``(candidates, skipped)``; each skipped entry is ``{"name", "type", "reason"}``.
    """
    from binarize.nn import BinaryLayerMixin

    float_types = float_layer_types()
    names: dict[int, list[str]] = {}
    modules: dict[int, nn.Module] = {}
    binary_prefixes: list[str] = []
    for name, module in model.named_modules(remove_duplicate=False):
        if any(name == p or name.startswith(p + ".") or p == "" for p in binary_prefixes):
            continue  # the internals of a binary layer (binarizers, scales, ...) are never candidates
        if isinstance(module, BinaryLayerMixin):
            binary_prefixes.append(name)
        key = id(module)
        if key not in modules:
            modules[key] = module
            names[key] = []
        if name not in names[key]:
            names[key].append(name)

    candidates: list[Candidate] = []
    skipped: list[dict[str, str]] = []
    for key, module in modules.items():
        entry_name = names[key][0]
        if isinstance(module, BinaryLayerMixin):
            skipped.append({"name": entry_name, "type": type(module).__name__, "reason": "already binary"})
            continue
        if not isinstance(module, tuple(float_types)):
            continue
        reason = _skip_reason(module, float_types)
        if reason is not None:
            skipped.append({"name": entry_name, "type": type(module).__name__, "reason": reason})
        else:
            candidates.append(Candidate(tuple(names[key]), module))
    return candidates, skipped
