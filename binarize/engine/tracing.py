"""Partial tracing with torch.fx: trace what can be traced, make the rest leaves, and say why.

Graph rules need a graph of the calls a model makes. :func:`torch.fx.symbolic_trace` fails on a large share of real
models (data-dependent control flow, unsupported Python), and one failing block would make the whole model
untraceable. :func:`trace_partially` instead traces the model, and when tracing fails inside a submodule it makes
that submodule (and every other module of the same class, whose forward is the same code) a *leaf*, a single
opaque call, and traces again. When the model's own forward cannot be traced, its children are traced one by one.
The result lists every traced *region* (a module and its graph) and every untraced module with the reason.

Each graph node carries ``node.meta["module_path"]``: the path of the module whose forward created the node (for a
``call_module`` node, the path of the called module), so name selectors work on graph nodes as on modules; and
``node.meta["caller_path"]``: the path of the module whose forward made the call (for every kind of node).

Leaves: the modules torch.fx treats as leaves (those defined in ``torch.nn``), binary layers, and every class in
:data:`LEAF_MODULES` (plugins register their modules there).
"""

from __future__ import annotations

import dis
import math
import threading
import types
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch.fx.proxy
from torch import fx, nn

from binarize._registry import Registry
from binarize.nn.timestep import group_index

if TYPE_CHECKING:
    from binarize.engine.shape_tracing import ModuleInputs

__all__ = ["LEAF_MODULES", "TraceResult", "TracedRegion", "graph_module_of", "register_leaf", "trace_partially"]

#: Classes traced as one opaque call (never traced through). Keyed by ``module.QualifiedName``.
LEAF_MODULES: Registry[type[nn.Module]] = Registry("leaf module")


def register_leaf(cls: type[nn.Module]) -> type[nn.Module]:
    """Register ``cls`` as a leaf module (usable as a class decorator)."""
    LEAF_MODULES.register(f"{cls.__module__}.{cls.__qualname__}", cls, replace=True)
    return cls


def _register_binary_layers() -> None:
    from binarize.nn import LAYERS

    for name in LAYERS.names():
        register_leaf(LAYERS.get(name))


_register_binary_layers()


_DISASSEMBLY_LOCK = threading.Lock()
_disassembly_depth = 0


@contextmanager
def _memoized_disassembly() -> Iterator[None]:
    """Within the block, torch.fx disassembles each code object once.

    A proxy that is unpacked (``B, N, C = x.shape``) looks at the caller's bytecode to count the targets, and
    torch.fx disassembles the caller's whole function for that on every unpacking: about a quarter of tracing a
    vision transformer. Code objects are immutable, so their instructions can be kept for the trace; torch.fx's
    module sees a stand-in for :mod:`dis` with a memoized ``get_instructions`` (everything else is :mod:`dis`'s).
    """
    global _disassembly_depth
    with _DISASSEMBLY_LOCK:
        _disassembly_depth += 1
        if _disassembly_depth == 1:
            cache: dict[types.CodeType, tuple[dis.Instruction, ...]] = {}

            def get_instructions(code: Any, **kwargs: Any) -> tuple[dis.Instruction, ...]:
                if kwargs or not isinstance(code, types.CodeType):
                    return tuple(dis.get_instructions(code, **kwargs))
                found = cache.get(code)
                if found is None:
                    found = cache[code] = tuple(dis.get_instructions(code))
                return found

            stand_in = types.ModuleType("dis")
            stand_in.__dict__.update(vars(dis))
            stand_in.get_instructions = get_instructions  # type: ignore[attr-defined]
            torch.fx.proxy.dis = stand_in  # type: ignore[attr-defined]
    try:
        yield
    finally:
        with _DISASSEMBLY_LOCK:
            _disassembly_depth -= 1
            if _disassembly_depth == 0:
                torch.fx.proxy.dis = dis  # type: ignore[attr-defined]


