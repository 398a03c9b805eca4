"""``binarize demo``: the trained full-precision and BI-DiffSR zoo models on the held-out photos, side by side.

No download and no training: the checkpoints ship inside the package. Each model upscales the whole held-out
photos with :data:`~binarize.showcase.measure.DEMO_STEPS` DDIM steps (:func:`measure_checkpoint`; few steps so that
the demo runs in under a minute on two cores), the demo prints a quality table (bicubic, full precision, BI-DiffSR;
per photo and mean, with each card's 50-step numbers beside) and a cost table (parameters, operations, checkpoint
bytes), and writes ``report.md``, ``report.json`` and ``side_by_side.png`` (per photo: bicubic, each model, ground
truth, every column captioned with its method and PSNR-Y) into the output folder. Every number is compared with the
model's zoo card. The binarized models sample on packed bits (:mod:`binarize.deploy`), and the cost table gives
their packed file size and speed against the float form.
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
from binarize.showcase.figure import captioned_grid
from binarize.showcase.measure import (
    DEMO_STEPS, DEPLOY_SIZE, MEASURE_THREADS, ModelMeasurement, measure_checkpoint, protocol_text,
)
from binarize.training.evaluate import test_images

__all__ = ["CARD_TOLERANCE_DB", "DEMO_MODELS", "DemoReport", "run_demo"]

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
        """Per model: parameters, operations, checkpoint bytes and, for a binarized one, the packed deployment
        (file bytes, one evaluation's milliseconds packed and in float)."""
        table = {}
        for key, m in self.measurements.items():
            entry = {**m.cost, "checkpoint_bytes": m.checkpoint_bytes}
            if m.deployment is not None:
                entry.update(packed_bytes=m.deployment.packed_bytes, packed_ms=m.deployment.packed_ms,
                             float_ms=m.deployment.float_ms, packed_speedup=m.deployment.speedup,
                             packed_kernels=m.deployment.kernels)
            table[key] = entry
        return table

    def card_differences(self) -> dict[str, float]:
        """Per model: |mean PSNR-Y - the card's| in dB, against the card's ``demo`` block (the same protocol: whole
        photos, the demo's steps, packed); a card without that block is left out (so it does not match)."""
        return {key: abs(m.quality["psnr_y"] - self.cards[key]["demo"]["quality"]["model"]["psnr_y"])
                for key, m in self.measurements.items() if "demo" in self.cards[key]}

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
        return {"models": {key: f"zoo:{name}" for key, name in DEMO_MODELS.items()}, "protocol": self.protocol(),
                "steps": self.steps, "quality": self.quality(),
                "images": images, "cost": self.cost(), "card_difference_db": self.card_differences(),
                "matches_cards": self.matches_cards()}

    @property
    def steps(self) -> int:
        """The DDIM steps the models sampled with."""
        return next(iter(self.measurements.values())).steps

    def protocol(self) -> str:
        """How the numbers were measured, in words."""
        scale = next(iter(self.measurements.values())).checkpoint.config.scale
        return protocol_text(scale, self.steps)

    def psnr_by_image(self) -> dict[str, dict[str, float]]:
        """PSNR-Y per method (``bicubic`` and each model) and per photo."""
        table: dict[str, dict[str, float]] = {}
        for key, measurement in self.measurements.items():
            for row in measurement.report.rows:
                table.setdefault("bicubic", {})[row["name"]] = row["bicubic_psnr_y"]
                table.setdefault(key, {})[row["name"]] = row["psnr_y"]
        return table

    def quality_table(self) -> str:
        """Markdown: PSNR-Y per photo and mean, the gain over bicubic and mean SSIM-Y of bicubic and each model,
        with each card's mean at its own (50) steps beside."""
        quality, by_image = self.quality(), self.psnr_by_image()
        photos = list(by_image["bicubic"])
        sizes = {row["name"]: row["size"] for row in next(iter(self.measurements.values())).report.rows}
        head = " | ".join(f"{name} {sizes[name]}" for name in photos)
        card_steps = {card["evaluation"]["steps"] for card in self.cards.values()
                      if card.get("evaluation", {}).get("steps")}
        steps = "/".join(str(n) for n in sorted(card_steps)) or "its"
        lines = [f"| method | {head} | mean PSNR-Y | vs bicubic | mean SSIM-Y | card, {steps} steps: mean (vs bicubic) |",
                 "| --- |" + " --- |" * (len(photos) + 4)]
        for key, values in quality.items():
            gain = values["psnr_y"] - quality["bicubic"]["psnr_y"]
            label = "bicubic" if key == "bicubic" else f"{_title(key)} (`zoo:{DEMO_MODELS[key]}`)"
            cells = " | ".join(f"{by_image[key][name]:.2f}" for name in photos)
            lines.append(f"| {label} | {cells} | {values['psnr_y']:.2f} | {gain:+.2f} | {values['ssim_y']:.4f} | "
                         f"{self._card_headline(key)} |")
        return "\n".join(lines)

    def _card_headline(self, key: str) -> str:
        card = self.cards.get(key) or next((c for c in self.cards.values() if c), None)
        if not card:
            return "-"
        quality = card["quality"]
        if key == "bicubic":
            return f"{quality['bicubic']['psnr_y']:.2f}"
        gain = quality["model"]["psnr_y"] - quality["bicubic"]["psnr_y"]
        return f"{quality['model']['psnr_y']:.2f} ({gain:+.2f})"

    def cost_table(self) -> str:
        """Markdown: parameters and operations (paper convention), checkpoint bytes, and the packed deployment of
        the binarized models (file size; one evaluation packed against float, measured)."""
        lines = ["| model | params (M) | OPs (G) | binary layers | checkpoint | packed file | packed speed |",
                 "| --- | --- | --- | --- | --- | --- | --- |"]
        for key, cost in self.cost().items():
            packed, speed = "-", "-"
            if "packed_bytes" in cost:
                packed = f"{cost['packed_bytes']:,} bytes"
                speed = f"{cost['packed_ms']:.1f} ms vs {cost['float_ms']:.1f} ms float ({cost['packed_speedup']:.2f}x)"
            lines.append(f"| {_title(key)} | {cost['params_m']:.4f} | {cost['ops_g']:.4f} | {cost['binary_layers']} | "
                         f"{cost['checkpoint_bytes']:,} bytes | {packed} | {speed} |")
        size = next(iter(self.cost().values()))["size"]
        kernels = next((c["packed_kernels"] for c in self.cost().values() if "packed_kernels" in c), "")
        return "\n".join(lines) + (
            f"\n\nParameters and operations: one network evaluation for a 3 x {size} x {size} output; a sample "
            "takes one evaluation per DDIM step. Checkpoints store float16 weights, and a binarized one holds the "
            "latent float weights of its binary layers (what training needs). The binarized models sample on "
            f"packed bits here (binarize.deploy, {kernels}): the packed file holds 1 bit per binary weight and "
            f"float32 for the rest; its speed is one evaluation at {DEPLOY_SIZE} x {DEPLOY_SIZE} on "
            f"{MEASURE_THREADS} thread against the same network in float."
        )

    def markdown(self) -> str:
        match = "match" if self.matches_cards() else "DO NOT match"
        return "\n".join([
            "# binarize demo", "",
            f"Quality: {self.protocol()}. The zoo cards measure the same photos with 50 DDIM steps (last "
            "column); the demo takes fewer steps to run in under a minute on two cores.", "",
            "## Quality", "", self.quality_table(), "",
            "## Cost", "", self.cost_table(), "",
            f"The numbers {match} the zoo cards (largest difference "
            f"{max(self.card_differences().values(), default=float('nan')):.4f} dB).", "",
            "![bicubic, each model, ground truth](side_by_side.png)", "",
            "Per photo, left to right (captioned in the picture, with PSNR-Y): bicubic, "
            + ", ".join(_title(k) for k in self.measurements) + ", ground truth.", "",
        ])


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
        echo(f"upscaling the whole held-out photos with zoo:{name} ({DEMO_STEPS} DDIM steps) ...")
        measurements[key] = measure_checkpoint(path, steps=DEMO_STEPS, packed=True)
        cards[key] = card
    report = DemoReport(measurements, cards)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    report.files.append(save_image(_side_by_side(report), folder / "side_by_side.png"))
    report.files.append(write_text_atomic(folder / "report.md", report.markdown()))
    report.files.append(write_text_atomic(folder / "report.json", json.dumps(report.to_dict(), indent=2) + "\n"))
    return report


def _side_by_side(report: DemoReport) -> torch.Tensor:
    """Per held-out photo one row: bicubic, each model's result, the HR image; each captioned with its method and
    PSNR-Y."""
    scale = next(iter(report.measurements.values())).checkpoint.config.scale
    psnr = report.psnr_by_image()
    rows = []
    for name, hr, lr in test_images(scale):
        bicubic = bicubic_upscale(lr[None], scale)[0].clamp(0, 1)
        panels = [(f"{name}: bicubic, {psnr['bicubic'][name]:.2f} dB", bicubic)]
        panels += [(f"{_title(key)}, {psnr[key][name]:.2f} dB", m.report.outputs[name])
                   for key, m in report.measurements.items()]
        rows.append([*panels, (f"{name}: ground truth", hr)])
    return captioned_grid(rows)
