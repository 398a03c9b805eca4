"""Graph rules: recipe syntax and errors, pattern matching, rewriting, structure-only mode and verification."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
import yaml
from torch import fx, nn

from binarize import RecipeError, binarize, load_recipe
from binarize.engine.graph_factories import GRAPH_FACTORIES, register_graph_factory, single_module
from binarize.engine.patterns import Match
from binarize.nn import BinaryConv2d
from binarize.nn.downsample import ConsistentDownsample


# --------------------------------------------------------------------------------------------------------------
# Test factories (function-preserving refactorings), registered for the duration of this module
# --------------------------------------------------------------------------------------------------------------
class ConvAct(nn.Module):
    """A fused conv + activation: computes exactly what the two calls computed."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module) -> None:
        super().__init__()
        self.conv, self.act = conv, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class CatConv(nn.Module):
    """``conv(cat(a, b, dim=1))`` with the convolution split along its input channels (same function)."""

    def __init__(self, conv: nn.Conv2d, split: int) -> None:
        super().__init__()
        self.first = nn.Conv2d(split, conv.out_channels, conv.kernel_size, bias=conv.bias is not None)
        self.second = nn.Conv2d(conv.in_channels - split, conv.out_channels, conv.kernel_size, bias=False)
        with torch.no_grad():
            self.first.weight.copy_(conv.weight[:, :split])
            self.second.weight.copy_(conv.weight[:, split:])
            if conv.bias is not None:
                self.first.bias.copy_(conv.bias)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.first(a) + self.second(b)


@pytest.fixture(autouse=True, scope="module")
def _test_factories() -> Iterator[None]:
    @register_graph_factory("test_conv_act", function_preserving=True, description="conv + act, fused")
    def conv_act(match: Match) -> nn.Module:
        return ConvAct(match.modules[0], match.modules[1])

    @register_graph_factory("test_cat_conv", function_preserving=True, description="cat + conv, split")
    def cat_conv(match: Match, split: int) -> nn.Module:
        return CatConv(match.modules[1], split)

    @register_graph_factory("test_single_conv", function_preserving=True, description="a conv, copied")
    def single_conv(match: Match) -> nn.Module:
        conv = single_module(match, nn.Conv2d, "test_single_conv")
        twin = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding)
        twin.load_state_dict(conv.state_dict())
        return twin

    yield
    for name in ("test_conv_act", "test_cat_conv", "test_single_conv"):
        GRAPH_FACTORIES.unregister(name)


def recipe(*graph_rules: dict, rules: list | None = None) -> dict:
    return {"name": "graph-test", "graph_rules": list(graph_rules), "rules": rules or []}


# --------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------
class Fusion(nn.Module):
    """A skip fusion written in forward code: ``conv1x1(cat(x, skip))``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.fuse = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.stem(x)
        return self.fuse(torch.cat([self.body(skip), skip], dim=1))


class Gate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.mean() > 0 else -x  # data-dependent: not traceable


class Mixed(nn.Module):
    """An untraceable submodule, a functional conv on its own parameter, and a strided conv doubling channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.gate = Gate()
        self.kernel = nn.Parameter(torch.randn(8, 8, 3, 3) * 0.1)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gate(self.stem(x))
        x = F.conv2d(x, self.kernel, padding=1)
        return self.head(self.down(x).mean((2, 3)))


# --------------------------------------------------------------------------------------------------------------
# Rewriting
# --------------------------------------------------------------------------------------------------------------
def test_module_chain_is_replaced_and_structure_only_preserves_the_function() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
    x = torch.randn(2, 3, 8, 8)
    out = binarize(model, recipe({"pattern": ["Conv2d", "ReLU"], "replace": "test_conv_act"}),
                   structure_only=True, verify=(x,))
    report = out.binarize_report
    assert [r["new_type"] for r in report.graph_replaced] == ["ConvAct", "ConvAct"]
    assert report.structure_only and report.replaced == [] and report.untraced == []
    assert report.verify["max_abs_diff"] == 0.0 and report.verify["expected_equal"] is True
    torch.testing.assert_close(out(x), model(x))
    assert isinstance(out, fx.GraphModule)  # a two-call chain rewrites the Sequential's graph


