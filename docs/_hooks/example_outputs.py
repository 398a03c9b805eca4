"""What the pages' Python examples print, shown under each example as an "Output" block.

The blocks of one page run in order in one namespace (a page is one story, as ``tests/test_docs.py`` runs them), in
a fresh temporary working directory, with Python's, NumPy's and torch's random generators seeded with 0 first, so
the outputs are the same from build to build. All pages that need running run in one child process (the examples
register binarizers, write files and change torch settings: none of that reaches the build itself), and each page's
outputs are cached by its Markdown and :func:`build_cache.source_digest`.

An example that raises fails the build, naming the page and the line of the block.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import traceback
from pathlib import Path

import build_cache

#: An opening fence (possibly indented, e.g. inside an admonition), its language, its body, the closing fence: the
#: same parse as ``tests/test_docs.py``.
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.MULTILINE | re.DOTALL)
PYTHON = ("python", "py")
#: The title of the block that shows an example's output (whose long lines wrap: ``.wrap-lines`` in extra.css).
TITLE = "Output"


def python_blocks(markdown: str) -> list[tuple[int, str, int]]:
    """``(end offset, dedented body, line)`` of every ```python block of a page."""
    return [
        (m.end(), textwrap.dedent(m.group("body")), markdown.count("\n", 0, m.start()) + 1)
        for m in FENCE.finditer(markdown)
        if m.group("lang").lower() in PYTHON
    ]


def _page_key(page: str, markdown: str) -> str:
    return build_cache.key("example-outputs", sys.modules[__name__], page, markdown)


def _cache_name(page: str) -> str:
    return "example-outputs/" + re.sub(r"[^\w.-]", "_", page)


def outputs_for(pages: dict[str, str]) -> dict[str, list[str]]:
    """Per page (its docs path to its Markdown): what each of its ```python blocks printed, in order.

    Pages without Python blocks are left out; the others are run in one child process unless cached.
    """
    results: dict[str, list[str]] = {}
    missing: dict[str, list[tuple[str, int]]] = {}
    for page, markdown in pages.items():
        blocks = python_blocks(markdown)
        if not blocks:
            continue
        hit = build_cache.lookup(_cache_name(page), _page_key(page, markdown))
        if hit is not None:
            results[page] = json.loads(hit["outputs"])
        else:
            missing[page] = [(body, line) for _, body, line in blocks]
    if missing:
        computed = _run_child(missing)
        for page, outputs in computed.items():
            results[page] = outputs
            build_cache.store(_cache_name(page), _page_key(page, pages[page]), {"outputs": json.dumps(outputs)})
    return results


def _run_child(pages: dict[str, list[tuple[str, int]]]) -> dict[str, list[str]]:
    request = json.dumps({page: [[body, line] for body, line in blocks] for page, blocks in pages.items()})
    with tempfile.TemporaryDirectory() as folder:
        answer = Path(folder) / "outputs.json"
        result = subprocess.run([sys.executable, __file__, str(answer)], input=request, capture_output=True,
                                text=True, cwd=build_cache.SITE_ROOT, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"running the pages' Python examples failed:\n{result.stderr.strip()}")
        return json.loads(answer.read_text(encoding="utf-8"))


def with_outputs(markdown: str, outputs: list[str]) -> str:
    """``markdown`` with an "Output" block after each ```python block that printed something."""
    blocks = python_blocks(markdown)
    if len(blocks) != len(outputs):
        raise ValueError(f"{len(blocks)} python blocks but {len(outputs)} outputs")
    pieces, start = [], 0
    for (end, _, _), output, match in zip(blocks, outputs, _python_matches(markdown), strict=True):
        pieces.append(markdown[start:end])
        start = end
        if output.strip():
            indent = match.group("indent")
            body = "\n".join(indent + line if line else line for line in output.rstrip("\n").splitlines())
            pieces.append(f'\n\n{indent}```{{.text .wrap-lines title="{TITLE}"}}\n{body}\n{indent}```')
    pieces.append(markdown[start:])
    return "".join(pieces)


def _python_matches(markdown: str) -> list[re.Match[str]]:
    return [m for m in FENCE.finditer(markdown) if m.group("lang").lower() in PYTHON]


# ----------------------------------------------------------------------------------------------------------------
# The child process
# ----------------------------------------------------------------------------------------------------------------
def _seed() -> None:
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def _run_page(page: str, blocks: list[tuple[str, int]]) -> list[str]:
    namespace: dict[str, object] = {"__name__": f"docs_{Path(page).stem.replace('-', '_')}"}
    outputs = []
    previous = os.getcwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        try:
            _seed()
            for body, line in blocks:
                code = compile(body, f"{page}:{line}", "exec")
                captured = io.StringIO()
                try:
                    with contextlib.redirect_stdout(captured):
                        exec(code, namespace)  # noqa: S102 - running the documentation's own examples is the point
                except Exception as error:
                    raise RuntimeError(f"the ```python block at {page}:{line} failed: {error!r}\n"
                                       f"{traceback.format_exc()}") from error
                outputs.append(captured.getvalue())
        finally:
            os.chdir(previous)
    return outputs


def _child_main() -> int:
    import torch

    torch.set_num_threads(1)  # as the tests run them; more threads only contend on a busy machine
    request = json.loads(sys.stdin.read())
    results = {page: _run_page(page, [(body, line) for body, line in blocks]) for page, blocks in request.items()}
    Path(sys.argv[1]).write_text(json.dumps(results), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
