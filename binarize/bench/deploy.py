"""``binarize bench deploy``: inference on packed bits against the float model, in one run.

For a model spec and a recipe: the float network (PyTorch eager), its binarized fake-quantised form and its packed
form (:func:`binarize.deploy.freeze`) are timed in turns (medians of interleaved rounds, the ratio as the median
of per-round ratios, see :mod:`binarize.bench.timing`) at each thread count; then every packed layer alone against
a float layer of the same shape (the same input, a float weight of the same geometry), at the first thread count;
and the sizes of the float weights and of the packed file. Numbers are ratios measured in the same run on the same
machine, never a verdict.
"""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from binarize._threads import cpu_threads
from binarize.bench.timing import interleaved_samples, paired_times
from binarize.deploy import export, freeze
from binarize.deploy.compare import kernel_description
from binarize.deploy.packed import PackedConv, PackedConvTranspose2d, PackedLayer, PackedLinear

__all__ = ["DeployResult", "LayerTiming", "ModelTiming", "measure_deploy"]


@dataclass
class ModelTiming:
    """Whole-model medians (milliseconds) at one thread count, and the speed-ups of the packed model."""

    threads: int
    float_ms: float
    fake_quantised_ms: float
    packed_ms: float
    packed_vs_float: float
    packed_vs_fake_quantised: float


@dataclass
class LayerTiming:
    """One packed layer alone against a float layer of the same shape (milliseconds, medians)."""

    name: str
    shape: str
    float_ms: float
    packed_ms: float
    speedup: float


