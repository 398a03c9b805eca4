"""Freeze a binarized model for inference: every binary layer that has a packed form is replaced by its packed
twin (:mod:`binarize.deploy.packed`); the others stay fake-quantised and the report says why."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from torch import Tensor, nn

from binarize.deploy.packed import NotPackableError, PackedLayer, pack_layer
from binarize.engine.module_copy import deep_copy_module
from binarize.nn.layers import BinaryLayerMixin

__all__ = ["DeployReport", "freeze"]


@dataclass
class DeployReport:
    """Which binary layers of a frozen model run on packed bits.

    Attributes:
        packed: names of the layers replaced by packed twins.
        kept: layer name -> why it stays fake-quantised.
    """

    packed: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{len(self.packed)} binary layers run on packed bits, {len(self.kept)} stay fake-quantised"]
        lines += [f"  {name}: {reason}" for name, reason in self.kept.items()]
        return "\n".join(lines)


#: ``weights(name, layer) -> (signs, alpha)`` or ``None`` (then the layer's own weight is packed).
WeightSource = Callable[[str, BinaryLayerMixin], "tuple[Tensor, Tensor] | None"]


def freeze(
    model: nn.Module,
    *,
    inplace: bool = False,
    compiled: bool | None = None,
    weights: WeightSource | Mapping[str, tuple[Tensor, Tensor]] | None = None,
) -> nn.Module:
    """An inference copy of ``model`` whose binary layers compute on packed bits.

    Args:
        model: a binarized model (from :func:`binarize.binarize` or :func:`binarize.deploy.load`).
        inplace: replace the layers in ``model`` itself instead of a deep copy.
        compiled: which operations the packed layers run: ``None`` the compiled kernels where they load (else the
            pure-torch reference, with one warning), ``False`` the reference, ``True`` the kernels or an error.
        weights: the weight signs and scales to pack, by layer name, instead of the layers' own (what
            :func:`binarize.deploy.load` reads from a file).

    Returns:
        The model in eval mode, with ``deploy_report`` (a :class:`DeployReport`).
    """
    target = model if inplace else deep_copy_module(model)
    target.eval()
    report = DeployReport()
    replacements: dict[str, PackedLayer] = {}
    for name, module in target.named_modules():
        if not isinstance(module, BinaryLayerMixin):
            continue
        given = _given(weights, name, module)
        try:
            packed = pack_layer(module, *(given or (None, None)))
        except NotPackableError as exc:
            report.kept[name] = str(exc)
            continue
        packed.compiled = compiled
        replacements[name] = packed
        report.packed.append(name)
    for name, packed in replacements.items():
        target.set_submodule(name, packed)
    target.deploy_report = report  # type: ignore[assignment]
    return target


def _given(
    weights: WeightSource | Mapping[str, tuple[Tensor, Tensor]] | None, name: str, layer: BinaryLayerMixin
) -> tuple[Tensor, Tensor] | None:
    if weights is None:
        return None
    if isinstance(weights, Mapping):
        return weights.get(name)
    return weights(name, layer)
