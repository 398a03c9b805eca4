"""Training, evaluating and using diffusion super-resolution models: ``binarize train``, ``eval``, ``upscale``.

:mod:`~binarize.training.config` reads experiment configs, :mod:`~binarize.training.model` builds the (binarized)
network, :mod:`~binarize.training.trainer` runs the loop (exact resumption, DDP),
:mod:`~binarize.training.checkpoint` reads and writes safetensors checkpoints and
:mod:`~binarize.training.evaluate` evaluates and upscales.
"""

from binarize.training.checkpoint import Checkpoint, CheckpointError, latest_checkpoint, read_checkpoint, write_checkpoint
from binarize.training.config import ConfigError, DataConfig, DiffusionConfig, ExperimentConfig, OptimConfig, load_config
from binarize.training.evaluate import EvalReport, evaluate, load_model, upscale_image
from binarize.training.model import build_model
from binarize.training.trainer import TrainResult, train

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "ConfigError",
    "DataConfig",
    "DiffusionConfig",
    "EvalReport",
    "ExperimentConfig",
    "OptimConfig",
    "TrainResult",
    "build_model",
    "evaluate",
    "latest_checkpoint",
    "load_config",
    "load_model",
    "read_checkpoint",
    "train",
    "upscale_image",
    "write_checkpoint",
]
