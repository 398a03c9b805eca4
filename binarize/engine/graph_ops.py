"""What each operation of a traced graph does to shapes, dtypes and autograd history, checked as torch checks it.

:mod:`binarize.engine.graph_order` walks a model's torch.fx graph with these rules instead of running the model.
Every rule takes the operation's arguments (abstract tensors, :class:`Value`, where the model would hold tensors;
plain Python values elsewhere), refuses with :class:`Unsupported` whatever torch might reject or compute
differently (a channel count that does not match, a kernel larger than its padded input, mixed dtypes or devices,
an in-place update that another reference would observe), and returns the abstract result. A refusal is never an
error: the caller then runs the forward pass, which decides. Rules are therefore strict, never lenient, and cover
the layers and functions of common convolutional networks and vision transformers (layout changes, layer and
group norm, attention); anything absent from :data:`MODULES`, :data:`FUNCTIONS` and :data:`METHODS` is refused.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

__all__ = ["FUNCTIONS", "METHODS", "MODULES", "Rule", "Step", "Unsupported", "Value", "history", "require", "tensors"]

_FLOATS = (torch.float32, torch.float64)
_SCALARS = (int, float, bool)

#: A rule: ``rule(step, *args, **kwargs)`` for functions and methods, ``rule(step, module, *args, **kwargs)`` for
#: layers; it returns the abstract result.
Rule = Callable[..., Any]


class Unsupported(Exception):
    """Something the rules do not model exactly; the forward pass decides."""


def require(condition: bool) -> None:
    """Refuse (raise :class:`Unsupported`) unless ``condition`` holds."""
    if not condition:
        raise Unsupported


def _is_int(value: Any) -> bool:
    """Whether ``value`` is a Python int (not a bool), as torch's integer arguments must be."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """Whether ``value`` is a Python int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True, eq=False)
class Value:
    """What the recorded forward pass would hold for one tensor.

    Attributes:
        shape: as torch would compute it.
        dtype: as torch would compute it.
        device: as torch would compute it.
        grad: whether it has autograd history (requires grad).
        reach: the candidate layers whose outputs its autograd history reaches with no other candidate in between.
        base: the node whose result owns its storage; ``None`` for a leaf (a model input or attribute).
        view: whether it may share storage with another result (a view, or a layer returning its input).
    """

    shape: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device
    grad: bool
    reach: frozenset[int]
    base: fx.Node | None
    view: bool = False


def leaves(value: Any, kind: type) -> list[Any]:
    """The ``kind`` instances in ``value``, looking into tuples, lists and mapping values (in order)."""
    if isinstance(value, kind):
        return [value]
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in leaves(v, kind)]
    return []


def tensors(value: Any) -> list[Value]:
    """The tensors in ``value`` as the recorded pass collects them (tuples, lists and mapping values)."""
    return leaves(value, Value)


def history(inputs: Sequence[Value]) -> tuple[bool, frozenset[int]]:
    """Grad flag and reach of a result computed differentiably from ``inputs``."""
    grad = any(t.grad for t in inputs)
    return grad, frozenset().union(*(t.reach for t in inputs if t.grad))


