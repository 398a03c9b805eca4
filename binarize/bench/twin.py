"""The full-precision twin of a recipe: the same network with the binarizers and the weight scale switched off.

The twin keeps everything else a recipe does (graph rewrites, learnable input shifts, RPReLU, shortcuts, timestep
groups), so that comparing a recipe with its twin isolates the cost of the sign and scale operations, which is how
the BI-DiffSR release's cost was measured ("the same network with the sign/scale ops removed").
"""

from __future__ import annotations

import dataclasses
from typing import Any

from binarize.recipe import Recipe, Rule, load_recipe
from binarize.recipe.actions import ACTIONS
from binarize.recipe.loader import RecipeSpec

__all__ = ["TWIN_OVERRIDES", "fp_twin_recipe"]

#: The layer options the twin overrides, in the recipe's defaults and in every rule that sets options.
TWIN_OVERRIDES: dict[str, Any] = {"weight_binarizer": None, "input_binarizer": None, "scale": None}


def fp_twin_recipe(recipe: RecipeSpec) -> Recipe:
    """``recipe`` with :data:`TWIN_OVERRIDES` applied to its defaults and to every option-setting rule.

    Args:
        recipe: anything :func:`~binarize.recipe.load_recipe` accepts.

    Returns:
        A new recipe named ``"<name>-fp-twin"``; its graph rules, timestep section and selectors are unchanged.

    Examples:
        >>> twin = fp_twin_recipe("reactnet")
        >>> twin.name, twin.defaults["input_binarizer"], twin.defaults["activation"]
        ('reactnet-fp-twin', None, 'rprelu')
    """
    base = load_recipe(recipe)
    rules = tuple(_twin_rule(rule) for rule in base.rules)
    return dataclasses.replace(
        base, name=f"{base.name}-fp-twin", defaults={**base.defaults, **TWIN_OVERRIDES}, rules=rules
    )


def _twin_rule(rule: Rule) -> Rule:
    if not ACTIONS.get(rule.action).merges_options:
        return rule
    return dataclasses.replace(rule, value={**rule.options, **TWIN_OVERRIDES})
