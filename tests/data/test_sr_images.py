"""Reading and writing images: 8-bit exact round trips, atomic writes, pixel modes and error messages."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from binarize.data import DataError, ImageNotFoundError, image_size, load_image, quantize, save_image, to_uint8


def write_pixels(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(path)
    return path


@settings(max_examples=15)
@given(
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_round_trip_is_exact_in_8_bits(height: int, width: int, seed: int, tmp_path_factory: pytest.TempPathFactory) -> None:
    generator = torch.Generator().manual_seed(seed)
    img = torch.rand(3, height, width, generator=generator) * 1.2 - 0.1  # values outside [0, 1] are clamped
    path = save_image(img, tmp_path_factory.mktemp("round") / "img.png")
    back = load_image(path)
    assert back.dtype == torch.float32 and back.shape == (3, height, width)
    assert torch.equal((back * 255).round(), quantize(img).float())
    assert torch.equal(back, load_image(save_image(back, path)))  # a saved image survives a second trip unchanged


def test_quantize_clamps_and_rounds_half_to_even() -> None:
    values = torch.tensor([-0.5, 0.0, 0.5, 1.5 / 255, 2.5 / 255, 1.0, 3.0], dtype=torch.float64)
    assert quantize(values).tolist() == [0.0, 0.0, 128.0, 2.0, 2.0, 255.0, 255.0]
    assert to_uint8(torch.ones(3, 2, 2)).dtype == np.uint8


def test_save_leaves_no_temporary_file_and_creates_folders(tmp_path: Path) -> None:
    path = save_image(torch.zeros(3, 4, 5), tmp_path / "new" / "folder" / "out.png")
    assert path == tmp_path / "new" / "folder" / "out.png"
    assert sorted(os.listdir(path.parent)) == ["out.png"]


def test_existing_file_is_replaced_only_on_success(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_image(torch.zeros(3, 4, 4), tmp_path / "out.png")
    before = path.read_bytes()

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        save_image(torch.ones(3, 4, 4), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.png"]
    monkeypatch.undo()
    save_image(torch.ones(3, 4, 4), path)
    assert torch.equal(load_image(path), torch.ones(3, 4, 4))


def test_saved_file_has_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        path = save_image(torch.zeros(3, 2, 2), tmp_path / "out.png")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    ("mode", "channels_equal"),
    [("L", True), ("LA", True), ("RGBA", False), ("P", False), ("CMYK", False), ("1", True)],
)
def test_modes_become_rgb(tmp_path: Path, mode: str, channels_equal: bool) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    suffix = ".jpg" if mode == "CMYK" else ".png"
    img = load_image(write_pixels(tmp_path / f"img{suffix}", rgb, mode))
    assert img.shape == (3, 5, 7) and img.dtype == torch.float32
    assert 0 <= img.min() and img.max() <= 1
    assert torch.equal(img[0], img[1]) == channels_equal


def test_alpha_is_dropped_not_composited(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 0  # fully transparent red
    img = load_image(write_pixels(tmp_path / "a.png", rgba))
    assert torch.allclose(img[0], torch.full((2, 2), 200 / 255)) and img[1:].abs().max() == 0


def test_sixteen_bit_grayscale(tmp_path: Path) -> None:
    levels = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(levels).save(path)
    img = load_image(path)
    assert torch.allclose(img[1], torch.from_numpy(levels.astype(np.float32) / 65535))
    assert torch.equal(img[0], img[2])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError, match=r"does not exist; check the path"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(FileNotFoundError):  # also an ordinary FileNotFoundError
        image_size(tmp_path / "nope.png")


def test_unreadable_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(DataError, match=r"cannot read .*notes\.png.* as an image .*png, jpg"):
        load_image(text)
    truncated = write_pixels(tmp_path / "cut.png", np.zeros((64, 64, 3), dtype=np.uint8) + 7)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(DataError, match="cannot read"):
        load_image(truncated)
    with pytest.raises(DataError, match="is a folder"):
        load_image(tmp_path)


def test_float_images_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "float.tif"
    Image.fromarray(np.ones((3, 3), dtype=np.float32)).save(path)
    with pytest.raises(DataError, match=r"pixel mode 'F'.*8-bit or 16-bit"):
        load_image(path)


def test_min_size(tmp_path: Path) -> None:
    path = write_pixels(tmp_path / "small.png", np.zeros((6, 9, 3), dtype=np.uint8))
    assert load_image(path, min_size=6).shape == (3, 6, 9)
    assert image_size(path) == (6, 9)
    with pytest.raises(DataError, match=r"is 6x9 \(HxW\), smaller than the minimum 7x7"):
        load_image(path, min_size=7)


@pytest.mark.parametrize(
    ("img", "name", "pattern"),
    [
        (torch.zeros(3, 2, 2), "out.jpg", r"must end in \.png"),
        (torch.zeros(1, 2, 2), "out.png", r"shape \(3, H, W\)"),
        (torch.zeros(3, 2, 2, dtype=torch.uint8), "out.png", "floating-point"),
        (np.zeros((2, 2, 3)), "out.png", "torch.Tensor"),
    ],
)
def test_save_errors(tmp_path: Path, img: object, name: str, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        save_image(img, tmp_path / name)  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []
