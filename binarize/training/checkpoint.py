"""Checkpoints: safetensors files that carry the model, the optimiser state, the experiment config and the recipe.

A checkpoint rebuilds its model from the file alone: the config names the model (and its arguments) and the recipe
is stored as plain data with its hash, so :func:`load_model` builds the full-precision model, binarizes it with the
same recipe and loads the weights. Files are written atomically (a temporary file in the same folder, then
``os.replace``), so an interrupted run never leaves a half-written checkpoint: every ``*.safetensors`` file in a
run's ``checkpoints/`` folder is complete.

Layout: tensors ``model.<name>`` (the state dict) and ``optim.<index>.<key>`` (Adam's per-parameter state); string
metadata ``format``, ``config`` (JSON), ``recipe`` (JSON or ``null``), ``recipe_hash``, ``step``, ``optim_groups``
(JSON).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from binarize._files import atomic_path
from binarize.errors import BinarizeError
from binarize.training.config import ExperimentConfig, load_config

__all__ = ["Checkpoint", "CheckpointError", "FORMAT", "compact_checkpoint", "latest_checkpoint", "read_checkpoint", "write_checkpoint"]

FORMAT = "binarize-checkpoint/1"


class CheckpointError(BinarizeError):
    """A checkpoint that cannot be read or does not fit what it is used with."""


@dataclass
class Checkpoint:
    """The content of a checkpoint file.

    Attributes:
        path: where it was read from.
        config: the experiment config.
        recipe: the resolved recipe as plain data (``None``: full precision).
        recipe_hash: the recipe's hash (``""`` for full precision).
        step: training steps done.
        model_state: the model's state dict.
        optimizer_state: the optimiser's state dict (``None`` in a weights-only file).
    """

    path: Path
    config: ExperimentConfig
    recipe: dict[str, Any] | None
    recipe_hash: str
    step: int
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None


def _metadata(config: ExperimentConfig, recipe: dict[str, Any] | None, recipe_hash: str, step: int,
              groups: Any) -> dict[str, str]:
    return {
        "format": FORMAT,
        "config": json.dumps(config.to_dict()),
        "recipe": json.dumps(recipe),
        "recipe_hash": recipe_hash,
        "step": str(step),
        "optim_groups": json.dumps(groups),
    }


def write_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    config: ExperimentConfig,
    recipe: dict[str, Any] | None,
    recipe_hash: str,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Write a checkpoint atomically and return its path."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    groups = None
    if optimizer is not None:
        state = optimizer.state_dict()
        for index, values in state["state"].items():
            for key, value in values.items():
                tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous().clone()
        groups = state["param_groups"]
    metadata = _metadata(config, recipe, recipe_hash, step, groups)
    target = Path(path)
    with atomic_path(target) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)
    return target


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`write_checkpoint`.

    Raises:
        CheckpointError: a missing, unreadable or foreign file.
    """
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"no checkpoint at {str(source)!r}")
    try:
        with safe_open(str(source), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{source} is not a readable safetensors checkpoint ({exc})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{source} is not a binarize checkpoint (format {metadata.get('format')!r}, expected {FORMAT!r})"
        )
    config = load_config(json.loads(metadata["config"]))
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    groups = json.loads(metadata.get("optim_groups", "null"))
    optimizer_state = None
    if groups is not None:
        per_param: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                per_param.setdefault(int(index), {})[name] = value
        optimizer_state = {"state": per_param, "param_groups": groups}
    return Checkpoint(
        source, config, json.loads(metadata["recipe"]), metadata["recipe_hash"], int(metadata["step"]), model_state,
        optimizer_state,
    )


def compact_checkpoint(source: str | Path, target: str | Path, *, dtype: torch.dtype = torch.float16) -> Path:
    """Write a weights-only copy of a checkpoint with its floating-point tensors stored as ``dtype``.

    The optimiser state is dropped and the weights take half the bytes (``float16``); loading casts them back to the
    model's dtype, so the network computes in full precision from slightly rounded weights. Integer tensors (counts,
    indices) are kept as they are. Evaluate the compact file itself when reporting its quality.
    """
    found = read_checkpoint(source)
    tensors = {
        f"model.{key}": (value.to(dtype) if value.is_floating_point() else value).contiguous()
        for key, value in found.model_state.items()
    }
    metadata = _metadata(found.config, found.recipe, found.recipe_hash, found.step, None)
    destination = Path(target)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(destination) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)
    return destination


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint with the most steps in ``folder`` (``step_<N>.safetensors``), or ``None``."""
    candidates = []
    for path in Path(folder).glob("step_*.safetensors"):
        try:
            candidates.append((int(path.stem.removeprefix("step_")), path))
        except ValueError:
            continue
    return max(candidates)[1] if candidates else None
