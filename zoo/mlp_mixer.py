"""``zoo:mlp-mixer-tiny``: a two-block MLP-Mixer whose only weighted layers are ``nn.Linear``.

The image is cut into non-overlapping patches (a reshape, no convolution), each patch is embedded by a linear
layer, and every block mixes tokens and then channels with two-layer MLPs around layer norms (Tolstikhin et al.,
"MLP-Mixer: An all-MLP Architecture for Vision", 2021).
"""

from __future__ import annotations

import torch
from torch import nn

from binarize.zoo._registry import ZooEntry, image_inputs, register

__all__ = ["MixerBlock", "MlpMixer", "mlp_mixer_tiny"]


class _Mlp(nn.Sequential):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class MixerBlock(nn.Module):
    """Token mixing (across patches) followed by channel mixing, each residual."""

    def __init__(self, tokens: int, dim: int, token_hidden: int, channel_hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mlp = _Mlp(tokens, token_hidden)
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mlp = _Mlp(dim, channel_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, tokens, dim]
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class MlpMixer(nn.Module):
    """A small MLP-Mixer classifier.

    Args:
        image_size: side of the (square) input image; must be divisible by ``patch_size``.
        patch_size: side of a patch.
        in_channels: channels of the input image.
        dim: embedding width.
        depth: number of mixer blocks.
        num_classes: outputs of the classifier.
    """

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 4,
        in_channels: int = 3,
        dim: int = 64,
        depth: int = 2,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(
                f"image_size ({image_size}) must be divisible by patch_size ({patch_size}); "
                f"choose a multiple of {patch_size}"
            )
        self.image_size, self.patch_size = image_size, patch_size
        tokens = (image_size // patch_size) ** 2
        self.embed = nn.Linear(in_channels * patch_size * patch_size, dim)
        self.blocks = nn.Sequential(*(MixerBlock(tokens, dim, dim // 2, dim * 2) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, tokens, C * p * p]`` (non-overlapping patches, row-major)."""
        b, c, h, w = x.shape
        if (h, w) != (self.image_size, self.image_size):
            raise ValueError(
                f"MlpMixer was built for {self.image_size}x{self.image_size} images, got {h}x{w}; "
                f"build it with image_size={h} (token mixing fixes the number of patches)"
            )
        p = self.patch_size
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, (h // p) * (w // p), c * p * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.embed(self.patches(x)))
        return self.head(self.norm(x).mean(dim=1))


def mlp_mixer_tiny(**kwargs: int) -> MlpMixer:
    """A randomly initialised tiny :class:`MlpMixer` (keyword arguments as in its constructor)."""
    return MlpMixer(**kwargs)


register(
    ZooEntry(
        name="mlp-mixer-tiny",
        description="two-block MLP-Mixer, Linear layers only (3x32x32 input, 4x4 patches, width 64, 10 classes)",
        factory=mlp_mixer_tiny,
        example_inputs=image_inputs(3),
        default_size=32,
        size_argument="image_size",
    )
)
