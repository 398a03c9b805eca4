"""Wall-clock medians: of one piece of work, or of several pieces interleaved so that they share the conditions."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["PairedTimes", "interleaved_samples", "median_seconds", "paired_times", "synchronize"]


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


def interleaved_samples(
    works: Mapping[str, Callable[[], Any]], *, repeats: int, warmup: int = 0, device: torch.device | None = None
) -> dict[str, list[float]]:
    """The wall-clock time of every call of each of ``works``, timed in turns so that slow drifts (thermal, other
    load) hit all alike: ``repeats`` rounds after ``warmup`` untimed ones.

    Round ``i`` runs the works in order for even ``i`` and in reverse order for odd ``i`` (A B, B A, A B, ...), so
    that no work always follows the same one. Entry ``i`` of each list belongs to round ``i``.

    Examples:
        >>> samples = interleaved_samples({"a": lambda: None, "b": lambda: None}, repeats=3)
        >>> sorted(samples), len(samples["a"])
        (['a', 'b'], 3)
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
    return samples


@dataclass(frozen=True)
class PairedTimes:
    """Two works timed in turns: each one's median time (seconds) and the ratio ``a / b`` as the median of the
    per-round ratios, with its interquartile range."""

    median_a: float
    median_b: float
    ratio: float
    ratio_quartiles: tuple[float, float]


def paired_times(a: Sequence[float], b: Sequence[float]) -> PairedTimes:
    r"""Summarise interleaved samples of two works (entry ``i`` of each from the same round).

    The ratio is the median of the per-round ratios :math:`a_i / b_i`: the two steps of a round run back to back, so
    a drift of the machine's speed over the run (another process, clock changes) scales both and cancels in each
    ratio, where it would move the two medians apart in a ratio of medians. The quartiles of the per-round ratios say
    how much a round scatters.

    Examples:
        >>> summary = paired_times([2.0, 4.0, 2.2], [1.0, 2.0, 1.0])
        >>> summary.ratio, summary.median_a, summary.median_b
        (2.0, 2.2, 1.0)
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"need two equally long, non-empty sample lists, got {len(a)} and {len(b)}")
    ratios = [x / y for x, y in zip(a, b)]
    if len(ratios) == 1:
        quartiles = (ratios[0], ratios[0])
    else:
        q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
        quartiles = (q1, q3)
    return PairedTimes(statistics.median(a), statistics.median(b), statistics.median(ratios), quartiles)
