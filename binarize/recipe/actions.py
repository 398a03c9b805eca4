"""Rule actions: what a rule does to the candidates its selector picks (``binarize``, ``keep``).

Actions are registered in :data:`ACTIONS`, so a new rule kind is added by registering it here and a handler in
:data:`binarize.engine.handlers.HANDLERS`, without editing the recipe schema or the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from binarize._registry import Registry
from binarize.recipe.options import validate_options
from binarize.recipe.source import Source, describe_value

__all__ = ["ACTIONS", "RuleAction"]


@dataclass(frozen=True)
class RuleAction:
    """A kind of rule action.

    Attributes:
        name: the key that introduces it in a rule (``binarize:``, ``keep:``).
        parse: ``parse(value, source, container, key) -> canonical value``; raises ``RecipeError``.
        merges_options: the value is a mapping of layer options that is merged into the options of the
            candidates the rule matches (see the precedence table in :mod:`binarize.recipe.selectors`).
        default: the value used when a rule is built in Python without one.
    """

    name: str
    parse: Callable[[Any, Source, Any, Any], Any]
    merges_options: bool = False
    default: Any = None


ACTIONS: Registry[RuleAction] = Registry("rule action")


def _parse_binarize(value: Any, src: Source, container: Any, key: Any) -> dict[str, Any]:
    return validate_options(value, src, where="'binarize'", container=container, key=key)


def _parse_keep(value: Any, src: Source, container: Any, key: Any) -> str:
    if value != "float" or not isinstance(value, str):
        raise src.error(
            f"'keep' only accepts the value 'float' (keep the layer in full precision), got {describe_value(value)}",
            container,
            key,
        )
    return value


ACTIONS.register("binarize", RuleAction("binarize", _parse_binarize, merges_options=True, default={}))
ACTIONS.register("keep", RuleAction("keep", _parse_keep, default="float"))