@dataclass
class Step:
    """The node being evaluated; rules build their results through it.

    Attributes:
        node: the node.
        position: every node of the graph -> its index (graph order is execution order).
        aliases: node -> the nodes evaluated so far whose results share its storage (:attr:`Value.base`).
    """

    node: fx.Node
    position: Mapping[fx.Node, int]
    aliases: Mapping[fx.Node, list[fx.Node]]

    def new(self, shape: Sequence[int], like: Any, inputs: Sequence[Value], extra_grad: bool = False) -> Value:
        """A result in new storage, computed differentiably from ``inputs`` (dtype and device of ``like``)."""
        grad, reach = history(inputs)
        return Value(tuple(shape), like.dtype, like.device, grad or extra_grad, reach, self.node)

    def view(self, source: Value, shape: Sequence[int]) -> Value:
        """A result that may share ``source``'s storage."""
        return Value(tuple(shape), source.dtype, source.device, source.grad, source.reach, source.base, True)

    def modify(self, target: Value, shape: Sequence[int]) -> None:
        """Check that an in-place update of ``target`` computes what the graph shows.

        The update must be legal (``target`` owns its storage, which is no model input or attribute, and keeps
        its shape) and no other reference to that storage may be read afterwards: the graph shows it unchanged.
        """
        require(target.base is not None and not target.view and tuple(shape) == target.shape)
        here = self.position[self.node]
        for alias in self.aliases.get(target.base, ()):  # type: ignore[call-overload]
            if any(self.position[user] > here for user in alias.users if user is not self.node):
                raise Unsupported


# ---------------------------------------------------------------------------------------------------------------
# Shape rules
# ---------------------------------------------------------------------------------------------------------------
def _same_kind(*items: Any) -> None:
    """All floating point of one dtype (float32 or float64) on one device (abstract tensors or the layer's own
    tensors; ``None`` entries are skipped)."""
    present = [t for t in items if t is not None]
    require(all(t.dtype == present[0].dtype and t.device == present[0].device for t in present))
    require(present[0].dtype in _FLOATS)


def _tensor(value: Any) -> Value:
    """``value``, which must be a tensor."""
    require(isinstance(value, Value))
    return value


def _dim(dim: Any, ndim: int) -> int:
    """``dim`` wrapped into ``range(ndim)`` (a 0-d tensor accepts -1 and 0)."""
    require(_is_int(dim))
    size = max(ndim, 1)
    require(-size <= dim < size)
    return dim % size


def _broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy-style broadcast of ``shapes``."""
    ndim = max(len(s) for s in shapes)
    out = []
    for sizes in zip(*((1,) * (ndim - len(s)) + tuple(s) for s in shapes)):
        wide = {n for n in sizes if n != 1}
        require(len(wide) <= 1)
        out.append(wide.pop() if wide else 1)
    return tuple(out)


def _pair(value: Any) -> tuple[int, ...]:
    """A 2-d window argument (an int or a pair of ints) as a pair."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    require(len(pair) == 2 and all(_is_int(v) for v in pair))
    return pair


