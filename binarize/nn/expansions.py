"""Expansions: layers that hold linear-like weights outside any convertible module, rewritten into ones that do.

A recipe selects modules, and only a module whose class has a binary twin (``nn.Linear``, ``nn.Conv2d``, ...) can
become binary. Some common layers compute linear maps without such a module:

===================================================== =============================================================
class                                                 expanded into
===================================================== =============================================================
``torch.nn.MultiheadAttention``                       :class:`~binarize.nn.attention.ProjectedMultiheadAttention`:
                                                      ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` as
                                                      ``nn.Linear`` (the packed ``in_proj_weight`` split)
``transformers.pytorch_utils.Conv1D`` (GPT-2, ...)     ``nn.Linear`` with the transposed weight: Conv1D computes
                                                      :math:`y = x W + b` with :math:`W` stored ``(in, out)``
===================================================== =============================================================

Each expansion computes exactly what the layer computed; :func:`binarize.binarize` applies them before the layer
rules (on its working copy), so ``select: {type: Linear}`` reaches these weights, and the report lists every
expansion under ``expanded``. Classes are named by their import path, so a library is never imported to check
for its classes. A plugin adds an expansion with :func:`register_expansion`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from binarize._registry import Registry
from binarize.nn.attention import ProjectedMultiheadAttention

__all__ = ["EXPANSIONS", "Expansion", "class_path", "expansion_for", "register_expansion"]


@dataclass(frozen=True)
class Expansion:
    """How to rewrite one layer class.

    Attributes:
        build: ``module -> equivalent module`` whose linear maps are convertible layers; raises
            :class:`~binarize.errors.UnsupportedLayerError` for a configuration it cannot express.
        description: one line for reports and docs.
    """

    build: Callable[[nn.Module], nn.Module]
    description: str


#: ``"package.module.Class"`` (the class's ``__module__`` and ``__qualname__``) -> :class:`Expansion`.
EXPANSIONS: Registry[Expansion] = Registry("expansion")


def class_path(cls: type) -> str:
    """``cls``'s import path, e.g. ``"torch.nn.modules.activation.MultiheadAttention"``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def register_expansion(path: str, description: str) -> Callable[[Callable[[nn.Module], nn.Module]], Callable]:
    """Decorator registering ``build`` as the expansion of the class at import path ``path``."""

    def decorate(build: Callable[[nn.Module], nn.Module]) -> Callable[[nn.Module], nn.Module]:
        EXPANSIONS.register(path, Expansion(build, description))
        return build

    return decorate


def expansion_for(module: nn.Module) -> Expansion | None:
    """The expansion of ``module``'s exact class, or ``None``."""
    path = class_path(type(module))
    return EXPANSIONS.get(path) if path in EXPANSIONS else None


@register_expansion(
    class_path(nn.MultiheadAttention),
    "its packed query/key/value weights (in_proj_weight) and out_proj become four nn.Linear projections",
)
def _multihead_attention(module: nn.Module) -> nn.Module:
    return ProjectedMultiheadAttention.from_float(module)  # type: ignore[arg-type]


@register_expansion(
    "transformers.pytorch_utils.Conv1D",
    "a linear layer with its weight stored transposed (in, out): becomes nn.Linear with the weight transposed",
)
def _transposed_linear(module: nn.Module) -> nn.Module:
    weight: torch.Tensor = module.weight  # type: ignore[assignment]
    bias = module.bias
    linear = nn.Linear(weight.shape[0], weight.shape[1], bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight.t())
        if bias is not None:
            linear.bias.copy_(bias)  # type: ignore[union-attr]
    linear.weight.requires_grad_(weight.requires_grad)
    linear.train(module.training)
    return linear
