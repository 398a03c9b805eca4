"""The graph walk finds exactly what the recorded forward pass finds, or declines and leaves it to the pass."""

from __future__ import annotations

from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

import pytest

from binarize.engine import find_candidates
from binarize.engine.graph_order import graph_positions
from binarize.engine.order import _forward_order


def candidates(model: nn.Module) -> list[nn.Module]:
    return [c.module for c in find_candidates(model)[0]]


def recorded(model: nn.Module, inputs: Any) -> dict[int, tuple[int, int]]:
    """The positions of the hook-recorded pass on fake tensors (what execution_order used before the walk)."""
    with FakeTensorMode(allow_non_fake_inputs=True):
        return _forward_order(model, candidates(model), inputs)


def walked(model: nn.Module, inputs: Any) -> dict[int, tuple[int, int]] | None:
    return graph_positions(model, candidates(model), inputs)


class Residual(nn.Module):
    """Bottleneck-style block: conv-bn-relu twice, an in-place ``+=`` onto a fresh result, in-place ReLU."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.act2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        x += shortcut
        return self.act2(x)


class SmallNet(nn.Module):
    """Stem, pooling, residual blocks, squeeze-excitation gate, global pooling, two heads in a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.blocks = nn.Sequential(Residual(), Residual())
        self.gate = nn.Conv2d(8, 8, 1)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(8, 4)
        self.aux = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.blocks(self.pool(F.relu(self.stem(x))))
        x = x * torch.sigmoid(self.gate(x.mean((2, 3), keepdim=True)))
        x = self.drop(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        return {"logits": self.head(x), "aux": self.aux(x)}


class Shared(nn.Module):
    """A layer called twice, with keyword and concatenated inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(4, 4)
        self.middle = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.shared(x)
        return self.shared(input=self.middle(torch.cat([h, x], dim=1)))


class Conditioned(nn.Module):
    """An optional input that the example inputs leave out: its branch must not count as run."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 4)
        self.cond = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None, scale: float = 1.0) -> torch.Tensor:
        h = self.stem(x) * scale
        if cond is not None:
            h = h + self.cond(cond)
        return self.head(h)


