"""Sign estimators (autograd functions) and the binarizer registry."""

from binarize.binarizers.functions import (
    SURROGATE_GRADIENTS,
    Surrogate,
    ede_coefficients,
    scaled_sign,
    sign,
    surrogate_gradient,
)
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
    "SURROGATE_GRADIENTS",
    "EDE",
    "STE",
    "ApproxSign",
    "Binarizer",
    "BinarizerSpec",
    "CallableBinarizer",
    "ClippedSTE",
    "Heaviside",
    "Surrogate",
    "SwishSign",
    "ede_coefficients",
    "get_binarizer",
    "scaled_sign",
    "set_progress",
    "sign",
    "surrogate_gradient",
]
