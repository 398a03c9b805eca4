"""Exceptions raised by binarize. Every message says what was received, what is allowed and how to fix it."""

from __future__ import annotations

import difflib


class BinarizeError(Exception):
    """Base class of every error raised by binarize."""


class UnknownNameError(BinarizeError, KeyError):
    """A name (binarizer, scale, recipe, zoo model, ...) that is not registered."""

    def __init__(self, kind: str, name: object, known: list[str]) -> None:
        self.kind, self.name, self.known = kind, name, list(known)
        matches = difflib.get_close_matches(str(name), self.known, n=1, cutoff=0.5)
        hint = f" Did you mean {matches[0]!r}?" if matches else ""
        listing = ", ".join(repr(k) for k in self.known) or "(none registered)"
        super().__init__(f"unknown {kind} {name!r}.{hint} Known {kind}s: {listing}.")

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0])


class RecipeError(BinarizeError, ValueError):
    """A recipe that cannot be loaded or applied. Carries the file and line when known."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        self.message, self.file, self.line = message, file, line
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        elif line is not None:
            where = f"line {line}: "
        super().__init__(f"{where}{message}")


class UnsupportedLayerError(BinarizeError, ValueError):
    """A layer (or a layer option) that a binary layer cannot reproduce faithfully."""


class ModelSpecError(BinarizeError, ValueError):
    """A model specification (``timm:NAME``, ``zoo:NAME``, ``file.py:factory``) that cannot be resolved."""
