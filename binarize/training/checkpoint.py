"""Checkpoints: safetensors files that carry the model, the optimiser state, the experiment config and the recipe.

A checkpoint rebuilds its model from the file alone: the config names the model (and its arguments) and the recipe
is stored as plain data with its hash, so :func:`load_model` builds the full-precision model, binarizes it with the
same recipe and loads the weights. Files are written atomically (a temporary file in the same folder, then
``os.replace``), so an interrupted run never leaves a half-written checkpoint: every ``*.safetensors`` file in a
run's ``checkpoints/`` folder is complete.

Nothing damaged is used silently. Every tensor's SHA-256 (over its dtype, shape and bytes) is stored in the metadata
and checked on every read, so flipped bits, a truncated tensor, or tensors removed from or added to the file are
reported by name instead of training on garbage. A file whose weights hold NaN or infinity is refused on read and
never written.

Layout: tensors ``model.<name>`` (the state dict) and ``optim.<index>.<key>`` (Adam's per-parameter state); string
metadata ``format``, ``config`` (JSON), ``recipe`` (JSON or ``null``), ``recipe_hash``, ``step``, ``optim_groups``
(JSON) and ``checksums`` (JSON: tensor name to SHA-256 hex digest). Files of the first format
(``binarize-checkpoint/1``) have no checksums; they are read with every other check.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from binarize._files import atomic_path, read_safetensors
from binarize.errors import BinarizeError
from binarize.training.config import ConfigError, ExperimentConfig, load_config

__all__ = [
    "Checkpoint", "CheckpointError", "FORMAT", "compact_checkpoint", "latest_checkpoint", "read_checkpoint",
    "load_weights", "tensor_checksum", "write_checkpoint",
]

FORMAT = "binarize-checkpoint/2"
#: Earlier formats this version reads (``/1``: the same layout without checksums).
_READABLE = (FORMAT, "binarize-checkpoint/1")
#: How many names an error message lists before "and N more".
_NAMES_SHOWN = 4


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
              groups: Any, tensors: Mapping[str, torch.Tensor]) -> dict[str, str]:
    return {
        "format": FORMAT,
        "config": json.dumps(config.to_dict()),
        "recipe": json.dumps(recipe),
        "recipe_hash": recipe_hash,
        "step": str(step),
        "optim_groups": json.dumps(groups),
        "optim_state": json.dumps(sorted({int(k.split(".")[1]) for k in tensors if k.startswith("optim.")})),
        "checksums": json.dumps({name: tensor_checksum(value) for name, value in sorted(tensors.items())}),
    }


def tensor_checksum(tensor: torch.Tensor) -> str:
    """SHA-256 hex digest of a tensor's dtype, shape and bytes (the checksum stored in a checkpoint).

    Examples:
        >>> tensor_checksum(torch.zeros(2)) == tensor_checksum(torch.zeros(2))
        True
        >>> tensor_checksum(torch.zeros(2)) == tensor_checksum(torch.zeros(1, 2))
        False
    """
    digest = hashlib.sha256(f"{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    if flat.numel():
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def listed_names(names: list[str], separator: str = ", ") -> str:
    """The first few of ``names`` for an error message, then how many more."""
    shown = separator.join(names[:_NAMES_SHOWN])
    return shown + (f" and {len(names) - _NAMES_SHOWN} more ({len(names)} in all)" if len(names) > _NAMES_SHOWN else "")


def _non_finite(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors holding NaN or infinity, each with how many such values."""
    found = []
    for name, value in tensors.items():
        if value.is_floating_point() or value.is_complex():
            bad = int((~torch.isfinite(value)).sum())
            if bad:
                found.append(f"{name} ({bad} of {value.numel()} values)")
    return found


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
    bad = _non_finite(tensors)
    if bad:
        raise CheckpointError(
            f"not writing {str(path)!r}: NaN or infinity in {listed_names(bad)}; the training "
            "diverged, so earlier checkpoints are kept as they are"
        )
    metadata = _metadata(config, recipe, recipe_hash, step, groups, tensors)
    target = Path(path)
    with atomic_path(target) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)
    return target


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`write_checkpoint` and check it.

    Raises:
        CheckpointError: a missing, unreadable or foreign file; metadata that is not what :func:`write_checkpoint`
            writes (broken JSON, a missing field, a config that does not validate); tensors whose bytes do not match
            their checksums, or that are missing or unexpected; weights or optimiser state holding NaN or infinity.
            The message names the file and what is wrong.
    """
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"no checkpoint at {str(source)!r}")
    try:
        metadata, tensors = read_safetensors(source)
    except ValueError as exc:
        raise CheckpointError(f"{source} is not a readable safetensors checkpoint ({exc})") from None
    if metadata.get("format") not in _READABLE:
        raise CheckpointError(
            f"{source} is not a binarize checkpoint (format {metadata.get('format')!r}, expected {FORMAT!r})"
        )
    fields = _Fields(source, metadata)
    if metadata["format"] == FORMAT:
        _check_tensors(source, tensors, fields.json("checksums", dict))
    bad = _non_finite(tensors)
    if bad:
        raise CheckpointError(
            f"{source}: NaN or infinity in {listed_names(bad)}; the run that wrote it diverged or "
            "the file was changed afterwards; use an earlier checkpoint"
        )
    try:
        config = load_config(fields.json("config", dict))
    except ConfigError as exc:
        raise CheckpointError(f"{source}: the experiment config in its metadata does not validate: {exc}") from None
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    groups = fields.json("optim_groups", (list, type(None)))
    optimizer_state = None
    if groups is not None:
        per_param: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                per_param.setdefault(int(index), {})[name] = value
        optimizer_state = {"state": per_param, "param_groups": groups}
        if "optim_state" in metadata:
            written = fields.json("optim_state", list)
            lost = sorted(set(written) - set(per_param))
            if lost:
                optimizer_state["missing"] = lost
    recipe, recipe_hash, step = fields.json("recipe", (dict, type(None))), fields.text("recipe_hash"), fields.step()
    if step > config.steps:
        raise CheckpointError(f"{source}: its metadata says step {step}, but its run has {config.steps} steps")
    _check_recipe_hash(source, recipe, recipe_hash)
    return Checkpoint(source, config, recipe, recipe_hash, step, model_state, optimizer_state)


def _check_recipe_hash(source: Path, recipe: dict[str, Any] | None, recipe_hash: str) -> None:
    """The stored hash must be the stored recipe's (``""`` for full precision)."""
    from binarize.recipe import load_recipe

    try:
        actual = "" if recipe is None else load_recipe(recipe).hash
    except BinarizeError as exc:
        raise CheckpointError(f"{source}: the recipe in its metadata does not load: {exc}") from None
    if actual != recipe_hash:
        raise CheckpointError(
            f"{source}: its metadata's recipe_hash {recipe_hash[:12] or '(none)'!r} is not the hash of its recipe "
            f"({actual[:12] or 'none: full precision'}); the metadata was edited"
        )


