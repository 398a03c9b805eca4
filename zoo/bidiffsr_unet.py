"""``zoo:bidiffsr-unet``: the full-precision diffusion super-resolution UNet of BI-DiffSR.

BI-DiffSR (Chen et al., "Binarized Diffusion Model for Image Super-Resolution", NeurIPS 2024) binarizes a UNet
whose every block keeps its input and output shapes wherever it can, so that a binary convolution can carry an
identity shortcut. This module is the full-precision network with the topology of the authors' release, written
with standard torch layers only (``nn.Conv2d``, ``nn.Linear``, ``nn.GroupNorm``), so that the type-based rules of a
recipe (and the BI-DiffSR plugin's conversions) find every weighted layer:

- the network sees ``cat([cond, x_t], 1)``: the bicubically upsampled low-resolution image next to the noisy
  high-resolution image (6 channels), and the diffusion step ``t`` through a sinusoidal embedding of size ``width``
  and a two-layer MLP (``Linear(C, 4C) -> SiLU -> Linear(4C, C)``);
- a 3x3 stem, then one encoder level per entry of ``channel_mults`` with ``encoder_blocks`` residual blocks
  (channels unchanged: ``GroupNorm -> SiLU -> conv3x3``, the projected time embedding added, ``GroupNorm -> SiLU ->
  dropout -> conv3x3``, plus the input) and, after every level but the last, a downsampling that doubles the
  channels: a ``C -> C/2`` 3x3 convolution followed by ``PixelUnshuffle(2)`` (``2C`` channels at half the size);
- a middle of residual block, single-head self-attention and residual block at the lowest resolution;
- a decoder indexed by level (``decoder[i]`` runs at the channels and resolution of ``encoder[i]``, the last one
  to run is ``decoder[0]``) with ``decoder_blocks = encoder_blocks + 1`` steps per level, each a 1x1 fusion
  convolution of ``cat([h, skip], 1)`` (``2C -> C``) followed by a residual block, and between levels an upsampling
  that halves the channels: a ``C -> 2C`` 3x3 convolution followed by ``PixelShuffle(2)``;
- ``GroupNorm -> SiLU -> conv3x3`` back to three channels.

The skips are the stem output, every encoder residual block output and every downsampling output, taken back in
reverse order by the decoder; the channel multipliers must double from one level to the next (each downsampling
doubles the channels), which makes every skip match the decoder tensor it is fused with. Inputs need a height and
width divisible by ``2 ** (len(channel_mults) - 1)``. The whole network traces with ``torch.fx.symbolic_trace``. The
time embedding, the self-attention and the level containers are shared with ``zoo:sr3-unet`` (``binarize.zoo._parts``).

``zoo:bidiffsr-unet`` is the paper configuration (width 64, multipliers 1, 2, 4, 8, two encoder and three decoder
blocks per level, dropout 0.2); ``zoo:bidiffsr-unet-small`` is the same network at width 16 (for training on a
CPU); ``zoo:bidiffsr-unet-tiny`` has two levels and one encoder block per level, for fast tests. :data:`CONFIGS`
holds their keyword arguments.

Examples:
    >>> from binarize.zoo import ZOO
    >>> entry = ZOO.get("bidiffsr-unet-tiny")
    >>> model = entry.build().eval()
    >>> x_t, t, cond = entry.inputs()
    >>> x_t.shape, t, cond.shape
    (torch.Size([1, 3, 16, 16]), tensor([1234]), torch.Size([1, 3, 16, 16]))
    >>> model(x_t, t, cond).shape
    torch.Size([1, 3, 16, 16])
    >>> model.encoder[0].downsample
    Downsample(
      (conv): Conv2d(16, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
      (shuffle): PixelUnshuffle(downscale_factor=2)
    )
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.fx
from torch import Tensor, nn

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
    "CONFIGS",
    "BiDiffSRUNet",
    "DecoderLevel",
    "Downsample",
    "EncoderLevel",
    "Fusion",
    "Middle",
    "ResBlock",
    "SelfAttention",
    "SinusoidalEmbedding",
    "Upsample",
    "bidiffsr_unet",
    "bidiffsr_unet_small",
    "bidiffsr_unet_tiny",
]


class ResBlock(nn.Module):
    """A residual block that keeps the channel count, conditioned on the time embedding.

    ``h = conv1(act(norm1(x)))``, ``h = h + time_proj(temb)`` (broadcast over the pixels),
    ``h = conv2(dropout(act(norm2(h))))``, and the result is ``h + x``.

    Args:
        channels: input and output channels.
        time_dim: size of the time embedding.
        dropout: dropout probability before the second convolution.
        groups: groups of both group norms (must divide ``channels``).
    """

    def __init__(self, channels: int, time_dim: int, dropout: float = 0.0, groups: int = 16) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels)
        self.act = nn.SiLU()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.time_proj = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, channels))
        self.norm2 = nn.GroupNorm(groups, channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        """Apply the block to ``x`` (``(B, channels, H, W)``) at time embedding ``temb`` (``(B, time_dim)``)."""
        h = self.conv1(self.act(self.norm1(x)))
        h = h + self.time_proj(temb)[:, :, None, None]
        h = self.conv2(self.dropout(self.act(self.norm2(h))))
        return h + x


class Downsample(nn.Module):
    """Halve the resolution and double the channels: a ``C -> C/2`` 3x3 convolution, then ``PixelUnshuffle(2)``.

    Args:
        channels: input channels ``C`` (even); the output has ``2C``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels // 2, 3, padding=1)
        self.shuffle = nn.PixelUnshuffle(2)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, C, H, W)`` to ``(B, 2C, H/2, W/2)``."""
        return self.shuffle(self.conv(x))


class Upsample(nn.Module):
    """Double the resolution and halve the channels: a ``C -> 2C`` 3x3 convolution, then ``PixelShuffle(2)``.

    Args:
        channels: input channels ``C`` (even); the output has ``C/2``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, C, H, W)`` to ``(B, C/2, 2H, 2W)``."""
        return self.shuffle(self.conv(x))


class Fusion(nn.Module):
    """Fuse a skip into the decoder tensor: a 1x1 ``2C -> C`` convolution of ``cat([x, skip], 1)``.

    Args:
        channels: channels ``C`` of the decoder tensor, of the skip and of the output.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """Fuse ``skip`` into ``x`` (both ``(B, C, H, W)``; the decoder tensor ``x`` comes first)."""
        return self.conv(torch.cat([x, skip], dim=1))


