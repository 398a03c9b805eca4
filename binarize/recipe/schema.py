"""The recipe schema: :class:`Recipe` (name, paper, defaults, ordered rules) and :class:`Rule` (selector + action).

Both are immutable dataclasses holding plain data. Built in Python they are validated like a loaded file; equality
ignores where a recipe came from (its file, lines and ``extends`` chain), so a recipe equals the recipe loaded back
from its own :meth:`Recipe.to_dict`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from binarize.errors import RecipeError
from binarize.recipe.actions import ACTIONS
from binarize.recipe.graph_rules import GraphRule, parse_graph_rule
from binarize.recipe.timestep import parse_timestep
from binarize.recipe.options import canonical_defaults, validate_options
from binarize.recipe.selectors import Selector, parse_selector
from binarize.recipe.source import Source

__all__ = ["Recipe", "Rule", "canonical_json"]


def canonical_json(data: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) used for hashes."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@dataclass(frozen=True)
class Rule:
    """One recipe rule: a selector and an action.

    Attributes:
        select: the :class:`~binarize.recipe.selectors.Selector` (plain data such as ``{"type": "Conv2d"}`` or
            ``"first"`` is accepted and parsed).
        action: the action name, a key of :data:`~binarize.recipe.actions.ACTIONS` (``"binarize"`` or ``"keep"``).
        value: the action's value: layer-option overrides for ``binarize`` (default ``{}``), ``"float"`` for
            ``keep``.
        file: the recipe file the rule was read from, if any (not part of equality).
        line: the line of the rule in that file, if known (not part of equality).

    Examples:
        >>> Rule({"type": "Linear"}, "keep").describe(1)
        'rules[1] select {type: Linear}'
    """

    select: Selector
    action: str
    value: Any = None
    file: str | None = field(default=None, compare=False)
    line: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        src = Source(self.file)
        # A Selector built in Python is checked like a loaded one (e.g. its type names against the layer registry).
        data = self.select.to_data() if isinstance(self.select, Selector) else self.select
        object.__setattr__(self, "select", parse_selector(data, src, {"select": data}, "select"))
        if self.action not in ACTIONS:
            from binarize.recipe.source import did_you_mean

            raise RecipeError(
                f"unknown rule action {self.action!r}.{did_you_mean(self.action, ACTIONS.names())} "
                f"Known actions: {', '.join(ACTIONS.names())}",
                file=self.file,
                line=self.line,
            )
        spec = ACTIONS.get(self.action)
        value = spec.default if self.value is None and spec.default is not None else self.value
        holder = {self.action: value}
        object.__setattr__(self, "value", spec.parse(value, src, holder, self.action))

    @classmethod
    def binarize(cls, select: Any, **options: Any) -> Rule:
        """A ``binarize`` rule with option overrides, e.g. ``Rule.binarize({"type": "Conv2d"}, scale="mean_abs")``."""
        return cls(select, "binarize", dict(options))

    @classmethod
    def keep(cls, select: Any) -> Rule:
        """A ``keep: float`` rule, e.g. ``Rule.keep("first")``."""
        return cls(select, "keep", "float")

    @property
    def options(self) -> dict[str, Any]:
        """The layer options this rule merges into the candidates it matches (empty for ``keep``)."""
        return dict(self.value) if ACTIONS.get(self.action).merges_options else {}

    @property
    def level(self) -> int:
        """The precedence level of the rule's selector."""
        return self.select.precedence

    def to_dict(self) -> dict[str, Any]:
        """The rule as plain data: ``{"select": ..., action: value}``."""
        value = dict(self.value) if isinstance(self.value, Mapping) else self.value
        return {"select": self.select.to_data(), self.action: value}

    def describe(self, index: int | None = None) -> str:
        """E.g. ``rules[0] select {type: Conv2d} (reactnet.yaml:21)`` (the file's name only; errors give its path)."""
        head = "rule" if index is None else f"rules[{index}]"
        text = f"{head} select {self.select.describe()}"
        if self.file is not None:
            file = PurePath(self.file).name
            text += f" ({file}:{self.line})" if self.line is not None else f" ({file})"
        return text

    def __hash__(self) -> int:
        return hash(canonical_json(self.to_dict()))


