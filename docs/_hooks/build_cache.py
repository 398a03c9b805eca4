"""A content-addressed cache for the expensive parts of the documentation build.

The recipe gallery, the binarizer plots, the architecture figures, ``binarize demo`` and the outputs of the pages'
Python examples take most of a build's time, yet depend only on the package's source, the documentation hooks and
the installed libraries. :func:`cached` stores what such a step produced under ``.cache/docs/NAME/KEY/`` (git-ignored)
and hands it back while the key stays the same, so that ``mkdocs serve`` rebuilds in seconds after a page edit.

The key is a SHA-256 of contents, never of times: :func:`source_digest` covers every file of the installed ``binarize``
package (its recipes, zoo checkpoints and cards included), this file, the Python version and the name and version
of every installed distribution, and :func:`key` adds what else the step reads: the source of the hook modules that
compute it, a page's Markdown. A change to any of them gives a new key, so a stale entry is never served.
The sources are hashed at the start of every build (:func:`start_build`); a result computed in this process is
stored only if the process still runs those sources (:func:`cached`). ``BINARIZE_DOCS_CACHE=0`` in the environment
turns the cache off (every step is computed, nothing is stored).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata, resources
from pathlib import Path
from types import ModuleType
from typing import Any

#: The folder of ``mkdocs.yml``.
SITE_ROOT = Path(__file__).resolve().parents[2]
#: Where the entries live (``.cache/`` is git-ignored).
CACHE_DIR = SITE_ROOT / ".cache" / "docs"
#: Entries kept per step name (older ones are removed when a new one is written).
KEEP = 3
#: Set to ``0`` to compute every step and store nothing.
ENV_SWITCH = "BINARIZE_DOCS_CACHE"

Artifacts = Mapping[str, str | bytes]


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def _hash_files(digest: Any, root: Path, label: str) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
            continue
        digest.update(f"{label}/{path.relative_to(root).as_posix()}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())


def _package_roots() -> list[tuple[str, Path]]:
    """The folders that ``binarize``, its shipped recipes and its zoo are imported from."""
    import binarize
    import binarize.zoo

    recipes = resources.files("binarize._recipes")
    roots = [("binarize", Path(binarize.__file__).parent), ("zoo", Path(binarize.zoo.__file__).parent),
             ("recipes", Path(str(recipes)))]
    return roots


def _digest() -> str:
    digest = hashlib.sha256()
    for label, root in _package_roots():
        _hash_files(digest, root, label)
    digest.update(Path(__file__).read_bytes())
    digest.update(sys.version.encode())
    installed = sorted({(d.metadata["Name"] or "").lower(): d.version for d in metadata.distributions()}.items())
    digest.update(json.dumps(installed).encode())
    return digest.hexdigest()


#: The digest of the current build (:func:`start_build`).
_current: str | None = None


def start_build() -> None:
    """Hash the sources again: a build (``mkdocs serve`` runs many in one process) keys on the files as they are."""
    global _current
    _current = _digest()
    loaded_digest()  # the first build of the process also records what it imported


@functools.cache
def loaded_digest() -> str:
    """The digest when this process first asked: the sources of the ``binarize`` it has imported (a long-lived
    ``mkdocs serve`` process does not re-import the package when a file changes)."""
    return _current or _digest()


def source_digest() -> str:
    """SHA-256 of everything a generated part of the site can depend on, as described in the module docstring: the
    files as they were at the start of this build."""
    if _current is None:
        start_build()
    assert _current is not None
    return _current


def key(*parts: str | bytes | ModuleType) -> str:
    """A cache key: :func:`source_digest` and ``parts`` (the step's other inputs: text, bytes, or a module, which
    stands for its source file), hashed together."""
    digest = hashlib.sha256(source_digest().encode())
    for part in parts:
        if isinstance(part, ModuleType):
            part = Path(str(part.__file__)).read_bytes()
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _load(folder: Path) -> dict[str, str | bytes] | None:
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        out: dict[str, str | bytes] = {}
        for i, (name, kind) in enumerate(manifest["entries"]):
            data = (folder / f"{i}.bin").read_bytes()
            out[name] = data.decode("utf-8") if kind == "text" else data
        return out
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or damaged: computed again


def _store(folder: Path, artifacts: Artifacts) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    entries = []
    for i, (name, value) in enumerate(artifacts.items()):
        is_text = isinstance(value, str)
        (scratch / f"{i}.bin").write_bytes(value.encode("utf-8") if is_text else bytes(value))
        entries.append([name, "text" if is_text else "bytes"])
    (scratch / "manifest.json").write_text(json.dumps({"entries": entries}), encoding="utf-8")
    try:
        scratch.rename(folder)  # atomic: a reader sees the whole entry or none
    except OSError:  # another build stored the same entry first
        shutil.rmtree(scratch, ignore_errors=True)
    _prune(folder.parent, keep=folder.name)


def _prune(step_dir: Path, keep: str) -> None:
    entries = [p for p in step_dir.iterdir() if p.is_dir() and not p.name.startswith(".tmp-") and p.name != keep]
    entries.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP - 1:]:
        shutil.rmtree(old, ignore_errors=True)


def lookup(name: str, cache_key: str) -> dict[str, str | bytes] | None:
    """What step ``name`` stored under ``cache_key``, or None (also when the cache is off)."""
    return _load(CACHE_DIR / name / cache_key) if enabled() else None


def store(name: str, cache_key: str, artifacts: Artifacts) -> None:
    """Keep ``artifacts`` (a mapping of names to text or bytes) for step ``name`` under ``cache_key``."""
    if enabled():
        _store(CACHE_DIR / name / cache_key, artifacts)


def cached(name: str, cache_key: str, compute: Callable[[], Artifacts]) -> dict[str, str | bytes]:
    """``compute()`` (a mapping of names to text or bytes), or what it returned for the same key before.

    ``compute`` runs in this process, so its result is stored only while this process runs the sources that the
    key describes: after a source file changed under a running ``mkdocs serve``, the old code's result is used for
    the page but not kept under the new key.
    """
    hit = lookup(name, cache_key)
    if hit is not None:
        return hit
    artifacts = dict(compute())
    if loaded_digest() == source_digest():
        store(name, cache_key, artifacts)
    return artifacts


def clear(names: Iterable[str] | None = None) -> None:
    """Remove the cache (or only the entries of the steps ``names``)."""
    targets = [CACHE_DIR / n for n in names] if names is not None else [CACHE_DIR]
    for target in targets:
        shutil.rmtree(target, ignore_errors=True)
