"""The module-swap pass: run the handler of every decision, then swap all replacements in at once.

Replacements are built first and swapped in only when every handler has succeeded, so an error never leaves a
half-converted model. A module shared under several paths is converted once and the replacement is set at every
path, so it stays shared.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from binarize.engine.handlers import HANDLERS, Outcome
from binarize.engine.plan import NO_RULE, Decision, Plan
from binarize.engine.report import Report
from binarize.nn.handover import handing_over

__all__ = ["apply_plan", "set_submodule"]


def _parameter_holders(model: nn.Module) -> dict[int, int]:
    """``id(parameter) -> how many (module, attribute) slots hold it`` (a tied weight is held more than once)."""
    counts: dict[int, int] = {}
    for module in model.modules():
        for parameter in module._parameters.values():
            if parameter is not None:
                counts[id(parameter)] = counts.get(id(parameter), 0) + 1
    return counts


def _keep_ties(name: str, old: nn.Module, new: nn.Module, holders: dict[int, int]) -> list[str]:
    """Let ``new`` hold the very parameters ``old`` shared with other slots (tied weights), so they stay tied.

    A binary layer keeps its latent weight in full precision and binarizes it in each forward pass, so sharing it
    with another layer (an embedding tied to an output projection, an encoder tied to a decoder) shares what the
    original shared. Returns a note for each tie that cannot be kept (the new layer holds a differently shaped or
    no such parameter).
    """
    notes = []
    for attribute in ("weight", "bias"):
        shared = old._parameters.get(attribute)
        if shared is None or holders.get(id(shared), 0) < 2:
            continue
        own = new._parameters.get(attribute) if attribute in new._parameters else None
        if own is not None and own.shape == shared.shape and own.dtype == shared.dtype and own.device == shared.device:
            new._parameters[attribute] = shared
        else:
            notes.append(
                f"{name}.{attribute} was tied to another layer's parameter; its binary layer holds "
                + ("no such parameter" if own is None else f"a {tuple(own.shape)} one")
                + ", so that tie is not kept"
            )
    return notes


def set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    """Replace the submodule at ``path`` (``"layer1.0.conv1"``) by ``module``, on its parent."""
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, module)


def _handle(decision: Decision, hand_over: list[nn.Parameter]) -> Outcome:
    """Run the decision's handler, letting it take over ``hand_over``; a replacement that keeps the old layer
    inside it is built again with copies, since that layer's tensors stay in use."""
    handler = HANDLERS.get(decision.action)
    with handing_over(hand_over):
        outcome = handler(decision)
    old = decision.candidate.module
    if hand_over and outcome.replacement is not None and any(m is old for m in outcome.replacement.modules()):
        outcome = handler(decision)
    return outcome


def apply_plan(
    model: nn.Module, plan: Plan, *, hand_over: Iterable[nn.Parameter] = ()
) -> tuple[nn.Module, Report]:
    """Carry out ``plan`` on ``model`` (the model the plan was made for) and report what happened.

    Args:
        model: the model.
        plan: the plan made for it.
        hand_over: parameters of ``model`` that nothing reads once their layers are replaced (a private copy's):
            the binary layers take them over instead of copying them (see :mod:`binarize.nn.handover`).

    Returns:
        ``(model, report)``. The model is changed in place; it is a different object only when the model itself
        is a candidate layer (e.g. a bare ``nn.Linear``), which cannot be swapped on a parent.
    """
    report = Report(recipe=plan.recipe.name, order_source=plan.order_source, recipe_hash=plan.recipe.hash)
    handed = list(hand_over)
    outcomes: list[tuple[int, Outcome]] = []
    for i, decision in enumerate(plan.decisions):
        if decision.action is None:
            outcomes.append((i, Outcome(reason=NO_RULE)))
        else:
            outcomes.append((i, _handle(decision, handed)))

    result = model
    holders = _parameter_holders(model)
    for i, outcome in outcomes:
        decision = plan.decisions[i]
        candidate = decision.candidate
        if outcome.replacement is not None:
            report.notes += _keep_ties(candidate.name, candidate.module, outcome.replacement, holders)
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
