"""Generated parts of the zoo, BI-DiffSR and getting-started pages: the trained models' cards, the stored quality
benchmark and the report of ``binarize demo`` with its picture."""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path

import cli_page

from binarize.bench.quality import QualityResult
from binarize.zoo import TRAINED


#: The longest line of a command shown on the site (the code column's width at 1280 px).
COMMAND_COLUMNS = 88
_SHELL_BLOCK = re.compile(r"^```(?:bash|console|sh|shell)\n(.*?)^```", re.M | re.S)


def wrap_command(line: str, width: int = COMMAND_COLUMNS) -> str:
    """A long shell command split before its ``--options`` into lines of at most ``width`` characters, each but
    the last ending with a backslash (the same command for the shell)."""
    if len(line) <= width:
        return line
    head, *options = line.split(" --")
    lines, current = [], head
    for option in options:
        piece = f" --{option}"
        if len(current) + len(piece) + 2 > width:
            lines.append(current + " \\")
            current = f"    --{option}"
        else:
            current += piece
    return "\n".join([*lines, current])


def cards_markdown(heading_level: int = 2) -> str:
    """Every trained zoo model's card, its headings moved down to ``heading_level`` and its long commands split
    over lines."""
    parts = []
    for name in TRAINED.names():
        text = TRAINED.get(name).card_markdown.read_text(encoding="utf-8")
        text = re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + heading_level - 1) + " ", text, flags=re.M)
        text = _SHELL_BLOCK.sub(lambda m: m.group(0).replace(m.group(1), "\n".join(
            wrap_command(line) for line in m.group(1).splitlines()) + "\n"), text)
        parts.append(text)
    return "\n".join(parts)


def quality_markdown(path: Path) -> str:
    """The table and the checked claims of a stored ``binarize bench quality`` JSON, as printed by the command."""
    data = json.loads(path.read_text(encoding="utf-8"))
    result = QualityResult(data["mode"], data["steps"], data["device"], data["runs"], data.get("bicubic"),
                           data.get("failed", {}))
    return f"```{{.text .wrap-lines}}\n{result.format()}\n```"  # the command's output: long lines wrap


#: The demo's command, as the page shows it, and the files of it that the site shows.
DEMO_COMMAND = "binarize demo --out demo_out"
DEMO_REPORT = "demo_out/report.md"
DEMO_PICTURE = "demo_out/side_by_side.png"
#: Where the site keeps the demo's picture.
DEMO_PICTURE_SITE = "assets/demo/side_by_side.png"


def run_demo() -> dict[str, str | bytes]:
    """Run ``binarize demo`` (about half a minute): what it printed, its Markdown report and its picture."""
    printed, files = cli_page.run_command_files(DEMO_COMMAND, (DEMO_REPORT, DEMO_PICTURE))
    return {"printed": printed, "report": files[DEMO_REPORT].decode("utf-8"), "picture": files[DEMO_PICTURE]}


def demo_markdown(report: str, page_path: str, heading_level: int = 3) -> str:
    """The demo's ``report.md`` as part of a page: its title dropped, its sections at ``heading_level``, its
    picture taken from the site's copy (:data:`DEMO_PICTURE_SITE`) relative to the page at ``page_path``."""
    lines = report.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    text = "\n".join(lines).strip()
    text = re.sub(r"^## ", "#" * heading_level + " ", text, flags=re.M)
    picture = posixpath.relpath(DEMO_PICTURE_SITE, posixpath.dirname(page_path) or ".")
    name = posixpath.basename(DEMO_PICTURE)
    text, count = re.subn(rf"\]\({re.escape(name)}\)", f"]({picture})", text)
    if count != 1:
        raise ValueError(f"the demo's report does not show {name} exactly once")
    return "\n" + text + "\n"


def _bytes(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def overhead_markdown(paths: list[Path]) -> str:
    """A table of stored ``binarize bench overhead --json`` results, one row per file."""
    lines = ["| model, recipe | setting | step, binary / twin | time | peak, binary / twin | memory |",
             "| --- | --- | --- | --- | --- | --- |"]
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        setting = f"{data['size']} x {data['size']}, batch {data['batch']}, {data['dtype']}"
        if data.get("compile"):
            setting += ", compiled"
        lines.append(
            f"| `{data['model']}`, `{data['recipe']}` | {setting} | {data['time_binary_s'] * 1e3:.1f} / "
            f"{data['time_fp_s'] * 1e3:.1f} ms | {data['time_ratio']:.2f}x | {_bytes(data['memory_binary_bytes'])} / "
            f"{_bytes(data['memory_fp_bytes'])} | {data['memory_ratio']:.2f}x |"
        )
    return "\n" + "\n".join(lines) + "\n"
