"""The expansion pass: rewrite layers whose linear maps no convertible module holds (see :mod:`binarize.nn.expansions`).

Runs inside :func:`binarize.binarize` after the graph rules and before the layer rules, on the working copy. A
module shared under several paths is expanded once and the new module set at every path, so it stays shared. A
layer whose configuration the expansion cannot express stays as it is, and the report says why.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from binarize.engine.swap import set_submodule
from binarize.errors import UnsupportedLayerError
from binarize.nn.expansions import expansion_for

__all__ = ["expand_modules", "has_expansions"]


def has_expansions(model: nn.Module) -> bool:
    """Whether any module of ``model`` has a registered expansion."""
    return any(expansion_for(m) is not None for m in model.modules())


def expand_modules(model: nn.Module) -> tuple[nn.Module, list[dict[str, Any]], list[dict[str, str]]]:
    """Expand every layer of ``model`` that has a registered expansion, in place.

    Returns:
        ``(model, expanded, skipped)``: the model (a new object only when the model itself was expanded),
        ``{"name", "old_type", "new_type", "reason", "aliases"}`` per expanded layer and ``{"name", "type",
        "reason"}`` per layer the expansion refused.
    """
    paths: dict[int, list[str]] = {}
    modules: dict[int, nn.Module] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if expansion_for(module) is None or any(_inside(name, p) for names in paths.values() for p in names):
            continue  # a module inside one being expanded goes with it
        paths.setdefault(id(module), []).append(name)
        modules[id(module)] = module
    expanded: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for key, names in paths.items():
        module = modules[key]
        expansion = expansion_for(module)
        assert expansion is not None
        try:
            new = expansion.build(module)
        except UnsupportedLayerError as error:
            skipped.append({"name": names[0], "type": type(module).__name__, "reason": str(error)})
            continue
        for name in names:
            if not name:
                model = new
            else:
                set_submodule(model, name, new)
        expanded.append({
            "name": names[0], "old_type": type(module).__name__, "new_type": type(new).__name__,
            "reason": expansion.description, "aliases": names[1:],
        })
    return model, expanded, skipped


def _inside(name: str, owner: str) -> bool:
    """Whether the module path ``name`` lies strictly inside ``owner`` (every path lies inside the root ``""``)."""
    return name != owner and (not owner or name.startswith(owner + "."))
