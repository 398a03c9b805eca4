"""Tracing that carries shapes: a torch.fx tracer whose proxies know the value they stand for.

Real model code reads shapes in plain Python: ``assert x.shape[1] == self.channels``, ``len(t.shape) == 0``,
``b, c, *spatial = x.shape``, ``while len(e.shape) < len(h.shape)``, ``if x.ndim == 4``. Plain symbolic tracing stops
at each of them, because a proxy has no value. :class:`ShapeTracer` computes, next to every node it records, the
value the node would have on the example inputs: fake tensors (shape, dtype and device; no data) under one
:class:`~torch._subclasses.fake_tensor.FakeTensorMode`, and ordinary Python values for everything else (sizes,
dtypes, devices, ints). Where Python needs a concrete value, the proxy gives it:

================================== =============================================================================
Python asks                        the proxy answers with
================================== =============================================================================
``bool(p)`` (``if``, ``assert``,   ``bool`` of its value; a tensor's truth depends on data, which the trace
``while``, ``and`` / ``or``)       cannot know: tracing fails there as before
``len(p)``                         ``len`` of its value
iteration, unpacking               one proxy per element (``p[0]``, ``p[1]``, ...), so sizes stay in the graph
``int(p)``                         the integer value (torch functions that take sizes get the proxy, so sizes
                                   passed to ``torch.ones(x.shape[0])`` stay symbolic)
``isinstance(p, torch.Tensor)``,   the value's class, so ``torch.is_tensor`` and type checks take the branch the
``torch.is_tensor(p)``             real call takes
================================== =============================================================================

Each node whose value is a tensor keeps its shape in ``node.meta["shape"]`` (so graph rules can check channel counts).
The graph is therefore *specialised* to the example inputs wherever Python decided something (which branch ran,
how many times a loop turned), exactly as ``torch.export`` specialises; values that only flow into operations (a
``view(b, c, -1)`` on unpacked sizes) stay symbolic. Every such decision is kept in
:attr:`ShapeTracer.decisions`, so a rewrite can say what it was specialised on. A value that cannot be computed on
fake tensors (an operation that reads data) is *unknown*; it can still flow into operations, but Python cannot
decide on it, and tracing fails there with a message that says so.

Module inputs: :func:`record_module_inputs` runs the model once on the example inputs (on fake tensors when the
model allows it) and keeps, for every module, the arguments of its first call. With them any module can be traced
on its own, as called: tensors become placeholders with their values, everything else (``None``, ints, flags)
stays the constant the caller passed.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.proxy import Attribute, TraceError

from binarize.engine.tracing import PathTracer

__all__ = ["ModuleInputs", "ShapeProxy", "ShapeTracer", "UNKNOWN", "call_arguments", "record_module_inputs"]


class _Unknown:
    """The value of a node that could not be computed on fake tensors."""

    def __repr__(self) -> str:
        return "UNKNOWN"


#: Marks a node whose value is not known.
UNKNOWN: Any = _Unknown()


def call_arguments(inputs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` from example inputs: a mapping (keywords), a tuple / list (positional) or one value."""
    if isinstance(inputs, Mapping):
        return (), dict(inputs)
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    return (inputs,), {}


@dataclass
class ModuleInputs:
    """The first call's arguments of every module that ran on the example inputs.

    Attributes:
        mode: the fake tensor mode the values belong to (tracing must use the same one).
        calls: ``id(module) -> (args, kwargs)`` of the module's first call.
    """

    mode: FakeTensorMode
    calls: dict[int, tuple[tuple[Any, ...], dict[str, Any]]]

    def of(self, module: nn.Module) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        """The arguments ``module`` was first called with, or ``None`` when it did not run."""
        return self.calls.get(id(module))


