r"""What the denoising network predicts: ``epsilon``, ``x0``, ``residual`` or ``residual-edm``, in a registry by name.

A conditional SR diffusion model denoises a clean variable :math:`x_0` given the bicubic-upsampled low-resolution
image ``cond``. The prediction target decides what :math:`x_0` is, what the network's output is trained to match,
and how the sampler turns an output back into an estimate of :math:`x_0`:

============ ======================================= ================= ===========================================
target       clean variable :math:`x_0`              network output    estimate of :math:`x_0` from the output
============ ======================================= ================= ===========================================
``epsilon``  the HR image                            the noise         :math:`(x_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon) / \sqrt{\bar\alpha_t}`
``x0``       the HR image                            :math:`x_0`       the output
``residual`` HR minus ``cond``                       :math:`x_0`       the output (the image is ``cond`` + it)
``residual-  HR minus ``cond``                       :math:`F`         :math:`c_\text{skip} x_t + c_\text{out} F`
edm``
============ ======================================= ================= ===========================================

``epsilon`` is the paper's (SR3, BI-DiffSR). ``residual`` learns only the detail bicubic upsampling misses, and a
network whose output layer starts at zero returns exactly the bicubic image before any training
(:func:`zero_output`); it beats bicubic within minutes of CPU training, where ``epsilon`` needs days of GPU time
(reference measurements in the documentation).

``residual-edm`` is the preconditioning of Karras et al., "Elucidating the Design Space of Diffusion-Based
Generative Models" (NeurIPS 2022), written for the variance-preserving schedule: with the signal
:math:`s = \sqrt{\bar\alpha_t}`, the noise :math:`\sigma = \sqrt{1-\bar\alpha_t}` and the standard deviation
:math:`\sigma_d` of the clean variable,

.. math:: c_\text{skip} = \frac{\sigma_d^2\, s}{\sigma^2 + \sigma_d^2 s^2}, \qquad
          c_\text{out} = \frac{\sigma\,\sigma_d}{\sqrt{\sigma^2 + \sigma_d^2 s^2}}, \qquad
          \hat x_0 = c_\text{skip}\, x_t + c_\text{out}\, F(x_t, t, \text{cond}),

and the network is trained on :math:`F^\ast = (x_0 - c_\text{skip} x_t) / c_\text{out}`, a target of unit scale
at every noise level (EDM's loss weighting). At high noise :math:`\hat x_0 \approx \sigma_d F` (the network
predicts the residual, as ``residual``); at low noise :math:`\hat x_0 \approx x_t` plus a correction of the size
of the noise, so the last sampling steps cannot move a good estimate far. That matters for binary networks: their
sign activations make the output jump with small changes of :math:`x_t`, and with ``residual`` the last DDIM steps
(which return whatever the network says at almost no noise) undo part of what the earlier steps found.
:math:`\sigma_d = 0.05` is the scale of HR-minus-bicubic residuals of natural photos (0.036 at x2 and 0.055 at x4
on the embedded training photos).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from binarize._registry import Registry

__all__ = ["PREDICTION_TARGETS", "PredictionTarget", "zero_output"]


@dataclass(frozen=True)
class PredictionTarget:
    r"""One prediction target (see the module docstring).

    Attributes:
        name: the registered name.
        predicts_noise: the network predicts the noise (else it predicts :math:`x_0`).
        residual: the clean variable is the HR image minus ``cond``.
        description: one line for help texts.
        sigma_data: with a value, the EDM preconditioning with this :math:`\sigma_d` (see the module docstring);
            ``None``: the output is the noise or :math:`x_0` itself.
    """

    name: str
    predicts_noise: bool
    residual: bool
    description: str
    sigma_data: float | None = None

    def clean(self, hr: Tensor, cond: Tensor) -> Tensor:
        """The clean variable :math:`x_0` for an HR image and its condition."""
        return hr - cond if self.residual else hr

    def training_target(self, x0: Tensor, noise: Tensor, x_t: Tensor, signal: Tensor, sigma: Tensor) -> Tensor:
        r"""What the network output is trained to match at :math:`x_t` (``signal`` = :math:`\sqrt{\bar\alpha_t}`,
        ``sigma`` = :math:`\sqrt{1 - \bar\alpha_t}`)."""
        if self.sigma_data is not None:
            skip, out = self.preconditioning(signal, sigma)
            return (x0 - skip * x_t) / out
        return noise if self.predicts_noise else x0

    def predicted_x0(self, output: Tensor, x_t: Tensor, signal: Tensor, sigma: Tensor) -> Tensor:
        r"""The estimate of :math:`x_0` from the network output at :math:`x_t` (``signal`` = :math:`\sqrt{\bar\alpha_t}`,
        ``sigma`` = :math:`\sqrt{1 - \bar\alpha_t}`)."""
        if self.sigma_data is not None:
            skip, out = self.preconditioning(signal, sigma)
            return skip * x_t + out * output
        return (x_t - sigma * output) / signal if self.predicts_noise else output

    def preconditioning(self, signal: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`(c_\text{skip}, c_\text{out})` of the EDM preconditioning at these coefficients.

        Raises:
            ValueError: the target has no ``sigma_data`` (it is not preconditioned).
        """
        if self.sigma_data is None:
            raise ValueError(f"the prediction target {self.name!r} is not preconditioned (it has no sigma_data)")
        data = self.sigma_data
        spread = sigma**2 + (data * signal) ** 2
        return data**2 * signal / spread, sigma * data / spread.sqrt()

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
PREDICTION_TARGETS.register(
    "residual-edm",
    PredictionTarget(
        "residual-edm", False, True,
        "HR minus the bicubic upsampling with EDM preconditioning (low-noise steps keep x_t; steadier sampling)",
        sigma_data=0.05,
    ),
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
