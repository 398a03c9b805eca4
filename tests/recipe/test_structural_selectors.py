"""Structural selectors: ``level`` (resolution relative to the network input), ``side`` (encoder / middle / decoder
of the deepest level) and ``inside`` (an enclosing module's class), on networks written in different ways."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from binarize import binarize
from binarize.api import plan
from binarize.errors import BinarizeError, RecipeError
from binarize.recipe import load_recipe
from binarize.recipe.selectors import LEVEL_PATTERN, Selector


class Hourglass(nn.Module):
    """A UNet of ``depth`` levels written with plain lists: stride-2 convolutions down, nearest + conv up."""

    def __init__(self, depth: int, width: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.downs = nn.ModuleList(nn.Conv2d(width, width, 3, stride=2, padding=1) for _ in range(depth))
        self.bottom = nn.Conv2d(width, width, 3, padding=1)
        self.ups = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(depth))
        self.merges = nn.ModuleList(nn.Conv2d(2 * width, width, 1) for _ in range(depth))
        self.head = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        skips = []
        for down in self.downs:
            skips.append(h)
            h = down(h)
        h = self.bottom(h)
        for up, merge in zip(self.ups, self.merges):
            h = merge(torch.cat([up(F.interpolate(h, scale_factor=2.0)), skips.pop()], 1))
        return self.head(h)


def _selected(model: nn.Module, select: dict, size: int = 16) -> set[str]:
    recipe = load_recipe({"name": "s", "rules": [{"select": select, "binarize": {}}]})
    decisions = plan(model, recipe, example_inputs=(torch.randn(1, 3, size, size),)).decisions
    return {d.candidate.name for d in decisions if d.action is not None}


@settings(max_examples=12, deadline=None)
@given(depth=st.integers(1, 3), size_factor=st.sampled_from([1, 2, 3]))
def test_levels_and_sides_follow_the_shapes(depth: int, size_factor: int) -> None:
    """Whatever the depth and input size: the stem and the encoder's convs before each halving are encoder layers,
    the bottom is the middle, the decoder's convs are decoder layers at the level their input runs at."""
    model = Hourglass(depth)
    size = 2**depth * 2 * size_factor
    assert _selected(model, {"side": "middle"}, size) == {"bottom"}
    assert _selected(model, {"side": "encoder", "level": 0}, size) == {"stem", "downs.0"}
    decoder = _selected(model, {"side": "decoder"}, size)
    assert decoder == {f"ups.{i}" for i in range(depth)} | {f"merges.{i}" for i in range(depth)} | {"head"}
    for i in range(depth):  # the i-th decoder step upsamples to level depth - i - 1, then convolves there
        assert _selected(model, {"level": depth - i - 1, "side": "decoder"}, size) >= {f"ups.{i}", f"merges.{i}"}
        assert _selected(model, {"level": depth - i, "type": "Conv2d"}, size) & {f"ups.{i}", f"merges.{i}"} == set()
    assert _selected(model, {"side": "decoder", "level": [0]}, size) == {"head", f"ups.{depth - 1}", f"merges.{depth - 1}"}


def test_linear_layers_have_no_level_and_inside_finds_enclosing_classes() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 1)
            self.proj = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x) + self.proj(x.mean((2, 3)))[:, :, None, None]

    model = nn.Sequential(nn.Conv2d(3, 4, 1), Block(), nn.Sequential(Block()))
    assert _selected(model, {"level": 0}) == {"0", "1.conv", "2.0.conv"}
    assert _selected(model, {"inside": "Block"}) == {"1.conv", "1.proj", "2.0.conv", "2.0.proj"}
    assert _selected(model, {"inside": "Block", "type": "Linear"}) == {"1.proj", "2.0.proj"}


def test_selectors_validate_and_rank() -> None:
    assert Selector(side="decoder", level=(0, 1)).precedence == LEVEL_PATTERN
    assert Selector(inside="CPUp").to_data() == {"inside": "CPUp"}
    assert Selector(side="decoder", level=(0, 1), optional=True).describe() == (
        "{level: [0, 1], side: decoder, optional: true}"
    )
    for select, message in [
        ({"side": "decodr"}, "'side' must be one of encoder, middle, decoder. Did you mean 'decoder'"),
        ({"level": "high"}, "'level' must be an integer or a list of integers"),
        ({"level": [0, True]}, "'level' must be an integer"),
        ({"inside": []}, "'inside' must be a class name"),
    ]:
        with pytest.raises(RecipeError, match=message):
            load_recipe({"name": "bad", "rules": [{"select": select, "keep": "float"}]})


def test_a_level_selector_without_example_inputs_says_what_to_pass() -> None:
    recipe = {"name": "s", "rules": [{"select": {"type": "Conv2d"}, "binarize": {}},
                                      {"select": {"side": "decoder", "level": 0}, "keep": "float"}]}
    with pytest.raises(BinarizeError, match=r"rules\[1\].*resolution level or encoder/decoder side.*example_inputs="):
        binarize(Hourglass(1), recipe)
