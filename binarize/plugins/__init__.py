"""Plugin discovery: packages that extend binarize through the entry-point group ``binarize.plugins``.

A plugin declares one entry point in its packaging metadata, e.g. in ``pyproject.toml``:

.. code-block:: toml

    [project.entry-points."binarize.plugins"]
    myplugin = "mypackage.binarize_plugin:register"

The entry point names a module or a callable. :func:`load_plugins` imports it and, for a callable, calls it with no
arguments; the plugin then adds what it provides to the shared registries (graph-rule factories with
:func:`binarize.engine.register_graph_factory`, binarizers, scales, layer options, zoo models). binarize's own
BI-DiffSR support is such a plugin (:mod:`binarize.plugins.bidiffsr`). The engine never imports a plugin; plugins are
loaded once, when :mod:`binarize` is imported.

A plugin that fails to load does not break binarize: the failure is recorded in :data:`PLUGINS` (``error``) and
reported with a :class:`PluginWarning`; whatever the plugin would have provided is then missing, and the error that
names the missing piece says which plugin failed.

Examples:
    >>> from binarize.plugins import PLUGINS
    >>> PLUGINS.get("bidiffsr").error is None
    True
"""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

from binarize._registry import Registry

__all__ = ["PLUGINS", "PLUGIN_GROUP", "Plugin", "PluginWarning", "failed_plugins", "load_plugins"]

#: The entry-point group plugins declare themselves under.
PLUGIN_GROUP = "binarize.plugins"


class PluginWarning(UserWarning):
    """A plugin could not be loaded."""


@dataclass(frozen=True)
class Plugin:
    """One plugin found through the entry points.

    Attributes:
        name: the entry point's name.
        value: what it points to (``module`` or ``module:callable``).
        distribution: the installed distribution that declares it (``None`` when unknown).
        error: why loading failed (``None`` when it loaded).
    """

    name: str
    value: str
    distribution: str | None
    error: str | None = None


#: Plugins found so far, by entry-point name.
PLUGINS: Registry[Plugin] = Registry("plugin")


def _entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    return importlib.metadata.entry_points(group=PLUGIN_GROUP)


def load_plugins(entry_points: Iterable[importlib.metadata.EntryPoint] | None = None) -> list[Plugin]:
    """Load every plugin of the ``binarize.plugins`` group not loaded yet; return the newly seen ones.

    Args:
        entry_points: the entry points to load (default: those installed). Given explicitly by tests.

    A plugin whose import or registration raises is recorded with its error and reported with a
    :class:`PluginWarning`; the others still load.
    """
    seen = []
    for entry in entry_points if entry_points is not None else _entry_points():
        if entry.name in PLUGINS:
            continue
        distribution = entry.dist.name if getattr(entry, "dist", None) is not None else None
        error = None
        try:
            loaded = entry.load()
            if callable(loaded):
                loaded()
        except Exception as exc:  # a broken plugin must not break binarize itself
            error = f"{type(exc).__name__}: {exc}"
            warnings.warn(
                f"binarize plugin {entry.name!r} ({entry.value}) failed to load and is disabled: {error}",
                PluginWarning,
                stacklevel=2,
            )
        plugin = Plugin(entry.name, entry.value, distribution, error)
        PLUGINS.register(entry.name, plugin)
        seen.append(plugin)
    return seen


def failed_plugins() -> list[Plugin]:
    """The plugins that failed to load (for error messages about something a plugin should have provided)."""
    return [plugin for _, plugin in PLUGINS.items() if plugin.error is not None]
