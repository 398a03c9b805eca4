"""Execution order of candidate layers, for the ``first`` / ``last`` selectors.

Registration order (the order of ``named_modules()``) often differs from the order in which layers run: a model may
create its head before its stem, or reuse a block. The order is taken from the first source that works:

================== ===========================================================================================
``order_source``   how
================== ===========================================================================================
``forward``        one forward pass on the given ``example_inputs``, with hooks recording each layer's calls
``timm_input_size`` the same, on a zero input of the size in the timm model's ``pretrained_cfg["input_size"]``
``fx``             the order of ``call_module`` nodes in a ``torch.fx.symbolic_trace`` of the model
``registration``   the order of ``named_modules()`` (last resort)
================== ===========================================================================================

Boundaries come from the autograd graph of the recorded pass, not from call order alone: every layer that reads the
model's input with no other candidate in between counts as first (a model can have parallel stems, or a stem of
parallel branches), and every layer whose output reaches the model's output with no other candidate in between,
and that feeds no other such layer, counts as last (a distillation head beside the classifier, several heads).
The fx order finds the same boundaries from the traced graph's data flow; registration order has no such ties.

The forward pass is not run when its outcome can be read off the model's torch.fx graph: for networks made of
common layers, :mod:`binarize.engine.graph_order` walks the graph with the inputs' shapes and finds what the pass
would record in a fraction of its time (inputs that the model may not accept are left to the pass, which reports
them). Otherwise it runs on fake
tensors (shapes only, no arithmetic) when the model allows it, else on real ones. It runs in eval mode with
gradients enabled (to link the layers; nothing is backpropagated) and every module's ``training`` flag is restored
afterwards, so the model is left as it was (BatchNorm running statistics are not updated in eval mode). A layer
that never runs has no position and is never ``first`` or ``last``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from binarize.engine.boundaries import Positions, positions_from_calls
from binarize.engine.graph_ops import leaves
from binarize.engine.graph_order import graph_positions
from binarize.engine.tracing import PathTracer
from binarize.errors import BinarizeError

__all__ = ["ORDER_SOURCES", "Positions", "execution_order", "timm_example_input"]

ORDER_SOURCES = ("forward", "timm_input_size", "fx", "registration")


def execution_order(
    model: nn.Module, modules: Sequence[nn.Module], example_inputs: Any = None
) -> tuple[Positions, str]:
    """Where each of ``modules`` runs in ``model``'s forward pass.

    Args:
        model: the model.
        modules: the modules to locate (candidate layers of ``model``).
        example_inputs: a tensor, a tuple / list of positional inputs, or a mapping of keyword inputs; ``None`` to
            infer the order without them.

    Returns:
        ``(positions, source)``: module index -> (first call, last call) for the modules that ran, and the
        source used (one of :data:`ORDER_SOURCES`).

    Raises:
        BinarizeError: when the forward pass on ``example_inputs`` fails.
    """
    if example_inputs is not None:
        try:
            return _shape_only_or_real_order(model, modules, example_inputs), "forward"
        except Exception as exc:
            raise BinarizeError(
                f"the forward pass on example_inputs failed ({type(exc).__name__}: {exc}); the execution order "
                f"of layers (needed by first/last selectors) could not be recorded. Pass inputs the model "
                f"accepts, or example_inputs=None to infer the order"
            ) from exc
    timm_input = timm_example_input(model)
    if timm_input is not None:
        try:
            return _shape_only_or_real_order(model, modules, timm_input), "timm_input_size"
        except Exception:  # noqa: BLE001 - any failure falls through to the next source
            pass
    fx_positions = _fx_order(model, modules)
    if fx_positions is not None:
        return fx_positions, "fx"
    return {i: (i, i) for i in range(len(modules))}, "registration"


def _shape_only_or_real_order(model: nn.Module, modules: Sequence[nn.Module], example_inputs: Any) -> Positions:
    """Read the order off the traced graph, or record it on a shape-only (fake tensor) forward pass, or on a real
    one when that fails.

    The graph walk (:func:`~binarize.engine.graph_order.graph_positions`) costs about as much as tracing the model;
    it answers only where it finds exactly what the pass would record. Under :class:`~torch._subclasses.fake_tensor.FakeTensorMode`
    every operation only propagates shapes, but each costs Python-level dispatch: about one real forward pass of a
    large model. Models whose control flow reads tensor values cannot run that way; they get a real forward pass.
    """
    positions = graph_positions(model, modules, example_inputs)
    if positions is not None:
        return positions
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            return _forward_order(model, modules, example_inputs)
    except Exception:  # noqa: BLE001 - value-dependent models need real tensors
        return _forward_order(model, modules, example_inputs)


def _reached(roots: Iterable[Any], marks: dict[Any, int]) -> set[int]:
    """Candidates whose output nodes are reached walking the autograd graph back from ``roots``, stopping at them."""
    found: set[int] = set()
    seen: set[Any] = set()
    stack = [r for r in roots if r is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node in marks:
            found.add(marks[node])
            continue
        stack.extend(n for n, _ in node.next_functions if n is not None)
    return found


def _tensors(value: Any) -> list[torch.Tensor]:
    return leaves(value, torch.Tensor)


def _tracked(value: Any) -> Any:
    """A floating-point input that records autograd history, so layers are linked even with frozen weights."""
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.detach().requires_grad_()
    return value


def _forward_order(model: nn.Module, modules: Sequence[nn.Module], example_inputs: Any) -> Positions:
    """Positions of the candidates; parallel boundary layers share a position.

    Every candidate that reads the model input without another candidate in between gets first position -1
    (several input stems / branches are all "first"), and every candidate whose output reaches the model output
    without another candidate in between, and that feeds no other such candidate, gets last position
    ``sys.maxsize`` (several heads are all "last"; see :func:`~binarize.engine.boundaries.positions_from_calls`).
    The boundaries come from the autograd graph of the pass.
    """
    index_of = {id(m): i for i, m in enumerate(modules)}
    calls: dict[int, list[int]] = {}
    counter = 0
    marks: dict[Any, int] = {}  # autograd node of a candidate's output -> candidate index
    sources: set[int] = set()
    feeds: dict[int, set[int]] = {}  # candidate -> the candidates whose outputs reach its input directly

    def record(module: nn.Module, args: Any) -> None:
        nonlocal counter
        index = index_of[id(module)]
        calls.setdefault(index, []).append(counter)
        counter += 1
        upstream = _reached((t.grad_fn for t in _tensors(args)), marks)
        feeds.setdefault(index, set()).update(upstream)
        if not upstream:
            sources.add(index)

    def mark(module: nn.Module, _args: Any, output: Any) -> None:
        for t in _tensors(output):
            if t.grad_fn is not None:
                marks[t.grad_fn] = index_of[id(module)]

    if isinstance(example_inputs, Mapping):
        args, kwargs = (), {k: _tracked(v) for k, v in example_inputs.items()}
    elif isinstance(example_inputs, (tuple, list)):
        args, kwargs = tuple(_tracked(v) for v in example_inputs), {}
    else:
        args, kwargs = (_tracked(example_inputs),), {}
    flags = [(m, m.training) for m in model.modules()]
    unique = {id(m): m for m in modules}.values()
    handles = [m.register_forward_pre_hook(record) for m in unique]
    handles += [m.register_forward_hook(mark) for m in unique]
    try:
        model.eval()
        with torch.enable_grad():  # the graph links layers; nothing is backpropagated
            output = model(*args, **kwargs)
        sinks = _reached((t.grad_fn for t in _tensors(output)), marks)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in flags:
            module.training = training
    return positions_from_calls(calls, sources, feeds, sinks)


def timm_example_input(model: nn.Module) -> torch.Tensor | None:
    """A zero input of the size in a timm model's ``pretrained_cfg["input_size"]``, or ``None``."""
    cfg = getattr(model, "pretrained_cfg", None)
    size = cfg.get("input_size") if isinstance(cfg, Mapping) else None
    if not (isinstance(size, (tuple, list)) and size and all(isinstance(s, int) and s > 0 for s in size)):
        return None
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    return torch.zeros(1, *size, device=device, dtype=dtype)


