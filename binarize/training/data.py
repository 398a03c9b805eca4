"""The data of an experiment: training patches and the held-out batch of the denoising loss."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from binarize.data import ImageFolder, SRPatches, bicubic_downscale, bicubic_upscale, embedded_photos
from binarize.training.config import ExperimentConfig

__all__ = ["EMBEDDED_SOURCES", "HELD_OUT_CROP", "held_out_batch", "held_out_loss", "patch_dataset", "training_images"]

#: Side of the centred crops of the held-out photos used for the denoising loss and quick evaluations.
HELD_OUT_CROP = 128


#: The embedded training sets ``data.source`` can name, each with the :func:`~binarize.data.embedded_photos` splits
#: it joins: the seven training photos, or those and scikit-image's three natural grayscale textures.
EMBEDDED_SOURCES: dict[str, tuple[str, ...]] = {"embedded": ("train",), "embedded+textures": ("train", "textures")}


def training_images(config: ExperimentConfig) -> list[Tensor]:
    """The HR training images: an embedded training set (:data:`EMBEDDED_SOURCES`), or the images of the
    ``data.source`` folder."""
    if config.data.source in EMBEDDED_SOURCES:
        return [image for split in EMBEDDED_SOURCES[config.data.source] for _, image in embedded_photos(split)]
    folder = ImageFolder(config.data.source, lr_dir=config.data.lr_dir, scale=config.scale)
    return folder.images()


def patch_dataset(config: ExperimentConfig, world: int = 1) -> Dataset:
    """Random augmented patches, enough for every step of every process (item ``i`` is fixed by the seed)."""
    length = config.steps * config.data.batch * world
    return SRPatches(training_images(config), config.scale, config.data.patch, length, augment=True, seed=config.seed)


def held_out_batch(config: ExperimentConfig) -> tuple[Tensor, Tensor]:
    """``(hr, cond)`` of the embedded held-out photos (centred ``HELD_OUT_CROP`` crops), for the denoising loss."""
    hr = torch.stack([image for _, image in embedded_photos("test", crop=HELD_OUT_CROP)])
    return hr, bicubic_upscale(bicubic_downscale(hr, config.scale), config.scale)


def held_out_loss(model: torch.nn.Module, config: ExperimentConfig, batch: tuple[Tensor, Tensor] | None = None) -> float:
    """The held-out denoising loss (:func:`~binarize.diffusion.denoising_loss`) of ``model`` under the experiment's
    schedule and target, on ``batch`` (default: :func:`held_out_batch`, moved to the model's device)."""
    from binarize.diffusion import PREDICTION_TARGETS, denoising_loss

    if batch is None:
        where = next(model.parameters()).device
        batch = tuple(x.to(where) for x in held_out_batch(config))
    return denoising_loss(model, config.diffusion.schedule(), PREDICTION_TARGETS.get(config.diffusion.target), *batch)
