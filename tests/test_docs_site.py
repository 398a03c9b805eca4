"""The built documentation site: it builds with ``mkdocs build --strict``, and what it shows is complete and fits.

The site is built once per test run (``built_site``, shared by the pytest-xdist workers through a file lock) and
read back with :mod:`site_html`:

* the command-line reference has a section for every command and subcommand of ``binarize.cli.build_parser()``,
  with every option and choice;
* every code block that does not wrap its lines (program output does) keeps its lines within
  :data:`CODE_COLUMNS` characters, which fit the content column of a 1280 px wide window;
* the API reference's "Parameters" tables name only parameters of the signature, its "Attributes" tables only real
  attributes, and a "Returns" section lists one value unless the function returns a tuple;
* type aliases used in signatures (``RecipeSpec``, ``BinarizerSpec``, ...) are documented, so their
  cross-references resolve;
* the demo's report shows real tables and its picture, the examples' printed output is shown, and the install
  section lists the dependencies of ``pyproject.toml``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import types
import typing
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

import pytest

from site_html import Element, parse

ROOT = Path(__file__).resolve().parent.parent
HOOKS = ROOT / "docs" / "_hooks"
#: The longest code line that fits the content column at 1280 px (docs/stylesheets/extra.css).
CODE_COLUMNS = 88


@dataclass
class Site:
    """A built site: its folder and how the build went."""

    path: Path
    returncode: int
    output: str

    def page(self, rel: str) -> Element:
        """The parsed ``rel/index.html`` (``rel`` as in the site's URLs: ``cli``, ``api/api``)."""
        self.check()
        return parse((self.path / rel / "index.html").read_text(encoding="utf-8"))

    def pages(self) -> list[tuple[str, Element]]:
        self.check()
        found = []
        for html in sorted(self.path.rglob("index.html")):
            rel = html.parent.relative_to(self.path).as_posix()
            if not rel.startswith("assets") and rel != "404":
                found.append((rel, parse(html.read_text(encoding="utf-8"))))
        return found

    def check(self) -> None:
        if self.returncode != 0:
            pytest.fail(f"mkdocs build --strict failed:\n{self.output}")


def _build(folder: Path) -> dict[str, Any]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONWARNINGS": "error"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500,
    )
    return {"returncode": result.returncode, "output": f"{result.stdout}\n{result.stderr}"}


@pytest.fixture(scope="session")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """The site, built once for the whole run (the xdist workers share one build through a lock)."""
    pytest.importorskip("mkdocs", reason="the documentation tools are part of the dev extra")
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, which every worker of this run shares
    folder = base / "docs-site"
    folder.mkdir(exist_ok=True)
    record = folder / "build.json"
    with FileLock(str(folder / "build.lock")):
        if not record.exists():
            record.write_text(json.dumps(_build(folder)), encoding="utf-8")
    data = json.loads(record.read_text(encoding="utf-8"))
    return Site(folder / "site", data["returncode"], data["output"])


def _article(page: Element) -> Element:
    article = page.find("article")
    assert article is not None
    return article


# ----------------------------------------------------------------------------------------------------------------
# The build
# ----------------------------------------------------------------------------------------------------------------
def test_mkdocs_build_strict(built_site: Site) -> None:
    from binarize.binarizers import BINARIZERS

    built_site.check()
    site = built_site.path
    for page in ("index.html", "concepts/binarizers/index.html", "recipes/index.html", "cli/index.html",
                 "api/api/index.html"):
        assert (site / page).is_file(), f"the build did not produce {page}"
    for name in BINARIZERS.names():
        assert (site / "assets" / "plots" / "binarizers" / f"{name}.png").stat().st_size > 1000
    assert (site / "assets" / "mathjax" / "tex-mml-chtml.js").is_file()
    html = (site / "concepts" / "binarizers" / "index.html").read_text(encoding="utf-8")
    assert 'class="arithmatex"' in html, "no math reached the page"
    assert "cdn" not in html.lower() and "googleapis" not in html, "the page loads something from the network"


# ----------------------------------------------------------------------------------------------------------------
# The command-line reference
# ----------------------------------------------------------------------------------------------------------------
def _commands() -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    sys.path.insert(0, str(HOOKS))
    try:
        import cli_page
    finally:
        sys.path.remove(str(HOOKS))
    from binarize.cli import build_parser

    return list(cli_page.walk(build_parser()))


