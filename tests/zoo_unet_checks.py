"""Checks shared by the tests of the diffusion UNets of the zoo (``zoo:bidiffsr-unet`` and ``zoo:sr3-unet``)."""

from __future__ import annotations

import torch
import torch.fx
from torch import nn

from binarize.zoo import ZOO
from binarize.zoo._parts import diffusion_inputs

__all__ = [
    "COMMON_BAD_ARGUMENTS",
    "assert_seeded_example_inputs",
    "assert_time_step_changes_output",
    "assert_traces_equal",
    "random_inputs",
]

#: ``(kwargs, match)`` pairs that every diffusion UNet constructor rejects with a ValueError matching ``match``.
COMMON_BAD_ARGUMENTS: list[tuple[dict, str]] = [
    ({"width": 0}, "width must be a positive integer"),
    ({"width": 2.0}, "width must be a positive integer"),
    ({"width": 9, "norm_groups": 3}, "width must be even"),
    ({"channel_mults": ()}, "channel_mults must be a non-empty"),
    ({"channel_mults": (1, 0)}, "channel_mults must be a non-empty"),
    ({"dropout": 1.0}, "dropout must be a probability"),
    ({"dropout": -0.1}, "dropout must be a probability"),
    ({"norm_groups": 0}, "norm_groups must be a positive integer"),
    ({"in_channels": 0}, "in_channels must be a positive integer"),
    ({"out_channels": -3}, "out_channels must be a positive integer"),
]


def random_inputs(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded ``(x_t, t, cond)``: two ``(batch, 3, size, size)`` images and ``batch`` steps in ``[0, 2000)``."""
    generator = torch.Generator().manual_seed(1)
    x_t = torch.randn(batch, 3, size, size, generator=generator)
    cond = torch.randn(batch, 3, size, size, generator=generator)
    return x_t, torch.randint(0, 2000, (batch,), generator=generator), cond


def assert_traces_equal(model: nn.Module, inputs: tuple) -> None:
    """Put ``model`` in eval mode and assert that its ``torch.fx`` trace gives exactly its output on ``inputs``."""
    model.eval()
    graph = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        expected = model(*inputs)
        actual = graph(*inputs)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def assert_time_step_changes_output(model: nn.Module) -> None:
    """Assert that ``model`` (in eval mode) gives different outputs at steps 3 and 900 for the same images."""
    model.eval()
    x_t, _, cond = random_inputs(1, 8)
    with torch.no_grad():
        first = model(x_t, torch.tensor([3]), cond)
        second = model(x_t, torch.tensor([900]), cond)
    assert not torch.allclose(first, second)


def assert_seeded_example_inputs(name: str) -> None:
    """Assert that zoo entry ``name`` gives the seeded ``(x_t, t, cond)`` of :func:`diffusion_inputs`."""
    entry = ZOO.get(name)
    assert entry.example_inputs is diffusion_inputs
    x_t, t, cond = entry.inputs(8)
    assert x_t.shape == cond.shape == (1, 3, 8, 8)
    assert t.dtype == torch.long and t.tolist() == [1234]
    again = diffusion_inputs(8)
    assert torch.equal(again[0], x_t) and torch.equal(again[2], cond) and not torch.equal(x_t, cond)
