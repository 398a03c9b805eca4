"""Where a piece of recipe data came from, so that every validation error can name ``file:line``."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from binarize.errors import RecipeError
from binarize.recipe.yaml_lines import line_of

__all__ = ["Source", "describe_value", "did_you_mean"]


def did_you_mean(value: object, allowed: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest allowed string, or an empty string."""
    matches = difflib.get_close_matches(str(value), list(allowed), n=1, cutoff=0.5)
    return f" Did you mean {matches[0]!r}?" if matches else ""


def describe_value(value: object) -> str:
    """``3 (int)``: a received value with its YAML-ish type, for error messages."""
    kinds = {dict: "mapping", list: "list", str: "string", bool: "bool", int: "int", float: "float"}
    kind = next((name for cls, name in kinds.items() if isinstance(value, cls)), type(value).__name__)
    if value is None:
        kind = "null"
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{shown} ({kind})"


@dataclass(frozen=True)
class Source:
    """The file a recipe is being read from (``None`` for a dict or a :class:`Recipe` built in Python)."""

    file: str | None = None

    def line(self, container: object, key: Any = None) -> int | None:
        """The line of ``container[key]`` (or of the container), if the data came from YAML."""
        return line_of(container, key)

    def error(self, message: str, container: object = None, key: Any = None) -> RecipeError:
        """A :class:`RecipeError` located at ``container[key]``."""
        return RecipeError(message, file=self.file, line=self.line(container, key))
