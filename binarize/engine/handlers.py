"""Handlers of layer-rule actions, registered by action name.

A handler receives the :class:`~binarize.engine.plan.Decision` for one candidate and returns an :class:`Outcome`:
a replacement module, or the reason the layer stays as it is. Handlers build new modules but never touch the
model: the engine swaps every replacement in only after all handlers have run, so an error leaves the model as it
was. A new rule action registers its handler here (and its schema in :data:`binarize.recipe.ACTIONS`); the engine
itself never changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from binarize._registry import Registry
from binarize.errors import RecipeError, UnsupportedLayerError

__all__ = ["HANDLERS", "Handler", "Outcome"]


@dataclass(frozen=True)
class Outcome:
    """The result of a handler: ``replacement`` to swap in, or ``reason`` why the layer is left unchanged."""

    replacement: nn.Module | None = None
    reason: str | None = None


if TYPE_CHECKING:  # the plan module imports the recipe package; handlers stay import-light
    from binarize.engine.plan import Decision

Handler = Callable[["Decision"], Outcome]

#: Action name ("binarize", "keep", ...) -> handler.
HANDLERS: Registry[Handler] = Registry("rule handler")


@HANDLERS.register("binarize")
def binarize_layer(decision: Decision) -> Outcome:
    """Build the binary twin of the candidate with the decision's merged options.

    A layer that the recorded forward pass did not reach (a branch the example inputs did not take, or a weight the
    model only uses in functional calls) is converted like any other; the report marks it as not seen in the
    example pass (``executed: False``).

    An :class:`~binarize.errors.UnsupportedLayerError` (an option the layer cannot honour, e.g. ``shortcut: true``
    on a layer that changes shapes) becomes a skipped layer with that message; a ``TypeError`` / ``ValueError``
    (e.g. an invalid binarizer argument) is a :class:`~binarize.errors.RecipeError` at the deciding rule.
    """
    from binarize.nn import binary_class_for

    module = decision.candidate.module
    cls = binary_class_for(module)
    if cls is None:  # find_candidates only yields convertible layers; kept for plugins' own candidates
        return Outcome(reason=f"no binary class for {type(module).__name__}")
    try:
        return Outcome(replacement=cls.from_float(module, **decision.options))
    except UnsupportedLayerError as exc:
        return Outcome(reason=f"not supported by {cls.__name__}: {exc}")
    except (TypeError, ValueError) as exc:
        raise RecipeError(
            f"cannot build {cls.__name__} for {decision.candidate.name!r} (decided by {decision.rule}) with options "
            f"{decision.options}: {exc}"
        ) from exc


@HANDLERS.register("keep")
def keep_layer(decision: Decision) -> Outcome:
    """Leave the layer in full precision."""
    return Outcome(reason=f"kept in full precision by {decision.rule}")
