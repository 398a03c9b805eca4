"""Exceptions raised by :mod:`binarize.data`: each says what was received, what is allowed and how to fix it."""

from __future__ import annotations

from binarize.errors import BinarizeError

__all__ = ["DataError", "ImageNotFoundError"]


class DataError(BinarizeError, ValueError):
    """An image, folder or data-set argument that cannot be used (unreadable, too small, unpaired, ...)."""


class ImageNotFoundError(BinarizeError, FileNotFoundError):
    """An image path, or a folder of images, that does not exist."""
