"""``verify=``: run example inputs through a model before and after conversion and compare the outputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["compare_outputs", "run_model"]


def _call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def run_model(model: nn.Module, inputs: Any) -> list[torch.Tensor]:
    """The tensors ``model`` returns for ``inputs`` (eval mode, no gradients; training flags restored)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            output = _call(model, inputs)
    finally:
        for module, training in flags:
            module.training = training
    return _tensors(output)


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value.detach().clone()]
    if isinstance(value, Mapping):
        return [t for key in value for t in _tensors(value[key])]
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [t for item in value for t in _tensors(item)]
    return []


def compare_outputs(
    before: list[torch.Tensor], after: list[torch.Tensor], graph_replaced: list[dict[str, Any]], structure_only: bool
) -> dict[str, Any]:
    """The verification record: largest absolute difference and whether equality was to be expected."""
    if len(before) != len(after) or any(a.shape != b.shape for a, b in zip(before, after)):
        shapes = ([list(t.shape) for t in before], [list(t.shape) for t in after])
        return {"max_abs_diff": None, "shapes": shapes, "expected_equal": False}
    diff = max((float((a.double() - b.double()).abs().max()) for a, b in zip(before, after) if a.numel()), default=0.0)
    preserving = structure_only and all(r["function_preserving"] for r in graph_replaced)
    return {"max_abs_diff": diff, "shapes": [list(t.shape) for t in before], "expected_equal": preserving}
