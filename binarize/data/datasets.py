r"""SR data sets: random training patches (:class:`SRPatches`) and whole images from folders (:class:`ImageFolder`).

Both return, per item, a dict of three aligned RGB tensors in ``[0, 1]``:

* ``"hr"``: the high-resolution target, ``(3, H, W)``;
* ``"lr"``: the low-resolution input, ``(3, H / s, W / s)``, the bicubic downscale of ``hr``
  (:func:`~binarize.data.resize.bicubic_downscale`);
* ``"cond"``: ``lr`` upscaled back to ``(3, H, W)`` (:func:`~binarize.data.resize.bicubic_upscale`), the
  conditioning image of diffusion SR.

Examples:
    >>> import torch
    >>> patches = SRPatches([torch.rand(3, 40, 50), torch.rand(3, 30, 30)], scale=2, patch_size=16, length=10)
    >>> item = patches[3]
    >>> {key: tuple(value.shape) for key, value in item.items()}
    {'hr': (3, 16, 16), 'lr': (3, 8, 8), 'cond': (3, 16, 16)}
    >>> bool(torch.equal(item["hr"], patches[3]["hr"]))  # an item depends only on (seed, index)
    True
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from binarize.data._checks import check_positive_int, check_rgb
from binarize.data.augment import Dihedral
from binarize.data.errors import DataError
from binarize.data.folders import list_images, pair_lr_images
from binarize.data.images import image_size, load_image
from binarize.data.resize import bicubic_downscale, bicubic_upscale, mod_crop

__all__ = ["ImageFolder", "PatchSpec", "SRPatches"]

# LR pixels on each side of a patch that its bicubic upscale reads (the cubic kernel spans 2 pixels each way).
_UPSCALE_MARGIN = 2


@dataclass(frozen=True)
class PatchSpec:
    """Where an :class:`SRPatches` item comes from.

    Attributes:
        image: index of the source image.
        top: row of the patch's top-left corner in the LR image (``scale * top`` in the HR image).
        left: column of the patch's top-left corner in the LR image.
        transform: the flip/rotation applied to all three crops.
    """

    image: int
    top: int
    left: int
    transform: Dihedral


class SRPatches(Dataset[dict[str, Tensor]]):
    r"""Random aligned HR/LR/cond patches cut from in-memory images, for training.

    Each image is degraded once, whole, when the data set is built: it is cropped to a multiple of ``scale``
    (:func:`~binarize.data.resize.mod_crop`) and downscaled (:func:`~binarize.data.resize.bicubic_downscale`).
    Item ``i`` then cuts an LR patch of side :math:`p = P / s` at a random LR position :math:`(t, l)` and the HR
    patch at :math:`(s\,t, s\,l)`, so the two are the same region of the scene (patches are never degraded on
    their own, which would blur their borders differently from a whole image's). ``cond`` is the matching crop of
    the upscaled whole LR image, computed from the LR patch plus a 2-pixel margin (all the cubic kernel reads), so
    it equals ``bicubic_upscale(lr_image)`` cropped (to float32 rounding), as a model sees it at evaluation.

    Item ``i`` is a pure function of ``(seed, i)``: a :class:`torch.Generator` seeded from both draws the image
    (with probability proportional to its area), the position and, with ``augment``, one of the eight
    flips/rotations (:class:`~binarize.data.augment.Dihedral`). Two data sets built alike return equal items in
    any order and in any worker process.

    Memory: every HR image is held (as a ``float32`` copy) with its LR image, :math:`1 + 1/s^2` times the HR size.

    Args:
        images: RGB float tensors ``(3, H, W)`` in ``[0, 1]``, each at least ``patch_size`` on both sides.
        scale: the SR factor ``s``.
        patch_size: the HR patch side ``P``, a multiple of ``scale``.
        length: the number of items (patches per epoch).
        augment: apply a random flip/rotation to each patch.
        seed: the seed of the patch sequence.

    Raises:
        DataError: no images, an image that is not RGB or smaller than the patch, or a patch size that is not a
            multiple of ``scale``.
    """

    def __init__(
        self,
        images: Sequence[Tensor],
        scale: int,
        patch_size: int,
        length: int,
        augment: bool = True,
        seed: int = 0,
    ) -> None:
        self.scale = check_positive_int(scale, "scale")
        self.patch_size = check_positive_int(patch_size, "patch_size")
        self.length = check_positive_int(length, "length")
        if patch_size % scale:
            raise DataError(
                f"patch_size {patch_size} is not a multiple of scale {scale}; use e.g. "
                f"{max(scale, patch_size - patch_size % scale)}"
            )
        if isinstance(images, Tensor) or len(images) == 0:
            raise DataError(
                "images must be a non-empty sequence of (3, H, W) tensors, e.g. "
                "[img for _, img in embedded_photos('train')]"
            )
        self.augment = bool(augment)
        self.seed = int(seed)
        self._hr: list[Tensor] = []
        self._lr: list[Tensor] = []
        for index, img in enumerate(images):
            check_rgb(img, f"images[{index}]")
            height, width = img.shape[-2:]
            if min(height, width) < patch_size:
                raise DataError(
                    f"images[{index}] is {height}x{width} (HxW), smaller than patch_size {patch_size}; "
                    f"use a smaller patch or leave the image out"
                )
            hr = mod_crop(img.detach().to("cpu", torch.float32), scale).clone(memory_format=torch.contiguous_format)
            self._hr.append(hr)
            self._lr.append(bicubic_downscale(hr, scale))
        areas = torch.tensor([float(hr.shape[-2] * hr.shape[-1]) for hr in self._hr], dtype=torch.float64)
        self._weights = areas / areas.sum()

    def __len__(self) -> int:
        return self.length

    def spec(self, index: int) -> PatchSpec:
        """Where item ``index`` comes from (its image, LR position and transform)."""
        index = self._check_index(index)
        generator = torch.Generator().manual_seed(_item_seed(self.seed, index))
        image = int(torch.multinomial(self._weights, 1, generator=generator).item())
        lr_height, lr_width = self._lr[image].shape[-2:]
        size = self.patch_size // self.scale
        top = int(torch.randint(0, lr_height - size + 1, (1,), generator=generator).item())
        left = int(torch.randint(0, lr_width - size + 1, (1,), generator=generator).item())
        transform = Dihedral.random(generator) if self.augment else Dihedral()
        return PatchSpec(image, top, left, transform)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        spec = self.spec(index)
        s, size = self.scale, self.patch_size // self.scale
        hr_image, lr_image = self._hr[spec.image], self._lr[spec.image]
        hr = hr_image[:, s * spec.top : s * (spec.top + size), s * spec.left : s * (spec.left + size)]
        lr = lr_image[:, spec.top : spec.top + size, spec.left : spec.left + size]
        cond = _upscaled_crop(lr_image, spec.top, spec.left, size, s)
        crops = {"hr": hr, "lr": lr, "cond": cond}
        return {name: spec.transform(t).clone(memory_format=torch.contiguous_format) for name, t in crops.items()}

    def _check_index(self, index: int) -> int:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} is out of range for {self.length} patches")
        return index % self.length


def _item_seed(seed: int, index: int) -> int:
    """A 63-bit generator seed mixing ``seed`` and ``index`` (so nearby seeds give unrelated sequences)."""
    state = np.random.SeedSequence([seed % 2**64, index]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _upscaled_crop(lr_image: Tensor, top: int, left: int, size: int, scale: int) -> Tensor:
    """``bicubic_upscale(lr_image, scale)`` cropped to the HR window of the LR patch at ``(top, left)``.

    Only the patch and a margin of :data:`_UPSCALE_MARGIN` LR pixels (clipped at the image border, where torch
    replicates the edge exactly as it does for the whole image) are upscaled. The result is bit-identical for
    scales 2 and 4; for other scales torch's float32 sampling positions round differently (by about 1e-6).
    """
    height, width = lr_image.shape[-2:]
    row0, col0 = max(0, top - _UPSCALE_MARGIN), max(0, left - _UPSCALE_MARGIN)
    row1, col1 = min(height, top + size + _UPSCALE_MARGIN), min(width, left + size + _UPSCALE_MARGIN)
    up = bicubic_upscale(lr_image[:, row0:row1, col0:col1], scale)
    y, x = scale * (top - row0), scale * (left - col0)
    return up[:, y : y + scale * size, x : x + scale * size]


class ImageFolder(Dataset[dict[str, Tensor | str]]):
    """Whole images from a folder, for evaluation (and, through :meth:`images`, for :class:`SRPatches`).

    Item ``i`` is ``{"hr", "lr", "cond", "name"}`` for the ``i``-th HR file (sorted by name): ``hr`` is the image
    cropped to a multiple of ``scale``; ``lr`` is read from ``lr_dir`` when given (DIV2K layout, see
    :mod:`binarize.data.folders`) or else made by :func:`~binarize.data.resize.bicubic_downscale`; ``cond`` is
    ``bicubic_upscale(lr)``; ``name`` is the HR file's stem. Images are read on access, not cached.

    Every file header is read when the data set is built, so a missing pair, an LR image whose size is not the HR
    size divided by ``scale`` (rounded down, as DIV2K does) or an image under ``min_size`` fails at once.

    Args:
        hr_dir: the folder of HR images.
        lr_dir: the folder of LR images, or None to make them by bicubic downscaling.
        scale: the SR factor.
        min_size: the smallest allowed HR height and width (None: any image at least ``scale`` pixels).

    Raises:
        ImageNotFoundError: a folder does not exist.
        DataError: an empty folder, missing or ambiguous LR partners, mismatched sizes, or small images.
    """

    def __init__(
        self,
        hr_dir: str | os.PathLike[str],
        *,
        lr_dir: str | os.PathLike[str] | None = None,
        scale: int,
        min_size: int | None = None,
    ) -> None:
        self.scale = check_positive_int(scale, "scale")
        self.min_size = max(scale, min_size or 1)
        self.hr_paths = list_images(hr_dir)
        self.lr_paths = None if lr_dir is None else pair_lr_images(self.hr_paths, lr_dir, scale)
        for index, hr_path in enumerate(self.hr_paths):
            height, width = image_size(hr_path)
            if min(height, width) < self.min_size:
                raise DataError(
                    f"HR image {str(hr_path)!r} is {height}x{width} (HxW), smaller than the minimum "
                    f"{self.min_size}x{self.min_size}; remove it or lower min_size"
                )
            if self.lr_paths is not None:
                expected = (height // scale, width // scale)
                found = image_size(self.lr_paths[index])
                if found != expected:
                    raise DataError(
                        f"LR image {str(self.lr_paths[index])!r} is {found[0]}x{found[1]} (HxW), but its HR image "
                        f"{hr_path.name!r} is {height}x{width}, so x{scale} needs {expected[0]}x{expected[1]}; "
                        f"check the scale and that the folders belong together"
                    )

    def __len__(self) -> int:
        return len(self.hr_paths)

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        hr = mod_crop(load_image(self.hr_paths[index]), self.scale).contiguous()
        lr = bicubic_downscale(hr, self.scale) if self.lr_paths is None else load_image(self.lr_paths[index])
        return {"hr": hr, "lr": lr, "cond": bicubic_upscale(lr, self.scale), "name": self.hr_paths[index].stem}

    @property
    def names(self) -> list[str]:
        """The HR file stems, in item order."""
        return [path.stem for path in self.hr_paths]

    def images(self) -> list[Tensor]:
        """All HR images, loaded (uncropped), e.g. ``SRPatches(folder.images(), ...)``.

        :class:`SRPatches` makes its own bicubic LR patches, so the files of ``lr_dir`` are not used there.
        """
        return [load_image(path) for path in self.hr_paths]