def _fx_order(model: nn.Module, modules: Sequence[nn.Module]) -> Positions | None:
    index_of = {id(m): i for i, m in enumerate(modules)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Binary layers and registered leaves are traced as single calls (their forward is not traceable).
            graph = PathTracer().trace(model)
    except Exception:  # noqa: BLE001 - untraceable models fall back to registration order
        return None
    positions: Positions = {}
    node_index: dict[Any, int] = {}
    for position, node in enumerate(graph.nodes):
        if node.op != "call_module":
            continue
        try:
            module = model.get_submodule(str(node.target))
        except AttributeError:
            continue
        index = index_of.get(id(module))
        if index is not None:
            node_index[node] = index
            first = positions.get(index, (position, position))[0]
            positions[index] = (first, position)
    # Boundaries from the data flow, as the recorded forward pass finds them: a layer with no other candidate
    # upstream is first (a diffusion UNet's stem beside its time MLP), one with none downstream is last.
    sources = {i for node, i in node_index.items() if not _graph_reaches(node, node_index, upstream=True)}
    sinks = {i for node, i in node_index.items() if not _graph_reaches(node, node_index, upstream=False)}
    return {i: (-1 if i in sources else c[0], sys.maxsize if i in sinks else c[1]) for i, c in positions.items()}


def _graph_reaches(start: Any, candidates: Mapping[Any, int], *, upstream: bool) -> bool:
    """Whether another candidate call lies upstream (or downstream) of ``start`` in the fx graph."""
    step = (lambda n: n.all_input_nodes) if upstream else (lambda n: list(n.users))
    seen: set[Any] = set()
    stack = list(step(start))
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node in candidates:
            return True
        stack.extend(step(node))
    return False
