"""``binarize demo``: the trained full-precision and BI-DiffSR zoo models on the held-out photos, side by side.

No download and no training: both checkpoints ship inside the package. Each model upscales the held-out photos
(:func:`measure_checkpoint`), the demo prints a quality table (bicubic, full precision, BI-DiffSR) and a cost table
(parameters, operations, checkpoint bytes), and writes ``report.md``, ``report.json`` and ``side_by_side.png``
(per photo: bicubic, each model, ground truth) into the output folder. Every number is compared with
the model's zoo card.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from binarize._files import write_text_atomic
from binarize.data import bicubic_upscale, save_image
from binarize.errors import BinarizeError
from binarize.showcase.measure import ModelMeasurement, measure_checkpoint
from binarize.training.evaluate import stack_panels, test_images

__all__ = ["CARD_TOLERANCE_DB", "DEMO_MODELS", "DemoReport", "packed_bytes", "run_demo"]

#: The demo's models: its report key and the trained zoo model (BI-DiffSR trained from random weights, as in the
#: paper, and from the trained full-precision model).
DEMO_MODELS: dict[str, str] = {
    "fp": "fp-small-x2", "bidiffsr": "bidiffsr-small-x2", "bidiffsr_fp_init": "bidiffsr-small-x2-fp-init",
}

#: Largest PSNR-Y difference (dB) from the card that still counts as the card's number (other CPUs round
#: differently).
CARD_TOLERANCE_DB = 0.01


@dataclass
class DemoReport:
    """What ``binarize demo`` measured.

    Attributes:
        measurements: per demo key (``fp``, ``bidiffsr``), the model's measurement.
        cards: per demo key, the zoo card's data.
        files: the files written.
    """

    measurements: dict[str, ModelMeasurement]
    cards: dict[str, dict[str, Any]]
    files: list[Path] = field(default_factory=list)

    def quality(self) -> dict[str, dict[str, float]]:
        """Mean PSNR-Y / SSIM-Y over the held-out photos: ``bicubic`` and each model."""
        first = next(iter(self.measurements.values()))
        return {"bicubic": first.bicubic, **{key: m.quality for key, m in self.measurements.items()}}

    def cost(self) -> dict[str, dict[str, Any]]:
        """Per model: parameters, operations and checkpoint bytes."""
        return {key: {**m.cost, "checkpoint_bytes": m.checkpoint_bytes} for key, m in self.measurements.items()}

    def card_differences(self) -> dict[str, float]:
        """Per model: |mean PSNR-Y - the card's| in dB."""
        return {key: abs(m.quality["psnr_y"] - self.cards[key]["quality"]["model"]["psnr_y"])
                for key, m in self.measurements.items() if self.cards[key]}

    def matches_cards(self) -> bool:
        """Whether every model's mean PSNR-Y is its card's (within :data:`CARD_TOLERANCE_DB`)."""
        differences = self.card_differences()
        return len(differences) == len(self.measurements) and max(differences.values()) <= CARD_TOLERANCE_DB

    def to_dict(self) -> dict[str, Any]:
        images: dict[str, dict[str, Any]] = {}
        for key, measurement in self.measurements.items():
            for row in measurement.report.rows:
                entry = images.setdefault(row["name"], {"size": row["size"], "bicubic": {
                    "psnr_y": row["bicubic_psnr_y"], "ssim_y": row["bicubic_ssim_y"]}})
                entry[key] = {"psnr_y": row["psnr_y"], "ssim_y": row["ssim_y"]}
        return {"models": {key: f"zoo:{name}" for key, name in DEMO_MODELS.items()}, "quality": self.quality(),
                "images": images, "cost": self.cost(), "card_difference_db": self.card_differences(),
                "matches_cards": self.matches_cards()}

    def quality_table(self) -> str:
        """Markdown: mean PSNR-Y / SSIM-Y of bicubic and each model, and the gain over bicubic."""
        quality = self.quality()
        lines = ["| method | PSNR-Y (dB) | vs bicubic | SSIM-Y |", "| --- | --- | --- | --- |"]
        for key, values in quality.items():
            gain = values["psnr_y"] - quality["bicubic"]["psnr_y"]
            label = "bicubic" if key == "bicubic" else f"{_title(key)} (`zoo:{DEMO_MODELS[key]}`)"
            lines.append(f"| {label} | {values['psnr_y']:.2f} | {gain:+.2f} | {values['ssim_y']:.4f} |")
        return "\n".join(lines)

    def cost_table(self) -> str:
        """Markdown: parameters and operations (paper convention), checkpoint bytes and the packed estimate."""
        lines = ["| model | params (M) | OPs (G) | binary layers | checkpoint | packed, estimated |",
                 "| --- | --- | --- | --- | --- | --- |"]
        for key, cost in self.cost().items():
            packed = f"{packed_bytes(cost):,.0f} bytes" if cost["binary_params"] else "-"
            lines.append(f"| {_title(key)} | {cost['params_m']:.4f} | {cost['ops_g']:.4f} | {cost['binary_layers']} | "
                         f"{cost['checkpoint_bytes']:,} bytes | {packed} |")
        size = next(iter(self.cost().values()))["size"]
        return "\n".join(lines) + (
            f"\n\nOne network evaluation for a 3 x {size} x {size} output; a sample takes one evaluation per DDIM "
            "step. Checkpoints store float16 weights, and a binarized one holds the latent float weights of its "
            "binary layers (what training needs). Packed for inference (1 bit per binary weight, float16 for the "
            "full-precision parameters) a binarized model would take the estimated bytes; binarize has no packed "
            "export yet."
        )

    def markdown(self) -> str:
        match = "match" if self.matches_cards() else "DO NOT match"
        return "\n".join([
            "# binarize demo", "",
            "Held-out photos (never seen in training), x2 super-resolution with DDIM sampling.", "",
            "## Quality", "", self.quality_table(), "",
            "## Cost", "", self.cost_table(), "",
            f"The numbers {match} the zoo cards (largest difference "
            f"{max(self.card_differences().values(), default=float('nan')):.4f} dB).", "",
            "![bicubic, each model, ground truth](side_by_side.png)", "",
            "Per photo, left to right: bicubic, " + ", ".join(_title(k) for k in self.measurements)
            + ", ground truth.", "",
        ])


