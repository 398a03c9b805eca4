"""Diffusion UNets for tests that must not rely on how a network is written.

:class:`FunctionalStyleUNet` computes the same kind of network as a BI-DiffSR super-resolution UNet (residual
blocks with a time projection, pixel-unshuffle downsampling, pixel-shuffle upsampling, encoder skips fused back by
1x1 convolutions over a channel concatenation), but it is written in a different style: its attributes have other
names (``down_convs``, ``fuse_convs``, ``enc_res``, ``dec_res``, ``ups`` instead of encoder / decoder / blocks /
fusions), the downsampling is a functional ``F.pixel_unshuffle`` call in the top-level ``forward``, the skip fusion
is a ``torch.cat`` over a tuple with ``dim=1`` followed by a 1x1 convolution called directly from ``forward``, and
the activations are functional ``F.silu`` calls. Graph rewriting (which finds layers and their neighbours in the
traced graph) must treat it exactly like a network built from named wrapper modules.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FunctionalStyleUNet"]


class _Residual(nn.Module):
    """``x + c2(silu(n2(c1(silu(n1(x))) + t(silu(emb)))))``: channels and resolution unchanged."""

    def __init__(self, channels: int, emb_dim: int, groups: int) -> None:
        super().__init__()
        self.n1 = nn.GroupNorm(groups, channels)
        self.c1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.t = nn.Linear(emb_dim, channels)
        self.n2 = nn.GroupNorm(groups, channels)
        self.c2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        y = self.c1(F.silu(self.n1(x))) + self.t(F.silu(emb)).unsqueeze(-1).unsqueeze(-1)
        return x + self.c2(F.silu(self.n2(y)))


class FunctionalStyleUNet(nn.Module):
    """A BI-DiffSR-topology UNet written without named wrapper modules; ``forward(x_t, t, cond)``.

    ``cat([cond, x_t])`` (6 channels) goes through a 3x3 stem to ``width`` channels, then ``levels`` encoder levels
    of ``blocks`` residual blocks each (level ``i`` has ``width * 2**i`` channels); between levels a 3x3 convolution
    halves the channels and ``F.pixel_unshuffle(., 2)`` halves the resolution (so the channels double). A residual
    block forms the middle. The decoder runs the levels in reverse with ``blocks + 1`` steps each: a 1x1 convolution
    over ``torch.cat((h, skip), dim=1)`` (``2C -> C``) and a residual block; between levels a 3x3 convolution
    doubles the channels and ``nn.PixelShuffle(2)`` doubles the resolution (so the channels halve). Skips are saved
    after the stem, after every encoder block and after every downsampling. The output is ``GroupNorm -> SiLU ->
    conv3x3`` to three channels. The time step ``t`` (``(B,)`` long) is embedded with sines and cosines and a
    two-layer MLP to ``width`` values, which every residual block projects and adds after its first convolution.

    Args:
        width: channels of the first level (even, divisible by ``groups``).
        levels: resolution levels (height and width of the input must be divisible by ``2 ** (levels - 1)``).
        blocks: residual blocks per encoder level.
        groups: groups of every group norm.
    """

    def __init__(self, width: int = 16, levels: int = 2, blocks: int = 1, groups: int = 8) -> None:
        super().__init__()
        if width < 2 or width % 2 or width % groups:
            raise ValueError(f"width must be even and divisible by groups={groups}, got {width}")
        if levels < 1 or blocks < 1:
            raise ValueError(f"levels and blocks must be at least 1, got levels={levels}, blocks={blocks}")
        self.levels = levels
        self.blocks = blocks
        half = width // 2
        self.register_buffer(
            "freqs", torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(10000.0) / half)), persistent=False
        )
        self.emb_in = nn.Linear(width, 4 * width)
        self.emb_out = nn.Linear(4 * width, width)
        self.stem = nn.Conv2d(6, width, 3, padding=1)
        dims = [width * 2**i for i in range(levels)]
        self.enc_res = nn.ModuleList(_Residual(dims[i], width, groups) for i in range(levels) for _ in range(blocks))
        self.down_convs = nn.ModuleList(nn.Conv2d(dims[i], dims[i] // 2, 3, padding=1) for i in range(levels - 1))
        self.mid = _Residual(dims[-1], width, groups)
        self.fuse_convs = nn.ModuleList(
            nn.Conv2d(2 * dims[i], dims[i], 1) for i in reversed(range(levels)) for _ in range(blocks + 1)
        )
        self.dec_res = nn.ModuleList(
            _Residual(dims[i], width, groups) for i in reversed(range(levels)) for _ in range(blocks + 1)
        )
        self.ups = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dims[i], 2 * dims[i], 3, padding=1), nn.PixelShuffle(2))
            for i in reversed(range(1, levels))
        )
        self.head_norm = nn.GroupNorm(groups, width)
        self.head = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The prediction for noisy images ``x_t`` at steps ``t`` conditioned on ``cond`` (same shape as ``x_t``)."""
        angles = t.float().unsqueeze(1) * self.freqs.unsqueeze(0)
        emb = self.emb_out(F.silu(self.emb_in(torch.cat((angles.sin(), angles.cos()), dim=1))))

        h = self.stem(torch.cat((cond, x_t), dim=1))
        saved = [h]
        k = 0
        for i in range(self.levels):
            for _ in range(self.blocks):
                h = self.enc_res[k](h, emb)
                saved.append(h)
                k += 1
            if i < self.levels - 1:
                h = F.pixel_unshuffle(self.down_convs[i](h), 2)
                saved.append(h)

        h = self.mid(h, emb)

        k = 0
        for i in range(self.levels):
            for _ in range(self.blocks + 1):
                skip = saved.pop()
                h = self.fuse_convs[k](torch.cat((h, skip), dim=1))
                h = self.dec_res[k](h, emb)
                k += 1
            if i < self.levels - 1:
                h = self.ups[i](h)

        return self.head(F.silu(self.head_norm(h)))
