"""deep_copy_module gives exactly what copy.deepcopy gives: the same object graph, shared where the original shares,
sharing nothing mutable with the original."""

from __future__ import annotations

import copy
import types
from collections import OrderedDict
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import fx, nn

from binarize import binarize
from binarize.engine.module_copy import deep_copy_module


class Annotated(nn.Module):
    """A module with the kinds of plain attributes user code keeps next to its layers."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.proj = nn.Linear(width, width)
        self.names = ["a", "b"]
        self.table = {"scale": 2.0, "modes": ("x", "y"), "nested": OrderedDict(k=[1, 2])}
        self.flags = {"on", "off"}
        self.shape = (width, width)
        self.register_buffer("running", torch.arange(float(width)))
        self.register_buffer("missing", None)
        self.shared_list = self.names  # the same list twice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) * self.table["scale"] + self.running


class CustomCopy(nn.Module):
    """A module with its own __deepcopy__, which the copy must call."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.copied_by_hand = False

    def __deepcopy__(self, memo: dict[int, Any]) -> "CustomCopy":
        new = CustomCopy()
        new.lin.load_state_dict(self.lin.state_dict())
        new.copied_by_hand = True
        return new


def _log_hook(module: nn.Module, args: Any, output: Any) -> None:
    module.calls = getattr(module, "calls", 0) + 1


def fingerprint(root: Any) -> Any:
    """A canonical form of the object graph under ``root``: types, values, and which objects are the same object
    (numbered in visiting order), with functions and classes by identity."""
    seen: dict[int, int] = {}

    def walk(obj: Any) -> Any:
        if isinstance(obj, (type(None), bool, int, float, complex, str, bytes, type, types.FunctionType,
                            types.BuiltinFunctionType, torch.dtype, torch.device)):
            return obj
        if id(obj) in seen:
            return ("same-as", seen[id(obj)])
        seen[id(obj)] = len(seen)
        if isinstance(obj, torch.Tensor):
            storage = walk(obj.untyped_storage()) if obj.device.type != "meta" else None
            values = obj.detach().flatten()
            summary = (values[:8].tolist(), values.double().sum().item()) if values.is_floating_point() else None
            return (type(obj), obj.dtype, tuple(obj.shape), obj.requires_grad, summary, storage)
        if isinstance(obj, torch.UntypedStorage):
            return ("storage", obj.nbytes())
        if isinstance(obj, types.MethodType):
            return ("method", obj.__func__, walk(obj.__self__))
        if isinstance(obj, dict):
            return (type(obj), [(walk(k), walk(v)) for k, v in obj.items()])
        if isinstance(obj, (list, tuple)):
            return (type(obj), [walk(v) for v in obj])
        if isinstance(obj, (set, frozenset)):
            return (type(obj), sorted(map(repr, obj)))
        if hasattr(obj, "__dict__"):
            return (type(obj), walk(vars(obj)))
        return (type(obj), repr(obj))

    return walk(root)


def mutable_objects(root: Any) -> tuple[set[int], set[int]]:
    """The ids of the modules, containers and other objects with state under ``root``, and the addresses of its
    tensors' storages."""
    objects: set[int] = set()
    storages: set[int] = set()

    def walk(obj: Any) -> None:
        if isinstance(obj, (type(None), bool, int, float, complex, str, bytes, tuple, type, types.FunctionType,
                            types.BuiltinFunctionType, torch.dtype, torch.device)):
            if isinstance(obj, tuple):
                for item in obj:
                    walk(item)
            return
        if id(obj) in objects:
            return
        objects.add(id(obj))
        if isinstance(obj, torch.Tensor):
            if obj.numel() and obj.device.type != "meta":
                storages.add(obj.untyped_storage().data_ptr())
        elif isinstance(obj, types.MethodType):
            walk(obj.__self__)
        elif isinstance(obj, dict):
            for key, value in obj.items():
                walk(key), walk(value)
        elif isinstance(obj, (list, set, frozenset)):
            for item in obj:
                walk(item)
        elif hasattr(obj, "__dict__"):
            walk(vars(obj))

    walk(root)
    return objects, storages


def shares_mutable_state(copy_: nn.Module, original: nn.Module) -> bool:
    """Whether the copy holds a module, container, other stateful object or tensor storage of the original."""
    ours, our_storages = mutable_objects(copy_)
    theirs, their_storages = mutable_objects(original)
    return bool(ours & theirs or our_storages & their_storages)


