"""One measurement protocol for trained checkpoints, shared by the zoo cards and ``binarize demo``.

Quality: the checkpoint's model upscales the whole embedded held-out photos (their bicubic x``scale`` downscales)
with its config's DDIM sampler (or ``steps`` steps) and seed 0; PSNR-Y and SSIM-Y (``scale`` border pixels cropped)
against the HR photos, and the same for bicubic upsampling. The cards report the config's 50 steps;
``binarize demo`` samples with :data:`DEMO_STEPS` steps so that it runs in under a minute on two cores, and the cards
record that measurement too (their ``demo`` block), so the demo is checked against them. Cost: one network evaluation for a
``3 x COST_SIZE x COST_SIZE`` output in the paper's convention (:func:`binarize.measure_cost`), and the size of the
checkpoint file. The measurement runs on :data:`MEASURE_THREADS` CPU threads whatever the caller's setting: a binary
network turns a rounding difference into a flipped sign now and then, so a different reduction order (another
thread count) moves its PSNR by a few thousandths of a dB, while the same thread count on the same CPU reproduces
the numbers bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from binarize._threads import cpu_threads
from binarize.deploy.compare import PackedComparison, compare_packed, denoiser_inputs

from binarize.training.checkpoint import Checkpoint
from binarize.training.evaluate import EvalReport, evaluate, load_model, test_images

__all__ = [
    "COST_SIZE", "DEMO_STEPS", "DEPLOY_SIZE", "MEASURE_MEMORY", "MEASURE_THREADS", "ModelMeasurement", "measure_checkpoint",
    "network_cost", "protocol_text",
]

#: Output side of the network evaluation whose cost is reported (the paper's 3 x 256 x 256).
COST_SIZE = 256

#: Output side of the evaluation that compares a packed model's speed with its float model's.
DEPLOY_SIZE = 64

#: DDIM steps of ``binarize demo`` (and of the cards' ``demo`` block): whole photos in under a minute on two cores.
DEMO_STEPS = 2

#: Memory the sampling may use in a measurement: tiles are planned against this fixed budget (not the memory free
#: at the time), so every machine with that much memory samples the same tiles and measures the same numbers.
MEASURE_MEMORY = 2 * 2**30

#: CPU threads of every measurement (fixed, so that cards and ``binarize demo`` agree bit for bit on one CPU).
MEASURE_THREADS = 1


@dataclass
class ModelMeasurement:
    """Quality and cost of one checkpoint.

    Attributes:
        checkpoint: the checkpoint as read.
        report: per-image PSNR-Y / SSIM-Y of the model and of bicubic, with the model's outputs.
        cost: parameters and operations of one evaluation at ``COST_SIZE`` (see :func:`network_cost`).
        checkpoint_bytes: size of the checkpoint file.
        steps: the DDIM steps it sampled with.
        crop: the side of the centred crops it measured, ``None`` for whole photos.
        deployment: for a binarized model measured packed, its packed size and speed against the float model
            (``None`` otherwise).
    """

    checkpoint: Checkpoint
    report: EvalReport
    cost: dict[str, Any]
    checkpoint_bytes: int
    steps: int
    crop: int | None = None
    deployment: PackedComparison | None = None

    @property
    def quality(self) -> dict[str, float]:
        """Mean PSNR-Y / SSIM-Y of the model over the held-out photos."""
        mean = self.report.mean
        return {"psnr_y": mean["psnr_y"], "ssim_y": mean["ssim_y"]}

    @property
    def bicubic(self) -> dict[str, float]:
        """Mean PSNR-Y / SSIM-Y of bicubic upsampling over the same photos."""
        mean = self.report.mean
        return {"psnr_y": mean["bicubic_psnr_y"], "ssim_y": mean["bicubic_ssim_y"]}


def network_cost(model: nn.Module, config: Any, size: int = COST_SIZE) -> dict[str, Any]:
    """Parameters and operations of one evaluation of ``model`` (a zoo UNet) for a ``3 x size x size`` output."""
    from binarize.cost import measure_cost
    from binarize.zoo import ZOO

    report = measure_cost(model, ZOO.get(config.model.removeprefix("zoo:")).inputs(size))
    return {"size": size, "params_m": report.params_m, "ops_g": report.ops_g, "fp_params": report.fp_params,
            "binary_params": report.binary_params, "binary_layers": report.binary_layers}


def _measurement_tile(model: nn.Module, scale: int, images: list[tuple[str, Tensor, Tensor]], steps: int) -> int | None:
    """The tile side for every image of a measurement (``None``: whole images), planned once for the largest image
    against :data:`MEASURE_MEMORY`, so the plan is the same on every machine."""
    from binarize.diffusion.tiles import plan_tiles

    height, width = max((lr.shape[-2] * scale, lr.shape[-1] * scale) for _, _, lr in images)
    return plan_tiles(model, (1, 3, height, width), steps, budget=MEASURE_MEMORY, estimate=False).tile


def protocol_text(scale: int, steps: int, crop: int | None = None) -> str:
    """The measurement protocol in words (cards, the demo's report)."""
    images = "whole embedded held-out photos" if crop is None else \
        f"centred {crop}x{crop} crops of the embedded held-out photos"
    return (f"{images} (never seen in training), bicubic x{scale} downscale as input, DDIM {steps} steps, seed 0, "
            f"PSNR-Y / SSIM-Y with {scale} border pixels cropped")


def measure_checkpoint(path: str | Path, *, steps: int | None = None, seed: int = 0,
                       trust_code: bool = False, packed: bool = False, crop: int | None = None) -> ModelMeasurement:
    """Measure the checkpoint at ``path`` with the protocol of this module (``steps``: DDIM steps, default the
    checkpoint's config; ``crop``: centred crops of that side instead of the whole photos, for quick looks). With
    ``packed``, a binarized model samples on packed bits (:func:`binarize.deploy.freeze`) and its packed size and
    speed are measured against the float model (one evaluation at :data:`DEPLOY_SIZE`)."""
    with cpu_threads(MEASURE_THREADS):
        model, checkpoint = load_model(path, trust_code=trust_code)
        images = test_images(checkpoint.config.scale, crop=crop)
        cost = network_cost(model, checkpoint.config)
        deployment = None
        if packed and checkpoint.recipe is not None:
            from binarize.deploy import freeze

            float_model, model = model, freeze(model)
            deployment = compare_packed(float_model, model, denoiser_inputs(DEPLOY_SIZE))
        chosen = checkpoint.config.diffusion.sampling_steps if steps is None else steps
        report = evaluate(model, checkpoint.config, images, steps=chosen, seed=seed,
                          tile=_measurement_tile(model, checkpoint.config.scale, images, chosen))
    return ModelMeasurement(checkpoint, report, cost, Path(path).stat().st_size, chosen, crop, deployment)