def test_cat_then_conv_in_forward_code_is_rewritten() -> None:
    model = Fusion()
    rule = {"pattern": [{"cat": {"dim": 1}}, {"Conv2d": {"kernel_size": 1, "in_channels": "2 * out_channels"}}],
            "replace": "test_cat_conv", "args": {"split": 4}}
    x = torch.randn(2, 3, 8, 8)
    out = binarize(model, recipe(rule), structure_only=True, verify=(x,))
    (entry,) = out.binarize_report.graph_replaced
    assert entry["name"] == "fuse" and entry["old_types"] == "cat -> Conv2d" and entry["new_type"] == "CatConv"
    assert isinstance(out.get_submodule("fuse"), CatConv)
    assert not any(n.target is torch.cat for n in out.graph.nodes)
    torch.testing.assert_close(out(x), model(x))
    assert out.binarize_report.verify["max_abs_diff"] < 1e-5


def test_a_value_with_two_users_does_not_match() -> None:
    class TwoUsers(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.act(y) + y  # the conv output is used twice: fusing would change the function

    rule = {"pattern": ["Conv2d", "ReLU"], "replace": "test_conv_act", "optional": True}
    assert binarize(TwoUsers(), recipe(rule), structure_only=True).binarize_report.graph_replaced == []


def test_longer_patterns_win_and_single_module_matches_keep_the_model_class() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 1))
    rules = recipe(
        {"pattern": ["Conv2d"], "replace": "test_single_conv"},
        {"pattern": ["Conv2d", "ReLU"], "replace": "test_conv_act"},
    )
    out = binarize(model, rules, structure_only=True)
    kinds = {r["name"]: r["new_type"] for r in out.binarize_report.graph_replaced}
    assert kinds == {"0": "ConvAct", "2": "Conv2d"}
    only_single = binarize(model, recipe({"pattern": ["Conv2d"], "replace": "test_single_conv"}), structure_only=True)
    assert type(only_single) is nn.Sequential  # one-call matches are swapped on the module tree


def test_within_restricts_rules_by_path() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.ReLU())
    rule = {"pattern": ["Conv2d", "ReLU"], "replace": "test_conv_act", "within": "2"}
    out = binarize(model, recipe(rule), structure_only=True)
    assert [r["name"] for r in out.binarize_report.graph_replaced] == ["2"]


def test_reactnet_ds_on_a_model_with_untraceable_parts() -> None:
    model = Mixed()
    x = torch.randn(2, 3, 8, 8)
    out = binarize(model, "reactnet-ds", example_inputs=(x,))
    report = out.binarize_report
    assert [u["name"] for u in report.untraced] == ["gate"] and "TraceError" in report.untraced[0]["reason"]
    rewrites = {r["name"]: (r["old_types"], r["new_type"], r["function_preserving"]) for r in report.graph_replaced}
    assert rewrites == {
        "down": ("Conv2d", "ConsistentDownsample", False),
        "kernel_layer": ("conv2d", "Conv2d", True),  # the functional conv on its own parameter, now a layer
    }
    assert isinstance(out.get_submodule("kernel_layer"), BinaryConv2d)  # ... which the layer rules binarized
    assert "kernel" not in dict(out.named_parameters())
    down = out.get_submodule("down")
    assert isinstance(down, ConsistentDownsample)
    assert all(isinstance(b, BinaryConv2d) and b.shortcut for b in down.branches)
    out.train()
    y = out(x)
    assert y.shape == (2, 10)
    y.square().mean().backward()
    assert all(b.weight.grad is not None for b in down.branches)
    assert "graph rewrites:" in str(report) and "untraced" in str(report)


def test_reactnet_ds_on_timm_resnet_keeps_the_model_class() -> None:
    model = timm.create_model("resnet18", pretrained=False, num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    out = binarize(model, "reactnet-ds", example_inputs=(x,), verify=(x,))
    assert type(out) is type(model)
    names = sorted(r["name"] for r in out.binarize_report.graph_replaced)
    assert names == sorted(f"layer{i}.0.{n}" for i in (2, 3, 4) for n in ("conv1", "downsample.0"))
    assert out.binarize_report.verify["expected_equal"] is False
    assert out(x).shape == (2, 10)


def test_factory_refusals_are_reported_as_skipped() -> None:
    model = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2), nn.ReLU())
    rule = {"pattern": [{"Conv2d": {"stride": 2}}], "replace": "consistent_downsample"}
    out = binarize(model, recipe(rule), structure_only=True)
    (skipped,) = out.binarize_report.skipped
    assert skipped["name"] == "0" and "groups=2" in skipped["reason"]
    assert type(out[0]) is nn.Conv2d


