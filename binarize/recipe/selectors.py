"""Selectors: which candidate layers a rule applies to, and how rules outrank each other.

A selector is written in a rule's ``select:`` as a mapping of fields that must all hold, or as the shorthand strings
``first`` / ``last``::

    select: {type: [Conv2d, Linear]}        # by class
    select: {name: "layer1.0.conv1"}        # exact module path
    select: {name: "layer*.0.*"}            # glob (fnmatch; ``*`` also crosses dots)
    select: {name: "re:layer[12]\\..*"}     # regular expression (``re:`` prefix, must match the whole path)
    select: first                           # the first candidate in execution order
    select: {last: true, type: Linear}      # the last Linear candidate in execution order
    select: {name: "head.*", optional: true}  # matching nothing is fine
    select: {side: decoder, level: [0, 1]}  # the two highest-resolution decoder levels (needs example inputs)
    select: {inside: CPUp}                  # layers inside a module of that class

Fields:

* ``type``: a class name (``Conv2d``) or a list of them; a dotted path (``torch.nn.Conv2d``) names the class by its
  import path. A module matches on its exact class, never a subclass.
* ``name``: the module path as in ``model.named_modules()``; a module shared under several paths matches if any
  of them does.
* ``first`` / ``last``: the first / last candidate *in execution order* among the candidates that match the other
  fields. Candidates that never run in the forward pass are never first or last.
* ``level``: the layer's resolution level, an integer or a list of them: 0 at the network input's resolution, 1 at
  half of it, 2 at a quarter, -1 at twice it (the base-2 logarithm of the input's size over the layer input's, rounded).
* ``side``: ``encoder``, ``middle`` or ``decoder``: before, at or after the deepest level the network reaches.
  ``level`` and ``side`` need ``example_inputs`` (one shape-only forward pass finds them; see
  :mod:`binarize.engine.geometry`); layers without spatial input (a linear layer on ``(N, C)``) match neither.
* ``inside``: a class name (or dotted path, or a list) of a module that encloses the layer, at any depth
  (``inside: CPUp`` selects the branches of every CP-Up block, ``inside: Attention`` every layer of attention
  blocks, whatever their names).
* ``optional``: a selector that matches no candidate is an error unless ``optional: true``.

Precedence. For each candidate, the action (``binarize`` or ``keep``) comes from the matching rule with the highest
level; among rules of the same level, the later one wins. A selector that combines fields takes the highest level
among its fields (``{type: Conv2d, first: true}`` is level 3).

===== ========================================== =========================================
level source                                     example
===== ========================================== =========================================
0     the recipe's ``defaults`` (options only)    ``defaults: {scale: channel_mean_abs}``
1     ``type``                                    ``select: {type: Conv2d}``
2     ``name`` glob or regex; ``level``, ``side``, ``select: {name: "layer4.*"}``, ``{side: decoder}``
      ``inside`` (structure)
3     ``first`` / ``last``                        ``select: first``
4     ``name`` exact path                         ``select: {name: "fc"}``
===== ========================================== =========================================

Options merge in the same order: the ``defaults`` first, then the options of every matching ``binarize`` rule in
increasing precedence (level, then position), later ones overriding earlier ones key by key. A candidate that no
rule selects is left unchanged and reported as skipped.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from binarize.errors import RecipeError
from binarize.recipe.source import Source, describe_value, did_you_mean

__all__ = [
    "LEVEL_DEFAULTS",
    "LEVEL_EXACT",
    "LEVEL_PATTERN",
    "LEVEL_POSITION",
    "LEVEL_TYPE",
    "SELECTOR_KEYS",
    "Placement",
    "SIDES",
    "Selectable",
    "Selector",
    "parse_selector",
    "select",
]

LEVEL_DEFAULTS = 0
LEVEL_TYPE = 1
LEVEL_PATTERN = 2
LEVEL_POSITION = 3
LEVEL_EXACT = 4

SELECTOR_KEYS = ("type", "name", "first", "last", "level", "side", "inside", "optional")
#: The sides of a network's bottleneck a ``side`` selector names (see :mod:`binarize.engine.geometry`).
SIDES = ("encoder", "middle", "decoder")
_SHORTHANDS = ("first", "last")
_GLOB_CHARS = frozenset("*?[")


class Selectable(Protocol):
    """What a selector sees of a candidate layer."""

    @property
    def names(self) -> tuple[str, ...]:
        """Every module path of the candidate (several when the module is shared)."""
        ...

    @property
    def cls(self) -> type:
        """The candidate's class."""
        ...


