"""SR data sets: deterministic aligned training patches and folder data sets (HR only and DIV2K pairs)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from binarize.data import (
    DataError,
    Dihedral,
    ImageFolder,
    ImageNotFoundError,
    SRPatches,
    bicubic_downscale,
    bicubic_upscale,
    load_image,
    mod_crop,
    save_image,
    to_uint8,
)


def images(*shapes: tuple[int, int], seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    # smooth-ish content, so that a misaligned crop could not match by accident
    return [torch.rand(3, h, w, generator=generator).cumsum(-1).div(w).clamp(0, 1) for h, w in shapes]


# ------------------------------------------------------------------------------------------------------------------
# SRPatches
# ------------------------------------------------------------------------------------------------------------------
def test_items_are_deterministic_across_instances_and_orders() -> None:
    imgs = images((40, 50), (33, 31))
    first = SRPatches(imgs, scale=2, patch_size=16, length=12, seed=7)
    second = SRPatches([img.clone() for img in imgs], scale=2, patch_size=16, length=12, seed=7)
    for index in reversed(range(12)):
        a, b = first[index], second[index]
        assert a.keys() == b.keys() == {"hr", "lr", "cond"}
        assert all(torch.equal(a[key], b[key]) for key in a)
    assert torch.equal(first[-1]["hr"], first[11]["hr"])
    other = SRPatches(imgs, scale=2, patch_size=16, length=12, seed=8)
    assert [first.spec(i) for i in range(12)] != [other.spec(i) for i in range(12)]


def test_item_shapes_and_values() -> None:
    patches = SRPatches(images((41, 50)), scale=3, patch_size=24, length=4)
    item = patches[0]
    assert item["hr"].shape == item["cond"].shape == (3, 24, 24) and item["lr"].shape == (3, 8, 8)
    for value in item.values():
        assert value.dtype == torch.float32 and value.is_contiguous() and 0 <= value.min() and value.max() <= 1
    assert len(patches) == 4


@settings(max_examples=20)
@given(scale=st.integers(2, 4), seed=st.integers(0, 10_000))
def test_patches_are_aligned_with_the_whole_image(scale: int, seed: int) -> None:
    """Each crop is the transformed window of the whole (mod-cropped) image's HR, LR and upscaled LR."""
    imgs = images((13 * scale + 1, 11 * scale + 2), (9 * scale, 15 * scale), seed=seed % 7)
    patches = SRPatches(imgs, scale=scale, patch_size=6 * scale, length=4, seed=seed)
    for index in range(len(patches)):
        spec, item = patches.spec(index), patches[index]
        hr = mod_crop(imgs[spec.image], scale)
        lr = bicubic_downscale(hr, scale)
        cond = bicubic_upscale(lr, scale)
        rows = slice(scale * spec.top, scale * (spec.top + 6))
        cols = slice(scale * spec.left, scale * (spec.left + 6))
        assert torch.equal(item["hr"], spec.transform(hr[:, rows, cols]))
        assert torch.equal(item["lr"], spec.transform(lr[:, spec.top : spec.top + 6, spec.left : spec.left + 6]))
        # the cond crop is upscaled from the patch plus a margin: equal up to float32 rounding of sample positions
        assert torch.allclose(item["cond"], spec.transform(cond[:, rows, cols]), atol=1e-5)


def test_lr_is_the_downscaled_hr_patch_in_its_interior() -> None:
    """An independent check of alignment: away from the patch border, LR = bicubic_downscale(HR patch)."""
    patches = SRPatches(images((64, 80)), scale=2, patch_size=32, length=16, seed=3)
    margin = 2  # LR pixels that the antialiased x2 kernel (4 HR pixels each way) reads beyond the patch
    for index in range(len(patches)):
        item = patches[index]
        inner = (slice(None), slice(margin, -margin), slice(margin, -margin))
        assert torch.allclose(bicubic_downscale(item["hr"], 2)[inner], item["lr"][inner], atol=1e-5)
        shifted = bicubic_downscale(torch.roll(item["hr"], 2, dims=-1), 2)
        assert not torch.allclose(shifted[inner], item["lr"][inner], atol=1e-3)


def test_augmentation_uses_all_eight_transforms() -> None:
    augmented = SRPatches(images((40, 40)), scale=2, patch_size=8, length=200)
    assert len({augmented.spec(i).transform for i in range(200)}) == 8
    plain = SRPatches(images((40, 40)), scale=2, patch_size=8, length=50, augment=False)
    assert {plain.spec(i).transform for i in range(50)} == {Dihedral()}


def test_images_are_drawn_in_proportion_to_their_area() -> None:
    patches = SRPatches(images((20, 20), (20, 60)), scale=2, patch_size=8, length=2000, augment=False)
    counts = Counter(patches.spec(i).image for i in range(2000))
    assert counts[1] / 2000 == pytest.approx(0.75, abs=0.04)


