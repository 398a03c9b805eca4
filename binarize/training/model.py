"""Building the model of an experiment: the full-precision network, binarized with the experiment's recipe.

Training, evaluation and upscaling all build the model with :func:`build_model`, so a checkpoint's weights always
land in the same structure (the recipe's graph rewrites and binary layers) they were trained in.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from binarize.api import binarize
from binarize.diffusion import PREDICTION_TARGETS, zero_output
from binarize.recipe import load_recipe
from binarize.specs import resolve_model
from binarize.training.config import ConfigError, ExperimentConfig

__all__ = ["BuiltModel", "build_model", "resolve_recipe"]


class BuiltModel:
    """A model built for an experiment, with the recipe (plain data and hash) it was binarized with.

    Attributes:
        model: the (binarized) network.
        recipe: the resolved recipe as plain data, ``None`` for a full-precision experiment.
        recipe_hash: the recipe's hash, ``""`` for full precision.
    """

    def __init__(self, model: nn.Module, recipe: dict[str, Any] | None, recipe_hash: str) -> None:
        self.model = model
        self.recipe = recipe
        self.recipe_hash = recipe_hash


def resolve_recipe(spec: Any) -> tuple[dict[str, Any] | None, str]:
    """A recipe spec (name, path, mapping or ``None``) as resolved plain data and its hash."""
    if spec is None:
        return None, ""
    recipe = load_recipe(spec)
    return recipe.to_dict(), recipe.hash


def _full_precision(config: ExperimentConfig) -> tuple[nn.Module, tuple]:
    if config.model.startswith("zoo:"):
        from binarize.zoo import ZOO

        entry = ZOO.get(config.model[len("zoo:"):])
        try:
            model = entry.build(**config.model_args)
        except TypeError as exc:
            raise ConfigError(f"model_args {config.model_args} do not fit {config.model}: {exc}") from None
        return model, entry.inputs(8 * config.scale)
    if config.model_args:
        raise ConfigError(f"model_args apply to zoo: models only; {config.model} takes none (drop model_args)")
    spec = resolve_model(config.model)
    return spec.model, spec.example_inputs(8 * config.scale)


def build_model(config: ExperimentConfig, recipe: dict[str, Any] | None | str = "config") -> BuiltModel:
    """Build the experiment's network: seeded with ``config.seed``, the output layer zeroed for the ``residual``
    target, then binarized with the recipe.

    Args:
        config: the experiment.
        recipe: the recipe as plain data (a checkpoint's; ``None``: full precision), or ``"config"`` to resolve
            ``config.recipe``.
    """
    data, digest = resolve_recipe(config.recipe if recipe == "config" else recipe)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model, inputs = _full_precision(config)
    if PREDICTION_TARGETS.get(config.diffusion.target).residual:
        try:
            zero_output(model)
        except ValueError as exc:
            raise ConfigError(f"diffusion.target residual starts from a zero output layer: {exc}") from None
    if data is not None:
        model = binarize(model, data, example_inputs=inputs)
    return BuiltModel(model, data, digest)
