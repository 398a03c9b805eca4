"""Selector precedence: defaults < type < name glob/regex < first/last < exact name; ties go to the later rule."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from torch import nn

from binarize.api import plan
from binarize.recipe import Recipe, Rule, Selector
from binarize.recipe.selectors import (
    LEVEL_DEFAULTS,
    LEVEL_EXACT,
    LEVEL_PATTERN,
    LEVEL_POSITION,
    LEVEL_TYPE,
)


class Net(nn.Module):
    """stem (Conv2d) -> blocks.0, blocks.1 (Conv2d) -> head (Linear), registered and run in that order."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.blocks = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def decide(rules: list[Rule], defaults: dict[str, Any] | None = None) -> dict[str, tuple[str | None, dict]]:
    recipe = Recipe("test", rules=rules, defaults=defaults or {})
    return {d.candidate.name: (d.action, d.options) for d in plan(Net(), recipe).decisions}


@pytest.mark.parametrize(
    ("selector", "level"),
    [
        (Selector(type="Conv2d"), LEVEL_TYPE),
        (Selector(name="blocks.*"), LEVEL_PATTERN),
        (Selector(name="re:blocks\\.\\d"), LEVEL_PATTERN),
        (Selector(name="blocks.[01]"), LEVEL_PATTERN),
        (Selector(first=True), LEVEL_POSITION),
        (Selector(last=True, type="Linear"), LEVEL_POSITION),
        (Selector(name="stem"), LEVEL_EXACT),
        (Selector(name="stem", first=True), LEVEL_EXACT),
        (Selector(name="s*", type="Conv2d"), LEVEL_PATTERN),
    ],
)
def test_selector_levels(selector: Selector, level: int) -> None:
    assert selector.precedence == level
    assert LEVEL_DEFAULTS < LEVEL_TYPE < LEVEL_PATTERN < LEVEL_POSITION < LEVEL_EXACT


# Selectors that all match ``stem`` (the first layer), one per level.
STEM_SELECTORS = {
    LEVEL_TYPE: {"type": "Conv2d"},
    LEVEL_PATTERN: {"name": "st*"},
    LEVEL_POSITION: "first",
    LEVEL_EXACT: {"name": "stem"},
}


@pytest.mark.parametrize(("low", "high"), list(itertools.combinations(sorted(STEM_SELECTORS), 2)))
@pytest.mark.parametrize("high_first", [False, True], ids=["high-rule-last", "high-rule-first"])
@pytest.mark.parametrize("high_action", ["keep", "binarize"])
def test_higher_level_wins_whatever_the_order(low: int, high: int, high_first: bool, high_action: str) -> None:
    low_action = "binarize" if high_action == "keep" else "keep"
    high_rule = Rule(STEM_SELECTORS[high], high_action)
    low_rule = Rule(STEM_SELECTORS[low], low_action)
    rules = [high_rule, low_rule] if high_first else [low_rule, high_rule]
    assert decide(rules)["stem"][0] == high_action


@pytest.mark.parametrize("level", sorted(STEM_SELECTORS))
def test_ties_go_to_the_later_rule(level: int) -> None:
    selector = STEM_SELECTORS[level]
    assert decide([Rule(selector, "binarize"), Rule(selector, "keep")])["stem"][0] == "keep"
    assert decide([Rule(selector, "keep"), Rule(selector, "binarize")])["stem"][0] == "binarize"


def test_type_rule_options_override_defaults() -> None:
    decisions = decide(
        [Rule.binarize({"type": "Conv2d"}, scale="channel_mean_abs"), Rule.binarize({"type": "Linear"})],
        defaults={"scale": "mean_abs", "weight_binarizer": "ste"},
    )
    assert decisions["blocks.0"][1] == {"scale": "channel_mean_abs", "weight_binarizer": "ste"}
    assert decisions["head"][1] == {"scale": "mean_abs", "weight_binarizer": "ste"}


def test_options_merge_in_precedence_order_not_file_order() -> None:
    decisions = decide(
        [
            Rule.binarize({"name": "blocks.0"}, scale="mean_abs"),  # level 4, written first
            Rule.binarize({"name": "blocks.*"}, activation="prelu", scale="learnable"),  # level 2
            Rule.binarize({"type": "Conv2d"}, scale="channel_mean_abs", input_shift=True),  # level 1
        ],
        defaults={"input_shift": False, "shortcut": "auto"},
    )
    assert decisions["blocks.0"] == (
        "binarize",
        {"input_shift": True, "shortcut": "auto", "scale": "mean_abs", "activation": "prelu"},
    )
    assert decisions["blocks.1"][1]["scale"] == "learnable"
    assert decisions["stem"][1] == {"input_shift": True, "shortcut": "auto", "scale": "channel_mean_abs"}


def test_keep_rule_wins_but_lower_binarize_options_do_not_leak() -> None:
    decisions = decide([Rule.binarize({"type": "Conv2d"}), Rule.keep({"name": "blocks.*"})])
    assert decisions["blocks.0"][0] == decisions["blocks.1"][0] == "keep"
    assert decisions["stem"][0] == "binarize"
    assert decisions["head"][0] is None  # no rule selects it


def test_combined_fields_take_the_highest_level() -> None:
    rules = [Rule.keep({"type": "Conv2d", "first": True}), Rule.binarize({"name": "*"})]
    assert decide(rules)["stem"][0] == "keep"
    assert decide(rules)["blocks.0"][0] == "binarize"


def test_first_last_restricted_by_type_and_name() -> None:
    decisions = decide([
        Rule.binarize({"name": "*"}),
        Rule.keep({"last": True, "type": "Conv2d"}),
        Rule.keep({"first": True, "name": "blocks.*"}),
    ])
    assert {n for n, (a, _) in decisions.items() if a == "keep"} == {"blocks.1", "blocks.0"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("blocks.*", {"blocks.0", "blocks.1"}),
        ("*.1", {"blocks.1"}),
        ("*", {"stem", "blocks.0", "blocks.1", "head"}),
        ("re:blocks\\.[0-9]", {"blocks.0", "blocks.1"}),
        ("re:(stem|head)", {"stem", "head"}),
        ("re:stem|blocks", {"stem"}),  # the regex must match the whole path
        ("blocks.[1]", {"blocks.1"}),
    ],
)
def test_name_globs_and_regexes(name: str, expected: set[str]) -> None:
    decisions = decide([Rule.binarize({"name": name})])
    assert {n for n, (a, _) in decisions.items() if a == "binarize"} == expected


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        ("Conv2d", {"stem", "blocks.0", "blocks.1"}),
        ("torch.nn.Conv2d", {"stem", "blocks.0", "blocks.1"}),
        ("torch.nn.modules.linear.Linear", {"head"}),
        (["Linear", "torch.nn.Conv2d"], {"stem", "blocks.0", "blocks.1", "head"}),
    ],
)
def test_type_names_and_dotted_paths(types: Any, expected: set[str]) -> None:
    decisions = decide([Rule.binarize({"type": types})])
    assert {n for n, (a, _) in decisions.items() if a == "binarize"} == expected


def test_dotted_type_of_another_class_matches_nothing() -> None:
    decisions = decide([Rule.binarize({"type": "torch.nn.Linear"}),
                        Rule.binarize({"type": "mypackage.Conv2d", "optional": True})])
    assert {n for n, (a, _) in decisions.items() if a == "binarize"} == {"head"}
