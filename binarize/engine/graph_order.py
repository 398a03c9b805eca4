"""The recorded forward pass, read off the traced graph instead of run.

:func:`binarize.engine.execution_order` records a forward pass on the example inputs: which candidate layers run, in
which order, which read the model input and which reach its output (links taken from the autograd graph), and
whether the model accepts the inputs at all. Even on fake tensors that pass costs about as much as a real forward
pass of a large network, most of it Python-level dispatch per operation.

For networks built from common layers the same facts follow from the model's torch.fx graph:
:func:`graph_positions` walks the graph once with the example inputs' shapes, dtypes and devices, checks every
operation as torch would and follows each result's autograd history (the rules are in
:mod:`binarize.engine.graph_ops`), and notes what the recorded pass's hooks would note at every candidate call.
Anything it does not model exactly (an operation or layer outside its rules, hooks, an in-place update that another
reference would observe, tensors made while tracing, grad mode switched off inside ``forward``, a warning while
tracing) makes it answer ``None`` and the forward pass decides; so does every input that the rules would reject,
so that the pass reports the error as before.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.nn.modules import module as module_hooks

from binarize.engine.boundaries import Positions, positions_from_calls
from binarize.engine.graph_ops import FUNCTIONS, METHODS, MODULES, Step, Value, history, require, tensors
from binarize.engine.tracing import PathTracer

__all__ = ["graph_positions"]

_SIMPLE = (type(None), bool, int, float, str)


@dataclass
class _Walk:
    """One walk over a graph: the values of its nodes, and the recorded pass's bookkeeping.

    Attributes:
        model: the traced model.
        index_of: id of a candidate layer -> its index.
        position: node -> its index in the graph.
        values: node -> its value (a :class:`~binarize.engine.graph_ops.Value` or a plain Python value).
        aliases: node -> the nodes whose values share its storage.
        calls: candidate -> positions of its calls; ``sources``: candidates that read the model input;
            ``feeds``: candidate -> the candidates whose outputs reach its input (as in the recorded pass).
    """

    model: nn.Module
    index_of: dict[int, int]
    position: dict[fx.Node, int]
    values: dict[fx.Node, Any] = field(default_factory=dict)
    aliases: dict[fx.Node, list[fx.Node]] = field(default_factory=dict)
    calls: dict[int, list[int]] = field(default_factory=dict)
    sources: set[int] = field(default_factory=set)
    feeds: dict[int, set[int]] = field(default_factory=dict)
    counter: int = 0


def _evaluate(walk: _Walk, node: fx.Node, inputs: Mapping[str, Any]) -> Any:
    """The value of ``node``, by the rules of :mod:`~binarize.engine.graph_ops`."""
    if node.op == "placeholder":
        require(node.target in inputs)
        return inputs[str(node.target)]
    if node.op == "get_attr":
        return _attribute(walk.model, str(node.target))
    args, kwargs = fx.node.map_arg((node.args, node.kwargs), walk.values.__getitem__)
    step = Step(node, walk.position, walk.aliases)
    if node.op == "call_module":
        return _call_module(walk, step, walk.model.get_submodule(str(node.target)), args, kwargs)
    if node.op == "call_function":
        require(node.target in FUNCTIONS)
        return FUNCTIONS[node.target](step, *args, **kwargs)
    require(node.op == "call_method" and node.target in METHODS)
    return METHODS[str(node.target)](step, *args, **kwargs)


def _attribute(model: nn.Module, target: str) -> Value:
    """A parameter or buffer read in ``forward``: a leaf."""
    owner, _, name = target.rpartition(".")
    value = getattr(model.get_submodule(owner) if owner else model, name)
    require(isinstance(value, torch.Tensor))
    return Value(tuple(value.shape), value.dtype, value.device, value.requires_grad, frozenset(), None)


def _call_module(walk: _Walk, step: Step, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A layer call; for a candidate, also what the recorded pass's hooks note before and after it."""
    require(type(module) in MODULES and "forward" not in vars(module))
    index = walk.index_of.get(id(module))
    if index is not None:
        _record_call(walk, index, args)
    result = MODULES[type(module)](step, module, *args, **kwargs)
    if index is None:
        return result
    require(isinstance(result, Value))
    mark = frozenset({index}) if result.grad else frozenset()  # the output's autograd node is the candidate's
    return Value(result.shape, result.dtype, result.device, result.grad, mark, result.base, result.view)