def _pooled(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """Output size of a pooling window, checked as torch's ``pool2d_shape_check``."""
    require(kernel > 0 and stride > 0 and dilation > 0 and 0 <= pad <= kernel // 2 and size > 0)
    span = dilation * (kernel - 1) + 1
    out = (size + 2 * pad - span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    require(out >= 1)
    return out


def _flattened(shape: tuple[int, ...], start_dim: Any, end_dim: Any) -> tuple[int, ...]:
    """The shape after ``torch.flatten(start_dim, end_dim)``."""
    if not shape:
        return (1,)
    start, end = _dim(start_dim, len(shape)), _dim(end_dim, len(shape))
    require(start <= end)
    return (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])


# ---------------------------------------------------------------------------------------------------------------
# Layers (call_module); every handler gets the step, the module and the call's arguments
# ---------------------------------------------------------------------------------------------------------------
def _weights_grad(module: nn.Module) -> bool:
    """Whether the layer's own parameters give its output autograd history."""
    return any(p.requires_grad for p in module.parameters())


def _conv(step: Step, m: nn.Module, input: Any) -> Value:  # noqa: A002 - torch's argument name
    """``nn.Conv1d`` / ``nn.Conv2d`` with zero padding, batched input."""
    x, weight, bias = _tensor(input), m.weight, m.bias
    spatial = weight.dim() - 2
    require(len(x.shape) == spatial + 2 and x.shape[0] >= 1 and m.padding_mode == "zeros")
    require(isinstance(m.padding, tuple) and m.groups >= 1 and weight.shape[0] % m.groups == 0)
    require(x.shape[1] == weight.shape[1] * m.groups and (bias is None or tuple(bias.shape) == weight.shape[:1]))
    _same_kind(x, weight, bias)
    sizes = []
    for size, k, s, p, d in zip(x.shape[2:], weight.shape[2:], m.stride, m.padding, m.dilation):
        span = d * (k - 1) + 1
        require(k >= 1 and s >= 1 and d >= 1 and p >= 0 and size + 2 * p >= span)
        sizes.append((size + 2 * p - span) // s + 1)
    return step.new((x.shape[0], weight.shape[0], *sizes), x, [x], _weights_grad(m))


def _linear(step: Step, m: nn.Module, input: Any) -> Value:  # noqa: A002
    """``nn.Linear``."""
    x, weight, bias = _tensor(input), m.weight, m.bias
    require(weight.dim() == 2 and len(x.shape) >= 1 and x.shape[-1] == weight.shape[1])
    require(bias is None or tuple(bias.shape) == weight.shape[:1])
    _same_kind(x, weight, bias)
    return step.new((*x.shape[:-1], weight.shape[0]), x, [x], _weights_grad(m))


_BATCH_NORM_DIMS = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}


def _batch_norm(step: Step, m: nn.Module, input: Any) -> Value:  # noqa: A002
    """``nn.BatchNorm1d/2d/3d`` in eval mode, with running statistics."""
    x = _tensor(input)
    require(len(x.shape) in _BATCH_NORM_DIMS[type(m)])
    stats = (m.running_mean, m.running_var)
    require(all(s is not None for s in stats))  # in eval mode, normalised with the running statistics
    require(all(t is None or tuple(t.shape) == (x.shape[1],) for t in (*stats, m.weight, m.bias)))
    _same_kind(x, *stats, m.weight, m.bias)
    return step.new(x.shape, x, [x], _weights_grad(m))


def _unary(step: Step, x: Value, inplace: bool) -> Value:
    """An element-wise function of ``x`` (in place: ``x`` itself, updated)."""
    _same_kind(x)
    if inplace:
        step.modify(x, x.shape)
        return x
    return step.new(x.shape, x, [x])


def _activation(step: Step, m: nn.Module, input: Any) -> Value:  # noqa: A002
    """An element-wise activation layer (in place where it says so)."""
    return _unary(step, _tensor(input), bool(getattr(m, "inplace", False)))


def _identity(step: Step, m: nn.Module, input: Any) -> Any:  # noqa: A002
    """``nn.Identity``: the input itself."""
    return input


def _dropout(step: Step, m: nn.Module, input: Any) -> Value:  # noqa: A002
    """``nn.Dropout`` in eval mode."""
    require(0.0 <= m.p <= 1.0)
    return _tensor(input)  # in eval mode, the input itself


def _max_pool(step: Step, m: nn.Module, input: Any) -> Value:  # noqa: A002
    """``nn.MaxPool2d`` on a batched input, without indices."""
    x = _tensor(input)
    require(len(x.shape) == 4 and x.shape[0] >= 1 and x.shape[1] >= 1 and not m.return_indices)
    _same_kind(x)
    stride = m.stride if m.stride is not None else m.kernel_size
    windows = zip(x.shape[2:], _pair(m.kernel_size), _pair(stride), _pair(m.padding), _pair(m.dilation))
    sizes = [_pooled(size, k, s, p, d, m.ceil_mode) for size, k, s, p, d in windows]
    return step.new((*x.shape[:2], *sizes), x, [x])


def _avg_pool(step: Step, m: nn.Module, input: Any) -> Value:  # noqa: A002
    """``nn.AvgPool2d`` on a batched input."""
    x = _tensor(input)
    require(len(x.shape) == 4 and x.shape[0] >= 1 and x.shape[1] >= 1 and m.divisor_override != 0)
    _same_kind(x)
    stride = m.stride if m.stride is not None else m.kernel_size
    windows = zip(x.shape[2:], _pair(m.kernel_size), _pair(stride), _pair(m.padding))
    sizes = [_pooled(size, k, s, p, 1, m.ceil_mode) for size, k, s, p in windows]
    return step.new((*x.shape[:2], *sizes), x, [x])


def _adaptive_sizes(x: Value, output_size: Any) -> list[int]:
    """Output sizes of an adaptive 2-d pooling of a batched, non-empty input."""
    require(len(x.shape) == 4 and all(n >= 1 for n in x.shape))
    _same_kind(x)
    sizes = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    require(len(sizes) == 2)
    out = [size if o is None else o for size, o in zip(x.shape[2:], sizes)]
    require(all(isinstance(o, int) and o >= 1 for o in out))
    return out


def _adaptive_avg_pool(step: Step, m: nn.Module, input: Any) -> Value:  # noqa: A002
    """``nn.AdaptiveAvgPool2d``."""
    x = _tensor(input)
    return step.new((*x.shape[:2], *_adaptive_sizes(x, m.output_size)), x, [x])


def _flatten_module(step: Step, m: nn.Module, input: Any) -> Value:  # noqa: A002
    """``nn.Flatten`` (a view where it can be)."""
    x = _tensor(input)
    return step.view(x, _flattened(x.shape, m.start_dim, m.end_dim))


def _normalized_shape(value: Any) -> tuple[int, ...]:
    """A layer norm's ``normalized_shape`` (an int or a sequence of positive ints) as a tuple."""
    shape = (value,) if isinstance(value, int) else tuple(value)
    require(len(shape) >= 1 and all(_is_int(n) and n >= 1 for n in shape))
    return shape


def _layer_norm_shape(x: Value, normalized: tuple[int, ...], *affine: Any) -> None:
    """Check a layer norm over the trailing ``normalized`` dimensions of ``x`` with its affine tensors."""
    require(len(x.shape) >= len(normalized) and x.shape[len(x.shape) - len(normalized) :] == normalized)
    require(all(t is None or tuple(t.shape) == normalized for t in affine))
    _same_kind(x, *affine)


def _layer_norm(step: Step, m: nn.Module, input: Any) -> Value:  # noqa: A002
    """``nn.LayerNorm``."""
    x = _tensor(input)
    _layer_norm_shape(x, _normalized_shape(m.normalized_shape), m.weight, m.bias)
    return step.new(x.shape, x, [x], _weights_grad(m))


def _group_norm_shape(x: Value, groups: Any, *affine: Any) -> None:
    """Check a group norm of ``x`` (``(N, C, ...)``) in ``groups`` groups with its affine tensors, as torch does."""
    require(_is_int(groups) and groups >= 1)
    require(len(x.shape) >= 2 and all(n >= 1 for n in x.shape) and x.shape[1] % groups == 0)
    # F.group_norm refuses a single value per group: (N * C / groups) * spatial size must exceed 1
    require(x.shape[0] * x.shape[1] // groups * math.prod(x.shape[2:]) > 1)
    require(all(t is None or tuple(t.shape) == (x.shape[1],) for t in affine))
    _same_kind(x, *affine)


def _group_norm(step: Step, m: nn.Module, input: Any) -> Value:  # noqa: A002
    """``nn.GroupNorm``."""
    x = _tensor(input)
    _group_norm_shape(x, m.num_groups, m.weight, m.bias)
    return step.new(x.shape, x, [x], _weights_grad(m))


_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.GELU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid,
    nn.Hardtanh, nn.Mish,
)

MODULES: dict[type[nn.Module], Rule] = {
    nn.Conv1d: _conv,
    nn.Conv2d: _conv,
    nn.Linear: _linear,
    **{cls: _batch_norm for cls in _BATCH_NORM_DIMS},
    **{cls: _activation for cls in _ACTIVATIONS},
    nn.Identity: _identity,
    nn.Dropout: _dropout,
    nn.MaxPool2d: _max_pool,
    nn.AvgPool2d: _avg_pool,
    nn.AdaptiveAvgPool2d: _adaptive_avg_pool,
    nn.Flatten: _flatten_module,
    nn.LayerNorm: _layer_norm,
    nn.GroupNorm: _group_norm,
}


# ---------------------------------------------------------------------------------------------------------------
# Functions and methods (call_function, call_method); every handler gets the step and the call's arguments
# ---------------------------------------------------------------------------------------------------------------
def _arithmetic(op: Callable[[Any, Any], Any], maybe_inplace: bool) -> Rule:
    """A binary operator; on tensors, element-wise with broadcasting.

    ``x += y`` reaches the graph as ``x + y``, so an operator call may stand for an in-place update of its first
    operand: it is accepted only where both readings compute the same (see :meth:`Step.modify`).
    """

    def rule(step: Step, a: Any, b: Any) -> Any:
        operands = [v for v in (a, b) if isinstance(v, Value)]
        if not operands:
            return op(a, b)
        require(all(isinstance(v, (Value, *_SCALARS)) for v in (a, b)))
        _same_kind(*operands)
        shape = _broadcast(*(t.shape for t in operands))
        if maybe_inplace and isinstance(a, Value):
            step.modify(a, shape)
        return step.new(shape, operands[0], operands)

    return rule


def _python(op: Callable[..., Any]) -> Rule:
    """An operator on plain Python values (sizes, flags); tensors are not modelled."""

    def rule(step: Step, *args: Any) -> Any:
        require(not any(isinstance(v, Value) for v in args))
        return op(*args)

    return rule


def _getitem(step: Step, obj: Any, index: Any) -> Any:
    """Indexing a plain Python value (a size, a tuple of results), or basic indexing of a tensor (a view)."""
    require(not isinstance(index, Value))
    if isinstance(obj, Value):
        return step.view(obj, _indexed_shape(obj.shape, index))
    return obj[index]


def _indexed_shape(shape: tuple[int, ...], index: Any) -> tuple[int, ...]:
    """The shape of ``x[index]`` for basic indexing (ints, slices with a positive step, ``None``, one ``...``);
    anything else (tensors, lists: advanced indexing) is refused."""
    items = list(index) if isinstance(index, tuple) else [index]
    require(all(item is None or item is Ellipsis or isinstance(item, slice) or _is_int(item) for item in items))
    require(sum(item is Ellipsis for item in items) <= 1)
    consuming = sum(item is not None and item is not Ellipsis for item in items)
    require(consuming <= len(shape))
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at : at + 1] = [slice(None)] * (len(shape) - consuming)
    items += [slice(None)] * (len(shape) - sum(item is not None for item in items))
    out: list[int] = []
    dims = iter(shape)
    for item in items:
        if item is None:
            out.append(1)
            continue
        size = next(dims)
        if isinstance(item, int):
            require(-size <= item < size)
            continue
        require(all(v is None or _is_int(v) for v in (item.start, item.stop, item.step)))
        require(item.step is None or item.step >= 1)
        out.append(len(range(*item.indices(size))))
    return tuple(out)


def _getattr(step: Step, obj: Any, name: str) -> Any:
    """A tensor's ``shape``, ``dtype``, ``device`` or ``ndim``."""
    x = _tensor(obj)
    attributes = {"shape": torch.Size(x.shape), "dtype": x.dtype, "device": x.device, "ndim": len(x.shape)}
    require(name in attributes)
    return attributes[name]


def _size(step: Step, input: Any, dim: Any = None) -> Any:  # noqa: A002
    """``Tensor.size()``."""
    x = _tensor(input)
    return torch.Size(x.shape) if dim is None else x.shape[_dim(dim, len(x.shape))]


def _ndim(step: Step, input: Any) -> int:  # noqa: A002
    """``Tensor.dim()``."""
    return len(_tensor(input).shape)


def _flatten(step: Step, input: Any, start_dim: int = 0, end_dim: int = -1) -> Value:  # noqa: A002
    """``torch.flatten`` (a view where it can be)."""
    x = _tensor(input)
    return step.view(x, _flattened(x.shape, start_dim, end_dim))


def _mean(
    step: Step, input: Any, dim: Any = None, keepdim: bool = False, *, dtype: Any = None  # noqa: A002
) -> Value:
    """``torch.mean`` / ``Tensor.mean`` over all or some dimensions."""
    x = _tensor(input)
    require(dtype is None and isinstance(keepdim, bool))
    _same_kind(x)
    dims = range(len(x.shape)) if dim is None else [dim] if isinstance(dim, int) else list(dim)
    require(dim is None or len(dims) > 0)
    wrapped = {_dim(d, len(x.shape)) for d in dims}
    require(len(wrapped) == len(dims))
    shape = [1 if i in wrapped else n for i, n in enumerate(x.shape) if keepdim or i not in wrapped]
    return step.new(shape, x, [x])


def _cat(step: Step, tensors: Any, dim: int = 0) -> Value:
    """``torch.cat`` of tensors of one dtype and device (``tensors`` is torch's argument name)."""
    require(isinstance(tensors, (tuple, list)) and len(tensors) > 0)
    parts = [_tensor(t) for t in tensors]
    _same_kind(*parts)
    ndim = len(parts[0].shape)
    require(ndim > 0 and all(len(t.shape) == ndim for t in parts))
    axis = _dim(dim, ndim)
    require(all(t.shape[:axis] + t.shape[axis + 1 :] == parts[0].shape[:axis] + parts[0].shape[axis + 1 :]
                 for t in parts))
    shape = list(parts[0].shape)
    shape[axis] = sum(t.shape[axis] for t in parts)
    return step.new(shape, parts[0], parts)


def _elementwise(inplace: bool) -> Rule:
    """An element-wise function of one tensor (``torch.relu_``: in place)."""

    def rule(step: Step, input: Any) -> Value:  # noqa: A002
        return _unary(step, _tensor(input), inplace)

    return rule


def _activation_function(step: Step, input: Any, inplace: bool = False) -> Value:  # noqa: A002
    """A functional activation (``F.relu``, ``F.silu``, ...), in place where asked."""
    return _unary(step, _tensor(input), inplace)


def _gelu(step: Step, input: Any, approximate: str = "none") -> Value:  # noqa: A002
    """``F.gelu``."""
    require(approximate in ("none", "tanh"))
    return _unary(step, _tensor(input), False)


def _batch_norm_function(
    step: Step, input: Any, running_mean: Any, running_var: Any, weight: Any = None, bias: Any = None,  # noqa: A002
    training: bool = False, momentum: float = 0.1, eps: float = 1e-5,
) -> Value:
    """``F.batch_norm`` in eval mode (timm's BatchNormAct2d)."""
    x = _tensor(input)
    require(training is False and len(x.shape) >= 2)
    parts = [_tensor(running_mean), _tensor(running_var), *(_tensor(t) for t in (weight, bias) if t is not None)]
    require(all(t.shape == (x.shape[1],) for t in parts))
    _same_kind(x, *parts)
    return step.new(x.shape, x, [x, *parts[2:]])


def _adaptive_avg_pool2d(step: Step, input: Any, output_size: Any) -> Value:  # noqa: A002
    """``F.adaptive_avg_pool2d``."""
    x = _tensor(input)
    return step.new((*x.shape[:2], *_adaptive_sizes(x, output_size)), x, [x])


def _sizes(sizes: tuple[Any, ...]) -> tuple[Any, ...]:
    """Sizes given as ``f(x, 2, 3)`` or ``f(x, (2, 3))`` (at least one argument)."""
    require(len(sizes) >= 1)
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list, torch.Size)):
        return tuple(sizes[0])
    return sizes


