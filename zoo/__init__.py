"""Reference networks, addressable as ``zoo:NAME``.

Every public module of this package defines one network from standard torch modules (so that type-based recipe
rules find its layers) and registers it with :func:`register`; the modules are imported here automatically, so
adding a network is one new file and one ``register(ZooEntry(...))`` call.

Examples:
    >>> from binarize.zoo import ZOO
    >>> entry = ZOO.get("resnet8")
    >>> model = entry.build()
    >>> model(*entry.inputs()).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

import importlib
import pkgutil

from binarize.zoo._registry import ZOO, ZooEntry, image_inputs, register
from binarize.zoo._trained import TRAINED, TrainedModel

__all__ = ["TRAINED", "ZOO", "TrainedModel", "ZooEntry", "image_inputs", "register"]


def _import_models() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_import_models()
