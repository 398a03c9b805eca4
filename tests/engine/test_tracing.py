"""Partial tracing: what traces becomes a graph, what does not becomes a leaf with its reason, nothing raises."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from binarize.engine.tracing import LEAF_MODULES, register_leaf, trace_partially
from binarize.nn import BinaryConv2d
from timm_models import TIMM_MODELS, create_model


class ValueGate(nn.Module):
    """Data-dependent control flow: fx cannot trace this forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) if x.mean() > 0 else -x


class Block(nn.Module):
    """Traceable: a conv, a functional conv on its own parameter, and a residual add."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.kernel = nn.Parameter(torch.randn(4, 4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.conv(x), self.kernel) + x


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block = Block()
        self.gates = nn.ModuleList([ValueGate(), ValueGate()])
        self.down = nn.Conv2d(4, 8, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(self.stem(x))
        for gate in self.gates:
            x = gate(x)
        return self.down(x)


class RootUntraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = Block()
        self.second = nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        if x.sum() > 0:  # data-dependent, in the model's own forward
            x = x * 2
        return self.second(x)


def test_failing_submodules_become_leaves_and_the_rest_is_traced() -> None:
    model = Net()
    result = trace_partially(model)
    root = result.regions[0]
    assert root.path == "" and root.module is model
    calls = [n.target for n in root.graph_module.graph.nodes if n.op == "call_module"]
    assert calls == ["stem", "block.conv", "gates.0", "gates.1", "down"]  # traced through block, gates are leaves
    untraced = {u["name"]: u for u in result.untraced}
    assert set(untraced) == {"gates.0", "gates.1"}
    assert untraced["gates.0"]["type"] == "ValueGate" and "TraceError" in untraced["gates.0"]["reason"]
    assert "same class as gates.0" in untraced["gates.1"]["reason"]
    # The graph still runs and computes what the model computes.
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(root.graph_module(x), model(x))


def test_nodes_carry_the_path_of_the_module_that_created_them() -> None:
    result = trace_partially(Net())
    nodes = list(result.regions[0].graph_module.graph.nodes)
    functional = next(n for n in nodes if n.op == "call_function" and n.target is F.conv2d)
    assert functional.meta["module_path"] == "block"
    kernel = next(n for n in nodes if n.op == "get_attr" and n.target == "block.kernel")
    assert kernel.meta["module_path"] == "block"
    assert next(n for n in nodes if n.target == "down").meta["module_path"] == "down"
    assert next(n for n in nodes if n.op == "placeholder").meta["module_path"] == ""


def test_untraceable_root_traces_its_children_as_regions() -> None:
    model = RootUntraceable()
    result = trace_partially(model)
    assert result.untraced[0]["name"] == "" and result.untraced[0]["type"] == "RootUntraceable"
    assert [r.path for r in result.regions] == ["first", "second"]
    inner = result.regions[0].graph_module.graph
    paths = {n.meta["module_path"] for n in inner.nodes if n.op == "call_function"}
    assert paths == {"first"}


def test_untraceable_submodules_have_their_children_traced() -> None:
    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gate = ValueGate()
            self.gate.conv = nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU())  # a traceable child inside a leaf

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.gate(x)

    result = trace_partially(Wrapper())
    assert [r.path for r in result.regions] == ["", "gate.conv"]
    assert [u["name"] for u in result.untraced] == ["gate"]


def test_binary_layers_and_registered_classes_are_leaves() -> None:
    class Opaque(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Conv2d(4, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    model = nn.Sequential(BinaryConv2d(4, 4, 3, padding=1, input_binarizer="ste"), Opaque())
    calls = lambda: [n.target for n in trace_partially(model).regions[0].graph_module.graph.nodes  # noqa: E731
                     if n.op == "call_module"]
    assert calls() == ["0", "1.inner"]
    register_leaf(Opaque)
    try:
        assert calls() == ["0", "1"]
    finally:
        LEAF_MODULES.unregister(f"{Opaque.__module__}.{Opaque.__qualname__}")


def test_tracing_leaves_the_model_untouched() -> None:
    model = Net()
    before = copy.deepcopy(model.state_dict())
    modules = [type(m) for m in model.modules()]
    trace_partially(model)
    assert [type(m) for m in model.modules()] == modules
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# A spread of the matrix's architectures (every third), plus one that plain symbolic_trace cannot trace.
TRACE_SAMPLE = TIMM_MODELS[::3] + [a for a in TIMM_MODELS if a.name == "mobilevit_xxs"]


@pytest.mark.parametrize("arch", TRACE_SAMPLE, ids=[a.id for a in TRACE_SAMPLE])
def test_timm_architectures_trace_partially_without_raising(arch) -> None:
    model = create_model(arch)
    result = trace_partially(model)
    assert result.regions, "at least one region must be traced"
    for region in result.regions:
        assert isinstance(region.graph_module, fx.GraphModule)
        assert region.path == "" or model.get_submodule(region.path) is region.module
    for entry in result.untraced:
        assert entry["reason"]