def _ints(values: Sequence[Any]) -> list[int]:
    """``values``, which must be ints (not bools)."""
    require(all(_is_int(v) for v in values))
    return list(values)


def _transpose(step: Step, input: Any, dim0: Any, dim1: Any) -> Value:  # noqa: A002
    """``torch.transpose`` / ``Tensor.transpose`` (a view)."""
    x = _tensor(input)
    a, b = _dim(dim0, len(x.shape)), _dim(dim1, len(x.shape))
    shape = list(x.shape)
    if shape:
        shape[a], shape[b] = shape[b], shape[a]
    return step.view(x, shape)


def _permute(step: Step, input: Any, *dims: Any) -> Value:  # noqa: A002
    """``torch.permute`` / ``Tensor.permute`` (a view)."""
    x = _tensor(input)
    order = [_dim(d, len(x.shape)) for d in _ints(_sizes(dims))]
    require(sorted(order) == list(range(len(x.shape))))
    return step.view(x, [x.shape[d] for d in order])


def _reshape(step: Step, input: Any, *shape: Any) -> Value:  # noqa: A002
    """``torch.reshape`` / ``Tensor.reshape`` of a non-empty tensor into positive sizes, at most one ``-1`` (a view
    where it can be, else a copy: either way it may share storage)."""
    x = _tensor(input)
    sizes = _ints(_sizes(shape))
    numel = math.prod(x.shape)
    require(numel >= 1 and sizes.count(-1) <= 1 and all(n >= 1 or n == -1 for n in sizes))
    known = math.prod(n for n in sizes if n != -1)
    if -1 in sizes:
        require(numel % known == 0)
        sizes[sizes.index(-1)] = numel // known
    require(math.prod(sizes) == numel)
    return step.view(x, sizes)


