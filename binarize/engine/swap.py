"""The module-swap pass: run the handler of every decision, then swap all replacements in at once.

Replacements are built first and swapped in only when every handler has succeeded, so an error never leaves a
half-converted model. A module shared under several paths is converted once and the replacement is set at every
path, so it stays shared.
"""

from __future__ import annotations

from torch import nn

from binarize.engine.handlers import HANDLERS, Outcome
from binarize.engine.plan import NO_RULE, Plan
from binarize.engine.report import Report

__all__ = ["apply_plan", "set_submodule"]


def set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    """Replace the submodule at ``path`` (``"layer1.0.conv1"``) by ``module``, on its parent."""
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, module)


def apply_plan(model: nn.Module, plan: Plan) -> tuple[nn.Module, Report]:
    """Carry out ``plan`` on ``model`` (the model the plan was made for) and report what happened.

    Returns:
        ``(model, report)``. The model is changed in place; it is a different object only when the model itself
        is a candidate layer (e.g. a bare ``nn.Linear``), which cannot be swapped on a parent.
    """
    report = Report(recipe=plan.recipe.name, order_source=plan.order_source, recipe_hash=plan.recipe.hash)
    outcomes: list[tuple[int, Outcome]] = []
    for i, decision in enumerate(plan.decisions):
        if decision.action is None:
            outcomes.append((i, Outcome(reason=NO_RULE)))
        else:
            outcomes.append((i, HANDLERS.get(decision.action)(decision)))

    result = model
    for i, outcome in outcomes:
        decision = plan.decisions[i]
        candidate = decision.candidate
        if outcome.replacement is None:
            report.skipped.append(
                {"name": candidate.name, "type": candidate.cls.__name__, "reason": outcome.reason or NO_RULE}
            )
            continue
        for path in candidate.names:
            if path == "":
                result = outcome.replacement
            else:
                set_submodule(model, path, outcome.replacement)
        report.replaced.append(
            {
                "name": candidate.name,
                "old_type": candidate.cls.__name__,
                "new_type": type(outcome.replacement).__name__,
                "rule": decision.rule,
                "aliases": list(candidate.names[1:]),
                "executed": decision.executed,
            }
        )
    report.skipped.extend(dict(s) for s in plan.skipped)
    return result, report
