"""The two entry points: :func:`binarize` converts a model, :func:`plan` shows what it would do."""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

from binarize._collector import collector_paused
from binarize.engine import Plan, Report, apply_plan, make_plan
from binarize.engine.expand import expand_modules, has_expansions
from binarize.engine.graph_pass import apply_graph_rules
from binarize.engine.module_copy import deep_copy_module
from binarize.engine.timestep_route import route_timesteps, timestep_argument
from binarize.engine.verify import compare_outputs, run_model
from binarize.errors import BinarizeError
from binarize.nn.handover import exclusive_parameters, storage_key
from binarize.recipe import load_recipe
from binarize.recipe.loader import RecipeSpec

__all__ = ["binarize", "plan"]


def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"binarize expects a torch.nn.Module, got {type(model).__module__}.{type(model).__qualname__}"
            + (" (a class: instantiate it first)" if isinstance(model, type) else "")
        )
    if isinstance(model, torch.jit.ScriptModule):
        raise BinarizeError(
            f"{type(model).__name__} is a TorchScript module (torch.jit.script / torch.jit.trace): its forward is "
            f"compiled TorchScript code whose layers binarize cannot replace. Binarize the eager nn.Module, then "
            f"script or trace the result"
        )
    return model


#: Why a compiled model's result is its original module: kept in the report's notes.
COMPILED_NOTE = (
    "the model was compiled with torch.compile: binarize converted the module it wraps (model._orig_mod) and "
    "returns it uncompiled; call torch.compile on the result to compile it again"
)


