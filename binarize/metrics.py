r"""Image-quality metrics of the SR literature: PSNR and SSIM on the luma (Y) channel, and ``binarize metrics``.

Both metrics follow the convention of SR papers (MATLAB's evaluation scripts, BasicSR's ``calculate_psnr`` /
``calculate_ssim`` with ``test_y_channel=True``):

1. both RGB images, in ``[0, 1]``, are clamped and quantised to 8 bits: :math:`q = \mathrm{round}(255\,x)`
   (:func:`~binarize.data.images.quantize`);
2. converted to ITU-R BT.601 luma on the 0-255 scale, without rounding (:func:`rgb_to_y`);
3. ``crop`` pixels are removed from every side (papers crop ``scale`` pixels);
4. compared in ``float64``.

PSNR (peak 255), with :math:`\mathrm{MSE}` the mean squared difference of the two Y images:

.. math:: \mathrm{PSNR} = 10 \log_{10} \frac{255^2}{\mathrm{MSE}} \quad (+\infty \text{ for identical images})

SSIM (Wang et al., 2004) with an 11 x 11 Gaussian window :math:`w` (:math:`\sigma = 1.5`, weights summing to 1),
local statistics :math:`\mu_x = w * x`, :math:`\sigma_x^2 = w * x^2 - \mu_x^2`, :math:`\sigma_{xy} = w * (xy) -
\mu_x \mu_y` computed with 'valid' filtering (no padding: the map is 10 pixels smaller than the image in each
direction), and :math:`C_1 = (0.01 \cdot 255)^2`, :math:`C_2 = (0.03 \cdot 255)^2`:

.. math::
    \mathrm{SSIM} = \operatorname{mean} \frac{(2 \mu_x \mu_y + C_1)(2 \sigma_{xy} + C_2)}
                                          {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)}

Examples:
    >>> import torch
    >>> hr = torch.linspace(0, 1, 3 * 32 * 32).reshape(3, 32, 32)
    >>> psnr_y(hr, hr, crop=2), ssim_y(hr, hr, crop=2)
    (inf, 1.0)
    >>> noise = torch.randn(hr.shape, generator=torch.Generator().manual_seed(0))
    >>> noisy = (hr + 0.02 * noise).clamp(0, 1)
    >>> round(psnr_y(noisy, hr, crop=2), 2), round(ssim_y(noisy, hr, crop=2), 4)
    (38.73, 0.9026)
"""

from __future__ import annotations

import argparse
import json
import math
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from binarize.cli import CommandError, command
from binarize.data._checks import check_rgb
from binarize.data.errors import DataError
from binarize.data.images import load_image, quantize

__all__ = ["Y_OFFSET", "Y_WEIGHTS", "measure_files", "psnr_y", "rgb_to_y", "ssim_y"]

#: BT.601 luma weights of R, G and B for inputs in [0, 1], giving Y on the 0-255 scale (16 for black, 235 for white).
Y_WEIGHTS: tuple[float, float, float] = (65.481, 128.553, 24.966)
#: The luma offset (the black level on the 0-255 scale).
Y_OFFSET = 16.0

# SSIM constants (Wang et al., 2004) for 8-bit data.
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2

ImageT = TypeVar("ImageT", Tensor, np.ndarray)


def rgb_to_y(img: ImageT) -> ImageT:
    r"""ITU-R BT.601 luma of an RGB image in ``[0, 1]``, on the 0-255 scale, in ``float64``.

    .. math:: Y = 16 + 65.481\,R + 128.553\,G + 24.966\,B

    so that :math:`Y \in [16, 235]`; the result is not rounded (as in BasicSR's ``rgb2ycbcr(img, y_only=True)``).

    Args:
        img: a torch tensor ``(3, H, W)`` or ``(B, 3, H, W)``, or a NumPy array ``(H, W, 3)``.

    Returns:
        The same kind of object without the channel dim: ``(H, W)``, ``(B, H, W)`` or ``(H, W)``.

    Examples:
        >>> rgb_to_y(np.array([[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])).tolist()
        [[16.0, 235.0]]
    """
    if isinstance(img, np.ndarray):
        if img.ndim != 3 or img.shape[-1] != 3:
            raise DataError(f"a NumPy image must have shape (H, W, 3) (RGB, channels last), got {img.shape}")
        return img.astype(np.float64) @ np.asarray(Y_WEIGHTS) + Y_OFFSET
    if not isinstance(img, Tensor) or img.dim() not in (3, 4) or img.shape[-3] != 3:
        shape = tuple(img.shape) if isinstance(img, Tensor) else type(img).__name__
        raise DataError(f"rgb_to_y takes a tensor (3, H, W) or (B, 3, H, W) or an array (H, W, 3), got {shape}")
    weights = torch.tensor(Y_WEIGHTS, dtype=torch.float64, device=img.device).view(3, 1, 1)
    return (img.to(torch.float64) * weights).sum(dim=-3) + Y_OFFSET


