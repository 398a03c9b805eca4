"""Evaluation and upscaling with a trained checkpoint: ``binarize eval`` and ``binarize upscale``.

Evaluation upscales every test image (its bicubic-downscaled LR image, or the given LR image) with DDIM sampling and
reports PSNR-Y and SSIM-Y (:mod:`binarize.metrics`, ``scale`` border pixels cropped) per image and their mean,
next to bicubic upsampling as the baseline. It writes ``eval.json``, ``eval.md`` (the same table in Markdown) and
``eval.png`` (per image: bicubic, the model's result and the HR image side by side).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from binarize._files import write_text_atomic
from binarize.data import ImageFolder, bicubic_downscale, bicubic_upscale, embedded_photos, mod_crop, save_image
from binarize.diffusion import PREDICTION_TARGETS, DDIMSampler
from binarize.diffusion.tiles import plan_tiles
from binarize.metrics import psnr_y, ssim_y
from binarize.specs import TRUSTED_MODEL_PREFIXES, untrusted_code
from binarize.training.checkpoint import Checkpoint, CheckpointError, load_weights, read_checkpoint
from binarize.training.config import ConfigError, ExperimentConfig
from binarize.training.model import build_model


__all__ = ["TRUSTED_MODEL_PREFIXES", "EvalReport", "evaluate", "load_model", "sampler_for", "stack_panels", "test_images", "upscale_image"]


def load_model(checkpoint: str | Path | Checkpoint, *, trust_code: bool = False) -> tuple[nn.Module, Checkpoint]:
    """The checkpoint's network, rebuilt from the file alone (model spec, recipe) and in eval mode.

    A checkpoint whose model is a Python file (``path/to/file.py:factory``, a network of the user's own) is rebuilt
    by running that file, so it is refused unless ``trust_code`` is given: reading a file must not run code a
    stranger put beside it. ``zoo:`` and ``timm:`` models need no trust.

    Raises:
        CheckpointError: the file is not a checkpoint, names a Python file without ``trust_code``, or its weights
            do not fit the model its config describes.
    """
    found = checkpoint if isinstance(checkpoint, Checkpoint) else read_checkpoint(checkpoint)
    if (refused := untrusted_code(found.config.model, trust_code, str(found.path))) is not None:
        raise CheckpointError(refused)
    built = build_model(found.config, found.recipe)
    load_weights(built.model, found.model_state, found.path, found.config.model)
    return built.model.eval(), found


def sampler_for(config: ExperimentConfig, steps: int | None = None) -> DDIMSampler:
    """The DDIM sampler of an experiment (its schedule and target; ``steps`` overrides the sampling steps).

    Raises:
        ConfigError: ``steps`` is not between 1 and the diffusion's steps.
    """
    chosen = config.diffusion.sampling_steps if steps is None else steps
    if isinstance(chosen, bool) or not isinstance(chosen, int) or not 1 <= chosen <= config.diffusion.steps:
        raise ConfigError(
            f"{chosen!r} sampling steps: the model was trained with a {config.diffusion.steps}-step diffusion, so "
            f"DDIM takes 1 to {config.diffusion.steps} steps (default: {config.diffusion.sampling_steps})"
        )
    return DDIMSampler(config.diffusion.schedule(), PREDICTION_TARGETS.get(config.diffusion.target), chosen)


def test_images(scale: int, folder: str | None = None, lr_dir: str | None = None,
                crop: int | None = None) -> list[tuple[str, Tensor, Tensor]]:
    """``(name, hr, lr)`` of the evaluation images: the embedded held-out photos, whole (``crop=None``, the default)
    or their centred ``crop`` x ``crop`` crops, or an image folder (HR only, or HR/LR pairs)."""
    if folder is None:
        return [
            (name, hr, bicubic_downscale(hr, scale))
            for name, hr in ((n, mod_crop(image, scale)) for n, image in embedded_photos("test", crop=crop))
        ]
    dataset = ImageFolder(folder, lr_dir=lr_dir, scale=scale)
    return [(dataset.names[i], item["hr"], item["lr"]) for i, item in enumerate(dataset)]


def upscale_image(
    model: nn.Module, config: ExperimentConfig, lr: Tensor, *, steps: int | None = None,
    tile: int | str | None = None, seed: int = 0, progress: Callable[[int], None] | None = None,
    on_forward: Callable[[], None] | None = None, budget: int | None = None,
) -> Tensor:
    """Super-resolve one LR image ``(3, h, w)`` in ``[0, 1]`` by the experiment's scale; any size works.

    Args:
        model: the denoiser, in eval mode.
        config: its experiment (scale, diffusion, sampling steps).
        lr: the low-resolution image.
        steps: DDIM steps (default: the config's).
        tile: the tile side in output pixels, ``"auto"`` (the largest that fits ``budget``, see
            :func:`~binarize.diffusion.tiles.plan_tiles`), or ``None`` (the whole image in one pass).
        seed: the seed of the starting noise.
        progress: called with the step index after each sampling step.
        on_forward: called after each network evaluation (one per tile and step).
        budget: bytes the sampling may use with ``tile="auto"`` (default: half of the available memory).

    Raises:
        CheckpointError: the result holds NaN or infinity (nothing is returned that would be written as a black
            image).
    """
    sampler = sampler_for(config, steps)
    cond = bicubic_upscale(lr[None], config.scale)
    if tile == "auto":
        tile = plan_tiles(model, tuple(cond.shape), sampler.steps, budget=budget, estimate=False).tile
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    denoiser = model if on_forward is None else _reporting(model, on_forward)
    out = sampler.upscale(denoiser, cond.to(device), tile=tile, generator=generator, progress=progress)
    bad = int((~torch.isfinite(out)).sum())
    if bad:
        raise CheckpointError(
            f"the network's output holds {bad} NaN or infinite values of {out.numel()}, so there is no image to "
            "write; its weights are finite, so the network overflows on this input (check the input's range, or "
            "evaluate an earlier checkpoint)"
        )
    return out[0].cpu()


def _reporting(model: nn.Module, report: Callable[[], None]) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    def denoise(x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        out = model(x_t, t, cond)
        report()
        return out

    return denoise


@dataclass
class EvalReport:
    """Per-image and mean PSNR-Y / SSIM-Y of the model and of bicubic upsampling.

    Attributes:
        rows: one entry per image (name, size, the model's and bicubic's PSNR-Y and SSIM-Y).
        outputs: the model's result per image name, ``(3, H, W)`` in ``[0, 1]`` (not part of :meth:`to_dict`).
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, Tensor] = field(default_factory=dict)

    @property
    def mean(self) -> dict[str, float]:
        keys = ("psnr_y", "ssim_y", "bicubic_psnr_y", "bicubic_ssim_y")
        return {k: sum(r[k] for r in self.rows) / len(self.rows) for k in keys}

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.rows, "mean": self.mean}

    def markdown(self, title: str) -> str:
        lines = [f"# {title}", "", "| image | size | bicubic PSNR-Y | PSNR-Y | bicubic SSIM-Y | SSIM-Y |",
                 "| --- | --- | --- | --- | --- | --- |"]
        for r in [*self.rows, {"name": "**mean**", "size": "", **self.mean}]:
            lines.append(
                f"| {r['name']} | {r['size']} | {r['bicubic_psnr_y']:.2f} | {r['psnr_y']:.2f} | "
                f"{r['bicubic_ssim_y']:.4f} | {r['ssim_y']:.4f} |"
            )
        return "\n".join(lines) + "\n"


