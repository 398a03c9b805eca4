r"""Bicubic degradation and the crops that keep LR and HR pixel grids aligned.

The low-resolution (LR) image of an SR pair is the high-resolution (HR) image downscaled by an integer ``scale``
with an antialiased bicubic filter, sampled at pixel centres (``align_corners=False``: LR pixel :math:`i` sits at
HR coordinate :math:`s\,(i + \tfrac12) - \tfrac12`). The filter is Keys' cubic convolution kernel

.. math::
    k(x) = \begin{cases} (a + 2)|x|^3 - (a + 3)|x|^2 + 1 & |x| \le 1 \\
                         a|x|^3 - 5a|x|^2 + 8a|x| - 4a & 1 < |x| < 2 \\ 0 & \text{otherwise} \end{cases}

with :math:`a = -0.5`, stretched to :math:`k(x / s) / s` so that it also low-pass filters. This is torch's
``F.interpolate(mode="bicubic", antialias=True)``. It is close to MATLAB's ``imresize`` (the SR literature's
reference, same kernel) but not bit-identical: at the image border MATLAB mirrors the image while torch truncates
the kernel and renormalises its weights, and the two round differently (MATLAB's LR images are usually stored as
8-bit files). Published PSNR figures computed on MATLAB-made LR images can therefore differ slightly from ones
computed with LR images made here.

Upscaling (the conditioning image of diffusion SR) is torch's plain bicubic interpolation
(``antialias=False``), whose kernel has :math:`a = -0.75` (as in OpenCV), not MATLAB's :math:`-0.5`. Both
directions clamp their output to ``[0, 1]`` (cubic kernels overshoot at edges), so every result is an image.

Examples:
    >>> import torch
    >>> hr = torch.rand(3, 10, 13)
    >>> lr = bicubic_downscale(mod_crop(hr, 2), 2)
    >>> tuple(lr.shape), tuple(bicubic_upscale(lr, 2).shape)
    ((3, 5, 6), (3, 10, 12))
    >>> tuple(center_crop(hr, 8).shape)
    (3, 8, 8)
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from binarize.data._checks import check_positive_int, check_rgb
from binarize.data.errors import DataError

__all__ = ["bicubic_downscale", "bicubic_upscale", "center_crop", "mod_crop"]


def bicubic_downscale(hr: Tensor, scale: int) -> Tensor:
    """Downscale by an integer factor with antialiased bicubic filtering, clamped to ``[0, 1]``.

    Args:
        hr: ``(3, H, W)`` or ``(B, 3, H, W)``, float, with ``H`` and ``W`` multiples of ``scale``
            (see :func:`mod_crop`).
        scale: the integer factor (``scale = 1`` returns a copy).

    Returns:
        ``(..., 3, H / scale, W / scale)``, same dtype and device as ``hr``.

    Raises:
        DataError: ``hr`` is not an RGB float tensor, ``scale`` is not a positive integer, or the size is not a
            multiple of ``scale``.
    """
    check_rgb(hr, "the HR image", batch=True)
    check_positive_int(scale, "scale")
    height, width = hr.shape[-2:]
    if height % scale or width % scale:
        raise DataError(
            f"the HR image is {height}x{width} (HxW), not a multiple of scale {scale} in both sides; "
            f"crop it first with mod_crop(img, {scale})"
        )
    size = (height // scale, width // scale)
    return _bicubic(hr, size, antialias=True)


def bicubic_upscale(lr: Tensor, scale: int) -> Tensor:
    """Upscale by an integer factor with bicubic interpolation (no antialiasing), clamped to ``[0, 1]``.

    Args:
        lr: ``(3, h, w)`` or ``(B, 3, h, w)``, float.
        scale: the integer factor (``scale = 1`` returns a copy).

    Returns:
        ``(..., 3, h * scale, w * scale)``, same dtype and device as ``lr``.
    """
    check_rgb(lr, "the LR image", batch=True)
    check_positive_int(scale, "scale")
    height, width = lr.shape[-2:]
    return _bicubic(lr, (height * scale, width * scale), antialias=False)


def _bicubic(img: Tensor, size: tuple[int, int], *, antialias: bool) -> Tensor:
    batch = img if img.dim() == 4 else img.unsqueeze(0)
    out = F.interpolate(batch, size=size, mode="bicubic", align_corners=False, antialias=antialias).clamp_(0, 1)
    return out if img.dim() == 4 else out.squeeze(0)


def mod_crop(img: Tensor, scale: int) -> Tensor:
    """Crop the bottom and right edges so that height and width are multiples of ``scale`` (a view, no copy).

    Args:
        img: a tensor ``(..., H, W)``.
        scale: the integer factor.

    Returns:
        ``img[..., : H - H % scale, : W - W % scale]``.
    """
    check_positive_int(scale, "scale")
    height, width = img.shape[-2:]
    if height < scale or width < scale:
        raise DataError(f"an image of {height}x{width} (HxW) is smaller than the scale {scale}; use a larger image")
    return img[..., : height - height % scale, : width - width % scale]


def center_crop(img: Tensor, size: int) -> Tensor:
    """The centred ``size x size`` window of ``img`` (a view; the extra row or column goes to the bottom/right).

    Args:
        img: a tensor ``(..., H, W)`` with ``H, W >= size``.
        size: the side of the window.

    Raises:
        DataError: ``size`` is not a positive integer or exceeds the image.
    """
    check_positive_int(size, "the crop size")
    height, width = img.shape[-2:]
    if size > height or size > width:
        raise DataError(
            f"cannot take a {size}x{size} centre crop of a {height}x{width} (HxW) image; "
            f"use a crop of at most {min(height, width)}"
        )
    top, left = (height - size) // 2, (width - size) // 2
    return img[..., top : top + size, left : left + size]
