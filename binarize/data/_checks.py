"""Argument checks shared by the data modules (one wording for every image and integer argument)."""

from __future__ import annotations

import torch
from torch import Tensor

from binarize.data.errors import DataError


def check_positive_int(value: object, what: str) -> int:
    """Return ``value`` if it is an integer >= 1 (``bool`` excluded), else raise :class:`DataError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{what} must be a positive integer, got {value!r}")
    return value


def check_rgb(img: object, what: str = "image", *, batch: bool = False) -> Tensor:
    """Return ``img`` if it is a floating-point RGB tensor, else raise :class:`DataError`.

    Args:
        img: the candidate image.
        what: how the error message names it.
        batch: also accept a batch ``(B, 3, H, W)`` besides a single image ``(3, H, W)``.
    """
    shapes = "(3, H, W) or (B, 3, H, W)" if batch else "(3, H, W)"
    if not isinstance(img, Tensor):
        raise DataError(f"{what} must be a torch.Tensor of shape {shapes}, got {type(img).__name__}")
    if not torch.is_floating_point(img):
        raise DataError(
            f"{what} must be a floating-point tensor with values in [0, 1], got dtype {img.dtype}; "
            f"convert 8-bit images with img.float() / 255"
        )
    ndims = (3, 4) if batch else (3,)
    if img.dim() not in ndims or img.shape[-3] != 3:
        raise DataError(f"{what} must have shape {shapes} (RGB, channels first), got {tuple(img.shape)}")
    return img