class Attention(nn.Module):
    """Multi-head self-attention written out with layout changes: reshape, permute, unbind, transpose, expand,
    indexing, layer norm and ``scaled_dot_product_attention``."""

    def __init__(self, width: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.token = nn.Parameter(torch.zeros(1, 1, width))
        self.head = nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        x = torch.cat([self.token.expand(batch, -1, -1), x], dim=1)
        qkv = self.qkv(self.norm(x)).reshape(batch, length + 1, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, length + 1, width)
        x = x + self.proj(y)
        return self.head(F.layer_norm(x, (width,))[:, 0])


class GroupNormed(nn.Module):
    """Group norm as a layer and as a function, and ``reshape_as``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.GroupNorm(2, 8)
        self.gamma = nn.Parameter(torch.ones(8))
        self.head = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.group_norm(self.norm(self.conv(x)), 4, self.gamma)
        return self.head(torch.flatten(h, 1).reshape_as(torch.flatten(h, 1)))


SUPPORTED = [
    pytest.param(lambda: SmallNet(), (torch.randn(2, 3, 16, 16),), id="small-net"),
    pytest.param(lambda: Shared(), (torch.randn(2, 4),), id="shared-layer"),
    pytest.param(lambda: Conditioned(), {"x": torch.randn(2, 4)}, id="optional-input-left-out"),
    pytest.param(lambda: Conditioned(), (torch.randn(2, 4), torch.randn(2, 4), 0.5), id="optional-input-given"),
    pytest.param(lambda: timm.create_model("resnet18", num_classes=10), (torch.randn(1, 3, 32, 32),), id="resnet18"),
    pytest.param(lambda: timm.create_model("mobilenetv2_035", num_classes=10), (torch.randn(1, 3, 32, 32),),
                 id="mobilenetv2"),
    pytest.param(lambda: timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, num_classes=10),
                 (torch.randn(2, 3, 32, 32),), id="vit"),
    pytest.param(lambda: timm.create_model("convnext_atto", num_classes=10), (torch.randn(2, 3, 32, 32),),
                 id="convnext"),
    pytest.param(lambda: Attention(), (torch.randn(2, 5, 8),), id="attention-layout"),
    pytest.param(lambda: GroupNormed(), (torch.randn(2, 3, 4, 4),), id="group-norm"),
]


@pytest.mark.parametrize(("build", "inputs"), SUPPORTED)
def test_the_walk_finds_what_the_pass_records(build: Any, inputs: Any) -> None:
    model = build()
    expected = recorded(model, inputs)
    assert walked(model, inputs) == expected


def test_frozen_weights_and_train_mode_give_the_same_positions() -> None:
    model = SmallNet().train()
    for p in model.parameters():
        p.requires_grad_(False)
    inputs = torch.randn(2, 3, 16, 16)
    assert walked(model, inputs) == recorded(model, inputs)
    assert all(m.training for m in model.modules())


def test_the_model_is_left_as_it_was() -> None:
    model = SmallNet().train()
    model.blocks[0].bn1.eval()
    before = {name: m.training for name, m in model.named_modules()}
    attributes = set(vars(model))
    assert walked(model, torch.randn(2, 3, 16, 16)) is not None
    assert {name: m.training for name, m in model.named_modules()} == before
    assert set(vars(model)) == attributes


class MakesConstants(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + torch.ones(3)  # torch.fx would store the constant on the model


class NoGrad(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            h = self.a(x)
        return self.b(h)


class AliasedUpdate(nn.Module):
    """``x += y`` is traced as ``x + y``; another name for ``x`` read afterwards would see the update."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 3)
        self.c = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        kept = h
        h += self.b(x)
        return self.c(kept)


class UpdatesItsInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x += 1
        return self.fc(x)


class Rolled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.roll(x, 1, 1))


DECLINED = [
    pytest.param(MakesConstants, torch.randn(2, 3), id="tensor-made-in-forward"),
    pytest.param(NoGrad, torch.randn(2, 3), id="grad-disabled-in-forward"),
    pytest.param(AliasedUpdate, torch.randn(2, 3), id="update-seen-through-another-name"),
    pytest.param(UpdatesItsInput, torch.randn(2, 3), id="in-place-on-the-input"),
    pytest.param(Rolled, torch.randn(2, 3, 3), id="operation-not-modelled"),
    pytest.param(SmallNet, torch.randn(2, 5, 16, 16), id="wrong-channel-count"),
    pytest.param(SmallNet, torch.randn(2, 3, 16, 16, dtype=torch.float64), id="wrong-dtype"),
    pytest.param(SmallNet, torch.randn(3, 16, 16), id="unbatched"),
]


@pytest.mark.parametrize(("cls", "inputs"), DECLINED)
def test_the_walk_declines_what_it_does_not_model(cls: type[nn.Module], inputs: torch.Tensor) -> None:
    model = cls()
    attributes = set(vars(model))
    assert walked(model, inputs) is None
    assert set(vars(model)) == attributes  # no traced constant left behind


def test_hooks_make_the_walk_decline() -> None:
    model = SmallNet()
    handle = model.head.register_forward_hook(lambda module, args, output: output * 2)
    try:
        assert walked(model, torch.randn(2, 3, 16, 16)) is None
    finally:
        handle.remove()
    assert walked(model, torch.randn(2, 3, 16, 16)) is not None


def test_a_warning_while_tracing_makes_the_walk_decline() -> None:
    class Warns(SmallNet):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            import warnings

            warnings.warn("deprecated input layout", UserWarning, stacklevel=1)
            return super().forward(x)

    assert walked(Warns(), torch.randn(2, 3, 16, 16)) is None
