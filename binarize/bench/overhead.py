"""The cost of binarization during training: a recipe's training step against its full-precision twin's.

:func:`measure_overhead` builds a model, binarizes one copy with the recipe and another with its full-precision
twin (:func:`~binarize.bench.twin.fp_twin_recipe`: the same recipe with the binarizers and the scale switched off),
then times a training step of each (:class:`~binarize.bench.step.TrainingStep`), interleaved, and measures the
peak memory of one step of each (:func:`~binarize.bench.memory.peak_memory`). The ratios binary / twin are the
overhead of the sign and scale operations; the BI-DiffSR release's are 2.07 (time) and 2.5 (memory).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

import torch

from binarize.bench.memory import peak_memory
from binarize.bench.step import TrainingStep, argument_position, fixed_target, training_batch
from binarize.bench.timing import interleaved_samples, paired_times
from binarize.bench.twin import fp_twin_recipe
from binarize.errors import BinarizeError
from binarize.recipe import load_recipe

__all__ = ["DTYPES", "OverheadResult", "measure_overhead", "resolve_device"]

#: ``--dtype`` names and the dtype of the parameters and inputs.
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "bf16-autocast": torch.float32}

#: ``--dtype`` names that run forward and loss under :func:`torch.autocast` (fp32 parameters), and its dtype.
AUTOCAST: dict[str, torch.dtype] = {"bf16-autocast": torch.bfloat16}


@dataclass(frozen=True)
class OverheadResult:
    """What :func:`measure_overhead` measured (times in seconds, memory in bytes, ratios binary / twin)."""

    model: str
    recipe: str
    device: str
    dtype: str
    compile: bool
    size: int | None
    batch: int
    steps: int
    warmup: int
    threads: int
    time_binary_s: float
    time_fp_s: float
    time_ratio: float
    time_ratio_quartiles: tuple[float, float]
    memory_binary_bytes: int
    memory_fp_bytes: int
    memory_ratio: float
    memory_method: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the ``--json`` output)."""
        return asdict(self)

    def format(self) -> str:
        """A short human-readable report."""
        mib = 1024.0**2
        compiled = ", compiled" if self.compile else ""
        return "\n".join([
            f"model   {self.model}   recipe {self.recipe}   twin {self.recipe}-fp-twin (no binarizers, no scale)",
            f"step    batch {self.batch}, size {self.size}, {self.device} {self.dtype}{compiled}, "
            f"{self.threads} thread(s), median of {self.steps} after {self.warmup} warm-up",
            f"time    binary {self.time_binary_s * 1e3:9.1f} ms   fp twin {self.time_fp_s * 1e3:9.1f} ms   "
            f"ratio {self.time_ratio:.3f} (per-step ratios' quartiles {self.time_ratio_quartiles[0]:.3f} - "
            f"{self.time_ratio_quartiles[1]:.3f})",
            f"memory  binary {self.memory_binary_bytes / mib:9.1f} MiB  fp twin {self.memory_fp_bytes / mib:9.1f} MiB  "
            f"ratio {self.memory_ratio:.3f}   ({self.memory_method})",
        ])


