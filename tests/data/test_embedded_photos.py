"""The embedded photos: a fixed, disjoint split of real RGB photographs exactly as the packages ship them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from binarize.data import EMBEDDED_PHOTOS, SPLITS, TEST, TEXTURES, TRAIN, DataError, embedded_photos


def _skimage(name: str) -> Callable[[], np.ndarray]:
    import skimage.data

    return getattr(skimage.data, name)


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        from sklearn.datasets import load_sample_images

        images = load_sample_images()
        return images.images[[name.rsplit("/", 1)[-1] for name in images.filenames].index(filename)]

    return read


def _motorcycle() -> np.ndarray:
    import skimage.data

    return skimage.data.stereo_motorcycle()[0]


# What each package ships, read here independently of binarize, with the size documented in binarize.data.embedded.
SHIPPED: dict[str, tuple[Callable[[], np.ndarray], tuple[int, int]]] = {
    "chelsea": (_skimage("chelsea"), (300, 451)),
    "flower": (_sklearn("flower.jpg"), (427, 640)),
    "astronaut": (_skimage("astronaut"), (512, 512)),
    "coffee": (_skimage("coffee"), (400, 600)),
    "rocket": (_skimage("rocket"), (427, 640)),
    "immunohistochemistry": (_skimage("immunohistochemistry"), (512, 512)),
    "motorcycle": (_motorcycle, (500, 741)),
    "hubble_deep_field": (_skimage("hubble_deep_field"), (872, 1000)),
    "china": (_sklearn("china.jpg"), (427, 640)),
}


def test_fixed_disjoint_split() -> None:
    assert TEST == ("chelsea", "flower")
    assert TRAIN == ("astronaut", "coffee", "rocket", "immunohistochemistry", "motorcycle", "hubble_deep_field",
                     "china")
    assert not set(TRAIN) & set(TEST)
    assert SPLITS["all"] == TRAIN + TEST
    assert TEXTURES == ("brick", "grass", "gravel") and SPLITS["textures"] == TEXTURES
    assert not set(TEXTURES) & set(TRAIN + TEST)
    assert set(EMBEDDED_PHOTOS.names()) == set(SHIPPED) | set(TEXTURES) == set(TRAIN + TEST + TEXTURES)
    assert "cat" not in EMBEDDED_PHOTOS  # the same photograph as chelsea
    assert "retina" not in EMBEDDED_PHOTOS  # almost no detail at x2


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_photo_is_what_the_package_ships(name: str) -> None:
    read, (height, width) = SHIPPED[name]
    shipped = read()
    img = EMBEDDED_PHOTOS.get(name)()
    assert shipped.shape == (height, width, 3) and shipped.dtype == np.uint8
    assert img.dtype == torch.float32 and img.shape == (3, height, width)
    assert torch.equal((img * 255).round().to(torch.uint8), torch.from_numpy(np.array(shipped)).permute(2, 0, 1))
    assert not torch.equal(img[0], img[1]), "a colour photo, not a grayscale image in three channels"


@pytest.mark.parametrize("name", TEXTURES)
def test_texture_is_the_shipped_grayscale_image_in_every_channel(name: str) -> None:
    shipped = _skimage(name)()
    assert shipped.shape == (512, 512) and shipped.dtype == np.uint8
    img = EMBEDDED_PHOTOS.get(name)()
    gray = torch.from_numpy(np.array(shipped))
    assert img.shape == (3, 512, 512)
    assert all(torch.equal((channel * 255).round().to(torch.uint8), gray) for channel in img)
    assert float(img.std()) > 0.05, "a texture, not a flat image"


def test_copies_are_returned() -> None:
    first = EMBEDDED_PHOTOS.get("chelsea")()
    first.zero_()
    assert EMBEDDED_PHOTOS.get("chelsea")().max() > 0


def test_embedded_photos_crop_and_order() -> None:
    test = embedded_photos("test", crop=32)
    assert [name for name, _ in test] == ["chelsea", "flower"]
    full = EMBEDDED_PHOTOS.get("chelsea")()
    assert torch.equal(test[0][1], full[:, 134:166, 209:241])
    assert test[0][1].is_contiguous() and test[0][1].untyped_storage().nbytes() == 3 * 32 * 32 * 4


def test_split_errors() -> None:
    with pytest.raises(DataError, match="unknown split 'validation'; allowed: 'train', 'test', 'all'"):
        embedded_photos("validation")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="at most 300"):
        embedded_photos("test", crop=400)