@dataclass(frozen=True)
class Placement:
    """Where a layer sits in the network's geometry (see :mod:`binarize.engine.geometry`).

    Attributes:
        level: resolution level of the layer's input: 0 at the network input's resolution, 1 at half of it, ...
        side: ``"encoder"``, ``"middle"`` or ``"decoder"``.
    """

    level: int
    side: str


@dataclass(frozen=True)
class Selector:
    """Which candidate layers a rule applies to (every given field must hold).

    Attributes:
        type: class names or dotted class paths; empty means any type.
        name: an exact module path, a glob (contains ``*``, ``?`` or ``[``) or a regex (``re:`` prefix).
        first: only the first matching candidate in execution order.
        last: only the last matching candidate in execution order.
        level: resolution levels the layer must run at (empty: any).
        side: ``"encoder"``, ``"middle"`` or ``"decoder"`` (``None``: any).
        inside: class names or dotted paths of a module that must enclose the layer (empty: no condition).
        optional: matching no candidate is not an error.
    """

    type: tuple[str, ...] = ()
    name: str | None = None
    first: bool = False
    last: bool = False
    level: tuple[int, ...] = ()
    side: str | None = None
    inside: tuple[str, ...] = ()
    optional: bool = False
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        for key in ("type", "inside"):
            value = getattr(self, key)
            object.__setattr__(self, key, (value,) if isinstance(value, str) else tuple(value))
        object.__setattr__(self, "level", (self.level,) if isinstance(self.level, int) else tuple(self.level))
        if self.side is not None and self.side not in SIDES:
            raise RecipeError(f"selector 'side' must be one of {list(SIDES)}, got {self.side!r}")
        if not (self.type or self.name is not None or self.first or self.last or self.structural):
            raise RecipeError(f"a selector needs at least one of: {', '.join(k for k in SELECTOR_KEYS if k != 'optional')}")
        if self.name_kind == "regex":
            try:
                object.__setattr__(self, "_regex", re.compile(self.name[3:]))  # type: ignore[index]
            except re.error as exc:
                raise RecipeError(f"selector 'name' {self.name!r} is not a valid regular expression: {exc}") from None

    @property
    def name_kind(self) -> str | None:
        """``"exact"``, ``"glob"``, ``"regex"`` or ``None`` when the selector has no ``name``."""
        if self.name is None:
            return None
        if self.name.startswith("re:"):
            return "regex"
        if _GLOB_CHARS & set(self.name):
            return "glob"
        return "exact"

    @property
    def positional(self) -> bool:
        """True when the selector needs the execution order (``first`` or ``last``)."""
        return self.first or self.last

    @property
    def uses_geometry(self) -> bool:
        """True when the selector needs the layers' placements (``level`` or ``side``)."""
        return bool(self.level) or self.side is not None

    @property
    def structural(self) -> bool:
        """True when the selector names a place in the network's structure (``level``, ``side`` or ``inside``)."""
        return self.uses_geometry or bool(self.inside)

    @property
    def precedence(self) -> int:
        """The precedence level (see the table in this module's docstring)."""
        level = LEVEL_TYPE if self.type else LEVEL_DEFAULTS
        if self.name_kind in ("glob", "regex") or self.structural:
            level = max(level, LEVEL_PATTERN)
        if self.positional:
            level = max(level, LEVEL_POSITION)
        if self.name_kind == "exact":
            level = max(level, LEVEL_EXACT)
        return level

    def matches_static(self, candidate: Selectable) -> bool:
        """Whether ``type`` and ``name`` hold for ``candidate`` (``first`` / ``last`` are applied by :func:`select`)."""
        if self.type and not any(_type_matches(spec, candidate.cls) for spec in self.type):
            return False
        if self.name is not None:
            return any(self._name_matches(n) for n in candidate.names)
        return True

    def _name_matches(self, path: str) -> bool:
        kind = self.name_kind
        if kind == "regex":
            return self._regex is not None and self._regex.fullmatch(path) is not None
        if kind == "glob":
            return fnmatch.fnmatchcase(path, self.name)  # type: ignore[arg-type]
        return path == self.name

    def to_data(self) -> str | dict[str, Any]:
        """Plain data for a recipe file: a shorthand string where possible, else a mapping."""
        if not self.type and self.name is None and not self.optional and self.first != self.last:
            return "first" if self.first else "last"
        data: dict[str, Any] = {}
        if self.type:
            data["type"] = self.type[0] if len(self.type) == 1 else list(self.type)
        if self.name is not None:
            data["name"] = self.name
        for key in ("first", "last"):
            if getattr(self, key):
                data[key] = True
        if self.level:
            data["level"] = self.level[0] if len(self.level) == 1 else list(self.level)
        if self.side is not None:
            data["side"] = self.side
        if self.inside:
            data["inside"] = self.inside[0] if len(self.inside) == 1 else list(self.inside)
        if self.optional:
            data["optional"] = True
        return data

    def matches_placement(self, placement: Placement | None) -> bool:
        """Whether ``level`` and ``side`` hold for a layer at ``placement`` (``None``: the layer has none)."""
        if not self.uses_geometry:
            return True
        if placement is None:
            return False
        return (not self.level or placement.level in self.level) and self.side in (None, placement.side)

    def matches_enclosing(self, enclosing: Sequence[type]) -> bool:
        """Whether ``inside`` holds for a layer enclosed by modules of the classes ``enclosing``."""
        return not self.inside or any(_type_matches(spec, cls) for spec in self.inside for cls in enclosing)

    def describe(self) -> str:
        """A short, YAML-like description, e.g. ``{type: [Conv2d, Linear]}`` or ``first``."""
        data = self.to_data()
        if isinstance(data, str):
            return data
        return "{" + ", ".join(f"{key}: {_flow(value)}" for key, value in data.items()) + "}"


