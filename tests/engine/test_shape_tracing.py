"""Tracing that carries shapes: code that reads shapes in plain Python traces, as it is called, and says what it fixed."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import fx, nn

from binarize.engine.shape_tracing import ShapeTracer, check_constant, record_module_inputs
from binarize.engine.tracing import graph_module_of, trace_partially


class ShapeReading(nn.Module):
    """Research-code habits: shape asserts, len() of shapes, unpacking, loops and branches on sizes."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.emb = nn.Linear(8, channels)

    def forward(self, x: torch.Tensor, t: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        assert x.shape[1] == self.channels, "wrong channel count"
        if not torch.is_tensor(t):
            t = torch.tensor([t])
        elif len(t.shape) == 0:
            t = t[None]
        half = 4
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        angles = t[:, None].float() * freqs[None]
        e = self.emb(torch.cat([angles.sin(), angles.cos()], dim=-1))
        h = self.conv(x)
        while len(e.shape) < len(h.shape):
            e = e[..., None]
        b, c, *spatial = h.shape
        flat = (h + e).reshape(b, c, -1)
        if x.ndim == 4 and scale is not None:
            flat = flat * scale
        out = flat.softmax(dim=-1).view(b, c, *spatial)
        if out.shape[0] >= 64:  # a branch on the batch size, as diffusers writes for large batches
            out = out.contiguous()
        return out


def _inputs(batch: int = 2, size: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(batch, 4, size, size), torch.randint(0, 1000, (batch,))


def _shape_trace(model: nn.Module, inputs: tuple) -> tuple[fx.GraphModule, ShapeTracer]:
    recorded = record_module_inputs(model, inputs)
    assert recorded is not None
    tracer = ShapeTracer(recorded.mode)
    graph = tracer.trace_call(model, *recorded.of(model))
    return graph_module_of(model, graph, type(model).__name__), tracer


def test_plain_tracing_stops_and_says_example_inputs_would_help() -> None:
    result = trace_partially(ShapeReading())
    assert [u["name"] for u in result.untraced] == [""]
    assert "pass example_inputs" in result.untraced[0]["reason"]


def test_with_example_inputs_the_whole_forward_traces() -> None:
    model = ShapeReading().eval()
    inputs = _inputs()
    recorded = record_module_inputs(model, inputs)
    result = trace_partially(model, inputs=recorded)
    assert result.untraced == []
    region = result.regions[0]
    assert region.path == ""
    calls = [n.target for n in region.graph_module.graph.nodes if n.op == "call_module"]
    assert calls == ["emb", "conv"]
    # what Python decided, readably
    assert "x.shape[1] == 4 -> True" in region.decisions
    assert any(d.endswith(">= 64 -> False") for d in region.decisions)


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 3), size=st.integers(1, 7), other_batch=st.integers(1, 5), other_size=st.integers(1, 9))
def test_sizes_stay_symbolic_where_they_only_flow_into_operations(
    batch: int, size: int, other_batch: int, other_size: int
) -> None:
    """Traced at one shape, the graph computes the module at other shapes (unpacked sizes are graph values)."""
    torch.manual_seed(0)
    model = ShapeReading().eval()
    graph_module, _ = _shape_trace(model, _inputs(batch, size))
    for shape in ((batch, size), (other_batch, other_size)):
        x, t = _inputs(*shape)
        with torch.no_grad():
            torch.testing.assert_close(graph_module(x, t), model(x, t), rtol=0, atol=0)


def test_constant_arguments_stay_constant_and_are_checked() -> None:
    model = ShapeReading().eval()
    graph_module, _ = _shape_trace(model, _inputs())  # traced with scale=None (the default)
    x, t = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(graph_module(x, t), model(x, t))
        torch.testing.assert_close(graph_module(x, t, None), model(x, t))
        with pytest.raises(ValueError, match=r"argument 'scale' was None when this module was traced.*got 2\.0"):
            graph_module(x, t, 2.0)


def test_a_module_traces_as_called_with_its_keyword_constants() -> None:
    """diffusers' Upsample2D(x, output_size=None): traced alone, the branch for None is kept (not a placeholder)."""

    class Upsample(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x: torch.Tensor, output_size: tuple[int, int] | None = None, *args, **kwargs) -> torch.Tensor:
            if len(args) > 0 or kwargs.get("scale", None) is not None:
                raise AssertionError("deprecated")
            if output_size is None:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            else:
                x = F.interpolate(x, size=output_size, mode="nearest")
            return self.conv(x)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = Upsample()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.up(x, None)

    net = Net().eval()
    recorded = record_module_inputs(net, (torch.randn(1, 3, 4, 4),))
    result = trace_partially(net.up, "up", inputs=recorded)
    graph = result.regions[0].graph_module.graph
    interpolate = next(n for n in graph.nodes if n.target is F.interpolate)
    assert interpolate.kwargs["scale_factor"] == 2.0 and interpolate.kwargs["size"] is None
    # plain tracing makes the arguments placeholders, which are never None: the forward cannot be traced
    assert [u["name"] for u in trace_partially(net.up, "up").untraced] == ["up"]


def test_branches_on_tensor_data_still_fail_and_children_are_traced() -> None:
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.inner(x)
            return y if y.sum() > 0 else -y

    model = nn.Sequential(DataDependent(), nn.Conv2d(3, 3, 1))
    recorded = record_module_inputs(model, (torch.randn(1, 3, 4, 4),))
    assert recorded is None  # it cannot even run on shapes alone
    result = trace_partially(model)
    assert [u["name"] for u in result.untraced] == ["0"]
    assert {r.path for r in result.regions} == {"", "0.inner"}


def test_check_constant() -> None:
    check_constant(None, None, "size")
    check_constant((2, 2), (2, 2), "size")
    check_constant((), (), "args")
    with pytest.raises(ValueError, match="'size' was None"):
        check_constant((4, 4), None, "size")
    with pytest.raises(ValueError, match="'flag' was True"):
        check_constant(1, True, "flag")  # 1 == True, but not the same constant
