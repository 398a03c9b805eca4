"""The zoo registry: named reference networks with their example inputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from binarize._registry import Registry

__all__ = ["ZOO", "ZooEntry", "register", "image_inputs"]


@dataclass(frozen=True)
class ZooEntry:
    """One reference network of the zoo, addressable as ``zoo:NAME``.

    Attributes:
        name: the registered name (``zoo:NAME`` on the command line).
        description: one line saying what the network is.
        factory: builds a fresh, randomly initialised network; keyword arguments override its defaults.
        example_inputs: ``example_inputs(size) -> tuple`` of positional forward arguments at spatial size ``size``.
        default_size: the size used when none is given.
        size_argument: the keyword of ``factory`` that fixes the input size, for networks whose layers depend on
            it (e.g. token mixing); None when the network accepts any size.
    """

    name: str
    description: str
    factory: Callable[..., nn.Module]
    example_inputs: Callable[[int], tuple]
    default_size: int
    size_argument: str | None = None

    def build(self, size: int | None = None, **kwargs: object) -> nn.Module:
        """A new instance of the network (``factory(**kwargs)``), built for inputs of ``size`` where that matters."""
        if self.size_argument is not None and size is not None:
            kwargs.setdefault(self.size_argument, size)
        return self.factory(**kwargs)

    def inputs(self, size: int | None = None) -> tuple:
        """Example inputs at ``size`` (the entry's default size when None)."""
        return self.example_inputs(self.default_size if size is None else size)


#: Every reference network, by name. Add one with a new module in ``zoo/`` that calls :func:`register`.
ZOO: Registry[ZooEntry] = Registry("zoo model")


def register(entry: ZooEntry) -> ZooEntry:
    """Add ``entry`` to :data:`ZOO` under ``entry.name`` and return it."""
    ZOO.register(entry.name, entry)
    return entry


def image_inputs(channels: int) -> Callable[[int], tuple]:
    """An ``example_inputs(size)`` builder giving one ``(1, channels, size, size)`` tensor."""

    def build(size: int) -> tuple:
        generator = torch.Generator().manual_seed(0)
        return (torch.randn(1, channels, size, size, generator=generator),)

    return build
