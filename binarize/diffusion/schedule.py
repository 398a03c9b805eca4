r"""The noise schedule of a conditional DDPM (SR3 / BI-DiffSR style).

With betas :math:`\beta_1 \dots \beta_T`, :math:`\alpha_t = 1 - \beta_t` and
:math:`\bar\alpha_t = \prod_{s \le t} \alpha_s`, the forward process draws

.. math:: x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon, \qquad \epsilon \sim \mathcal N(0, I)

for the integer timestep :math:`t \in \{0, \dots, T - 1\}` (0-based: index :math:`t` uses :math:`\bar\alpha_{t+1}`
of the 1-based notation). BI-DiffSR and SR3 use linear betas from :math:`10^{-6}` to :math:`10^{-2}` over
:math:`T = 2000` steps, images in :math:`[0, 1]` without rescaling.

Reference: Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020; Saharia et al., "Image
Super-Resolution via Iterative Refinement" (SR3), 2021.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["NoiseSchedule"]


@dataclass(frozen=True)
class NoiseSchedule:
    """A discrete noise schedule: ``alpha_bar[t]`` for ``t = 0 .. T - 1`` (float64, on the CPU).

    Build one with :meth:`linear`. ``alpha_bar`` decreases from almost 1 (``t = 0``, nearly clean) towards 0.

    Examples:
        >>> schedule = NoiseSchedule.linear()
        >>> schedule.steps, round(float(schedule.alpha_bar[0]), 6), round(float(schedule.alpha_bar[-1]), 5)
        (2000, 0.999999, 4e-05)
    """

    alpha_bar: Tensor
    beta_start: float
    beta_end: float

    @classmethod
    def linear(cls, steps: int = 2000, beta_start: float = 1e-6, beta_end: float = 1e-2) -> NoiseSchedule:
        """Linear betas from ``beta_start`` to ``beta_end`` over ``steps`` timesteps.

        Raises:
            ValueError: for fewer than 2 steps, or betas outside ``0 < beta_start <= beta_end < 1``.
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
            raise ValueError(f"a schedule needs an integer number of steps >= 2, got {steps!r}")
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(
                f"betas must satisfy 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}"
            )
        betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
        return cls(torch.cumprod(1 - betas, dim=0), float(beta_start), float(beta_end))

    @property
    def steps(self) -> int:
        """The number of timesteps :math:`T`."""
        return int(self.alpha_bar.shape[0])

    def coefficients(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`\sqrt{\bar\alpha_t}` and :math:`\sqrt{1 - \bar\alpha_t}` per sample, shaped to broadcast with ``like``.

        Raises:
            TypeError: ``t`` is not an integer tensor.
            ValueError: a timestep outside ``[0, T - 1]``.
        """
        if t.dtype.is_floating_point or t.dtype == torch.bool:
            raise TypeError(f"timesteps must be an integer tensor, got {t.dtype}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.steps):
            raise ValueError(f"timesteps must lie in [0, {self.steps - 1}], got min {int(t.min())}, max {int(t.max())}")
        bar = self.alpha_bar[t.cpu()].to(device=like.device, dtype=like.dtype)
        shape = (-1,) + (1,) * (like.dim() - 1)
        return bar.sqrt().view(shape), (1 - bar).sqrt().view(shape)

    def add_noise(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        r""":math:`x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon` (one timestep per sample)."""
        signal, sigma = self.coefficients(t, x0)
        return signal * x0 + sigma * noise

    def alpha_bar_at(self, t: int) -> float:
        r""":math:`\bar\alpha_t` of one timestep; ``t = -1`` is the clean end, :math:`\bar\alpha = 1`."""
        return 1.0 if t < 0 else float(self.alpha_bar[t])
