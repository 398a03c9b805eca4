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

from torch import nn

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
