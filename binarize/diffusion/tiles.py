r"""Choosing the tile size for sampling a large image from the memory available, with a time estimate up front.

A denoiser's peak memory depends on the size it sees in ways no single rule captures: linear in the pixels for
convolutions, quadratic for self-attention over a feature map (a 2832 px tile of a UNet with attention at 1/8
resolution needs a 62 GB attention matrix, while at 128 px the same matrix is 256 KB, lost among the convolutions'
activations). So :func:`plan_tiles` does not extrapolate: it runs the network on the ``meta`` device (a copy whose
tensors have shapes and no data) at each candidate size and counts the peak of live tensor bytes there, exactly as
:class:`~binarize.bench.memory.LiveTensorBytes` counts them on the CPU, and the operations' floating-point work with
:class:`~torch.utils.flop_counter.FlopCounterMode`. A meta run costs no memory and about as long as the Python
overhead of one forward pass, so the largest tile side that fits is found by bisection over the multiples of the
network's size multiple (at least :data:`MIN_TILE`). Among the sides that fit, the plan takes the one with the least
work per sampling step (tiles times one evaluation's operations): with attention, several small tiles cost less
than one large tile, and without it the largest tile wastes the least on overlap. The whole image is one pass
when it fits and costs at most 10 % more than the best tiling.

The budget is half of the memory available now (``MemAvailable`` on Linux, the free CUDA memory on a GPU) unless
given; the sampler's own full-size tensors (:data:`IMAGE_BUFFERS` images of the output's size: the noisy image, the
condition, the blended output and its weights, :math:`\hat x_0`, :math:`\hat\epsilon`) come off it first. The time
estimate is one real evaluation at the chosen size, timed after a warm-up, times the tiles per step and the steps.

A network that cannot run on the meta device (an operation without a meta kernel, a data-dependent branch) is
measured for real at :math:`p_1 = 64` and :math:`p_2 = 128` px instead, with :math:`m(n) = a\,n + b\,n^2` fitted
through the two peaks (:math:`n = p^2`): less exact, so its plan says "extrapolated".
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from binarize.diffusion.sampler import SIZE_MULTIPLE, tile_origins
from binarize.errors import BinarizeError

__all__ = ["IMAGE_BUFFERS", "MIN_TILE", "TilePlan", "TilingError", "available_memory", "format_bytes", "plan_tiles",
           "tile_count"]

#: The smallest tile side in pixels (twice the default overlap of 32 between tiles).
MIN_TILE = 64
#: Full-size image tensors the sampler holds while it runs (see the module docstring).
IMAGE_BUFFERS = 8
#: The probe sides in pixels.
_PROBES = (64, 128)


class TilingError(BinarizeError, ValueError):
    """An image that cannot be sampled within the memory budget, even in the smallest tiles."""


@dataclass(frozen=True)
class TilePlan:
    """How an image will be sampled.

    Attributes:
        height: the output's height in pixels (after padding to the size multiple).
        width: the output's width in pixels (after padding to the size multiple).
        tile: the tile side in pixels, ``None`` for the whole image in one pass.
        tiles: network evaluations per sampling step (1 without tiling).
        steps: sampling steps.
        peak_bytes: the estimated peak memory (the network on one tile plus the full-size buffers).
        budget_bytes: the memory the plan was allowed to use.
        seconds: the estimated sampling time (``None``: not estimated, see ``estimate`` of :func:`plan_tiles`).
        exact: the memory was counted on the meta device at the tile's size (``False``: extrapolated from two
            measured probes).
    """

    height: int
    width: int
    tile: int | None
    tiles: int
    steps: int
    peak_bytes: int
    budget_bytes: int
    seconds: float | None
    exact: bool = True

    def describe(self) -> str:
        """One line: the size, the tiling, the memory estimate and the time estimate.

        Examples:
            >>> TilePlan(6000, 8000, 512, 391, 50, 3 * 2**30, 12 * 2**30, 5430.0).describe()
            '8000x6000 output in 391 tiles of 512 px, 50 steps: about 3.0 GiB of memory (12.0 GiB allowed), about 1 h 30 min'
        """
        layout = "in one pass" if self.tile is None else f"in {self.tiles} tiles of {self.tile} px"
        memory = f"about {format_bytes(self.peak_bytes)}" + ("" if self.exact else " (extrapolated)")
        return (
            f"{self.width}x{self.height} output {layout}, {self.steps} steps: {memory} of memory "
            f"({format_bytes(self.budget_bytes)} allowed)"
            + ("" if self.seconds is None else f", about {_duration(self.seconds)}")
        )


def format_bytes(count: float) -> str:
    """Bytes in KiB, MiB or GiB, one decimal.

    Examples:
        >>> format_bytes(3 * 2**30), format_bytes(1536 * 1024)
        ('3.0 GiB', '1.5 MiB')
    """
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{int(count)} B"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(seconds, 0.1):.1f} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def available_memory(device: torch.device) -> int:
    """Bytes that can be allocated now: free CUDA memory on a GPU; on the CPU ``MemAvailable`` from
    ``/proc/meminfo`` (Linux), else the physical memory reported by ``os.sysconf``."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - platforms without sysconf
        return 4 * 2**30


