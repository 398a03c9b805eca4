"""Graph rules in recipes: a pattern of calls, replaced by a module built by a registered factory.

.. code-block:: yaml

    graph_rules:
      - pattern:                                   # a chain of calls, each feeding the next
          - Conv2d: {stride: 2, out_channels: "2 * in_channels"}
        replace: consistent_downsample             # a factory in binarize.engine.GRAPH_FACTORIES
        args: {}                                   # keyword arguments for the factory (optional)
        within: "layer*"                           # only where the first call's module path matches (optional)
        optional: true                             # matching nothing is fine (default: an error)

      - pattern: [{cat: {dim: 1}}, channelwise, Conv2d]
        context: 2                                 # the first two steps locate the match and stay as they are
        replace: cs_fusion

A step is a module class name (``Conv2d``; a dotted import path such as ``mypackage.blocks.Mixer`` for other
classes), or a function name from :data:`binarize.engine.patterns.FUNCTIONS` (``cat``, ``add``, ``F.conv2d``...),
either bare or as a one-key mapping to constraints on the module's attributes or the call's arguments. Matching and
its order are described in :mod:`binarize.engine.patterns`. ``context: N`` makes the first ``N`` steps a context: they
must be there (walking back from the replaced calls through each call's first input), but they are not replaced,
and several matches may share them; a context may hold pass-through steps such as ``channelwise`` (zero or more
operations that keep the channel layout: normalisations, activations, dropout, dtype casts). Graph rules run before
the layer rules, so the modules
a replacement creates (plain torch layers) are then binarized by the layer rules like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from binarize.recipe.source import Source, describe_value, did_you_mean
from binarize.recipe.yaml_lines import line_of

__all__ = ["GRAPH_RULE_KEYS", "GraphRule", "parse_graph_rule", "parse_graph_rules", "step_from_data"]

GRAPH_RULE_KEYS = ("pattern", "replace", "args", "within", "optional", "context")


def _engine() -> Any:
    from binarize.engine import graph_factories, patterns

    return patterns, graph_factories


def step_from_data(data: Any, src: Source, container: Any, key: Any) -> Any:
    """Validate one pattern step (``"Conv2d"`` or ``{Conv2d: {stride: 2}}``) into a ``PatternStep``."""
    patterns, _ = _engine()
    if isinstance(data, str):
        name, constraints, holder, where = data, {}, container, key
    elif isinstance(data, Mapping) and len(data) == 1:
        ((name, constraints),) = data.items()
        holder, where = data, name
        if constraints is None:
            constraints = {}
        if not isinstance(constraints, Mapping):
            raise src.error(
                f"the constraints of pattern step {name!r} must be a mapping (e.g. `{{stride: 2}}`), got "
                f"{describe_value(constraints)}",
                data,
                name,
            )
    else:
        raise src.error(
            "a pattern step is a class or function name, or a one-key mapping from it to constraints "
            f"(e.g. `Conv2d: {{stride: 2}}` or `cat: {{dim: 1}}`), got {describe_value(data)}",
            container,
            key,
        )
    if not isinstance(name, str) or not name:
        raise src.error(f"a pattern step name must be a string, got {describe_value(name)}", holder, where)
    functions = patterns.FUNCTIONS.names()
    if name in patterns.THROUGH.names():
        if constraints:
            raise src.error(f"the pass-through step {name!r} takes no constraints", holder, where)
        return patterns.PatternStep("through", name, {})
    if name in functions:
        kind = "function"
        params = patterns.FUNCTIONS.get(name).params
        for arg in constraints:
            if arg not in params:
                raise src.error(
                    f"{name!r} has no argument {arg!r}.{did_you_mean(arg, params)} Its arguments: {', '.join(params)}",
                    constraints,
                    arg,
                )
    elif "." in name or isinstance(getattr(nn, name, None), type):
        kind = "module"
    else:
        known = [n for n in dir(nn) if isinstance(getattr(nn, n), type)] + functions
        raise src.error(
            f"unknown pattern step {name!r}.{did_you_mean(name, known)} A step is a torch.nn class name "
            f"(Conv2d, PixelUnshuffle, ...), a function ({', '.join(functions)}), a pass-through step "
            f"({', '.join(patterns.THROUGH.names())}) or the dotted import path of another module class (e.g. "
            f"mypackage.blocks.Mixer)",
            holder,
            where,
        )
    checked: dict[str, Any] = {}
    for attr, value in constraints.items():
        if not isinstance(attr, str):
            raise src.error(f"constraint names must be strings, got {describe_value(attr)}", constraints, attr)
        if isinstance(value, str) and kind == "module":
            try:
                patterns.check_expression(value)
            except ValueError as exc:
                raise src.error(f"constraint {attr!r} of {name!r}: {exc}", constraints, attr) from None
        elif not isinstance(value, (int, float, bool, str, list)) and value is not None:
            raise src.error(
                f"constraint {attr!r} of {name!r} must be a number, a boolean, a string expression or a list, got "
                f"{describe_value(value)}",
                constraints,
                attr,
            )
        checked[attr] = value
    return patterns.PatternStep(kind, name, checked)


@dataclass(frozen=True)
class GraphRule:
    """A graph rule: replace every occurrence of ``pattern`` by the module a factory builds.

    Attributes:
        pattern: the steps (``PatternStep``), in chain order.
        replace: the factory's name in :data:`binarize.engine.GRAPH_FACTORIES`.
        args: keyword arguments for the factory.
        within: a glob (or ``re:`` regex) that the first call's module path must match, if given.
        optional: matching nothing is fine (otherwise :func:`binarize.binarize` raises).
        context: the number of leading steps that locate a match without being replaced.
        file: the recipe file the rule was read from (not part of equality).
        line: its line in that file (not part of equality).
    """

    pattern: tuple[Any, ...]
    replace: str
    args: Mapping[str, Any] = field(default_factory=dict)
    within: str | None = None
    optional: bool = False
    context: int = 0
    file: str | None = field(default=None, compare=False)
    line: int | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as written in a recipe."""
        steps = [s.name if not s.constraints else {s.name: dict(s.constraints)} for s in self.pattern]
        out: dict[str, Any] = {"pattern": steps, "replace": self.replace}
        if self.args:
            out["args"] = dict(self.args)
        if self.within is not None:
            out["within"] = self.within
        if self.optional:
            out["optional"] = True
        if self.context:
            out["context"] = self.context
        return out

    def describe(self, index: int | None = None) -> str:
        """E.g. ``graph_rules[0] Conv2d(stride=2) -> consistent_downsample (reactnet-ds.yaml:14)``."""
        from pathlib import PurePath

        head = "graph rule" if index is None else f"graph_rules[{index}]"
        text = f"{head} {' -> '.join(s.describe() for s in self.pattern)} => {self.replace}"
        if self.file is not None:
            text += f" ({PurePath(self.file).name}:{self.line})" if self.line is not None else ""
        return text

    def __hash__(self) -> int:
        import json

        return hash(json.dumps(self.to_dict(), sort_keys=True))