def _expected_words(parser: argparse.ArgumentParser) -> list[str]:
    """What a command's section must show: each option string, each positional's name, each choice."""
    words = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            words += list(action.choices)
            continue
        words += action.option_strings or [str(action.metavar or action.dest)]
        words += [str(choice) for choice in action.choices or ()]
    return words


def _sections(article: Element) -> dict[str, str]:
    """The text of each section of a page, by the id of the heading that opens it (up to the next heading)."""
    sections: dict[str, list[str]] = {}
    current = None
    for child in article.children:
        if isinstance(child, Element) and re.fullmatch(r"h[1-6]", child.tag):
            current = child.attrs.get("id")
            sections[current or ""] = [child.text]
        elif current is not None:
            sections[current].append(child if isinstance(child, str) else child.text)
    return {key: "".join(parts) for key, parts in sections.items()}


def test_cli_reference_has_every_command_and_option(built_site: Site) -> None:
    commands = _commands()
    assert any(len(path) == 3 for path, _ in commands), "no nested subcommand found (binarize bench overhead ...)"
    sections = _sections(_article(built_site.page("cli")))
    for path, parser in commands:
        anchor = "-".join(path)
        assert anchor in sections, f"the CLI page has no section for `{' '.join(path)}`"
        text = sections[anchor]
        missing = [word for word in _expected_words(parser) if word not in text]
        assert not missing, f"the CLI page's `{' '.join(path)}` section does not show {missing}"
        if parser.description:
            first_words = " ".join(parser.description.split()[:4])
            assert first_words in " ".join(text.split()), f"`{' '.join(path)}`: its description is missing"


# ----------------------------------------------------------------------------------------------------------------
# Width
# ----------------------------------------------------------------------------------------------------------------
def _wraps(element: Element) -> bool:
    return any("wrap-lines" in a.classes for a in element.ancestors())


def _owner(element: Element) -> str:
    """The documented object a code block belongs to (its heading id), or ``""`` outside the API reference."""
    for ancestor in element.ancestors():
        if "doc-object" in ancestor.classes:
            heading = next((c for c in ancestor.children if isinstance(c, Element) and "doc-heading" in c.classes),
                           None)
            if heading is not None:
                return heading.attrs.get("id", "")
    return ""


#: Source files whose docstring examples still have longer lines (to be shortened; the test fails once a file is
#: clean, so that it leaves this list).
_LONG_DOCSTRING_LINES = {
    "binarize/diffusion/sampler.py",
    "binarize/diffusion/schedule.py",
    "binarize/nn/layers.py",
    "binarize/recipe/timestep.py",
}


def _source_file(path: str) -> str:
    """The repository path of the file that defines the documented object ``path`` (``""`` if unknown)."""
    try:
        obj = _resolve(path)
        source = inspect.getsourcefile(obj if inspect.ismodule(obj) or inspect.isclass(obj) or callable(obj)
                                       else inspect.getmodule(obj))
    except (ImportError, AttributeError, TypeError):
        return ""
    try:
        return Path(source).resolve().relative_to(ROOT).as_posix() if source else ""
    except ValueError:
        return ""


def test_code_lines_fit_the_column(built_site: Site) -> None:
    too_wide, listed = [], set()
    for rel, page in built_site.pages():
        for pre in page.find_all("pre"):
            code = pre.find("code")
            if code is None or _wraps(pre):
                continue
            owner = _owner(pre)
            for line in code.text.splitlines():
                if len(line) <= CODE_COLUMNS:
                    continue
                source = _source_file(owner) if owner else ""
                if source in _LONG_DOCSTRING_LINES:
                    listed.add(source)
                    continue
                where = f"{rel} {owner} {source}".strip()
                too_wide.append(f"{where}: {len(line)} characters: {line.strip()[:70]}")
    assert not too_wide, (
        f"{len(too_wide)} code lines are longer than {CODE_COLUMNS} characters (a reader must scroll sideways at "
        "1280 px): shorten them, or split a long command with a backslash\n" + "\n".join(too_wide)
    )
    clean = _LONG_DOCSTRING_LINES - listed
    assert not clean, f"the docstring examples of {sorted(clean)} fit now: remove them from _LONG_DOCSTRING_LINES"


