"""Reading and writing RGB images as float tensors in [0, 1].

:func:`load_image` turns any image Pillow can read into a ``float32`` tensor ``(3, H, W)``: grayscale is repeated
over the three channels, an alpha channel is dropped (not composited), a palette is expanded, 16-bit grayscale is
divided by 65535 and every other mode by 255. The EXIF orientation tag is ignored: pixels are used as stored, so
that an LR/HR pair stays on one pixel grid.

:func:`save_image` writes an 8-bit PNG atomically: a temporary file in the destination folder is written first and
then moved over the destination with :func:`os.replace`, so a reader never sees a half-written file and an
existing file is only replaced when the new one is complete.

Examples:
    >>> import tempfile, torch
    >>> img = torch.linspace(0, 1, 3 * 8 * 12).reshape(3, 8, 12)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = save_image(img, f"{folder}/out.png")
    ...     back = load_image(path)
    >>> tuple(back.shape), back.dtype
    ((3, 8, 12), torch.float32)
    >>> bool(torch.equal((back * 255).round(), quantize(img).float()))
    True
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from binarize._files import atomic_path
from binarize.data._checks import check_rgb
from binarize.data.errors import DataError, ImageNotFoundError

__all__ = ["IMAGE_EXTENSIONS", "image_size", "load_image", "quantize", "save_image", "to_uint8"]

#: File name extensions (lower case) that folder data sets list as images.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# Pillow modes that hold 16-bit grayscale; every other readable mode is converted to 8-bit RGB by Pillow.
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
# Modes whose value range is not defined by the format (32-bit integers, floats): refused rather than guessed.
_UNSCALED_MODES = ("I", "F")


def load_image(path: str | os.PathLike[str], *, min_size: int | None = None) -> Tensor:
    """Read an image file as an RGB tensor.

    Args:
        path: any file Pillow can decode (PNG, JPEG, BMP, TIFF, ...).
        min_size: when given, the smallest allowed height and width, in pixels.

    Returns:
        A ``float32`` tensor of shape ``(3, H, W)`` with values in ``[0, 1]`` (``v / 255`` for 8-bit images).

    Raises:
        ImageNotFoundError: ``path`` does not exist.
        DataError: ``path`` is not a readable image, has an unsupported pixel mode, or is smaller than
            ``min_size``.
    """
    path = _existing_file(path)
    with _reading(path), Image.open(path) as image:
        image.load()
        array = _to_rgb_array(image, path)
    height, width = array.shape[:2]
    if min_size is not None and min(height, width) < min_size:
        raise DataError(
            f"image {str(path)!r} is {height}x{width} (HxW), smaller than the minimum {min_size}x{min_size}; "
            f"use a larger image or lower min_size"
        )
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(height, width)`` of an image file, read from its header (the pixels are not decoded).

    Raises:
        ImageNotFoundError: ``path`` does not exist.
        DataError: ``path`` is not a readable image.
    """
    path = _existing_file(path)
    with _reading(path), Image.open(path) as image:
        width, height = image.size
    return height, width


def _existing_file(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.exists():
        raise ImageNotFoundError(f"image file {str(path)!r} does not exist; check the path")
    if path.is_dir():
        raise DataError(f"{str(path)!r} is a folder, expected an image file (png, jpg, bmp, tif, ...)")
    return path


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn Pillow's (and the file system's) failures while reading ``path`` into :class:`DataError`."""
    try:
        yield
    except Image.DecompressionBombError as error:
        raise DataError(
            f"{str(path)!r} declares an image too large to decode safely ({error}); if it is genuine, split it "
            "into parts"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DataError(
            f"cannot read {str(path)!r} as an image ({type(error).__name__}: {error}); expected a file Pillow can "
            f"decode, such as png, jpg, bmp or tif"
        ) from error


def _to_rgb_array(image: Image.Image, path: Path) -> np.ndarray:
    """``(H, W, 3)`` float32 array in [0, 1] from an opened Pillow image."""
    if image.mode in _UNSCALED_MODES:
        raise DataError(
            f"image {str(path)!r} has pixel mode {image.mode!r} (32-bit integer or float) whose value range is "
            f"unknown; save it as an 8-bit or 16-bit image"
        )
    if image.mode in _SIXTEEN_BIT_MODES:
        gray = np.asarray(image, dtype=np.float32) / np.float32(65535)
        return np.repeat(gray[:, :, None], 3, axis=2)
    return np.asarray(image.convert("RGB"), dtype=np.float32) / np.float32(255)


def quantize(img: Tensor) -> Tensor:
    r"""The 8-bit levels of an image in [0, 1], as SR evaluations compute them: :math:`\mathrm{round}(255\,
    \mathrm{clamp}(x, 0, 1))`, returned as ``float64`` on the CPU (values 0, 1, ..., 255; ties round to even).

    Examples:
        >>> quantize(torch.tensor([-0.1, 0.5, 0.999, 1.2])).tolist()
        [0.0, 128.0, 255.0, 255.0]
    """
    return (img.detach().to("cpu", torch.float64).clamp(0, 1) * 255).round()


def to_uint8(img: Tensor) -> np.ndarray:
    """An RGB tensor ``(3, H, W)`` in [0, 1] as an 8-bit ``(H, W, 3)`` array (see :func:`quantize`).

    Examples:
        >>> to_uint8(torch.tensor([0.0, 0.5, 1.2]).reshape(3, 1, 1)).tolist()
        [[[0, 128, 255]]]
    """
    return quantize(check_rgb(img)).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def save_image(img: Tensor, path: str | os.PathLike[str]) -> Path:
    """Write an RGB tensor as an 8-bit PNG, atomically.

    Values are clamped to ``[0, 1]`` and rounded to 8 bits (``round(v * 255)``), so ``load_image`` returns
    exactly ``round(clamp(img, 0, 1) * 255) / 255``. Missing parent folders are created.

    Args:
        img: a floating-point tensor ``(3, H, W)``.
        path: the destination; its name must end in ``.png``.

    Returns:
        The destination path.

    Raises:
        DataError: ``img`` is not an RGB float tensor, or ``path`` does not end in ``.png``.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise DataError(f"save_image writes PNG files, so the path must end in .png, got {str(path)!r}")
    pixels = Image.fromarray(to_uint8(img))
    with atomic_path(path) as temporary:
        # os.open applies the umask to 0o666, so the final file gets the same permissions as any new file.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as stream:
            pixels.save(stream, format="PNG")
            stream.flush()
            os.fsync(stream.fileno())
    return path
