"""``zoo:resnet8``: a CIFAR-style ResNet-8 (3 x 32 x 32 input, 10 classes).

A 3x3 stem, three stages of one basic block each (16, 32 and 64 channels; stride 1, 2, 2) with a 1x1 convolution
shortcut where the shape changes, global average pooling and a linear classifier: 1 + 3 * 2 + 1 = 8 weighted
layers in the main path (plus two 1x1 shortcut convolutions).
"""

from __future__ import annotations

import torch
from torch import nn

from binarize.zoo._registry import ZooEntry, image_inputs, register

__all__ = ["BasicBlock", "ResNet8", "resnet8"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a residual connection."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet8(nn.Module):
    """ResNet-8 for 32 x 32 images.

    Args:
        num_classes: outputs of the classifier.
        in_channels: channels of the input image.
        width: channels of the first stage (doubled at each later stage).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.layer1 = BasicBlock(width, width)
        self.layer2 = BasicBlock(width, 2 * width, stride=2)
        self.layer3 = BasicBlock(2 * width, 4 * width, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def resnet8(**kwargs: int) -> ResNet8:
    """A randomly initialised :class:`ResNet8` (keyword arguments as in its constructor)."""
    return ResNet8(**kwargs)


register(
    ZooEntry(
        name="resnet8",
        description="CIFAR-style ResNet-8 (3x32x32 input, 10 classes, 16/32/64 channels)",
        factory=resnet8,
        example_inputs=image_inputs(3),
        default_size=32,
    )
)