@dataclass
class DeployResult:
    """What ``binarize bench deploy`` measured."""

    model: str
    recipe: str
    inputs: str
    machine: str
    kernels: str
    models: list[ModelTiming] = field(default_factory=list)
    layers: list[LayerTiming] = field(default_factory=list)
    float_bytes: int = 0
    packed_bytes: int = 0
    kept: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for ``--json``)."""
        return asdict(self)

    def format(self) -> str:
        """The tables as text."""
        lines = [f"{self.model} + {self.recipe}, inputs {self.inputs}; {self.machine}; kernels: {self.kernels}", ""]
        lines.append(f"{'threads':>7}  {'float ms':>9}  {'fake-quant ms':>13}  {'packed ms':>9}  "
                     f"{'packed vs float':>15}  {'vs fake-quant':>13}")
        for m in self.models:
            lines.append(f"{m.threads:>7}  {m.float_ms:>9.2f}  {m.fake_quantised_ms:>13.2f}  {m.packed_ms:>9.2f}  "
                         f"{m.packed_vs_float:>14.2f}x  {m.packed_vs_fake_quantised:>12.2f}x")
        if self.layers:
            threads = self.models[0].threads if self.models else 1
            lines += ["", f"packed layers alone against float layers of the same shape ({threads} thread(s)):"]
            lines.append(f"{'layer':<28} {'shape':<34} {'float ms':>9} {'packed ms':>9} {'speed-up':>8}")
            for layer in self.layers:
                lines.append(f"{layer.name[:28]:<28} {layer.shape[:34]:<34} {layer.float_ms:>9.3f} "
                             f"{layer.packed_ms:>9.3f} {layer.speedup:>7.2f}x")
        lines += ["", f"float weights {self.float_bytes / 1e6:.2f} MB, packed file {self.packed_bytes / 1e6:.2f} MB "
                  f"({self.float_bytes / max(self.packed_bytes, 1):.1f}x smaller)"]
        lines += [f"stays fake-quantised: {name}: {why}" for name, why in self.kept.items()]
        return "\n".join(lines)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"


def measure_deploy(
    model: str,
    recipe: str,
    *,
    size: int | None = None,
    threads: tuple[int, ...] = (1, 2),
    repeats: int = 10,
    warmup: int = 2,
    layers: bool = True,
) -> DeployResult:
    """Time the float, fake-quantised and packed forms of ``model`` binarized with ``recipe`` (see the module)."""
    from binarize.api import binarize
    from binarize.specs import resolve_model

    spec = resolve_model(model, size=size)
    inputs = spec.example_inputs(size)
    float_model = spec.model.eval()
    fake = binarize(float_model, recipe, example_inputs=inputs).eval()
    packed = freeze(fake)
    result = DeployResult(model=model, recipe=recipe, inputs=_describe(inputs), machine=_machine(), kernels=kernel_description(),
                          kept=dict(packed.deploy_report.kept))
    works: dict[str, Callable[[], Any]] = {
        "float": lambda: float_model(*inputs), "fake": lambda: fake(*inputs), "packed": lambda: packed(*inputs),
    }
    with torch.no_grad():
        for count in threads:
            with cpu_threads(count):
                samples = interleaved_samples(works, repeats=repeats, warmup=warmup)
            versus_float = paired_times(samples["float"], samples["packed"])
            versus_fake = paired_times(samples["fake"], samples["packed"])
            result.models.append(ModelTiming(
                count, 1e3 * versus_float.median_a, 1e3 * versus_fake.median_a, 1e3 * versus_float.median_b,
                versus_float.ratio, versus_fake.ratio,
            ))
        if layers:
            with cpu_threads(threads[0]):
                result.layers = _layer_timings(packed, inputs, repeats, warmup)
    result.float_bytes = sum(p.numel() * p.element_size() for p in float_model.parameters())
    with tempfile.TemporaryDirectory() as folder:
        result.packed_bytes = export(fake, Path(folder) / "packed.safetensors", recipe=recipe).file_bytes
    return result


def _describe(inputs: tuple) -> str:
    return ", ".join("x".join(map(str, x.shape)) if isinstance(x, Tensor) else repr(x) for x in inputs)


def _layer_timings(model: nn.Module, inputs: tuple, repeats: int, warmup: int) -> list[LayerTiming]:
    """Each packed layer on the input it saw in one forward pass, against a float layer of the same shape."""
    seen: dict[str, tuple[tuple, dict]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, PackedLayer):
            def keep(mod: nn.Module, args: tuple, kwargs: dict, name: str = name) -> None:
                seen.setdefault(name, (args, kwargs))
            hooks.append(module.register_forward_pre_hook(keep, with_kwargs=True))
    try:
        model(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    timings = []
    for name, (args, kwargs) in seen.items():
        layer = model.get_submodule(name)
        float_layer, shape = _float_counterpart(layer, args[0])
        samples = interleaved_samples(
            {"float": lambda: float_layer(args[0]), "packed": lambda: layer(*args, **kwargs)},
            repeats=repeats, warmup=warmup,
        )
        summary = paired_times(samples["float"], samples["packed"])
        timings.append(LayerTiming(name, shape, 1e3 * summary.median_a, 1e3 * summary.median_b, summary.ratio))
    return timings


def _float_counterpart(layer: nn.Module, x: Tensor) -> tuple[Callable[[Tensor], Tensor], str]:
    """A float operation of the layer's geometry (random weights) and a description of the shape."""
    generator = torch.Generator().manual_seed(0)
    if isinstance(layer, PackedLinear):
        weight = torch.randn(layer.out_features, layer.in_features, generator=generator)
        return (lambda t: F.linear(t, weight)), f"linear {layer.in_features}->{layer.out_features} x{x.shape[:-1].numel()}"
    if isinstance(layer, PackedConvTranspose2d):
        weight = torch.randn(layer.in_channels, layer.out_channels // layer.groups, *layer.kernel_size,
                             generator=generator)
        return (lambda t: F.conv_transpose2d(t, weight, None, layer.stride, layer.padding, layer.output_padding,
                                             layer.groups, layer.dilation)), \
            f"convT {layer.in_channels}->{layer.out_channels} k{layer.kernel_size[0]} @{x.shape[-1]}"
    assert isinstance(layer, PackedConv)
    weight = torch.randn(layer.out_channels, layer.in_channels // layer.groups, *layer.kernel_size, generator=generator)
    functional = F.conv1d if layer.spatial_dims == 1 else F.conv2d
    padding = layer.padding
    stride = "" if max(layer.stride) == 1 else f" s{max(layer.stride)}"
    shape = (f"conv {layer.in_channels}->{layer.out_channels} k{'x'.join(map(str, layer.kernel_size))}{stride} "
             f"@{'x'.join(map(str, x.shape[2:]))}")
    return (lambda t: functional(t, weight, None, layer.stride, padding, layer.dilation, layer.groups)), shape
