"""The graph-rule pass: trace -> match -> replace -> lint -> recompile, region by region.

1. **trace**: :func:`~binarize.engine.tracing.trace_partially` (untraceable parts become leaves, listed as
   ``untraced``).
2. **match**: :func:`~binarize.engine.patterns.find_matches` per traced region, all rules at once (longer patterns
   first, then graph order), filtered by each rule's ``within``.
3. **replace**: each match's factory builds the new module. A match made of one module call is swapped on the
   model's own module tree (the model keeps its class and methods); all of these are built before any is swapped
   in. A longer match, or one with function calls, changes forward code: the innermost module whose forward
   contains the whole chain (its *owner*) is traced on its own, the chain is replaced in that graph, and the owner
   becomes a :class:`torch.fx.GraphModule` holding the same submodules. Only the owner changes class; when the
   owner is the model itself, :func:`binarize.binarize` returns the GraphModule.
4. **lint** and **recompile** each rewritten graph.

A factory that refuses a match (:class:`~binarize.errors.UnsupportedLayerError`) leaves that occurrence as it was
and the report lists it as skipped, with the reason.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from torch import fx, nn

from binarize.engine.graph_factories import GRAPH_FACTORIES
from binarize.engine.patterns import Match, find_matches
from binarize.engine.swap import set_submodule
from binarize.engine.shape_tracing import ModuleInputs, record_module_inputs
from binarize.engine.tracing import trace_partially
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


def apply_graph_rules(model: nn.Module, recipe: Any, example_inputs: Any = None) -> GraphOutcome:
    """Apply ``recipe.graph_rules`` to ``model`` (changed in place; see the module docstring).

    Args:
        model: the model.
        recipe: a loaded recipe.
        example_inputs: inputs of one forward pass (as for :func:`binarize.binarize`). With them tracing carries
            shapes, so code that reads shapes (asserts, ``len(x.shape)``, shape unpacking, branches on sizes) is
            traced through, and every module can be traced as it is called.

    Raises:
        RecipeError: a non-optional graph rule matches nothing.
    """
    rules = recipe.graph_rules
    if not rules:
        return GraphOutcome(model)
    inputs = record_module_inputs(model, example_inputs) if example_inputs is not None else None
    traced = trace_partially(model, inputs=inputs)
    outcome = GraphOutcome(model, untraced=list(traced.untraced))
    patterns = [(i, rule.pattern) for i, rule in enumerate(rules)]
    contexts = {i: rule.context for i, rule in enumerate(rules) if rule.context}

    def accept(match: Match) -> bool:
        return _within(rules[match.rule_index].within, match.paths[match.context])

    single: list[Match] = []
    by_owner: dict[str, list[Match]] = {}
    matched: set[int] = set()
    claimed: set[fx.Node] = set()
    for region in traced.regions:
        for match in find_matches(region.graph_module, patterns, accept, contexts):
            claimed.update(match.replaced)
            matched.add(match.rule_index)
            if match.is_single_call:
                single.append(match)
            else:
                by_owner.setdefault(match.owner, []).append(match)
    for index, rule in enumerate(rules):
        if index not in matched and not rule.optional:
            raise RecipeError(
                f"{rule.describe(index)} matches nothing in this model"
                + (f" ({len(traced.untraced)} module(s) could not be traced)" if traced.untraced else "")
                + ". Fix the pattern, or add `optional: true` to the rule if matching nothing is fine",
                file=rule.file,
                line=rule.line,
            )
    outcome.skipped.extend(_unconverted_functional_layers(traced.regions, claimed))
    # One-call matches: build every replacement first, then swap them in on the module tree.
    built = [(match, new) for match in single if (new := _build(match, rules, outcome)) is not None]
    for match, new in built:
        outcome.model = _swap(outcome.model, match.paths[match.context], new)
        _record(outcome, rules, match, new)
    # Code rewrites: each owning module is traced on its own and rewritten, innermost first, so the rest of the
    # model (its class, its other methods) stays as it was.
    for owner in sorted(by_owner, key=lambda path: -len(path.split(".")) if path else 0):
        _rewrite_owner(outcome, rules, (patterns, contexts), accept, owner, by_owner[owner], inputs)
    outcome.replaced.sort(key=lambda r: r["name"])
    return outcome


def _rewrite_owner(
    outcome: GraphOutcome,
    rules: Any,
    patterns: Any,
    accept: Any,
    owner: str,
    found: list[Match],
    inputs: ModuleInputs | None,
) -> None:
    module = outcome.model if owner == "" else outcome.model.get_submodule(owner)
    # Children that no match reaches into stay opaque calls, so the rewritten owner keeps them as they are
    # (their classes and methods) instead of inlining their forward code.
    inside = {_child_of(owner, str(n.meta.get("caller_path", ""))) for m in found for n in m.nodes}
    patterns, contexts = patterns
    opaque = [child for name, child in module.named_children() if name not in inside]
    local = trace_partially(module, owner, opaque=opaque, inputs=inputs)
    region = local.regions[0] if local.regions and local.regions[0].path == owner else None
    if region is None:
        reason = local.untraced[0]["reason"] if local.untraced else "no graph"
        for match in found:
            outcome.skipped.append(
                _lost(match, rules, f"the match needs {owner or 'the model'}'s forward rewritten, but it cannot be "
                                    f"traced on its own ({reason})")
            )
        return
    matches = [
        m for m in find_matches(region.graph_module, patterns, accept, contexts)
        if not m.is_single_call and m.owner == owner
    ]
    for match in _missing(found, matches):
        outcome.skipped.append(
            _lost(match, rules, f"found in the model's trace, but not when {owner or 'the model'} was traced on its "
                                f"own to rewrite it (its forward takes another path there)")
        )
    items = [(match, new) for match in matches if (new := _build(match, rules, outcome)) is not None]
    if not items:
        return
    graph_module = region.graph_module
    names = [_join(owner, _rewrite(graph_module, match, new)) for match, new in items]
    graph_module.graph.lint()
    graph_module.recompile()
    graph_module.delete_all_unused_submodules()
    outcome.model = _swap(outcome.model, owner, graph_module)
    for (match, new), name in zip(items, names):
        _record(outcome, rules, match, new, name, region.decisions)


def _signature(match: Match) -> tuple[Any, ...]:
    """What identifies a match across two traces of the same code: its rule and each step's kind and place."""
    return (
        match.rule_index,
        tuple((n.op, p, "" if n.op == "call_module" else getattr(n.target, "__name__", str(n.target)))
              for n, p in zip(match.nodes, match.paths)),
    )


