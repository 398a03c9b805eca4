"""The command-line reference, generated from the argparse parser that ``binarize`` itself uses."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import tempfile
from collections.abc import Iterator

from binarize.cli import build_parser, main

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
WIDTH = "100"


@contextlib.contextmanager
def _plain_terminal() -> Iterator[None]:
    """A fixed help width and no colours, so the page does not depend on the terminal that builds it."""
    saved = {k: os.environ.get(k) for k in ("COLUMNS", "NO_COLOR")}
    os.environ.update(COLUMNS=WIDTH, NO_COLOR="1")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def help_markdown(heading_level: int = 2) -> str:
    """``binarize --help`` and ``binarize COMMAND --help`` for every registered command, as Markdown."""
    hashes = "#" * heading_level
    with _plain_terminal():
        parser = build_parser()
        sections = [f"{hashes} `binarize`", "", "```text", _ANSI.sub("", parser.format_help()).rstrip(), "```", ""]
        for name, sub in _subparsers(parser).items():
            sections += [f"{hashes} `binarize {name}`", "", "```text", _ANSI.sub("", sub.format_help()).rstrip(),
                         "```", ""]
    return "\n".join(sections)


@contextlib.contextmanager
def _scratch_directory() -> Iterator[None]:
    """Run in a fresh temporary working directory (a command's output files never land in the source tree)."""
    previous = os.getcwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        try:
            yield
        finally:
            os.chdir(previous)


def run_command(command_line: str) -> str:
    """Run ``binarize ...`` in-process and return what it printed; raise if it does not exit with 0."""
    import shlex

    argv = shlex.split(command_line)
    if not argv or argv[0] != "binarize":
        raise ValueError(f"expected a `binarize ...` command, got {command_line!r}")
    out, err = io.StringIO(), io.StringIO()
    with _plain_terminal(), _scratch_directory(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv[1:])
    if code != 0:
        raise RuntimeError(f"`{command_line}` exited with {code}: {err.getvalue().strip()}")
    return out.getvalue().rstrip()
