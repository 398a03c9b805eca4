"""Super-resolution data: image files, bicubic degradation, the embedded photos, data sets and loaders.

* :mod:`~binarize.data.images`: :func:`load_image` / :func:`save_image` (RGB ``float32`` ``(3, H, W)`` in [0, 1]).
* :mod:`~binarize.data.resize`: :func:`bicubic_downscale`, :func:`bicubic_upscale`, :func:`mod_crop`,
  :func:`center_crop`.
* :mod:`~binarize.data.embedded`: real photographs shipped inside scikit-image and scikit-learn, with a fixed
  train/test split (:func:`embedded_photos`); the default data, available offline.
* :mod:`~binarize.data.datasets`: :class:`SRPatches` (random aligned training patches) and :class:`ImageFolder`
  (HR folders or DIV2K-style HR/LR pairs, whole images for evaluation).
* :mod:`~binarize.data.loader`: :func:`make_loader`, a seeded (optionally distributed) data loader.

Examples:
    >>> from binarize.data import SRPatches, embedded_photos, make_loader
    >>> test = embedded_photos("test", crop=128)
    >>> [(name, tuple(img.shape)) for name, img in test]
    [('chelsea', (3, 128, 128)), ('flower', (3, 128, 128))]
    >>> patches = SRPatches([img for _, img in test], scale=2, patch_size=64, length=8)
    >>> batch = next(iter(make_loader(patches, batch_size=4)))
    >>> {key: tuple(value.shape) for key, value in batch.items()}
    {'hr': (4, 3, 64, 64), 'lr': (4, 3, 32, 32), 'cond': (4, 3, 64, 64)}
"""

from __future__ import annotations

from binarize.data.augment import Dihedral
from binarize.data.datasets import ImageFolder, PatchSpec, SRPatches
from binarize.data.embedded import EMBEDDED_PHOTOS, SPLITS, TEST, TEXTURES, TRAIN, embedded_photos
from binarize.data.errors import DataError, ImageNotFoundError
from binarize.data.folders import list_images, pair_lr_images
from binarize.data.images import IMAGE_EXTENSIONS, image_size, load_image, quantize, save_image, to_uint8
from binarize.data.loader import make_loader, seed_worker
from binarize.data.resize import bicubic_downscale, bicubic_upscale, center_crop, mod_crop

__all__ = [
    "EMBEDDED_PHOTOS",
    "IMAGE_EXTENSIONS",
    "SPLITS",
    "TEST",
    "TEXTURES",
    "TRAIN",
    "DataError",
    "Dihedral",
    "ImageFolder",
    "ImageNotFoundError",
    "PatchSpec",
    "SRPatches",
    "bicubic_downscale",
    "bicubic_upscale",
    "center_crop",
    "embedded_photos",
    "image_size",
    "list_images",
    "load_image",
    "make_loader",
    "mod_crop",
    "pair_lr_images",
    "quantize",
    "save_image",
    "seed_worker",
    "to_uint8",
]