def psnr_y(sr: Tensor | np.ndarray, hr: Tensor | np.ndarray, crop: int) -> float:
    """PSNR in dB on the Y channel of two 8-bit-quantised RGB images (see the module docstring).

    Args:
        sr: the restored image, a tensor ``(3, H, W)`` or an array ``(H, W, 3)``, float in ``[0, 1]``.
        hr: the ground truth, same shape.
        crop: pixels removed from each side before comparing (SR papers use the scale factor).

    Returns:
        The PSNR (peak 255), ``float('inf')`` for identical quantised images.

    Raises:
        DataError: images that are not float RGB, differ in shape, or leave nothing after cropping.
    """
    y_sr, y_hr = _cropped_luma(sr, hr, crop, min_side=1, metric="PSNR")
    mse = float(torch.mean((y_sr - y_hr) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ssim_y(sr: Tensor | np.ndarray, hr: Tensor | np.ndarray, crop: int) -> float:
    """SSIM on the Y channel of two 8-bit-quantised RGB images (see the module docstring).

    Args:
        sr: the restored image, a tensor ``(3, H, W)`` or an array ``(H, W, 3)``, float in ``[0, 1]``.
        hr: the ground truth, same shape.
        crop: pixels removed from each side before comparing; at least 11 x 11 pixels (the window) must remain.

    Returns:
        The mean of the SSIM map (1.0 for identical images).

    Raises:
        DataError: images that are not float RGB, differ in shape, or are smaller than the window after cropping.
    """
    y_sr, y_hr = _cropped_luma(sr, hr, crop, min_side=_SSIM_WINDOW, metric="SSIM")
    x, y = y_sr[None, None], y_hr[None, None]
    # One filtering pass over the five local moments: E[x], E[y], E[x^2], E[y^2], E[xy].
    moments = _gaussian_filter_valid(torch.cat([x, y, x * x, y * y, x * y]))
    mu_x, mu_y, e_xx, e_yy, e_xy = moments.unbind(0)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    numerator = (2 * mu_xy + _SSIM_C1) * (2 * (e_xy - mu_xy) + _SSIM_C2)
    denominator = (mu_xx + mu_yy + _SSIM_C1) * ((e_xx - mu_xx) + (e_yy - mu_yy) + _SSIM_C2)
    return float(torch.mean(numerator / denominator))


def _gaussian_filter_valid(images: Tensor) -> Tensor:
    """Filter ``(N, 1, H, W)`` with the normalised 11 x 11 Gaussian (separably), keeping only full windows."""
    radius = _SSIM_WINDOW // 2
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64, device=images.device)
    kernel = torch.exp(-(offsets**2) / (2 * _SSIM_SIGMA**2))
    kernel = kernel / kernel.sum()
    rows = F.conv2d(images, kernel.view(1, 1, 1, -1))
    return F.conv2d(rows, kernel.view(1, 1, -1, 1))


def _cropped_luma(
    sr: Tensor | np.ndarray, hr: Tensor | np.ndarray, crop: int, *, min_side: int, metric: str
) -> tuple[Tensor, Tensor]:
    """Quantise, convert to Y and crop both images, checking shapes (``float64`` ``(H', W')`` tensors)."""
    sr_t, hr_t = _as_chw(sr, "sr"), _as_chw(hr, "hr")
    if sr_t.shape != hr_t.shape:
        raise DataError(
            f"sr and hr must have the same shape, got {tuple(sr_t.shape)} and {tuple(hr_t.shape)} (C, H, W); "
            f"compare the output of a model with the ground truth cropped to a multiple of the scale"
        )
    if isinstance(crop, bool) or not isinstance(crop, int) or crop < 0:
        raise DataError(f"crop must be an integer >= 0 (pixels removed from each side), got {crop!r}")
    height, width = sr_t.shape[-2:]
    if min(height, width) - 2 * crop < min_side:
        largest = (min(height, width) - min_side) // 2
        allowed = f"crop <= {largest}" if largest >= 0 else f"an image of at least {min_side}x{min_side}"
        raise DataError(
            f"crop {crop} leaves {max(height - 2 * crop, 0)}x{max(width - 2 * crop, 0)} of the {height}x{width} "
            f"image, but {metric} needs at least {min_side}x{min_side}; use {allowed}"
        )
    window = (slice(crop, height - crop), slice(crop, width - crop))
    return rgb_to_y(quantize(sr_t) / 255)[window], rgb_to_y(quantize(hr_t) / 255)[window]


def _as_chw(img: Tensor | np.ndarray, what: str) -> Tensor:
    """A float RGB image as a ``(3, H, W)`` tensor (a NumPy ``(H, W, 3)`` array is transposed)."""
    if isinstance(img, np.ndarray):
        if img.ndim != 3 or img.shape[-1] != 3:
            raise DataError(f"{what} must be an array (H, W, 3) (RGB, channels last), got shape {img.shape}")
        # torch cannot wrap read-only arrays (which some packages hand out) without a warning: copy those
        img = torch.from_numpy(img if img.flags.writeable else img.copy()).permute(2, 0, 1)
    if isinstance(img, Tensor) and img.dim() == 4:
        raise DataError(
            f"{what} must be one image (3, H, W), got a batch {tuple(img.shape)}; measure each image and average"
        )
    return check_rgb(img, what)


# ----------------------------------------------------------------------------------------------------------------
# binarize metrics
# ----------------------------------------------------------------------------------------------------------------
def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _configure_metrics(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sr", metavar="SR", help="the super-resolved image (png, jpg, bmp, tif, ...)")
    parser.add_argument("hr", metavar="HR", help="the ground-truth image, same size as SR")
    parser.add_argument(
        "--crop", type=_non_negative_int, default=0, metavar="N",
        help="pixels ignored on each side (SR papers use the scale factor; default 0)",
    )
    parser.add_argument(
        "--json", action="store_true",
        help='print one JSON object {"psnr_y": ..., "ssim_y": ...} (psnr_y is null for identical images)',
    )


def measure_files(sr_path: str, hr_path: str, crop: int) -> dict[str, float]:
    """PSNR-Y and SSIM-Y of two image files, as ``{"psnr_y": ..., "ssim_y": ...}``.

    Raises:
        CommandError: a file is missing or unreadable, the sizes differ, or ``crop`` is too large.
    """
    try:
        sr, hr = load_image(sr_path), load_image(hr_path)
        return {"psnr_y": psnr_y(sr, hr, crop), "ssim_y": ssim_y(sr, hr, crop)}
    except (DataError, FileNotFoundError) as error:
        raise CommandError(str(error)) from error


@command(
    "metrics",
    help="PSNR and SSIM on the Y channel between a super-resolved image and its ground truth",
    configure=_configure_metrics,
    description=(
        "Quantise both images to 8 bits, convert them to BT.601 luma (16-235), drop --crop pixels on each side "
        "and print PSNR (peak 255) and SSIM (11x11 Gaussian window, sigma 1.5), as SR papers report them."
    ),
)
def run_metrics(args: argparse.Namespace) -> int:
    """``binarize metrics SR HR [--crop N] [--json]``."""
    scores = measure_files(args.sr, args.hr, args.crop)
    psnr, ssim = scores["psnr_y"], scores["ssim_y"]
    if args.json:
        print(json.dumps({"psnr_y": psnr if math.isfinite(psnr) else None, "ssim_y": ssim}))
    else:
        shown = f"{psnr:.2f} dB" if math.isfinite(psnr) else "inf (identical images)"
        print(f"PSNR-Y {shown}  SSIM-Y {ssim:.4f}  (crop {args.crop})")
    return 0