def _missing(expected: list[Match], found: list[Match]) -> list[Match]:
    """The matches of ``expected`` with no counterpart in ``found`` (compared by :func:`_signature`)."""
    left = Counter(_signature(m) for m in found)
    missing = []
    for match in expected:
        key = _signature(match)
        if left[key]:
            left[key] -= 1
        else:
            missing.append(match)
    return missing


def _lost(match: Match, rules: Any, why: str) -> dict[str, str]:
    """A report entry for a match that was found and then not applied."""
    return {"name": _label(match), "type": _types(match), "reason": f"{rules[match.rule_index].describe(match.rule_index)}: {why}"}


_FUNCTIONAL_LAYERS = ("F.conv1d", "F.conv2d", "F.linear")


def _unconverted_functional_layers(regions: Any, claimed: set[fx.Node]) -> list[dict[str, str]]:
    """Functional convolutions and linear calls that no graph rule matched: listed, never silently skipped."""
    from binarize.engine.patterns import FUNCTIONS

    targets = {t: name for name in _FUNCTIONAL_LAYERS for t in FUNCTIONS.get(name).targets}
    found = []
    for region in regions:
        for node in region.graph_module.graph.nodes:
            if node.op != "call_function" or node.target not in targets or node in claimed:
                continue
            name = targets[node.target]
            caller = str(node.meta.get("caller_path", "")) or "<root>"
            found.append(
                {
                    "name": f"{caller}:{node.name}",
                    "type": name,
                    "reason": f"a functional {name} call that no graph rule converts, so it stays in full precision "
                    f"(a graph rule `pattern: [{name}]`, `replace: functional_layer` turns calls on parameters "
                    f"into layers)",
                }
            )
    return found


