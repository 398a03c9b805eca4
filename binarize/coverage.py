"""Which weights stay in full precision after a conversion, and why: the coverage of a binarized model.

:func:`weight_coverage` runs one counted forward pass (:func:`binarize.cost.measure_cost`) and explains every
parameter that a convolution or matrix product consumed in full precision, from the conversion's report
(``model.binarize_report``):

================================================ ==================================================================
the weight                                       reason
================================================ ==================================================================
of a layer the report lists as skipped           that entry's reason (kept by a rule, selected by no rule, refused
                                                 by the binary class, ...)
of a layer the report does not mention           not a layer the recipe saw (added after the conversion, or the
                                                 model was not converted)
used in a functional call (``F.linear(x, w)``)   no layer rule can reach a functional use; where the module was not
                                                 traced, the reason tracing stopped too
================================================ ==================================================================

``coverage`` is the binary share of the layer MACs (see :mod:`binarize.cost`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from binarize.cost import measure_cost
from binarize.engine.candidates import float_layer_types

__all__ = ["explain_full_precision_weights", "weight_coverage"]


def weight_coverage(model: nn.Module, example_inputs: Any) -> dict[str, Any]:
    """``{"coverage", "layer_macs", "binary_macs", "full_precision_weights"}`` of ``model`` on ``example_inputs``.

    Each entry of ``full_precision_weights`` is ``{"name", "module", "type", "shape", "params", "macs",
    "layer_weight", "reason"}``, largest MACs first (``name``: the parameter's first path, so a tied weight is
    named once, by its first holder).

    Examples:
        >>> import torch
        >>> from binarize import binarize
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 2, 1))
        >>> found = weight_coverage(binarize(net, "reactnet"), (torch.zeros(1, 3, 8, 8),))
        >>> round(found["coverage"], 3)
        0.534
        >>> [w["name"] for w in found["full_precision_weights"]]
        ['0.weight', '2.weight']
        >>> found["full_precision_weights"][0]["reason"][:30]
        'kept in full precision by rule'
    """
    cost = measure_cost(model, example_inputs)
    report = getattr(model, "binarize_report", None)
    weights = explain_full_precision_weights(cost.full_precision_weights, None if report is None else report.to_dict())
    return {
        "coverage": cost.coverage, "layer_macs": cost.layer_macs, "binary_macs": cost.binary_macs,
        "full_precision_weights": weights,
    }


def explain_full_precision_weights(
    weights: list[dict[str, Any]], report: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """``weights`` (from :attr:`binarize.cost.CostReport.full_precision_weights`) with a ``"reason"`` each, read
    from a conversion report's plain data (``None``: the model was not converted)."""
    if report is None:
        return [{**w, "reason": "the model was not binarized (no recipe)"} for w in weights]
    skipped = {entry["name"]: entry["reason"] for entry in report.get("skipped", [])}
    untraced = report.get("untraced") or []
    layer_types = {cls.__name__ for cls in float_layer_types()}
    return [{**w, "reason": _reason(w, skipped, untraced, layer_types)} for w in weights]


def _reason(
    weight: dict[str, Any], skipped: dict[str, str], untraced: list[dict[str, str]], layer_types: set[str]
) -> str:
    module = weight["module"]
    is_layer_weight = weight["layer_weight"] and weight["type"] in layer_types
    if is_layer_weight and module in skipped:
        return skipped[module]
    if is_layer_weight:
        return "a layer the conversion did not see (added after binarize(), or not converted)"
    where = next((u for u in untraced if module == u["name"] or module.startswith(u["name"] + ".") or not u["name"]),
                 None)
    reason = (f"used in a functional call inside {weight['type']} ({module or '<root>'}): no layer holds it, so no "
              f"layer rule can convert it")
    if where is not None:
        reason += f"; tracing could not enter {where['name'] or '<root>'} ({where['reason']})"
    return reason
