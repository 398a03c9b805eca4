"""Positions of candidate layers from their recorded calls and the links between them.

Both ways of recording a forward pass (hooks on a shape-only pass, see :mod:`binarize.engine.order`, and the traced
graph read as that pass would run, see :mod:`binarize.engine.graph_order`) collect the same facts and turn them into
positions here, so that they cannot disagree on what is first or last.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping

__all__ = ["Positions", "positions_from_calls"]

#: module index -> (position of its first call, position of its last call); input layers share the first position
#: -1 and output layers the last position ``sys.maxsize`` (see :func:`binarize.engine.execution_order`).
Positions = dict[int, tuple[int, int]]


def _upstream(start: int, feeds: Mapping[int, set[int]]) -> set[int]:
    """Every candidate whose output reaches ``start``'s input, directly or through other candidates."""
    found: set[int] = set()
    stack = list(feeds.get(start, ()))
    while stack:
        u = stack.pop()
        if u not in found:
            found.add(u)
            stack.extend(feeds.get(u, ()))
    return found


def positions_from_calls(
    calls: Mapping[int, list[int]], sources: set[int], feeds: Mapping[int, set[int]], sinks: Iterable[int]
) -> Positions:
    """Positions of the candidates that ran; parallel boundary layers share a position.

    Args:
        calls: candidate -> the positions of its calls, in order (insertion order: by first call).
        sources: candidates that read the model input on some call, with no other candidate in between.
        feeds: candidate -> the candidates whose outputs reach its input with no other candidate in between.
        sinks: candidates whose outputs reach the model output with no other candidate in between.

    A residual stream carries every block's output to the model output, so of ``sinks`` only those that feed no
    other sink count as last (parallel heads), not the blocks upstream of the last one. A layer called twice
    (shared weights) may feed itself; that does not disqualify it.
    """
    reaching = set(sinks)
    feeders = {s: _upstream(s, feeds) - {s} for s in reaching}
    last = {t for t in reaching if not any(t in feeders[s] for s in reaching if s != t)}
    return {i: (-1 if i in sources else c[0], sys.maxsize if i in last else c[-1]) for i, c in calls.items()}
