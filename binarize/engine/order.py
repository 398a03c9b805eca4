"""Execution order of candidate layers, for the ``first`` / ``last`` selectors.

Registration order (the order of ``named_modules()``) often differs from the order in which layers run: a model may
create its head before its stem, or reuse a block. The order is taken from the first source that works:

================== ===========================================================================================
``order_source``   how
================== ===========================================================================================
``forward``        one forward pass on the given ``example_inputs``, with hooks recording each layer's calls
``timm_input_size`` the same, on a zero input of the size in the timm model's ``pretrained_cfg["input_size"]``
``fx``             the order of ``call_module`` nodes in a ``torch.fx.symbolic_trace`` of the model
``registration``   the order of ``named_modules()`` (last resort)
================== ===========================================================================================

The forward pass runs on fake tensors (shapes only, no arithmetic) when the model allows it, else on real ones.
It runs in eval mode under ``torch.no_grad()`` and every module's ``training`` flag is restored
afterwards, so the model is left as it was (BatchNorm running statistics are not updated in eval mode). A layer
that never runs has no position and is never ``first`` or ``last``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from binarize.errors import BinarizeError

__all__ = ["ORDER_SOURCES", "Positions", "execution_order"]

ORDER_SOURCES = ("forward", "timm_input_size", "fx", "registration")

#: module index -> (position of its first call, position of its last call)
Positions = dict[int, tuple[int, int]]


def execution_order(
    model: nn.Module, modules: Sequence[nn.Module], example_inputs: Any = None
) -> tuple[Positions, str]:
    """Where each of ``modules`` runs in ``model``'s forward pass.

    Args:
        model: the model.
        modules: the modules to locate (candidate layers of ``model``).
        example_inputs: a tensor, a tuple / list of positional inputs, or a mapping of keyword inputs; ``None`` to
            infer the order without them.

    Returns:
        ``(positions, source)``: module index -> (first call, last call) for the modules that ran, and the
        source used (one of :data:`ORDER_SOURCES`).

    Raises:
        BinarizeError: when the forward pass on ``example_inputs`` fails.
    """
    if example_inputs is not None:
        try:
            return _shape_only_or_real_order(model, modules, example_inputs), "forward"
        except Exception as exc:
            raise BinarizeError(
                f"the forward pass on example_inputs failed ({type(exc).__name__}: {exc}); the execution order "
                f"of layers (needed by first/last selectors) could not be recorded. Pass inputs the model "
                f"accepts, or example_inputs=None to infer the order"
            ) from exc
    timm_input = _timm_input(model)
    if timm_input is not None:
        try:
            return _shape_only_or_real_order(model, modules, timm_input), "timm_input_size"
        except Exception:  # noqa: BLE001 - any failure falls through to the next source
            pass
    fx_positions = _fx_order(model, modules)
    if fx_positions is not None:
        return fx_positions, "fx"
    return {i: (i, i) for i in range(len(modules))}, "registration"


def _shape_only_or_real_order(model: nn.Module, modules: Sequence[nn.Module], example_inputs: Any) -> Positions:
    """Record the order on a shape-only (fake tensor) forward pass, or on a real one when that fails.

    Under :class:`~torch._subclasses.fake_tensor.FakeTensorMode` every operation only propagates shapes, so the
    pass costs milliseconds even for large models at their full input size. Models whose control flow reads
    tensor values cannot run that way; they get a real forward pass.
    """
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            return _forward_order(model, modules, example_inputs)
    except Exception:  # noqa: BLE001 - value-dependent models need real tensors
        return _forward_order(model, modules, example_inputs)


def _forward_order(model: nn.Module, modules: Sequence[nn.Module], example_inputs: Any) -> Positions:
    index_of = {id(m): i for i, m in enumerate(modules)}
    calls: dict[int, list[int]] = {}
    counter = 0

    def record(module: nn.Module, _args: Any) -> None:
        nonlocal counter
        calls.setdefault(index_of[id(module)], []).append(counter)
        counter += 1

    if isinstance(example_inputs, Mapping):
        args, kwargs = (), dict(example_inputs)
    elif isinstance(example_inputs, (tuple, list)):
        args, kwargs = tuple(example_inputs), {}
    else:
        args, kwargs = (example_inputs,), {}
    flags = [(m, m.training) for m in model.modules()]
    handles = [m.register_forward_pre_hook(record) for m in {id(m): m for m in modules}.values()]
    try:
        model.eval()
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in flags:
            module.training = training
    return {i: (c[0], c[-1]) for i, c in calls.items()}


def _timm_input(model: nn.Module) -> torch.Tensor | None:
    cfg = getattr(model, "pretrained_cfg", None)
    size = cfg.get("input_size") if isinstance(cfg, Mapping) else None
    if not (isinstance(size, (tuple, list)) and size and all(isinstance(s, int) and s > 0 for s in size)):
        return None
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    return torch.zeros(1, *size, device=device, dtype=dtype)


def _fx_order(model: nn.Module, modules: Sequence[nn.Module]) -> Positions | None:
    index_of = {id(m): i for i, m in enumerate(modules)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - untraceable models fall back to registration order
        return None
    positions: Positions = {}
    for position, node in enumerate(graph.nodes):
        if node.op != "call_module":
            continue
        try:
            module = model.get_submodule(str(node.target))
        except AttributeError:
            continue
        index = index_of.get(id(module))
        if index is not None:
            first = positions.get(index, (position, position))[0]
            positions[index] = (first, position)
    return positions
