"""The embedded default SR data: real photographs shipped inside PyPI packages (nothing is downloaded).

Every photo is an 8-bit RGB image that scikit-image (``skimage.data``) or scikit-learn
(``sklearn.datasets.load_sample_images``) installs with the package. The split is fixed, so that results are
comparable across runs and machines:

=========================  ================================================  ============  =====
name                       source                                            H x W         split
=========================  ================================================  ============  =====
``chelsea``                ``skimage.data.chelsea()`` (a cat)                300 x 451     test
``flower``                 ``sklearn`` sample image ``flower.jpg``           427 x 640     test
``astronaut``              ``skimage.data.astronaut()``                      512 x 512     train
``coffee``                 ``skimage.data.coffee()``                         400 x 600     train
``rocket``                 ``skimage.data.rocket()``                         427 x 640     train
``immunohistochemistry``   ``skimage.data.immunohistochemistry()``           512 x 512     train
``motorcycle``             ``skimage.data.stereo_motorcycle()[0]`` (left)    500 x 741     train
``hubble_deep_field``      ``skimage.data.hubble_deep_field()``              872 x 1000    train
``china``                  ``sklearn`` sample image ``china.jpg``            427 x 640     train
``brick``                  ``skimage.data.brick()`` (grayscale, as RGB)      512 x 512     textures
``grass``                  ``skimage.data.grass()`` (grayscale, as RGB)      512 x 512     textures
``gravel``                 ``skimage.data.gravel()`` (grayscale, as RGB)     512 x 512     textures
=========================  ================================================  ============  =====

The ``textures`` split holds natural grayscale textures, each channel a copy of the gray values (so the Y channel
the evaluation measures is the texture itself); training adds them to the training photos with
``data.source: embedded+textures``.

Left out on purpose: ``skimage.data.cat`` (the same photograph as ``chelsea``, which would leak the test set
into training), ``skimage.data.retina`` (a smooth fundus photograph with almost no detail at x2: the mean
:math:`|HR - \text{bicubic}|` is 0.002 against 0.013 to 0.038 for the photos above, and as the largest image it would
make a third of the area-weighted training patches uninformative) and the synthetic or grayscale images
(``camera``, ``colorwheel``, ``checkerboard``, ...) other than the three textures.

Each photo is decoded once per process (:func:`functools.lru_cache`); every call returns a fresh copy, so callers
may modify what they get.

Examples:
    >>> [(name, tuple(img.shape)) for name, img in embedded_photos("test", crop=64)]
    [('chelsea', (3, 64, 64)), ('flower', (3, 64, 64))]
    >>> EMBEDDED_PHOTOS.get("chelsea")().shape
    torch.Size([3, 300, 451])
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from binarize._registry import Registry
from binarize.data.errors import DataError
from binarize.data.resize import center_crop

__all__ = ["EMBEDDED_PHOTOS", "SPLITS", "TEST", "TEXTURES", "TRAIN", "embedded_photos"]

#: Held-out photos, never used for training.
TEST: tuple[str, ...] = ("chelsea", "flower")
#: Training photos.
TRAIN: tuple[str, ...] = (
    "astronaut",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "motorcycle",
    "hubble_deep_field",
    "china",
)
#: Natural grayscale textures (as RGB), an optional addition to the training photos.
TEXTURES: tuple[str, ...] = ("brick", "grass", "gravel")
#: The photo names of each split, in a fixed order (``all``: the training and held-out photos).
SPLITS: dict[str, tuple[str, ...]] = {"train": TRAIN, "test": TEST, "all": TRAIN + TEST, "textures": TEXTURES}

#: Embedded photos by name: each entry is a zero-argument loader returning a ``float32`` ``(3, H, W)`` tensor in
#: ``[0, 1]`` (a new copy on every call).
EMBEDDED_PHOTOS: Registry[Callable[[], Tensor]] = Registry("embedded photo")


def _skimage(function: str) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, function)()

    return read


def _skimage_motorcycle() -> np.ndarray:
    import skimage.data

    left, _right, _disparity = skimage.data.stereo_motorcycle()
    return left


def _skimage_gray_as_rgb(function: str) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        import skimage.data

        gray = getattr(skimage.data, function)()
        return np.repeat(gray[..., None], 3, axis=2) if gray.ndim == 2 else gray

    return read


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    """Read a scikit-learn sample image from the installed package's files.

    This decodes the JPEG file exactly as ``load_sample_images()`` does (with Pillow) without importing
    scikit-learn, which takes about a second; if the file is not where scikit-learn keeps it, fall back to the
    public loader.
    """

    def read() -> np.ndarray:
        spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
        if spec is not None and spec.origin is not None:
            path = Path(spec.origin).parent / "datasets" / "images" / filename
            if path.is_file():
                with Image.open(path) as image:
                    return np.asarray(image)
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)

    return read


def _register(name: str, read: Callable[[], np.ndarray], source: str) -> None:
    """Register ``name``: decode ``read()`` once, hand out copies."""

    @lru_cache(maxsize=1)
    def decoded() -> Tensor:
        array = read()
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
            raise DataError(
                f"the embedded photo {name!r} ({source}) should be an 8-bit RGB array (H, W, 3), got dtype "
                f"{array.dtype} and shape {array.shape}; the installed package may have changed it"
            )
        # np.array copies: some packages hand out read-only arrays, which torch refuses to wrap
        return torch.from_numpy(np.array(array)).permute(2, 0, 1).float().div_(255).contiguous()

    def load() -> Tensor:
        return decoded().clone()

    load.__name__ = f"load_{name}"
    load.__doc__ = f"The embedded photo {name!r} ({source}) as a float32 (3, H, W) tensor in [0, 1]."
    EMBEDDED_PHOTOS.register(name, load)


for _name in ("chelsea", "astronaut", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field"):
    _register(_name, _skimage(_name), f"skimage.data.{_name}()")
_register("motorcycle", _skimage_motorcycle, "skimage.data.stereo_motorcycle()[0]")
_register("flower", _sklearn("flower.jpg"), "sklearn.datasets.load_sample_images(), flower.jpg")
_register("china", _sklearn("china.jpg"), "sklearn.datasets.load_sample_images(), china.jpg")
for _name in TEXTURES:
    _register(_name, _skimage_gray_as_rgb(_name), f"skimage.data.{_name}(), grayscale as RGB")


def embedded_photos(
    split: Literal["train", "test", "all", "textures"] = "train", *, crop: int | None = None
) -> list[tuple[str, Tensor]]:
    """The photos of one split as ``(name, image)`` pairs, in the split's fixed order.

    Args:
        split: ``"train"`` (:data:`TRAIN`), ``"test"`` (:data:`TEST`), ``"all"`` (train then test) or
            ``"textures"`` (:data:`TEXTURES`).
        crop: when given, the centred ``crop x crop`` window of each photo (a small crop makes evaluation fast;
            the evaluation default elsewhere in the library is 128).

    Returns:
        ``(name, float32 tensor (3, H, W) in [0, 1])`` pairs; the tensors are new copies.

    Raises:
        DataError: an unknown split, or a crop larger than a photo.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; allowed: {', '.join(repr(s) for s in SPLITS)}")
    photos = [(name, EMBEDDED_PHOTOS.get(name)()) for name in SPLITS[split]]
    if crop is None:
        return photos
    return [(name, center_crop(img, crop).clone()) for name, img in photos]