def _expand(step: Step, input: Any, *sizes: Any) -> Value:  # noqa: A002
    """``Tensor.expand`` to positive sizes (``-1`` keeps an existing dimension; a view)."""
    x = _tensor(input)
    target = _ints(_sizes(sizes))
    lead = len(target) - len(x.shape)
    require(lead >= 0 and all(n >= 1 for n in target[:lead]))
    shape = target[:lead]
    for size, want in zip(x.shape, target[lead:]):
        require(want == -1 or want == size or (size == 1 and want >= 1))
        shape.append(size if want == -1 else want)
    return step.view(x, shape)


def _unbind(step: Step, input: Any, dim: Any = 0) -> tuple[Value, ...]:  # noqa: A002
    """``torch.unbind`` / ``Tensor.unbind``: views along ``dim``."""
    x = _tensor(input)
    require(len(x.shape) >= 1)
    axis = _dim(dim, len(x.shape))
    rest = x.shape[:axis] + x.shape[axis + 1 :]
    return tuple(step.view(x, rest) for _ in range(x.shape[axis]))


def _contiguous(step: Step, input: Any) -> Value:  # noqa: A002
    """``Tensor.contiguous()``: the tensor itself or a copy (either way it may share storage)."""
    x = _tensor(input)
    return step.view(x, x.shape)


