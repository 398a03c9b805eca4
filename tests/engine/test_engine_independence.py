"""The engine knows nothing of plugins: no module of binarize.engine imports binarize.plugins."""

from __future__ import annotations

import ast
from pathlib import Path

import binarize.engine

ENGINE = Path(binarize.engine.__file__).parent


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_engine_never_imports_plugins() -> None:
    files = sorted(ENGINE.glob("*.py"))
    assert files
    offenders = {f.name: sorted(i for i in _imports(f) if i.startswith("binarize.plugins")) for f in files}
    assert {name: found for name, found in offenders.items() if found} == {}