def tile_count(height: int, width: int, tile: int | None, overlap: int) -> int:
    """Network evaluations per step for an image of ``height x width`` in tiles of ``tile`` px overlapping by
    ``overlap`` (1 when the image fits one tile or ``tile`` is ``None``).

    Examples:
        >>> tile_count(100, 300, 64, 32), tile_count(64, 64, 64, 32), tile_count(500, 500, None, 32)
        (27, 1, 1)
    """
    if tile is None or (height <= tile and width <= tile):
        return 1
    return len(tile_origins(height, tile, tile - overlap)) * len(tile_origins(width, tile, tile - overlap))


class _Footprint:
    """Peak live tensor bytes and floating-point operations of one network evaluation at a given size."""

    def __init__(self, model: nn.Module, batch: int, channels: int, timestep: int,
                 timed: nn.Module | None = None) -> None:
        self.model, self.batch, self.channels, self.timestep = model, batch, channels, timestep
        self.timed = model if timed is None else timed
        self.device = next(model.parameters()).device
        self._measured: dict[tuple[int, int], tuple[int, int] | None] = {}
        self.meta = _meta_copy(model)
        self.exact = self.meta is not None and self._meta_run(_PROBES[0], _PROBES[0]) is not None
        if not self.exact:
            (m1, _), (m2, _) = (self._real_run(side, side) for side in _PROBES)
            self._fitted = _fit(m1, m2)

    def peak(self, height: int, width: int) -> int:
        if self.exact:
            measured = self._meta_run(height, width)
            assert measured is not None
            return measured[0]
        return int(self._fitted(height * width))

    def work(self, height: int, width: int) -> int:
        """Floating-point operations of one evaluation (0 without meta runs)."""
        measured = self._meta_run(height, width) if self.exact else None
        return 0 if measured is None else measured[1]

    def seconds(self, height: int, width: int) -> float:
        """One evaluation's time, measured: one real evaluation of the timed network at this size after a small
        warm-up."""
        self._real_run(_PROBES[0], _PROBES[0], self.timed)  # warm-up: first calls pay one-time costs
        return self._real_run(height, width, self.timed)[1]

    def _inputs(self, height: int, width: int, device: torch.device | str) -> tuple[Tensor, Tensor]:
        x = torch.zeros(self.batch, self.channels, height, width, device=device)
        return x, torch.full((self.batch,), self.timestep, dtype=torch.long, device=device)

    def _meta_run(self, height: int, width: int) -> tuple[int, int] | None:
        """Peak bytes and operations at ``height x width`` on the meta device (``None``: it cannot run there),
        measured once per size."""
        if (height, width) not in self._measured:
            self._measured[height, width] = self._count_on_meta(height, width)
        return self._measured[height, width]

    @torch.no_grad()
    def _count_on_meta(self, height: int, width: int) -> tuple[int, int] | None:
        from torch.utils.flop_counter import FlopCounterMode

        from binarize.bench.memory import LiveTensorBytes

        x, t = self._inputs(height, width, "meta")
        tracker, counter = LiveTensorBytes("meta"), FlopCounterMode(display=False)
        try:
            with counter, tracker:
                self.meta(x, t, x)  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - any failure means: measure for real instead
            return None
        return tracker.peak, int(counter.get_total_flops())

    @torch.no_grad()
    def _real_run(self, height: int, width: int, model: nn.Module | None = None) -> tuple[int, float]:
        from binarize.bench.memory import peak_memory

        x, t = self._inputs(height, width, self.device)
        network = self.model if model is None else model
        began = time.perf_counter()
        peak = peak_memory(lambda: network(x, t, x), self.device)
        return peak, time.perf_counter() - began


def _meta_copy(model: nn.Module) -> nn.Module | None:
    try:
        return copy.deepcopy(model).to("meta")
    except Exception:  # noqa: BLE001 - a model that cannot be copied is measured for real
        return None