def test_the_input_images_are_not_modified_or_aliased() -> None:
    imgs = images((16, 16))
    before = imgs[0].clone()
    patches = SRPatches(imgs, scale=2, patch_size=16, length=1, augment=False)
    patches[0]["hr"].zero_()
    assert torch.equal(imgs[0], before) and torch.equal(patches[0]["hr"], before)
    imgs[0].zero_()  # the data set holds its own copy
    assert torch.equal(patches[0]["hr"], before)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"patch_size": 15}, "patch_size 15 is not a multiple of scale 2; use e.g. 14"),
        ({"patch_size": 64}, r"images\[0\] is 30x40 \(HxW\), smaller than patch_size 64"),
        ({"images": []}, "non-empty sequence"),
        ({"images": torch.rand(3, 30, 40)}, "non-empty sequence"),
        ({"images": [torch.rand(30, 40)]}, r"images\[0\] must have shape \(3, H, W\)"),
        ({"scale": 0}, "scale must be a positive integer"),
        ({"length": 0}, "length must be a positive integer"),
    ],
)
def test_patch_errors(kwargs: dict, pattern: str) -> None:
    arguments = {"images": images((30, 40)), "scale": 2, "patch_size": 16, "length": 4, **kwargs}
    with pytest.raises(DataError, match=pattern):
        SRPatches(**arguments)


def test_index_out_of_range() -> None:
    with pytest.raises(IndexError, match="index 4 is out of range for 4 patches"):
        SRPatches(images((16, 16)), scale=2, patch_size=8, length=4)[4]


# ------------------------------------------------------------------------------------------------------------------
# ImageFolder
# ------------------------------------------------------------------------------------------------------------------
def write(folder: Path, name: str, img: torch.Tensor) -> Path:
    """Save ``img`` as ``folder/name`` in the format of the name's extension."""
    if name.endswith(".png"):
        return save_image(img, folder / name)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(img)).save(folder / name)
    return folder / name


def test_hr_only_folder(tmp_path: Path) -> None:
    for name, img in zip(("b.png", "a.png", "c.png"), images((21, 30), (16, 16), (12, 17)), strict=True):
        write(tmp_path, name, img)
    (tmp_path / "README.txt").write_text("not an image")
    folder = ImageFolder(tmp_path, scale=2)
    assert len(folder) == 3 and folder.names == ["a", "b", "c"]
    item = folder[1]
    hr = mod_crop(load_image(tmp_path / "b.png"), 2)
    assert item["name"] == "b" and item["hr"].shape == (3, 20, 30)
    assert torch.equal(item["hr"], hr)
    assert torch.equal(item["lr"], bicubic_downscale(hr, 2))
    assert torch.equal(item["cond"], bicubic_upscale(item["lr"], 2))
    assert [tuple(img.shape) for img in folder.images()] == [(3, 16, 16), (3, 21, 30), (3, 12, 17)]


@pytest.mark.parametrize("lr_name", ["{stem}x3.png", "{stem}X3.png", "{stem}.png", "{stem}x3.bmp"])
def test_div2k_pair_folder(tmp_path: Path, lr_name: str) -> None:
    hr_dir, lr_dir = tmp_path / "HR", tmp_path / "LR_bicubic" / "X3"
    for stem, (hr, lr) in {"0001": images((31, 27), (10, 9)), "0002": images((30, 24), (10, 8), seed=1)}.items():
        write(hr_dir, f"{stem}.png", hr)
        write(lr_dir, lr_name.format(stem=stem), lr)
    folder = ImageFolder(hr_dir, lr_dir=lr_dir, scale=3)
    item = folder[0]
    assert item["name"] == "0001" and item["hr"].shape == (3, 30, 27) and item["lr"].shape == (3, 10, 9)
    assert torch.equal(item["lr"], load_image(folder.lr_paths[0]))  # type: ignore[index]
    assert item["cond"].shape == (3, 30, 27)


def test_pair_errors(tmp_path: Path) -> None:
    hr_dir, lr_dir = tmp_path / "HR", tmp_path / "LR"
    for stem in ("0001", "0002", "0003"):
        write(hr_dir, f"{stem}.png", torch.rand(3, 8, 8))
    write(lr_dir, "0001x2.png", torch.rand(3, 4, 4))
    with pytest.raises(DataError, match=r"2 HR image\(s\) have no LR partner .*0002\.png, 0003\.png.*0001x2\.png"):
        ImageFolder(hr_dir, lr_dir=lr_dir, scale=2)
    write(lr_dir, "0002x2.png", torch.rand(3, 4, 4))
    write(lr_dir, "0003.png", torch.rand(3, 4, 5))
    with pytest.raises(DataError, match=r"LR image .*0003\.png' is 4x5 \(HxW\), but its HR image '0003\.png' is 8x8"):
        ImageFolder(hr_dir, lr_dir=lr_dir, scale=2)
    write(lr_dir, "0003x2.png", torch.rand(3, 4, 4))
    with pytest.raises(DataError, match=r"'0003\.png' matches 2 LR files .*0003\.png, 0003x2\.png"):
        ImageFolder(hr_dir, lr_dir=lr_dir, scale=2)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "missing", scale=2)
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / ".hidden.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"no images in .* \(found 1 other file\(s\)\); allowed extensions: \.png"):
        ImageFolder(tmp_path, scale=2)
    write(tmp_path, "small.png", torch.rand(3, 6, 9))
    assert len(ImageFolder(tmp_path, scale=2, min_size=6)) == 1
    with pytest.raises(DataError, match=r"is 6x9 \(HxW\), smaller than the minimum 8x8"):
        ImageFolder(tmp_path, scale=2, min_size=8)
    with pytest.raises(DataError, match="smaller than the minimum 7x7"):
        ImageFolder(tmp_path, scale=7)