def _uncompiled(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """The module a ``torch.compile`` wrapper holds (never run compiled: its graphs were made for the old layers),
    with the note saying so; any other model as it is."""
    original = getattr(model, "_orig_mod", None)
    if isinstance(original, nn.Module) and type(model).__name__ == "OptimizedModule":
        return original, [COMPILED_NOTE]
    return model, []


def binarize(
    model: nn.Module,
    recipe: RecipeSpec,
    *,
    inplace: bool = False,
    example_inputs: Any = None,
    structure_only: bool = False,
    verify: Any = None,
) -> nn.Module:
    """Convert ``model`` into a binary network following ``recipe``.

    Args:
        model: any ``torch.nn.Module``.
        recipe: a shipped recipe name (``"reactnet"``), a path to a YAML file, a mapping or a
            :class:`~binarize.recipe.Recipe`.
        inplace: convert ``model`` itself instead of a deep copy.
        example_inputs: inputs for one forward pass (a tensor, a tuple of positional inputs or a mapping of keyword
            inputs) that records the execution order of layers, for recipes that select ``first`` / ``last``.
            Without them the order is inferred (see :mod:`binarize.engine.order`). For recipes with graph rules
            they also let tracing carry shapes, so that code reading shapes (asserts, ``len(x.shape)``, shape
            unpacking, branches on sizes) is traced through (see :mod:`binarize.engine.shape_tracing`), and they place
            every layer for the structural selectors ``level`` / ``side`` (see :mod:`binarize.engine.geometry`),
            which need them; ``verify`` inputs serve when these are not given.
        structure_only: apply the recipe's graph rules only: every replacement stays in full precision and no
            layer rule runs. For function-preserving graph rules the result computes what the model computed.
        verify: example inputs (as for ``example_inputs``) run through the model before and after conversion, in
            eval mode; the report's ``verify`` then holds the largest absolute difference of the outputs.

    Returns:
        The converted model (a new object unless ``inplace=True``), with ``model.binarize_report`` set to a
            :class:`~binarize.engine.Report` listing every replacement and every skipped layer.

    Raises:
        TypeError: ``model`` is not a module.
        RecipeError: the recipe does not validate or a non-optional selector matches nothing; the model is
            unchanged.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
        >>> out = binarize(net, "identity")
        >>> [r["new_type"] for r in out.binarize_report.replaced]
        ['BinaryConv2d', 'BinaryConv2d']
    """
    with collector_paused():
        return _convert(model, recipe, inplace, example_inputs, structure_only, verify)


def _convert(
    model: nn.Module, recipe: RecipeSpec, inplace: bool, example_inputs: Any, structure_only: bool, verify: Any
) -> nn.Module:
    """The body of :func:`binarize`."""
    _check_model(model)
    model, notes = _uncompiled(model)
    resolved = load_recipe(recipe)
    timestep_argument(model, resolved)  # a wrong timestep input is an error before anything changes
    reference = run_model(model, verify) if verify is not None else None
    target = model if inplace else _deep_copy(model)
    shapes = example_inputs if example_inputs is not None else verify  # what tracing and placement run on
    graph = apply_graph_rules(target, resolved, shapes)
    target = graph.model
    expanded: list[dict[str, Any]] = []
    refused: list[dict[str, str]] = []
    if structure_only:
        report = Report(recipe=resolved.name, recipe_hash=resolved.hash)
    else:
        target, expanded, refused = expand_modules(target)
        the_plan = make_plan(target, resolved, example_inputs=shapes)
        target, report = apply_plan(target, the_plan, hand_over=() if inplace else _disposable(target, model))
        target, report.timestep = route_timesteps(target, resolved)
    report.expanded = expanded
    report.notes = [*notes, *report.notes]
    report.structure_only = structure_only
    report.graph_replaced = graph.replaced
    report.skipped = [*graph.skipped, *refused, *report.skipped]
    report.untraced = graph.untraced
    if reference is not None:
        report.verify = compare_outputs(reference, run_model(target, verify), graph.replaced, structure_only)
    target.binarize_report = report
    _preserve_on_copy(target, "binarize_report", report)
    return target


def _preserve_on_copy(model: nn.Module, name: str, value: Any) -> None:
    """Keep ``model.<name>`` through ``copy.deepcopy`` when the model is a GraphModule.

    ``GraphModule.__deepcopy__`` rebuilds the module from its graph and keeps only the attributes listed in its
    ``meta`` under torch's user-preserved key (where the torch release has one).
    """
    if not isinstance(model, fx.GraphModule):
        return
    key = getattr(fx.graph_module, "_USER_PRESERVED_ATTRIBUTES_KEY", None)
    if key is not None:
        model.meta.setdefault(key, {})[name] = value


def plan(model: nn.Module, recipe: RecipeSpec, *, example_inputs: Any = None) -> Plan:
    """What :func:`binarize` would decide for each layer of ``model``, without changing anything.

    For a recipe with graph rules, the decisions are those on the rewritten network (the rules run on a copy).

    Args:
        model: any ``torch.nn.Module``.
        recipe: as for :func:`binarize`.
        example_inputs: as for :func:`binarize`.

    Returns:
        A :class:`~binarize.engine.Plan` (``str()`` gives a table, ``to_dict()`` plain data).
    """
    _check_model(model)
    model = _uncompiled(model)[0]
    resolved = load_recipe(recipe)
    with collector_paused():
        if resolved.graph_rules:  # plan the network the layer rules will see: the graph rules' result, on a copy
            model = apply_graph_rules(_deep_copy(model), resolved, example_inputs).model
        elif has_expansions(model):
            model = _deep_copy(model)
        model = expand_modules(model)[0]  # on the copy made above, if any module expands
        return make_plan(model, resolved, example_inputs=example_inputs)


def _disposable(copy_: nn.Module, original: nn.Module) -> list[nn.Parameter]:
    """Parameters of ``copy_`` (a private deep copy of ``original``) that binary layers may take over: held by one
    layer, sharing storage with no other tensor of the copy nor with any tensor of ``original``."""
    theirs = {storage_key(t) for t in (*original.parameters(), *original.buffers())}
    return [p for p in exclusive_parameters(copy_) if storage_key(p) not in theirs]


def _deep_copy(model: nn.Module) -> nn.Module:
    try:
        return deep_copy_module(model)
    except Exception as exc:
        raise BinarizeError(
            f"could not deep-copy the model to convert a copy ({type(exc).__name__}: {exc}); pass inplace=True to "
            f"convert the model itself"
        ) from exc

