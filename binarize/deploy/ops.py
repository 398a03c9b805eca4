"""Which implementation of the packed operations runs: the compiled kernels (:mod:`binarize.deploy.kernels`) where
they build and load, else the pure-torch reference (:mod:`binarize.deploy.reference`), which computes the same
integers."""

from __future__ import annotations

from types import ModuleType

from binarize.deploy import reference

__all__ = ["packed_ops"]


def packed_ops(*, compiled: bool | None = None) -> ModuleType:
    """The module providing ``pack_activations``, ``xnor_accumulate`` and ``xnor_conv2d``.

    Args:
        compiled: ``True`` requires the compiled kernels (an error if they do not load), ``False`` takes the
            reference, ``None`` the kernels when available (their loader warns once when they are not).
    """
    if compiled is False:
        return reference
    from binarize.deploy import kernels

    if kernels.kernels_available():
        return kernels
    if compiled:
        raise RuntimeError(
            "the compiled binary kernels are not available (see the warning above, or BINARIZE_DEPLOY_KERNELS); "
            "use compiled=None to run the pure-torch reference instead"
        )
    return reference
