"""Every recipe validation error names the file, the line, the bad value and what is allowed."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from torch import nn

from binarize.api import plan
from binarize.errors import RecipeError
from binarize.recipe import load_recipe


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def error_of(path: Path) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    return info.value


def assert_at(error: RecipeError, path: Path, line: int, *fragments: str) -> None:
    message = str(error)
    assert message.startswith(f"{path}:{line}: "), message
    assert error.file == str(path) and error.line == line
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# (file content, line of the error, fragments the message must contain)
CASES = {
    "top_level_list": ("- name: x\n", 1, ["must be a mapping", "got [", "(list)"]),
    "empty_file": ("# nothing here\n", None, ["must be a mapping", "null"]),
    "unknown_top_key": (
        "name: x\ndefualts: {weight_binarizer: ste}\n", 2,
        ["'defualts'", "Did you mean 'defaults'?", "Allowed keys: name, paper"],
    ),
    "missing_name": ("defaults: {}\n", 1, ["needs a 'name'"]),
    "name_not_string": ("name: 3\n", 1, ["'name' must be a non-empty string", "3 (int)"]),
    "rules_not_list": ("name: x\nrules: {select: first}\n", 2, ["'rules' must be a list", "(mapping)"]),
    "bool_option": (
        "name: x\ndefaults:\n  weight_binarizer: ste\n  input_shift: 'yes'\n", 4,
        ["'input_shift' must be true or false", "'yes' (string)"],
    ),
    "scale_gradient_not_bool": (
        "name: x\ndefaults:\n  scale: channel_mean_abs\n  scale_gradient: 0\n", 4,
        ["'scale_gradient' must be true or false", "0 (int)"],
    ),
    "scale_gradient_in_rule": (
        "name: x\nrules:\n  - select: {type: Conv2d}\n    binarize: {scale_gradient: 'no'}\n", 4,
        ["'scale_gradient' must be true or false", "'no' (string)"],
    ),
    "unknown_option": (
        "name: x\ndefaults:\n  weight_binarizr: ste\n", 3,
        ["unknown layer option 'weight_binarizr'", "Did you mean 'weight_binarizer'?", "Allowed options:"],
    ),
    "unknown_binarizer": (
        "name: x\ndefaults:\n  scale: mean_abs\n  weight_binarizer: stee\n", 4,
        ["unknown binarizer 'stee'", "Did you mean 'ste'?", "approx_sign", "clipped_ste"],
    ),
    "unknown_binarizer_in_mapping": (
        "name: x\ndefaults:\n  input_binarizer:\n    name: edee\n    t_min: 0.1\n", 4,
        ["unknown binarizer 'edee'", "Did you mean 'ede'?"],
    ),
    "unknown_binarizer_argument": (
        "name: x\ndefaults:\n  input_binarizer:\n    name: ede\n    tmin: 0.1\n", 5,
        ["has no argument 'tmin'", "Did you mean 't_min'?"],
    ),
    "unknown_scale": (
        "name: x\ndefaults: {scale: chanel_mean_abs}\n", 2,
        ["unknown scale 'chanel_mean_abs'", "Did you mean 'channel_mean_abs'?"],
    ),
    "spec_without_name": ("name: x\ndefaults:\n  scale: {gradient: true}\n", 3, ["needs a 'name' key"]),
    "bad_activation": ("name: x\ndefaults: {activation: rprelU}\n", 2, ["'activation' must be one of", "'rprelu'"]),
    "bad_shortcut": (
        "name: x\ndefaults: {shortcut: 1}\n", 2, ["'shortcut' must be one of false, true, 'auto'", "1 (int)"]
    ),
    "bad_pad_value": ("name: x\ndefaults: {pad_value: zero}\n", 2, ["'pad_value' must be a finite number"]),
    "duplicate_key": ("name: x\nrules: []\nname: y\n", 3, ["duplicate key 'name'", "line 1"]),
    "yaml_syntax": ("name: x\nrules: [\n", 3, ["invalid YAML"]),
    "rule_not_mapping": ("name: x\nrules:\n  - first\n", 3, ["rules[0] must be a mapping"]),
    "rule_unknown_key": (
        "name: x\nrules:\n  - select: first\n    kepe: float\n", 4,
        ["unknown key 'kepe' in rules[0]", "Did you mean 'keep'?"],
    ),
    "rule_without_select": ("name: x\nrules:\n  - keep: float\n", 3, ["rules[0] needs a 'select'"]),
    "rule_two_actions": (
        "name: x\nrules:\n  - select: first\n    keep: float\n    binarize: {}\n", 5,
        ["needs exactly one action", "got keep, binarize"],
    ),
    "rule_no_action": ("name: x\nrules:\n  - select: first\n", 3, ["needs exactly one action", "got none"]),
    "keep_value": (
        "name: x\nrules:\n  - select: first\n    keep: int8\n", 4, ["'keep' only accepts the value 'float'"]
    ),
    "rule_option": (
        "name: x\nrules:\n  - select: first\n    binarize:\n      scale: mean_abs\n      shortcut: maybe\n", 6,
        ["'shortcut' must be one of", "'maybe'"],
    ),
    "selector_shorthand": ("name: x\nrules:\n  - select: frist\n    keep: float\n", 3, ["Did you mean 'first'?"]),
    "selector_key": (
        "name: x\nrules:\n  - keep: float\n    select:\n      tpye: Conv2d\n", 5,
        ["unknown selector key 'tpye'", "Did you mean 'type'?"],
    ),
    "selector_type": (
        "name: x\nrules:\n  - select: {type: [Linear, Conv2D]}\n    binarize: {}\n", 3,
        ["'Conv2D' is not a layer type", "Did you mean 'Conv2d'?", "Convertible types: Conv1d"],
    ),
    "selector_type_block_list": (
        "name: x\nrules:\n  - select:\n      type:\n        - Linear\n        - Conv3d\n    binarize: {}\n", 6,
        ["'Conv3d' is not a layer type"],
    ),
    "selector_flag": (
        "name: x\nrules:\n  - select: {first: 1}\n    keep: float\n", 3, ["'first' must be true or false"]
    ),
    "selector_empty": ("name: x\nrules:\n  - select: {optional: true}\n    keep: float\n", 3, ["at least one of"]),
    "selector_regex": (
        "name: x\nrules:\n  - select: {name: 're:conv[('}\n    keep: float\n", 3, ["not a valid regular"]
    ),
    "replace_rules_alone": ("name: x\nreplace_rules: true\n", 2, ["only applies together with 'extends'"]),
    "extends_unknown": ("name: x\nextends: reactnett\n", 2, ["unknown recipe 'reactnett'", "Did you mean 'reactnet'?"]),
    "extends_missing_file": ("name: x\nextends: nowhere.yaml\n", 2, ["cannot read recipe file", "nowhere.yaml"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_error_names_file_line_and_fix(tmp_path: Path, case: str) -> None:
    text, line, fragments = CASES[case]
    path = write(tmp_path, f"{case}.yaml", text)
    error = error_of(path)
    if line is None:
        assert str(error).startswith(f"{path}: ")
        for fragment in fragments:
            assert fragment in str(error)
    else:
        assert_at(error, path, line, *fragments)


def test_extends_cycle(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "name: a\nextends: b.yaml\n")
    b = write(tmp_path, "b.yaml", "name: b\n\nextends: a.yaml\n")
    error = error_of(a)
    assert_at(error, b, 3, "'extends' cycle", "a.yaml -> ", "b.yaml -> ")
    self_cycle = write(tmp_path, "self.yaml", "name: s\nextends: ./self.yaml\n")
    assert_at(error_of(self_cycle), self_cycle, 2, "cycle")


def test_errors_inside_a_parent_name_the_parent(tmp_path: Path) -> None:
    parent = write(tmp_path, "parent.yaml", "name: p\ndefaults:\n  scale: meanabs\n")
    child = write(tmp_path, "child.yaml", "name: c\nextends: parent.yaml\n")
    assert_at(error_of(child), parent, 3, "unknown scale 'meanabs'")


def test_dict_recipes_report_errors_without_a_file() -> None:
    with pytest.raises(RecipeError, match=r"^unknown recipe key 'rule'\. Did you mean 'rules'\?"):
        load_recipe({"name": "x", "rule": []})


class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.fc(self.conv(x).mean((2, 3)))


def test_selector_matching_nothing_is_an_error_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", """
        name: r
        rules:
          - select: {type: Conv2d}
            binarize: {}
          - select: {name: fcc}
            keep: float
        """)
    with pytest.raises(RecipeError) as info:
        plan(TwoLayers(), path)
    assert_at(info.value, path, 5, "rules[1] select {name: fcc} matches no candidate", "close candidate names: fc",
              "optional: true")


def test_optional_selector_may_match_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", """
        name: r
        rules:
          - select: {type: Conv2d}
            binarize: {}
          - select: {name: "head.*", optional: true}
            keep: float
          - select: {type: ConvTranspose2d, optional: true}
            binarize: {}
        """)
    decisions = plan(TwoLayers(), path).decisions
    assert [(d.candidate.name, d.action) for d in decisions] == [("conv", "binarize"), ("fc", None)]


def test_type_selector_matching_nothing_lists_present_types(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "name: r\nrules:\n  - select: {type: Conv1d}\n    binarize: {}\n")
    with pytest.raises(RecipeError) as info:
        plan(TwoLayers(), path)
    assert_at(info.value, path, 3, "candidate types in this model: Conv2d, Linear")
