"""Loading, dumping, hashing and ``extends`` of recipes; the shipped recipes' contents."""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from pathlib import Path

import pytest
import yaml
from safetensors import safe_open

from torch import nn

from binarize import binarize
from binarize.errors import RecipeError, UnknownNameError
from binarize.nn import LAYERS
from binarize.recipe.options import IMPLICIT_DEFAULTS
from binarize.recipe.options import RECIPE_OPTION_DEFAULTS as OPTION_DEFAULTS
from binarize.recipe import OPTIONS, Recipe, Rule, Selector, available_recipes, dump_recipe, load_recipe

SHIPPED = available_recipes()
CANDIDATE_TYPES = ("Conv1d", "Conv2d", "ConvTranspose2d", "Linear")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_the_nine_papers_are_shipped() -> None:
    assert {"bnn", "xnor", "dorefa", "bireal", "irnet", "xnorpp", "reactnet", "bbcu", "identity"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipe_round_trips_through_yaml(name: str) -> None:
    recipe = load_recipe(name)
    text = dump_recipe(recipe)
    again = load_recipe(yaml.safe_load(text))
    assert again == recipe
    assert again.hash == recipe.hash
    assert dump_recipe(again) == text
    assert "extends" not in recipe.to_dict()
    json.dumps(recipe.to_dict())  # plain data


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipe_is_documented_and_covers_all_candidate_types(name: str) -> None:
    recipe = load_recipe(name)
    assert recipe.name == name
    assert recipe.description and len(recipe.description) > 100
    if name != "identity":
        assert recipe.paper
    typed = [r for r in recipe.rules if r.select.type]
    # General recipes binarize every layer kind; diffusion recipes (a `timestep` section) follow their paper, which
    # keeps the linear time projections in full precision and binarizes convolutions.
    covered = CANDIDATE_TYPES if recipe.timestep is None else ("Conv2d",)
    assert any(set(covered) <= set(r.select.type) and r.action == "binarize" for r in typed)
    # every shipped recipe states every option (an implicit default at its value is left out of the canonical form)
    assert set({**IMPLICIT_DEFAULTS, **recipe.defaults}) == set(OPTION_DEFAULTS)
    if recipe.extends == ():
        stated = yaml.safe_load((Path(recipe.file or "")).read_text(encoding="utf-8"))["defaults"]
        assert set(stated) == set(OPTION_DEFAULTS)


@pytest.mark.parametrize("name", [n for n in SHIPPED if n != "identity"])
def test_shipped_recipe_keeps_first_and_last_in_full_precision(name: str) -> None:
    rules = load_recipe(name).rules
    assert Rule.keep("first") in rules
    assert Rule.keep("last") in rules


def test_identity_turns_everything_off() -> None:
    recipe = load_recipe("identity")
    assert {**IMPLICIT_DEFAULTS, **recipe.defaults} == OPTION_DEFAULTS
    assert not recipe.uses_execution_order


EXPECTED = {
    "bnn": {"weight_binarizer": "clipped_ste", "input_binarizer": "clipped_ste", "scale": None},
    "xnor": {"weight_binarizer": "ste", "input_binarizer": "clipped_ste",
             "scale": {"name": "channel_mean_abs", "gradient": True}},
    "dorefa": {"weight_binarizer": "ste", "scale": "mean_abs",
               "input_binarizer": {"name": "heaviside", "threshold": 0.5, "clip": 0.5}},
    "bireal": {"input_binarizer": "approx_sign", "weight_binarizer": "ste",
               "scale": {"name": "channel_mean_abs", "gradient": True}, "shortcut": "auto"},
    "irnet": {"weight_binarizer": "ede", "input_binarizer": "ede", "scale": "irnet"},
    "xnorpp": {"weight_binarizer": "clipped_ste", "input_binarizer": "clipped_ste", "scale": "factorized"},
    "reactnet": {"input_shift": True, "input_binarizer": "approx_sign", "weight_binarizer": "ste",
                 "scale": "channel_mean_abs", "activation": "rprelu", "shortcut": "auto"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_recipe_options_follow_the_paper(name: str) -> None:
    defaults = load_recipe(name).defaults
    for key, value in EXPECTED[name].items():
        assert defaults[key] == value, key


def test_bbcu_extends_reactnet() -> None:
    bbcu, reactnet = load_recipe("bbcu"), load_recipe("reactnet")
    assert bbcu.extends == ("reactnet",)
    assert bbcu.defaults == reactnet.defaults
    assert bbcu.rules == reactnet.rules
    assert "BatchNorm" in (bbcu.description or "")
    assert bbcu.paper != reactnet.paper and bbcu.hash != reactnet.hash


def test_layer_options_match_the_binary_layers() -> None:
    assert set(OPTIONS.names()) == set(OPTION_DEFAULTS)


def test_load_from_path_string_pathlike_dict_and_recipe(tmp_path: Path) -> None:
    path = write(tmp_path, "mine.yaml", """
        name: mine
        defaults: {weight_binarizer: ste}
        rules:
          - select: {type: Conv2d}
            binarize: {scale: mean_abs}
        """)
    from_path = load_recipe(path)
    assert load_recipe(str(path)) == from_path
    assert load_recipe(yaml.safe_load(path.read_text())) == from_path
    assert load_recipe(from_path) is from_path
    assert from_path.file == str(path)
    assert from_path.rules[0].line == 4
    built = Recipe("mine", rules=[Rule.binarize({"type": "Conv2d"}, scale="mean_abs")],
                   defaults={"weight_binarizer": "ste"})
    assert built == from_path and built.hash == from_path.hash


def test_canonical_forms_share_a_hash() -> None:
    a = load_recipe({"name": "x", "defaults": {"weight_binarizer": "ste", "pad_value": 0}})
    b = load_recipe({"name": "x", "defaults": {"weight_binarizer": {"name": "ste"}, "pad_value": 0.0}})
    assert a == b and a.hash == b.hash
    assert a.defaults["pad_value"] == 0.0  # 0.0 is a real padding value, never dropped as falsy
    assert load_recipe({"name": "x", "defaults": {"pad_value": -1}}).defaults["pad_value"] == -1.0


def test_an_option_added_later_resolves_to_its_default_and_leaves_hashes_alone() -> None:
    """``scale_gradient`` came after recipes were hashed: unstated it means true, and at true it stays out of the
    plain-data form, so a recipe written before it keeps its hash (and a checkpoint's stored recipe its own)."""
    before = {"name": "x", "defaults": {"weight_binarizer": "ste", "scale": "channel_mean_abs"},
              "rules": [{"select": {"type": "Conv2d"}, "binarize": {}}]}
    old_hash = hashlib.sha256(json.dumps(before, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    unstated = load_recipe(before)
    stated = load_recipe({**before, "defaults": {**before["defaults"], "scale_gradient": True}})
    assert unstated == stated and unstated.hash == stated.hash == old_hash
    assert unstated.to_dict() == stated.to_dict() == before
    model = nn.Sequential(nn.Conv2d(2, 2, 3))
    assert binarize(model, stated)[0].scale_gradient is True  # the layer default
    off = load_recipe({**before, "defaults": {**before["defaults"], "scale_gradient": False}})
    assert off.defaults["scale_gradient"] is False and off.hash != old_hash
    assert load_recipe(yaml.safe_load(dump_recipe(off))) == off
    assert binarize(model, off)[0].scale_gradient is False
    # a rule states it as written: there it may override defaults that turn it off
    rule = Rule.binarize({"type": "Conv2d"}, scale_gradient=True)
    assert rule.to_dict()["binarize"] == {"scale_gradient": True}
    assert binarize(model, Recipe("z", rules=[rule], defaults=off.defaults))[0].scale_gradient is True
    child = load_recipe({"name": "y", "extends": "bidiffsr-release", "defaults": {"scale_gradient": True}})
    assert "scale_gradient" not in child.defaults and "scale_gradient" in load_recipe("bidiffsr-release").defaults


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipes_keep_the_form_they_had_before_scale_gradient(name: str) -> None:
    defaults = load_recipe(name).defaults
    assert ("scale_gradient" in defaults) == (name == "bidiffsr-release")
    assert defaults.get("scale_gradient", True) is (name != "bidiffsr-release")


def test_trained_zoo_checkpoints_keep_their_recipe_hash() -> None:
    """Each shipped checkpoint stores its recipe (plain data, without scale_gradient) and hash: both still agree,
    and the recipe rebuilds layers with the default scale_gradient (the behaviour they were trained with)."""
    from binarize.zoo import TRAINED

    checked = 0
    for name in TRAINED.names():
        with safe_open(str(TRAINED.get(name).checkpoint), framework="pt") as handle:
            metadata = handle.metadata()
        stored = json.loads(metadata["recipe"])
        if stored is None:
            continue
        recipe = load_recipe(stored)
        assert "scale_gradient" not in stored["defaults"] and "scale_gradient" not in recipe.defaults
        assert recipe.to_dict() == stored and recipe.hash == metadata["recipe_hash"], name
        checked += 1
    assert checked >= 2


def test_unknown_name_lists_shipped_recipes_and_suggests() -> None:
    with pytest.raises(UnknownNameError) as info:
        load_recipe("reactnett")
    message = str(info.value)
    assert "Did you mean 'reactnet'?" in message
    for name in SHIPPED:
        assert name in message


def test_missing_file_is_a_recipe_error(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="cannot read recipe file"):
        load_recipe(tmp_path / "nope.yaml")


def test_wrong_spec_type() -> None:
    with pytest.raises(TypeError, match="got builtins.int"):
        load_recipe(3)  # type: ignore[arg-type]


def test_extends_merges_defaults_and_appends_rules(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", """
        name: base
        paper: "A paper"
        defaults: {weight_binarizer: ste, input_binarizer: ste, scale: mean_abs}
        rules:
          - select: {type: Conv2d}
            binarize: {}
        """)
    child = load_recipe(write(tmp_path, "child.yaml", """
        name: child
        extends: base.yaml
        defaults: {scale: channel_mean_abs, input_binarizer: null}
        rules:
          - select: first
            keep: float
        """))
    assert child.name == "child" and child.paper == "A paper"
    assert child.defaults == {"weight_binarizer": "ste", "input_binarizer": None, "scale": "channel_mean_abs"}
    assert [r.action for r in child.rules] == ["binarize", "keep"]
    assert child.rules[0].file.endswith("base.yaml") and child.rules[1].file.endswith("child.yaml")
    assert child.extends == ("base.yaml",)
    replaced = load_recipe(write(tmp_path, "child2.yaml", """
        name: child2
        extends: ./base.yaml
        replace_rules: true
        rules:
          - {select: last, keep: float}
        """))
    assert [r.select for r in replaced.rules] == [Selector(last=True)]


def test_extends_a_shipped_recipe_from_a_file(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, "mine.yaml", """
        name: mine
        extends: reactnet
        defaults: {activation: prelu}
        """))
    assert recipe.defaults == {**load_recipe("reactnet").defaults, "activation": "prelu"}
    assert recipe.rules == load_recipe("reactnet").rules
    assert recipe.description == load_recipe("reactnet").description


def test_extends_chain_is_recorded(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "name: a\nextends: bireal\n")
    write(tmp_path, "b.yaml", "name: b\nextends: a.yaml\n")
    assert load_recipe(tmp_path / "b.yaml").extends == ("a.yaml", "bireal")


def test_python_tags_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "evil.yaml", "name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(RecipeError, match="plain data"):
        load_recipe(path)


def test_rule_helpers_and_descriptions() -> None:
    rule = Rule.binarize({"type": ["Conv2d", "Linear"]}, scale="mean_abs")
    assert rule.options == {"scale": "mean_abs"}
    assert rule.describe(0) == "rules[0] select {type: [Conv2d, Linear]}"
    assert Rule.keep({"name": "fc", "optional": True}).describe() == "rule select {name: fc, optional: true}"
    assert Rule.keep("first").options == {}
    assert re.search(r"^rules\[1\] select first \(reactnet\.yaml:\d+\)$", load_recipe("reactnet").rule_label(1))