def _record_call(walk: _Walk, index: int, args: tuple[Any, ...]) -> None:
    """What the pre-hook notes: the call's position, and the candidates upstream of its positional arguments."""
    upstream = history(tensors(args))[1]
    walk.calls.setdefault(index, []).append(walk.counter)
    walk.counter += 1
    walk.feeds.setdefault(index, set()).update(upstream)
    if not upstream:
        walk.sources.add(index)


def _walk(walk: _Walk, graph: fx.Graph, inputs: Mapping[str, Any]) -> Positions:
    """Evaluate every node in order; the output's history gives the candidates that reach it."""
    sinks: frozenset[int] = frozenset()
    for node in graph.nodes:
        if node.op == "output":
            sinks = history(tensors(fx.node.map_arg(node.args[0], walk.values.__getitem__)))[1]
            continue
        value = _evaluate(walk, node, inputs)
        walk.values[node] = value
        if isinstance(value, Value) and value.base is not None:
            walk.aliases.setdefault(value.base, []).append(node)
    return positions_from_calls(walk.calls, walk.sources, walk.feeds, sinks)


# ---------------------------------------------------------------------------------------------------------------
# Tracing
# ---------------------------------------------------------------------------------------------------------------
class _OrderTracer(PathTracer):
    """A tracer that refuses what the walk could not reproduce: grad mode switched off inside ``forward``, and
    tensors made while tracing (torch.fx would store them on the model).

    Args:
        model: the model to trace (its buffers are the tensors, other than parameters, that the graph may use).
        leaves: ids of the modules to keep as leaves.
    """

    def __init__(self, model: nn.Module, leaves: frozenset[int]) -> None:
        super().__init__(leaves)
        # torch.fx looks tensors up by scanning every named parameter / buffer, quadratic in large models that
        # read their parameters in forward (timm's BatchNormAct2d); the first name of each, as that scan finds it.
        self.parameter_names: dict[int, str] = {}
        self.buffer_names: dict[int, str] = {}
        for name, parameter in model.named_parameters():
            self.parameter_names.setdefault(id(parameter), name)
        for name, buffer in model.named_buffers():
            self.buffer_names.setdefault(id(buffer), name)

    def _name_of(self, value: Any, with_buffers: bool) -> str | None:
        """The attribute name of a parameter (or buffer) of the model, if ``value`` is one."""
        if isinstance(value, nn.Parameter):
            return self.parameter_names.get(id(value))
        if with_buffers and isinstance(value, torch.Tensor):
            return self.buffer_names.get(id(value))
        return None

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        """As torch.fx does it (a proxy per parameter name), by dictionary lookup."""
        name = self._name_of(attr_val, self.proxy_buffer_attributes)
        if name is None:
            return super().getattr(attr, attr_val, parameter_proxy_cache)
        if name not in parameter_proxy_cache:
            parameter_proxy_cache[name] = self.create_proxy("get_attr", name, (), {})
        return parameter_proxy_cache[name]

    def create_node(self, kind: str, target: Any, args: Any, kwargs: Any, name: str | None = None,
                    type_expr: Any | None = None) -> fx.Node:
        """Refuse nodes made with grad mode off: the recorded pass would hold no autograd history there."""
        require(torch.is_grad_enabled() and not torch.is_inference_mode_enabled())
        return super().create_node(kind, target, args, kwargs, name, type_expr)

    def create_arg(self, a: Any) -> Any:
        """Parameters and buffers by dictionary lookup; refuse other tensors, which torch.fx would set on the
        model as constants."""
        name = self._name_of(a, True)
        if name is not None:
            return self.create_node("get_attr", name, (), {})
        if isinstance(a, torch.Tensor) and not isinstance(a, nn.Parameter):
            require(a in self.tensor_attrs)
        return super().create_arg(a)


