"""The command-line reference, generated from the argparse parser that ``binarize`` itself uses."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from binarize.cli import PROG, build_parser, main

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: Terminal width for argparse (its lines are two shorter): the usage lines fit a code block of 88 columns.
WIDTH = "90"


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


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands of ``parser`` (name to parser), in registration order; empty for a leaf command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = (PROG,)) -> Iterator[tuple[tuple[str, ...],
                                                                                             argparse.ArgumentParser]]:
    """``(command path, parser)`` of ``parser`` and of every subcommand below it, depth first."""
    yield path, parser
    for name, sub in subparsers(parser).items():
        yield from walk(sub, (*path, name))


def anchor(path: tuple[str, ...]) -> str:
    """The page anchor of a command: ``binarize-bench-overhead``."""
    return "-".join(path)


_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_MARKDOWN_SPECIAL = re.compile(r"([\\*_<>\[\]|])")


def _prose(text: str) -> str:
    """Plain help text as Markdown: one paragraph, its `code spans` kept, everything else shown literally."""
    text = " ".join(text.split())
    pieces, start = [], 0
    for match in _CODE_SPAN.finditer(text):
        pieces.append(_MARKDOWN_SPECIAL.sub(r"\\\1", text[start:match.start()]))
        pieces.append(match.group(0))  # a table keeps a | inside a code span in its cell
        start = match.end()
    pieces.append(_MARKDOWN_SPECIAL.sub(r"\\\1", text[start:]))
    return "".join(pieces)


def _code(text: str) -> str:
    """Inline code that may hold backticks (a ``|`` in a code span does not split a table cell)."""
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}"


def _default(action: argparse.Action, help_text: str) -> str | None:
    """The default worth stating: not None / False / suppressed, and not already stated by the help text."""
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction)) or action.option_strings == []:
        return None
    if action.default in (None, False, argparse.SUPPRESS) or "default" in help_text.lower():
        return None
    return repr(action.default) if isinstance(action.default, str) and not action.default else str(action.default)


def _argument_rows(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    formatter = parser._get_formatter()
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        invocation = formatter._format_action_invocation(action)
        help_text = formatter._expand_help(action) if action.help else ""
        description = _prose(help_text) if help_text else ""
        extras = []
        if action.choices is not None:
            extras.append("choices: " + ", ".join(_code(str(c)) for c in action.choices))
        default = _default(action, help_text)
        if default is not None:
            extras.append(f"default: {_code(default)}")
        if action.required and action.option_strings:
            extras.append("required")
        if extras:
            note = "; ".join(extras)
            description = (description.rstrip(".") + ". " if description else "") + note[0].upper() + note[1:] + "."
        rows.append((_code(invocation), description))
    return rows


def _command_rows(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> list[tuple[str, str]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return [(f"[`{name}`](#{anchor((*path, name))})", _prose(helps.get(name, "")))
                    for name in action.choices]
    return []


def _table(header: tuple[str, str], rows: list[tuple[str, str]]) -> list[str]:
    return [f"| {header[0]} | {header[1]} |", "| --- | --- |", *(f"| {a} | {b} |" for a, b in rows)]


def command_markdown(path: tuple[str, ...], parser: argparse.ArgumentParser, heading_level: int) -> list[str]:
    """One command's section: heading, description, usage, subcommands and arguments."""
    title = " ".join(path)
    lines = [f"{'#' * heading_level} `{title}` {{ #{anchor(path)} }}", ""]
    if parser.description:
        description = parser.description % {"prog": parser.prog} if "%(prog)" in parser.description else \
            parser.description
        lines += [_prose(description), ""]
    usage = _ANSI.sub("", parser.format_usage()).strip()
    lines += ["```text", usage, "```", ""]
    commands = _command_rows(parser, path)
    if commands:
        lines += [*_table(("command", "what it does"), commands), ""]
    arguments = _argument_rows(parser)
    if arguments:
        lines += [*_table(("argument", "meaning"), arguments), ""]
    if parser.epilog:
        lines += [_prose(parser.epilog), ""]
    return lines


def help_markdown(heading_level: int = 2) -> str:
    """The reference of ``binarize`` and of every command and subcommand below it, generated from its parser.

    Each command gets a section (its heading ``binarize bench overhead`` one level below its parent command's) with
    its description, its usage line, its subcommands and every argument with its help, choices and default.
    """
    with _plain_terminal():
        parser = build_parser()
        sections: list[str] = []
        for path, sub in walk(parser):
            level = heading_level + max(0, len(path) - 2)
            sections += command_markdown(path, sub, level)
    return "\n".join(sections).rstrip() + "\n"


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


def run_command(command_line: str, files: Sequence[str] = ()) -> str:
    """Run ``binarize ...`` in-process and return what it printed; raise if it does not exit with 0."""
    return run_command_files(command_line, files)[0]


def run_command_files(command_line: str, files: Sequence[str] = ()) -> tuple[str, dict[str, bytes]]:
    """Run ``binarize ...`` in-process in a scratch folder: what it printed and the contents of ``files`` it wrote.

    Raises if the command does not exit with 0 or a file is missing.
    """
    import shlex

    argv = shlex.split(command_line)
    if not argv or argv[0] != "binarize":
        raise ValueError(f"expected a `binarize ...` command, got {command_line!r}")
    out, err = io.StringIO(), io.StringIO()
    with _plain_terminal(), _scratch_directory(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv[1:])
        if code != 0:
            raise RuntimeError(f"`{command_line}` exited with {code}: {err.getvalue().strip()}")
        written = {name: Path(name).read_bytes() for name in files}
    return out.getvalue().rstrip(), written
