"""Sign estimators (autograd functions) and the binarizer registry."""

from binarize.binarizers.functions import ede_coefficients, sign
from binarize.binarizers.modules import (
    BINARIZERS,
    EDE,
    STE,
    ApproxSign,
    Binarizer,
    BinarizerSpec,
    CallableBinarizer,
    ClippedSTE,
    Heaviside,
    SwishSign,
    get_binarizer,
    set_progress,
)

__all__ = [
    "BINARIZERS",
    "EDE",
    "STE",
    "ApproxSign",
    "Binarizer",
    "BinarizerSpec",
    "CallableBinarizer",
    "ClippedSTE",
    "Heaviside",
    "SwishSign",
    "ede_coefficients",
    "get_binarizer",
    "set_progress",
    "sign",
]