def resolve_device(name: str) -> torch.device:
    """``"cpu"`` or ``"cuda"`` (``cuda:N`` too) as a device, refusing CUDA when it is not available."""
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise BinarizeError(f"device must be cpu or cuda, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BinarizeError("--device cuda needs a CUDA build of torch and a visible GPU; use --device cpu")
    return device


def measure_overhead(
    model: str = "zoo:bidiffsr-unet-small",
    recipe: str = "bidiffsr",
    *,
    size: int | None = 64,
    batch: int = 4,
    device: str = "cpu",
    dtype: str = "fp32",
    compile: bool = False,
    steps: int = 30,
    warmup: int = 3,
    seed: int = 0,
) -> OverheadResult:
    """Time and peak memory of a training step of ``model`` binarized by ``recipe``, against its FP twin.

    Both networks start from the same weights (two conversions of one model) and see the same batch and target.
    Times are medians over ``steps`` interleaved rounds (one step of each network) after ``warmup`` rounds, and the
    time ratio is the median of the per-round ratios (see :func:`~binarize.bench.timing.paired_times`), with their
    quartiles; memory is the peak of one further step of each (see :mod:`binarize.bench.memory`).

    Args:
        model: a model spec (``zoo:NAME``, ``timm:NAME``, ``file.py:factory``).
        recipe: a recipe name or file.
        size: spatial input size (None: the model's default).
        batch: the batch size; the model's example inputs are repeated and perturbed (see
            :func:`~binarize.bench.step.training_batch`), with random timesteps for a recipe with a ``timestep``
            section.
        device: ``"cpu"`` or ``"cuda"``.
        dtype: ``"fp32"``, ``"bf16"`` (parameters and floating-point inputs) or ``"bf16-autocast"`` (fp32
            parameters, forward and loss under bf16 :func:`torch.autocast`).
        compile: run both networks through :func:`torch.compile`.
        steps: timed steps per network.
        warmup: untimed steps per network first (they also compile with ``compile``).
        seed: seeds the batch, the target and the initial weights.

    Raises:
        BinarizeError: a bad device, dtype or model spec, a recipe that does not apply.
    """
    from binarize.api import binarize
    from binarize.specs import resolve_model

    if dtype not in DTYPES:
        raise BinarizeError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if batch < 1 or steps < 1 or warmup < 0:
        raise BinarizeError(f"need batch >= 1, steps >= 1 and warmup >= 0; got {batch}, {steps}, {warmup}")
    target_device = resolve_device(device)
    resolved = load_recipe(recipe)
    torch.manual_seed(seed)
    spec = resolve_model(model, size=size)
    example = spec.example_inputs(size=size)
    timestep = resolved.timestep
    position = None
    if timestep is not None:
        wanted = timestep["input"]
        position = wanted if isinstance(wanted, int) else argument_position(spec.model, wanted)
    inputs = training_batch(
        example, batch, timestep_position=position, total_timesteps=timestep["T"] if timestep else None, seed=seed
    )
    inputs = tuple(_to(v, target_device, DTYPES[dtype]) for v in inputs)
    networks = {
        "binary": binarize(spec.model, resolved, example_inputs=example),
        "fp": binarize(spec.model, fp_twin_recipe(resolved), example_inputs=example),
    }
    step_of: dict[str, TrainingStep] = {}
    memory_step_of: dict[str, TrainingStep] = {}
    for name, network in networks.items():
        network = network.to(device=target_device, dtype=DTYPES[dtype]).train()
        step = TrainingStep.adam(network, inputs, fixed_target(network, inputs, seed=seed),
                                 autocast=AUTOCAST.get(dtype))
        memory_step_of[name] = step_of[name] = step
        if compile:
            step_of[name] = dataclasses.replace(step, model=torch.compile(network))
            if target_device.type == "cuda":  # the allocator sees compiled kernels; the CPU tracker does not
                memory_step_of[name] = step_of[name]
    samples = interleaved_samples(step_of, repeats=steps, warmup=warmup, device=target_device)
    times = paired_times(samples["binary"], samples["fp"])
    memory = {
        name: peak_memory(step, target_device, alive=step.alive()) for name, step in memory_step_of.items()
    }
    return OverheadResult(
        model=spec.name,
        recipe=resolved.name,
        device=str(target_device),
        dtype=dtype,
        compile=compile,
        size=size,
        batch=batch,
        steps=steps,
        warmup=warmup,
        threads=torch.get_num_threads(),
        time_binary_s=times.median_a,
        time_fp_s=times.median_b,
        time_ratio=times.ratio,
        time_ratio_quartiles=times.ratio_quartiles,
        memory_binary_bytes=memory["binary"],
        memory_fp_bytes=memory["fp"],
        memory_ratio=memory["binary"] / memory["fp"],
        memory_method=_memory_method(target_device, compile),
    )


def _memory_method(device: torch.device, compile: bool) -> str:
    if device.type == "cuda":
        return "CUDA allocator peak of the step's tensors"
    return "peak of live tensor storages" + (" (eager step: compiled kernels allocate out of sight)" if compile else "")


def _to(value: Any, device: torch.device, dtype: torch.dtype) -> Any:
    if not isinstance(value, torch.Tensor):
        return value
    return value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device)
