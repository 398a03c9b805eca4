"""The graph walk's layout, layer-norm and attention rules agree with torch: where a rule accepts, torch computes a
tensor of the shape the rule gives; where torch raises, the rule refuses."""

from __future__ import annotations

import dis
import operator
from typing import Any

import pytest
import torch
import torch.fx.proxy
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import fx, nn

from binarize.engine.graph_ops import FUNCTIONS, METHODS, MODULES, Step, Unsupported, Value
from binarize.engine.tracing import PathTracer

STEP = Step(node=None, position={}, aliases={})  # type: ignore[arg-type]  # the rules below only read shapes


def abstract(t: torch.Tensor, grad: bool = True) -> Value:
    return Value(tuple(t.shape), t.dtype, t.device, grad, frozenset(), None)


def agree(rule: Any, real: Any, *args: Any, **kwargs: Any) -> None:
    """``rule`` on abstract tensors and ``real`` on the tensors: same shapes, or the rule refuses."""
    abstract_args = [abstract(a) if isinstance(a, torch.Tensor) else a for a in args]
    abstract_kwargs = {k: abstract(v) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    try:
        expected = real(*args, **kwargs)
    except (RuntimeError, IndexError, TypeError, ValueError, ZeroDivisionError):
        with pytest.raises((Unsupported, TypeError)):
            rule(STEP, *abstract_args, **abstract_kwargs)
        return
    try:
        got = rule(STEP, *abstract_args, **abstract_kwargs)
    except Unsupported:
        return  # a refusal is always allowed: the recorded pass decides
    if isinstance(expected, torch.Tensor):
        assert isinstance(got, Value) and got.shape == tuple(expected.shape) and got.dtype == expected.dtype
    else:
        assert [g.shape for g in got] == [tuple(e.shape) for e in expected]


shapes = st.lists(st.integers(1, 4), min_size=0, max_size=4).map(tuple)
dims = st.integers(-5, 5)


@settings(max_examples=60, deadline=None)
@given(shapes, dims, dims)
def test_transpose(shape: tuple[int, ...], a: int, b: int) -> None:
    x = torch.zeros(shape)
    agree(METHODS["transpose"], lambda t, i, j: t.transpose(i, j), x, a, b)
    agree(FUNCTIONS[torch.transpose], torch.transpose, x, a, b)


@settings(max_examples=60, deadline=None)
@given(shapes, st.lists(dims, max_size=5), st.booleans())
def test_permute(shape: tuple[int, ...], order: list[int], as_tuple: bool) -> None:
    x = torch.zeros(shape)
    if as_tuple:
        agree(METHODS["permute"], lambda t, o: t.permute(o), x, tuple(order))
    else:
        agree(METHODS["permute"], lambda t, *o: t.permute(*o), x, *order)
    agree(FUNCTIONS[torch.permute], torch.permute, x, tuple(order))


@st.composite
def reshape_targets(draw: st.DrawFn, shape: tuple[int, ...]) -> list[int]:
    """Mostly valid targets for ``shape`` (its sizes regrouped, one of them possibly ``-1``), sometimes any list."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.lists(st.integers(-2, 6), max_size=4))
    sizes = draw(st.permutations(list(shape))) if shape else []
    target: list[int] = []
    for size in sizes:
        if target and draw(st.booleans()):
            target[-1] *= size
        else:
            target.append(size)
    target = target or [1]
    if draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    return target


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_reshape(data: st.DataObject) -> None:
    shape = data.draw(shapes)
    target = data.draw(reshape_targets(shape))
    x = torch.zeros(shape)
    agree(METHODS["reshape"], lambda t, *s: t.reshape(*s), x, *target)
    agree(FUNCTIONS[torch.reshape], torch.reshape, x, tuple(target))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 3), max_size=3).map(tuple), st.lists(st.integers(-2, 4), max_size=4))
def test_expand(shape: tuple[int, ...], target: list[int]) -> None:
    agree(METHODS["expand"], lambda t, *s: t.expand(*s), torch.zeros(shape), *target)


@settings(max_examples=60, deadline=None)
@given(shapes, dims)
def test_unbind(shape: tuple[int, ...], dim: int) -> None:
    x = torch.zeros(shape)
    agree(METHODS["unbind"], lambda t, d: t.unbind(d), x, dim)
    agree(FUNCTIONS[torch.unbind], torch.unbind, x, dim)


index_items = st.one_of(
    st.integers(-5, 5),
    st.none(),
    st.just(Ellipsis),
    st.builds(slice, st.one_of(st.none(), st.integers(-5, 5)), st.one_of(st.none(), st.integers(-5, 5)),
              st.one_of(st.none(), st.integers(-1, 3))),
    st.just([0, 1]),
)


@settings(max_examples=120, deadline=None)
@given(shapes, st.one_of(index_items, st.lists(index_items, max_size=5).map(tuple)))
def test_basic_indexing(shape: tuple[int, ...], index: Any) -> None:
    agree(FUNCTIONS[operator.getitem], lambda t, i: t[i], torch.zeros(shape), index)


@settings(max_examples=60, deadline=None)
@given(shapes, st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), st.booleans(), st.booleans())
def test_layer_norm(shape: tuple[int, ...], normalized: tuple[int, ...], weight: bool, bias: bool) -> None:
    x = torch.randn(shape)
    w = torch.ones(normalized) if weight else None
    b = torch.zeros(normalized) if bias else None
    agree(FUNCTIONS[F.layer_norm], F.layer_norm, x, normalized, w, b)
    if len(normalized) == 1 and (weight == bias):
        layer = nn.LayerNorm(normalized[0], elementwise_affine=weight)
        agree(lambda step, t: MODULES[nn.LayerNorm](step, layer, t), layer, x)


@settings(max_examples=60, deadline=None)
@given(shapes, st.integers(0, 5), st.booleans(), st.booleans())
def test_group_norm(shape: tuple[int, ...], groups: int, affine: bool, wrong_width: bool) -> None:
    x = torch.randn(shape)
    channels = (shape[1] if len(shape) >= 2 else 1) + int(wrong_width)
    w, b = (torch.ones(channels), torch.zeros(channels)) if affine else (None, None)
    agree(FUNCTIONS[F.group_norm], F.group_norm, x, groups, w, b)
    if groups >= 1 and channels % groups == 0:  # the layer's own constructor refuses the rest
        layer = nn.GroupNorm(groups, channels, affine=affine)
        agree(lambda step, t: MODULES[nn.GroupNorm](step, layer, t), layer, x)


@settings(max_examples=40, deadline=None)
@given(shapes, shapes)
def test_reshape_as(shape: tuple[int, ...], other: tuple[int, ...]) -> None:
    agree(METHODS["reshape_as"], lambda t, o: t.reshape_as(o), torch.zeros(shape), torch.zeros(other))


@settings(max_examples=60, deadline=None)
@given(*(st.lists(st.integers(1, 3), min_size=4, max_size=4).map(tuple) for _ in range(3)))
def test_attention(q: tuple[int, ...], k: tuple[int, ...], v: tuple[int, ...]) -> None:
    agree(FUNCTIONS[F.scaled_dot_product_attention], F.scaled_dot_product_attention,
          torch.randn(q), torch.randn(k), torch.randn(v))


def test_attention_with_a_mask_dropout_or_causal_flag_is_refused() -> None:
    q = abstract(torch.zeros(1, 2, 3, 4))
    rule = FUNCTIONS[F.scaled_dot_product_attention]
    for kwargs in ({"attn_mask": q}, {"dropout_p": 0.1}, {"is_causal": True}):
        with pytest.raises(Unsupported):
            rule(STEP, q, q, q, **kwargs)


def test_arithmetic_methods_broadcast_and_refuse_extra_arguments() -> None:
    a, b = abstract(torch.zeros(2, 1, 3)), abstract(torch.zeros(4, 1))
    assert METHODS["mul"](STEP, a, b).shape == (2, 4, 3)
    with pytest.raises(TypeError):
        METHODS["add"](STEP, a, b, alpha=2)


class Unpacks(nn.Module):
    """Unpacks a traced shape twice; notes which ``dis`` torch.fx sees while tracing."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.seen: list[Any] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        self.seen.append(torch.fx.proxy.dis)
        rows, columns, _ = x.shape
        return self.fc(x).reshape(batch * length, width + rows - columns)


def test_tracing_disassembles_each_function_once_and_restores_dis() -> None:
    model = Unpacks()
    graph = PathTracer().trace(model)
    (stand_in,) = model.seen
    assert stand_in is not dis
    code = Unpacks.forward.__code__
    assert stand_in.get_instructions(code) is stand_in.get_instructions(code)  # memoized
    assert list(stand_in.get_instructions(code)) == list(dis.get_instructions(code))
    assert torch.fx.proxy.dis is dis
    getitems = [n for n in graph.nodes if n.op == "call_function" and n.target is operator.getitem]
    assert len(getitems) == 6  # the two unpackings' three targets each
    with pytest.raises(RuntimeError):
        PathTracer().trace(nn.Sequential(nn.Linear(2, 2), Fails()))
    assert torch.fx.proxy.dis is dis
    assert isinstance(fx.GraphModule(Unpacks(), graph), fx.GraphModule)


class Fails(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("not traceable")