def test_consistent_downsample_reproduces_the_output_size() -> None:
    for conv in (nn.Conv2d(4, 8, 3, 2, 1), nn.Conv2d(4, 8, 1, 2, 0), nn.Conv2d(4, 12, 5, 2, 2)):
        block = ConsistentDownsample.from_conv(conv)
        for size in (7, 8):
            x = torch.randn(1, 4, size, size)
            assert block(x).shape == conv(x).shape
        torch.testing.assert_close(block.branches[1].weight, conv.weight[4:8])


# --------------------------------------------------------------------------------------------------------------
# Recipe syntax and errors
# --------------------------------------------------------------------------------------------------------------
def test_graph_rules_round_trip_and_extend() -> None:
    data = recipe({"pattern": [{"cat": {"dim": 1}}, {"Conv2d": {"kernel_size": 1}}], "replace": "test_cat_conv",
                   "args": {"split": 4}, "within": "re:fuse", "optional": True})
    loaded = load_recipe(data)
    assert load_recipe(loaded.to_dict()) == loaded
    assert loaded.to_dict()["graph_rules"] == data["graph_rules"]
    ds = load_recipe("reactnet-ds")
    assert [r.replace for r in ds.graph_rules] == ["consistent_downsample", "functional_layer", "functional_layer"]
    assert ds.rules == load_recipe("reactnet").rules


def _load_error(tmp_path: Path, text: str) -> RecipeError:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as info:
        load_recipe(str(path))
    return info.value


@pytest.mark.parametrize(
    ("graph_rules", "line", "message"),
    [
        ("  - pattern: [Conv2D]\n    replace: consistent_downsample\n", 3, "Did you mean 'Conv2d'"),
        ("  - pattern: [Conv2d]\n    replace: consistent_downsampling\n", 4, "Known factories"),
        ("  - pattern:\n      - Conv2d: {stride: \"__import__('os')\"}\n    replace: consistent_downsample\n", 4,
         "Call is not allowed"),
        ("  - pattern:\n      - cat: {axis: 1}\n    replace: consistent_downsample\n", 4, "Its arguments: tensors, dim"),
        ("  - pattern: Conv2d\n    replace: consistent_downsample\n", 3, "non-empty list"),
        ("  - pattern: [Conv2d]\n", 3, "needs 'replace'"),
        ("  - pattern: [Conv2d]\n    replace: consistent_downsample\n    optinal: true\n", 5, "Did you mean 'optional'"),
    ],
)
def test_graph_rule_errors_name_file_and_line(tmp_path: Path, graph_rules: str, line: int, message: str) -> None:
    error = _load_error(tmp_path, "name: bad\ngraph_rules:\n" + graph_rules)
    assert error.file.endswith("bad.yaml") and error.line == line, str(error)
    assert message in str(error)


def test_a_graph_rule_matching_nothing_is_an_error_unless_optional(tmp_path: Path) -> None:
    path = tmp_path / "strict.yaml"
    path.write_text(yaml.safe_dump(recipe({"pattern": ["PixelUnshuffle"], "replace": "test_single_conv"}), sort_keys=False))
    with pytest.raises(RecipeError, match="matches nothing") as info:
        binarize(nn.Sequential(nn.Conv2d(3, 3, 1)), str(path))
    assert info.value.line == 3
    relaxed = recipe({"pattern": ["PixelUnshuffle"], "replace": "test_single_conv", "optional": True})
    assert binarize(nn.Sequential(nn.Conv2d(3, 3, 1)), relaxed).binarize_report.graph_replaced == []


def test_functional_calls_no_rule_converts_are_listed() -> None:
    rule = {"pattern": [{"Conv2d": {"stride": 2}}], "replace": "consistent_downsample", "optional": True}
    out = binarize(Mixed(), recipe(rule), structure_only=True)
    (entry,) = [s for s in out.binarize_report.skipped if s["type"] == "F.conv2d"]
    assert entry["name"] == "<root>:conv2d" and "no graph rule converts" in entry["reason"]
