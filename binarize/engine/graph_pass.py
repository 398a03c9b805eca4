"""The graph-rule pass: trace -> match -> replace -> lint -> recompile, region by region.

1. **trace**: :func:`~binarize.engine.tracing.trace_partially` (untraceable parts become leaves, listed as
   ``untraced``).
2. **match**: :func:`~binarize.engine.patterns.find_matches` per traced region, all rules at once (longer patterns
   first, then graph order), filtered by each rule's ``within``.
3. **replace**: each match's factory builds the new module. A match made of one module call is swapped on the
   model's own module tree (the model keeps its class and methods). A longer match, or one with function calls,
   rewrites its region's graph: the region's module becomes a :class:`torch.fx.GraphModule` holding the same
   submodules (for the model itself, :func:`binarize.binarize` then returns that GraphModule).
4. **lint** and **recompile** each rewritten graph.

Nothing is changed before every factory has run, so a failing factory leaves the model as it was.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

from torch import fx, nn

from binarize.engine.graph_factories import GRAPH_FACTORIES
from binarize.engine.patterns import Match, find_matches
from binarize.engine.swap import set_submodule
from binarize.engine.tracing import TracedRegion, trace_partially
from binarize.errors import RecipeError, UnsupportedLayerError

__all__ = ["GraphOutcome", "apply_graph_rules"]


@dataclass
class GraphOutcome:
    """What the graph pass did.

    Attributes:
        model: the model (a new object only when its own forward was rewritten into a GraphModule).
        replaced: per rewrite ``{"name", "rule", "pattern", "nodes", "new_type", "function_preserving"}``.
        skipped: matches a factory refused, ``{"name", "type", "reason"}``.
        untraced: modules tracing could not enter, ``{"name", "type", "reason"}``; ``None`` when nothing was traced
            (the recipe has no graph rules).
    """

    model: nn.Module
    replaced: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    untraced: list[dict[str, str]] | None = None


def _within(pattern: str | None, path: str) -> bool:
    if pattern is None:
        return True
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], path) is not None
    return fnmatch.fnmatchcase(path, pattern)


def apply_graph_rules(model: nn.Module, recipe: Any) -> GraphOutcome:
    """Apply ``recipe.graph_rules`` to ``model`` (changed in place; see the module docstring).

    Raises:
        RecipeError: a non-optional graph rule matches nothing.
    """
    rules = recipe.graph_rules
    if not rules:
        return GraphOutcome(model)
    traced = trace_partially(model)
    outcome = GraphOutcome(model, untraced=list(traced.untraced))
    patterns = [(i, rule.pattern) for i, rule in enumerate(rules)]
    planned: list[tuple[TracedRegion, Match, nn.Module]] = []
    matched: set[int] = set()
    for region in traced.regions:
        accept = lambda m: _within(rules[m.rule_index].within, m.paths[0])  # noqa: E731
        for match in find_matches(region.graph_module, patterns, accept):
            matched.add(match.rule_index)
            rule = rules[match.rule_index]
            factory = GRAPH_FACTORIES.get(rule.replace)
            try:
                planned.append((region, match, factory.build(match, **dict(rule.args))))
            except UnsupportedLayerError as exc:
                outcome.skipped.append(
                    {"name": _label(match), "type": _types(match), "reason": f"{rule.describe(match.rule_index)}: {exc}"}
                )
    for index, rule in enumerate(rules):
        if index not in matched and not rule.optional:
            raise RecipeError(
                f"{rule.describe(index)} matches nothing in this model"
                + (f" ({len(traced.untraced)} module(s) could not be traced)" if traced.untraced else "")
                + ". Fix the pattern, or add `optional: true` to the rule if matching nothing is fine",
                file=rule.file,
                line=rule.line,
            )
    for region in reversed(traced.regions):  # innermost regions first: their paths stay valid
        items = [(m, new) for r, m, new in planned if r is region]
        if not items:
            continue
        if all(len(m.nodes) == 1 and m.nodes[0].op == "call_module" for m, _ in items):
            for match, new in items:
                outcome.model = _swap(outcome.model, match.paths[0], new)
        else:
            graph_module = region.graph_module
            for match, new in items:
                _rewrite(graph_module, match, new)
            graph_module.graph.lint()
            graph_module.recompile()
            graph_module.delete_all_unused_submodules()
            outcome.model = _swap(outcome.model, region.path, graph_module)
        for match, new in items:
            rule = rules[match.rule_index]
            outcome.replaced.append(
                {
                    "name": _label(match),
                    "rule": rule.describe(match.rule_index),
                    "pattern": " -> ".join(step.describe() for step in rule.pattern),
                    "nodes": [n.name for n in match.nodes],
                    "old_types": _types(match),
                    "new_type": type(new).__name__,
                    "function_preserving": GRAPH_FACTORIES.get(rule.replace).function_preserving,
                }
            )
    outcome.replaced.sort(key=lambda r: r["name"])
    return outcome


def _swap(root: nn.Module, path: str, new: nn.Module) -> nn.Module:
    if path == "":
        return new
    set_submodule(root, path, new)
    return root


def _label(match: Match) -> str:
    return next((p for p, n in zip(match.paths, match.nodes) if n.op == "call_module"), match.paths[0])


def _types(match: Match) -> str:
    return " -> ".join(
        type(m).__name__ if m is not None else str(getattr(n.target, "__name__", n.target))
        for m, n in zip(match.modules, match.nodes)
    )


def _rewrite(graph_module: fx.GraphModule, match: Match, new: nn.Module) -> None:
    """Replace the matched chain in ``graph_module`` by one call of ``new`` on the chain's external inputs."""
    graph = graph_module.graph
    module_nodes = [n for n in match.nodes if n.op == "call_module"]
    if module_nodes:
        target = str(module_nodes[-1].target)
    else:
        base = re.sub(r"\W", "_", match.nodes[-1].name)
        target, k = f"{base}_replaced", 0
        while hasattr(graph_module, target):
            k += 1
            target = f"{base}_replaced_{k}"
    graph_module.add_submodule(target, new)
    inputs = match.inputs()
    last = match.nodes[-1]
    with graph.inserting_after(last):
        call = graph.call_module(target, tuple(inputs))
    call.meta["module_path"] = _label(match)
    last.replace_all_uses_with(call)
    attrs = [a for n in match.nodes for a in n.all_input_nodes if a.op == "get_attr"]
    for node in reversed(match.nodes):
        graph.erase_node(node)
    for attr in attrs:
        if not attr.users and attr.graph is graph:
            graph.erase_node(attr)
