"""Handing a discarded layer's tensors over to the binary layer that replaces it, instead of copying them.

:meth:`~binarize.nn.BinaryLayerMixin.from_float` copies the weight and bias of the layer it replaces, so the two
layers never share storage. When the caller is about to discard the float layers anyway (:func:`binarize.binarize`
converting its own deep copy of the model), that copy is wasted work: as large as the model. Inside
:func:`handing_over`, ``from_float`` takes over the caller's listed tensors instead, wherever the result is the
same as a copy: a plain ``nn.Parameter`` of the same shape, dtype, device and memory layout, in storage of its own,
without a gradient or attributes of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import nn

__all__ = ["exclusive_parameters", "handing_over", "may_take_over", "storage_key"]

_HANDED_OVER: ContextVar[frozenset[int]] = ContextVar("binarize_handed_over", default=frozenset())


@contextmanager
def handing_over(parameters: Iterable[nn.Parameter]) -> Iterator[None]:
    """Within the block, binary layers built by ``from_float`` may take over ``parameters`` instead of copying.

    The caller promises that the layers holding them are discarded once replaced, and that nothing else reads
    these tensors afterwards.
    """
    token = _HANDED_OVER.set(frozenset(map(id, parameters)))
    try:
        yield
    finally:
        _HANDED_OVER.reset(token)


def may_take_over(old: torch.Tensor, fresh: torch.Tensor, device: torch.device | None = None) -> bool:
    """Whether ``old`` may replace ``fresh`` (a new parameter, uninitialised or on the meta device) where a copy of
    ``old`` would go into ``fresh``'s layout on ``device`` (default: ``fresh``'s device).

    Such a copy is a plain ``nn.Parameter`` with ``fresh``'s layout, in storage of its own, with no gradient; ``old``
    must look exactly like that.
    """
    return (
        id(old) in _HANDED_OVER.get()
        and type(old) is nn.Parameter
        and old.grad is None
        and not vars(old)
        and old.shape == fresh.shape
        and old.dtype == fresh.dtype
        and old.device == (fresh.device if device is None else device)
        and old.stride() == fresh.stride()
        and old.storage_offset() == 0
        and old.untyped_storage().nbytes() == fresh.untyped_storage().nbytes()
    )


def storage_key(tensor: torch.Tensor) -> int | None:
    """The address of ``tensor``'s storage; ``None`` when it has none to share (uninitialised, meta, empty)."""
    if nn.parameter.is_lazy(tensor):
        return None
    try:
        address = tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError, ValueError, TypeError):  # tensor subclasses without a storage
        return None
    return address or None


def exclusive_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of ``model`` held by one module only, whose storage no other parameter or buffer shares
    (tied weights and views stay copied)."""
    holders: dict[int, int] = {}
    storages: dict[int, int] = {}
    parameters: list[tuple[nn.Parameter, int]] = []
    for module in model.modules():
        for tensor in (*module._parameters.values(), *module._buffers.values()):
            if tensor is None:
                continue
            holders[id(tensor)] = holders.get(id(tensor), 0) + 1
            key = storage_key(tensor)
            if key is None:
                continue
            storages[key] = storages.get(key, 0) + 1
            if isinstance(tensor, nn.Parameter):
                parameters.append((tensor, key))
    return [p for p, key in parameters if holders[id(p)] == 1 and storages[key] == 1]
