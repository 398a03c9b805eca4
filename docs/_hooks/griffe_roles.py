"""A Griffe extension that turns the reStructuredText markup used in binarize's docstrings into Markdown.

The docstrings follow the Google style (sections ``Args:``, ``Returns:``, ...) but write inline markup the Sphinx
way. mkdocstrings renders Markdown, so before parsing:

* ``:math:`x``` becomes ``\\(x\\)`` and a ``.. math::`` directive a ``$$ ... $$`` block (rendered by MathJax);
* ``:class:`~pkg.mod.Name``` (and ``:func:``, ``:mod:``, ``:data:``, ``:attr:``, ``:meth:``, ``:exc:``) becomes a
  cross-reference when the target is documented on the site, and plain code otherwise;
* ``.. code-block:: LANG`` followed by an indented block becomes a fenced code block;
* an ``Example:`` section header becomes ``Examples:``, the spelling Griffe's Google parser knows (otherwise the
  doctest would be rendered as prose).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(class|func|mod|data|attr|meth|exc|obj):`(~?)([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_EXAMPLE_HEADER = re.compile(r"^Example:[ \t]*$", re.MULTILINE)
_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. (?P<kind>math|code-block)::[ \t]*(?P<arg>.*)$")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.group(2), match.group(3).strip()
    shown = target.rsplit(".", 1)[-1] if tilde else target
    if target.startswith("binarize"):
        # An optional cross-reference: a link where the target is documented, plain code otherwise.
        return f'<autoref identifier="{target}" optional><code>{shown}</code></autoref>'
    return f"`{shown}`"


def _blocks(text: str) -> str:
    """Rewrite ``.. math::`` and ``.. code-block::`` directives (with their indented bodies) as Markdown blocks."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent, kind, arg = match.group("indent"), match.group("kind"), match.group("arg").strip()
        body: list[str] = [arg] if kind == "math" and arg else []
        i += 1
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():
            body.pop()
        while body and not body[0].strip():
            body.pop(0)
        strip = min((len(b) - len(b.lstrip()) for b in body if b.strip() and b is not arg), default=0)
        body = [b if b is arg else b[strip:] for b in body]
        if kind == "math":
            out += ["", f"{indent}$$", *[indent + b for b in body], f"{indent}$$", ""]
        else:
            out += ["", f"{indent}```{arg}", *[indent + b for b in body], f"{indent}```", ""]
    return "\n".join(out)


def convert(text: str) -> str:
    """The Markdown equivalent of a docstring written with reStructuredText roles and directives."""
    text = _EXAMPLE_HEADER.sub("Examples:", text)
    text = _blocks(text)
    text = _MATH_ROLE.sub(lambda m: f"\\({m.group(1)}\\)", text)
    return _ROLE.sub(_role, text)


class RestRoles(griffe.Extension):
    """Convert every docstring of the loaded package once it is fully loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen: set[int] = set()
        self._visit(pkg, seen)

    def _visit(self, obj: griffe.Object, seen: set[int]) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
        for member in obj.members.values():
            if not member.is_alias:
                self._visit(member, seen)  # type: ignore[arg-type]
