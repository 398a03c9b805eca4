"""Building the model of an experiment: the full-precision network, binarized with the experiment's recipe.

Training, evaluation and upscaling all build the model with :func:`build_model`, so a checkpoint's weights always
land in the same structure (the recipe's graph rewrites and binary layers) they were trained in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from binarize.api import binarize
from binarize.diffusion import PREDICTION_TARGETS, zero_output
from binarize.recipe import load_recipe
from binarize.specs import resolve_model
from binarize.training.checkpoint import Checkpoint, load_weights, read_checkpoint
from binarize.training.config import ConfigError, ExperimentConfig

__all__ = ["BuiltModel", "build_model", "resolve_checkpoint", "resolve_recipe"]


class BuiltModel:
    """A model built for an experiment, with the recipe (plain data and hash) it was binarized with.

    Attributes:
        model: the (binarized) network.
        recipe: the resolved recipe as plain data, ``None`` for a full-precision experiment.
        recipe_hash: the recipe's hash, ``""`` for full precision.
        init_note: what the weights were initialised from (``None`` unless ``config.init`` was loaded).
    """

    def __init__(self, model: nn.Module, recipe: dict[str, Any] | None, recipe_hash: str,
                 init_note: str | None = None) -> None:
        self.model = model
        self.recipe = recipe
        self.recipe_hash = recipe_hash
        self.init_note = init_note


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
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model_args {config.model_args} do not fit {config.model}: {exc}") from None
        return model, entry.inputs(8 * config.scale)
    if config.model_args:
        raise ConfigError(f"model_args apply to zoo: models only; {config.model} takes none (drop model_args)")
    spec = resolve_model(config.model)
    return spec.model, spec.example_inputs(8 * config.scale)


def build_model(
    config: ExperimentConfig, recipe: dict[str, Any] | None | str = "config", *, initialise: bool = False
) -> BuiltModel:
    """Build the experiment's network: seeded with ``config.seed``, the output layer zeroed for the ``residual``
    target (or, with ``initialise``, the weights of ``config.init`` loaded), then binarized with the recipe.

    Args:
        config: the experiment.
        recipe: the recipe as plain data (a checkpoint's; ``None``: full precision), or ``"config"`` to resolve
            ``config.recipe``.
        initialise: load ``config.init`` (a fresh training run does; rebuilding a trained checkpoint does not, its
            own weights replace everything).
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
    initial = _read_initial_weights(config, data) if initialise and config.init is not None else None
    if initial is not None and initial.recipe is None:
        load_weights(model, initial.model_state, initial.path, config.model)
    if data is not None:
        model = binarize(model, data, example_inputs=inputs)
    if initial is not None and initial.recipe is not None:
        load_weights(model, initial.model_state, initial.path, f"{config.model} binarized with its recipe")
    note = _initial_weights_note(initial, digest) if initial is not None else None
    return BuiltModel(model, data, digest, note)


def _read_initial_weights(config: ExperimentConfig, recipe: dict[str, Any] | None) -> Checkpoint:
    """The checkpoint named by ``config.init``, checked to fit the experiment.

    A full-precision checkpoint (``recipe: null``) fits any experiment on the same network: its weights are loaded
    before the recipe binarizes it. A binarized checkpoint fits an experiment with the same recipe (by name; a
    revised recipe is accepted when the weights fit the network it builds, which :func:`load_weights` checks): its
    weights, binary layers included, are loaded after binarization, so a binary model can be trained in stages.
    """
    path = resolve_checkpoint(config.init)
    found = read_checkpoint(path)
    if (found.config.model, found.config.model_args) != (config.model, config.model_args):
        raise ConfigError(
            f"init {config.init!r} holds {found.config.model} {found.config.model_args}, this experiment trains "
            f"{config.model} {config.model_args}; init needs the same network"
        )
    if found.recipe is not None and found.recipe.get("name") != (recipe or {}).get("name"):
        wanted = f"recipe {recipe['name']!r}" if recipe else "no recipe (full precision)"
        raise ConfigError(
            f"init {config.init!r} is a binarized checkpoint (recipe {found.recipe.get('name')!r}) and this "
            f"experiment uses {wanted}; init takes a full-precision checkpoint (trained with recipe: null) or one "
            "binarized with this experiment's own recipe"
        )
    return found


def _initial_weights_note(found: Checkpoint, recipe_hash: str) -> str:
    """One line saying what a fresh run starts from (and, for a binarized start, whether its recipe was revised)."""
    if found.recipe is None:
        binarizing = ", then binarizing them" if recipe_hash else ""
        return f"starting from the full-precision weights of {found.path} (step {found.step}){binarizing}"
    revised = ("" if found.recipe_hash == recipe_hash else
               f"; its recipe {found.recipe['name']!r} is another revision (hash {found.recipe_hash[:12]}, here "
               f"{recipe_hash[:12]}) and the weights fit the network the current one builds")
    return f"starting from the binarized weights of {found.path} (step {found.step}){revised}"


def load_teacher(config: ExperimentConfig, device: torch.device | str = "cpu") -> nn.Module | None:
    """The frozen teacher network named by ``config.teacher`` (``None`` without one), in eval mode on ``device``.

    Raises:
        ConfigError: the teacher was trained for another scale or diffusion target (its outputs would mean
            something else), or names a Python file (a teacher must be a zoo model or a checkpoint of a zoo/timm
            network).
    """
    if config.teacher is None:
        return None
    from binarize.training.evaluate import load_model

    teacher, found = load_model(resolve_checkpoint(config.teacher))
    theirs, ours = found.config, config
    for key, mine, other in (("scale", ours.scale, theirs.scale),
                             ("diffusion.target", ours.diffusion.target, theirs.diffusion.target),
                             ("diffusion.steps", ours.diffusion.steps, theirs.diffusion.steps),
                             ("diffusion.beta_start", ours.diffusion.beta_start, theirs.diffusion.beta_start),
                             ("diffusion.beta_end", ours.diffusion.beta_end, theirs.diffusion.beta_end)):
        if mine != other:
            raise ConfigError(
                f"teacher {config.teacher!r} was trained with {key} {other!r}, this experiment uses {mine!r}; a "
                "teacher's output is only a target under the same scale and diffusion"
            )
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher.to(device).eval()


def resolve_checkpoint(spec: str | Path) -> Path:
    """A checkpoint file from a path or ``zoo:NAME`` (a trained model of the zoo).

    Raises:
        ConfigError: ``zoo:NAME`` names no trained model.
    """
    text = str(spec)
    if text.startswith("zoo:"):
        from binarize.zoo import TRAINED

        name = text[len("zoo:"):]
        if name not in TRAINED:
            from binarize.recipe.source import did_you_mean

            raise ConfigError(
                f"{text} is not a trained zoo model.{did_you_mean(name, TRAINED.names())} Trained models: "
                f"{', '.join(TRAINED.names()) or 'none'}; or pass a checkpoint file written by `binarize train`"
            )
        return TRAINED.get(name).checkpoint
    return Path(text)
