"""``zoo:sr3-unet``: an SR3-style conditional diffusion UNet for image super-resolution.

SR3 (Saharia et al., "Image Super-Resolution via Iterative Refinement", 2021) refines pure noise into a
high-resolution image, step by step, with a UNet that sees the noisy image ``x_t`` next to the bicubically
upsampled low-resolution image ``cond`` (concatenated along the channels) and the diffusion step ``t``. The network
here follows that design:

- a sinusoidal embedding of ``t`` passed through a two-layer MLP (``Linear -> SiLU -> Linear``);
- a 3x3 stem, then one encoder level per entry of ``channel_mults``, each with ``res_blocks`` residual blocks
  (``GroupNorm -> SiLU -> conv``, twice, with the time embedding added in between; a 1x1 convolution on the
  shortcut where the channels change) and a strided 3x3 convolution that halves the resolution after every level
  but the last;
- a middle of residual block, self-attention, residual block;
- a decoder that mirrors the encoder with one block more per level, each block taking the concatenation of the
  features and the matching encoder skip, and a nearest-neighbour upsampling followed by a 3x3 convolution between
  levels;
- single-head self-attention after every residual block at the resolutions named in ``attention_resolutions``
  (as downsampling factors: ``(8,)`` is 1/8 of the input resolution);
- ``GroupNorm -> SiLU -> conv`` back to three channels (the predicted noise).

Every weighted layer is a standard ``nn.Conv2d``, ``nn.Linear`` or ``nn.GroupNorm``, and the whole network can be
traced with ``torch.fx.symbolic_trace``. Inputs must have a height and width divisible by ``2 ** (levels - 1)``.
``zoo:sr3-unet`` has the defaults of :class:`SR3UNet` (64 channels, multipliers 1, 2, 4, 8, two blocks per level,
attention at 1/8 resolution); ``zoo:sr3-unet-tiny`` is a small configuration for quick experiments.

Examples:
    >>> from binarize.zoo import ZOO
    >>> entry = ZOO.get("sr3-unet-tiny")
    >>> model = entry.build().eval()
    >>> model(*entry.inputs(8)).shape
    torch.Size([1, 3, 8, 8])
    >>> [len(level.attentions) for level in model.encoder]  # attention at 1/2 resolution only
    [0, 1]
    >>> model.decoder[1].upsample  # decoder[i] runs at the resolution of encoder[i]
    Upsample(
      (up): Upsample(scale_factor=2.0, mode='nearest')
      (conv): Conv2d(32, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    )
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from binarize.zoo._parts import (
    DecoderLevel,
    EncoderLevel,
    SelfAttention,
    SinusoidalEmbedding,
    check_dropout_and_groups,
    check_widths,
    register_diffusion_unet,
    time_mlp,
)

__all__ = [
    "DecoderLevel",
    "EncoderLevel",
    "ResnetBlock",
    "SR3UNet",
    "SelfAttention",
    "SinusoidalEmbedding",
    "Upsample",
    "sr3_unet",
    "sr3_unet_tiny",
]


class ResnetBlock(nn.Module):
    """Two ``GroupNorm -> SiLU -> conv3x3`` steps with the projected time embedding added in between.

    ``h = conv1(SiLU(GN(x)))``, ``h = h + Linear(SiLU(temb))``, ``h = conv2(dropout(SiLU(GN(h))))``, and the result is
    ``h + res_conv(x)``, where ``res_conv`` is a 1x1 convolution when the channels change and the identity otherwise.

    Args:
        dim_in: input channels.
        dim_out: output channels.
        time_dim: size of the time embedding.
        dropout: dropout probability before the second convolution.
        groups: groups of both group norms (must divide ``dim_in`` and ``dim_out``).
    """

    def __init__(self, dim_in: int, dim_out: int, time_dim: int, dropout: float = 0.0, groups: int = 32) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, dim_in)
        self.act1 = nn.SiLU()
        self.conv1 = nn.Conv2d(dim_in, dim_out, 3, padding=1)
        self.time_act = nn.SiLU()
        self.time_proj = nn.Linear(time_dim, dim_out)
        self.norm2 = nn.GroupNorm(groups, dim_out)
        self.act2 = nn.SiLU()
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, padding=1)
        self.res_conv: nn.Module = nn.Conv2d(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``x`` (``(B, dim_in, H, W)``) at time embedding ``temb`` (``(B, time_dim)``)."""
        h = self.conv1(self.act1(self.norm1(x)))
        h = h + self.time_proj(self.time_act(temb))[:, :, None, None]
        h = self.conv2(self.dropout(self.act2(self.norm2(h))))
        return h + self.res_conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling by two followed by a 3x3 convolution (channels unchanged).

    Args:
        channels: channels of the feature map.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Double the height and width of ``x``."""
        return self.conv(self.up(x))


class SR3UNet(nn.Module):
    """An SR3-style UNet predicting the noise in ``x_t`` given the conditioning image ``cond`` and step ``t``.

    Args:
        width: channels after the stem; the time embedding has this size too. Must be even.
        channel_mults: one entry per resolution level: level ``i`` has ``width * channel_mults[i]`` channels and runs
            at ``1 / 2**i`` of the input resolution.
        res_blocks: residual blocks per encoder level (the decoder has one more per level).
        attention_resolutions: downsampling factors (powers of two, ``2**i`` for a level ``i``) at which every
            residual block is followed by self-attention; the middle always has attention.
        dropout: dropout probability inside the residual blocks, in ``[0, 1)``.
        norm_groups: groups of every group norm; must divide ``width * m`` for every multiplier ``m``.
        in_channels: channels of ``cat([cond, x_t], 1)``.
        out_channels: channels of the output.

    Raises:
        ValueError: when an argument is out of range or the channel counts do not fit ``norm_groups``.
    """

    def __init__(
        self,
        width: int = 64,
        channel_mults: Sequence[int] = (1, 2, 4, 8),
        res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (8,),
        dropout: float = 0.2,
        norm_groups: int = 32,
        in_channels: int = 6,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        channel_mults = tuple(channel_mults)
        attention_resolutions = tuple(attention_resolutions)
        _check_arguments(
            width, channel_mults, res_blocks, attention_resolutions, dropout, norm_groups, in_channels, out_channels
        )
        self.width = width
        self.channel_mults = channel_mults
        self.res_blocks = res_blocks
        self.attention_resolutions = attention_resolutions

        time_dim = width
        self.time_embedding = SinusoidalEmbedding(width)
        self.time_mlp = time_mlp(width)

        def block(dim_in: int, dim_out: int) -> ResnetBlock:
            return ResnetBlock(dim_in, dim_out, time_dim, dropout, norm_groups)

        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        skip_channels = [width]
        channels = width
        levels = len(channel_mults)
        encoder: list[EncoderLevel] = []
        for i, mult in enumerate(channel_mults):
            blocks, attentions = [], []
            for _ in range(res_blocks):
                blocks.append(block(channels, width * mult))
                channels = width * mult
                if 2**i in attention_resolutions:
                    attentions.append(SelfAttention(channels, norm_groups))
                skip_channels.append(channels)
            downsample = None
            if i < levels - 1:
                downsample = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
                skip_channels.append(channels)
            encoder.append(EncoderLevel(blocks, downsample, attentions))
        self.encoder = nn.ModuleList(encoder)

        self.middle_block1 = block(channels, channels)
        self.middle_attention = SelfAttention(channels, norm_groups)
        self.middle_block2 = block(channels, channels)

        decoder: list[DecoderLevel] = []
        for i in reversed(range(levels)):
            blocks, attentions = [], []
            for _ in range(res_blocks + 1):
                blocks.append(block(channels + skip_channels.pop(), width * channel_mults[i]))
                channels = width * channel_mults[i]
                if 2**i in attention_resolutions:
                    attentions.append(SelfAttention(channels, norm_groups))
            decoder.append(DecoderLevel(blocks, Upsample(channels) if i > 0 else None, attentions=attentions))
        # Indexed by resolution level, like the encoder: decoder[0] runs at full resolution (and runs last).
        self.decoder = nn.ModuleList(decoder[::-1])

        self.out_norm = nn.GroupNorm(norm_groups, channels)
        self.out_act = nn.SiLU()
        self.out_conv = nn.Conv2d(channels, out_channels, 3, padding=1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Predict the noise of ``x_t`` (``(B, 3, H, W)``) at steps ``t`` (``(B,)`` long) given ``cond``.

        ``H`` and ``W`` must be divisible by ``2 ** (len(channel_mults) - 1)``.
        """
        temb = self.time_mlp(self.time_embedding(t))
        h = self.stem(torch.cat([cond, x_t], dim=1))
        skips = [h]
        for level in self.encoder:
            h = level(h, temb, skips)
        h = self.middle_block2(self.middle_attention(self.middle_block1(h, temb)), temb)
        for level in reversed(self.decoder):  # decoder[0], at full resolution, runs last
            h = level(h, temb, skips)
        return self.out_conv(self.out_act(self.out_norm(h)))


