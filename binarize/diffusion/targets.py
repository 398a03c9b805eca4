r"""What the denoising network predicts: ``epsilon``, ``x0`` or ``residual``, in a registry by name.

A conditional SR diffusion model denoises a clean variable :math:`x_0` given the bicubic-upsampled low-resolution
image ``cond``. The prediction target decides what :math:`x_0` is, what the network's output is trained to match,
and how the sampler turns an output back into an estimate of :math:`x_0`:

============ ======================================= ================= ===========================================
target       clean variable :math:`x_0`              network output    estimate of :math:`x_0` from the output
============ ======================================= ================= ===========================================
``epsilon``  the HR image                            the noise         :math:`(x_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon) / \sqrt{\bar\alpha_t}`
``x0``       the HR image                            :math:`x_0`       the output
``residual`` HR minus ``cond``                       :math:`x_0`       the output (the image is ``cond`` + it)
============ ======================================= ================= ===========================================

``epsilon`` is the paper's (SR3, BI-DiffSR). ``residual`` learns only the detail bicubic upsampling misses, and a
network whose output layer starts at zero returns exactly the bicubic image before any training
(:func:`zero_output`); it beats bicubic within minutes of CPU training, where ``epsilon`` needs days of GPU time
(reference measurements in the documentation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from binarize._registry import Registry

__all__ = ["PREDICTION_TARGETS", "PredictionTarget", "zero_output"]


@dataclass(frozen=True)
class PredictionTarget:
    """One prediction target (see the module docstring).

    Attributes:
        name: the registered name.
        predicts_noise: the network predicts the noise (else it predicts :math:`x_0`).
        residual: the clean variable is the HR image minus ``cond``.
        description: one line for help texts.
    """

    name: str
    predicts_noise: bool
    residual: bool
    description: str

    def clean(self, hr: Tensor, cond: Tensor) -> Tensor:
        """The clean variable :math:`x_0` for an HR image and its condition."""
        return hr - cond if self.residual else hr

    def training_target(self, x0: Tensor, noise: Tensor) -> Tensor:
        """What the network output is trained to match."""
        return noise if self.predicts_noise else x0

    def predicted_x0(self, output: Tensor, x_t: Tensor, signal: Tensor, sigma: Tensor) -> Tensor:
        r"""The estimate of :math:`x_0` from the network output at :math:`x_t` (``signal`` = :math:`\sqrt{\bar\alpha_t}`,
        ``sigma`` = :math:`\sqrt{1 - \bar\alpha_t}`)."""
        return (x_t - sigma * output) / signal if self.predicts_noise else output

    def image(self, x0: Tensor, cond: Tensor) -> Tensor:
        """The image a final :math:`x_0` stands for, clamped to ``[0, 1]``."""
        return (cond + x0 if self.residual else x0).clamp(0, 1)


#: Prediction targets by name.
PREDICTION_TARGETS: Registry[PredictionTarget] = Registry("prediction target")
PREDICTION_TARGETS.register(
    "epsilon", PredictionTarget("epsilon", True, False, "predict the noise (SR3, BI-DiffSR)")
)
PREDICTION_TARGETS.register("x0", PredictionTarget("x0", False, False, "predict the clean HR image"))
PREDICTION_TARGETS.register(
    "residual",
    PredictionTarget("residual", False, True, "predict HR minus the bicubic upsampling (an untrained model returns bicubic)"),
)


def zero_output(model: nn.Module, name: str = "out_conv") -> nn.Module:
    """Set the weight and bias of the layer ``name`` to zero, so the untrained model's output is exactly 0.

    With the ``residual`` target the sampler then returns exactly the bicubic upsampling. Returns ``model``.

    Raises:
        ValueError: ``model`` has no layer ``name`` with a weight.
    """
    try:
        layer = model.get_submodule(name)
    except AttributeError:
        layer = None
    weight = getattr(layer, "weight", None)
    if not isinstance(weight, Tensor):
        raise ValueError(
            f"cannot zero the output layer: {type(model).__name__} has no layer {name!r} with a weight; name the "
            f"output layer (the zoo's UNets call it 'out_conv')"
        )
    with torch.no_grad():
        weight.zero_()
        bias = getattr(layer, "bias", None)
        if isinstance(bias, Tensor):
            bias.zero_()
    return model
