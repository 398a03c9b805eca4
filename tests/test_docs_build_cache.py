"""The documentation build's cache (``docs/_hooks/build_cache.py``) and the example outputs it stores.

An entry is served only for the same key, and a key changes with every input it covers, so a cached step can
never hand back a result computed from other sources.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from pathlib import Path

import pytest

HOOKS = Path(__file__).resolve().parent.parent / "docs" / "_hooks"


@pytest.fixture
def build_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """The cache module, storing under ``tmp_path``."""
    monkeypatch.syspath_prepend(str(HOOKS))
    import build_cache as module

    monkeypatch.setattr(module, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(module, "_current", None)
    monkeypatch.delenv(module.ENV_SWITCH, raising=False)
    module.loaded_digest.cache_clear()
    yield module
    module.loaded_digest.cache_clear()


def test_an_entry_is_computed_once_per_key(build_cache: types.ModuleType) -> None:
    calls = []

    def compute() -> dict[str, str | bytes]:
        calls.append(1)
        return {"page.md": "# text", "figure.png": b"\x89PNG\x00\xff"}

    key = build_cache.key("step", "input one")
    first = build_cache.cached("step", key, compute)
    second = build_cache.cached("step", key, compute)
    assert first == second == {"page.md": "# text", "figure.png": b"\x89PNG\x00\xff"}
    assert len(calls) == 1
    build_cache.cached("step", build_cache.key("step", "input two"), compute)
    assert len(calls) == 2


def test_the_key_covers_every_input(build_cache: types.ModuleType, tmp_path: Path) -> None:
    base = build_cache.key("step", "a")
    assert build_cache.key("step", "a") == base
    assert build_cache.key("step", "b") != base
    assert build_cache.key("step", "a", "") != base  # parts are length-prefixed: ("ab",) differs from ("a", "b")
    assert build_cache.key("step", "ab") != build_cache.key("step", "a", "b")
    hook = tmp_path / "hook.py"
    hook.write_text("X = 1\n")
    module = types.ModuleType("hook")
    module.__file__ = str(hook)
    with_hook = build_cache.key("step", module)
    hook.write_text("X = 2\n")
    assert build_cache.key("step", module) != with_hook, "a hook's source is part of the key"


def test_the_source_digest_covers_the_package(build_cache: types.ModuleType, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    package = tmp_path / "package"
    package.mkdir()
    (package / "module.py").write_text("A = 1\n")
    (package / "__pycache__").mkdir()
    monkeypatch.setattr(build_cache, "_package_roots", lambda: [("binarize", package)])
    build_cache.start_build()
    before = build_cache.source_digest()
    (package / "__pycache__" / "module.cpython.pyc").write_bytes(b"compiled")
    build_cache.start_build()
    assert build_cache.source_digest() == before, "compiled files are not sources"
    (package / "module.py").write_text("A = 2\n")
    assert build_cache.source_digest() == before, "one build keys on the files as they were when it started"
    build_cache.start_build()
    assert build_cache.source_digest() != before, "an edited source file must change the digest"


def test_results_of_code_older_than_the_files_are_not_kept(build_cache: types.ModuleType,
                                                          monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A long-lived ``mkdocs serve`` keeps running the code it imported after a source file changed."""
    package = tmp_path / "package"
    package.mkdir()
    (package / "module.py").write_text("A = 1\n")
    monkeypatch.setattr(build_cache, "_package_roots", lambda: [("binarize", package)])
    build_cache.start_build()  # the process imports the package as it is now
    (package / "module.py").write_text("A = 2\n")
    build_cache.start_build()  # the next build of the same process sees the edit
    key = build_cache.key("step")
    assert build_cache.cached("step", key, lambda: {"a": "old code"}) == {"a": "old code"}
    assert build_cache.lookup("step", key) is None, "a result of the old code was stored under the new key"


def test_a_damaged_entry_is_computed_again(build_cache: types.ModuleType) -> None:
    key = build_cache.key("step", "x")
    build_cache.cached("step", key, lambda: {"a": "first"})
    (build_cache.CACHE_DIR / "step" / key / "manifest.json").write_text("{not json")
    assert build_cache.cached("step", key, lambda: {"a": "again"}) == {"a": "again"}


def test_old_entries_are_pruned(build_cache: types.ModuleType) -> None:
    for i in range(build_cache.KEEP + 3):
        build_cache.cached("step", build_cache.key("step", str(i)), lambda: {"a": "b"})
    assert len(list((build_cache.CACHE_DIR / "step").iterdir())) == build_cache.KEEP


def test_the_cache_can_be_switched_off(build_cache: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(build_cache.ENV_SWITCH, "0")
    calls = []
    key = build_cache.key("step", "x")
    for _ in range(2):
        build_cache.cached("step", key, lambda: calls.append(1) or {"a": "b"})
    assert len(calls) == 2
    assert not build_cache.CACHE_DIR.exists()


def test_outputs_go_under_the_blocks_that_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(HOOKS))
    import example_outputs

    page = (
        "Text.\n\n```python\nprint('hello')\n```\n\n!!! note\n    ```py\n    x = 1\n    ```\n\n"
        "    ```python\n    print(x)\n    ```\n"
    )
    shown = example_outputs.with_outputs(page, ["hello\n", "", "1\n"])
    assert shown.count(f'title="{example_outputs.TITLE}"') == 2
    assert "```python\nprint('hello')\n```\n\n```{.text .wrap-lines" in shown
    assert "    ```python\n    print(x)\n    ```\n\n    ```{.text .wrap-lines" in shown and "\n    1\n    ```" in shown
    with pytest.raises(ValueError):
        example_outputs.with_outputs(page, ["only one"])
