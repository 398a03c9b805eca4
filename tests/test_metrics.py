"""PSNR-Y / SSIM-Y against an independent implementation (scikit-image), and the ``binarize metrics`` command.

The reference path shares no code with :mod:`binarize.metrics`: the test quantises with NumPy, computes BT.601 luma
itself and calls ``skimage.metrics``. What differs between the two SSIMs: scikit-image filters with a Gaussian
(``sigma = 1.5``, truncated at 3.5 sigma, i.e. the same 11 x 11 window) over a reflect-padded image and then drops
the 5 border pixels of the map before averaging; binarize filters without padding ('valid'). The padded pixels
only ever enter the dropped border, so both average the same map, and they agree to rounding error on any crop
of at least 11 x 11 pixels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.filters import gaussian
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.transform import resize

from binarize.cli import main
from binarize.data import DataError, save_image
from binarize.metrics import psnr_y, rgb_to_y, ssim_y

PSNR_TOLERANCE = 0.01  # dB
SSIM_TOLERANCE = 0.001


def reference_y(img: np.ndarray, crop: int) -> np.ndarray:
    """8-bit quantisation, BT.601 luma on the 0-255 scale and the border crop, written out independently."""
    levels = np.round(np.clip(img, 0.0, 1.0) * 255.0)
    r, g, b = (levels[..., c] / 255.0 for c in range(3))
    y = 16.0 + 65.481 * r + 128.553 * g + 24.966 * b
    return y[crop : y.shape[0] - crop, crop : y.shape[1] - crop]


def reference_scores(sr: np.ndarray, hr: np.ndarray, crop: int) -> tuple[float, float]:
    y_sr, y_hr = reference_y(sr, crop), reference_y(hr, crop)
    psnr = peak_signal_noise_ratio(y_hr, y_sr, data_range=255)
    ssim = structural_similarity(
        y_hr, y_sr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    return float(psnr), float(ssim)


def photo(name: str) -> np.ndarray:
    return getattr(skimage.data, name)().astype(np.float64) / 255.0


def noisy(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    return np.clip(img + np.random.default_rng(seed).normal(0.0, sigma, img.shape), 0.0, 1.0)


def blurred(img: np.ndarray) -> np.ndarray:
    return gaussian(img, sigma=1.2, channel_axis=-1)


def bicubic_down_up(img: np.ndarray, scale: int = 3) -> np.ndarray:
    small = resize(img, (img.shape[0] // scale, img.shape[1] // scale), order=3, anti_aliasing=True)
    return np.clip(resize(small, img.shape[:2], order=3), 0.0, 1.0)


DEGRADATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "noise": lambda img: noisy(img, 0.03),
    "blur": blurred,
    "bicubic": bicubic_down_up,
}


def as_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()


@pytest.mark.parametrize("degradation", sorted(DEGRADATIONS))
@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_agrees_with_scikit_image_on_photos(name: str, degradation: str) -> None:
    hr = photo(name)[:256, :320]
    sr = DEGRADATIONS[degradation](hr)
    psnr, ssim = reference_scores(sr, hr, crop=4)
    # float64 arrays agree to ~1e-15; float32 tensors (the library's images) may quantise a value sitting on a .5
    # boundary to the other 8-bit level, which moves the scores by ~1e-6
    for got_sr, got_hr in ((as_tensor(sr), as_tensor(hr)), (sr, hr)):
        assert psnr_y(got_sr, got_hr, crop=4) == pytest.approx(psnr, abs=PSNR_TOLERANCE)
        assert ssim_y(got_sr, got_hr, crop=4) == pytest.approx(ssim, abs=SSIM_TOLERANCE)
    assert 18 < psnr < 45 and 0.4 < ssim < 1  # real degradations, not trivial cases


@settings(max_examples=25)
@given(
    crop=st.integers(0, 20),
    sigma=st.floats(0.001, 0.2),
    top=st.integers(0, 200),
    left=st.integers(0, 200),
    name=st.sampled_from(["chelsea", "rocket", "immunohistochemistry"]),
)
def test_agrees_with_scikit_image_over_crops_and_noise(crop: int, sigma: float, top: int, left: int, name: str) -> None:
    hr = photo(name)[top : top + 64, left : left + 72]
    sr = noisy(hr, sigma, seed=crop)
    psnr, ssim = reference_scores(sr, hr, crop)
    assert psnr_y(sr, hr, crop) == pytest.approx(psnr, abs=PSNR_TOLERANCE)
    assert ssim_y(sr, hr, crop) == pytest.approx(ssim, abs=SSIM_TOLERANCE)


def test_identical_images() -> None:
    hr = as_tensor(photo("astronaut")[:40, :48])
    assert psnr_y(hr, hr, crop=2) == math.inf
    assert ssim_y(hr, hr, crop=2) == 1.0
    assert psnr_y(hr + 0.4 / 255, hr, crop=0) == math.inf  # the same 8-bit levels
    assert psnr_y(hr + 0.6 / 255, hr, crop=0) < math.inf


def test_values_are_quantised_and_clamped() -> None:
    """Out-of-range values count as 0 or 255, as after saving an 8-bit image."""
    hr = torch.zeros(3, 16, 16)
    assert psnr_y(hr - 0.5, hr, crop=0) == math.inf
    white = torch.ones(3, 16, 16)
    assert psnr_y(white * 2, white, crop=0) == math.inf


def test_known_psnr() -> None:
    """One 8-bit level more in R, G and B moves Y by (65.481 + 128.553 + 24.966) / 255 everywhere."""
    hr = torch.full((3, 12, 12), 100 / 255)
    sr = torch.full((3, 12, 12), 101 / 255)
    step = (65.481 + 128.553 + 24.966) / 255
    assert psnr_y(sr, hr, crop=1) == pytest.approx(10 * math.log10(255**2 / step**2), abs=1e-9)


def test_rgb_to_y() -> None:
    rgb = np.array([[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]])
    assert rgb_to_y(rgb)[0].tolist() == pytest.approx([16.0, 235.0, 16 + 65.481])
    tensor = torch.from_numpy(rgb.transpose(2, 0, 1)).float()
    y = rgb_to_y(tensor)
    assert y.dtype == torch.float64 and y.shape == (1, 3)
    assert torch.allclose(y, torch.from_numpy(rgb_to_y(rgb)))
    assert rgb_to_y(torch.stack([tensor, tensor])).shape == (2, 1, 3)
    with pytest.raises(DataError, match=r"\(H, W, 3\)"):
        rgb_to_y(np.zeros((3, 4, 4)))
    with pytest.raises(DataError, match=r"\(3, H, W\) or \(B, 3, H, W\)"):
        rgb_to_y(torch.zeros(4, 4))


@pytest.mark.parametrize(
    ("sr", "hr", "crop", "pattern"),
    [
        (torch.rand(3, 20, 20), torch.rand(3, 20, 21), 0, r"same shape, got \(3, 20, 20\) and \(3, 20, 21\)"),
        (torch.rand(3, 20, 20), torch.rand(3, 20, 20), 5, r"crop 5 leaves 10x10 .* SSIM needs at least 11x11; use crop <= 4"),
        (torch.rand(3, 8, 8), torch.rand(3, 8, 8), 0, r"SSIM needs at least 11x11; use an image of at least 11x11"),
        (torch.rand(1, 3, 20, 20), torch.rand(1, 3, 20, 20), 0, "got a batch"),
        (torch.rand(3, 20, 20), torch.rand(3, 20, 20), -1, "crop must be an integer >= 0"),
        (torch.zeros(3, 20, 20, dtype=torch.uint8), torch.rand(3, 20, 20), 0, "floating-point"),
        (np.zeros((20, 20)), np.zeros((20, 20)), 0, r"\(H, W, 3\)"),
    ],
)
def test_errors(sr: object, hr: object, crop: int, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        ssim_y(sr, hr, crop)  # type: ignore[arg-type]


def test_read_only_arrays() -> None:
    hr = photo("chelsea")[:32, :32]
    hr.setflags(write=False)
    assert psnr_y(hr, hr, crop=0) == math.inf


def test_psnr_needs_one_pixel_only() -> None:
    img = torch.rand(3, 6, 6)
    assert psnr_y(img, img.flip(-1), crop=2) < math.inf
    with pytest.raises(DataError, match="PSNR needs at least 1x1; use crop <= 2"):
        psnr_y(img, img, crop=3)


# ------------------------------------------------------------------------------------------------------------------
# binarize metrics
# ------------------------------------------------------------------------------------------------------------------
@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """An 8-bit photo crop and a noisy version, saved as PNG files."""
    hr = np.round(photo("coffee")[100:164, 200:280] * 255) / 255
    sr = np.round(noisy(hr, 0.05) * 255) / 255
    return save_image(as_tensor(sr), tmp_path / "sr.png"), save_image(as_tensor(hr), tmp_path / "hr.png"), sr, hr


def test_cli_json(capsys: pytest.CaptureFixture[str], pair: tuple[Path, Path, np.ndarray, np.ndarray]) -> None:
    sr_path, hr_path, sr, hr = pair
    assert main(["metrics", str(sr_path), str(hr_path), "--crop", "2", "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert out.count("\n") == 1 and set(data) == {"psnr_y", "ssim_y"}
    psnr, ssim = reference_scores(sr, hr, crop=2)
    assert data["psnr_y"] == pytest.approx(psnr, abs=PSNR_TOLERANCE)
    assert data["ssim_y"] == pytest.approx(ssim, abs=SSIM_TOLERANCE)


def test_cli_human_line(capsys: pytest.CaptureFixture[str], pair: tuple[Path, Path, np.ndarray, np.ndarray]) -> None:
    sr_path, hr_path, _, _ = pair
    assert main(["metrics", str(sr_path), str(hr_path), "--crop", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("PSNR-Y ") and " dB  SSIM-Y 0." in out and "(crop 2)" in out and out.count("\n") == 1
    assert main(["metrics", str(hr_path), str(hr_path)]) == 0
    assert "PSNR-Y inf (identical images)  SSIM-Y 1.0000" in capsys.readouterr().out
    assert main(["metrics", str(hr_path), str(hr_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"psnr_y": None, "ssim_y": 1.0}  # strict JSON has no infinity


def test_cli_errors(
    capsys: pytest.CaptureFixture[str], pair: tuple[Path, Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    sr_path, hr_path, _, _ = pair
    other = save_image(torch.zeros(3, 64, 81), tmp_path / "other.png")
    broken = tmp_path / "broken.png"
    broken.write_text("not a png")
    cases = [
        ([str(tmp_path / "missing.png"), str(hr_path)], "missing.png' does not exist"),
        ([str(broken), str(hr_path)], "cannot read"),
        ([str(other), str(hr_path)], "same shape, got (3, 64, 81) and (3, 64, 80)"),
        ([str(sr_path), str(hr_path), "--crop", "30"], "crop 30 leaves 4x20"),
    ]
    for argv, pattern in cases:
        assert main(["metrics", *argv]) == 2
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert captured.out == "" and "\n" not in err and err.startswith("binarize: error: "), err
        assert pattern in err, err
    assert main(["metrics", str(sr_path), str(hr_path), "--crop", "-1"]) == 2
    assert "expected an integer >= 0" in capsys.readouterr().err


def test_cli_errors_are_command_errors(pair: tuple[Path, Path, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    from binarize.cli import CommandError
    from binarize.metrics import measure_files

    _, hr_path, _, _ = pair
    with pytest.raises(CommandError, match="does not exist"):
        measure_files(str(tmp_path / "missing.png"), str(hr_path), 0)
    with pytest.raises(CommandError, match="crop 40"):
        measure_files(str(hr_path), str(hr_path), 40)
