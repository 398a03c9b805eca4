"""Hypothesis fuzzing: any recipe data either loads (and round-trips) or raises RecipeError, never anything else."""

from __future__ import annotations

import inspect
from typing import Any

import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from binarize.api import binarize
from binarize.binarizers import BINARIZERS
from binarize.errors import RecipeError
from binarize.recipe import Recipe, dump_recipe, load_recipe
from binarize.recipe.loader import recipe_from_data
from binarize.recipe.source import Source
from binarize.recipe.yaml_lines import load_yaml
from binarize.scaling import SCALES


junk = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=4),
    st.lists(st.integers(0, 2), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(0, 2), max_size=2),
)
VALID_KWARGS = {"sign_of_zero": st.sampled_from([0.0, 1.0]), "clip": st.sampled_from([0.5, 1.0]),
                "t_min": st.just(0.1), "t_max": st.sampled_from([1.0, 10.0]), "threshold": st.floats(-1, 1),
                "beta": st.sampled_from([1.0, 5.0]), "gradient": st.booleans(), "eps": st.just(1e-5)}


def valid_spec(registry: Any) -> st.SearchStrategy[Any]:
    """``None``, a registered name, or ``{name, **valid kwargs}`` for that class."""

    def with_kwargs(name: str) -> st.SearchStrategy[Any]:
        params = [p for p in inspect.signature(registry.get(name)).parameters if p in VALID_KWARGS]
        kwargs = st.fixed_dictionaries({}, optional={p: VALID_KWARGS[p] for p in params})
        return kwargs.map(lambda kw: {"name": name, **kw})

    names = st.sampled_from(registry.names())
    return st.one_of(st.none(), names, names.flatmap(with_kwargs))


VALID_OPTIONS = {
    "weight_binarizer": valid_spec(BINARIZERS),
    "input_binarizer": valid_spec(BINARIZERS),
    "scale": valid_spec(SCALES),
    "input_shift": st.booleans(),
    "activation": st.sampled_from([None, "rprelu", "prelu"]),
    "shortcut": st.sampled_from([False, True, "auto"]),
    "pad_value": st.one_of(st.none(), st.floats(-2, 2), st.integers(-1, 1)),
    "scale_gradient": st.booleans(),
}
options = st.fixed_dictionaries({}, optional=VALID_OPTIONS)
selectors = st.one_of(
    st.sampled_from(["first", "last"]),
    st.fixed_dictionaries(
        {"type": st.one_of(st.sampled_from(["Linear", "torch.nn.Linear"]), st.lists(st.sampled_from(
            ["Linear", "Conv1d", "Conv2d"]), min_size=1, max_size=2))},
        optional={"first": st.booleans(), "last": st.booleans(), "optional": st.booleans()},
    ),
    st.fixed_dictionaries({"name": st.sampled_from(["fc1", "fc*", "re:fc[12]", "fc[23]"])},
                          optional={"optional": st.booleans(), "first": st.booleans()}),
)
rules = st.one_of(
    st.builds(lambda sel, value: {"select": sel, "binarize": value}, selectors, options),
    st.builds(lambda sel: {"select": sel, "keep": "float"}, selectors),
)
recipes = st.fixed_dictionaries(
    {"name": st.text(min_size=1, max_size=10).filter(str.strip)},
    optional={
        "paper": st.text(max_size=20),
        "description": st.text(max_size=200),
        "defaults": options,
        "rules": st.lists(rules, max_size=4),
        "extends": st.sampled_from(["reactnet", "bnn"]),
    },
)


def mutate(data: dict[str, Any], draw: Any) -> None:
    """Put one junk value or unknown key somewhere in valid recipe data."""
    spots: list[tuple[dict[str, Any], list[str]]] = [(data, ["name", "paper", "defaults", "rules", "extends",
                                                             "replace_rules", "defualts"])]
    if isinstance(data.get("defaults"), dict):
        spots.append((data["defaults"], [*VALID_OPTIONS, "weight_binarizr"]))
    for rule in data.get("rules", []):
        spots.append((rule, ["select", "binarize", "keep", "kepe"]))
        if isinstance(rule["select"], dict):
            spots.append((rule["select"], ["type", "name", "first", "last", "optional", "tpye"]))
        for action in ("binarize",):
            if isinstance(rule.get(action), dict):
                spots.append((rule[action], list(VALID_OPTIONS)))
    target, keys = draw(st.sampled_from(spots))
    target[draw(st.sampled_from(keys))] = draw(junk)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(recipes, st.booleans(), st.data())
def test_recipe_data_loads_or_raises_recipe_error(data: dict[str, Any], broken: bool, draw: st.DataObject) -> None:
    if broken:
        mutate(data, draw.draw)
    try:
        recipe = load_recipe(data)
    except RecipeError:
        assert broken
        return
    assert isinstance(recipe, Recipe)
    again = load_recipe(yaml.safe_load(dump_recipe(recipe)))
    assert again == recipe and again.hash == recipe.hash


@settings(max_examples=200)
@given(st.text(max_size=120))
def test_yaml_text_loads_or_raises_recipe_error(text: str) -> None:
    try:
        recipe_from_data(load_yaml(text, "fuzz.yaml"), Source("fuzz.yaml"))
    except RecipeError as exc:
        assert str(exc).startswith("fuzz.yaml")


class MLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(6, 6)
        self.fc2 = torch.nn.Linear(6, 6)
        self.fc3 = torch.nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.fc2(self.fc1(x)))


MODEL = MLP()
X = torch.randn(2, 6)


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(options)
def test_any_loadable_options_convert_or_raise_recipe_error(opts: dict[str, Any]) -> None:
    try:
        recipe = load_recipe({"name": "fuzz", "defaults": opts, "rules": [
            {"select": {"type": "Linear"}, "binarize": {}}, {"select": "last", "keep": "float"}]})
    except RecipeError:
        return
    try:
        binary = binarize(MODEL, recipe)
    except RecipeError:
        return
    report = binary.binarize_report
    assert len(report.replaced) + len(report.skipped) == 3
    assert binary(X).shape == (2, 3)


@settings(max_examples=150)
@given(st.text(min_size=81, max_size=300), st.text(min_size=1, max_size=120).filter(str.strip))
def test_long_texts_round_trip(description: str, paper: str) -> None:
    recipe = load_recipe({"name": "x", "paper": paper, "description": description})
    assert load_recipe(yaml.safe_load(dump_recipe(recipe))) == recipe
