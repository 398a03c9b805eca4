"""Planning: which rule decides each candidate layer and with which options (a dry run; nothing is changed).

Resolution follows the precedence table of :mod:`binarize.recipe.selectors`: for each candidate the matching rule
with the highest level decides the action (later rules win ties), and the options are the recipe's ``defaults``
updated by every matching rule that carries options, in increasing precedence. A non-optional selector that
matches no candidate is an error naming the rule's file and line.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from binarize.engine.candidates import Candidate, find_candidates
from binarize.engine.geometry import layer_placements
from binarize.engine.order import execution_order, timm_example_input
from binarize.errors import BinarizeError, RecipeError
from binarize.recipe import ACTIONS, Recipe
from binarize.recipe.selectors import Placement, select

__all__ = ["NO_RULE", "Decision", "Plan", "make_plan"]

NO_RULE = "no rule selects it"


@dataclass(frozen=True, eq=False)
class Decision:
    """What the recipe decides for one candidate layer.

    Attributes:
        candidate: the layer.
        action: the winning rule's action (``"binarize"``, ``"keep"``, ...), or ``None`` when no rule selects it.
        rule_index: the index of the winning rule in ``recipe.rules``.
        rule: a description of the winning rule with its file:line (``""`` when none).
        options: the merged layer options (only meaningful for actions that take options).
        matched: indices of every rule that matches the candidate, in increasing precedence.
        executed: whether the layer ran in the forward pass that recorded the execution order; ``None`` when no
            forward pass was recorded. A layer that never runs as a module (a model may use its weight in a
            functional call instead) computes nothing as a binary layer either.
    """

    candidate: Candidate
    action: str | None
    rule_index: int | None = None
    rule: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    matched: tuple[int, ...] = ()
    executed: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data: name, type, action, rule, options (and aliases of a shared module)."""
        return {
            "name": self.candidate.name,
            "aliases": list(self.candidate.names[1:]),
            "type": self.candidate.cls.__name__,
            "action": self.action,
            "rule": self.rule,
            "options": dict(self.options),
            "executed": self.executed,
        }


@dataclass
class Plan:
    """The decisions of a recipe on a model (returned by :func:`binarize.plan`).

    Attributes:
        recipe: the resolved recipe.
        decisions: one per candidate layer, in registration order.
        skipped: layer-like modules that are not candidates, ``{"name", "type", "reason"}``.
        order_source: how the execution order was found (see :mod:`binarize.engine.order`), or ``None`` when no
            rule needed it.
    """

    recipe: Recipe
    decisions: list[Decision]
    skipped: list[dict[str, str]]
    order_source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json`` output."""
        return {
            "recipe": self.recipe.name,
            "recipe_hash": self.recipe.hash,
            "order_source": self.order_source,
            "decisions": [d.to_dict() for d in self.decisions],
            "skipped": [dict(s) for s in self.skipped],
        }

    def __str__(self) -> str:
        from binarize.engine.report import format_table

        rows = [
            (d.candidate.name, d.candidate.cls.__name__, d.action or "-", d.rule or NO_RULE) for d in self.decisions
        ]
        lines = [
            f"plan: recipe {self.recipe.name!r}, order from {self.order_source or 'not needed'}",
            format_table(("name", "type", "action", "rule"), rows),
        ]
        if self.skipped:
            skipped_rows = [(s["name"], s["type"], s["reason"]) for s in self.skipped]
            lines.append(f"not candidates ({len(self.skipped)}):")
            lines.append(format_table(("name", "type", "reason"), skipped_rows))
        return "\n".join(lines)


def make_plan(model: nn.Module, recipe: Recipe, *, example_inputs: Any = None) -> Plan:
    """Resolve ``recipe`` on ``model`` without changing it.

    Args:
        model: the model.
        recipe: a loaded recipe.
        example_inputs: inputs for one forward pass that records the execution order (see
            :mod:`binarize.engine.order`) and which layers run at all. Without them the order is inferred, and
            only when a rule selects ``first`` or ``last``.

    Raises:
        RecipeError: a non-optional selector matches no candidate.
    """
    candidates, skipped = find_candidates(model)
    positions = None
    order_source = None
    if recipe.uses_execution_order or example_inputs is not None:
        positions, order_source = execution_order(model, [c.module for c in candidates], example_inputs)
    ran = _executed(positions, order_source, len(candidates))
    placements = _placements(model, candidates, recipe, example_inputs)
    enclosing = [_enclosing(model, c) for c in candidates] if recipe.uses_enclosing else None

    matches: list[list[int]] = []
    for index, rule in enumerate(recipe.rules):
        hits = select(rule.select, candidates, positions, placements, enclosing)
        if not hits and not rule.select.optional:
            raise _no_match_error(index, recipe, candidates, skipped, order_source)
        matches.append(hits)

    by_candidate: list[list[int]] = [[] for _ in candidates]
    for index, hits in enumerate(matches):
        for c in hits:
            by_candidate[c].append(index)

    decisions = []
    for candidate, rule_indices in zip(candidates, by_candidate):
        ranked = sorted(rule_indices, key=lambda i: (recipe.rules[i].level, i))
        if not ranked:
            decisions.append(Decision(candidate, None, executed=ran[len(decisions)]))
            continue
        options = dict(recipe.defaults)
        for i in ranked:
            if ACTIONS.get(recipe.rules[i].action).merges_options:
                options.update(recipe.rules[i].options)
        winner = ranked[-1]
        if ACTIONS.get(recipe.rules[winner].action).merges_options:
            _timestep_groups(options, recipe, winner)
        action = recipe.rules[winner].action
        decisions.append(
            Decision(
                candidate, action, winner, recipe.rule_label(winner), options, tuple(ranked), ran[len(decisions)]
            )
        )
    return Plan(recipe, decisions, skipped, order_source)


_RECORDED_SOURCES = ("forward", "timm_input_size")


def _placements(
    model: nn.Module, candidates: list[Candidate], recipe: Recipe, example_inputs: Any
) -> dict[int, Placement] | None:
    """The candidates' placements when a rule selects by ``level`` or ``side``; those need example inputs."""
    if not recipe.uses_geometry:
        return None
    inputs = example_inputs if example_inputs is not None else timm_example_input(model)
    if inputs is None:
        index = next(i for i, rule in enumerate(recipe.rules) if rule.select.uses_geometry)
        raise BinarizeError(
            f"rule {recipe.rule_label(index)} selects layers by resolution level or encoder/decoder side, which "
            f"needs the model's example inputs (one shape-only forward pass places every layer); pass "
            f"example_inputs= (e.g. binarize(model, {recipe.name!r}, example_inputs=(x, t, cond)))"
        )
    return layer_placements(model, [c.module for c in candidates], inputs)


