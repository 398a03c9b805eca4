"""Shared pytest configuration and fixtures.

The suite runs under pytest-xdist with two workers on a two-core machine, so every worker is limited to one
intra-op thread (more threads only contend for the same cores). Each test starts from the same random state, so a
failure seen once can be reproduced by running the test alone.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings
from torch import nn

torch.set_num_threads(1)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:  # already set, or inter-op work has started: harmless
    pass

# Hypothesis: no per-example deadline (timings on a shared 2-core machine are noisy). In CI the examples are
# derandomized, so a red CI run is reproducible locally with HYPOTHESIS_PROFILE=ci.
settings.register_profile("dev", deadline=None)
settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

SEED = 0


@pytest.fixture(autouse=True)
def _deterministic_seed() -> Iterator[None]:
    """Seed Python, NumPy and torch before every test."""
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    yield


class TinyCNN(nn.Module):
    """A small image classifier that exercises the common layer kinds.

    Layers, in execution order: ``stem`` (Conv2d 3->8, 3x3), ``body.0`` (Conv2d 8->8, 3x3, same shape as its
    input, so an identity shortcut fits), ``body.1`` (Conv2d 8->16, 3x3, stride 2), ``body.2`` (depthwise Conv2d
    16->16, groups=16), ``head`` (Linear 16->num_classes). Each conv is followed by BatchNorm2d and ReLU.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.body = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(self.stem(x))
        return self.head(torch.flatten(self.pool(x), 1))


class TinyMLP(nn.Module):
    """Three Linear layers (16 -> 32 -> 32 -> 4) with ReLU in between."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 32)
        self.fc3 = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


@pytest.fixture
def tiny_cnn() -> TinyCNN:
    """A fresh :class:`TinyCNN` (10 classes) in train mode; its input is ``tiny_image``."""
    return TinyCNN()


@pytest.fixture
def tiny_image() -> torch.Tensor:
    """A batch of two random 3x16x16 images, the input for ``tiny_cnn``."""
    return torch.randn(2, 3, 16, 16)


@pytest.fixture
def tiny_mlp() -> TinyMLP:
    """A fresh :class:`TinyMLP`; its input is a ``[batch, 16]`` tensor such as ``torch.randn(4, 16)``."""
    return TinyMLP()


@pytest.fixture
def make_tiny_cnn() -> Callable[..., TinyCNN]:
    """A factory for :class:`TinyCNN`, for tests that need several independent copies or other class counts."""
    return TinyCNN
