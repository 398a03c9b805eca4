"""One measurement protocol for trained checkpoints, shared by the zoo cards and ``binarize demo``.

Quality: the checkpoint's model upscales the centred ``HELD_OUT_CROP`` crops of the embedded held-out photos (their
bicubic x``scale`` downscales) with its config's DDIM sampler and seed 0; PSNR-Y and SSIM-Y (``scale`` border pixels
cropped) against the HR crops, and the same for bicubic upsampling. Cost: one network evaluation for a
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

from torch import nn

from binarize._threads import cpu_threads
from binarize.deploy.compare import PackedComparison, compare_packed, denoiser_inputs

from binarize.training.checkpoint import Checkpoint
from binarize.training.evaluate import EvalReport, evaluate, load_model, test_images

__all__ = ["COST_SIZE", "DEPLOY_SIZE", "MEASURE_THREADS", "ModelMeasurement", "measure_checkpoint", "network_cost"]

#: Output side of the network evaluation whose cost is reported (the paper's 3 x 256 x 256).
COST_SIZE = 256

#: Output side of the evaluation that compares a packed model's speed with its float model's.
DEPLOY_SIZE = 64

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
        deployment: for a binarized model measured packed, its packed size and speed against the float model
            (``None`` otherwise).
    """

    checkpoint: Checkpoint
    report: EvalReport
    cost: dict[str, Any]
    checkpoint_bytes: int
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


def measure_checkpoint(path: str | Path, *, steps: int | None = None, seed: int = 0,
                       trust_code: bool = False, packed: bool = False) -> ModelMeasurement:
    """Measure the checkpoint at ``path`` with the protocol of this module (``steps``: DDIM steps, default the
    checkpoint's config). With ``packed``, a binarized model samples on packed bits (:func:`binarize.deploy.freeze`)
    and its packed size and speed are measured against the float model (one evaluation at
    :data:`DEPLOY_SIZE`)."""
    with cpu_threads(MEASURE_THREADS):
        model, checkpoint = load_model(path, trust_code=trust_code)
        images = test_images(checkpoint.config.scale)
        cost = network_cost(model, checkpoint.config)
        deployment = None
        if packed and checkpoint.recipe is not None:
            from binarize.deploy import freeze

            float_model, model = model, freeze(model)
            deployment = compare_packed(float_model, model, denoiser_inputs(DEPLOY_SIZE))
        report = evaluate(model, checkpoint.config, images, steps=steps, seed=seed)
    return ModelMeasurement(checkpoint, report, cost, Path(path).stat().st_size, deployment)


