"""The README's examples run, its set-up commands are the ones CI runs, and its recipe table is complete.

* Every ```python block is executed in a fresh namespace (in a temporary working directory).
* Every line that starts with ``binarize `` in a ```bash / ```console block (a leading ``$ `` prompt is allowed) is
  run in-process through :func:`binarize.cli.main` and must exit with 0.
* The block after the ``<!-- ci:commands -->`` marker holds the set-up commands (install, then test); ``.ci/run``
  must contain each of them verbatim, on a line of its own, so the two can never diverge.
* The recipe table lists exactly the shipped recipes.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from binarize.cli import main
from binarize.recipe import available_recipes

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"
CI_MARKER = "<!-- ci:commands -->"

_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    """A fenced code block of the README."""

    lang: str
    code: str
    line: int  # 1-based line of the opening fence
    start: int  # character offset of the opening fence

    @property
    def id(self) -> str:
        """A test id such as ``python@README.md:42``."""
        return f"{self.lang}@README.md:{self.line}"


def read_blocks() -> list[Block]:
    """All fenced code blocks of the README, in order."""
    text = README.read_text(encoding="utf-8")
    return [
        Block(m.group(1).lower(), m.group(2), text.count("\n", 0, m.start()) + 1, m.start())
        for m in _FENCE.finditer(text)
    ]


BLOCKS = read_blocks()
PYTHON_BLOCKS = [b for b in BLOCKS if b.lang in ("python", "py")]
CLI_LINES = [
    (block, line.removeprefix("$ ").strip())
    for block in BLOCKS
    if block.lang in ("bash", "console", "sh", "shell")
    for line in block.code.splitlines()
    if line.removeprefix("$ ").startswith("binarize ")
]


def ci_commands() -> list[str]:
    """The commands in the first code block after the ci marker (comments and blank lines dropped)."""
    text = README.read_text(encoding="utf-8")
    marker = text.find(CI_MARKER)
    assert marker >= 0, f"README.md has no {CI_MARKER} marker before its set-up commands"
    block = next((b for b in BLOCKS if b.start > marker), None)
    assert block is not None, f"no code block after {CI_MARKER} in README.md"
    lines = [line.strip() for line in block.code.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_readme_has_examples() -> None:
    assert PYTHON_BLOCKS, "README.md has no ```python example"
    assert CLI_LINES, "README.md has no `binarize ...` command example"


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: b.id)
def test_python_example_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = compile(block.code, f"README.md (block at line {block.line})", "exec")
    exec(code, {"__name__": "__readme__"})


@pytest.mark.parametrize(("block", "line"), CLI_LINES, ids=[f"{b.id}:{line}" for b, line in CLI_LINES])
def test_cli_example_runs(block: Block, line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    argv = shlex.split(line)[1:]
    assert main(argv) == 0, f"`{line}` (README.md line {block.line}) exited non-zero"


def test_ci_runs_the_readme_setup_commands() -> None:
    commands = ci_commands()
    assert len(commands) == 2, f"the README's set-up should be two commands (install, test), found {commands}"
    assert commands[-1].split()[0] in ("pytest", "python"), f"the last set-up command should run the tests: {commands}"
    script_lines = {line.strip() for line in CI_RUN.read_text(encoding="utf-8").splitlines()}
    missing = [c for c in commands if c not in script_lines]
    assert not missing, f".ci/run does not run these README set-up commands verbatim: {missing}"


def test_recipe_table_lists_every_shipped_recipe() -> None:
    text = README.read_text(encoding="utf-8")
    listed = set(re.findall(r"^\|\s*`([\w-]+)`\s*\|", text, re.MULTILINE))
    assert listed == set(available_recipes()), (
        "README.md's recipe table (rows starting with | `name` |) must list exactly the shipped recipes: "
        f"missing {sorted(set(available_recipes()) - listed)}, unknown {sorted(listed - set(available_recipes()))}"
    )
