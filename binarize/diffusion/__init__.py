"""Conditional diffusion for image super-resolution: noise schedule, prediction targets, losses, DDIM sampling.

Every function takes the network as an argument (``denoiser(x_t, t, cond)``) and never owns it, so a binarized
UNet is a drop-in replacement for its full-precision original.

Examples:
    >>> import torch
    >>> from binarize.diffusion import DDIMSampler, NoiseSchedule, PREDICTION_TARGETS
    >>> sampler = DDIMSampler(NoiseSchedule.linear(), PREDICTION_TARGETS.get("epsilon"), steps=4)
    >>> sampler.timesteps()
    [1500, 1000, 500, 0]
"""

from binarize.diffusion.losses import HELD_OUT_TIMESTEPS, denoising_loss, draw_timesteps, training_loss
from binarize.diffusion.sampler import DDIMSampler, Denoiser, TiledDenoiser, ddim_timesteps, pad_to_multiple
from binarize.diffusion.schedule import NoiseSchedule
from binarize.diffusion.targets import PREDICTION_TARGETS, PredictionTarget, zero_output

__all__ = [
    "DDIMSampler",
    "Denoiser",
    "HELD_OUT_TIMESTEPS",
    "NoiseSchedule",
    "PREDICTION_TARGETS",
    "PredictionTarget",
    "TiledDenoiser",
    "ddim_timesteps",
    "denoising_loss",
    "draw_timesteps",
    "pad_to_multiple",
    "training_loss",
    "zero_output",
]
