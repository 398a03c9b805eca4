"""The experiment config the training tests share: the tiny UNet on 16-pixel patches, a few steps."""

from __future__ import annotations

import copy
from typing import Any

#: What every tiny experiment has in common.
TINY_EXPERIMENT: dict[str, Any] = {
    "model": "zoo:bidiffsr-unet-tiny",
    "scale": 2,
    "data": {"patch": 16, "batch": 2},
    "diffusion": {"sampling_steps": 2},
}


def tiny_experiment(name: str, **changes: Any) -> dict[str, Any]:
    """A new config mapping: :data:`TINY_EXPERIMENT` named ``name``, with ``changes`` on top."""
    return {**copy.deepcopy(TINY_EXPERIMENT), "name": name, **changes}
