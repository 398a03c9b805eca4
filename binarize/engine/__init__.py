"""The conversion engine: candidate discovery, execution order, planning, the module-swap pass and its report.

Layer rules walk ``named_modules()`` and need no tracing, so they work on any model. The passes are small steps:
:func:`find_candidates` -> :func:`execution_order` (only for ``first`` / ``last``) -> :func:`make_plan` ->
:func:`apply_plan` (handlers from :data:`HANDLERS`, then the swaps) -> :class:`Report`.
"""

from binarize.engine.candidates import Candidate, find_candidates
from binarize.engine.graph_factories import GRAPH_FACTORIES, GraphFactory, register_graph_factory
from binarize.engine.handlers import HANDLERS, Handler, Outcome
from binarize.engine.order import ORDER_SOURCES, execution_order
from binarize.engine.plan import Decision, Plan, make_plan
from binarize.engine.report import Report
from binarize.engine.swap import apply_plan, set_submodule
from binarize.engine.tracing import LEAF_MODULES, TracedRegion, TraceResult, register_leaf, trace_partially

__all__ = [
    "GRAPH_FACTORIES",
    "HANDLERS",
    "LEAF_MODULES",
    "ORDER_SOURCES",
    "Candidate",
    "Decision",
    "GraphFactory",
    "Handler",
    "Outcome",
    "Plan",
    "Report",
    "TraceResult",
    "TracedRegion",
    "apply_plan",
    "execution_order",
    "find_candidates",
    "make_plan",
    "register_graph_factory",
    "register_leaf",
    "set_submodule",
    "trace_partially",
]
