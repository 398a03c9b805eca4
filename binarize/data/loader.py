"""A reproducible :class:`~torch.utils.data.DataLoader` for SR data sets, single-process or distributed.

Reproducibility comes from three seeds, all derived from ``seed``:

* the loader's :class:`torch.Generator` fixes the shuffling order and the base seed of the worker processes;
* :func:`seed_worker` seeds Python's :mod:`random` and NumPy in each worker from torch's per-worker seed
  (``base_seed + worker_id``), which torch does not do by itself;
* with ``distributed=True``, a :class:`~torch.utils.data.distributed.DistributedSampler` splits the data between
  the ranks and shuffles with ``seed + epoch``. The trainer must call ``loader.sampler.set_epoch(epoch)`` at the
  start of every epoch; without it every epoch repeats the first epoch's order.

Data sets whose items are pure functions of their index (:class:`~binarize.data.datasets.SRPatches`) give the same
batches whatever the number of workers.

Examples:
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.arange(10))
    >>> [batch[0].tolist() for batch in make_loader(data, 4, seed=1)]
    [[4, 6, 9, 2], [3, 1, 0, 7]]
"""

from __future__ import annotations

import random
from collections.abc import Sized
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from binarize.data._checks import check_positive_int
from binarize.data.errors import DataError

__all__ = ["make_loader", "seed_worker"]


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed :mod:`random` and NumPy from torch's seed of this worker (``base_seed + id``)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def make_loader(
    dataset: Dataset[Any],
    batch_size: int,
    *,
    workers: int = 0,
    seed: int = 0,
    shuffle: bool = True,
    distributed: bool = False,
    drop_last: bool = True,
) -> DataLoader[Any]:
    """Build a seeded data loader.

    Args:
        dataset: a map-style data set (with ``__len__``).
        batch_size: items per batch (per rank when distributed).
        workers: worker processes (0 loads in the calling process).
        seed: the seed of the order and of the workers' random generators.
        shuffle: visit the items in a seeded random order (else in index order).
        distributed: shard the data set over the ranks of the initialised default process group with a
            :class:`~torch.utils.data.distributed.DistributedSampler`; call ``loader.sampler.set_epoch(epoch)``
            every epoch.
        drop_last: drop the last incomplete batch (and, distributed, the items that do not split evenly).

    Returns:
        The :class:`~torch.utils.data.DataLoader`.

    Raises:
        DataError: bad sizes, a data set shorter than one batch with ``drop_last``, or ``distributed`` without an
            initialised process group.
    """
    check_positive_int(batch_size, "batch_size")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise DataError(f"workers must be an integer >= 0 (0 loads in the main process), got {workers!r}")
    if not isinstance(dataset, Sized):
        raise DataError(f"make_loader needs a map-style data set with a length, got {type(dataset).__name__}")
    sampler = _distributed_sampler(dataset, seed=seed, shuffle=shuffle, drop_last=drop_last) if distributed else None
    per_rank = len(sampler) if sampler is not None else len(dataset)
    if drop_last and per_rank < batch_size:
        raise DataError(
            f"the data set gives {per_rank} item(s) per epoch{' per rank' if distributed else ''}, fewer than "
            f"batch_size {batch_size}, so drop_last=True would leave no batch; lower batch_size, use more data or "
            f"pass drop_last=False"
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(seed),
        drop_last=drop_last,
        persistent_workers=workers > 0,
    )


def _distributed_sampler(dataset: Dataset[Any], *, seed: int, shuffle: bool, drop_last: bool) -> DistributedSampler:
    if not (dist.is_available() and dist.is_initialized()):
        raise DataError(
            "distributed=True needs an initialised process group; call torch.distributed.init_process_group(...) "
            "first (torchrun sets up the environment), or pass distributed=False"
        )
    return DistributedSampler(
        dataset,
        num_replicas=dist.get_world_size(),
        rank=dist.get_rank(),
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
    )
