"""MkDocs hooks of the binarize documentation site (``hooks:`` in ``mkdocs.yml``).

At build time, from the installed package (nothing generated is committed):

* the recipe gallery (``recipes/*.md``), one page per shipped recipe, and its navigation entries;
* plots of every registered binarizer (``assets/plots/binarizers/NAME.png``);
* the BI-DiffSR architecture figures, drawn from the binarized ``zoo:bidiffsr-unet``
  (``assets/figures/bidiffsr/unet.svg`` and ``blocks.svg``);
* MathJax, copied from the ``django-static-mathjax`` Python package into ``assets/mathjax/`` (no CDN: the site
  works offline);
* placeholders in the Markdown sources: ``<!-- generated: cli-help -->`` (the argparse help of every command),
  ``<!-- generated: run binarize ... -->`` (a command run in-process, shown with its output), and
  ``<!-- generated: graph-functions -->`` / ``<!-- generated: graph-factories -->`` (the functions pattern steps can
  name and the registered graph-rule factories), ``<!-- generated: zoo-cards -->`` (the cards of the trained zoo
  models) and ``<!-- generated: quality-table FILE -->`` (a stored ``binarize bench quality`` result).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import architecture  # noqa: E402
import cli_page  # noqa: E402
import gallery  # noqa: E402
import graph_tables  # noqa: E402
import plots  # noqa: E402
import showcase_pages  # noqa: E402
from mkdocs.config.defaults import MkDocsConfig  # noqa: E402
from mkdocs.exceptions import PluginError  # noqa: E402
from mkdocs.structure.files import File, Files  # noqa: E402
from mkdocs.structure.pages import Page  # noqa: E402

from binarize.recipe import available_recipes  # noqa: E402

GALLERY_TITLE = "Recipe gallery"
MATHJAX_DIR = "assets/mathjax"
#: What the site needs of MathJax's ``es5`` folder (the other combined builds are left out).
_MATHJAX_SKIP = re.compile(r"^(tex-svg.*|tex-chtml.*|mml-.*|tex-mml-svg\.js|node-main\.js|output/svg.*)$")
PLACEHOLDER = re.compile(r"<!--\s*generated:\s*(?P<kind>[\w-]+)(?P<arg>[^>]*?)\s*-->")


def mathjax_root() -> Path:
    """The ``es5`` folder of the MathJax copy shipped by the ``django-static-mathjax`` package."""
    try:
        import mathjax  # provided by the django-static-mathjax distribution (MathJax 3, Apache-2.0)
    except ImportError as exc:
        raise PluginError(
            "MathJax is not installed: `pip install django-static-mathjax` (part of binarize's dev extra); the site "
            "ships MathJax itself instead of loading it from a CDN"
        ) from exc
    root = Path(mathjax.__file__).parent / "static" / "mathjax"
    if not (root / "es5" / "tex-mml-chtml.js").is_file():
        raise PluginError(f"no es5/tex-mml-chtml.js under {root}: unexpected django-static-mathjax layout")
    return root


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Expand the "Recipe gallery" navigation entry into the index plus one page per shipped recipe."""
    for i, item in enumerate(config.nav or []):
        if isinstance(item, dict) and GALLERY_TITLE in item:
            pages: list[Any] = [f"{gallery.GALLERY_DIR}/index.md"]
            pages += [{name: f"{gallery.GALLERY_DIR}/{name}.md"} for name in available_recipes()]
            config.nav[i] = {GALLERY_TITLE: pages}
            break
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated pages, plots, figures and the MathJax files."""
    for path, text in gallery.render_all().items():
        files.append(File.generated(config, path, content=text))
    for path, png in plots.render_all().items():
        files.append(File.generated(config, path, content=png))
    for path, svg in architecture.render_all().items():
        files.append(File.generated(config, path, content=svg))
    root = mathjax_root()
    files.append(File.generated(config, f"{MATHJAX_DIR}/LICENSE", abs_src_path=str(root / "LICENSE")))
    es5 = root / "es5"
    for source in sorted(es5.rglob("*")):
        rel = source.relative_to(es5).as_posix()
        if source.is_file() and not _MATHJAX_SKIP.match(rel):
            files.append(File.generated(config, f"{MATHJAX_DIR}/{rel}", abs_src_path=str(source)))
    return files


#: The folder of ``mkdocs.yml``: file paths in placeholders are relative to it.
SITE_ROOT = Path(__file__).resolve().parents[2]


def _expand(match: re.Match[str], page: Page) -> str:
    kind, arg = match.group("kind"), match.group("arg").strip()
    if kind == "cli-help":
        return cli_page.help_markdown(heading_level=int(arg or 3))
    if kind == "run":
        try:
            output = cli_page.run_command(arg)
        except Exception as exc:  # a failing example must fail the build, naming the page
            raise PluginError(f"{page.file.src_uri}: {exc}") from exc
        return f"```console\n$ {arg}\n{output}\n```"
    if kind == "graph-functions":
        return graph_tables.functions_markdown()
    if kind == "graph-factories":
        return graph_tables.factories_markdown()
    if kind == "zoo-cards":
        return showcase_pages.cards_markdown(int(arg or 2))
    if kind == "quality-table":
        return showcase_pages.quality_markdown(SITE_ROOT / arg)
    raise PluginError(f"{page.file.src_uri}: unknown placeholder <!-- generated: {kind} -->")


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Replace the ``<!-- generated: ... -->`` placeholders."""
    return PLACEHOLDER.sub(lambda m: _expand(m, page), markdown)
