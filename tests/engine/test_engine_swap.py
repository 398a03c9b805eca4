"""The module-swap pass: bit-identical identity conversion, copies vs in place, shared modules, skips, atomicity."""

from __future__ import annotations

import copy
import gc
import json
import threading
from typing import Any

import pytest
import timm
import torch
from torch import nn

import binarize.api as api
from binarize.api import binarize, plan
from binarize.coverage import weight_coverage
from binarize.engine import HANDLERS, Outcome, Report
from binarize.errors import BinarizeError, RecipeError
from binarize.nn import BinaryConv2d, BinaryLinear
from binarize.recipe import ACTIONS, Recipe, Rule, RuleAction

CONVERT_ALL = Recipe("all", rules=[Rule.binarize({"type": ["Conv1d", "Conv2d", "ConvTranspose2d", "Linear"]})])


def snapshot(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, type], dict[str, bool]]:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    types = {n: type(m) for n, m in model.named_modules()}
    flags = {n: m.training for n, m in model.named_modules()}
    return state, types, flags


def assert_same(model: nn.Module, before: tuple) -> None:
    state, types, flags = snapshot(model)
    assert types == before[1]
    assert flags == before[2]
    assert state.keys() == before[0].keys()
    for key, value in state.items():
        assert torch.equal(value, before[0][key]), key


def test_identity_is_bit_identical_on_a_small_cnn(tiny_cnn: nn.Module, tiny_image: torch.Tensor) -> None:
    tiny_cnn.eval()
    binary = binarize(tiny_cnn, "identity")
    report = binary.binarize_report
    assert len(report.replaced) == 5 and all(e["reason"] != "" for e in report.skipped)
    assert {type(m) for m in binary.modules()} >= {BinaryConv2d, BinaryLinear}
    assert torch.equal(binary(tiny_image), tiny_cnn(tiny_image))
    binary.train(), tiny_cnn.train()
    assert torch.equal(binary(tiny_image), tiny_cnn(tiny_image))


def test_identity_is_bit_identical_on_a_timm_model() -> None:
    model = timm.create_model("resnet10t", num_classes=10).eval()
    binary = binarize(model, "identity")
    assert len(binary.binarize_report.replaced) == sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(binary(x), model(x))


def test_input_model_is_untouched(tiny_cnn: nn.Module, tiny_image: torch.Tensor) -> None:
    before = snapshot(tiny_cnn)
    binary = binarize(tiny_cnn, "reactnet", example_inputs=tiny_image)
    assert binary is not tiny_cnn
    assert_same(tiny_cnn, before)
    assert not hasattr(tiny_cnn, "binarize_report")
    assert binary.binarize_report.replaced


def test_inplace_converts_the_model_itself(tiny_cnn: nn.Module) -> None:
    out = binarize(tiny_cnn, "bireal", inplace=True)
    assert out is tiny_cnn
    assert isinstance(tiny_cnn.body[0], BinaryConv2d)
    assert type(tiny_cnn.stem[0]) is nn.Conv2d and type(tiny_cnn.head) is nn.Linear  # first / last kept
    assert tiny_cnn.binarize_report.recipe == "bireal"


@pytest.mark.parametrize("thing", [torch.randn(2), "resnet18", None, nn.Conv2d])
def test_a_non_module_is_a_type_error(thing: object) -> None:
    with pytest.raises(TypeError, match="expects a torch.nn.Module, got"):
        binarize(thing, "identity")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expects a torch.nn.Module"):
        plan(thing, "identity")  # type: ignore[arg-type]


