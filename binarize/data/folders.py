"""Finding the images of a folder and pairing LR files with their HR files.

Two layouts are supported:

* **HR only**: one folder of images; the LR images are made by bicubic downscaling.
* **HR/LR pairs** (the DIV2K layout): ``HR/0001.png`` pairs with ``LR_bicubic/X2/0001x2.png`` (or
  ``LR_bicubic/X2/0001.png``). An LR file matches the HR file whose name without extension (stem) equals its own
  stem, or its stem without an ``x{scale}`` suffix (``X`` in either case); the extensions may differ.

Only the top level of a folder is listed (no recursion); hidden files (names starting with ``.``) are skipped, and
files are sorted by name, so an index always means the same image.

Examples:
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as root:
    ...     for name in ("b.png", "a.JPG", "notes.txt", ".hidden.png"):
    ...         _ = (Path(root) / name).write_bytes(b"")
    ...     [p.name for p in list_images(root)]
    ['a.JPG', 'b.png']
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from binarize.data.errors import DataError, ImageNotFoundError
from binarize.data.images import IMAGE_EXTENSIONS

__all__ = ["list_images", "pair_lr_images"]

# How many offending names an error message lists before "and N more".
_SHOWN = 5


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files of ``folder`` (extensions in :data:`~binarize.data.images.IMAGE_EXTENSIONS`), sorted.

    Raises:
        ImageNotFoundError: ``folder`` does not exist or is not a folder.
        DataError: ``folder`` holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ImageNotFoundError(f"image folder {str(folder)!r} {what}; pass a folder of png/jpg/bmp/tif images")
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    images = sorted((p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS), key=lambda p: p.name)
    if not images:
        raise DataError(
            f"no images in {str(folder)!r} (found {len(files)} other file(s)); allowed extensions: "
            f"{', '.join(IMAGE_EXTENSIONS)}"
        )
    return images


def pair_lr_images(hr_paths: Sequence[Path], lr_dir: str | os.PathLike[str], scale: int) -> list[Path]:
    """The LR file of each HR file, matched by stem (see the module docstring), in the order of ``hr_paths``.

    Args:
        hr_paths: the HR images.
        lr_dir: the folder of LR images.
        scale: the SR factor, for the optional ``x{scale}`` suffix of LR names.

    Raises:
        DataError: an HR image has no LR partner, or two LR files match one HR image.
    """
    suffix = f"x{scale}"
    candidates: dict[str, list[Path]] = {}
    for path in list_images(lr_dir):
        keys = {path.stem}
        if path.stem.lower().endswith(suffix) and len(path.stem) > len(suffix):
            keys.add(path.stem[: -len(suffix)])
        for key in keys:
            candidates.setdefault(key, []).append(path)
    missing = [p.name for p in hr_paths if not candidates.get(p.stem)]
    if missing:
        listed = ", ".join(missing[:_SHOWN]) + (f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else "")
        example = hr_paths[0].stem
        raise DataError(
            f"{len(missing)} HR image(s) have no LR partner in {str(lr_dir)!r}: {listed}; an HR file NAME.ext pairs "
            f"with an LR file NAME.ext or NAME{suffix}.ext (e.g. {example}.png or {example}{suffix}.png)"
        )
    ambiguous = [(p.name, candidates[p.stem]) for p in hr_paths if len(candidates[p.stem]) > 1]
    if ambiguous:
        name, paths = ambiguous[0]
        raise DataError(
            f"HR image {name!r} matches {len(paths)} LR files in {str(lr_dir)!r} "
            f"({', '.join(p.name for p in paths)}); keep one LR file per HR image"
        )
    return [candidates[p.stem][0] for p in hr_paths]
