"""Parts shared by the diffusion UNets of the zoo (``zoo:bidiffsr-unet`` and ``zoo:sr3-unet``).

Both networks predict the noise of ``x_t`` at diffusion step ``t`` given a conditioning image ``cond``, embed ``t``
with sines and cosines and a two-layer MLP, attend over the pixels with single-head self-attention, and keep the
modules of each resolution level in a container that runs them while pushing and popping the skips. This module
holds those pieces once, together with the argument checks the two constructors have in common and the example
inputs of their zoo entries. Every part is a standard ``nn.Module`` built from ``nn.Conv2d``, ``nn.Linear`` and
``nn.GroupNorm`` layers, and none of them reads a tensor shape into Python numbers, so the networks trace with
``torch.fx.symbolic_trace``.

Examples:
    >>> import torch
    >>> from binarize.zoo._parts import SelfAttention, SinusoidalEmbedding, diffusion_inputs
    >>> SinusoidalEmbedding(8)(torch.tensor([0, 5])).shape
    torch.Size([2, 8])
    >>> SelfAttention(16, groups=8)(torch.randn(2, 16, 3, 5)).shape
    torch.Size([2, 16, 3, 5])
    >>> x_t, t, cond = diffusion_inputs(8)
    >>> x_t.shape, t, cond.shape
    (torch.Size([1, 3, 8, 8]), tensor([1234]), torch.Size([1, 3, 8, 8]))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from binarize.zoo._registry import ZooEntry, register

__all__ = [
    "DecoderLevel",
    "EncoderLevel",
    "SelfAttention",
    "SinusoidalEmbedding",
    "check_dropout_and_groups",
    "check_widths",
    "diffusion_inputs",
    "is_positive_int",
    "register_diffusion_unet",
    "time_mlp",
]


def is_positive_int(value: object) -> bool:
    """Whether ``value`` is an ``int`` greater than zero (``True`` and ``False`` do not count as integers)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class SinusoidalEmbedding(nn.Module):
    """The sinusoidal embedding of diffusion steps: ``dim // 2`` sines followed by as many cosines.

    Step ``t`` at frequency ``k`` (``k = 0 .. dim // 2 - 1``) gives ``sin(t * f_k)`` and ``cos(t * f_k)`` with
    ``f_k = exp(-ln(10000) * k / (dim // 2))``. The module has no parameters; the frequencies are a non-persistent
    buffer (they follow ``.to()`` but are not saved in the state dict).

    Args:
        dim: size of the embedding; even and at least 2.

    Raises:
        ValueError: when ``dim`` is not an even integer >= 2.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if not is_positive_int(dim) or dim < 2 or dim % 2:
            raise ValueError(f"the time embedding size must be an even integer >= 2, got {dim!r}")
        self.dim = dim
        half = dim // 2
        frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("frequencies", frequencies, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        """Embed the steps ``t`` (``(B,)``, usually integers) as a ``(B, dim)`` float tensor."""
        angles = t[:, None] * self.frequencies[None, :]  # promotes to the buffer's dtype (no traced constant)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def time_mlp(width: int) -> nn.Sequential:
    """The MLP on the sinusoidal step embedding: ``Linear(width, 4 width) -> SiLU -> Linear(4 width, width)``."""
    return nn.Sequential(nn.Linear(width, 4 * width), nn.SiLU(), nn.Linear(4 * width, width))


class SelfAttention(nn.Module):
    """Single-head self-attention over the pixels of a feature map, with a residual connection.

    The input is group-normalised (``norm``), a bias-free 1x1 convolution (``qkv``) gives the queries, keys and values
    (split along the channels), the attention weights are ``softmax(q^T k / sqrt(C))`` over the keys, and a 1x1
    convolution (``proj``) projects the attended values before they are added to the input. The shape of the input
    is never read into Python numbers, so the module traces with ``torch.fx``.

    Args:
        channels: channels ``C`` of the feature map.
        groups: groups of the group norm (must divide ``channels``).
    """

    def __init__(self, channels: int, groups: int = 32) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.proj = nn.Conv2d(channels, channels, 1)
        self.scale = channels**-0.5

    def forward(self, x: Tensor) -> Tensor:
        """Attend over the ``H * W`` positions of ``x`` (``(B, C, H, W)``)."""
        q, k, v = torch.chunk(self.qkv(self.norm(x)).flatten(2), 3, dim=1)  # each (B, C, H*W)
        weights = torch.softmax(torch.bmm(q.transpose(1, 2), k) * self.scale, dim=-1)  # (B, query, key)
        attended = torch.bmm(v, weights.transpose(1, 2))  # (B, C, H*W)
        return x + self.proj(attended.reshape(x.shape))


def _attention_list(attentions: Sequence[nn.Module] | None, steps: int) -> nn.ModuleList | None:
    """``attentions`` as a ``ModuleList`` (None stays None); it must hold one module per step or none."""
    if attentions is None:
        return None
    if len(attentions) not in (0, steps):
        raise ValueError(f"a level needs one attention per block ({steps}) or none, got {len(attentions)}")
    return nn.ModuleList(attentions)


class EncoderLevel(nn.Module):
    """One encoder level of a UNet: residual blocks (each followed by self-attention, if any), then the downsampling.

    ``forward(h, temb, skips)`` runs ``blocks[j]`` (then ``attentions[j]`` where the level has attention) for every
    ``j``, appending each result to ``skips``, then the downsampling, whose output is appended too.

    Args:
        blocks: the residual blocks, each called as ``block(h, temb)``.
        downsample: the downsampling to the next level, or None at the lowest resolution.
        attentions: one self-attention per block, or an empty sequence for none (a ``ModuleList`` attribute either
            way); None for a network whose levels have no ``attentions`` submodule.

    Raises:
        ValueError: when ``attentions`` is neither empty nor as long as ``blocks``.
    """

    def __init__(
        self, blocks: Sequence[nn.Module], downsample: nn.Module | None, attentions: Sequence[nn.Module] | None = None
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attentions: nn.ModuleList | None = _attention_list(attentions, len(blocks))
        self.downsample = downsample

    def forward(self, h: Tensor, temb: Tensor, skips: list[Tensor]) -> Tensor:
        """Run the level on ``h`` at time embedding ``temb``, appending its skips to ``skips``; returns the output."""
        for j, block in enumerate(self.blocks):
            h = block(h, temb)
            if self.attentions:
                h = self.attentions[j](h)
            skips.append(h)
        if self.downsample is not None:
            h = self.downsample(h)
            skips.append(h)
        return h


class DecoderLevel(nn.Module):
    """One decoder level of a UNet: steps that each fuse a skip and run a residual block, then the upsampling.

    ``forward(h, temb, skips)`` pops a skip for every step ``j``, merges it into ``h`` with ``fusions[j](h, skip)``
    (or, without fusions, ``torch.cat([h, skip], 1)``, which ``blocks[j]`` then takes whole), runs ``blocks[j]``
    (then ``attentions[j]`` where the level has attention) and finally the upsampling.

    Args:
        blocks: the residual blocks, one per step, each called as ``block(h, temb)``.
        upsample: the upsampling to the previous level, or None at full resolution.
        fusions: the modules merging the skip into ``h``, one per step; None to concatenate them instead.
        attentions: one self-attention per block, or an empty sequence for none (a ``ModuleList`` attribute either
            way); None for a network whose levels have no ``attentions`` submodule.

    Raises:
        ValueError: when ``fusions`` is not as long as ``blocks``, or ``attentions`` is neither empty nor as long.
    """

    def __init__(
        self,
        blocks: Sequence[nn.Module],
        upsample: nn.Module | None,
        fusions: Sequence[nn.Module] | None = None,
        attentions: Sequence[nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if fusions is not None and len(fusions) != len(blocks):
            raise ValueError(f"a level needs one fusion per block ({len(blocks)}), got {len(fusions)}")
        self.fusions: nn.ModuleList | None = None if fusions is None else nn.ModuleList(fusions)
        self.blocks = nn.ModuleList(blocks)
        self.attentions: nn.ModuleList | None = _attention_list(attentions, len(blocks))
        self.upsample = upsample

    def forward(self, h: Tensor, temb: Tensor, skips: list[Tensor]) -> Tensor:
        """Run the level on ``h`` at time embedding ``temb``, popping its skips from ``skips``; returns the output."""
        for j, block in enumerate(self.blocks):
            skip = skips.pop()
            merged = torch.cat([h, skip], dim=1) if self.fusions is None else self.fusions[j](h, skip)
            h = block(merged, temb)
            if self.attentions:
                h = self.attentions[j](h)
        if self.upsample is not None:
            h = self.upsample(h)
        return h


def check_widths(positive: Mapping[str, object], width: int, channel_mults: tuple[int, ...], width_note: str) -> None:
    """Raise ValueError unless the sizes of a UNet fit: positive integers, an even width and positive multipliers.

    Args:
        positive: the arguments that must be positive integers, by name (``width`` among them).
        width: channels after the stem, also the size of the time embedding.
        channel_mults: the channel multiplier of each level.
        width_note: why the width must be even, for the message.

    Raises:
        ValueError: naming the first argument out of range.
    """
    for name, value in positive.items():
        if not is_positive_int(value):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if width % 2:
        raise ValueError(f"width must be even ({width_note}), got {width}")
    if not channel_mults or not all(is_positive_int(m) for m in channel_mults):
        raise ValueError(f"channel_mults must be a non-empty sequence of positive integers, got {channel_mults!r}")


def check_dropout_and_groups(dropout: float, norm_groups: int, channel_counts: Iterable[int]) -> None:
    """Raise ValueError unless ``dropout`` is in ``[0, 1)`` and ``norm_groups`` divides every channel count.

    Args:
        dropout: dropout probability of the residual blocks.
        norm_groups: groups of every group norm.
        channel_counts: the channel counts of the feature maps that are group-normalised.

    Raises:
        ValueError: naming the argument out of range (and the first channel count not divisible).
    """
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
    for channels in sorted(set(channel_counts)):
        if channels % norm_groups:
            raise ValueError(
                f"norm_groups={norm_groups} must divide every channel count (width * each of channel_mults), "
                f"but not {channels}; choose a width that is a multiple of {norm_groups} or fewer groups"
            )


def diffusion_inputs(size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Example ``(x_t, t, cond)``: two seeded ``(1, 3, size, size)`` images and the step ``tensor([1234])``."""
    generator = torch.Generator().manual_seed(0)
    x_t = torch.randn(1, 3, size, size, generator=generator)
    cond = torch.randn(1, 3, size, size, generator=generator)
    return x_t, torch.tensor([1234]), cond


def register_diffusion_unet(name: str, description: str, factory: Callable[..., nn.Module], default_size: int) -> None:
    """Register the zoo entry ``name`` of a diffusion UNet taking ``(x_t, t, cond)`` (:func:`diffusion_inputs`).

    Args:
        name: the zoo name.
        description: one line describing the network.
        factory: builds the network; keyword arguments override its configuration.
        default_size: height and width of the example images.
    """
    register(ZooEntry(name, description, factory, example_inputs=diffusion_inputs, default_size=default_size))
