"""Wall-clock medians: of one piece of work, or of several pieces interleaved so that they share the conditions."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = ["interleaved_medians", "median_seconds", "synchronize"]


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(work: Callable[[], Any], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - start


def median_seconds(
    work: Callable[[], Any], *, repeats: int, warmup: int = 0, device: torch.device | None = None
) -> float:
    """The median wall-clock time of ``work()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    device = device or torch.device("cpu")
    for _ in range(warmup):
        work()
    return statistics.median(_timed(work, device) for _ in range(repeats))


def interleaved_medians(
    works: Mapping[str, Callable[[], Any]], *, repeats: int, warmup: int = 0, device: torch.device | None = None
) -> dict[str, float]:
    """The median time of each of ``works``, timed in turns so that slow drifts (thermal, other load) hit all alike.

    Round ``i`` runs the works in order for even ``i`` and in reverse order for odd ``i`` (A B, B A, A B, ...), so
    that no work always follows the same one.

    Examples:
        >>> sorted(interleaved_medians({"a": lambda: None, "b": lambda: None}, repeats=3))
        ['a', 'b']
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    device = device or torch.device("cpu")
    names = list(works)
    for _ in range(warmup):
        for name in names:
            works[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeats):
        for name in names if i % 2 == 0 else reversed(names):
            samples[name].append(_timed(works[name], device))
    return {name: statistics.median(values) for name, values in samples.items()}
