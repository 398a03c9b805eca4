"""The seeded data loader: reproducible order and worker seeds, distributed sharding, clear errors."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, IterableDataset, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from binarize.data import DataError, SRPatches, make_loader, seed_worker


class RandomDraws(Dataset[tuple[int, float, float, float]]):
    """Item ``i``: ``i`` and one draw from each of Python's, NumPy's and torch's global generators."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> tuple[int, float, float, float]:
        return index, random.random(), float(np.random.rand()), float(torch.rand(()))


def order(loader: torch.utils.data.DataLoader) -> list[int]:
    return [int(i) for batch in loader for i in batch[0]]


def test_same_seed_same_order() -> None:
    data = TensorDataset(torch.arange(20))
    assert order(make_loader(data, 4, seed=3)) == order(make_loader(data, 4, seed=3))
    assert order(make_loader(data, 4, seed=3)) != order(make_loader(data, 4, seed=4))
    assert sorted(order(make_loader(data, 4, seed=3))) == list(range(20))
    assert order(make_loader(data, 4, shuffle=False)) == list(range(20))


def test_drop_last() -> None:
    data = TensorDataset(torch.arange(10))
    assert len(order(make_loader(data, 4))) == 8
    assert len(order(make_loader(data, 4, drop_last=False))) == 10


def test_seed_worker_seeds_python_and_numpy_from_torch() -> None:
    torch.manual_seed(2**40 + 5)
    seed_worker(0)
    expected = 2**40 + 5
    assert random.random() == random.Random(expected % 2**32).random()
    assert np.random.rand() == np.random.RandomState(expected % 2**32).rand()


def test_workers_are_seeded_reproducibly() -> None:
    """Two workers draw different numbers from every generator, and a second run draws the same ones."""
    runs = [list(make_loader(RandomDraws(), 2, workers=2, seed=11, shuffle=False)) for _ in range(2)]
    first, second = ([tuple(float(v) for v in row) for batch in run for row in zip(*batch, strict=True)]
                     for run in runs)
    assert first == second
    by_worker = {row[0] % 4 // 2: row for row in first}  # batches of 2 alternate between the two workers
    assert all(a != b for a, b in zip(by_worker[0][1:], by_worker[1][1:], strict=True))


def test_patches_do_not_depend_on_the_number_of_workers() -> None:
    patches = SRPatches([torch.rand(3, 32, 32)], scale=2, patch_size=8, length=8, seed=5)
    single = [batch["hr"] for batch in make_loader(patches, 4, seed=1)]
    multi = [batch["hr"] for batch in make_loader(patches, 4, seed=1, workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(single, multi, strict=True))


def test_distributed_sampler(tmp_path: Path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        data = TensorDataset(torch.arange(12))
        loader = make_loader(data, 4, seed=2, distributed=True)
        assert isinstance(loader.sampler, DistributedSampler) and loader.sampler.seed == 2
        first = order(loader)
        assert order(loader) == first and sorted(first) == list(range(12))
        loader.sampler.set_epoch(1)
        assert order(loader) != first
    finally:
        dist.destroy_process_group()


class Stream(IterableDataset[int]):
    def __iter__(self) -> Iterator[int]:
        return iter(range(3))


@pytest.mark.parametrize(
    ("dataset", "kwargs", "pattern"),
    [
        (TensorDataset(torch.arange(3)), {}, r"gives 3 item\(s\) per epoch, fewer than batch_size 4.*drop_last=False"),
        (TensorDataset(torch.arange(8)), {"workers": -1}, "workers must be an integer >= 0"),
        (TensorDataset(torch.arange(8)), {"batch_size": 0}, "batch_size must be a positive integer"),
        (TensorDataset(torch.arange(8)), {"distributed": True}, "init_process_group"),
        (Stream(), {}, "map-style data set with a length, got Stream"),
    ],
)
def test_errors(dataset: Dataset, kwargs: dict, pattern: str) -> None:
    arguments = {"batch_size": 4, **kwargs}
    with pytest.raises(DataError, match=pattern):
        make_loader(dataset, **arguments)
