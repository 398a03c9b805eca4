"""The eight flips and rotations of a square patch (the dihedral group), applied alike to HR, LR and cond.

A transform is three independent bits: a horizontal flip (mirror the columns), a vertical flip (mirror the rows)
and a 90-degree rotation (counter-clockwise, :func:`torch.rot90` over the last two dims), applied in that order.
The bicubic kernels are symmetric and sample at pixel centres, so each transform commutes with downscaling: an
aligned LR/HR pair stays aligned when both are transformed alike.

Examples:
    >>> import torch
    >>> patch = torch.arange(4.0).reshape(1, 2, 2)
    >>> Dihedral(flip_h=True)(patch).tolist()
    [[[1.0, 0.0], [3.0, 2.0]]]
    >>> Dihedral(rot90=True)(patch).tolist()
    [[[1.0, 3.0], [0.0, 2.0]]]
    >>> len({Dihedral.random(torch.Generator().manual_seed(s)) for s in range(64)})
    8
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Dihedral"]


@dataclass(frozen=True)
class Dihedral:
    """One of the eight flips/rotations of a square image; the identity when every field is False.

    Attributes:
        flip_h: mirror left-right (the last dim).
        flip_v: mirror top-bottom (the second-to-last dim).
        rot90: then rotate by 90 degrees counter-clockwise.
    """

    flip_h: bool = False
    flip_v: bool = False
    rot90: bool = False

    @classmethod
    def random(cls, generator: torch.Generator) -> Dihedral:
        """Draw each of the three bits with probability 1/2 from ``generator`` (all eight transforms equally)."""
        flip_h, flip_v, rot90 = (bool(bit) for bit in torch.randint(0, 2, (3,), generator=generator).tolist())
        return cls(flip_h, flip_v, rot90)

    def __call__(self, img: Tensor) -> Tensor:
        """Apply the transform to ``img`` ``(..., H, W)``; returns a new tensor (or ``img`` for the identity)."""
        if self.flip_h:
            img = img.flip(-1)
        if self.flip_v:
            img = img.flip(-2)
        if self.rot90:
            img = torch.rot90(img, 1, dims=(-2, -1))
        return img
