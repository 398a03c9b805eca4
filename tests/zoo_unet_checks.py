"""Checks shared by the tests of the diffusion UNets of the zoo (``zoo:bidiffsr-unet`` and ``zoo:sr3-unet``)."""

from __future__ import annotations

import torch
import torch.fx
from torch import nn

from binarize.zoo import ZOO
from binarize.zoo._parts import diffusion_inputs

__all__ = [
    "COMMON_BAD_ARGUMENTS",
    "assert_release_precision",
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


def assert_release_precision(binary: nn.Module, inputs: tuple) -> None:
    """The ``bidiffsr`` recipe's precision split, checked from measured shapes rather than names: every CP-Down and
    CP-Up branch is a binary BI-Conv with a shortcut, and a CS-Fusion is binary exactly when it runs below half
    the input's resolution (the two highest-resolution decoder levels stay in full precision)."""
    from binarize.nn import BinaryConv2d
    from binarize.plugins.bidiffsr.blocks import CPDown, CPUp, CSFusion

    blocks = [m for m in binary.modules() if isinstance(m, (CPDown, CPUp, CSFusion))]
    sizes: dict[int, int] = {}

    def note(module: nn.Module, args: tuple) -> None:
        sizes.setdefault(id(module), args[0].shape[-1])

    handles = [b.register_forward_pre_hook(note) for b in blocks]
    try:
        with torch.no_grad():
            binary(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    full = max(t.shape[-1] for t in inputs if isinstance(t, torch.Tensor) and t.dim() == 4)
    binary_fusions = 0
    for block in blocks:
        is_binary = [isinstance(b, BinaryConv2d) and b.is_binary and b.shortcut for b in block.branches]
        if not isinstance(block, CSFusion):
            assert all(is_binary), block
        elif sizes[id(block)] * 2 >= full:  # level 0 or 1
            assert not any(is_binary), (sizes[id(block)], block)
        else:
            assert all(is_binary), (sizes[id(block)], block)
            binary_fusions += 1
    assert binary_fusions, "no CS-Fusion below half resolution was binarized"
