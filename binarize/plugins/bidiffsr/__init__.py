"""BI-DiffSR: binarized diffusion super-resolution, as a binarize plugin.

Provides the paper's building blocks (:mod:`~binarize.plugins.bidiffsr.blocks`: CP-Down, CP-Up, CS-Fusion; the
BI-Conv unit in :mod:`~binarize.plugins.bidiffsr.biconv`), exact rewrites of SR3-style resampling
(:mod:`~binarize.plugins.bidiffsr.conversions`) and the graph-rule factories ``cp_down``, ``cp_up`` and
``cs_fusion`` (:mod:`~binarize.plugins.bidiffsr.factories`) that the shipped ``bidiffsr`` recipes use. TaR / TaA are
the core timestep-aware shift and RPReLU (:mod:`binarize.nn.timestep`).

The plugin is registered through the ``binarize.plugins`` entry point (see :mod:`binarize.plugins`); :func:`register`
is what that entry point calls.

Reference: Chen, Zhang, Gu, Kong, Zhang, Yang, Ding, "Binarized Diffusion Model for Image Super-Resolution",
NeurIPS 2024 (arXiv 2406.05723).
"""

from __future__ import annotations

from binarize.plugins.bidiffsr.biconv import bi_conv, bi_conv_options, binarize_branches
from binarize.plugins.bidiffsr.blocks import PARITIES, BranchedConv, CPDown, CPUp, CSFusion, SizedCPUp

__all__ = [
    "PARITIES",
    "BranchedConv",
    "CPDown",
    "CPUp",
    "CSFusion",
    "SizedCPUp",
    "bi_conv",
    "bi_conv_options",
    "binarize_branches",
    "register",
]


def register() -> None:
    """Register the plugin's graph-rule factories (``cp_down``, ``cp_up``, ``cs_fusion``) and keep its blocks whole
    when models are traced (they pass timestep groups to their branches themselves). Idempotent."""
    from binarize.engine import register_leaf
    from binarize.plugins.bidiffsr import factories  # noqa: F401  (registers on import)

    register_leaf(BranchedConv)