def _check_arguments(
    width: int,
    channel_mults: tuple[int, ...],
    res_blocks: int,
    attention_resolutions: tuple[int, ...],
    dropout: float,
    norm_groups: int,
    in_channels: int,
    out_channels: int,
) -> None:
    """Raise ValueError for any argument of :class:`SR3UNet` that cannot build a network."""
    positive = {
        "width": width,
        "res_blocks": res_blocks,
        "norm_groups": norm_groups,
        "in_channels": in_channels,
        "out_channels": out_channels,
    }
    check_widths(positive, width, channel_mults, "it is also the size of the sinusoidal time embedding")
    factors = [2**i for i in range(len(channel_mults))]
    for factor in attention_resolutions:
        if factor not in factors:
            raise ValueError(
                f"attention_resolutions holds downsampling factors of the levels ({factors} for "
                f"{len(channel_mults)} levels), got {factor!r}"
            )
    check_dropout_and_groups(dropout, norm_groups, (width, *(width * m for m in channel_mults)))


def sr3_unet(**kwargs: object) -> SR3UNet:
    """A randomly initialised :class:`SR3UNet` (keyword arguments as in its constructor)."""
    return SR3UNet(**kwargs)  # type: ignore[arg-type]


def sr3_unet_tiny(**kwargs: object) -> SR3UNet:
    """A small :class:`SR3UNet`: width 16, two levels, one block per level, attention at 1/2 resolution."""
    config: dict[str, object] = {
        "width": 16,
        "channel_mults": (1, 2),
        "res_blocks": 1,
        "attention_resolutions": (2,),
        "dropout": 0.0,
        "norm_groups": 8,
    }
    config.update(kwargs)
    return SR3UNet(**config)  # type: ignore[arg-type]


register_diffusion_unet(
    "sr3-unet",
    "SR3-style diffusion super-resolution UNet (x_t, t, cond; 64 channels, mults 1/2/4/8)",
    sr3_unet,
    default_size=64,
)
register_diffusion_unet(
    "sr3-unet-tiny",
    "small SR3-style diffusion UNet (width 16, two levels, one block per level)",
    sr3_unet_tiny,
    default_size=16,
)
