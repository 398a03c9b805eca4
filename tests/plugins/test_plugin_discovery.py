"""Plugin discovery through the ``binarize.plugins`` entry points."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import binarize
from binarize.engine.graph_factories import GRAPH_FACTORIES
from binarize.plugins import PLUGINS, PluginWarning, failed_plugins, load_plugins


def test_bidiffsr_is_found_through_its_entry_point() -> None:
    names = {e.name for e in importlib.metadata.entry_points(group="binarize.plugins")}
    assert "bidiffsr" in names
    plugin = PLUGINS.get("bidiffsr")
    assert plugin.error is None and plugin.value == "binarize.plugins.bidiffsr:register"
    assert {"cp_down", "cp_up", "cs_fusion"} <= set(GRAPH_FACTORIES.names())


def test_importing_binarize_alone_loads_plugins() -> None:
    code = "import binarize; from binarize.engine.graph_factories import GRAPH_FACTORIES; print('cs_fusion' in GRAPH_FACTORIES)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_a_broken_plugin_warns_and_the_others_still_load() -> None:
    broken = importlib.metadata.EntryPoint("test-broken", "binarize_no_such_module:register", "binarize.plugins")
    working = importlib.metadata.EntryPoint("test-working", "binarize.plugins.bidiffsr:register", "binarize.plugins")
    try:
        with pytest.warns(PluginWarning, match="test-broken.*failed to load.*binarize_no_such_module"):
            seen = load_plugins([broken, working])
        assert [p.name for p in seen] == ["test-broken", "test-working"]
        assert PLUGINS.get("test-working").error is None
        assert [p.name for p in failed_plugins()] == ["test-broken"]
        assert load_plugins([broken]) == []  # loaded once
    finally:
        PLUGINS.unregister("test-broken")
        PLUGINS.unregister("test-working")


def test_unknown_plugin_name_suggests() -> None:
    with pytest.raises(binarize.UnknownNameError, match="bidiffsr"):
        PLUGINS.get("bidifsr")