class _Fields:
    """The metadata fields of a checkpoint, each checked for presence and type with the file named on failure."""

    def __init__(self, source: Path, metadata: dict[str, str]) -> None:
        self.source, self.metadata = source, metadata

    def text(self, key: str) -> str:
        if key not in self.metadata:
            raise CheckpointError(
                f"{self.source}: its metadata lacks the field {key!r} (it has {', '.join(sorted(self.metadata))}); "
                "the file was not written by `binarize train` or was edited"
            )
        return self.metadata[key]

    def json(self, key: str, kinds: type | tuple[type, ...]) -> Any:
        text = self.text(key)
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{self.source}: the metadata field {key!r} is not valid JSON ({exc})") from None
        if not isinstance(value, kinds):
            raise CheckpointError(
                f"{self.source}: the metadata field {key!r} holds a {type(value).__name__}, not what "
                "`binarize train` writes there"
            )
        return value

    def step(self) -> int:
        text = self.text("step")
        if not text.isdigit():
            raise CheckpointError(f"{self.source}: the metadata field 'step' is {text!r}, not a count of steps")
        return int(text)


def _check_tensors(source: Path, tensors: Mapping[str, torch.Tensor], checksums: dict[str, Any]) -> None:
    """Raise :class:`CheckpointError` unless ``tensors`` are exactly the checksummed tensors, byte for byte."""
    missing = sorted(set(checksums) - set(tensors))
    extra = sorted(set(tensors) - set(checksums))
    damaged = sorted(name for name in set(checksums) & set(tensors) if tensor_checksum(tensors[name]) != checksums[name])
    problems = []
    if damaged:
        problems.append(f"data that does not match the stored checksum in {listed_names(damaged)}")
    if missing:
        problems.append(f"tensors it was written with are missing: {listed_names(missing)}")
    if extra:
        problems.append(f"tensors were added after it was written: {listed_names(extra)}")
    if problems:
        raise CheckpointError(
            f"{source} is damaged: {'; '.join(problems)}. It was changed after it was written (a disk or copy "
            "error, or an edit); use an earlier checkpoint or copy the file again"
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
    metadata = _metadata(found.config, found.recipe, found.recipe_hash, found.step, None, tensors)
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


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str | Path, what: str) -> None:
    """Load ``state`` into ``model``, or raise :class:`CheckpointError` naming ``source`` and every kind of misfit.

    Missing and unexpected names, shapes that differ and values of another kind (an integer or boolean tensor
    where the model holds floating point, or the reverse; floating-point precisions may differ, as in a compact
    float16 file) are listed, the first few of each, instead of torch's multi-line message or a silent cast.
    """
    expected = model.state_dict()
    problems = []
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        problems.append(f"missing {listed_names(missing)}")
    if unexpected:
        problems.append(f"unexpected {listed_names(unexpected)}")
    shapes = [f"{k} {tuple(state[k].shape)} instead of {tuple(v.shape)}" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    if shapes:
        problems.append(f"other shapes: {listed_names(shapes)}")
    kinds = [f"{k} ({state[k].dtype} instead of {v.dtype})" for k, v in expected.items()
             if k in state and state[k].is_floating_point() != v.is_floating_point()]
    if kinds:
        problems.append(f"values of another kind: {listed_names(kinds)}")
    if problems:
        raise CheckpointError(f"{source}: its weights do not fit {what}: {'; '.join(problems)}")
    model.load_state_dict(dict(state))
