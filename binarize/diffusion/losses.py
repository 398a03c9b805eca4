r"""Training and held-out losses of a conditional SR diffusion model.

Training (SR3 / BI-DiffSR): draw a timestep :math:`t` and noise :math:`\epsilon`, form
:math:`x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon` and minimise the L1 distance between the
network output and the target's training target (:mod:`binarize.diffusion.targets`):

.. math:: \mathcal L = \bigl\lVert f_\theta(x_t, t, \text{cond}) - y \bigr\rVert_1, \qquad
          y = \epsilon \ (\texttt{epsilon}), \ x_0 \ (\texttt{x0}, \texttt{residual}) \text{ or }
          F^\ast \ (\texttt{residual-edm}).

The release draws one timestep per batch; :func:`draw_timesteps` draws one per sample by default (a binarized
network with per-sample TaR / TaA handles mixed batches), or one per batch with ``per_sample=False``.

The held-out *denoising loss* evaluates the same loss at fixed timesteps with fixed noise, so it is deterministic and
comparable across models; it separates methods long before sampled images do.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from binarize.diffusion.sampler import Denoiser
from binarize.diffusion.schedule import NoiseSchedule
from binarize.diffusion.targets import PredictionTarget

__all__ = ["HELD_OUT_TIMESTEPS", "denoising_loss", "draw_timesteps", "training_loss"]

#: Timesteps of the held-out denoising loss (spread over :math:`T = 2000`; scaled for other :math:`T`).
HELD_OUT_TIMESTEPS: tuple[int, ...] = (100, 500, 1000, 1500, 1900)


def draw_timesteps(batch: int, total: int, generator: torch.Generator, *, per_sample: bool = True) -> Tensor:
    """Uniform integer timesteps in ``[0, total - 1]``: one per sample, or one shared by the batch."""
    if per_sample:
        return torch.randint(0, total, (batch,), generator=generator)
    return torch.randint(0, total, (1,), generator=generator).expand(batch).clone()


def training_loss(
    denoiser: Denoiser,
    schedule: NoiseSchedule,
    target: PredictionTarget,
    hr: Tensor,
    cond: Tensor,
    t: Tensor,
    noise: Tensor,
    *,
    teacher: Denoiser | None = None,
    teacher_weight: float = 1.0,
) -> Tensor:
    r"""The L1 loss of one batch (see the module docstring); ``t`` and ``noise`` are given, so it is deterministic.

    With a ``teacher`` (a trained network with the same target, e.g. the full-precision model a binary one is made
    from), the output is also pulled towards the teacher's output at the same :math:`x_t` (knowledge distillation,
    Hinton et al. 2015, as used for binary networks in ReActNet, Liu et al. 2020):
    :math:`\mathcal L + w \lVert f_\theta - f_\text{teacher} \rVert_1` with :math:`w` = ``teacher_weight``.
    """
    x0 = target.clean(hr, cond)
    t = t.to(hr.device)
    x_t = schedule.add_noise(x0, t, noise)
    output = denoiser(x_t, t, cond)
    signal, sigma = schedule.coefficients(t, x_t)
    loss = (output - target.training_target(x0, noise, x_t, signal, sigma)).abs().mean()
    if teacher is not None:
        with torch.no_grad():
            taught = teacher(x_t, t, cond)
        loss = loss + teacher_weight * (output - taught).abs().mean()
    return loss


@torch.no_grad()
def denoising_loss(
    denoiser: Denoiser,
    schedule: NoiseSchedule,
    target: PredictionTarget,
    hr: Tensor,
    cond: Tensor,
    *,
    timesteps: Sequence[int] | None = None,
    seed: int = 0,
) -> float:
    """The mean training loss over fixed ``timesteps`` with fixed noise (seeded by ``seed``).

    The default timesteps are :data:`HELD_OUT_TIMESTEPS`, scaled to the schedule's length.
    """
    steps = timesteps if timesteps is not None else [t * schedule.steps // 2000 for t in HELD_OUT_TIMESTEPS]
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for step in steps:
        noise = torch.randn(hr.shape, generator=generator).to(hr)
        t = torch.full((hr.shape[0],), int(step), dtype=torch.long)
        losses.append(float(training_loss(denoiser, schedule, target, hr, cond, t, noise)))
    return sum(losses) / len(losses)