def _flow(value: Any) -> str:
    """A value as YAML flow style, for short descriptions."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def _type_matches(spec: str, cls: type) -> bool:
    """Exact class match by name (``Conv2d``) or by dotted path (``torch.nn.Conv2d``)."""
    if "." not in spec:
        return cls.__name__ == spec
    if spec == f"{cls.__module__}.{cls.__qualname__}":
        return True
    return _resolve_loaded(spec) is cls


def _resolve_loaded(path: str) -> object | None:
    """The object at a dotted path, looked up only in modules already imported (a recipe never imports code)."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:split]))
        if module is None:
            continue
        obj: object = module
        for attr in parts[split:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return None
        return obj
    return None


def select(
    selector: Selector,
    candidates: Sequence[Selectable],
    order: Mapping[int, tuple[int, int]] | None = None,
    placements: Mapping[int, Placement] | None = None,
    enclosing: Sequence[Sequence[type]] | None = None,
) -> list[int]:
    """Indices of the candidates that ``selector`` matches.

    Args:
        selector: the selector.
        candidates: the candidate layers.
        order: for ``first`` / ``last``: candidate index -> (position of its first call, position of its last call)
            in execution order. Candidates missing from it never ran and are never first or last.
        placements: for ``level`` / ``side``: candidate index -> its placement; candidates missing from it match
            no such selector.
        enclosing: for ``inside``: per candidate, the classes of the modules that enclose it.

    Returns:
        Matching indices in increasing order (at most one or two for a positional selector).

    Raises:
        ValueError: a structural or positional selector without the information it needs.
    """
    if selector.uses_geometry and placements is None:
        raise ValueError("a level/side selector needs the layers' placements")
    if selector.inside and enclosing is None:
        raise ValueError("an inside selector needs the enclosing modules")
    hits = [
        i
        for i, c in enumerate(candidates)
        if selector.matches_static(c)
        and selector.matches_placement(placements.get(i) if placements is not None else None)
        and selector.matches_enclosing(enclosing[i] if enclosing is not None else ())
    ]
    if not selector.positional:
        return hits
    if order is None:
        raise ValueError("a first/last selector needs the execution order")
    ran = [i for i in hits if i in order]
    if not ran:
        return []
    chosen = set(ran)
    if selector.first:  # ties: parallel input layers (two stems, the branches of a multi-branch stem)
        start = min(order[i][0] for i in ran)
        chosen &= {i for i in ran if order[i][0] == start}
    if selector.last:  # ties: parallel output layers (a distillation head beside the classifier)
        end = max(order[i][1] for i in ran)
        chosen &= {i for i in ran if order[i][1] == end}
    return sorted(chosen)


def _known_layer_types() -> list[str]:
    from binarize.nn import LAYERS

    return LAYERS.names()


def parse_selector(data: Any, src: Source, container: Any, key: Any) -> Selector:
    """Validate a rule's ``select:`` value (``container[key]``) and build the :class:`Selector`.

    Raises:
        RecipeError: the value is not a shorthand or a mapping, a field is unknown or has the wrong type, a
            ``type`` names no convertible layer class, or a ``re:`` pattern does not compile.
    """
    if isinstance(data, str):
        if data in _SHORTHANDS:
            return Selector(first=data == "first", last=data == "last")
        raise src.error(
            f"unknown selector shorthand {data!r}.{did_you_mean(data, _SHORTHANDS)} Write 'first', 'last' or a "
            f"mapping with keys {', '.join(SELECTOR_KEYS)} (e.g. `select: {{type: Conv2d}}`)",
            container,
            key,
        )
    if not isinstance(data, Mapping):
        raise src.error(
            f"'select' must be 'first', 'last' or a mapping with keys {', '.join(SELECTOR_KEYS)}, "
            f"got {describe_value(data)}",
            container,
            key,
        )
    for field_name in data:
        if field_name not in SELECTOR_KEYS:
            raise src.error(
                f"unknown selector key {field_name!r}.{did_you_mean(field_name, SELECTOR_KEYS)} "
                f"Allowed keys: {', '.join(SELECTOR_KEYS)}",
                data,
                field_name,
            )
    types = _parse_types(data.get("type"), src, data)
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        raise src.error(
            f"selector 'name' must be a non-empty string (a module path, a glob or 're:REGEX'), "
            f"got {describe_value(name)}",
            data,
            "name",
        )
    if isinstance(name, str) and name.startswith("re:"):
        try:
            re.compile(name[3:])
        except re.error as exc:
            raise src.error(f"selector 'name' {name!r} is not a valid regular expression: {exc}", data, "name")
    structure = _parse_structure(data, src)
    flags = {}
    for flag in ("first", "last", "optional"):
        value = data.get(flag, False)
        if not isinstance(value, bool):
            raise src.error(f"selector {flag!r} must be true or false, got {describe_value(value)}", data, flag)
        flags[flag] = value
    if not (types or name is not None or flags["first"] or flags["last"] or structure):
        raise src.error(
            "a selector needs at least one of: type, name, first, last, level, side, inside "
            f"(got {describe_value(dict(data))}); to set options for every layer, use the recipe's `defaults`",
            container,
            key,
        )
    return Selector(type=types, name=name, **structure, **flags)


def _parse_structure(data: Mapping[str, Any], src: Source) -> dict[str, Any]:
    """The ``level``, ``side`` and ``inside`` fields of a selector mapping, validated."""
    out: dict[str, Any] = {}
    level = data.get("level")
    if level is not None:
        levels = [level] if not isinstance(level, list) else level
        if not levels or not all(isinstance(v, int) and not isinstance(v, bool) for v in levels):
            raise src.error(
                f"selector 'level' must be an integer or a list of integers (0: the input's resolution, 1: half "
                f"of it, ...), got {describe_value(level)}",
                data,
                "level",
            )
        out["level"] = tuple(levels)
    side = data.get("side")
    if side is not None:
        if side not in SIDES:
            raise src.error(
                f"selector 'side' must be one of {', '.join(SIDES)}.{did_you_mean(str(side), SIDES)} Got "
                f"{describe_value(side)}",
                data,
                "side",
            )
        out["side"] = side
    inside = data.get("inside")
    if inside is not None:
        names = [inside] if isinstance(inside, str) else inside
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise src.error(
                f"selector 'inside' must be a class name (CPUp, Attention, mypackage.Block) or a non-empty list of "
                f"them, got {describe_value(inside)}",
                data,
                "inside",
            )
        out["inside"] = tuple(names)
    return out


def _parse_types(value: Any, src: Source, data: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items: Iterable[Any] = [value] if isinstance(value, str) else value
    if not isinstance(value, (str, list, tuple)) or not value:
        raise src.error(
            f"selector 'type' must be a class name or a non-empty list of them (e.g. [Conv2d, Linear]), "
            f"got {describe_value(value)}",
            data,
            "type",
        )
    known = _known_layer_types()
    out = []
    for i, item in enumerate(items):
        where = (value, i) if isinstance(value, list) else (data, "type")
        if not isinstance(item, str) or not item:
            raise src.error(f"selector 'type' entries must be class names, got {describe_value(item)}", *where)
        if item.rsplit(".", 1)[-1] not in known:
            raise src.error(
                f"selector type {item!r} is not a layer type binarize can convert.{did_you_mean(item, known)} "
                f"Convertible types: {', '.join(known)} (a dotted path such as torch.nn.Conv2d works too)",
                *where,
            )
        out.append(item)
    return tuple(out)