def _layer_norm_function(
    step: Step, input: Any, normalized_shape: Any, weight: Any = None, bias: Any = None,  # noqa: A002
    eps: float = 1e-5,
) -> Value:
    """``F.layer_norm`` (timm's LayerNorm and LayerNorm2d)."""
    x = _tensor(input)
    affine = [_tensor(t) for t in (weight, bias) if t is not None]
    require(_is_number(eps))
    _layer_norm_shape(x, _normalized_shape(normalized_shape), *affine)
    return step.new(x.shape, x, [x, *affine])


def _group_norm_function(
    step: Step, input: Any, num_groups: Any, weight: Any = None, bias: Any = None, eps: float = 1e-5,  # noqa: A002
) -> Value:
    """``F.group_norm``."""
    x = _tensor(input)
    affine = [_tensor(t) for t in (weight, bias) if t is not None]
    require(_is_number(eps))
    _group_norm_shape(x, num_groups, *affine)
    return step.new(x.shape, x, [x, *affine])


def _reshape_as(step: Step, input: Any, other: Any) -> Value:  # noqa: A002
    """``Tensor.reshape_as``: ``reshape`` to ``other``'s shape."""
    return _reshape(step, input, _tensor(other).shape)


def _attention(
    step: Step, query: Any, key: Any, value: Any, attn_mask: Any = None, dropout_p: float = 0.0,
    is_causal: bool = False, scale: Any = None, enable_gqa: bool = False,
) -> Value:
    """``F.scaled_dot_product_attention`` on ``(batch, heads, length, features)`` tensors with equal batch and
    head counts, without mask, dropout or grouped heads."""
    q, k, v = _tensor(query), _tensor(key), _tensor(value)
    require(attn_mask is None and dropout_p == 0.0 and is_causal is False and enable_gqa is False)
    require(scale is None or isinstance(scale, float))
    require(all(len(t.shape) == 4 and all(n >= 1 for n in t.shape) for t in (q, k, v)))
    require(q.shape[:2] == k.shape[:2] == v.shape[:2] and q.shape[3] == k.shape[3] and k.shape[2] == v.shape[2])
    _same_kind(q, k, v)
    return step.new((*q.shape[:3], v.shape[3]), q, [q, k, v])


