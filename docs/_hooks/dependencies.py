"""The install section's dependency lists, generated from ``pyproject.toml`` so that the page cannot drift from it.

``dependencies_markdown()`` gives a table of the package's dependencies (name, version range, what binarize uses it
for) and the list of each optional extra. A dependency without an entry in :data:`PURPOSES` fails the build: adding
one to ``pyproject.toml`` means saying here what it is for.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"

#: What each runtime dependency is for (keys are normalised distribution names).
PURPOSES: dict[str, str] = {
    "torch": "the networks, autograd and the binary layers",
    "timm": "`timm:NAME` models (any timm architecture, randomly initialised)",
    "numpy": "array work in the data pipeline and the metrics",
    "pyyaml": "recipes and experiment configs (YAML)",
    "safetensors": "checkpoints",
    "pillow": "reading and writing images",
    "tqdm": "progress bars of training and sampling",
    "scikit-image": "its bundled photographs are the embedded training and test data (no download)",
    "scikit-learn": "its two bundled photographs (`china`, `flower`) complete the embedded data",
}


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def requirements(path: Path = PYPROJECT) -> tuple[list[Requirement], dict[str, list[Requirement]]]:
    """The ``[project]`` dependencies and optional dependencies (extra name to requirements) of ``pyproject.toml``.

    Python 3.10 has no TOML reader: there they come from the installed package's metadata instead (the same lists
    as of the last ``pip install -e``).
    """
    if sys.version_info < (3, 11):  # pragma: no cover - Python 3.10
        return _installed_requirements()
    import tomllib

    with path.open("rb") as handle:
        project: dict[str, Any] = tomllib.load(handle)["project"]
    dependencies = [Requirement(text) for text in project.get("dependencies", [])]
    extras = {name: [Requirement(text) for text in items]
              for name, items in project.get("optional-dependencies", {}).items()}
    return dependencies, extras


def _installed_requirements() -> tuple[list[Requirement], dict[str, list[Requirement]]]:
    from importlib import metadata

    dependencies: list[Requirement] = []
    extras: dict[str, list[Requirement]] = {name: [] for name in metadata.metadata("binarize").get_all(
        "Provides-Extra") or []}
    for text in metadata.requires("binarize") or []:
        requirement = Requirement(text)
        extra = next((e for e in extras if requirement.marker and requirement.marker.evaluate({"extra": e})), None)
        requirement.marker = None
        (extras[extra] if extra else dependencies).append(requirement)
    return dependencies, extras


def _version(requirement: Requirement) -> str:
    return ", ".join(f"{spec.operator} {spec.version}" for spec in sorted(requirement.specifier, key=str)) or "any"


def dependencies_markdown(path: Path = PYPROJECT) -> str:
    """Markdown: the dependency table, then one line per optional extra."""
    dependencies, extras = requirements(path)
    missing = [r.name for r in dependencies if _normalise(r.name) not in PURPOSES]
    if missing:
        raise ValueError(f"docs/_hooks/dependencies.py: say what {', '.join(missing)} is used for in PURPOSES")
    lines = ["| package | version | used for |", "| --- | --- | --- |"]
    lines += [f"| `{r.name}` | {_version(r)} | {PURPOSES[_normalise(r.name)]} |" for r in dependencies]
    lines.append("")
    for extra, items in extras.items():
        names = ", ".join(f"`{r.name}`" for r in items)
        lines.append(f"The `{extra}` extra (`pip install -e \".[{extra}]\"`) adds {names}.")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