def parse_graph_rule(data: Any, src: Source, container: Any, key: Any) -> GraphRule:
    """Validate one graph rule mapping (``container[key]``)."""
    _, graph_factories = _engine()
    where = f"graph_rules[{key}]" if isinstance(key, int) else "a graph rule"
    if not isinstance(data, Mapping):
        raise src.error(
            f"{where} must be a mapping with 'pattern' and 'replace', got {describe_value(data)}", container, key
        )
    for name in data:
        if name not in GRAPH_RULE_KEYS:
            raise src.error(
                f"unknown key {name!r} in {where}.{did_you_mean(name, GRAPH_RULE_KEYS)} "
                f"Allowed keys: {', '.join(GRAPH_RULE_KEYS)}",
                data,
                name,
            )
    for required in ("pattern", "replace"):
        if required not in data:
            raise src.error(f"{where} needs {required!r}", data)
    pattern = data["pattern"]
    if not isinstance(pattern, list) or not pattern:
        raise src.error(
            f"'pattern' must be a non-empty list of steps, got {describe_value(pattern)}", data, "pattern"
        )
    steps = tuple(step_from_data(step, src, pattern, i) for i, step in enumerate(pattern))
    replace = data["replace"]
    factories = graph_factories.GRAPH_FACTORIES.names()
    if not isinstance(replace, str) or replace not in factories:
        raise src.error(
            f"unknown graph-rule factory {replace!r}.{did_you_mean(replace, factories)} "
            f"Known factories: {', '.join(factories)}",
            data,
            "replace",
        )
    args = data.get("args") or {}
    if not isinstance(args, Mapping):
        raise src.error(f"'args' must be a mapping, got {describe_value(args)}", data, "args")
    within = data.get("within")
    if within is not None and (not isinstance(within, str) or not within):
        raise src.error(f"'within' must be a glob or 're:' pattern string, got {describe_value(within)}", data, "within")
    optional = data.get("optional", False)
    if not isinstance(optional, bool):
        raise src.error(f"'optional' must be true or false, got {describe_value(optional)}", data, "optional")
    context = data.get("context", 0)
    if isinstance(context, bool) or not isinstance(context, int) or not 0 <= context < len(steps):
        raise src.error(
            f"'context' is the number of leading pattern steps that are not replaced, from 0 to {len(steps) - 1} "
            f"for this pattern, got {describe_value(context)}",
            data,
            "context",
        )
    for i, step in enumerate(steps[context:], start=context):
        if step.kind == "through":
            raise src.error(
                f"the pass-through step {step.name!r} can only be part of the context (step {i + 1} is replaced); "
                f"set `context:` to cover it",
                pattern,
                i,
            )
    line = line_of(container, key) if container is not None else line_of(data)
    return GraphRule(steps, replace, dict(args), within, optional, context, file=src.file, line=line)


def parse_graph_rules(value: Any, src: Source, data: Any) -> list[GraphRule]:
    """Validate the ``graph_rules`` list of a recipe."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise src.error(
            f"'graph_rules' must be a list of graph rules (each `- pattern: [...]` plus `replace:`), got "
            f"{describe_value(value)}",
            data,
            "graph_rules",
        )
    return [parse_graph_rule(item, src, value, i) for i, item in enumerate(value)]

