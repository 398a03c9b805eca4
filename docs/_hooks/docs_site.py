"""MkDocs hooks of the binarize documentation site (``hooks:`` in ``mkdocs.yml``).

At build time, from the installed package (nothing generated is committed):

* the recipe gallery (``recipes/*.md``), one page per shipped recipe, and its navigation entries;
* plots of every registered binarizer (``assets/plots/binarizers/NAME.png``);
* the BI-DiffSR architecture figures, drawn from the binarized ``zoo:bidiffsr-unet``
  (``assets/figures/bidiffsr/unet.svg`` and ``blocks.svg``);
* MathJax, copied from the ``django-static-mathjax`` Python package into ``assets/mathjax/`` (no CDN: the site
  works offline);
* what the pages' ```python examples print, shown under each example (``example_outputs``);
* placeholders in the Markdown sources: ``<!-- generated: cli-help -->`` (the reference of every command and
  subcommand, from the ``binarize`` parser), ``<!-- generated: run binarize ... -->`` (a command run in-process,
  shown with its output), ``<!-- generated: demo-report -->`` (the report of ``binarize demo``, its tables and its
  picture, ``assets/demo/side_by_side.png``), ``<!-- generated: graph-functions -->`` /
  ``<!-- generated: graph-factories -->`` (the functions pattern steps can name and the registered graph-rule
  factories), ``<!-- generated: zoo-cards -->`` (the cards of the trained zoo models),
  ``<!-- generated: quality-table FILE -->`` (a stored ``binarize bench quality`` result),
  ``<!-- generated: overhead-table FILE ... -->`` (stored ``binarize bench overhead --json`` results) and
  ``<!-- generated: dependencies -->`` (the dependencies and extras of ``pyproject.toml``).

The gallery, the plots, the figures, the demo and the example outputs are cached by a hash of their inputs in
``.cache/docs`` (``build_cache``), so that ``mkdocs serve`` rebuilds quickly after an edit; ``BINARIZE_DOCS_CACHE=0``
computes everything afresh.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import architecture  # noqa: E402
import build_cache  # noqa: E402
import cli_page  # noqa: E402
import dependencies  # noqa: E402
import example_outputs  # noqa: E402
import gallery  # noqa: E402
import graph_tables  # noqa: E402
import plots  # noqa: E402
import showcase_pages  # noqa: E402
from mkdocs.config.defaults import MkDocsConfig  # noqa: E402
from mkdocs.exceptions import PluginError  # noqa: E402
from mkdocs.structure.files import File, Files  # noqa: E402
from mkdocs.structure.pages import Page  # noqa: E402
from mkdocs.utils.meta import get_data  # noqa: E402

from binarize.recipe import available_recipes  # noqa: E402

log = logging.getLogger(f"mkdocs.hooks.{__name__}")
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
    """Hash the sources for this build's cache keys; expand the "Recipe gallery" navigation entry into the index
    plus one page per shipped recipe."""
    build_cache.start_build()
    for i, item in enumerate(config.nav or []):
        if isinstance(item, dict) and GALLERY_TITLE in item:
            pages: list[Any] = [f"{gallery.GALLERY_DIR}/index.md"]
            pages += [{name: f"{gallery.GALLERY_DIR}/{name}.md"} for name in available_recipes()]
            config.nav[i] = {GALLERY_TITLE: pages}
            break
    return config


#: Results of the cached steps of this build, for ``on_page_markdown``.
_BUILD: dict[str, Any] = {}


def _generated(name: str, compute: Any, *hooks: ModuleType) -> dict[str, str | bytes]:
    """``compute()``, cached by the package's source and the source of the hook modules ``hooks`` it runs."""
    start = time.perf_counter()
    computed = []
    result = build_cache.cached(name, build_cache.key(name, *hooks), lambda: computed.append(1) or compute())
    how = f"generated in {time.perf_counter() - start:.1f} s" if computed else "taken from .cache/docs"
    log.info(f"docs hooks: {name} {how}")
    return result


def _page_markdown(file: File) -> str:
    """A page's Markdown as ``on_page_markdown`` receives it (without its YAML front matter)."""
    return get_data(file.content_string)[0]


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated pages, plots, figures, the demo's picture and the MathJax files; run the examples."""
    for path, text in _generated("gallery", gallery.render_all, gallery).items():
        files.append(File.generated(config, path, content=text))
    for path, png in _generated("plots", plots.render_all, plots).items():
        files.append(File.generated(config, path, content=png))
    for path, svg in _generated("architecture", architecture.render_all, architecture).items():
        files.append(File.generated(config, path, content=svg))
    demo = _generated("demo", showcase_pages.run_demo, showcase_pages, cli_page)
    _BUILD["demo"] = demo
    files.append(File.generated(config, showcase_pages.DEMO_PICTURE_SITE, content=demo["picture"]))
    sources = {f.src_uri: _page_markdown(f) for f in files.documentation_pages() if f.abs_src_path}
    start = time.perf_counter()
    _BUILD["sources"], _BUILD["outputs"] = sources, _example_outputs(sources)
    log.info(f"docs hooks: example outputs of {len(_BUILD['outputs'])} pages in {time.perf_counter() - start:.1f} s")
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
        return f"```{{.console .wrap-lines}}\n$ {arg}\n{output}\n```"  # the output's long lines wrap
    if kind == "demo-report":
        return showcase_pages.demo_markdown(str(_BUILD["demo"]["report"]), page.file.src_uri, int(arg or 3))
    if kind == "overhead-table":
        return showcase_pages.overhead_markdown([SITE_ROOT / path for path in arg.split()])
    if kind == "graph-functions":
        return graph_tables.functions_markdown()
    if kind == "graph-factories":
        return graph_tables.factories_markdown()
    if kind == "zoo-cards":
        return showcase_pages.cards_markdown(int(arg or 2))
    if kind == "dependencies":
        return dependencies.dependencies_markdown()
    if kind == "quality-table":
        return showcase_pages.quality_markdown(SITE_ROOT / arg)
    raise PluginError(f"{page.file.src_uri}: unknown placeholder <!-- generated: {kind} -->")


def _example_outputs(pages: dict[str, str]) -> dict[str, list[str]]:
    try:
        return example_outputs.outputs_for(pages)
    except RuntimeError as exc:  # a failing example must fail the build
        raise PluginError(str(exc)) from exc


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Show what the page's Python examples print, and replace the ``<!-- generated: ... -->`` placeholders."""
    if example_outputs.python_blocks(markdown):
        outputs = _BUILD.get("outputs", {}).get(page.file.src_uri)
        if outputs is None or _BUILD["sources"].get(page.file.src_uri) != markdown:
            # the page changed since on_files read it (an edit during the build): run it again
            outputs = _example_outputs({page.file.src_uri: markdown})[page.file.src_uri]
        markdown = example_outputs.with_outputs(markdown, outputs)
    return PLACEHOLDER.sub(lambda m: _expand(m, page), markdown)