def packed_bytes(cost: dict[str, Any]) -> float:
    """Bytes of a bit-packed model: one bit per binary weight, two bytes (float16) per full-precision parameter."""
    return cost["binary_params"] / 8 + 2 * cost["fp_params"]


def _title(key: str) -> str:
    return {"fp": "full precision", "bidiffsr": "BI-DiffSR", "bidiffsr_fp_init": "BI-DiffSR, from the FP model"}.get(
        key, key)


def _model_file(name: str) -> tuple[Path, dict[str, Any]]:
    from binarize.zoo import TRAINED

    if name not in TRAINED:
        raise BinarizeError(
            f"the trained zoo model {name!r} is not installed (it ships in binarize/zoo/checkpoints); reinstall "
            f"binarize, or train and publish it: binarize train {name} && binarize publish "
            f"runs/{name}/checkpoints/<last>.safetensors"
        )
    entry = TRAINED.get(name)
    return entry.checkpoint, entry.card()


def run_demo(out: str | Path = "demo_out", *, echo: Callable[[str], None] = print) -> DemoReport:
    """Measure the demo's zoo models, write the report and the side-by-side image into ``out``, and return it."""
    measurements, cards = {}, {}
    for key, name in DEMO_MODELS.items():
        path, card = _model_file(name)
        echo(f"upscaling the held-out photos with zoo:{name} ...")
        measurements[key] = measure_checkpoint(path)
        cards[key] = card
    report = DemoReport(measurements, cards)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    report.files.append(save_image(_side_by_side(report), folder / "side_by_side.png"))
    report.files.append(write_text_atomic(folder / "report.md", report.markdown()))
    report.files.append(write_text_atomic(folder / "report.json", json.dumps(report.to_dict(), indent=2) + "\n"))
    return report


def _side_by_side(report: DemoReport) -> torch.Tensor:
    """Per held-out photo one row: bicubic, each model's result, the HR image."""
    scale = next(iter(report.measurements.values())).checkpoint.config.scale
    rows = []
    for name, hr, lr in test_images(scale):
        bicubic = bicubic_upscale(lr[None], scale)[0].clamp(0, 1)
        outputs = [m.report.outputs[name] for m in report.measurements.values()]
        rows.append(torch.cat([bicubic, *outputs, hr], dim=-1))
    return stack_panels(rows)
