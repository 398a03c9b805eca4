"""Replacement factories of graph rules, registered by name.

A factory receives the :class:`~binarize.engine.patterns.Match` (the matched nodes and modules, so weights can be
transferred) and the rule's ``args``, and returns the module that replaces the matched chain. The new module is
called with the chain's external inputs (:meth:`Match.inputs`), in order. Factories build plain torch layers, so
that the layer rules binarize them afterwards like any other layer; in ``structure_only`` mode they stay in full
precision.

Each factory states whether the replacement is *function-preserving* (same outputs as the matched chain, before
any binarization); reports and ``verify=`` say so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import fx, nn

from binarize._registry import Registry
from binarize.engine.patterns import Match
from binarize.errors import UnsupportedLayerError

__all__ = ["GRAPH_FACTORIES", "GraphFactory", "register_graph_factory"]


@dataclass(frozen=True)
class GraphFactory:
    """A named replacement builder.

    Attributes:
        name: the name recipes use in ``replace:``.
        build: ``build(match, **args) -> nn.Module``; raises :class:`UnsupportedLayerError` for a match it cannot
            replace (the occurrence is then reported as skipped, with the message).
        function_preserving: whether the replacement computes exactly what the matched chain computed.
        description: one line for reports and docs.
    """

    name: str
    build: Callable[..., nn.Module]
    function_preserving: bool
    description: str


#: Factory name -> :class:`GraphFactory`.
GRAPH_FACTORIES: Registry[GraphFactory] = Registry("graph-rule factory")


def register_graph_factory(
    name: str, *, function_preserving: bool, description: str
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering ``build(match, **args)`` as the factory ``name``."""

    def add(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        GRAPH_FACTORIES.register(name, GraphFactory(name, build, function_preserving, description), replace=True)
        return build

    return add


def single_module(match: Match, cls: type[nn.Module], factory: str) -> nn.Module:
    """The one module of a one-step match, checked to be a ``cls``."""
    if len(match.nodes) != 1 or not isinstance(match.modules[0], cls):
        found = " -> ".join(type(m).__name__ if m is not None else str(n.target) for m, n in
                            zip(match.modules, match.nodes))
        raise UnsupportedLayerError(f"{factory} replaces one {cls.__name__} call, but the pattern matched {found}")
    return match.modules[0]


@register_graph_factory(
    "consistent_downsample",
    function_preserving=False,
    description="strided Conv2d (C -> kC) => AvgPool2d(2) feeding k stride-1 C -> C convolutions, concatenated",
)
def consistent_downsample(match: Match, **args: Mapping[str, Any]) -> nn.Module:
    """ReActNet's reduction block for a stride-2 ``Conv2d`` (see :class:`binarize.nn.ConsistentDownsample`)."""
    from binarize.nn.downsample import ConsistentDownsample

    if args:
        raise UnsupportedLayerError(f"consistent_downsample takes no args, got {sorted(args)}")
    return ConsistentDownsample.from_conv(single_module(match, nn.Conv2d, "consistent_downsample"))


@register_graph_factory(
    "functional_layer",
    function_preserving=True,
    description="F.conv1d / F.conv2d / F.linear on a parameter => the Conv1d / Conv2d / Linear module holding it",
)
def functional_layer(match: Match, **args: Mapping[str, Any]) -> nn.Module:
    """Turn a functional convolution or linear call on parameters into the equivalent module.

    ``F.conv2d(x, self.kernel, self.bias, stride, padding, dilation, groups)`` becomes an ``nn.Conv2d`` whose
    ``weight`` (and ``bias``) *are* those parameters (the same objects), with the call's constant arguments, so the
    layer rules can then binarize it like any module. Refused, with the reason, when the weight or bias is computed
    in the forward pass rather than read from a parameter, or when an argument is not a constant.
    """
    from binarize.engine.patterns import FUNCTIONS

    if args:
        raise UnsupportedLayerError(f"functional_layer takes no args, got {sorted(args)}")
    if len(match.nodes) != 1 or match.nodes[0].op not in ("call_function", "call_method"):
        raise UnsupportedLayerError("functional_layer replaces one F.conv1d / F.conv2d / F.linear call")
    node = match.nodes[0]
    name = next((n for n in ("F.conv1d", "F.conv2d", "F.linear") if node.target in FUNCTIONS.get(n).targets), None)
    if name is None:
        raise UnsupportedLayerError(f"functional_layer does not handle {node.target}")
    bound = FUNCTIONS.get(name).bind(node)
    weight = _parameter(match, bound.get("weight"), "weight")
    bias = None if bound.get("bias") is None else _parameter(match, bound["bias"], "bias")
    if name == "F.linear":
        layer: nn.Module = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    else:
        constants = {k: bound[k] for k in ("stride", "padding", "dilation", "groups")}
        if any(isinstance(v, fx.Node) for v in constants.values()):
            raise UnsupportedLayerError(f"{name} arguments computed in the forward pass: {constants}")
        cls = nn.Conv1d if name == "F.conv1d" else nn.Conv2d
        groups = int(constants["groups"])
        layer = cls(
            weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]), stride=constants["stride"],
            padding=constants["padding"], dilation=constants["dilation"], groups=groups, bias=bias is not None,
            device="meta",
        )
    layer.weight = weight
    if bias is not None:
        layer.bias = bias
    return layer


def _parameter(match: Match, value: Any, role: str) -> nn.Parameter:
    if not isinstance(value, fx.Node) or value.op != "get_attr" or match.graph_module is None:
        raise UnsupportedLayerError(
            f"the {role} is computed in the forward pass, not read from a parameter; only calls on parameters "
            f"become layers"
        )
    found = match.graph_module.get_parameter(str(value.target)) if _is_parameter(match, value) else None
    if found is None:
        raise UnsupportedLayerError(f"the {role} {value.target!r} is a buffer or constant, not a parameter")
    return found


def _is_parameter(match: Match, node: fx.Node) -> bool:
    assert match.graph_module is not None
    try:
        match.graph_module.get_parameter(str(node.target))
    except AttributeError:
        return False
    return True


@register_graph_factory(
    "leave",
    function_preserving=True,
    description="nothing: the match stays as it is, and the report lists it as skipped with the rule's `reason`",
)
def leave(match: Match, reason: str = "", **args: Any) -> nn.Module:
    """Refuse every match, so that a recipe can name structures it deliberately leaves alone.

    The report lists each occurrence as skipped with ``reason`` (e.g. why average-pool downsampling has no exact
    rewrite), instead of the structure passing unmentioned.

    Raises:
        UnsupportedLayerError: always, with ``reason``.
    """
    if args:
        raise UnsupportedLayerError(f"leave takes only `reason`, got {sorted(args)}")
    raise UnsupportedLayerError(reason or "left as it is by the recipe")
