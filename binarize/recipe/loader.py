"""Loading recipes from shipped names, YAML files and dicts; ``extends``; dumping back to YAML.

A recipe file is plain-data YAML (read with a safe loader, so tags such as ``!!python/object`` are refused):

.. code-block:: yaml

    name: reactnet                       # required
    paper: "Liu et al., ReActNet, ECCV 2020"
    description: ...
    extends: bireal                      # optional: a shipped name or a path relative to this file
    replace_rules: false                 # with extends: drop the parent's rules instead of appending to them
    defaults: {weight_binarizer: ste, scale: channel_mean_abs}
    timestep: {input: t, T: 2000, K: 5}  # optional: diffusion timesteps, for `timestep_aware: true` layers
    graph_rules:                         # optional: structural rewrites, applied first
      - pattern: [{Conv2d: {stride: 2, out_channels: "2 * in_channels"}}]
        replace: consistent_downsample
        optional: true
    rules:
      - select: {type: [Conv2d, Linear]}
        binarize: {}
      - select: first
        keep: float

``extends`` loads the parent first: the child's ``name``, ``paper`` and ``description`` replace the parent's,
``defaults`` merge key by key (the child's win), and the child's rules come after the parent's (so they win ties);
the child's graph rules also come after the parent's, where among patterns of equal length the earlier rule claims
a call first. ``replace_rules: true`` drops the parent's rules and graph rules. Graph rules are described in
:mod:`binarize.recipe.graph_rules`. Every validation error is a :class:`~binarize.errors.RecipeError` naming the file
and line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from binarize._files import decode_text

from binarize.errors import RecipeError, UnknownNameError
from binarize.recipe.actions import ACTIONS
from binarize.recipe.graph_rules import parse_graph_rules
from binarize.recipe.timestep import parse_timestep
from binarize.recipe.options import validate_options
from binarize.recipe.schema import Recipe, Rule
from binarize.recipe.selectors import parse_selector
from binarize.recipe.source import Source, describe_value, did_you_mean
from binarize.recipe.yaml_lines import line_of, load_yaml

__all__ = ["RECIPE_KEYS", "available_recipes", "dump_recipe", "load_recipe", "parse_rule", "recipe_from_data"]

RECIPE_KEYS = (
    "name", "paper", "description", "extends", "replace_rules", "timestep", "defaults", "graph_rules", "rules"
)
_SUFFIXES = (".yaml", ".yml")
_SHIPPED_PACKAGE = "binarize._recipes"

RecipeSpec = Recipe | Mapping[str, Any] | str | os.PathLike


def available_recipes() -> list[str]:
    """Names of the recipes shipped with binarize (usable as ``binarize(model, NAME)``), sorted."""
    root = resources.files(_SHIPPED_PACKAGE)
    return sorted(
        entry.name.rsplit(".", 1)[0]
        for entry in root.iterdir()
        if entry.name.endswith(".yaml") and not entry.name.startswith("_") and entry.is_file()
    )


def load_recipe(spec: RecipeSpec) -> Recipe:
    """Load a recipe.

    Args:
        spec: a :class:`Recipe` (returned as is), a shipped recipe name (``"reactnet"``, see
            :func:`available_recipes`), a path to a ``.yaml`` / ``.yml`` file, or a mapping with the file's content.

    Returns:
        The resolved recipe (``extends`` applied).

    Raises:
        RecipeError: a file that cannot be read or does not validate (the message names the file and line).
        UnknownNameError: a name that is neither a shipped recipe nor an existing file.
        TypeError: any other kind of ``spec``.

    Examples:
        >>> load_recipe("reactnet").defaults["activation"]
        'rprelu'
    """
    if isinstance(spec, Recipe):
        return spec
    if isinstance(spec, Mapping):
        return recipe_from_data(spec, Source(None))
    if isinstance(spec, str) and not _looks_like_path(spec) and spec in available_recipes():
        return _load_shipped(spec, stack=())
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and (_looks_like_path(spec) or os.path.isfile(spec))):
        return _load_file(Path(spec), stack=())
    if isinstance(spec, str):
        raise UnknownNameError("recipe", spec, available_recipes())
    raise TypeError(
        f"a recipe must be a Recipe, a shipped recipe name ({', '.join(available_recipes())}), a path to a YAML "
        f"file or a mapping; got {type(spec).__module__}.{type(spec).__qualname__}"
    )


def dump_recipe(recipe: Recipe) -> str:
    """The fully resolved recipe as YAML text; ``load_recipe(yaml.safe_load(dump_recipe(r))) == r``."""
    return yaml.dump(recipe.to_dict(), Dumper=_RecipeDumper, sort_keys=False, width=100)


class _RecipeDumper(yaml.SafeDumper):
    """Block style for the recipe and its ``defaults``; short flat mappings and lists in flow style."""

    def represent_str(self, data: str) -> yaml.ScalarNode:
        if len(data) > 80 and "\n" not in data:
            return self.represent_scalar("tag:yaml.org,2002:str", data, style=">")
        return super().represent_str(data)

    def represent_dict(self, data: Mapping[str, Any]) -> yaml.MappingNode:
        node = super().represent_dict(data)
        node.flow_style = len(data) <= 4 and all(_is_flat(v) for v in data.values())
        return node

    def represent_list(self, data: list[Any]) -> yaml.SequenceNode:
        node = super().represent_list(data)
        node.flow_style = all(not isinstance(v, (dict, list)) for v in data)
        return node


def _is_flat(value: Any) -> bool:
    if isinstance(value, list):
        return all(not isinstance(v, (dict, list)) for v in value)
    return not isinstance(value, dict)


_RecipeDumper.add_representer(str, _RecipeDumper.represent_str)
_RecipeDumper.add_representer(dict, _RecipeDumper.represent_dict)
_RecipeDumper.add_representer(list, _RecipeDumper.represent_list)


def _looks_like_path(text: str) -> bool:
    return text.endswith(_SUFFIXES) or "/" in text or os.sep in text


def _shipped_key(name: str) -> str:
    return f"<shipped recipe {name}>"


def _load_shipped(name: str, stack: tuple[str, ...]) -> Recipe:
    resource = resources.files(_SHIPPED_PACKAGE) / f"{name}.yaml"
    file = str(resource) if isinstance(resource, Path) else f"{name}.yaml"
    return _load_text(resource.read_text(encoding="utf-8"), file, key=_shipped_key(name), stack=stack)


def _load_file(
    path: Path, stack: tuple[str, ...], *, src: Source | None = None, container: Any = None, key: Any = None
) -> Recipe:
    try:
        text = decode_text(path.read_bytes(), "a recipe")
    except (OSError, ValueError) as exc:
        reason = (exc.strerror or exc) if isinstance(exc, OSError) else exc
        message = f"cannot read recipe file {str(path)!r}: {reason}"
        if src is not None:
            raise src.error(message, container, key) from None
        raise RecipeError(message, file=str(path)) from None
    return _load_text(text, str(path), key=str(path.resolve()), stack=stack)


def _load_text(text: str, file: str, *, key: str, stack: tuple[str, ...]) -> Recipe:
    data = load_yaml(text, file)
    return recipe_from_data(data, Source(file), _stack=(*stack, key))


def recipe_from_data(data: Any, src: Source, *, _stack: tuple[str, ...] = ()) -> Recipe:
    """Validate recipe data (a mapping, typically loaded from YAML) and build the resolved :class:`Recipe`.

    Args:
        data: the recipe mapping.
        src: the file it came from (for error messages and relative ``extends`` paths).

    Raises:
        RecipeError: on any validation problem, located at the offending line when known.
    """
    if not isinstance(data, Mapping):
        raise src.error(
            f"a recipe must be a mapping with keys {', '.join(RECIPE_KEYS)} (at least 'name'), "
            f"got {describe_value(data)}",
            data,
        )
    for key in data:
        if key not in RECIPE_KEYS:
            raise src.error(
                f"unknown recipe key {key!r}.{did_you_mean(key, RECIPE_KEYS)} Allowed keys: {', '.join(RECIPE_KEYS)}",
                data,
                key,
            )
    if "name" not in data:
        raise src.error("a recipe needs a 'name' (e.g. `name: my_recipe`)", data)
    fields: dict[str, Any] = {}
    for key in ("name", "paper", "description"):
        if key in data:
            value = data[key]
            if not isinstance(value, str) or (key == "name" and not value.strip()):
                kind = "non-empty string" if key == "name" else "string"
                raise src.error(f"{key!r} must be a {kind}, got {describe_value(value)}", data, key)
            fields[key] = value
    replace_rules = data.get("replace_rules", False)
    if not isinstance(replace_rules, bool):
        message = f"'replace_rules' must be true or false, got {describe_value(replace_rules)}"
        raise src.error(message, data, "replace_rules")
    if "replace_rules" in data and "extends" not in data:
        message = "'replace_rules' only applies together with 'extends' (it drops the parent's rules)"
        raise src.error(message, data, "replace_rules")
    defaults = validate_options(data.get("defaults"), src, where="defaults", container=data, key="defaults")
    rules = _parse_rules(data.get("rules"), src, data)
    graph_rules = parse_graph_rules(data.get("graph_rules"), src, data)
    timestep = parse_timestep(data.get("timestep"), src, data, "timestep")

    extends: tuple[str, ...] = ()
    if "extends" in data:
        parent = _load_parent(data["extends"], src, data, _stack)
        extends = (data["extends"], *parent.extends)
        fields.setdefault("paper", parent.paper)
        fields.setdefault("description", parent.description)
        defaults = {**parent.defaults, **defaults}
        timestep = timestep if timestep is not None else parent.timestep
        if not replace_rules:
            rules = [*parent.rules, *rules]
            graph_rules = [*parent.graph_rules, *graph_rules]
    return Recipe(
        rules=tuple(rules),
        defaults=defaults,
        extends=extends,
        file=src.file,
        graph_rules=tuple(graph_rules),
        timestep=timestep,
        **fields,
    )


def _parse_rules(value: Any, src: Source, data: Any) -> list[Rule]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise src.error(
            f"'rules' must be a list of rules (each `- select: ...` plus an action), got {describe_value(value)}",
            data,
            "rules",
        )
    return [parse_rule(item, src, value, i) for i, item in enumerate(value)]


def parse_rule(data: Any, src: Source, container: Any, key: Any) -> Rule:
    """Validate one rule mapping (``container[key]``): ``select`` plus exactly one action key."""
    where = f"rules[{key}]" if isinstance(key, int) else "a rule"
    actions = ACTIONS.names()
    allowed = ("select", *actions)
    if not isinstance(data, Mapping):
        raise src.error(
            f"{where} must be a mapping with 'select' and one of {', '.join(actions)} "
            f"(e.g. `- {{select: first, keep: float}}`), got {describe_value(data)}",
            container if container is not None else data,
            key,
        )
    for field_name in data:
        if field_name not in allowed:
            raise src.error(
                f"unknown key {field_name!r} in {where}.{did_you_mean(field_name, allowed)} "
                f"A rule has 'select' and one action: {', '.join(actions)}",
                data,
                field_name,
            )
    if "select" not in data:
        raise src.error(f"{where} needs a 'select' (e.g. `select: {{type: Conv2d}}` or `select: first`)", data)
    given = [k for k in data if k in actions]  # in file order, so an error points at the second action
    if len(given) != 1:
        raise src.error(
            f"{where} needs exactly one action ({', '.join(actions)}), got "
            f"{', '.join(given) if given else 'none'}",
            data,
            given[1] if len(given) > 1 else None,
        )
    action = given[0]
    selector = parse_selector(data["select"], src, data, "select")
    value = ACTIONS.get(action).parse(data[action], src, data, action)
    line = line_of(container, key) if container is not None else line_of(data)
    return Rule(selector, action, value, file=src.file, line=line)


def _load_parent(value: Any, src: Source, data: Any, stack: tuple[str, ...]) -> Recipe:
    if not isinstance(value, str) or not value:
        raise src.error(
            f"'extends' must be a shipped recipe name ({', '.join(available_recipes())}) or a path to a YAML file, "
            f"got {describe_value(value)}",
            data,
            "extends",
        )
    if _looks_like_path(value):
        path = Path(value)
        if not path.is_absolute() and src.file is not None:
            path = Path(src.file).parent / path
        key = str(path.resolve())
    else:
        shipped = available_recipes()
        if value not in shipped:
            raise src.error(
                f"'extends': unknown recipe {value!r}.{did_you_mean(value, shipped)} Shipped recipes: "
                f"{', '.join(shipped)} (or give a path to a .yaml file)",
                data,
                "extends",
            )
        key = _shipped_key(value)
    if key in stack:
        chain = " -> ".join([*stack[stack.index(key):], key])
        message = f"'extends' cycle: {chain}; a recipe cannot extend itself, directly or indirectly"
        raise src.error(message, data, "extends")
    if _looks_like_path(value):
        return _load_file(path, stack, src=src, container=data, key="extends")
    return _load_shipped(value, stack)
