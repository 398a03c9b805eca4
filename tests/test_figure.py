"""Captioned comparison figures (binarize.showcase.figure): the labels are inside the picture."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from binarize.showcase.figure import CAPTION_HEIGHT, GAP, caption_band, captioned_grid


def test_a_caption_is_dark_text_on_white_centred_in_its_band() -> None:
    band = caption_band("full precision, 36.31 dB", 300)
    assert band.shape == (3, CAPTION_HEIGHT, 300) and band.min() < 0.3 and band.max() == 1.0
    ink = (band.mean(0) < 0.5).nonzero()
    columns = ink[:, 1]
    assert abs((columns.min() + columns.max()) / 2 - 150) < 4  # centred
    assert not torch.equal(band, caption_band("BI-DiffSR, 35.90 dB", 300))  # the text is drawn, not a blank band


@settings(max_examples=15, deadline=None)
@given(st.lists(st.lists(st.integers(8, 40), min_size=1, max_size=4), min_size=1, max_size=3), st.integers(8, 30))
def test_grid_places_every_panel_under_its_caption(widths: list[list[int]], height: int) -> None:
    rows = [[(f"panel {r}.{c}", torch.full((3, height + r, w), 0.25)) for c, w in enumerate(row)]
            for r, row in enumerate(widths)]
    figure = captioned_grid(rows)
    expected_width = max(sum(row) + GAP * (len(row) - 1) for row in widths)
    expected_height = sum(CAPTION_HEIGHT + height + r for r in range(len(widths))) + GAP * (len(widths) - 1)
    assert figure.shape == (3, expected_height, expected_width)
    top = 0
    for r, row in enumerate(widths):  # every panel's pixels sit right below its band
        left = 0
        for w in row:
            panel = figure[:, top + CAPTION_HEIGHT: top + CAPTION_HEIGHT + height + r, left: left + w]
            assert torch.equal(panel, torch.full_like(panel, 0.25))
            left += w + GAP
        top += CAPTION_HEIGHT + height + r + GAP


def test_bad_grids_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="at least one row"):
        captioned_grid([])
    with pytest.raises(ValueError, match="one height, got \\[8, 9\\]"):
        captioned_grid([[("a", torch.zeros(3, 8, 8)), ("b", torch.zeros(3, 9, 8))]])