class PathTracer(fx.Tracer):
    """A tracer that records the module path behind every node and the innermost module where tracing failed.

    Args:
        leaves: ids of extra modules to keep as leaves (modules that failed to trace before).
    """

    def __init__(self, leaves: frozenset[int] = frozenset()) -> None:
        # group_index is fx.wrap'ed where it is defined; naming it here also keeps it a leaf call when an already
        # routed GraphModule (whose code holds it under another global name) is traced again.
        super().__init__(autowrap_modules=(math,), autowrap_functions=(group_index,))
        self.extra_leaves = leaves
        self._path_stack: list[str] = [""]
        self.failed_in: str | None = None

    def trace(self, root: Any, concrete_args: dict[str, Any] | None = None) -> fx.Graph:
        """As :meth:`torch.fx.Tracer.trace`, with each function's bytecode disassembled once."""
        with _memoized_disassembly():
            return super().trace(root, concrete_args)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if id(m) in self.extra_leaves:
            return True
        if any(isinstance(m, cls) for _, cls in LEAF_MODULES.items()):
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def path_of_module(self, mod: nn.Module) -> str:
        """As torch.fx's, and for a container made while the forward runs (``self.layers[1:]``, a slice of an
        ``nn.Sequential``), the path of the installed module that holds all its children."""
        try:
            return super().path_of_module(mod)
        except NameError:
            paths = [self.submodule_paths.get(child) if self.submodule_paths else None for child in mod.children()]
            if not paths or None in paths:
                raise
            parents = {str(p).rpartition(".")[0] for p in paths}
            if len(parents) != 1:
                raise
            return parents.pop()

    def call_module(
        self, m: nn.Module, forward: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        path = self.path_of_module(m)
        self._path_stack.append(path)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:  # the innermost module sees the exception first
                self.failed_in = path
            raise
        finally:
            self._path_stack.pop()

    def create_node(self, kind: str, target: Any, args: Any, kwargs: Any, name: str | None = None,
                    type_expr: Any | None = None) -> fx.Node:
        node = super().create_node(kind, target, args, kwargs, name, type_expr)
        caller = _join(self._root_path, self._path_stack[-1])
        node.meta["caller_path"] = caller
        node.meta["module_path"] = _join(self._root_path, target) if kind == "call_module" else caller
        return node

    _root_path: str = ""


def graph_module_of(root: nn.Module, graph: fx.Graph, class_name: str) -> fx.GraphModule:
    """A GraphModule whose traced tensor constants (``_tensor_constant*``) stay out of its ``state_dict``.

    torch.fx stores tensors created while tracing as buffers; they are recomputed from the code, not state, so
    they would only pollute checkpoints (and differ between a traced model and its untraced twin).
    """
    graph_module = fx.GraphModule(root, graph, class_name=class_name)
    for name, _ in list(graph_module.named_buffers()):
        prefix, _, leaf = name.rpartition(".")
        if leaf.startswith("_tensor_constant"):
            owner = graph_module.get_submodule(prefix) if prefix else graph_module
            owner._non_persistent_buffers_set.add(leaf)
    return graph_module


def _join(prefix: str, path: str) -> str:
    return f"{prefix}.{path}" if prefix and path else (prefix or path)


@dataclass
class TracedRegion:
    """A module whose forward was traced.

    Attributes:
        path: the module's path in the model (``""`` for the model itself).
        module: the module.
        graph_module: its traced graph (submodules are shared with the model, not copied). Node metadata
            ``module_path`` is relative to the model, not to the region.
        decisions: what Python decided on traced values while tracing with example inputs (the graph is
            specialised to them there; see :mod:`binarize.engine.shape_tracing`), e.g. ``"x.shape[0] >= 64 -> False"``.
    """

    path: str
    module: nn.Module
    graph_module: fx.GraphModule
    decisions: list[str] = field(default_factory=list)


@dataclass
class TraceResult:
    """The outcome of :func:`trace_partially`.

    Attributes:
        regions: traced regions, outermost first.
        untraced: ``{"name", "type", "reason"}`` for every module that could not be traced through (a leaf in
            its region's graph, or a module none of whose forward could be traced).
    """

    regions: list[TracedRegion] = field(default_factory=list)
    untraced: list[dict[str, str]] = field(default_factory=list)

    def nodes(self) -> Iterator[tuple[TracedRegion, fx.Node]]:
        """Every node of every region, in graph order."""
        for region in self.regions:
            for node in region.graph_module.graph.nodes:
                yield region, node


def _reason(exc: BaseException, inputs: ModuleInputs | None) -> str:
    message = " ".join(str(exc).split())
    reason = f"{type(exc).__name__}: {message[:300]}"
    if inputs is None and any(text in message for text in _SHAPE_QUESTIONS):
        reason += " (traced without example inputs: pass example_inputs so that code reading shapes can be traced)"
    return reason


#: What torch.fx says when Python asks a proxy for a value, which example inputs let the tracer answer.
_SHAPE_QUESTIONS = ("cannot be used as inputs to control flow", "'len' is not supported", "cannot be iterated")


def trace_partially(
    model: nn.Module, path: str = "", *, opaque: Iterable[nn.Module] = (), inputs: ModuleInputs | None = None
) -> TraceResult:
    """Trace ``model`` with torch.fx as far as possible (see the module docstring).

    Never raises for an untraceable model: what cannot be traced is listed in ``untraced``.

    Args:
        model: the module to trace.
        path: its path inside a larger model (used in node metadata and reports).
        opaque: submodules to keep as leaves from the start (not traced through, not reported as untraced).
        inputs: each module's call arguments on example inputs
            (:func:`~binarize.engine.shape_tracing.record_module_inputs`). With them a module is traced as it was
            called, carrying shapes (:class:`~binarize.engine.shape_tracing.ShapeTracer`), so code that reads
            shapes traces; without them, plain symbolic tracing.

    Examples:
        >>> class Gate(nn.Module):
        ...     def forward(self, x):
        ...         return x if x.sum() > 0 else -x      # data-dependent: fx cannot trace it
        >>> net = nn.Sequential(nn.Conv2d(3, 3, 1), Gate(), nn.Conv2d(3, 3, 1))
        >>> result = trace_partially(net)
        >>> nodes = result.regions[0].graph_module.graph.nodes
        >>> [n.target for n in nodes if n.op == "call_module"]
        ['0', '1', '2']
        >>> result.untraced[0]["name"], result.untraced[0]["reason"].split(":")[0]
        ('1', 'TraceError')
    """
    result = TraceResult()
    _trace_into(model, path, result, inputs, frozenset(id(m) for m in opaque))
    return result


def _trace_once(module: nn.Module, path: str, leaves: frozenset[int], inputs: ModuleInputs | None) -> PathTracer:
    """A tracer that traced ``module`` (its graph in ``tracer.graph``), or raised: with values where the module's
    call arguments are known, plain otherwise."""
    from binarize.engine.shape_tracing import ShapeTracer

    call = inputs.of(module) if inputs is not None else None
    tracer: PathTracer = ShapeTracer(inputs.mode, leaves) if call is not None else PathTracer(leaves)  # type: ignore[union-attr]
    tracer._root_path = path
    tracer.failed_in = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if call is not None:
                tracer.trace_call(module, *call)  # type: ignore[attr-defined]
            else:
                tracer.trace(module)
        except Exception as exc:
            exc.tracer = tracer  # type: ignore[attr-defined]
            raise
    return tracer


def _trace_into(
    module: nn.Module, path: str, result: TraceResult, inputs: ModuleInputs | None, opaque: frozenset[int] = frozenset()
) -> None:
    leaves: dict[int, str] = {}
    reasons: dict[str, str] = {}
    by_path = dict(module.named_modules())
    while True:
        try:
            tracer = _trace_once(module, path, frozenset(leaves) | opaque, inputs)
            graph = tracer.graph
        except Exception as exc:  # noqa: BLE001 - any tracing failure makes the failing module a leaf
            failed = exc.tracer.failed_in  # type: ignore[attr-defined]
            if failed is None or failed == "" or failed not in by_path or id(by_path[failed]) in leaves:
                _untraceable(module, path, _reason(exc, inputs), result, inputs)
                return
            reasons[failed] = _reason(exc, inputs)
            culprit_class = type(by_path[failed])
            for sub_path, sub in by_path.items():
                if type(sub) is culprit_class and id(sub) not in leaves and sub is not module:
                    leaves[id(sub)] = sub_path
            continue
        graph_module = graph_module_of(tracer.root, graph, type(module).__name__)
        result.regions.append(TracedRegion(path, module, graph_module, list(getattr(tracer, "decisions", []))))
        failed_by_class = {type(by_path[p]): p for p in reasons}
        for sub_path in sorted(set(leaves.values()), key=list(by_path).index):
            sub = by_path[sub_path]
            origin = failed_by_class[type(sub)]
            reason = reasons.get(sub_path) or f"{reasons[origin]} (same class as {_join(path, origin)})"
            result.untraced.append({"name": _join(path, sub_path), "type": type(sub).__name__, "reason": reason})
            _trace_children(sub, _join(path, sub_path), result, inputs)
        return


def _untraceable(module: nn.Module, path: str, reason: str, result: TraceResult, inputs: ModuleInputs | None) -> None:
    """``module``'s own forward cannot be traced: record it, then trace each child on its own."""
    result.untraced.append({"name": path, "type": type(module).__name__, "reason": reason})
    _trace_children(module, path, result, inputs)


def _trace_children(module: nn.Module, path: str, result: TraceResult, inputs: ModuleInputs | None) -> None:
    for name, child in module.named_children():
        child_path = _join(path, name)
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):  # containers without a forward of their own
            _trace_children(child, child_path, result, inputs)
        elif not _is_opaque(child):
            _trace_into(child, child_path, result, inputs)


def _is_opaque(module: nn.Module) -> bool:
    """Leaves with nothing to trace inside (torch.nn layers, binary layers, registered leaves)."""
    return PathTracer().is_leaf_module(module, "") or not any(True for _ in module.children())

