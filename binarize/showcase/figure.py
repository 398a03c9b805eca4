"""Comparison figures with their labels inside the picture: one row per image, one captioned column per method.

A caption is drawn in a white band above its panel with Pillow's default font (its scalable version where Pillow
has FreeType, the built-in bitmap font otherwise), so a figure explains itself wherever it is shown, without the
report beside it.

Examples:
    >>> import torch
    >>> panel = torch.zeros(3, 40, 60)
    >>> figure = captioned_grid([[("bicubic 30.1 dB", panel), ("ground truth", panel)]])
    >>> figure.shape[0], figure.shape[-1] == 2 * 60 + GAP
    (3, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

__all__ = ["CAPTION_HEIGHT", "GAP", "caption_band", "captioned_grid"]

#: Height of a caption band in pixels.
CAPTION_HEIGHT = 22

#: White pixels between neighbouring panels and rows.
GAP = 4


@lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=CAPTION_HEIGHT - 8)
    except (OSError, ValueError, TypeError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def caption_band(text: str, width: int) -> Tensor:
    """A white ``(3, CAPTION_HEIGHT, width)`` band with ``text`` in black, centred (cut at the right if too long)."""
    band = Image.new("RGB", (width, CAPTION_HEIGHT), "white")
    draw = ImageDraw.Draw(band)
    font = _font()
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = max((width - (right - left)) // 2, 2) - left
    y = (CAPTION_HEIGHT - (bottom - top)) // 2 - top
    draw.text((x, y), text, fill="black", font=font)
    return torch.from_numpy(np.asarray(band, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def captioned_grid(rows: Sequence[Sequence[tuple[str, Tensor]]]) -> Tensor:
    """Rows of ``(caption, image)`` panels (each ``(3, H, W)`` in ``[0, 1]``; a row's panels share their height) as
    one ``(3, H_total, W_total)`` figure on white, every panel under its caption."""
    if not rows or not all(rows):
        raise ValueError("a figure needs at least one row, and every row at least one panel")
    strips = []
    for row in rows:
        heights = {panel.shape[-2] for _, panel in row}
        if len(heights) != 1:
            raise ValueError(f"the panels of one row must have one height, got {sorted(heights)}")
        columns = [torch.cat([caption_band(text, panel.shape[-1]), panel.clamp(0, 1)], dim=-2) for text, panel in row]
        spaced = [torch.nn.functional.pad(c, (0, GAP), value=1.0) for c in columns[:-1]] + columns[-1:]
        strips.append(torch.cat(spaced, dim=-1))
    width = max(strip.shape[-1] for strip in strips)
    padded = [torch.nn.functional.pad(s, (0, width - s.shape[-1], 0, GAP), value=1.0) for s in strips]
    return torch.cat(padded, dim=-2)[..., : sum(s.shape[-2] for s in strips) + GAP * (len(strips) - 1), :]
