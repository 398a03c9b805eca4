"""How per-sample timestep groups reach the timestep-aware layers of a binarized model.

A recipe's ``timestep`` section names the forward argument with the timesteps. Two routes:

* **graph** (models that torch.fx traces as a whole): the model becomes a :class:`torch.fx.GraphModule` in which
  the group indices are computed once from the timestep input (:func:`binarize.nn.timestep.group_index`) and passed
  to every timestep-aware layer as ``timestep_groups=``. No hidden state; friendly to ``torch.compile``.
* **hook** (the fallback for models that do not trace): a forward pre-hook on the model
  (:class:`~binarize.nn.timestep.TimestepHook`) reads the timestep argument and stores the group indices in a
  :class:`~binarize.nn.timestep.TimestepState` shared by the layers, which read it when they run. The model keeps
  its class; the state is per model (a deep copy gets its own).

``route: auto`` (the default) takes the graph route when the model traces and the hook route otherwise. Either
way a batch may mix timesteps: each sample gathers its own group's parameters.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

from torch import fx, nn

from binarize.engine.tracing import PathTracer, graph_module_of
from binarize.errors import RecipeError
from binarize.nn.timestep import TimestepHook, TimestepState, group_index

__all__ = ["route_timesteps", "timestep_argument"]


def _aware_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if getattr(m, "timestep_groups", None) is not None}


def timestep_argument(model: nn.Module, recipe: Any) -> str | None:
    """The name of the forward argument that carries the timesteps (``None`` without a ``timestep`` section).

    Raises:
        RecipeError: the recipe's ``timestep: input`` is not an argument of the model's forward.
    """
    spec = recipe.timestep
    if spec is None:
        return None
    signature = inspect.signature(model.forward)
    names = list(signature.parameters)
    wanted = spec["input"]
    name = wanted if isinstance(wanted, str) else (names[wanted] if wanted < len(names) else None)
    if name not in signature.parameters:
        raise RecipeError(
            f"timestep input {wanted!r} is not an argument of {type(model).__name__}.forward{signature}; set "
            f"`timestep: input:` to the name (or position) of the argument carrying the timesteps",
            file=recipe.file,
        )
    return name


def route_timesteps(model: nn.Module, recipe: Any) -> tuple[nn.Module, dict[str, Any] | None]:
    """Connect the timestep input of ``model`` to its timestep-aware layers.

    Returns:
        ``(model, info)``: the model (a GraphModule on the graph route) and the report's timestep record
        (``input``, ``T``, ``K``, ``route``, ``layers``), or ``None`` when no layer is timestep-aware.

    Raises:
        RecipeError: the timestep input is not an argument of the model's forward, or ``route: graph`` on a
            model that does not trace.
    """
    layers = _aware_layers(model)
    spec = recipe.timestep
    if not layers or spec is None:
        return model, None
    name = timestep_argument(model, recipe)
    assert name is not None
    signature = inspect.signature(model.forward)
    route = spec["route"]
    routed = _graph_route(model, layers, name, spec) if route in ("auto", "graph") else None
    if routed is None and route == "graph":
        raise RecipeError(
            f"`timestep: route: graph` needs a model that torch.fx traces as a whole, and "
            f"{type(model).__name__} does not; use `route: hook` or `auto`",
            file=recipe.file,
        )
    if routed is None:
        state = TimestepState()
        for layer in layers.values():
            layer.timestep_state = state
        model.register_forward_pre_hook(
            TimestepHook(state, name, spec["T"], spec["K"], signature), with_kwargs=True
        )
        routed, used = model, "hook"
    else:
        used = "graph"
    info = {"input": name, "T": spec["T"], "K": spec["K"], "route": used, "layers": sorted(layers)}
    return routed, info


def _graph_route(model: nn.Module, layers: dict[str, nn.Module], name: str, spec: Any) -> fx.GraphModule | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = PathTracer().trace(model)
    except Exception:  # noqa: BLE001 - untraceable models take the hook route
        return None
    placeholder = next((n for n in graph.nodes if n.op == "placeholder" and n.target == name), None)
    calls = [n for n in graph.nodes if n.op == "call_module" and str(n.target) in layers]
    if placeholder is None or not calls:
        return None
    called = {str(n.target) for n in calls}
    # A timestep-aware container (a module with a `timestep_groups` attribute that the tracer keeps as a leaf)
    # receives the groups and hands them to the aware layers inside it.
    uncovered = [n for n in layers if n not in called and not any(n.startswith(f"{c}.") for c in called)]
    if uncovered:  # a timestep-aware layer that the graph does not reach: use the hook
        return None
    last_placeholder = [n for n in graph.nodes if n.op == "placeholder"][-1]
    with graph.inserting_after(last_placeholder):
        groups = graph.call_function(group_index, (placeholder, spec["T"], spec["K"]))
    for node in calls:
        node.kwargs = {**node.kwargs, "timestep_groups": groups}
    routed = graph_module_of(model, graph, type(model).__name__)
    routed.graph.lint()
    return routed