class Middle(nn.Module):
    """The middle of the UNet: residual block, self-attention (or the identity) and residual block.

    Args:
        channels: channels of the lowest level.
        time_dim: size of the time embedding.
        dropout: dropout probability of the residual blocks.
        groups: groups of every group norm.
        attention: whether to put self-attention between the blocks (the identity otherwise).
    """

    def __init__(self, channels: int, time_dim: int, dropout: float, groups: int, attention: bool = True) -> None:
        super().__init__()
        self.block1 = ResBlock(channels, time_dim, dropout, groups)
        self.attention: nn.Module = SelfAttention(channels, groups) if attention else nn.Identity()
        self.block2 = ResBlock(channels, time_dim, dropout, groups)

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        """Apply the three parts to ``x`` at time embedding ``temb``."""
        return self.block2(self.attention(self.block1(x, temb)), temb)


class BiDiffSRUNet(nn.Module):
    """The BI-DiffSR UNet, predicting the noise in ``x_t`` given the conditioning image ``cond`` and step ``t``.

    Args:
        width: channels after the stem (``C``), also the size of the time embedding. Must be even.
        channel_mults: one entry per resolution level; level ``i`` has ``width * channel_mults[i]`` channels and runs
            at ``1 / 2**i`` of the input resolution. Each entry must be twice the one before (every downsampling
            doubles the channels), e.g. ``(1, 2, 4, 8)``.
        encoder_blocks: residual blocks per encoder level.
        decoder_blocks: fusion + residual block steps per decoder level; must be ``encoder_blocks + 1`` (one skip
            per encoder block, plus the stem or downsampling output that entered the level).
        attention: whether the middle has self-attention between its residual blocks.
        dropout: dropout probability inside every residual block (before its second convolution), in ``[0, 1)``.
        norm_groups: groups of every group norm; must divide ``width * m`` for every multiplier ``m``.
        in_channels: channels of ``cat([cond, x_t], 1)``.
        out_channels: channels of the output.

    Raises:
        ValueError: when an argument is out of range or the channel counts do not fit together.
    """

    def __init__(
        self,
        width: int = 64,
        channel_mults: Sequence[int] = (1, 2, 4, 8),
        encoder_blocks: int = 2,
        decoder_blocks: int = 3,
        attention: bool = True,
        dropout: float = 0.2,
        norm_groups: int = 16,
        in_channels: int = 6,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        channel_mults = tuple(channel_mults)
        _check_arguments(
            width, channel_mults, encoder_blocks, decoder_blocks, attention, dropout, norm_groups, in_channels,
            out_channels,
        )  # fmt: skip
        self.width = width
        self.channel_mults = channel_mults
        self.levels = len(channel_mults)
        self.encoder_blocks = encoder_blocks
        self.decoder_blocks = decoder_blocks
        channels = [width * mult for mult in channel_mults]

        self.time_embedding = SinusoidalEmbedding(width)
        self.time_mlp = time_mlp(width)

        def block(level: int) -> ResBlock:
            return ResBlock(channels[level], width, dropout, norm_groups)

        self.stem = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.encoder = nn.ModuleList(
            EncoderLevel(
                [block(i) for _ in range(encoder_blocks)],
                Downsample(channels[i]) if i < self.levels - 1 else None,
            )
            for i in range(self.levels)
        )
        self.middle = Middle(channels[-1], width, dropout, norm_groups, attention)
        self.decoder = nn.ModuleList(
            DecoderLevel(
                [block(i) for _ in range(decoder_blocks)],
                Upsample(channels[i]) if i > 0 else None,
                fusions=[Fusion(channels[i]) for _ in range(decoder_blocks)],
            )
            for i in range(self.levels)
        )
        self.out_norm = nn.GroupNorm(norm_groups, channels[0])
        self.out_act = nn.SiLU()
        self.out_conv = nn.Conv2d(channels[0], out_channels, 3, padding=1)

    @property
    def size_multiple(self) -> int:
        """The number the input height and width must be a multiple of: ``2 ** (levels - 1)``."""
        return 2 ** (self.levels - 1)

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """Predict the noise of ``x_t`` (``(B, 3, H, W)``) at steps ``t`` (``(B,)``) given ``cond`` (``(B, 3, H, W)``).

        Raises:
            ValueError: when ``H`` or ``W`` is not a multiple of :attr:`size_multiple`, or ``x_t`` and ``cond``
                differ in size (checked on real tensors only, not while tracing).
        """
        self._check_sizes(x_t, cond)
        temb = self.time_mlp(self.time_embedding(t))
        h = self.stem(torch.cat([cond, x_t], dim=1))
        skips = [h]
        for level in self.encoder:
            h = level(h, temb, skips)
        h = self.middle(h, temb)
        for level in reversed(self.decoder):  # decoder[0], at full resolution, runs last
            h = level(h, temb, skips)
        return self.out_conv(self.out_act(self.out_norm(h)))

    def _check_sizes(self, x_t: Tensor, cond: Tensor) -> None:
        """Raise ValueError for inputs the levels cannot halve evenly; skipped while tracing."""
        if torch.jit.is_tracing():
            return
        for tensor in (x_t, cond):
            if not isinstance(tensor, Tensor) or isinstance(tensor, torch.fx.Proxy) or tensor.dim() < 2:
                return
        height, width = x_t.shape[-2], x_t.shape[-1]
        if not isinstance(height, int) or not isinstance(width, int):
            return
        multiple = self.size_multiple
        if height % multiple or width % multiple:
            raise ValueError(
                f"BiDiffSRUNet with {self.levels} levels needs an input height and width that are multiples of "
                f"2 ** {self.levels - 1} = {multiple}, got {height}x{width}; pad or crop the images to a multiple "
                f"of {multiple}"
            )
        if tuple(cond.shape[-2:]) != (height, width):
            raise ValueError(
                f"x_t and cond must have the same height and width, got {height}x{width} for x_t and "
                f"{cond.shape[-2]}x{cond.shape[-1]} for cond (cond is the low-resolution image upsampled to the "
                "size of x_t)"
            )


def _check_arguments(
    width: int,
    channel_mults: tuple[int, ...],
    encoder_blocks: int,
    decoder_blocks: int,
    attention: bool,
    dropout: float,
    norm_groups: int,
    in_channels: int,
    out_channels: int,
) -> None:
    """Raise ValueError for any argument of :class:`BiDiffSRUNet` that cannot build a network."""
    positive = {
        "width": width,
        "encoder_blocks": encoder_blocks,
        "decoder_blocks": decoder_blocks,
        "norm_groups": norm_groups,
        "in_channels": in_channels,
        "out_channels": out_channels,
    }
    width_note = "it is also the size of the sinusoidal time embedding and the downsampling halves it"
    check_widths(positive, width, channel_mults, width_note)
    for previous, current in zip(channel_mults, channel_mults[1:]):
        if current != 2 * previous:
            doubling = tuple(channel_mults[0] * 2**i for i in range(len(channel_mults)))
            raise ValueError(
                f"each entry of channel_mults must be twice the one before (every downsampling doubles the "
                f"channels), got {channel_mults!r}; e.g. {doubling!r}"
            )
    if decoder_blocks != encoder_blocks + 1:
        raise ValueError(
            f"decoder_blocks must be encoder_blocks + 1 = {encoder_blocks + 1} (each decoder level takes one skip per "
            f"encoder block plus the stem or downsampling output of its level), got decoder_blocks={decoder_blocks}"
        )
    if not isinstance(attention, bool):
        raise ValueError(f"attention must be True or False, got {attention!r}")
    check_dropout_and_groups(dropout, norm_groups, (width * m for m in channel_mults))


_PAPER: dict[str, object] = {
    "width": 64,
    "channel_mults": (1, 2, 4, 8),
    "encoder_blocks": 2,
    "decoder_blocks": 3,
    "attention": True,
    "dropout": 0.2,
    "norm_groups": 16,
}

#: The keyword arguments of :class:`BiDiffSRUNet` for each registered configuration, by zoo name.
CONFIGS: dict[str, dict] = {
    "bidiffsr-unet": _PAPER,
    "bidiffsr-unet-small": {**_PAPER, "width": 16},
    "bidiffsr-unet-tiny": {
        "width": 16,
        "channel_mults": (1, 2),
        "encoder_blocks": 1,
        "decoder_blocks": 2,
        "attention": True,
        "dropout": 0.0,
        "norm_groups": 8,
    },
}


def _build(name: str, kwargs: dict[str, object]) -> BiDiffSRUNet:
    config = dict(CONFIGS[name])
    config.update(kwargs)
    return BiDiffSRUNet(**config)


def bidiffsr_unet(**kwargs: object) -> BiDiffSRUNet:
    """The paper configuration (width 64, multipliers 1, 2, 4, 8, 2/3 blocks); keyword arguments override it."""
    return _build("bidiffsr-unet", kwargs)


def bidiffsr_unet_small(**kwargs: object) -> BiDiffSRUNet:
    """The paper topology at width 16, small enough to train on a CPU; keyword arguments override it."""
    return _build("bidiffsr-unet-small", kwargs)


def bidiffsr_unet_tiny(**kwargs: object) -> BiDiffSRUNet:
    """Width 16, two levels, 1/2 blocks, 8 groups, no dropout, for fast tests; keyword arguments override it."""
    return _build("bidiffsr-unet-tiny", kwargs)


register_diffusion_unet(
    "bidiffsr-unet",
    "BI-DiffSR diffusion super-resolution UNet, full precision (x_t, t, cond; width 64, mults 1/2/4/8)",
    bidiffsr_unet,
    default_size=64,
)
register_diffusion_unet(
    "bidiffsr-unet-small",
    "BI-DiffSR UNet topology at width 16 (mults 1/2/4/8), for training on a CPU",
    bidiffsr_unet_small,
    default_size=32,
)
register_diffusion_unet(
    "bidiffsr-unet-tiny",
    "tiny BI-DiffSR UNet (width 16, two levels, 1/2 blocks per level), for fast tests",
    bidiffsr_unet_tiny,
    default_size=16,
)
