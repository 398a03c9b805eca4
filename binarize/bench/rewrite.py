"""The cost of the conversion itself: how long :func:`binarize.binarize` takes, against one forward pass of the model.

A recipe is applied once per run, so the conversion may cost a few forward passes; :func:`measure_rewrite` reports
that ratio for large networks, with the deep copy that :func:`~binarize.binarize` makes (``inplace=False``) timed
separately so that its share is visible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from binarize.bench.overhead import resolve_device
from binarize.bench.timing import median_seconds
from binarize.engine.module_copy import deep_copy_module
from binarize.errors import BinarizeError
from binarize.recipe import load_recipe

__all__ = ["RewriteResult", "measure_rewrite"]


@dataclass(frozen=True)
class RewriteResult:
    """What :func:`measure_rewrite` measured (times in seconds, medians)."""

    model: str
    recipe: str
    device: str
    input_shape: list[int]
    repeats: int
    threads: int
    time_binarize_s: float
    time_copy_s: float
    time_forward_s: float
    ratio: float
    replaced: int

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the ``--json`` output)."""
        return asdict(self)

    def format(self) -> str:
        """A short human-readable report."""
        shape = "x".join(map(str, self.input_shape))
        return "\n".join([
            f"model     {self.model}   recipe {self.recipe}   input {shape}   {self.device}, {self.threads} thread(s)",
            f"binarize  {self.time_binarize_s * 1e3:9.1f} ms  ({self.replaced} layers replaced; the deep copy alone "
            f"{self.time_copy_s * 1e3:.1f} ms)",
            f"forward   {self.time_forward_s * 1e3:9.1f} ms  (eval, no grad)",
            f"ratio     {self.ratio:.2f} forward passes",
        ])


def measure_rewrite(
    model: str = "timm:resnet50",
    recipe: str = "reactnet",
    *,
    size: int | None = None,
    device: str = "cpu",
    repeats: int = 3,
    warmup: int = 1,
) -> RewriteResult:
    """Median time of ``binarize(model, recipe, example_inputs=...)`` against one forward pass of the model.

    Args:
        model: a model spec (``zoo:NAME``, ``timm:NAME``, ``file.py:factory``).
        recipe: a recipe name or file.
        size: spatial input size (None: the model's default, 224 for timm image models).
        device: where the model and its inputs live.
        repeats: timed conversions and forward passes.
        warmup: untimed ones first.

    Raises:
        BinarizeError: a bad device, model spec or recipe.
    """
    from binarize.api import binarize
    from binarize.specs import resolve_model

    if repeats < 1 or warmup < 0:
        raise BinarizeError(f"need repeats >= 1 and warmup >= 0; got {repeats}, {warmup}")
    target = resolve_device(device)
    resolved = load_recipe(recipe)
    spec = resolve_model(model, size=size)
    network = spec.model.to(target).eval()
    inputs = tuple(v.to(target) if isinstance(v, torch.Tensor) else v for v in spec.example_inputs(size=size))
    replaced: list[int] = []

    def convert() -> None:
        converted = binarize(network, resolved, example_inputs=inputs)
        replaced.append(len(converted.binarize_report.replaced))

    def forward() -> None:
        with torch.no_grad():
            network(*inputs)

    time_forward = median_seconds(forward, repeats=repeats, warmup=warmup, device=target)
    time_copy = median_seconds(lambda: deep_copy_module(network), repeats=repeats, warmup=warmup, device=target)
    time_binarize = median_seconds(convert, repeats=repeats, warmup=warmup, device=target)
    first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
    return RewriteResult(
        model=spec.name,
        recipe=resolved.name,
        device=str(target),
        input_shape=list(first.shape) if first is not None else [],
        repeats=repeats,
        threads=torch.get_num_threads(),
        time_binarize_s=time_binarize,
        time_copy_s=time_copy,
        time_forward_s=time_forward,
        ratio=time_binarize / time_forward,
        replaced=replaced[-1],
    )
