"""Recipes: declarative, plain-data descriptions of how to binarize a network.

See :mod:`binarize.recipe.loader` for the file format, :mod:`binarize.recipe.selectors` for selectors and the
precedence table, and :mod:`binarize.recipe.options` for the layer options.
"""

from binarize.recipe.actions import ACTIONS, RuleAction
from binarize.recipe.loader import RECIPE_KEYS, available_recipes, dump_recipe, load_recipe
from binarize.recipe.options import OPTIONS
from binarize.recipe.schema import Recipe, Rule
from binarize.recipe.selectors import Selector

__all__ = [
    "ACTIONS",
    "OPTIONS",
    "RECIPE_KEYS",
    "Recipe",
    "Rule",
    "RuleAction",
    "Selector",
    "available_recipes",
    "dump_recipe",
    "load_recipe",
]