# ----------------------------------------------------------------------------------------------------------------
# The API reference
# ----------------------------------------------------------------------------------------------------------------
def _resolve(path: str) -> Any:
    """The object ``binarize.x.y.Z.method`` names: the longest importable module, then attributes."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(path)


@dataclass
class Documented:
    page: str
    path: str
    sections: dict[str, list[str]]  # section title -> the first cell of each row


def _documented_objects(site: Site) -> list[Documented]:
    found = []
    for rel, page in site.pages():
        if not rel.startswith("api/"):
            continue
        for obj in page.find_all("div", "doc-object"):
            heading = next((c for c in obj.children if isinstance(c, Element) and "doc-heading" in c.classes), None)
            contents = next((c for c in obj.children if isinstance(c, Element) and "doc-contents" in c.classes),
                            None)
            if heading is None or contents is None or not heading.attrs.get("id"):
                continue
            sections: dict[str, list[str]] = {}
            title = None
            for child in contents.children:  # direct children only: members have their own doc-object
                if not isinstance(child, Element):
                    continue
                span = child.find("span", "doc-section-title")
                if child.tag == "p" and span is not None:
                    title = span.text.strip().rstrip(":")
                elif child.tag == "table" and title is not None:
                    rows = [row for row in child.find_all("tr") if "doc-section-item" in row.classes]
                    sections[title] = [(row.find("td") or row).text.strip() for row in rows]
                    title = None
                else:
                    title = None
            found.append(Documented(rel, heading.attrs["id"], sections))
    return found


def _signature_parameters(obj: Any) -> set[str] | None:
    target = obj.__init__ if inspect.isclass(obj) and not is_dataclass(obj) and "__init__" in vars(obj) else obj
    try:
        return set(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return None


def _is_attribute(cls: type, name: str) -> bool:
    if is_dataclass(cls) and name in {f.name for f in fields(cls)}:
        return True
    if hasattr(cls, name):
        return True
    for klass in inspect.getmro(cls):
        if name in vars(klass).get("__annotations__", {}):
            return True
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        if re.search(rf"\bself\.{re.escape(name)}\s*(:[^=]*)?=", source):
            return True
    return False


def _returns_tuple(obj: Any) -> bool:
    try:
        annotation = inspect.signature(obj).return_annotation
    except (TypeError, ValueError):
        return True  # cannot tell: do not judge
    if isinstance(annotation, str):
        return bool(re.match(r"(tuple|typing\.Tuple|Tuple)\[", annotation))
    return typing.get_origin(annotation) is tuple


@pytest.fixture(scope="module")
def documented(built_site: Site) -> list[Documented]:
    found = _documented_objects(built_site)
    assert len(found) > 100, "the API reference documents surprisingly few objects: is the parse still right?"
    return found


def test_parameter_tables_name_parameters(documented: list[Documented]) -> None:
    wrong = []
    for doc in documented:
        rows = doc.sections.get("Parameters")
        if not rows:
            continue
        obj = _resolve(doc.path)
        parameters = _signature_parameters(obj)
        if parameters is None:
            continue
        for row in rows:
            name = row.lstrip("*")
            if name not in parameters:
                wrong.append(f"{doc.page} {doc.path}: Parameters row {row!r} is not a parameter of {sorted(parameters)}")
    assert not wrong, "\n".join(wrong)


def test_attribute_tables_name_attributes(documented: list[Documented]) -> None:
    wrong = []
    for doc in documented:
        rows = doc.sections.get("Attributes")
        if not rows:
            continue
        obj = _resolve(doc.path)
        for row in rows:
            real = hasattr(obj, row) if isinstance(obj, types.ModuleType) else (
                _is_attribute(obj, row) if inspect.isclass(obj) else True)
            if not re.fullmatch(r"[A-Za-z_]\w*", row) or not real:
                wrong.append(f"{doc.page} {doc.path}: Attributes row {row!r} is not an attribute")
    assert not wrong, "\n".join(wrong)


def test_returns_one_value_unless_a_tuple(documented: list[Documented]) -> None:
    wrong = []
    for doc in documented:
        rows = doc.sections.get("Returns")
        if rows is None or len(rows) <= 1:
            continue
        if not _returns_tuple(_resolve(doc.path)):
            wrong.append(f"{doc.page} {doc.path}: Returns lists {len(rows)} values, but it does not return a tuple")
    assert not wrong, "\n".join(wrong)


def _type_aliases() -> dict[str, Any]:
    """Module-level type aliases of the package (``X = A | B``, ``X = Union[...]``), by their full name."""
    import pkgutil

    import binarize

    aliases = {}
    for info in pkgutil.walk_packages(binarize.__path__, "binarize."):
        try:
            module = importlib.import_module(info.name)
        except Exception:  # noqa: BLE001 - optional parts (e.g. CUDA kernels) are not this test's concern
            continue
        for name, value in vars(module).items():
            if name.startswith("_") or not name[0].isupper():
                continue
            if isinstance(value, types.UnionType) or (typing.get_origin(value) is typing.Union):
                aliases[f"{module.__name__}.{name}"] = value
    return aliases


def test_type_aliases_in_signatures_are_documented(built_site: Site) -> None:
    aliases = _type_aliases()
    assert {"binarize.recipe.loader.RecipeSpec", "binarize.binarizers.modules.BinarizerSpec"} <= set(aliases)
    unresolved = set()
    for rel, page in built_site.pages():
        if not rel.startswith("api/"):
            continue
        for span in page.find_all("span"):
            title = span.attrs.get("title", "")
            if title in aliases and span.parent is not None and span.parent.tag != "a":
                unresolved.add(f"{rel}: {title}")
    assert not unresolved, (
        "these type aliases appear in signatures but are documented nowhere (add `::: module.Alias` to an API page "
        "and give the alias a docstring):\n" + "\n".join(sorted(unresolved))
    )


# ----------------------------------------------------------------------------------------------------------------
# Generated content
# ----------------------------------------------------------------------------------------------------------------
def test_demo_report_shows_tables_and_picture(built_site: Site) -> None:
    article = _article(built_site.page("getting-started"))
    headers = [[th.text.strip() for th in table.find_all("th")] for table in article.find_all("table")]
    assert any("mean PSNR-Y" in h and "vs bicubic" in h for h in headers), f"no quality table on the page: {headers}"
    assert any("params (M)" in h for h in headers), f"no cost table on the page: {headers}"
    assert "| ---" not in article.text, "a Markdown table is shown as raw text"
    pictures = [img.attrs["src"] for img in article.find_all("img") if "side_by_side" in img.attrs.get("src", "")]
    assert pictures, "the demo's picture is not on the page"
    picture = (built_site.path / "getting-started" / pictures[0]).resolve()
    assert picture.is_file() and picture.stat().st_size > 10_000, f"{pictures[0]} is not in the site"


def test_examples_show_their_output(built_site: Site) -> None:
    sys.path.insert(0, str(HOOKS))
    try:
        import example_outputs
    finally:
        sys.path.remove(str(HOOKS))
    missing = []
    for source in sorted((ROOT / "docs").rglob("*.md")):
        if "_hooks" in source.parts:
            continue
        blocks = example_outputs.python_blocks(source.read_text(encoding="utf-8"))
        printing = [line for _, body, line in blocks if re.search(r"^print\(", body, re.M)]
        if not printing:
            continue
        rel = source.relative_to(ROOT / "docs").with_suffix("").as_posix()
        rel = rel.removesuffix("/index") if rel != "index" else "."
        page = built_site.page(rel)
        titles = [s for s in page.find_all("span", "filename") if s.text.strip() == example_outputs.TITLE]
        if len(titles) < len(printing):  # a block that prints at its top level always shows an Output
            missing.append(f"{source.relative_to(ROOT)}: {len(titles)} Output blocks for the blocks at lines "
                           f"{printing}")
    assert not missing, "pages whose examples print show no Output block:\n" + "\n".join(missing)


def test_install_section_lists_pyproject_dependencies(built_site: Site) -> None:
    sys.path.insert(0, str(HOOKS))
    try:
        import dependencies
    finally:
        sys.path.remove(str(HOOKS))
    required, extras = dependencies.requirements()
    text = _article(built_site.page("getting-started")).text
    for requirement in required + [r for items in extras.values() for r in items]:
        assert requirement.name in text, f"getting-started does not list the dependency {requirement.name}"
    for requirement in required:
        for spec in requirement.specifier:
            assert f"{spec.operator} {spec.version}" in text, f"getting-started shows no {requirement}"
