"""The report of a :func:`binarize.binarize` call: every replacement and every skipped layer, with the reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Report", "format_table"]


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "  ") -> str:
    """A plain-text table with left-aligned columns."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(indent + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append(indent + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass
class Report:
    """What :func:`binarize.binarize` did (attached to the returned model as ``model.binarize_report``).

    Attributes:
        recipe: the recipe's name.
        replaced: ``{"name", "old_type", "new_type", "rule", "aliases", "executed"}`` per converted layer
            (``aliases``: other paths of a shared module; ``executed``: whether it ran in the recorded forward
            pass, ``None`` when none was recorded).
        skipped: ``{"name", "type", "reason"}`` per layer left as it was: kept in full precision by a rule,
            selected by no rule, refused by the binary class, or not a candidate at all.
        order_source: how the execution order was found (``"forward"``, ``"timm_input_size"``, ``"fx"``,
            ``"registration"``), or ``None`` when no rule needed it.
        recipe_hash: :attr:`binarize.recipe.Recipe.hash` of the recipe applied.
        graph_replaced: per graph-rule rewrite ``{"name", "rule", "pattern", "nodes", "old_types", "new_type",
            "function_preserving"}``.
        expanded: per layer rewritten so that its linear maps are convertible modules (``nn.MultiheadAttention``,
            transformers' ``Conv1D``; see :mod:`binarize.nn.expansions`): ``{"name", "old_type", "new_type",
            "reason", "aliases"}``.
        notes: what the caller should know about the conversion as a whole (e.g. that a compiled model came back
            uncompiled).
        untraced: modules that tracing could not enter (``{"name", "type", "reason"}``); ``None`` when the recipe
            has no graph rules, so nothing was traced.
        structure_only: whether only the graph rules were applied (no layer was binarized).
        timestep: how timestep groups reach the timestep-aware layers (``{"input", "T", "K", "route", "layers"}``,
            see :mod:`binarize.engine.timestep_route`), or ``None`` when no layer is timestep-aware.
        verify: with ``verify=``, ``{"max_abs_diff", "shapes", "expected_equal"}`` comparing outputs before and
            after (``expected_equal``: structure-only with function-preserving rewrites only).
    """

    recipe: str
    replaced: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    order_source: str | None = None
    recipe_hash: str | None = None
    graph_replaced: list[dict[str, Any]] = field(default_factory=list)
    expanded: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    untraced: list[dict[str, str]] | None = None
    structure_only: bool = False
    verify: dict[str, Any] | None = None
    timestep: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-serialisable)."""
        return {
            "recipe": self.recipe,
            "recipe_hash": self.recipe_hash,
            "order_source": self.order_source,
            "replaced": [dict(r) for r in self.replaced],
            "skipped": [dict(s) for s in self.skipped],
            "graph_replaced": [dict(r) for r in self.graph_replaced],
            "expanded": [dict(e) for e in self.expanded],
            "notes": list(self.notes),
            "untraced": None if self.untraced is None else [dict(u) for u in self.untraced],
            "structure_only": self.structure_only,
            "verify": None if self.verify is None else dict(self.verify),
            "timestep": None if self.timestep is None else dict(self.timestep),
        }

    def __str__(self) -> str:
        lines = [
            f"binarize report: recipe {self.recipe!r}, {len(self.replaced)} replaced, {len(self.skipped)} skipped"
            + (f" (order from {self.order_source})" if self.order_source else "")
        ]
        lines += [f"note: {note}" for note in self.notes]
        if self.structure_only:
            lines.append("structure only: graph rules applied, no layer binarized")
        if self.graph_replaced:
            lines.append("graph rewrites:")
            rows = [
                (r["name"], r["old_types"], r["new_type"], "yes" if r["function_preserving"] else "no", r["rule"])
                for r in self.graph_replaced
            ]
            lines.append(format_table(("name", "matched", "new_type", "preserving", "rule"), rows))
        if self.expanded:
            lines.append("expanded (so that their linear maps are convertible layers):")
            rows = [(_name(e), e["old_type"], e["new_type"], e["reason"]) for e in self.expanded]
            lines.append(format_table(("name", "old_type", "new_type", "why"), rows))
        if self.untraced:
            lines.append("untraced (graph rules cannot see inside):")
            rows = [(u["name"] or "<root>", u["type"], u["reason"]) for u in self.untraced]
            lines.append(format_table(("name", "type", "reason"), rows))
        if self.verify is not None:
            lines.append(f"verify: max |before - after| = {self.verify['max_abs_diff']}")
        if self.timestep is not None:
            t = self.timestep
            lines.append(
                f"timestep: input {t['input']!r}, T={t['T']}, K={t['K']}, {len(t['layers'])} timestep-aware "
                f"layer(s), routed by {t['route']}"
            )
        if self.replaced:
            lines.append("replaced:")
            lines.append(
                format_table(
                    ("name", "old_type", "new_type", "rule"),
                    [(_name(r), r["old_type"], r["new_type"], r["rule"]) for r in self.replaced],
                )
            )
        if self.skipped:
            lines.append("skipped:")
            rows = [(s["name"] or "<root>", s["type"], s["reason"]) for s in self.skipped]
            lines.append(format_table(("name", "type", "reason"), rows))
        return "\n".join(lines)


def _name(entry: dict[str, Any]) -> str:
    aliases = entry.get("aliases") or []
    unseen = " (not seen in the example pass)" if entry.get("executed") is False else ""
    return (entry["name"] or "<root>") + (f" (= {', '.join(aliases)})" if aliases else "") + unseen
