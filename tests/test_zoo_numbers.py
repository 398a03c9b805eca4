"""The quality numbers the README and the documentation give for the trained zoo models are their cards' numbers.

Any Markdown table whose header has the columns ``chelsea``, ``flower``, ``mean PSNR-Y``, ``vs bicubic`` and
``mean SSIM-Y`` is checked: a row naming ``zoo:NAME`` must hold NAME's card numbers (whole photos, the card's DDIM
steps), a ``bicubic`` row the bicubic numbers of the cards in the same table (which are all of one scale).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from binarize.zoo import TRAINED

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COLUMNS = ("chelsea", "flower", "mean PSNR-Y", "vs bicubic", "mean SSIM-Y")


def _cells(line: str) -> list[str]:
    return [cell.strip().strip("*") for cell in line.strip().strip("|").split("|")]


def quality_rows() -> list[tuple[str, int, dict[str, str], str, tuple[str, ...]]]:
    """``(page, line number, {column: cell}, label, zoo models of its table)`` for every row of every quality
    table."""
    found = []
    for page in PAGES:
        header: list[str] | None = None
        table: list[tuple[str, int, dict[str, str], str]] = []
        for number, line in enumerate([*page.read_text(encoding="utf-8").splitlines(), ""], 1):
            if not line.startswith("|"):
                models = tuple(m.group(1) for *_, label in table if (m := re.search(r"zoo:([\w.-]+)", label)))
                found += [(*row, models) for row in table]
                header, table = None, []
                continue
            cells = _cells(line)
            if header is None:
                names = [re.sub(r"\s+\d+x\d+$", "", cell) for cell in cells]
                header = names if all(column in names for column in COLUMNS) else []
                continue
            if not header or set(line) <= set("|- "):
                continue
            table.append((page.name, number, dict(zip(header, cells)), cells[0]))
    return found


def _expected(card: dict, key: str) -> dict[str, str]:
    """The cells a row shows for ``key`` (``bicubic`` or ``model``) of ``card``."""
    per_image = {row["name"]: row["bicubic_psnr_y" if key == "bicubic" else "psnr_y"]
                 for row in card["evaluation"]["images"]}
    values, bicubic = card["quality"][key], card["quality"]["bicubic"]
    gain = "" if key == "bicubic" else f"{values['psnr_y'] - bicubic['psnr_y']:+.2f}"
    return {"chelsea": f"{per_image['chelsea']:.2f}", "flower": f"{per_image['flower']:.2f}",
            "mean PSNR-Y": f"{values['psnr_y']:.2f}", "vs bicubic": gain, "mean SSIM-Y": f"{values['ssim_y']:.4f}"}


ROWS = quality_rows()


def test_the_pages_have_quality_tables() -> None:
    pages = {row[0] for row in ROWS}
    assert pages >= {"README.md", "bidiffsr.md"}, f"the README's and BI-DiffSR page's tables are checked, got {pages}"
    assert len(ROWS) >= 8, "each table has its bicubic row and one row per trained model"


@pytest.mark.parametrize(("page", "line", "row", "label", "models"), ROWS, ids=[f"{p}:{n}" for p, n, *_ in ROWS])
def test_a_quality_row_gives_the_cards_numbers(page: str, line: int, row: dict[str, str], label: str,
                                               models: tuple[str, ...]) -> None:
    named = re.search(r"zoo:([\w.-]+)", label)
    if named is None:
        assert label.lower().startswith("bicubic"), f"{page}:{line}: a row names its zoo model (`zoo:NAME`)"
        assert models, f"{page}:{line}: a table with a bicubic row names zoo models"
        scales = {TRAINED.get(name).card()["scale"] for name in models}
        assert len(scales) == 1, f"{page}:{line}: one table, one scale (got x{sorted(scales)})"
        card = TRAINED.get(models[0]).card()
        key = "bicubic"
    else:
        card, key = TRAINED.get(named.group(1)).card(), "model"
    expected = _expected(card, key)
    shown = {column: row.get(column, "") for column in COLUMNS}
    assert shown == expected, f"{page}:{line} differs from the card of {card['name']}"