def evaluate(
    model: nn.Module,
    config: ExperimentConfig,
    images: Sequence[tuple[str, Tensor, Tensor]],
    *,
    steps: int | None = None,
    seed: int = 0,
    tile: int | str | None = None,
    budget: int | None = None,
    out: str | Path | None = None,
    title: str = "evaluation",
) -> EvalReport:
    """Upscale ``images`` (``(name, hr, lr)``) and measure them; with ``out``, write the JSON, Markdown and PNG.

    ``steps``, ``seed``, ``tile`` and ``budget`` are passed to :func:`upscale_image` for every image.
    """
    report = EvalReport()
    panels = []
    for name, hr, lr in images:
        sr = upscale_image(model, config, lr, steps=steps, tile=tile, seed=seed, budget=budget)
        bicubic = bicubic_upscale(lr[None], config.scale)[0].clamp(0, 1)
        size = f"{hr.shape[-1]}x{hr.shape[-2]}"
        report.rows.append({
            "name": name, "size": size,
            "psnr_y": psnr_y(sr, hr, config.scale), "ssim_y": ssim_y(sr, hr, config.scale),
            "bicubic_psnr_y": psnr_y(bicubic, hr, config.scale), "bicubic_ssim_y": ssim_y(bicubic, hr, config.scale),
        })
        report.outputs[name] = sr
        panels.append(torch.cat([bicubic, sr, hr], dim=-1))
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / "eval.json", json.dumps(report.to_dict(), indent=2) + "\n")
        write_text_atomic(folder / "eval.md", report.markdown(title))
        save_image(stack_panels(panels), folder / "eval.png")
    return report


def stack_panels(panels: list[Tensor]) -> Tensor:
    """Panels of different sizes one above the other, on a white background."""
    width = max(p.shape[-1] for p in panels)
    rows = [torch.nn.functional.pad(p, (0, width - p.shape[-1], 0, 4), value=1.0) for p in panels]
    return torch.cat(rows, dim=-2)
