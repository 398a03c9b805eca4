"""Where each candidate layer sits in a network's geometry: its resolution level and its side of the bottleneck.

The ``level`` and ``side`` selectors (see :mod:`binarize.recipe.selectors`) let a recipe say "the two
highest-resolution decoder levels" without knowing module names. Both come from one forward pass on the example
inputs (on fake tensors, shapes only, when the model allows it), recording each candidate's first call:

* **level**: :math:`\\operatorname{round}(\\operatorname{mean}_d \\log_2(S_d / s_d))` over the spatial dimensions
  :math:`d`, where :math:`s` is the spatial size of the layer's input and :math:`S` the largest spatial size among
  the network's inputs. Level 0 runs at the input's resolution, level 1 at half of it, -1 at twice it. Only layers
  whose input has spatial dimensions (``(N, C, H, W)``, or more) have a level; a linear layer on ``(N, C)`` has
  none and matches no ``level`` or ``side`` selector.
* **side**: with :math:`L` the deepest level any candidate runs at, ``"encoder"`` for layers first called before
  the first call at level :math:`L`, ``"decoder"`` for those first called after the last call at level
  :math:`L`, ``"middle"`` for the rest (the bottleneck, and everything else at level :math:`L`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from binarize.engine.graph_ops import leaves
from binarize.engine.shape_tracing import call_arguments
from binarize.recipe.selectors import Placement

__all__ = ["layer_placements"]


def layer_placements(model: nn.Module, modules: Sequence[nn.Module], example_inputs: Any) -> dict[int, Placement]:
    """The :class:`~binarize.recipe.selectors.Placement` of each of ``modules`` that runs on ``example_inputs``.

    The pass runs in eval mode without gradients, on fake tensors when the model allows it (else on real ones);
    every module's ``training`` flag is restored afterwards.
    """
    args, kwargs = call_arguments(example_inputs)
    sizes = _spatial_sizes(leaves((args, kwargs), torch.Tensor))
    if not sizes:
        return {}
    reference = max(sizes, key=math.prod)
    index_of = {id(m): i for i, m in enumerate(modules)}
    first_calls: dict[int, tuple[int, tuple[int, ...] | None]] = {}
    counter = [0]

    def note(module: nn.Module, inputs: tuple[Any, ...]) -> None:
        index = index_of[id(module)]
        if index not in first_calls:
            first_calls[index] = (counter[0], next(iter(_spatial_sizes(leaves(inputs, torch.Tensor))), None))
        counter[0] += 1

    unique = {id(m): m for m in modules}.values()
    handles = [m.register_forward_pre_hook(note) for m in unique]
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        try:
            with FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad():
                model(*args, **kwargs)
        except Exception:  # noqa: BLE001 - a model whose control flow reads data runs on real tensors
            first_calls.clear()
            counter[0] = 0
            with torch.no_grad():
                model(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in flags:
            module.training = training
    levels = {i: _level(reference, size) for i, (_, size) in first_calls.items() if size is not None}
    return _with_sides(levels, {i: position for i, (position, _) in first_calls.items()})


def _spatial_sizes(tensors: list[torch.Tensor]) -> list[tuple[int, ...]]:
    """The spatial sizes of the tensors with spatial dimensions (``(N, C, *spatial)`` with two or more), in order."""
    return [tuple(int(s) for s in t.shape[2:]) for t in tensors if t.dim() >= 4]


def _level(reference: tuple[int, ...], size: tuple[int, ...]) -> int:
    ratios = [math.log2(r / s) for r, s in zip(reference, size) if r > 0 and s > 0]
    return round(sum(ratios) / len(ratios)) if ratios else 0


def _with_sides(levels: dict[int, int], positions: dict[int, int]) -> dict[int, Placement]:
    if not levels:
        return {}
    deepest = max(levels.values())
    at_bottom = [positions[i] for i, level in levels.items() if level == deepest]
    start, end = min(at_bottom), max(at_bottom)
    placements = {}
    for index, level in levels.items():
        position = positions[index]
        side = "encoder" if position < start else "decoder" if position > end else "middle"
        placements[index] = Placement(level, side)
    return placements
