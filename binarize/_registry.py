"""A small named registry shared by binarizers, scales, layers, rule handlers, model specs and zoo entries."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from binarize.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (classes, factories, functions) of one kind.

    Unknown names raise :class:`~binarize.errors.UnknownNameError`, which lists the known names and suggests the
    closest one, instead of a bare ``KeyError``.

    Examples:
        >>> colours = Registry("colour")
        >>> @colours.register("red")
        ... def make_red():
        ...     return "#f00"
        >>> colours.get("red")()
        '#f00'
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None, *, replace: bool = False) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; used bare or as a decorator (``@registry.register("name")``)."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def add(item: T) -> T:
            if name in self._entries and not replace and self._entries[name] is not item:
                raise ValueError(
                    f"a {self.kind} named {name!r} is already registered ({self._entries[name]!r}); "
                    f"pass replace=True to override it"
                )
            self._entries[name] = item
            return item

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a no-op when it is not registered)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        """Return the entry for ``name`` or raise an error that lists the known names."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self.kind, name, self.names()) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs, sorted by name."""
        return sorted(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"