def assert_copies_like_deepcopy(model: nn.Module) -> nn.Module:
    expected = copy.deepcopy(model)
    got = deep_copy_module(model)
    assert fingerprint(got) == fingerprint(expected)
    assert not shares_mutable_state(got, model)
    ours, theirs = got.state_dict(), model.state_dict()
    assert list(ours) == list(theirs) and all(torch.equal(ours[k], theirs[k]) for k in theirs)
    return got


@st.composite
def module_trees(draw: st.DrawFn) -> tuple[nn.Module, int]:
    """Random networks and their width: common layers, user modules with plain attributes, a submodule registered
    twice, tied weights, forward hooks, training flags."""
    width = draw(st.integers(1, 4))
    pool: list[nn.Module] = []
    kinds = st.sampled_from(["linear", "norm", "relu", "annotated", "reuse", "tied", "sequential"])
    for kind in draw(st.lists(kinds, min_size=1, max_size=7)):
        if kind == "linear":
            layer: nn.Module = nn.Linear(width, width, bias=draw(st.booleans()))
        elif kind == "norm":
            layer = nn.BatchNorm1d(width)
        elif kind == "relu":
            layer = nn.ReLU()
        elif kind == "annotated":
            layer = Annotated(width)
        elif kind == "reuse" and pool:
            layer = pool[draw(st.integers(0, len(pool) - 1))]
        elif kind == "tied" and pool:
            source = next((m for m in pool if isinstance(m, nn.Linear)), None)
            layer = nn.Linear(width, width)
            if source is not None:
                layer.weight = source.weight
        else:
            layer = nn.Sequential(nn.Linear(width, width), nn.Tanh())
        if draw(st.booleans()):
            layer.register_forward_hook(_log_hook)
        layer.train(draw(st.booleans()))
        pool.append(layer)
    return nn.Sequential(*pool), width


@settings(max_examples=40, deadline=None)
@given(module_trees())
def test_random_module_trees_copy_like_deepcopy(tree: tuple[nn.Module, int]) -> None:
    model, width = tree
    got = assert_copies_like_deepcopy(model)
    model.eval()
    got.eval()
    x = torch.randn(2, width)
    with torch.no_grad():
        torch.testing.assert_close(got(x), model(x), rtol=0, atol=0)


class Recorder(nn.Module):
    """Counts the calls of the layers it hooks (its bound method is the hook)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def record(self, module: nn.Module, args: Any) -> None:
        self.count += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_a_hook_bound_to_a_module_of_the_model_binds_to_its_copy() -> None:
    recorder = Recorder()
    model = nn.Sequential(nn.Linear(2, 2), recorder)
    model[0].register_forward_pre_hook(recorder.record)
    got = assert_copies_like_deepcopy(model)
    hook = next(iter(got[0]._forward_pre_hooks.values()))
    assert hook.__self__ is got[1]
    got(torch.zeros(1, 2))
    assert (got[1].count, recorder.count) == (1, 0)


def test_a_module_with_its_own_deepcopy_is_copied_by_it() -> None:
    model = nn.Sequential(nn.Linear(3, 3), CustomCopy())
    got = deep_copy_module(model)
    assert got[1].copied_by_hand
    assert not shares_mutable_state(got, model)


def test_graph_modules_and_parametrized_layers_copy_like_deepcopy() -> None:
    traced = fx.symbolic_trace(nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)))
    got = deep_copy_module(traced)
    assert isinstance(got, fx.GraphModule) and str(got.graph) == str(traced.graph)
    assert not shares_mutable_state(got, traced)
    norm = nn.utils.parametrizations.weight_norm(nn.Linear(3, 3))
    got_norm = deep_copy_module(nn.Sequential(norm))
    torch.testing.assert_close(got_norm[0].weight, norm.weight, rtol=0, atol=0)
    assert not shares_mutable_state(got_norm, nn.Sequential(norm))


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "vit_tiny_patch16_224"])
def test_timm_networks_copy_like_deepcopy(name: str) -> None:
    timm = pytest.importorskip("timm")
    assert_copies_like_deepcopy(timm.create_model(name, pretrained=False))


def test_binarize_leaves_the_original_untouched_and_shares_nothing_with_it() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), Annotated(2), nn.Conv2d(4, 4, 3))
    before = fingerprint(model)
    out = binarize(model, "identity")
    assert fingerprint(model) == before
    assert not shares_mutable_state(out, model)

