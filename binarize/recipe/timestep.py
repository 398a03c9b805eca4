"""The ``timestep`` section of a recipe: which model input carries diffusion timesteps, and how they are grouped.

.. code-block:: yaml

    timestep:
      input: t        # the name of the forward argument with the integer timesteps (or its position, 0-based)
      T: 2000         # number of timesteps
      K: 5            # number of groups; layers with `timestep_aware: true` hold one parameter set per group
      route: auto     # auto (graph when the model traces, else hook), graph, or hook

See :mod:`binarize.nn.timestep` for the grouping rule and :mod:`binarize.engine.timestep_route` for how the group
indices reach the layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from binarize.recipe.source import Source, describe_value, did_you_mean

__all__ = ["ROUTES", "TIMESTEP_KEYS", "parse_timestep"]

TIMESTEP_KEYS = ("input", "T", "K", "route")
ROUTES = ("auto", "graph", "hook")


def parse_timestep(value: Any, src: Source, container: Any, key: str) -> dict[str, Any] | None:
    """Validate a ``timestep`` section into ``{"input", "T", "K", "route"}`` (``None`` stays ``None``)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise src.error(
            f"'timestep' must be a mapping with input, T and K (e.g. `{{input: t, T: 2000, K: 5}}`), got "
            f"{describe_value(value)}",
            container,
            key,
        )
    for name in value:
        if name not in TIMESTEP_KEYS:
            raise src.error(
                f"unknown key {name!r} in 'timestep'.{did_you_mean(name, TIMESTEP_KEYS)} Allowed keys: "
                f"{', '.join(TIMESTEP_KEYS)}",
                value,
                name,
            )
    for required in ("input", "T", "K"):
        if required not in value:
            raise src.error(f"'timestep' needs {required!r} (e.g. `{{input: t, T: 2000, K: 5}}`)", value)
    model_input = value["input"]
    if isinstance(model_input, bool) or not (
        (isinstance(model_input, str) and model_input.isidentifier()) or (isinstance(model_input, int) and model_input >= 0)
    ):
        raise src.error(
            f"'timestep.input' must be the name of a forward argument or its 0-based position, got "
            f"{describe_value(model_input)}",
            value,
            "input",
        )
    numbers = {}
    for name in ("T", "K"):
        number = value[name]
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise src.error(f"'timestep.{name}' must be a positive integer, got {describe_value(number)}", value, name)
        numbers[name] = number
    if numbers["K"] > numbers["T"]:
        raise src.error(f"'timestep.K' ({numbers['K']}) cannot exceed 'timestep.T' ({numbers['T']})", value, "K")
    route = value.get("route", "auto")
    if route not in ROUTES:
        raise src.error(
            f"'timestep.route' must be one of {', '.join(ROUTES)}, got {describe_value(route)}."
            f"{did_you_mean(route, ROUTES)}",
            value,
            "route",
        )
    return {"input": model_input, "T": numbers["T"], "K": numbers["K"], "route": route}