def record_module_inputs(model: nn.Module, example_inputs: Any) -> ModuleInputs | None:
    """Run ``model`` once on ``example_inputs`` and keep each module's first-call arguments (see the module docstring).

    The pass runs on fake tensors in eval mode without gradients (training flags restored afterwards, nothing
    updated). Returns ``None`` when the model cannot run on fake tensors (its control flow reads data): tracing
    then goes on without values.
    """
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    calls: dict[int, tuple[tuple[Any, ...], dict[str, Any]]] = {}

    def note(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        calls.setdefault(id(module), (tuple(args), dict(kwargs)))

    handles = [m.register_forward_pre_hook(note, with_kwargs=True) for m in model.modules()]
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    args, kwargs = call_arguments(example_inputs)
    try:
        with mode, torch.no_grad():
            model(*_faked(mode, args), **_faked(mode, kwargs))
    except Exception:  # noqa: BLE001 - a model whose control flow reads data cannot run on shapes alone
        return None
    finally:
        for handle in handles:
            handle.remove()
        for module, training in flags:
            module.training = training
    return ModuleInputs(mode, calls)


def _faked(mode: FakeTensorMode, value: Any) -> Any:
    """``value`` with every real tensor replaced by a fake one of ``mode`` (same shape, dtype and device)."""
    if isinstance(value, torch.Tensor):
        return mode.from_tensor(value) if not isinstance(value, torch._subclasses.FakeTensor) else value
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_faked(mode, v) for v in value)
    if isinstance(value, list):
        return [_faked(mode, v) for v in value]
    if isinstance(value, dict) and type(value) is dict:
        return {k: _faked(mode, v) for k, v in value.items()}
    return value


def _has_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (tuple, list)):
        return any(_has_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_has_tensor(v) for v in value.values())
    return False


_VARIADIC: dict[Any, tuple[str, Any]] = {
    inspect.Parameter.VAR_POSITIONAL: ("*", ()),
    inspect.Parameter.VAR_KEYWORD: ("**", {}),
}


class ShapeProxy(fx.Proxy):
    """A proxy that answers Python's questions from its node's value (see the module docstring)."""

    tracer: ShapeTracer

    def value(self) -> Any:
        """The value this proxy stands for (:data:`UNKNOWN` when it could not be computed)."""
        return self.tracer.value_of(self.node)

    def concrete(self, why: str) -> Any:
        """The value, for a decision Python makes; fails the trace when it is unknown or data-dependent."""
        value = self.value()
        if value is UNKNOWN:
            raise TraceError(f"{why} on {self.node.name}, whose value could not be computed from shapes")
        return value

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # noqa: D105 - isinstance() and torch.is_tensor see the value's class
        value = self.tracer.value_of(self.node) if self.tracer.active else UNKNOWN
        return type(self) if value is UNKNOWN else type(value)

    def __getattr__(self, k: str) -> Attribute:
        return _ShapeAttribute(self, k)

    def __len__(self) -> int:
        value = self.concrete("len()")
        if isinstance(value, torch.Tensor) and value.dim() == 0:
            raise TraceError(f"len() of a 0-d tensor ({self.node.name})")
        self.tracer.decide(self, f"len({self.tracer.describe(self.node)}) == {len(value)}")
        return len(value)

    def __int__(self) -> int:
        return self._integer("int()")

    def _integer(self, why: str) -> int:
        value = self.concrete(why)
        if isinstance(value, torch.Tensor) or not isinstance(value, (int, bool, torch.SymInt)):
            raise TraceError(f"{why} of {self.node.name}, a {type(value).__name__} whose value depends on data")
        self.tracer.decide(self, f"int({self.tracer.describe(self.node)}) == {int(value)}")
        return int(value)


class _ShapeAttribute(Attribute, ShapeProxy):
    """An attribute access (``x.shape``, ``x.dtype``) with a value, created lazily as torch.fx does."""