def test_class_instead_of_instance_gets_a_hint() -> None:
    with pytest.raises(TypeError, match="instantiate it first"):
        binarize(nn.Conv2d, "identity")  # type: ignore[arg-type]


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = self.a  # the same module under a second name
        self.blocks = nn.ModuleList([self.a, nn.Linear(4, 4)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks[1](self.b(self.a(x)))


def test_shared_modules_are_swapped_once_and_stay_shared() -> None:
    model = Shared()
    binary = binarize(model, "identity")
    assert isinstance(binary.a, BinaryLinear)
    assert binary.a is binary.b is binary.blocks[0]
    assert isinstance(binary.blocks[1], BinaryLinear)
    replaced = binary.binarize_report.replaced
    assert [(r["name"], r["aliases"]) for r in replaced] == [("a", ["b", "blocks.0"]), ("blocks.1", [])]
    x = torch.randn(3, 4)
    assert torch.equal(binary(x), model(x))


def test_shared_module_matches_by_any_of_its_names() -> None:
    recipe = Recipe("r", rules=[Rule.binarize({"type": "Linear"}), Rule.keep({"name": "blocks.0"})])
    binary = binarize(Shared(), recipe)
    assert type(binary.a) is nn.Linear and binary.a is binary.blocks[0]


class SameConv(nn.Conv2d):
    """A subclass with its own forward (like timm's Conv2dSame)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


class PlainSubclass(nn.Linear):
    """A subclass without its own forward."""


class Zoo(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.same = SameConv(3, 4, 3)
        self.plain = PlainSubclass(4, 4)
        self.lazy = nn.LazyLinear(4)
        self.param = nn.utils.parametrizations.weight_norm(nn.Linear(4, 4))
        self.down = nn.Conv2d(3, 8, 3, stride=2)
        self.ok = nn.Conv2d(3, 3, 3, padding=1)
        self.binary = BinaryLinear(4, 4)
        self.fp = nn.Linear(4, 4)


def test_skipped_layers_are_reported_with_reasons() -> None:
    recipe = Recipe(
        "r",
        rules=[Rule.binarize({"type": ["Conv2d", "Linear"]}, shortcut=True), Rule.keep({"name": "fp"})],
        defaults={"weight_binarizer": "ste"},
    )
    binary = binarize(Zoo(), recipe)
    report = binary.binarize_report
    assert [r["name"] for r in report.replaced] == ["ok"]
    reasons = {s["name"]: s["reason"] for s in report.skipped}
    assert set(reasons) == {"same", "plain", "lazy", "param", "down", "binary", "fp"}
    assert "with its own forward" in reasons["same"] and "SameConv" in reasons["same"]
    assert "only exact Linear" in reasons["plain"]
    assert "lazy" in reasons["lazy"]
    assert "parametrize" in reasons["param"]
    assert "not supported by BinaryConv2d" in reasons["down"] and "shortcut" in reasons["down"]
    assert reasons["binary"] == "already binary"
    assert reasons["fp"].startswith("kept in full precision by rules[1] select {name: fp}")
    types = {s["name"]: s["type"] for s in report.skipped}
    assert types["same"] == "SameConv" and types["binary"] == "BinaryLinear"
    assert type(binary.down) is nn.Conv2d


def test_layers_no_rule_selects_are_reported(tiny_mlp: nn.Module) -> None:
    binary = binarize(tiny_mlp, Recipe("r", rules=[Rule.binarize({"name": "fc2"})]))
    assert [r["name"] for r in binary.binarize_report.replaced] == ["fc2"]
    assert {s["name"]: s["reason"] for s in binary.binarize_report.skipped} == {
        "fc1": "no rule selects it",
        "fc3": "no rule selects it",
    }


def test_converting_twice_skips_binary_layers(tiny_mlp: nn.Module) -> None:
    once = binarize(tiny_mlp, Recipe("r", rules=[Rule.binarize({"name": "fc2"})]))
    twice = binarize(once, "identity")
    assert [r["name"] for r in twice.binarize_report.replaced] == ["fc1", "fc3"]
    assert twice.binarize_report.skipped == [{"name": "fc2", "type": "BinaryLinear", "reason": "already binary"}]
    with pytest.raises(RecipeError, match="matches no candidate.*'fc1': already binary"):
        binarize(twice, "identity")


def test_a_bare_layer_is_converted_and_returned() -> None:
    layer = nn.Linear(4, 3)
    binary = binarize(layer, "identity")
    assert isinstance(binary, BinaryLinear)
    assert binary.binarize_report.replaced[0]["name"] == ""
    x = torch.randn(2, 4)
    assert torch.equal(binary(x), layer(x))


def test_an_error_leaves_an_inplace_model_unchanged(tiny_cnn: nn.Module) -> None:
    before = snapshot(tiny_cnn)
    bad_option = Recipe(
        "r",
        rules=[Rule.binarize({"type": ["Conv2d", "Linear"]}),
               Rule.binarize({"name": "head"}, input_binarizer={"name": "ede", "t_min": -1.0})],
    )
    with pytest.raises(RecipeError, match="cannot build BinaryLinear for 'head'.*t_min"):
        binarize(tiny_cnn, bad_option, inplace=True)
    assert_same(tiny_cnn, before)
    no_match = Recipe("r", rules=[Rule.binarize({"type": "Conv2d"}), Rule.keep({"name": "nothere"})])
    with pytest.raises(RecipeError, match="matches no candidate"):
        binarize(tiny_cnn, no_match, inplace=True)
    assert_same(tiny_cnn, before)


def test_an_uncopyable_model_suggests_inplace(tiny_mlp: nn.Module) -> None:
    tiny_mlp.lock = threading.Lock()
    with pytest.raises(BinarizeError, match="pass inplace=True"):
        binarize(tiny_mlp, "identity")
    assert isinstance(binarize(tiny_mlp, "identity", inplace=True).fc2, BinaryLinear)


def test_plan_changes_nothing(tiny_cnn: nn.Module, tiny_image: torch.Tensor) -> None:
    before = snapshot(tiny_cnn)
    the_plan = plan(tiny_cnn, "reactnet", example_inputs=tiny_image)
    assert_same(tiny_cnn, before)
    actions = {d.candidate.name: d.action for d in the_plan.decisions}
    assert actions == {"stem.0": "keep", "body.0": "binarize", "body.3": "binarize", "body.6": "binarize",
                       "head": "keep"}
    data = the_plan.to_dict()
    json.dumps(data)
    assert data["order_source"] == "forward"
    assert "body.0" in str(the_plan) and "binarize" in str(the_plan)


def test_report_to_dict_and_table(tiny_cnn: nn.Module) -> None:
    report = binarize(tiny_cnn, "xnor").binarize_report
    assert isinstance(report, Report)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["recipe"] == "xnor" and data["order_source"] == "fx"
    assert set(data["replaced"][0]) == {"name", "old_type", "new_type", "rule", "aliases", "executed"}
    assert set(data["skipped"][0]) == {"name", "type", "reason"}
    assert data["replaced"][0]["rule"].startswith("rules[0] select {type: [Conv1d, Conv2d, ConvTranspose2d, Linear]}")
    text = str(report)
    assert "old_type" in text and "BinaryConv2d" in text and "kept in full precision" in text


def test_a_new_rule_action_needs_no_engine_change(tiny_mlp: nn.Module) -> None:
    """A plugin can add a rule kind by registering its schema and its handler."""

    def parse(value: object, src: object, container: object, key: object) -> object:
        return value

    def handler(decision: object) -> Outcome:
        return Outcome(replacement=nn.Identity())

    ACTIONS.register("drop", RuleAction("drop", parse, default=True))
    HANDLERS.register("drop", handler)
    try:
        recipe = Recipe("r", rules=[Rule({"name": "fc2"}, "drop")])
        out = binarize(tiny_mlp, recipe)
        assert isinstance(out.fc2, nn.Identity)
        assert out.binarize_report.replaced[0]["new_type"] == "Identity"
    finally:
        ACTIONS.unregister("drop")
        HANDLERS.unregister("drop")


def test_model_state_survives_a_deep_copy_of_the_result(tiny_cnn: nn.Module, tiny_image: torch.Tensor) -> None:
    binary = binarize(tiny_cnn, "reactnet").eval()
    clone = copy.deepcopy(binary)
    assert torch.equal(clone(tiny_image), binary(tiny_image))


class _FunctionalUse(nn.Module):
    """Owns two Linear layers but calls one of them through its weight, never as a module."""

    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(4, 4)
        self.bypassed = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(self.used(x), self.bypassed.weight, self.bypassed.bias)


def test_layers_the_example_pass_does_not_reach_are_converted_and_marked() -> None:
    model = _FunctionalUse()
    out = binarize(model, "identity", example_inputs=torch.zeros(2, 4))
    report = out.binarize_report
    assert [(r["name"], r["executed"]) for r in report.replaced] == [("used", True), ("bypassed", False)]
    assert "bypassed (not seen in the example pass)" in str(report)
    # the functional use still reads the (full-precision) weight, which coverage names
    found = {w["name"]: w for w in weight_coverage(out, (torch.zeros(2, 4),))["full_precision_weights"]}
    assert found["bypassed.weight"]["reason"].startswith("used in a functional call")
    # Without a recorded forward pass nothing is known: the layer is converted and marked unknown.
    unknown = binarize(model, "identity").binarize_report
    assert {r["executed"] for r in unknown.replaced} == {None}


@pytest.mark.parametrize("enabled", [True, False])
def test_binarize_pauses_the_garbage_collector_and_restores_it(enabled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    real_plan = api.make_plan

    def recording_plan(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(api, "make_plan", recording_plan)
    was = gc.isenabled()
    _collector_on(enabled)
    try:
        binarize(nn.Sequential(nn.Linear(2, 2)), "identity")
        assert seen == [False] and gc.isenabled() is enabled
        with pytest.raises(TypeError):
            binarize("not a model", "identity")  # type: ignore[arg-type]
        assert gc.isenabled() is enabled
    finally:
        _collector_on(was)


def _collector_on(on: bool) -> None:
    if on:
        gc.enable()
    else:
        gc.disable()
