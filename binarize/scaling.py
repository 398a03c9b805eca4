r"""Weight scales: how a binary weight :math:`\operatorname{sign}(W)` is rescaled before the convolution.

A scale is a module called by a binary layer as ``w_in, alpha = scale(weight)``: ``w_in`` is what the weight
binarizer sees (the weight itself, or a normalised weight for IR-Net) and ``alpha`` multiplies the binary weight
(broadcastable to the weight's shape). The binary layer then uses :math:`\alpha \cdot B(w_{in})`.

Shapes are stated for a weight whose output channels lie along ``out_dim`` (0 for convolutions and linear layers,
1 for transposed convolutions).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from binarize._registry import Registry

SCALES: Registry[type["WeightScale"]] = Registry("scale")


def _reduce_dims(weight: Tensor, out_dim: int) -> tuple[int, ...]:
    return tuple(d for d in range(weight.dim()) if d != out_dim)


class WeightScale(nn.Module):
    """Base class. Subclasses implement ``forward(weight) -> (w_in, alpha)``.

    Args:
        weight: the layer's weight at construction (learnable scales initialise from it).
        out_dim: the weight dimension that indexes output channels.
    """

    name: str = ""

    def __init__(self, weight: Tensor, out_dim: int) -> None:
        super().__init__()
        if not 0 <= out_dim < weight.dim():
            raise ValueError(f"out_dim {out_dim} is not a dimension of a weight of shape {tuple(weight.shape)}")
        self.out_dim = out_dim

    def config(self) -> dict[str, Any]:
        """The scale as plain data, ``{"name": ..., **kwargs}``."""
        return {"name": self.name}

    def mean_abs_dims(self, weight: Tensor) -> tuple[int, ...] | None:
        r"""The dimensions of ``weight`` that :math:`\alpha = \operatorname{mean}(|W|)` averages over, when ``forward``
        returns the weight itself and such an ``alpha`` without gradient; ``None`` for any other scale.

        A binary layer then computes the scale inside its fused operation (:mod:`binarize.nn.functional`), in the
        buffer that becomes the binary weight. ``()`` means no ``alpha`` at all (:class:`NoScale`).
        """
        return None

    def forward(self, weight: Tensor) -> tuple[Tensor, Tensor | None]:  # pragma: no cover - abstract
        raise NotImplementedError


@SCALES.register("none")
class NoScale(WeightScale):
    r"""No rescaling: :math:`\alpha = 1` (BinaryNet)."""

    name = "none"

    def mean_abs_dims(self, weight: Tensor) -> tuple[int, ...] | None:
        return () if type(self).forward is NoScale.forward else None

    def forward(self, weight: Tensor) -> tuple[Tensor, Tensor | None]:
        return weight, None


@SCALES.register("mean_abs")
class MeanAbs(WeightScale):
    r"""One scale for the whole tensor, :math:`\alpha = \frac{1}{n}\lVert W \rVert_1`, without gradient.

    Reference: Zhou et al., "DoReFa-Net", arXiv:1606.06160, 2016 (1-bit weights scaled by :math:`E(|W|)`).
    """

    name = "mean_abs"

    def mean_abs_dims(self, weight: Tensor) -> tuple[int, ...] | None:
        return tuple(range(weight.dim())) if type(self).forward is MeanAbs.forward else None

    def forward(self, weight: Tensor) -> tuple[Tensor, Tensor | None]:
        return weight, weight.detach().abs().mean()


@SCALES.register("channel_mean_abs")
class ChannelMeanAbs(WeightScale):
    r"""One scale per output channel, :math:`\alpha_o = \frac{1}{n}\lVert W_o \rVert_1`.

    With ``gradient=True`` the gradient flows through :math:`\alpha` into :math:`W` (as in XNOR-Net's derivation);
    by default :math:`\alpha` is treated as a constant (ReActNet, BI-DiffSR).

    Reference: Rastegari, Ordonez, Redmon, Farhadi, "XNOR-Net: ImageNet Classification Using Binary Convolutional
    Neural Networks", ECCV 2016.
    """

    name = "channel_mean_abs"

    def __init__(self, weight: Tensor, out_dim: int, *, gradient: bool = False) -> None:
        super().__init__(weight, out_dim)
        if not isinstance(gradient, bool):
            raise TypeError(f"gradient must be true or false, got {gradient!r}")
        self.gradient = gradient

    def mean_abs_dims(self, weight: Tensor) -> tuple[int, ...] | None:
        if self.gradient or type(self).forward is not ChannelMeanAbs.forward:
            return None
        return _reduce_dims(weight, self.out_dim)

    def forward(self, weight: Tensor) -> tuple[Tensor, Tensor | None]:
        source = weight if self.gradient else weight.detach()
        return weight, source.abs().mean(dim=_reduce_dims(weight, self.out_dim), keepdim=True)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "gradient": True} if self.gradient else {"name": self.name}


@SCALES.register("learnable")
class LearnableChannel(WeightScale):
    r"""A learnable scale per output channel, initialised to :math:`\frac{1}{n}\lVert W_o \rVert_1`.

    Reference: Bulat, Tzimiropoulos, "XNOR-Net++: Improved Binary Neural Networks", BMVC 2019 (the per-channel
    learnable factor); Martinez et al., "Training Binary Neural Networks with Real-to-Binary Convolutions", ICLR 2020.
    """

    name = "learnable"

    def __init__(self, weight: Tensor, out_dim: int) -> None:
        super().__init__(weight, out_dim)
        init = weight.detach().abs().mean(dim=_reduce_dims(weight, out_dim), keepdim=True)
        self.alpha = nn.Parameter(init.clone())

    def forward(self, weight: Tensor) -> tuple[Tensor, Tensor | None]:
        return weight, self.alpha


@SCALES.register("factorized")
class Factorized(WeightScale):
    r"""XNOR-Net++'s factorised learnable scale :math:`\Gamma = \alpha \otimes \beta \otimes \gamma \otimes \dots`.

    One learnable vector per weight dimension except the input-channel one (for a Conv2d weight
    ``(out, in, kh, kw)``: :math:`\alpha \in \mathbb{R}^{out}`, :math:`\beta \in \mathbb{R}^{kh}`,
    :math:`\gamma \in \mathbb{R}^{kw}`), whose outer product scales the binary weight. The output-channel factor
    starts at :math:`\frac{1}{n}\lVert W_o \rVert_1`, the others at 1.

    Reference: Bulat, Tzimiropoulos, "XNOR-Net++: Improved Binary Neural Networks", BMVC 2019 (case 2 of the
    paper's factorisations, learned by back-propagation).
    """

    name = "factorized"

    def __init__(self, weight: Tensor, out_dim: int) -> None:
        super().__init__(weight, out_dim)
        in_dim = 1 if out_dim == 0 else 0
        self.factor_dims = [d for d in range(weight.dim()) if d != in_dim]
        factors = []
        for d in self.factor_dims:
            shape = [1] * weight.dim()
            shape[d] = weight.shape[d]
            if d == out_dim:
                init = weight.detach().abs().mean(dim=_reduce_dims(weight, out_dim), keepdim=True)
            else:
                init = torch.ones(shape, dtype=weight.dtype, device=weight.device)
            factors.append(nn.Parameter(init.clone()))
        self.factors = nn.ParameterList(factors)

    def forward(self, weight: Tensor) -> tuple[Tensor, Tensor | None]:
        alpha = self.factors[0]
        for factor in self.factors[1:]:
            alpha = alpha * factor
        return weight, alpha


@SCALES.register("irnet")
class Balanced(WeightScale):
    r"""IR-Net's Libra-PB weights: standardise each output channel, then scale by a power of two.

    .. math::
        \hat W_o = \frac{W_o - \mu(W_o)}{\sigma(W_o)}, \qquad
        \alpha_o = 2^{\operatorname{round}(\log_2 \frac{1}{n}\lVert \hat W_o \rVert_1)}

    The binarizer receives :math:`\hat W` (balanced, zero mean, unit variance, which maximises the information
    entropy of its sign); :math:`\alpha` is a power of two so that it costs a bit shift, and carries no gradient.

    Reference: Qin et al., "Forward and Backward Information Retention for Accurate Binary Neural Networks",
    CVPR 2020.
    """

    name = "irnet"

    def __init__(self, weight: Tensor, out_dim: int, *, eps: float = 1e-5) -> None:
        super().__init__(weight, out_dim)
        self.eps = float(eps)

    def forward(self, weight: Tensor) -> tuple[Tensor, Tensor | None]:
        dims = _reduce_dims(weight, self.out_dim)
        centred = weight - weight.mean(dim=dims, keepdim=True)
        std = centred.std(dim=dims, keepdim=True) if math.prod([weight.shape[d] for d in dims]) > 1 else None
        balanced = centred / (std + self.eps) if std is not None else centred
        magnitude = balanced.detach().abs().mean(dim=dims, keepdim=True).clamp_min(1e-12)
        alpha = torch.pow(2.0, torch.round(torch.log2(magnitude)))
        return balanced, alpha


ScaleSpec = str | Mapping[str, Any] | None
"""What :func:`make_scale` (and a binary layer's ``scale``) accepts:

- a registered name: ``"mean_abs"``, ``"channel_mean_abs"``, ``"learnable"``, ... (:data:`SCALES` lists them);
- a mapping with the name and keyword arguments: ``{"name": "channel_mean_abs", "gradient": True}``, as in a recipe;
- ``None`` or ``"none"``: no scale.
"""


def make_scale(spec: ScaleSpec, weight: Tensor, out_dim: int) -> WeightScale | None:
    """Build the scale module named by ``spec`` for ``weight`` (``None`` or ``"none"`` give ``None``).

    ``spec`` is a registered name or a mapping ``{"name": ..., **kwargs}``.

    Raises:
        UnknownNameError: for an unknown name (with the known names and a suggestion).
        TypeError: for a spec of the wrong type or bad keyword arguments.
    """
    if spec is None or spec == "none":
        return None
    if isinstance(spec, str):
        return SCALES.get(spec)(weight, out_dim)
    if isinstance(spec, Mapping):
        kwargs = dict(spec)
        name = kwargs.pop("name", None)
        if not isinstance(name, str):
            raise TypeError(f"a scale mapping needs a 'name' string, got {dict(spec)!r}")
        if name == "none" and not kwargs:
            return None
        cls = SCALES.get(name)
        try:
            return cls(weight, out_dim, **kwargs)
        except TypeError as err:
            raise TypeError(f"bad arguments for scale {name!r}: {err}") from None
    raise TypeError(
        f"a scale must be None, a name ({', '.join(SCALES.names())}) or a mapping with 'name'; "
        f"got {type(spec).__name__}: {spec!r}"
    )