_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def _hooked(model: nn.Module) -> bool:
    """Whether any hook would run during a forward pass (the graph does not show what hooks do)."""
    if any(getattr(module_hooks, f"_global{name}") for name in _HOOK_DICTS):
        return True
    return any(getattr(m, name) for m in model.modules() for name in _HOOK_DICTS)


def _bind_inputs(model: nn.Module, example_inputs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(placeholders, concrete)``: placeholder name -> value as the recorded pass sees it (tensors, floating point
    ones tracked), and the value of every non-tensor parameter of ``forward`` (given or default), which tracing
    must specialise on rather than turn into a proxy (a default ``None`` would otherwise take its branch)."""
    if isinstance(example_inputs, Mapping):
        args, kwargs = (), dict(example_inputs)
    elif isinstance(example_inputs, (tuple, list)):
        args, kwargs = tuple(example_inputs), {}
    else:
        args, kwargs = (example_inputs,), {}
    signature = inspect.signature(model.forward)
    require(all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in signature.parameters.values()))
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    placeholders: dict[str, Any] = {}
    concrete: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        if isinstance(value, torch.Tensor):
            grad = value.is_floating_point()  # the recorded pass makes floating-point inputs require grad
            placeholders[name] = Value(tuple(value.shape), value.dtype, value.device, grad, frozenset(), None)
        else:
            require(isinstance(value, _SIMPLE))
            concrete[name] = value
            placeholders[f"{name}_1"] = value  # torch.fx checks a specialised value on a placeholder of this name
    return placeholders, concrete


def _trace(model: nn.Module, leaves: frozenset[int], concrete: dict[str, Any]) -> fx.Graph:
    """The model's graph in eval mode, with candidates as leaves; any warning while tracing is refused."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with warnings.catch_warnings(record=True) as caught, torch.enable_grad():
            warnings.simplefilter("always")
            graph = _OrderTracer(model, leaves).trace(model, concrete_args=concrete)
    finally:
        for module, training in flags:
            module.training = training
    require(not caught)
    return graph


def _eligible(model: nn.Module, modules: Sequence[nn.Module]) -> bool:
    """Whether the graph can show every call the recorded pass would see."""
    ids = {id(m) for m in modules}
    if id(model) in ids or "forward" in vars(model) or type(model).__call__ is not nn.Module.__call__:
        return False
    if torch.is_inference_mode_enabled() or _hooked(model):
        return False
    return not any(id(sub) in ids for m in modules for sub in m.modules() if sub is not m)


def graph_positions(model: nn.Module, modules: Sequence[nn.Module], example_inputs: Any) -> Positions | None:
    """What the recorded forward pass on ``example_inputs`` would return, read off the traced graph.

    Args:
        model: the model (left as it was: its ``training`` flags are restored after tracing).
        modules: the candidate layers to locate.
        example_inputs: a tensor, a tuple / list of positional inputs, or a mapping of keyword inputs.

    Returns:
        The positions (see :func:`binarize.engine.execution_order`), or ``None`` when the graph cannot vouch for
        them or the inputs may not fit the model: the forward pass must decide.
    """
    try:
        if not _eligible(model, modules):
            return None
        inputs, concrete = _bind_inputs(model, example_inputs)
        graph = _trace(model, frozenset(id(m) for m in modules), concrete)
        index_of = {id(m): i for i, m in enumerate(modules)}
        position = {node: i for i, node in enumerate(graph.nodes)}
        return _walk(_Walk(model, index_of, position), graph, inputs)
    except Exception:  # noqa: BLE001 - whatever is not modelled falls back to the forward pass
        return None
