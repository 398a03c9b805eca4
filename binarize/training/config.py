"""Experiment configuration of ``binarize train``: a YAML file of plain data, with command-line overrides.

.. code-block:: yaml

    name: bidiffsr-small-x2
    # any model spec (zoo:, timm:, file.py:factory) with forward(x_t, t, cond)
    model: zoo:bidiffsr-unet-small
    model_args: {}          # keyword arguments for the zoo factory
    # a shipped name, a YAML path, a mapping, or null for full precision
    recipe: bidiffsr
    scale: 2
    data: {source: embedded, patch: 64, batch: 8, workers: 0}
    diffusion: {steps: 2000, beta_start: 1.0e-6, beta_end: 1.0e-2, target: residual,
                per_sample_t: true}
    optim: {lr: 2.0e-4, betas: [0.9, 0.99], weight_decay: 0.0,
            schedule: constant, warmup: 0}   # or schedule: cosine (decays to 0)
    steps: 2000
    seed: 0
    log_every: 10
    checkpoint_every: 200
    eval_every: 0           # held-out denoising loss every N steps (0: only at the end)
    # start from a checkpoint (file or zoo:NAME): full precision or this recipe's
    init: null
    # distil from a trained network with the same target (a file or zoo:NAME)
    teacher: null
    teacher_weight: 1.0
    teacher_features: []    # also match these modules' outputs (regexes over names)
    teacher_feature_weight: 1.0
    out: runs/bidiffsr-small-x2

``binarize train CONFIG.yaml --set optim.lr=1e-4 --set steps=500`` overrides single keys (values are read as YAML).
``CONFIG`` may also name an experiment shipped with the zoo (``binarize train bidiffsr-small-x2``; see
:func:`available_experiments`).
Every key is checked: an unknown key gets a "did you mean", a value of the wrong type says what was expected.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from binarize._files import decode_text
from binarize.errors import BinarizeError
from binarize.recipe.source import did_you_mean

__all__ = [
    "ConfigError",
    "DataConfig",
    "DiffusionConfig",
    "ExperimentConfig",
    "OptimConfig",
    "available_experiments",
    "load_config",
]

_SHIPPED = ("binarize.zoo", "experiments")


class ConfigError(BinarizeError):
    """An experiment configuration that does not validate."""


@dataclass
class DataConfig:
    """Training data.

    Attributes:
        source: ``embedded`` (photographs shipped inside installed packages, no download), ``embedded+textures``
            (those and three natural grayscale textures of scikit-image) or an HR image folder.
        lr_dir: a folder of matching LR images (DIV2K layout); ``null`` makes LR images by bicubic downscaling.
        patch: side of the HR training patches (a multiple of the scale and of 8).
        batch: patches per step (per process under torchrun).
        workers: DataLoader worker processes.
    """

    source: str = "embedded"
    lr_dir: str | None = None
    patch: int = 64
    batch: int = 8
    workers: int = 0


@dataclass
class DiffusionConfig:
    """The diffusion process.

    Attributes:
        steps: number of timesteps :math:`T`.
        beta_start: first beta of the linear schedule.
        beta_end: last beta.
        target: ``epsilon`` (the paper), ``x0`` or ``residual`` (see :mod:`binarize.diffusion.targets`).
        per_sample_t: one timestep per sample (else one per batch, as the authors' release).
        sampling_steps: DDIM steps for evaluation and upscaling.
    """

    steps: int = 2000
    beta_start: float = 1e-6
    beta_end: float = 1e-2
    target: str = "residual"
    per_sample_t: bool = True
    sampling_steps: int = 50

    def schedule(self) -> Any:
        """The :class:`~binarize.diffusion.NoiseSchedule` these settings describe (linear betas)."""
        from binarize.diffusion import NoiseSchedule

        return NoiseSchedule.linear(self.steps, self.beta_start, self.beta_end)


@dataclass
class OptimConfig:
    r"""Adam and its learning-rate schedule.

    Attributes:
        lr: the peak learning rate.
        betas: Adam's betas.
        weight_decay: L2 penalty.
        schedule: ``constant`` or ``cosine``: after warm-up,
            :math:`\text{lr}_k = \text{lr} \cdot \tfrac12 \bigl(1 + \cos(\pi \frac{k - w}{N - w})\bigr)` for step
            :math:`k` of :math:`N` (Loshchilov & Hutter, "SGDR", ICLR 2017, without restarts).
        warmup: steps of linear warm-up from 0 to ``lr`` (both schedules).
    """

    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup: int = 0

    def lr_at(self, step: int, total: int) -> float:
        """The learning rate of step ``step`` (0-based) of a ``total``-step run: a pure function of the step, so a
        resumed run uses the rates an uninterrupted one does."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        if self.schedule == "constant":
            return self.lr
        progress = (step - self.warmup) / max(total - self.warmup, 1)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class ExperimentConfig:
    """One training experiment (see the module docstring for the YAML form).

    ``init`` names a trained checkpoint of the same model (a file written by ``binarize train``, or ``zoo:NAME`` of
    a trained zoo model). A full-precision one (``recipe: null``) is loaded into the full-precision network before
    the recipe binarizes it: structure-only rewriting is function-preserving, so the binarized network starts from
    the trained full-precision function up to the binarizers themselves. A binarized one must have been trained
    with this experiment's recipe; its weights are loaded after binarization (a later stage of the same binary
    model). Only a fresh run loads ``init``; a resumed run continues from its own checkpoint.

    ``teacher`` names a trained network (a ``binarize train`` checkpoint or ``zoo:NAME``) with the same scale and
    diffusion target: every step also pulls the output towards the teacher's at the same noisy input, weighted by
    ``teacher_weight`` (see :func:`~binarize.diffusion.training_loss`). ``teacher_features`` adds intermediate
    features: regular expressions over module names whose outputs (or, with the suffix ``:input``, first inputs:
    ``encoder\\.\\d+\\.blocks\\.\\d+\\.norm1:input``) are pulled together in both networks, weighted by
    ``teacher_feature_weight`` (see :class:`~binarize.training.features.FeatureDistillation`).
    """

    name: str = "experiment"
    model: str = "zoo:bidiffsr-unet-small"
    model_args: dict[str, Any] = field(default_factory=dict)
    recipe: str | dict[str, Any] | None = "bidiffsr"
    scale: int = 2
    data: DataConfig = field(default_factory=DataConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 1000
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 200
    eval_every: int = 0
    init: str | None = None
    teacher: str | None = None
    teacher_weight: float = 1.0
    teacher_features: list[str] = field(default_factory=list)
    teacher_feature_weight: float = 1.0
    out: str = "runs/experiment"

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what a checkpoint stores and ``load_config`` reads back)."""
        data = dataclasses.asdict(self)
        data["optim"]["betas"] = list(self.optim.betas)
        return data

    def validate(self) -> ExperimentConfig:
        """Check values that types alone do not catch; returns ``self``.

        Raises:
            ConfigError: with what is wrong and how to fix it.
        """
        from binarize.diffusion import PREDICTION_TARGETS

        problems = []
        for key, value in (("scale", self.scale), ("steps", self.steps), ("data.batch", self.data.batch),
                           ("data.patch", self.data.patch), ("diffusion.steps", self.diffusion.steps),
                           ("diffusion.sampling_steps", self.diffusion.sampling_steps)):
            if value < 1:
                problems.append(f"{key} must be positive, got {value}")
        for key, value in (("log_every", self.log_every), ("checkpoint_every", self.checkpoint_every),
                           ("eval_every", self.eval_every), ("data.workers", self.data.workers)):
            if value < 0:
                problems.append(f"{key} must be 0 or more, got {value}")
        if self.data.patch % (8 * self.scale):
            problems.append(
                f"data.patch must be a multiple of 8 x scale = {8 * self.scale} (the LR patch must be a multiple of 8 "
                f"for the UNet), got {self.data.patch}"
            )
        if self.diffusion.target not in PREDICTION_TARGETS:
            problems.append(
                f"diffusion.target must be one of {', '.join(PREDICTION_TARGETS.names())}, got "
                f"{self.diffusion.target!r}.{did_you_mean(self.diffusion.target, PREDICTION_TARGETS.names())}"
            )
        if self.diffusion.sampling_steps > self.diffusion.steps:
            problems.append("diffusion.sampling_steps cannot exceed diffusion.steps")
        if self.optim.lr <= 0:
            problems.append(f"optim.lr must be positive, got {self.optim.lr}")
        if self.optim.schedule not in _LR_SCHEDULES:
            problems.append(
                f"optim.schedule must be one of {', '.join(_LR_SCHEDULES)}, got {self.optim.schedule!r}."
                f"{did_you_mean(self.optim.schedule, list(_LR_SCHEDULES))}"
            )
        if not 0 <= self.optim.warmup < self.steps:
            problems.append(f"optim.warmup must be from 0 to steps - 1 = {self.steps - 1}, got {self.optim.warmup}")
        if self.teacher_weight < 0:
            problems.append(f"teacher_weight must be 0 or more, got {self.teacher_weight}")
        if self.teacher_feature_weight < 0:
            problems.append(f"teacher_feature_weight must be 0 or more, got {self.teacher_feature_weight}")
        if self.teacher_features and self.teacher is None:
            problems.append("teacher_features needs a teacher (set teacher: PATH or zoo:NAME, or drop teacher_features)")
        for pattern in self.teacher_features:
            try:
                re.compile(pattern.removesuffix(FEATURE_INPUT_SUFFIX))
            except re.error as exc:
                problems.append(f"teacher_features: {pattern!r} is not a regular expression ({exc})")
        if self.optim.weight_decay < 0:
            problems.append(f"optim.weight_decay must be 0 or more, got {self.optim.weight_decay}")
        if not all(0 <= beta < 1 for beta in self.optim.betas):
            problems.append(f"optim.betas must both be in [0, 1), got {list(self.optim.betas)}")
        for key, value, most in _UPPER_BOUNDS(self):
            if value > most:
                problems.append(f"{key} must be at most {most:,}, got {value:,}")
        if self.seed < 0:
            problems.append(f"seed must be 0 or more, got {self.seed}")
        if not problems:
            try:
                self.diffusion.schedule()
            except ValueError as exc:
                problems.append(f"diffusion: {exc}")
        if problems:
            raise ConfigError("invalid experiment config: " + "; ".join(problems))
        return self


def _UPPER_BOUNDS(config: ExperimentConfig) -> list[tuple[str, int, int]]:  # noqa: N802 - a table
    """Counts with an upper bound: far beyond any real run, and below what would exhaust memory or overflow."""
    return [
        ("steps", config.steps, 10**8), ("diffusion.steps", config.diffusion.steps, 10**6),
        ("data.batch", config.data.batch, 4096), ("data.patch", config.data.patch, 8192),
        ("seed", config.seed, 2**63 - 1),
    ]


#: The suffix of a ``teacher_features`` pattern that selects its modules' first input instead of their output.
FEATURE_INPUT_SUFFIX = ":input"

#: The learning-rate schedules of ``optim.schedule``.
_LR_SCHEDULES = ("constant", "cosine")

_SECTIONS: dict[str, type] = {"data": DataConfig, "diffusion": DiffusionConfig, "optim": OptimConfig}


def _convert(value: Any, annotation: str, where: str) -> Any:
    """Check ``value`` against a field's annotation (as written in this module) and normalise it."""
    kinds = [part.strip() for part in annotation.split("|")]
    if value is None:
        if "None" in kinds:
            return None
        raise ConfigError(f"{where} cannot be null")
    for kind in kinds:
        if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            if abs(value) >= 2**63:
                raise ConfigError(f"{where} must be below 2**63 in magnitude, got {value}")
            return value
        if kind == "float" and (
            (isinstance(value, (int, float)) and not isinstance(value, bool))
            or (isinstance(value, str) and _is_number(value))  # YAML 1.1 reads "1e-4" (no dot) as a string
        ):
            number = float(value)
            if not math.isfinite(number):
                raise ConfigError(f"{where} must be a finite number, got {value!r}")
            return number
        if kind == "bool" and isinstance(value, bool):
            return value
        if kind == "str" and isinstance(value, str):
            return value
        if kind.startswith("dict") and isinstance(value, Mapping):
            return dict(value)
        if kind == "list[str]" and isinstance(value, Sequence) and not isinstance(value, str) and all(
            isinstance(v, str) for v in value
        ):
            return list(value)
        if kind.startswith("tuple[float, float]") and isinstance(value, Sequence) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            return (float(value[0]), float(value[1]))
    raise ConfigError(f"{where} must be {annotation.replace('dict[str, Any]', 'a mapping')}, got {value!r}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'the config'} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(
                f"unknown key {path!r}.{did_you_mean(str(key), list(fields))} Allowed: {', '.join(fields)}"
            )
        annotation = str(fields[key].type)
        values[key] = _build(_SECTIONS[key], value, path) if key in _SECTIONS else _convert(value, annotation, path)
    return cls(**values)


def _override(data: dict[str, Any], assignment: str) -> None:
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"an override is KEY=VALUE (e.g. optim.lr=1e-4), got {assignment!r}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {assignment!r}: the value is not valid YAML ({exc})") from None
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {assignment!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def available_experiments() -> list[str]:
    """The experiment configs shipped with the zoo, by name (``binarize train NAME``)."""
    from importlib import resources

    folder = resources.files(_SHIPPED[0]) / _SHIPPED[1]
    return sorted(entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def _shipped(name: str) -> Path | None:
    from importlib import resources

    if name not in available_experiments():
        return None
    return Path(str(resources.files(_SHIPPED[0]) / _SHIPPED[1] / f"{name}.yaml"))


def load_config(source: str | Path | Mapping[str, Any] | None = None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read an experiment config from a YAML file, a shipped experiment's name or a mapping (``None``: all defaults)
    and apply ``overrides``.

    Raises:
        ConfigError: an unreadable file, an unknown key, a value of the wrong type or out of range.
    """
    if source is None:
        data: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        data = copy.deepcopy(dict(source))
    else:
        path = Path(source)
        if not path.is_file() and isinstance(source, str) and (shipped := _shipped(source)) is not None:
            path = shipped
        try:
            loaded = yaml.safe_load(decode_text(path.read_bytes(), "an experiment config"))
        except ValueError as exc:  # not UTF-8, or an integer of thousands of digits
            raise ConfigError(f"{path}: {exc}") from None
        except OSError as exc:
            hint = did_you_mean(str(source), available_experiments())
            raise ConfigError(
                f"cannot read the config {str(path)!r}: {exc.strerror or exc}.{hint} A config is a YAML file or one "
                f"of the shipped experiments: {', '.join(available_experiments())}"
            ) from None
        except (yaml.YAMLError, RecursionError) as exc:
            raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
        if loaded is None:
            raise ConfigError(
                f"{path}: the config is empty; it needs at least `name` and `model` (see the training documentation, "
                f"or start from a shipped experiment: {', '.join(available_experiments())})"
            )
        data = loaded
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: an experiment config is a mapping of keys, got {type(data).__name__}")
    for assignment in overrides:
        _override(data, assignment)
    try:
        return _build(ExperimentConfig, data, "").validate()
    except ConfigError as exc:
        if source is None or isinstance(source, Mapping):
            raise
        where = f"{path} with {' '.join(f'--set {o}' for o in overrides)}" if overrides else str(path)
        raise ConfigError(f"{where}: {exc}") from None
