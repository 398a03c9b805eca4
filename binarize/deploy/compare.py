"""Size and speed of a packed model against its float form, measured in one run (what ``binarize upscale --packed``
and ``binarize demo`` report)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from binarize.bench.timing import interleaved_samples, paired_times
from binarize.deploy.export import export

__all__ = ["PackedComparison", "compare_packed", "denoiser_inputs", "kernel_description"]


@dataclass(frozen=True)
class PackedComparison:
    """A packed model against the float (fake-quantised) model it was frozen from.

    Attributes:
        packed_layers: binary layers that run on packed bits.
        kept_layers: binary layers that stay fake-quantised.
        float_bytes: the float model's parameters and buffers (float32).
        packed_bytes: the packed file (:func:`binarize.deploy.export`, float parts in float32).
        float_ms: one forward pass of the float model (median, milliseconds).
        packed_ms: one forward pass of the packed model.
        speedup: ``float_ms / packed_ms`` as the median of per-round ratios.
        kernels: which implementation ran (see :func:`kernel_description`).
    """

    packed_layers: int
    kept_layers: int
    float_bytes: int
    packed_bytes: int
    float_ms: float
    packed_ms: float
    speedup: float
    kernels: str

    def describe(self, what: str = "one forward pass") -> str:
        """One line for a command's output."""
        kept = f", {self.kept_layers} stay fake-quantised" if self.kept_layers else ""
        return (
            f"packed: {self.packed_layers} binary layers on packed bits{kept} ({self.kernels}); "
            f"{self.packed_bytes / 1e6:.2f} MB against {self.float_bytes / 1e6:.2f} MB in float32 "
            f"({self.float_bytes / self.packed_bytes:.1f}x smaller); {what}: {self.packed_ms:.1f} ms against "
            f"{self.float_ms:.1f} ms ({self.speedup:.2f}x faster)"
        )


def kernel_description() -> str:
    """``compiled (avx2)`` and the like, or ``pure-torch reference`` where the kernels do not load."""
    from binarize.deploy import kernels

    return f"compiled kernels, {kernels.kernel_isa()}" if kernels.kernels_available() else "pure-torch reference"


def denoiser_inputs(size: int, channels: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_t, t, cond)`` for one evaluation of an SR denoiser at ``size x size`` (timestep 0)."""
    x = torch.zeros(1, channels, size, size)
    return x, torch.zeros(1, dtype=torch.long), x


def compare_packed(
    float_model: nn.Module, packed_model: nn.Module, inputs: tuple[Any, ...], *, repeats: int = 3, warmup: int = 1
) -> PackedComparison:
    """Measure ``packed_model`` (from :func:`binarize.deploy.freeze` of ``float_model``) against ``float_model`` on
    ``inputs``: the two forward passes timed in turns, and the packed file's size."""
    report = packed_model.deploy_report  # type: ignore[union-attr]
    works: dict[str, Callable[[], Any]] = {"float": lambda: float_model(*inputs),
                                           "packed": lambda: packed_model(*inputs)}
    with torch.no_grad():
        samples = interleaved_samples(works, repeats=repeats, warmup=warmup)
    timing = paired_times(samples["float"], samples["packed"])
    float_bytes = sum(t.numel() * t.element_size() for t in (*float_model.parameters(), *float_model.buffers()))
    with tempfile.TemporaryDirectory() as folder:
        packed_bytes = export(float_model, Path(folder) / "packed.safetensors").file_bytes
    return PackedComparison(
        packed_layers=len(report.packed), kept_layers=len(report.kept), float_bytes=float_bytes,
        packed_bytes=packed_bytes, float_ms=1e3 * timing.median_a, packed_ms=1e3 * timing.median_b,
        speedup=timing.ratio, kernels=kernel_description(),
    )
