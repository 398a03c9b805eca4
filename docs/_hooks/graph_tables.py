"""Reference tables of the graph-rule machinery, generated from its registries when the site is built.

* ``<!-- generated: graph-functions -->``: every function a pattern step can name
  (:data:`binarize.engine.patterns.FUNCTIONS`), its arguments and the calls it matches;
* ``<!-- generated: graph-factories -->``: every replacement factory (:data:`binarize.engine.graph_factories.
  GRAPH_FACTORIES`), whether it is function-preserving, and its description.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

#: Python operators, shown as the expression that calls them.
_OPERATORS = {operator.add: "a + b", operator.iadd: "a += b", operator.mul: "a * b", operator.imul: "a *= b"}


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _target(fn: Callable[..., Any]) -> str:
    """How a call target is written in model code: ``F.conv2d``, ``torch.cat``, ``a + b``."""
    if fn in _OPERATORS:
        return _OPERATORS[fn]
    name = getattr(fn, "__name__", repr(fn))
    if getattr(F, name, None) is fn:
        return f"F.{name}"
    if getattr(torch, name, None) is fn:
        return f"torch.{name}"
    return f"{getattr(fn, '__module__', '?')}.{name}"


def functions_markdown() -> str:
    """The functions a pattern step can name, as a Markdown table."""
    from binarize.engine.patterns import FUNCTIONS

    rows = []
    for name, spec in FUNCTIONS.items():
        params = ", ".join(f"`{p}={spec.defaults[p]!r}`" if p in spec.defaults else f"`{p}`" for p in spec.params)
        calls = list(dict.fromkeys(_target(t) for t in spec.targets))
        calls += [f"x.{m}(...)" for m in spec.methods]
        rows.append([f"`{name}`", params, ", ".join(f"`{c}`" for c in calls)])
    return _table(["step", "arguments (constraints may name them)", "matches calls of"], rows)


def factories_markdown() -> str:
    """The registered replacement factories, as a Markdown table."""
    from binarize.engine.graph_factories import GRAPH_FACTORIES

    rows = [
        [f"`{name}`", "yes" if factory.function_preserving else "no", factory.description]
        for name, factory in GRAPH_FACTORIES.items()
    ]
    return _table(["`replace:`", "function-preserving", "what it builds"], rows)
