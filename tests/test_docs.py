"""The documentation site: every example on it runs, and it builds with ``mkdocs build --strict``.

* Every ```python block of ``docs/**/*.md`` is executed; the blocks of one page run in order in one namespace (a
  page is one story), in a fresh temporary working directory.
* Every ``binarize ...`` line of a ```bash / ```console block (a leading ``$ `` prompt is allowed), and every
  ``<!-- generated: run binarize ... -->`` placeholder (which the build replaces by the command and its output), is
  run in-process through :func:`binarize.cli.main` and must exit with 0.
* The concept pages cover every registered binarizer and scale, so a new one cannot go undocumented.
* The built site itself (``mkdocs build --strict``, what the pages show, code widths, the API tables) is checked
  by ``tests/test_docs_site.py``.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import textwrap
from pathlib import Path

import pytest

from binarize.binarizers import BINARIZERS
from binarize.cli import main
from binarize.scaling import SCALES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# An opening fence (possibly indented, e.g. inside an admonition), its language, its body, the closing fence.
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                    re.MULTILINE | re.DOTALL)
_FILE_ARGUMENT = re.compile(r"\S+\.(?:py|ya?ml|png)\b")
_RUN = re.compile(r"<!--\s*generated:\s*run\s+(?P<command>binarize\s[^>]*?)\s*-->")


def pages() -> list[Path]:
    """The Markdown sources of the site (the build hooks live in ``docs/_hooks`` and are not pages)."""
    return sorted(p for p in DOCS.rglob("*.md") if "_hooks" not in p.parts)


def page_id(path: Path) -> str:
    return path.relative_to(DOCS).as_posix()


def blocks(path: Path) -> list[tuple[str, str, int]]:
    """``(language, dedented body, line)`` of every fenced block of a page."""
    text = path.read_text(encoding="utf-8")
    return [
        (m.group("lang").lower(), textwrap.dedent(m.group("body")), text.count("\n", 0, m.start()) + 1)
        for m in _FENCE.finditer(text)
    ]


def command_lines() -> list[tuple[str, str]]:
    """``(where, command line)`` of every ``binarize ...`` command shown on the site."""
    found = []
    for path in pages():
        for lang, body, line in blocks(path):
            if lang in ("bash", "console", "sh", "shell"):
                # a command may go on over several lines, each but the last ending with a backslash
                for command in re.sub(r"\\\n\s*", " ", body).splitlines():
                    command = command.removeprefix("$ ").strip()
                    if command.startswith("binarize "):
                        found.append((f"{page_id(path)}:{line}", command))
        text = path.read_text(encoding="utf-8")
        for match in _RUN.finditer(text):
            found.append((f"{page_id(path)}:{text.count(chr(10), 0, match.start()) + 1}", match.group("command")))
    return found


PYTHON_PAGES = [p for p in pages() if any(lang in ("python", "py") for lang, _, _ in blocks(p))]
COMMANDS = command_lines()


def test_docs_have_examples() -> None:
    assert PYTHON_PAGES, "no ```python example found under docs/"
    assert COMMANDS, "no `binarize ...` command found under docs/"


@pytest.mark.parametrize("path", PYTHON_PAGES, ids=page_id)
def test_python_examples(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem.replace('-', '_')}"}
    for lang, body, line in blocks(path):
        if lang not in ("python", "py"):
            continue
        code = compile(body, f"{page_id(path)}:{line}", "exec")
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                exec(code, namespace)  # noqa: S102 - running the documentation's own examples is the point
            except Exception as error:
                raise AssertionError(f"the ```python block at {page_id(path)}:{line} failed: {error!r}") from error


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[f"{w} {c}" for w, c in COMMANDS])
def test_command_examples(where: str, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # A command may use files that a ```python block of the same page writes (cli.md does): for a command that
    # names a .py, .yaml or .png file, run the page's Python blocks first, in this working directory.
    if _FILE_ARGUMENT.search(command):
        page = DOCS / where.rsplit(":", 1)[0]
        namespace: dict[str, object] = {"__name__": "docs_setup"}
        with contextlib.redirect_stdout(io.StringIO()):
            for lang, body, line in blocks(page):
                if lang in ("python", "py"):
                    exec(compile(body, f"{page_id(page)}:{line}", "exec"), namespace)  # noqa: S102
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(shlex.split(command)[1:])
    assert code == 0, f"`{command}` ({where}) exited with {code}: {err.getvalue()}"
    assert out.getvalue().strip(), f"`{command}` ({where}) printed nothing"


def test_every_binarizer_is_documented() -> None:
    text = (DOCS / "concepts" / "binarizers.md").read_text(encoding="utf-8")
    for name in BINARIZERS.names():
        assert f"## `{name}`" in text, f"concepts/binarizers.md has no section for binarizer {name!r}"
        assert f"assets/plots/binarizers/{name}.png" in text, f"concepts/binarizers.md does not show {name}'s plot"


def test_every_scale_is_documented() -> None:
    text = (DOCS / "concepts" / "scales.md").read_text(encoding="utf-8")
    for name in SCALES.names():
        assert f"## `{name}`" in text, f"concepts/scales.md has no section for scale {name!r}"
