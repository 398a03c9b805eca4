"""Safe YAML loading that remembers the line of every mapping key and list item.

Recipes are plain data: :class:`yaml.SafeLoader` refuses every Python tag, so nothing in a recipe file is ever
evaluated. This module adds two things on top of it:

* mappings load as :class:`LineDict` and lists as :class:`LineList`, ordinary ``dict`` / ``list`` subclasses that
  remember the (1-based) line of the container, of each key and of each item, so that validation errors can point at
  ``file:line``;
* a key that appears twice in one mapping is an error (plain PyYAML silently keeps the last one).

Use :func:`line_of` to ask any container (a plain ``dict`` too, which yields ``None``) for a line.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml

from binarize.errors import RecipeError

__all__ = ["LineDict", "LineList", "line_of", "load_yaml"]


class LineDict(dict):
    """A ``dict`` that remembers its own line and the line of each key (``None`` where unknown)."""

    line: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines: dict[Any, int] = {}


class LineList(list):
    """A ``list`` that remembers its own line and the line of each item (``None`` where unknown)."""

    line: int | None = None

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.item_lines: list[int] = []


def line_of(container: object, key: Any = None) -> int | None:
    """The 1-based line of ``container[key]`` (or of ``container`` itself when ``key`` is None), if known."""
    if key is None:
        return getattr(container, "line", None)
    if isinstance(container, LineDict):
        return container.key_lines.get(key, container.line)
    if isinstance(container, LineList) and isinstance(key, int) and 0 <= key < len(container.item_lines):
        return container.item_lines[key]
    return getattr(container, "line", None)


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader whose mappings and sequences remember their lines and whose mappings refuse duplicate keys."""

    file: str | None = None

    def construct_line_mapping(self, node: yaml.MappingNode):  # noqa: ANN201 - a generator, as PyYAML expects
        data = LineDict()
        data.line = node.start_mark.line + 1
        yield data
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:  # explicit keys only: merge keys ("<<") may legitimately be overridden
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, Hashable) and key in seen:
                raise RecipeError(
                    f"duplicate key {key!r} (first given on line {seen[key]}); each key may appear once per mapping",
                    file=self.file,
                    line=line,
                )
            if isinstance(key, Hashable):
                seen[key] = line
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                raise RecipeError(
                    f"a mapping key must be a plain scalar, got {type(key).__name__} {key!r}",
                    file=self.file,
                    line=key_node.start_mark.line + 1,
                )
            data[key] = self.construct_object(value_node, deep=False)
            data.key_lines[key] = key_node.start_mark.line + 1

    def construct_line_sequence(self, node: yaml.SequenceNode):  # noqa: ANN201 - a generator, as PyYAML expects
        data = LineList()
        data.line = node.start_mark.line + 1
        yield data
        for item in node.value:
            data.append(self.construct_object(item, deep=False))
            data.item_lines.append(item.start_mark.line + 1)


_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader.construct_line_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _LineLoader.construct_line_sequence)


def load_yaml(text: str, file: str | None = None) -> Any:
    """Parse ``text`` as plain-data YAML; mappings and lists remember their lines.

    Args:
        text: the YAML document.
        file: the file name used in error messages.

    Returns:
        The document: :class:`LineDict`, :class:`LineList` or a scalar (``None`` for an empty document).

    Raises:
        RecipeError: on a syntax error, a tag that is not plain data, a duplicate key or several documents.
    """
    loader = None
    try:
        loader = _LineLoader(text)  # the reader already checks characters here
        loader.file = file
        return loader.get_single_data()
    except RecipeError:
        raise
    except (ValueError, RecursionError) as exc:  # an integer of thousands of digits, nesting thousands deep
        raise RecipeError(f"the YAML cannot be read as plain data ({type(exc).__name__}: {exc})", file=file) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).replace("\n", " ")
        line = mark.line + 1 if mark else None
        if isinstance(exc, yaml.reader.ReaderError):
            line = text.count("\n", 0, exc.position) + 1
        context = getattr(exc, "context", None)
        detail = f"{context}: {problem}" if context else problem
        if "could not determine a constructor" in str(exc):
            detail += " (recipes are plain data: tags such as !!python/... are not allowed)"
        raise RecipeError(f"invalid YAML: {detail}", file=file, line=line) from None
    finally:
        if loader is not None:
            loader.dispose()