def _check_assert(step: Step, condition: Any, message: Any = None) -> None:
    """``torch._assert`` that torch.fx adds for a specialised input."""
    require(condition is True)


def _check_none(step: Step, value: Any, message: Any = None) -> None:
    """The ``None`` check that torch.fx adds for a specialised input."""
    require(value is None)


FUNCTIONS: dict[Any, Rule] = {
    **{op: _arithmetic(op, True) for op in (operator.add, operator.sub, operator.mul, operator.truediv)},
    **{op: _python(op) for op in (operator.floordiv, operator.mod, operator.neg, operator.eq, operator.ne,
                                  operator.lt, operator.le, operator.gt, operator.ge)},
    operator.getitem: _getitem,
    getattr: _getattr,
    torch.flatten: _flatten,
    torch.mean: _mean,
    torch.cat: _cat,
    torch.relu: _elementwise(False),
    torch.relu_: _elementwise(True),
    torch.sigmoid: _elementwise(False),
    **{f: _activation_function for f in (F.relu, F.relu6, F.silu, F.hardswish, F.hardsigmoid)},
    torch.tanh: _elementwise(False),
    F.gelu: _gelu,
    F.batch_norm: _batch_norm_function,
    F.adaptive_avg_pool2d: _adaptive_avg_pool2d,
    torch._assert: _check_assert,
    fx._symbolic_trace._assert_is_none: _check_none,
    torch.transpose: _transpose,
    torch.permute: _permute,
    torch.reshape: _reshape,
    torch.unbind: _unbind,
    F.layer_norm: _layer_norm_function,
    F.group_norm: _group_norm_function,
    F.scaled_dot_product_attention: _attention,
}

METHODS: dict[str, Rule] = {
    "size": _size,
    "dim": _ndim,
    "flatten": _flatten,
    "mean": _mean,
    "relu": _elementwise(False),
    "relu_": _elementwise(True),
    "sigmoid": _elementwise(False),
    "tanh": _elementwise(False),
    **{name: _arithmetic(op, False) for name, op in (("add", operator.add), ("sub", operator.sub),
                                                      ("mul", operator.mul), ("div", operator.truediv))},
    "transpose": _transpose,
    "permute": _permute,
    "reshape": _reshape,
    "reshape_as": _reshape_as,
    "expand": _expand,
    "unbind": _unbind,
    "contiguous": _contiguous,
}
