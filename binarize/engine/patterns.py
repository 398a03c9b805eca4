"""Graph patterns: short chains of calls with attribute constraints, matched on traced graphs.

A pattern is a list of *steps*. A step names a module class (``Conv2d``, ``PixelUnshuffle``; the exact class name,
or a dotted import path) or a function from :data:`FUNCTIONS` (``cat``, ``add``, ``F.conv2d``, ...), with
constraints on the module's attributes or the call's arguments. A chain matches when each step's node takes the
previous step's node as an input and every intermediate value has exactly one user (so replacing the chain changes
nothing else).

Constraint values are compared after normalisation: an integer constraint matches a tuple attribute whose elements
all equal it (``stride: 2`` matches ``stride=(2, 2)``), a list matches a tuple. A string is an arithmetic expression
over the module's attributes (``out_channels: "2 * in_channels"``), evaluated safely: numbers, attribute names,
``+ - * / // %`` and parentheses only, no calls; a tuple attribute whose elements are all equal counts as that
number. An expression may start with a comparison, ``< <= > >= !=`` (``in_channels: "> out_channels"``): the
value must then compare so with the expression instead of equal it.

Matching order (see :func:`find_matches`): longer patterns are tried first; among equal lengths, rules keep their
recipe order; a node belongs to at most one match, and matches are claimed in graph order.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from binarize._registry import Registry

__all__ = [
    "FUNCTIONS",
    "THROUGH",
    "ChannelwiseOps",
    "FunctionSpec",
    "Match",
    "PatternStep",
    "check_expression",
    "split_comparison",
    "evaluate_expression",
    "find_matches",
    "flat_nodes",
]


@dataclass(frozen=True)
class FunctionSpec:
    """A function a pattern step can name.

    Attributes:
        targets: the callables a ``call_function`` node may have as target.
        methods: tensor method names a ``call_method`` node may call (``x.add(y)``).
        params: the names of the positional parameters, in order (so constraints can name them).
        defaults: values of parameters that a call may omit.
    """

    targets: tuple[Callable[..., Any], ...]
    methods: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def bind(self, node: fx.Node) -> dict[str, Any]:
        """The call's arguments by parameter name (a method call's ``self`` is the first parameter)."""
        bound = dict(self.defaults)
        bound.update(zip(self.params, node.args))
        bound.update(node.kwargs)
        return bound


#: Function name used in patterns -> :class:`FunctionSpec`.
FUNCTIONS: Registry[FunctionSpec] = Registry("graph function")
FUNCTIONS.register(
    "cat",
    FunctionSpec((torch.cat, torch.concat, torch.concatenate), params=("tensors", "dim"), defaults={"dim": 0}),
)
FUNCTIONS.register(
    "add", FunctionSpec((operator.add, torch.add, operator.iadd), methods=("add", "add_"), params=("input", "other"))
)
FUNCTIONS.register(
    "mul", FunctionSpec((operator.mul, torch.mul, operator.imul), methods=("mul", "mul_"), params=("input", "other"))
)
_CONV_PARAMS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_DEFAULTS = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}
FUNCTIONS.register("F.conv1d", FunctionSpec((F.conv1d, torch.conv1d), params=_CONV_PARAMS, defaults=_CONV_DEFAULTS))
FUNCTIONS.register("F.conv2d", FunctionSpec((F.conv2d, torch.conv2d), params=_CONV_PARAMS, defaults=_CONV_DEFAULTS))
FUNCTIONS.register(
    "F.linear", FunctionSpec((F.linear,), params=("input", "weight", "bias"), defaults={"bias": None})
)
FUNCTIONS.register(
    "pixel_shuffle",
    FunctionSpec((F.pixel_shuffle, torch.pixel_shuffle), params=("input", "upscale_factor")),
)
FUNCTIONS.register(
    "pixel_unshuffle",
    FunctionSpec((F.pixel_unshuffle, torch.pixel_unshuffle), params=("input", "downscale_factor")),
)
FUNCTIONS.register(
    "interpolate",
    FunctionSpec(
        (F.interpolate,),
        params=("input", "size", "scale_factor", "mode"),
        defaults={"size": None, "scale_factor": None, "mode": "nearest"},
    ),
)


FUNCTIONS.register("avg_pool2d", FunctionSpec((F.avg_pool2d,), params=("input", "kernel_size", "stride")))


@dataclass(frozen=True)
class ChannelwiseOps:
    """Operations that keep the channel layout of their first input: output channel ``c`` is computed from input
    channel ``c`` (and its normalisation group), never from a moved channel.

    Attributes:
        modules: layer classes (exact classes; subclasses with their own ``forward`` are traced through).
        functions: ``call_function`` targets.
        methods: tensor method names.
    """

    modules: frozenset[type] = frozenset()
    functions: frozenset[Callable[..., Any]] = frozenset()
    methods: frozenset[str] = frozenset()
    elementwise: frozenset[Callable[..., Any]] = frozenset()

    def matches(self, node: fx.Node, modules: Mapping[str, nn.Module]) -> bool:
        """Whether ``node`` is one of these operations, applied to a tensor as its first argument.

        An ``elementwise`` binary operation (``x * sigmoid(x)``, ``x + 1``) counts when its other operand is a
        number or one of these operations applied to the same first argument.
        """
        if not node.args or not isinstance(node.args[0], fx.Node):
            return False
        if node.op == "call_module":
            return type(modules.get(str(node.target))) in self.modules
        if node.op == "call_function" and node.target in self.elementwise and len(node.args) == 2:
            first, other = node.args
            return not isinstance(other, fx.Node) or (
                other.args[:1] == (first,) and other.op != "call_module" and self.matches(other, modules)
            )
        if node.op == "call_function":
            return node.target in self.functions
        return node.op == "call_method" and node.target in self.methods


#: Name of a pattern step -> operations it passes over (zero or more of them), e.g. ``channelwise``.
THROUGH: Registry[ChannelwiseOps] = Registry("pass-through step")
THROUGH.register(
    "channelwise",
    ChannelwiseOps(
        modules=frozenset({
            nn.GroupNorm, nn.BatchNorm2d, nn.InstanceNorm2d, nn.SiLU, nn.ReLU, nn.ReLU6, nn.GELU, nn.LeakyReLU,
            nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.ELU, nn.Dropout, nn.Dropout2d, nn.Identity,
        }),
        functions=frozenset({
            F.group_norm, F.batch_norm, F.instance_norm, F.silu, F.relu, F.relu6, F.gelu, F.leaky_relu, F.mish,
            F.elu, F.hardswish, F.dropout, F.dropout2d, torch.sigmoid, torch.tanh, torch.relu,
        }),
        methods=frozenset({"float", "half", "bfloat16", "to", "type", "contiguous", "clone", "sigmoid", "relu"}),
        elementwise=frozenset({operator.mul, operator.add, operator.sub, operator.truediv, torch.mul, torch.add}),
    ),
)


# ----------------------------------------------------------------------------------------------------------------
# Safe arithmetic expressions over attributes
# ----------------------------------------------------------------------------------------------------------------
_BINARY_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}


#: Comparisons an expression may start with (longest first, so ``>=`` is not read as ``>``).
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}


def split_comparison(text: str) -> tuple[Callable[[Any, Any], bool], str]:
    """``("> out_channels")`` -> ``(operator.gt, "out_channels")``; equality when no comparison leads."""
    stripped = text.lstrip()
    for symbol, compare in _COMPARISONS.items():
        if stripped.startswith(symbol):
            return compare, stripped[len(symbol) :]
    return operator.eq, text


def check_expression(text: str) -> list[str]:
    """Validate an attribute expression (optionally led by a comparison); return the attribute names it uses.

    Raises:
        ValueError: for anything but numbers, names, ``+ - * / // %``, unary minus and parentheses.
    """
    text = split_comparison(text)[1]
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"{text!r} is not an arithmetic expression ({exc.msg})") from None
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.append(node.id)
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float)) or isinstance(node.value, bool):
                raise ValueError(f"{text!r}: only numbers are allowed as constants, got {node.value!r}")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY_OPS:
                raise ValueError(f"{text!r}: operator {type(node.op).__name__} is not allowed (use + - * / // %)")
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)):
                raise ValueError(f"{text!r}: only unary + and - are allowed")
        elif not isinstance(node, (ast.Expression, ast.Load, ast.operator, ast.unaryop)):
            raise ValueError(f"{text!r}: {type(node).__name__} is not allowed (numbers, names, + - * / // % only)")
    return names


def evaluate_expression(text: str, variables: Mapping[str, Any]) -> float | int | None:
    """Evaluate a checked expression (without a leading comparison); ``None`` when a name is missing or not a
    number."""
    check_expression(text)
    text = text.strip()

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            value = _as_number(variables.get(node.id))
            if value is None:
                raise LookupError(node.id)
            return value
        if isinstance(node, ast.UnaryOp):
            value = ev(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            return _BINARY_OPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(type(node).__name__)  # unreachable after check_expression

    try:
        return ev(ast.parse(text, mode="eval"))
    except (LookupError, ZeroDivisionError, TypeError):
        return None


def _as_number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, (tuple, list)) and value and all(v == value[0] for v in value):
        return _as_number(value[0])
    return None


def _satisfies(actual: Any, expected: Any, variables: Mapping[str, Any]) -> bool:
    if isinstance(expected, str) and not isinstance(actual, str):
        compare, expression = split_comparison(expected)
        value = evaluate_expression(expression, variables)
        number = _as_number(actual)
        return value is not None and number is not None and bool(compare(number, value))
    if isinstance(expected, list):
        expected = tuple(expected)
    if isinstance(actual, list):
        actual = tuple(actual)
    if isinstance(actual, tuple) and not isinstance(expected, tuple):
        return bool(actual) and all(a == expected for a in actual)
    return bool(actual == expected)


# ----------------------------------------------------------------------------------------------------------------
# Steps and matching
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatternStep:
    """One step of a pattern: a module class or a function, with constraints.

    Attributes:
        kind: ``"module"``, ``"function"`` or ``"through"`` (zero or more operations of a :data:`THROUGH` set,
            such as ``channelwise``; only in a rule's context).
        name: the class name (or dotted path) for modules, the :data:`FUNCTIONS` name for functions, the
            :data:`THROUGH` name for pass-through steps.
        constraints: attribute (modules) or argument (functions) name -> required value or expression.
    """

    kind: str
    name: str
    constraints: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """E.g. ``Conv2d(stride=2, out_channels="2 * in_channels")``."""
        inner = ", ".join(f"{k}={v!r}" for k, v in self.constraints.items())
        return f"{self.name}({inner})" if inner else self.name

    def matches(self, node: fx.Node, modules: Mapping[str, nn.Module]) -> bool:
        """Whether ``node`` is a call this step describes, with every constraint satisfied."""
        if self.kind == "through":
            return THROUGH.get(self.name).matches(node, modules)
        if self.kind == "module":
            if node.op != "call_module":
                return False
            module = modules.get(str(node.target))
            if module is None or not _class_matches(type(module), self.name):
                return False
            variables = {k: v for k, v in vars(module).items() if not k.startswith("_")}
            return all(
                hasattr(module, k) and _satisfies(getattr(module, k), v, variables)
                for k, v in self.constraints.items()
            )
        spec = FUNCTIONS.get(self.name)
        if node.op == "call_function" and node.target in spec.targets:
            pass
        elif node.op == "call_method" and node.target in spec.methods:
            pass
        else:
            return False
        bound = spec.bind(node)
        return all(k in bound and _satisfies(bound[k], v, bound) for k, v in self.constraints.items())


def _class_matches(cls: type, name: str) -> bool:
    """``Conv2d`` matches by class name; ``torch.nn.Conv2d`` or ``package.module.Class`` by import path."""
    if "." not in name:
        return cls.__name__ == name
    if f"{cls.__module__}.{cls.__qualname__}" == name:
        return True
    head, _, tail = name.rpartition(".")
    return head in ("torch.nn", "nn") and getattr(nn, tail, None) is cls


@dataclass
class Match:
    """One occurrence of a pattern in a graph.

    Attributes:
        rule_index: the index of the graph rule in the recipe.
        nodes: the matched nodes, one per step, in chain order.
        modules: per step, the called module (``None`` for function steps).
        paths: per step, the node's module path (the called module for module steps, the module whose forward
            made the call for function steps).
        graph_module: the traced module the match was found in (to read parameters that ``get_attr`` nodes
            name).
        context: how many leading nodes are *context*: they located the match and stay as they are; only the
            nodes after them are replaced.
    """

    rule_index: int
    nodes: list[fx.Node]
    modules: list[nn.Module | None]
    paths: list[str]
    graph_module: fx.GraphModule | None = None
    context: int = 0

    @property
    def replaced(self) -> list[fx.Node]:
        """The nodes the replacement takes the place of (the match without its context)."""
        return self.nodes[self.context :]

    @property
    def owner(self) -> str:
        """The path of the innermost module whose forward contains every replaced call of the match."""
        callers = [str(n.meta.get("caller_path", "")).split(".") for n in self.replaced]
        common: list[str] = []
        for parts in zip(*callers):
            if len(set(parts)) != 1:
                break
            common.append(parts[0])
        return ".".join(p for p in common if p)

    @property
    def is_single_call(self) -> bool:
        """One module call: it can be swapped on the module tree, with no change to any forward code."""
        return len(self.replaced) == 1 and self.replaced[0].op == "call_module"

    def inputs(self) -> list[fx.Node]:
        """Values the replaced chain consumes from outside it, in order of first use (parameters read by
        ``get_attr`` excluded)."""
        inside = set(self.replaced)
        seen: list[fx.Node] = []
        for node in self.replaced:
            for arg in flat_nodes((node.args, node.kwargs)):
                if arg not in inside and arg.op != "get_attr" and arg not in seen:
                    seen.append(arg)
        return seen


def flat_nodes(value: Any) -> list[fx.Node]:
    """The graph nodes inside a node argument (nested tuples, lists and dicts), in order."""
    out: list[fx.Node] = []
    fx.node.map_arg(value, lambda n: out.append(n) or n)
    return out


def find_matches(
    graph_module: fx.GraphModule,
    patterns: Sequence[tuple[int, Sequence[PatternStep]]],
    accept: Callable[[Match], bool] | None = None,
    contexts: Mapping[int, int] | None = None,
) -> list[Match]:
    """Non-overlapping matches of ``patterns`` (``(rule_index, steps)`` pairs) in ``graph_module``.

    Longer patterns are tried first (ties keep the given order), and patterns with a context (``contexts``: rule
    index -> number of leading context steps) after all others; within one pattern, nodes are visited in graph
    order and a node already claimed by an earlier match is never reused. Context nodes are not claimed (several
    matches may share them), but must not be claimed by another match either. ``accept`` can veto a match (e.g. a
    path filter), and the search then goes on.
    """
    contexts = contexts or {}
    modules = dict(graph_module.named_modules())
    ordered = sorted(
        enumerate(patterns), key=lambda item: (contexts.get(item[1][0], 0) > 0, -len(item[1][1]), item[0])
    )
    claimed: set[fx.Node] = set()
    found: list[Match] = []
    for _, (rule_index, steps) in ordered:
        context = contexts.get(rule_index, 0)
        for start in graph_module.graph.nodes:
            replaced = _chain_from(start, steps[context:], modules, claimed)
            if replaced is None:
                continue
            for before in _context_before(replaced[0], steps[:context], modules, claimed) if context else [[]]:
                chain = [*before, *replaced]
                match = Match(
                    rule_index,
                    chain,
                    [modules.get(str(n.target)) if n.op == "call_module" else None for n in chain],
                    [str(n.meta.get("module_path", "")) for n in chain],
                    graph_module,
                    len(before),
                )
                if accept is not None and not accept(match):
                    continue
                claimed.update(replaced)
                found.append(match)
                break
    position = {n: i for i, n in enumerate(graph_module.graph.nodes)}
    found.sort(key=lambda m: position[m.replaced[0]])
    return found


def _context_before(
    node: fx.Node, steps: Sequence[PatternStep], modules: Mapping[str, nn.Module], claimed: set[fx.Node]
) -> list[list[fx.Node]]:
    """Every way ``steps`` match the chain of first inputs that leads to ``node``, nearest candidates first.

    Walking back from ``node`` through its first tensor argument, each step must match the node there (a
    pass-through step matches zero or more), and no node may be claimed.
    """
    if not steps:
        return [[]]
    source = _first_input(node)
    if source is None or source in claimed:
        return []
    *rest, step = steps
    ways: list[list[fx.Node]] = []
    if step.kind == "through":
        if step.matches(source, modules):  # one more pass-through operation, then the same step again
            ways.extend([*way, source] for way in _context_before(source, steps, modules, claimed))
        ways.extend(_context_before(node, rest, modules, claimed))  # or none more
        return ways
    if step.matches(source, modules):
        ways.extend([*way, source] for way in _context_before(source, rest, modules, claimed))
    return ways


def _first_input(node: fx.Node) -> fx.Node | None:
    """The tensor a call transforms: its first argument, when that is a node."""
    first = node.args[0] if node.args else None
    return first if isinstance(first, fx.Node) else None


def _chain_from(
    start: fx.Node, steps: Sequence[PatternStep], modules: Mapping[str, nn.Module], claimed: set[fx.Node]
) -> list[fx.Node] | None:
    if start in claimed or not steps[0].matches(start, modules):
        return None
    chain = [start]
    for step in steps[1:]:
        current = chain[-1]
        if len(current.users) != 1:
            return None
        (user,) = current.users
        if user in claimed or not step.matches(user, modules):
            return None
        chain.append(user)
    return chain