@dataclass(frozen=True)
class Recipe:
    """A binarization recipe: layer-option defaults plus an ordered list of rules.

    Attributes:
        name: the recipe's name.
        graph_rules: structural rules applied first (see :mod:`binarize.recipe.graph_rules`).
        timestep: the diffusion-timestep section (see :mod:`binarize.recipe.timestep`), or ``None``.
        rules: the layer rules, in order (later rules win ties, see :mod:`binarize.recipe.selectors`).
        defaults: layer options applied to every binarized layer (see :mod:`binarize.recipe.options`), in
            canonical form (an option of :data:`~binarize.recipe.options.IMPLICIT_DEFAULTS` at its implicit value
            is left out, so that recipes written before it existed keep their hash).
        paper: the paper the recipe follows, if any.
        description: what the recipe does and why.
        extends: the chain of recipes it was derived from, nearest first (display only; the rules and defaults
            are already resolved, and equality ignores it).
        file: the file it was loaded from, if any (not part of equality).

    Examples:
        >>> r = Recipe("mine", rules=[Rule.binarize({"type": "Conv2d"}), Rule.keep("first")],
        ...            defaults={"weight_binarizer": "ste"})
        >>> r.uses_execution_order
        True
    """

    name: str
    rules: tuple[Rule, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)
    paper: str | None = None
    description: str | None = None
    extends: tuple[str, ...] = field(default=(), compare=False)
    file: str | None = field(default=None, compare=False)
    graph_rules: tuple[GraphRule, ...] = ()
    timestep: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        src = Source(self.file)
        if not isinstance(self.name, str) or not self.name:
            raise RecipeError(f"a recipe needs a non-empty string 'name', got {self.name!r}", file=self.file)
        for key in ("paper", "description"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise RecipeError(f"{key!r} must be a string, got {value!r}", file=self.file)
        rules = []
        for rule in self.rules:
            if isinstance(rule, Rule):
                rules.append(rule)
            elif isinstance(rule, Mapping):
                from binarize.recipe.loader import parse_rule

                rules.append(parse_rule(rule, src, None, None))
            else:
                raise RecipeError(f"a rule must be a Rule or a mapping, got {type(rule).__name__}", file=self.file)
        object.__setattr__(self, "rules", tuple(rules))
        graph_rules = []
        for i, rule in enumerate(self.graph_rules):
            if isinstance(rule, GraphRule):
                graph_rules.append(rule)
            elif isinstance(rule, Mapping):
                graph_rules.append(parse_graph_rule(rule, src, None, i))
            else:
                raise RecipeError(
                    f"a graph rule must be a GraphRule or a mapping, got {type(rule).__name__}", file=self.file
                )
        object.__setattr__(self, "graph_rules", tuple(graph_rules))
        object.__setattr__(self, "timestep", parse_timestep(self.timestep, src, {"timestep": self.timestep}, "timestep"))
        defaults = validate_options(self.defaults, src, where="defaults")
        object.__setattr__(self, "defaults", canonical_defaults(defaults))
        object.__setattr__(self, "extends", tuple(self.extends))

    @property
    def uses_execution_order(self) -> bool:
        """True when a rule selects ``first`` or ``last`` (the engine then computes the execution order)."""
        return any(rule.select.positional for rule in self.rules)

    @property
    def uses_geometry(self) -> bool:
        """True when a rule selects by ``level`` or ``side`` (the engine then places the layers on example inputs)."""
        return any(rule.select.uses_geometry for rule in self.rules)

    @property
    def uses_enclosing(self) -> bool:
        """True when a rule selects by ``inside`` (the engine then collects each layer's enclosing modules)."""
        return any(rule.select.inside for rule in self.rules)

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved recipe as plain data (no ``extends``): ``load_recipe(r.to_dict()) == r``."""
        out: dict[str, Any] = {"name": self.name}
        if self.paper is not None:
            out["paper"] = self.paper
        if self.description is not None:
            out["description"] = self.description
        if self.timestep is not None:
            out["timestep"] = dict(self.timestep)
        out["defaults"] = json.loads(json.dumps(self.defaults))
        out["rules"] = [json.loads(json.dumps(rule.to_dict())) for rule in self.rules]
        if self.graph_rules:
            out["graph_rules"] = [json.loads(json.dumps(rule.to_dict())) for rule in self.graph_rules]
        return out

    @property
    def hash(self) -> str:
        """SHA-256 (hex) of the canonical JSON of :meth:`to_dict`; identifies the recipe in checkpoints."""
        return hashlib.sha256(canonical_json(self.to_dict()).encode()).hexdigest()

    def __hash__(self) -> int:
        return hash(self.hash)

    def rule_label(self, index: int) -> str:
        """A human-readable label for ``self.rules[index]`` with its file:line, if known."""
        return self.rules[index].describe(index)