def _child_of(owner: str, caller: str) -> str | None:
    """The direct child of ``owner`` on the way to ``caller`` (``None`` when ``caller`` is ``owner`` itself)."""
    rest = caller[len(owner) + 1 :] if owner else caller
    return rest.split(".")[0] if rest and caller != owner else None


def _build(match: Match, rules: Any, outcome: GraphOutcome) -> nn.Module | None:
    rule = rules[match.rule_index]
    try:
        return GRAPH_FACTORIES.get(rule.replace).build(match, **dict(rule.args))
    except UnsupportedLayerError as exc:
        outcome.skipped.append(
            {"name": _label(match), "type": _types(match), "reason": f"{rule.describe(match.rule_index)}: {exc}"}
        )
        return None


def _record(
    outcome: GraphOutcome,
    rules: Any,
    match: Match,
    new: nn.Module,
    name: str | None = None,
    specialised_on: list[str] | None = None,
) -> None:
    rule = rules[match.rule_index]
    entry = {
        "name": _label(match) if name is None else name,
        "rule": rule.describe(match.rule_index),
        "pattern": " -> ".join(step.describe() for step in rule.pattern),
        "nodes": [n.name for n in match.nodes],
        "old_types": _types(match),
        "new_type": type(new).__name__,
        "function_preserving": GRAPH_FACTORIES.get(rule.replace).function_preserving,
    }
    if specialised_on:
        entry["specialised_on"] = list(specialised_on)
    outcome.replaced.append(entry)


def _swap(root: nn.Module, path: str, new: nn.Module) -> nn.Module:
    if path == "":
        return new
    set_submodule(root, path, new)
    return root


def _label(match: Match) -> str:
    paths, nodes = match.paths[match.context :], match.replaced
    return next((p for p, n in zip(paths, nodes) if n.op == "call_module"), paths[0])


def _types(match: Match) -> str:
    return " -> ".join(
        type(m).__name__ if m is not None else str(getattr(n.target, "__name__", n.target))
        for m, n in zip(match.modules, match.nodes)
    )


def _join(owner: str, path: str) -> str:
    return f"{owner}.{path}" if owner else path


def _rewrite(graph_module: fx.GraphModule, match: Match, new: nn.Module) -> str:
    """Replace the matched chain in ``graph_module`` by one call of ``new`` on the chain's external inputs.

    The new module takes the path of the chain's first module call; a chain of function calls names it after the
    parameter it reads (``kernel`` -> ``kernel_layer``) or after its last node. Parameters that only the chain read
    are removed from the graph module (the new module holds them now). Returns the new module's path in
    ``graph_module``.
    """
    graph = graph_module.graph
    replaced = match.replaced
    module_nodes = [n for n in replaced if n.op == "call_module"]
    attrs = [a for n in replaced for a in n.all_input_nodes if a.op == "get_attr"]
    if module_nodes:
        target = str(module_nodes[0].target)
    else:
        base = re.sub(r"\W", "_", str(attrs[0].target) if attrs else replaced[-1].name) + "_layer"
        target, k = base, 0
        while hasattr(graph_module, target):
            k += 1
            target = f"{base}_{k}"
    graph_module.add_submodule(target, new)
    inputs = match.inputs()
    last = replaced[-1]
    with graph.inserting_after(last):
        call = graph.call_module(target, tuple(inputs))
    call.meta["module_path"] = _label(match)
    call.meta["caller_path"] = match.owner
    last.replace_all_uses_with(call)
    for node in reversed(replaced):
        graph.erase_node(node)
    for attr in dict.fromkeys(attrs):
        if attr.users:
            continue
        graph.erase_node(attr)
        if not any(n.op == "get_attr" and n.target == attr.target for n in graph.nodes):
            _delete_attribute(graph_module, str(attr.target))
    return target


def _delete_attribute(root: nn.Module, target: str) -> None:
    prefix, _, name = target.rpartition(".")
    owner = root.get_submodule(prefix) if prefix else root
    if hasattr(owner, name):
        delattr(owner, name)
