r"""DDIM sampling for conditional SR diffusion models, with padding to a size multiple and tiling.

Deterministic DDIM (:math:`\eta = 0`) over a subsequence :math:`\tau_1 > \dots > \tau_S` of the timesteps
("leading" spacing: :math:`\tau_i = (i - 1)\,T/S`, so 1960, 1920, ..., 0 for :math:`T = 2000`, :math:`S = 50`). At
each step the network output gives :math:`\hat x_0` (clipped to :math:`[-1, 1]`) and
:math:`\hat\epsilon = (x_t - \sqrt{\bar\alpha_t}\,\hat x_0) / \sqrt{1 - \bar\alpha_t}`, and

.. math:: x_{\tau'} = \sqrt{\bar\alpha_{\tau'}}\,\hat x_0 + \sqrt{1 - \bar\alpha_{\tau'} - \sigma^2}\,\hat\epsilon
          + \sigma z, \qquad
          \sigma = \eta \sqrt{\tfrac{1 - \bar\alpha_{\tau'}}{1 - \bar\alpha_t}
          \bigl(1 - \tfrac{\bar\alpha_t}{\bar\alpha_{\tau'}}\bigr)}

with :math:`\bar\alpha = 1` after the last step, so the result is the last :math:`\hat x_0`. The sampler takes the
network as an argument and never owns it: a binarized UNet is a drop-in replacement for the full-precision one.

Reference: Song, Meng, Ermon, "Denoising Diffusion Implicit Models", ICLR 2021.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from binarize.diffusion.schedule import NoiseSchedule
from binarize.diffusion.targets import PredictionTarget

__all__ = ["SIZE_MULTIPLE", "DDIMSampler", "Denoiser", "TiledDenoiser", "ddim_timesteps", "pad_to_multiple", "tile_origins"]

#: The default size multiple images are padded to: three 2x downsamplings of a UNet.
SIZE_MULTIPLE = 8

#: ``denoiser(x_t, t, cond) -> output``: the network (or a wrapper such as :class:`TiledDenoiser`).
Denoiser = Callable[[Tensor, Tensor, Tensor], Tensor]


def ddim_timesteps(total: int, steps: int) -> list[int]:
    """The DDIM timesteps, largest first, with "leading" spacing.

    Examples:
        >>> ddim_timesteps(2000, 50)[:3], ddim_timesteps(2000, 50)[-1]
        ([1960, 1920, 1880], 0)
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= total:
        raise ValueError(f"the number of sampling steps must be an integer in [1, {total}], got {steps!r}")
    stride = total // steps
    return [stride * i for i in reversed(range(steps))]


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Reflect-pad the bottom and right of ``x`` (``(B, C, H, W)``) to multiples of ``multiple``; return the original
    size for cropping back. Sizes too small to reflect are padded by replicating the border."""
    height, width = int(x.shape[-2]), int(x.shape[-1])
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x, (height, width)


@dataclass
class TiledDenoiser:
    """Runs a denoiser on overlapping tiles and blends them, bounding memory on large images.

    Each tile is ``tile`` x ``tile`` pixels (a multiple of the network's size multiple); neighbouring tiles overlap by
    ``overlap`` pixels and their outputs are averaged with weights that fall linearly towards the tile edges, so
    seams do not show. Images no larger than one tile are passed through unchanged.

    Attributes:
        denoiser: the network.
        tile: tile side in pixels.
        overlap: overlap between neighbouring tiles in pixels (less than ``tile``).
    """

    denoiser: Denoiser
    tile: int = 256
    overlap: int = 32

    def __post_init__(self) -> None:
        if self.tile < 8 or not 0 <= self.overlap < self.tile:
            raise ValueError(f"need tile >= 8 and 0 <= overlap < tile, got tile={self.tile}, overlap={self.overlap}")

    def __call__(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        height, width = int(x_t.shape[-2]), int(x_t.shape[-1])
        if height <= self.tile and width <= self.tile:
            return self.denoiser(x_t, t, cond)
        out: Tensor | None = None
        total = x_t.new_zeros((1, 1, height, width))
        for top, left in self._origins(height, width):
            window = (..., slice(top, top + self.tile), slice(left, left + self.tile))
            piece = self.denoiser(x_t[window], t, cond[window])
            weight = self._weight(int(piece.shape[-2]), int(piece.shape[-1]), piece)
            if out is None:
                out = piece.new_zeros((*piece.shape[:-2], height, width))
            out[window] += piece * weight
            total[window] += weight
        assert out is not None
        return out / total

    def _origins(self, height: int, width: int) -> Iterator[tuple[int, int]]:
        stride = self.tile - self.overlap
        for top in tile_origins(height, self.tile, stride):
            for left in tile_origins(width, self.tile, stride):
                yield top, left

    def _weight(self, height: int, width: int, like: Tensor) -> Tensor:
        ramp_h = _ramp(height, self.overlap, like)
        ramp_w = _ramp(width, self.overlap, like)
        return (ramp_h[:, None] * ramp_w[None, :])[None, None]


def tile_origins(size: int, tile: int, stride: int) -> list[int]:
    """Where the tiles along one side of ``size`` pixels start (the last one ends at the border)."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    return [*starts, size - tile]


def _ramp(size: int, overlap: int, like: Tensor) -> Tensor:
    """1 in the middle, falling linearly to ``1 / (overlap + 1)`` over ``overlap`` pixels at each end."""
    position = torch.arange(size, device=like.device, dtype=like.dtype)
    distance = torch.minimum(position + 1, size - position)
    return torch.clamp(distance / (overlap + 1), max=1.0)


@dataclass
class DDIMSampler:
    """Deterministic (``eta = 0``) or stochastic DDIM sampling (see the module docstring).

    Attributes:
        schedule: the noise schedule the network was trained with.
        target: what the network predicts.
        steps: number of sampling steps (50 in BI-DiffSR).
        eta: 0 for deterministic DDIM, 1 for DDPM-like noise.
        clip: the range :math:`\\hat x_0` is clipped to at every step (``None``: no clipping).

    Examples:
        >>> import torch
        >>> from binarize.diffusion import PREDICTION_TARGETS, NoiseSchedule
        >>> sampler = DDIMSampler(NoiseSchedule.linear(), PREDICTION_TARGETS.get("residual"), steps=5)
        >>> cond = torch.rand(1, 3, 8, 8)
        >>> untrained = lambda x_t, t, c: torch.zeros_like(x_t)  # a residual model that predicts no detail
        >>> bool(torch.equal(sampler.sample(untrained, cond), cond))
        True
    """

    schedule: NoiseSchedule
    target: PredictionTarget
    steps: int = 50
    eta: float = 0.0
    clip: tuple[float, float] | None = (-1.0, 1.0)

    def timesteps(self) -> list[int]:
        """The timesteps visited, largest first."""
        return ddim_timesteps(self.schedule.steps, self.steps)

    @torch.no_grad()
    def sample(
        self,
        denoiser: Denoiser,
        cond: Tensor,
        *,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Tensor:
        """Sample images for the conditions ``cond`` (``(B, 3, H, W)``, bicubic-upsampled LR in ``[0, 1]``).

        Args:
            denoiser: ``denoiser(x_t, t, cond)``, called with one timestep per sample.
            cond: the conditions.
            noise: the starting noise (default: drawn with ``generator``).
            generator: random generator for the starting noise and, with ``eta > 0``, the step noise.
            progress: called with the step index after each step.

        Returns:
            The images, ``(B, 3, H, W)`` in ``[0, 1]``.
        """
        x = noise if noise is not None else torch.randn(cond.shape, generator=generator, device="cpu").to(cond)
        timesteps = self.timesteps()
        for i, step in enumerate(timesteps):
            t = torch.full((cond.shape[0],), step, dtype=torch.long, device=cond.device)
            output = denoiser(x, t, cond)
            signal, sigma = self.schedule.coefficients(t, x)
            x0 = self.target.predicted_x0(output, x, signal, sigma)
            if self.clip is not None:
                x0 = x0.clamp(*self.clip)
            epsilon = (x - signal * x0) / sigma
            bar_prev = self.schedule.alpha_bar_at(timesteps[i + 1] if i + 1 < len(timesteps) else -1)
            bar = self.schedule.alpha_bar_at(step)
            spread = self.eta * math.sqrt(max((1 - bar_prev) / (1 - bar) * (1 - bar / bar_prev), 0.0))
            x = math.sqrt(bar_prev) * x0 + math.sqrt(max(1 - bar_prev - spread**2, 0.0)) * epsilon
            if spread > 0:
                x = x + spread * torch.randn(x.shape, generator=generator, device="cpu").to(x)
            if progress is not None:
                progress(i)
        return self.target.image(x, cond)

    def upscale(
        self,
        denoiser: Denoiser,
        cond: Tensor,
        *,
        multiple: int = SIZE_MULTIPLE,
        tile: int | None = None,
        overlap: int = 32,
        generator: torch.Generator | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Tensor:
        """:meth:`sample` for any image size: ``cond`` is padded to a multiple of ``multiple`` (reflecting the
        border) and the result cropped back; with ``tile``, the network runs on overlapping tiles of that size."""
        padded, (height, width) = pad_to_multiple(cond, multiple)
        if tile is not None:
            if tile % multiple:
                raise ValueError(f"the tile size must be a multiple of {multiple}, got {tile}")
            denoiser = TiledDenoiser(denoiser, tile, overlap)
        out = self.sample(denoiser, padded, generator=generator, progress=progress)
        return out[..., :height, :width]