def plan_tiles(
    model: nn.Module,
    shape: tuple[int, ...],
    steps: int,
    *,
    timestep: int = 0,
    multiple: int = SIZE_MULTIPLE,
    overlap: int = 32,
    tile: int | None | str = "auto",
    budget: int | None = None,
    timed: nn.Module | None = None,
    estimate: bool = True,
) -> TilePlan:
    """Plan the sampling of one condition tensor of ``shape`` ``(B, C, H, W)`` (the upsampled LR image).

    Args:
        model: the denoiser, ``model(x_t, t, cond)``, in eval mode, on its device.
        shape: the condition's shape.
        steps: sampling steps (for the time estimate).
        timestep: the timestep the probes are run at.
        multiple: the network's size multiple (tiles and the padded image are multiples of it).
        overlap: the overlap between tiles in pixels.
        tile: ``"auto"`` (chosen here), a side in pixels (kept; only estimated), or ``None`` (the whole image).
        budget: the bytes the sampling may use (default: half of :func:`available_memory`).
        timed: the network whose evaluations are timed for the estimate, when another one runs than ``model``
            (a packed network, :func:`binarize.deploy.freeze`, planned with the memory of its float form, which
            bounds its own).
        estimate: time one real evaluation for the time estimate (``False``: only plan, ``seconds`` is ``None``;
            the tile chosen is the same, since it depends on memory and operation counts only).

    Raises:
        TilingError: with ``"auto"``, the full-size buffers alone or the smallest tile do not fit the budget.
    """
    batch, channels, height, width = (int(s) for s in shape)
    height, width = height + -height % multiple, width + -width % multiple
    device = next(model.parameters()).device
    allowed = int(budget if budget is not None else available_memory(device) // 2)
    buffers = IMAGE_BUFFERS * batch * channels * height * width * 4
    footprint = _Footprint(model, batch, channels, timestep, timed)

    def peak(side_h: int, side_w: int) -> int:
        return buffers + footprint.peak(side_h, side_w)

    if tile == "auto":
        largest = _largest_tile(height, width, multiple, overlap, allowed, peak, buffers)
        tile = _fastest_tile(height, width, multiple, overlap, largest, footprint) if footprint.exact else largest
    elif isinstance(tile, int) and height <= tile and width <= tile:
        tile = None
    tiles = tile_count(height, width, tile, overlap)
    side_h, side_w = (height, width) if tile is None else (min(tile, height), min(tile, width))
    seconds = footprint.seconds(side_h, side_w) * tiles * steps if estimate else None
    return TilePlan(height, width, tile, tiles, steps, peak(side_h, side_w), allowed, seconds, footprint.exact)


def _fit(at_first: float, at_second: float) -> Callable[[int], float]:
    """``f(n) = a n + b n^2`` through the two probes' values (``a, b >= 0``; see the module docstring)."""
    n1, n2 = _PROBES[0] ** 2, _PROBES[1] ** 2
    quadratic = max(0.0, (at_second / n2 - at_first / n1) / (n2 - n1))
    linear = max(at_first / n1 - quadratic * n1, at_second / n2 - quadratic * n2, 0.0)
    return lambda pixels: linear * pixels + quadratic * pixels**2


def _largest_tile(height: int, width: int, multiple: int, overlap: int, allowed: int,
                  estimate: Callable[[int, int], int], buffers: int) -> int | None:
    """The largest tile side whose estimated peak fits ``allowed`` (``None``: the whole image fits)."""
    if estimate(height, width) <= allowed:
        return None
    if buffers >= allowed:
        raise TilingError(
            f"an output of {width}x{height} needs about {format_bytes(buffers)} for the sampler's full-size images "
            f"alone, more than the {format_bytes(allowed)} allowed; upscale a smaller image (or crop it into parts), "
            "or allow more memory (--max-memory)"
        )
    smallest = max(MIN_TILE, 2 * overlap)
    smallest += -smallest % multiple
    if estimate(min(smallest, height), min(smallest, width)) > allowed:
        raise TilingError(
            f"even a {smallest} px tile needs about {format_bytes(estimate(smallest, smallest))} with the "
            f"full-size images of a {width}x{height} output, more than the {format_bytes(allowed)} allowed; "
            "upscale a smaller image or allow more memory (--max-memory)"
        )
    low, high = smallest, max(height, width) + -max(height, width) % multiple  # low fits; find the largest
    while high - low > multiple:
        middle = (low + high) // 2 // multiple * multiple
        if estimate(min(middle, height), min(middle, width)) <= allowed:
            low = middle
        else:
            high = middle
    return high if estimate(min(high, height), min(high, width)) <= allowed else low


def _fastest_tile(height: int, width: int, multiple: int, overlap: int, largest: int | None,
                  footprint: _Footprint) -> int | None:
    """Among the sides that fit (the whole image when ``largest`` is ``None``), the one with the least work per
    step: tiles times one evaluation's floating-point operations, counted on the meta device. Attention makes a
    large tile cost more than several small ones; overlap makes many small tiles cost more. The whole image is
    kept when it is within 10 % of the best, so small images are not tiled for a marginal gain."""
    whole = max(height, width) + -max(height, width) % multiple
    top = whole if largest is None else largest
    candidates, side = {top}, max(MIN_TILE, 2 * overlap)
    while side < top:
        candidates.add(side + -side % multiple)
        side = int(side * 1.5)

    def cost(candidate: int) -> float:
        tiles = tile_count(height, width, candidate, overlap)
        return tiles * footprint.work(min(candidate, height), min(candidate, width))

    if largest is None:
        # Every tiling of tiles of side s costs at least (pixels) x (work per pixel at s), and work per pixel only
        # grows with the side (convolutions: constant; attention: growing), so the smallest side bounds them all:
        # when the whole image is within 10 % of that bound (no attention to speak of), no tiling can win.
        side = min(candidates)
        side_h, side_w = min(side, height), min(side, width)
        floor = height * width * footprint.work(side_h, side_w) / (side_h * side_w)
        if cost(top) <= 1.1 * floor:
            return None
    best = min(sorted(candidates, reverse=True), key=cost)
    if largest is None and cost(top) <= 1.1 * cost(best):
        return None
    return best if best < whole else None
