"""Bicubic degradation and crops: shapes, ranges, the kernel, symmetry under flips, error messages."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from binarize.data import DataError, Dihedral, bicubic_downscale, bicubic_upscale, center_crop, mod_crop


@settings(max_examples=25)
@given(scale=st.integers(1, 4), h=st.integers(1, 9), w=st.integers(1, 9), batch=st.booleans())
def test_shapes_and_range(scale: int, h: int, w: int, batch: bool) -> None:
    shape = (2, 3, h * scale, w * scale) if batch else (3, h * scale, w * scale)
    hr = torch.rand(shape)
    lr = bicubic_downscale(hr, scale)
    up = bicubic_upscale(lr, scale)
    assert lr.shape == (*shape[:-2], h, w) and up.shape == hr.shape
    for img in (lr, up):
        assert 0 <= img.min() and img.max() <= 1


def test_scale_one_is_identity() -> None:
    img = torch.rand(3, 5, 6)
    assert torch.allclose(bicubic_downscale(img, 1), img) and torch.allclose(bicubic_upscale(img, 1), img)


def test_constant_images_stay_constant() -> None:
    flat = torch.full((3, 12, 18), 0.3)
    assert torch.allclose(bicubic_downscale(flat, 3), torch.full((3, 4, 6), 0.3))
    assert torch.allclose(bicubic_upscale(flat, 2), torch.full((3, 24, 36), 0.3))


def test_downscale_kernel_is_keys_cubic_stretched() -> None:
    """Away from the border, one LR pixel of an x2 downscale is the cubic kernel (a = -0.5) stretched by 2."""

    def keys(x: float, a: float = -0.5) -> float:
        x = abs(x)
        if x <= 1:
            return (a + 2) * x**3 - (a + 3) * x**2 + 1
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a if x < 2 else 0.0

    hr = torch.rand(3, 32, 32, dtype=torch.float64) * 0.5 + 0.25  # no clamping
    # LR pixel 8 sits at HR coordinate 2 * (8 + 0.5) - 0.5 = 16.5; the stretched kernel spans 4 HR pixels each way.
    taps = torch.tensor([keys((j - 16.5) / 2) for j in range(13, 21)], dtype=torch.float64)
    taps = taps / taps.sum()
    expected = torch.einsum("i,j,cij->c", taps, taps, hr[:, 13:21, 13:21])
    assert torch.allclose(bicubic_downscale(hr, 2)[:, 8, 8], expected)


@settings(max_examples=20)
@given(bits=st.tuples(st.booleans(), st.booleans(), st.booleans()), scale=st.integers(2, 4))
def test_downscale_commutes_with_flips_and_rotations(bits: tuple[bool, bool, bool], scale: int) -> None:
    transform = Dihedral(*bits)
    hr = torch.rand(3, 6 * scale, 6 * scale)
    assert torch.allclose(bicubic_downscale(transform(hr), scale), transform(bicubic_downscale(hr, scale)), atol=1e-6)


def test_mod_crop_and_center_crop() -> None:
    img = torch.arange(7 * 10.0).reshape(1, 7, 10)
    assert mod_crop(img, 3).shape == (1, 6, 9) and torch.equal(mod_crop(img, 3), img[:, :6, :9])
    assert mod_crop(img, 1).shape == img.shape
    assert torch.equal(center_crop(img, 4), img[:, 1:5, 3:7])
    assert center_crop(img, 7).shape == (1, 7, 7)


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: bicubic_downscale(torch.rand(3, 9, 8), 2), r"9x8 \(HxW\), not a multiple of scale 2.*mod_crop"),
        (lambda: bicubic_downscale(torch.rand(3, 8, 8), 0), "scale must be a positive integer, got 0"),
        (lambda: bicubic_upscale(torch.rand(3, 8, 8), 1.5), "scale must be a positive integer, got 1.5"),
        (lambda: bicubic_upscale(torch.rand(4, 8, 8), 2), r"shape \(3, H, W\) or \(B, 3, H, W\)"),
        (lambda: bicubic_downscale(torch.zeros(3, 8, 8, dtype=torch.uint8), 2), "img.float\\(\\) / 255"),
        (lambda: mod_crop(torch.rand(3, 2, 8), 3), "smaller than the scale 3"),
        (lambda: center_crop(torch.rand(3, 6, 9), 7), "at most 6"),
        (lambda: center_crop(torch.rand(3, 6, 9), -1), "positive integer"),
    ],
)
def test_errors(call: object, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        call()  # type: ignore[operator]