class ShapeTracer(PathTracer):
    """A :class:`~binarize.engine.tracing.PathTracer` whose proxies carry values (see the module docstring).

    Args:
        mode: the fake tensor mode the values live in.
        leaves: as for :class:`~binarize.engine.tracing.PathTracer`.
    """

    def __init__(self, mode: FakeTensorMode, leaves: frozenset[int] = frozenset()) -> None:
        super().__init__(leaves)
        self.mode = mode
        self.values: dict[fx.Node, Any] = {}
        #: Decisions Python made on traced values: ``"gt_1 -> False"``, ``"len(size) == 4"``, ...
        self.decisions: list[str] = []
        self.active = False
        self._computing = False

    def value_of(self, node: fx.Node) -> Any:
        """The value of ``node`` (:data:`UNKNOWN` when not known)."""
        value = self.values.get(node, UNKNOWN)
        if value is UNKNOWN and node.op == "get_attr" and node not in self.values:
            # torch.fx makes get_attr nodes for parameters and tensor constants without a proxy
            value = self.values[node] = self._compute(node)
        return value

    def decide(self, proxy: ShapeProxy, text: str) -> None:
        """Note a decision Python made on a traced value."""
        if proxy.node.op != "get_attr":
            self.decisions.append(text)

    def describe(self, node: fx.Node) -> str:
        """``node`` as a short expression of the nodes it reads (``x.shape[0] >= 64``)."""
        return _expression(node, 3)

    # -- values --------------------------------------------------------------------------------------------
    def proxy(self, node: fx.Node) -> fx.Proxy:
        return ShapeProxy(node, self)

    def create_proxy(self, kind: str, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                     name: str | None = None, type_expr: Any | None = None, proxy_factory_fn: Any = None) -> fx.Proxy:
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        node = proxy.node
        if node not in self.values:
            self.values[node] = value = self._compute(node)
            if isinstance(value, torch.Tensor):
                node.meta["shape"] = tuple(value.shape)
        return proxy

    def _compute(self, node: fx.Node) -> Any:
        self._computing = True
        try:
            return self._evaluate(node)
        except Exception:  # noqa: BLE001 - an operation that reads data has no value on fake tensors
            return UNKNOWN
        finally:
            self._computing = False

    def _evaluate(self, node: fx.Node) -> Any:
        if node.op == "placeholder":
            return UNKNOWN  # set by create_args_for_root for the tensor arguments of a recorded call
        if node.op == "get_attr":
            return _attribute(self.root, str(node.target))
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), self.value_of)
        if _contains_unknown((args, kwargs)):
            return UNKNOWN
        with self.mode, torch.no_grad():
            if node.op == "call_function":
                return node.target(*args, **kwargs)
            if node.op == "call_method":
                return getattr(args[0], str(node.target))(*args[1:], **kwargs)
            if node.op == "call_module":
                return self.root.get_submodule(str(node.target))(*args, **kwargs)
        return UNKNOWN

    # While a value is computed, torch.fx's patched Module.__call__ / __getattr__ must run the real thing.
    def call_module(self, m: nn.Module, forward: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._computing:
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        if self._computing:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    # -- Python's questions ----------------------------------------------------------------------------------
    def to_bool(self, obj: fx.Proxy) -> bool:
        if not isinstance(obj, ShapeProxy):
            return super().to_bool(obj)
        value = obj.concrete("a branch or assertion")
        if isinstance(value, torch.Tensor):
            raise TraceError(
                f"a branch or assertion on the tensor {obj.node.name}: its truth depends on data, not on shapes"
            )
        answer = bool(value)
        self.decide(obj, f"{self.describe(obj.node)} -> {answer}")
        return answer

    def iter(self, obj: fx.Proxy) -> Iterator[Any]:
        if not isinstance(obj, ShapeProxy):
            return super().iter(obj)
        count = len(obj)
        return (obj[i] for i in range(count))

    def create_arg(self, a: Any) -> Any:
        # A proxy answers isinstance() with its value's class, so it must be recognised by its real type here.
        if issubclass(type(a), fx.Proxy):
            return a.node
        return super().create_arg(a)

    # -- tracing ---------------------------------------------------------------------------------------------
    def trace_call(self, root: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> fx.Graph:
        """Trace ``root.forward`` as called with ``args`` / ``kwargs``.

        Tensors become placeholders with these values. Every other argument stays the constant the caller passed
        (omitted ones their defaults): the graph keeps a placeholder for it, so the signature is unchanged, and a
        check (:func:`check_constant`) that fails with a clear message when a later call passes something else.
        """
        signature = inspect.signature(root.forward)
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TraceError(f"{type(root).__name__}.forward{signature} cannot take its recorded call ({exc})") from None
        self._call = dict(bound.arguments)
        try:
            return self.trace(root)
        finally:
            self._call = None

    def create_args_for_root(self, root_fn: Any, is_module: bool, concrete_args: Any = None) -> tuple[Any, list[Any]]:
        if self._call is None:
            return super().create_args_for_root(root_fn, is_module, concrete_args)
        parameters = list(inspect.signature(root_fn).parameters.values())[1:]  # after self
        positional: list[Any] = []
        keywords: dict[str, Any] = {}
        for parameter in parameters:
            name = parameter.name
            if parameter.kind in _VARIADIC:  # torch.fx writes these placeholders as "*args" / "**kwargs"
                star, empty = _VARIADIC[parameter.kind]
                if self._call.get(name, empty):
                    raise TraceError(f"forward was called with values for {star}{name}")
                placeholder = self.create_proxy("placeholder", star + name, (), {})
                self.create_proxy("call_function", check_constant, (placeholder, empty, name), {})
                if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                    continue
                positional.extend(empty)
                continue
            value = self._call.get(name, parameter.default)
            if value is inspect.Parameter.empty:
                raise TraceError(f"argument {name!r} of forward has no value")
            default = () if parameter.default is inspect.Parameter.empty else (parameter.default,)
            placeholder = self.create_proxy("placeholder", name, default, {})
            if isinstance(value, torch.Tensor):
                self.values[placeholder.node] = value
                placeholder.node.meta["shape"] = tuple(value.shape)
                value = placeholder
            elif _has_tensor(value):
                raise TraceError(f"argument {name!r} holds tensors inside a {type(value).__name__}")
            elif _checkable(value):
                self.create_proxy("call_function", check_constant, (placeholder, value, name), {})
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
                keywords[name] = value
            else:
                positional.append(value)
        root = self.root

        def call(*_: Any) -> Any:
            return root_fn(root, *positional, **keywords)

        return call, []

    _call: dict[str, Any] | None = None

    def trace(self, root: Any, concrete_args: dict[str, Any] | None = None) -> fx.Graph:
        self.active = True
        try:
            return super().trace(root, concrete_args)
        finally:
            self.active = False


def check_constant(value: Any, expected: Any, name: str) -> None:
    """Raise unless ``value == expected``: a graph traced with ``name`` fixed to ``expected`` computes nothing else.

    Raises:
        ValueError: naming the argument, the value the graph was traced with and the one it got.
    """
    same = value is expected or (
        type(value) is type(expected) and not isinstance(value, torch.Tensor) and bool(value == expected)
    )
    if not same:
        raise ValueError(
            f"argument {name!r} was {expected!r} when this module was traced and rewritten, so its forward only "
            f"computes that case; got {value!r}. Convert the model with example inputs that pass {name}={value!r}"
        )


def _checkable(value: Any) -> bool:
    """Constants a rewritten forward checks at every call (plain data)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (tuple, list)):
        return all(_checkable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _checkable(v) for k, v in value.items())
    return False


_OPERATORS = {
    operator.eq: "==", operator.ne: "!=", operator.lt: "<", operator.le: "<=", operator.gt: ">", operator.ge: ">=",
    operator.add: "+", operator.sub: "-", operator.mul: "*", operator.floordiv: "//", operator.truediv: "/",
    operator.mod: "%", operator.and_: "&", operator.or_: "|",
}


def _expression(arg: Any, depth: int) -> str:
    """A readable expression for a graph argument, nodes expanded ``depth`` levels deep."""
    if not isinstance(arg, fx.Node):
        return repr(arg)
    node = arg
    if depth == 0 or node.op not in ("call_function", "call_method"):
        return str(node.target) if node.op == "placeholder" else node.name
    args = [_expression(a, depth - 1) for a in node.args]
    if node.target is getattr and len(args) == 2:
        return f"{args[0]}.{node.args[1]}"
    if node.target is operator.getitem and len(args) == 2:
        return f"{args[0]}[{args[1]}]"
    if node.target in _OPERATORS and len(args) == 2:
        return f"{args[0]} {_OPERATORS[node.target]} {args[1]}"  # type: ignore[index]
    if node.op == "call_method" and args:
        return f"{args[0]}.{node.target}({', '.join(args[1:])})"
    name = getattr(node.target, "__name__", str(node.target))
    return f"{name}({', '.join(args)})"


def _contains_unknown(value: Any) -> bool:
    found = False

    def visit(v: Any) -> Any:
        nonlocal found
        found = found or v is UNKNOWN
        return v

    torch.utils._pytree.tree_map(visit, value)
    return found


def _attribute(root: nn.Module, target: str) -> Any:
    owner, _, name = target.rpartition(".")
    try:
        return getattr(root.get_submodule(owner) if owner else root, name)
    except AttributeError:
        return UNKNOWN
