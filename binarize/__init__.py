"""binarize: turn full-precision PyTorch networks into binary (1-bit) networks with declarative recipes.

Examples:
    >>> import torch
    >>> from binarize import binarize
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3),
    ...                           torch.nn.Flatten(), torch.nn.LazyLinear(10))
    >>> _ = net(torch.zeros(1, 3, 8, 8))
    >>> binary = binarize(net, "reactnet", example_inputs=torch.zeros(1, 3, 8, 8))
    >>> [entry["name"] for entry in binary.binarize_report.replaced]
    ['2']
"""

from binarize.api import binarize, plan
from binarize.binarizers import BINARIZERS, Binarizer, get_binarizer, set_progress
from binarize.cost import CostReport, measure_cost
from binarize.deploy.export import export
from binarize.engine import Plan, Report
from binarize.errors import BinarizeError, ModelSpecError, RecipeError, UnknownNameError, UnsupportedLayerError
from binarize.nn import (
    LAYERS,
    BinaryConv1d,
    BinaryConv2d,
    BinaryConvTranspose2d,
    BinaryLinear,
    LearnableBias,
    RPReLU,
)
from binarize.recipe import Recipe, Rule, Selector, available_recipes, dump_recipe, load_recipe
from binarize.scaling import SCALES, make_scale
from binarize.specs import ModelSpec, resolve_model

__version__ = "0.1.0"

from binarize.plugins import load_plugins  # noqa: E402  (plugins register into the registries imported above)

load_plugins()

__all__ = [
    "BINARIZERS",
    "LAYERS",
    "SCALES",
    "BinarizeError",
    "Binarizer",
    "BinaryConv1d",
    "BinaryConv2d",
    "BinaryConvTranspose2d",
    "BinaryLinear",
    "CostReport",
    "LearnableBias",
    "ModelSpec",
    "ModelSpecError",
    "Plan",
    "RPReLU",
    "Recipe",
    "RecipeError",
    "Report",
    "Rule",
    "Selector",
    "UnknownNameError",
    "UnsupportedLayerError",
    "__version__",
    "available_recipes",
    "binarize",
    "dump_recipe",
    "export",
    "get_binarizer",
    "load_recipe",
    "make_scale",
    "measure_cost",
    "plan",
    "resolve_model",
    "set_progress",
]