def _enclosing(model: nn.Module, candidate: Candidate) -> tuple[type, ...]:
    """The classes of the modules that enclose ``candidate`` on any of its paths (the model's own included)."""
    classes: list[type] = []
    for name in candidate.names:
        parts = name.split(".")
        for depth in range(len(parts)):
            owner = model.get_submodule(".".join(parts[:depth]))
            if type(owner) not in classes:
                classes.append(type(owner))
    return tuple(classes)


def _timestep_groups(options: dict[str, Any], recipe: Recipe, rule_index: int) -> None:
    """Turn the recipe option ``timestep_aware`` into the layer options ``timestep_groups`` (K from the recipe) and
    ``timestep_parts`` (both parts for ``true``, else the one named)."""
    aware = options.pop("timestep_aware", False)
    if aware is False:
        return
    if recipe.timestep is None:
        rule = recipe.rules[rule_index]
        from_rule = rule.options.get("timestep_aware", False) is not False
        where = recipe.rule_label(rule_index) if from_rule else "the recipe's defaults"
        raise RecipeError(
            f"{where} make(s) layers timestep_aware, but the recipe has no `timestep` section; add e.g. "
            f"`timestep: {{input: t, T: 2000, K: 5}}` naming the model's timestep input",
            file=(rule.file if from_rule else None) or recipe.file,
            line=rule.line if from_rule else None,
        )
    options["timestep_groups"] = recipe.timestep["K"]
    if aware is not True:
        options["timestep_parts"] = (aware,)


def _executed(positions: dict[int, tuple[int, int]] | None, source: str | None, count: int) -> list[bool | None]:
    """Per candidate: did it run in a recorded forward pass (``None`` when no forward pass was recorded)."""
    if positions is None or source not in _RECORDED_SOURCES:
        return [None] * count
    return [i in positions for i in range(count)]


def _no_match_error(
    index: int,
    recipe: Recipe,
    candidates: list[Candidate],
    skipped: list[dict[str, str]],
    order_source: str | None,
) -> RecipeError:
    rule = recipe.rules[index]
    sel = rule.select
    hints = []
    if sel.name is not None and sel.name_kind == "exact":
        names = [n for c in candidates for n in c.names]
        close = difflib.get_close_matches(sel.name, names, n=3, cutoff=0.6)
        if close:
            hints.append(f"close candidate names: {', '.join(close)}")
        skipped_here = [s for s in skipped if s["name"] == sel.name]
        if skipped_here:
            hints.append(f"{sel.name!r} is not a candidate: {skipped_here[0]['reason']}")
    if sel.type:
        present = sorted({c.cls.__name__ for c in candidates})
        hints.append(f"candidate types in this model: {', '.join(present) or '(none)'}")
    if skipped and (sel.type or sel.name_kind != "exact"):
        first = skipped[0]
        hints.append(f"{len(skipped)} layer(s) are not candidates, e.g. {first['name']!r}: {first['reason']}")
    if sel.positional and order_source is not None:
        hints.append(f"execution order from {order_source}")
    hint = f" ({'; '.join(hints)})" if hints else ""
    return RecipeError(
        f"rules[{index}] select {sel.describe()} matches no candidate layer among {len(candidates)}{hint}. "
        f"Fix the selector, or add `optional: true` to it if matching nothing is fine",
        file=rule.file,
        line=rule.line,
    )
