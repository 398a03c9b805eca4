"""Trained models of the zoo: checkpoints shipped inside the package, each with its result card.

A trained model is a weights-only checkpoint ``checkpoints/NAME.safetensors`` (written by ``binarize train``,
compacted to half-precision storage by ``binarize publish``) next to its card, ``cards/NAME.md`` (for people) and
``cards/NAME.json`` (the same numbers as data: config, recipe, training, quality on the held-out photos, cost).
Every checkpoint found there is registered in :data:`TRAINED` under its file name; the command line addresses it as
``zoo:NAME`` (``binarize upscale IN OUT --model zoo:bidiffsr-small-x2``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from binarize._registry import Registry

__all__ = ["TRAINED", "TrainedModel"]


@dataclass(frozen=True)
class TrainedModel:
    """One trained checkpoint of the zoo and its card.

    Attributes:
        name: the registered name (``zoo:NAME``).
        checkpoint: the weights-only checkpoint file.
        card_markdown: the result card, Markdown.
        card_data: the result card, JSON.
    """

    name: str
    checkpoint: Path
    card_markdown: Path
    card_data: Path

    def card(self) -> dict[str, Any]:
        """The card's numbers (``{}`` when the card is missing)."""
        if not self.card_data.is_file():
            return {}
        return json.loads(self.card_data.read_text(encoding="utf-8"))


#: Every trained checkpoint shipped in ``zoo/checkpoints``, by name.
TRAINED: Registry[TrainedModel] = Registry("trained zoo model")


def zoo_folder() -> Path:
    """The folder holding ``checkpoints/`` and ``cards/`` (inside the installed package)."""
    return Path(str(resources.files("binarize.zoo")))


def _discover() -> None:
    root = zoo_folder()
    for path in sorted((root / "checkpoints").glob("*.safetensors")):
        name = path.stem
        TRAINED.register(name, TrainedModel(name, path, root / "cards" / f"{name}.md", root / "cards" / f"{name}.json"))


_discover()
