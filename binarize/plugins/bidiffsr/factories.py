"""The graph-rule factories of the BI-DiffSR plugin: ``cp_down``, ``cp_up`` and ``cs_fusion``.

Each turns a matched full-precision pattern into the equivalent BI-DiffSR block (exactly the same function, the
weights split or rearranged), so that the layer rules can binarize its channel-preserving branches:

============= ================================================================ =====================================
factory       patterns it accepts                                              result
============= ================================================================ =====================================
``cp_down``   ``Conv2d -> PixelUnshuffle`` (module or ``F.pixel_unshuffle``)   :class:`CPDown` (branches, unshuffle)
              a stride-2 ``Conv2d`` on its own                                 :class:`CPDown` (unshuffle, branches)
``cp_up``     ``Conv2d -> PixelShuffle`` (module or ``F.pixel_shuffle``)        :class:`CPUp` (branches, shuffle)
              ``Upsample`` / ``F.interpolate`` (2x nearest) ``-> Conv2d``      :class:`CPUp` (phase branches, shuffle)
              the same to a ``size=`` that is twice the input's (traced)       :class:`SizedCPUp` (checks the size)
``cs_fusion`` ``cat([x, skip], dim=1) -> Conv2d(C_x + C_s -> C)``              :class:`CSFusion` (args: ``parity``)
              the same convolution reached through channel-wise operations     :class:`CSFusion` on the concatenated
              (``context: 2`` on ``[cat, channelwise, Conv2d]``)               channels (the ``cat`` stays)
============= ================================================================ =====================================

A match that cannot be made dimension-consistent (e.g. a 96 -> 40 channel convolution, 12 : 5, whose branches could
not keep their channel count) is refused with the reason, and the report lists it as skipped.
"""

from __future__ import annotations

from typing import Any

from torch import fx, nn

from binarize.engine.graph_factories import register_graph_factory
from binarize.engine.patterns import FUNCTIONS, Match, flat_nodes
from binarize.errors import UnsupportedLayerError
from binarize.plugins.bidiffsr.blocks import PARITIES, CPDown, CPUp, CSFusion, SizedCPUp

__all__ = ["cp_down", "cp_up", "cs_fusion"]


def _no_args(name: str, args: dict[str, Any]) -> None:
    if args:
        raise UnsupportedLayerError(f"{name} takes no args, got {sorted(args)}")


def _conv_step(match: Match, index: int, name: str) -> nn.Conv2d:
    module = match.modules[index] if index < len(match.modules) else None
    if not isinstance(module, nn.Conv2d):
        raise UnsupportedLayerError(f"{name} expects a Conv2d at step {index + 1} of the pattern, got {_kind(match, index)}")
    return module


def _kind(match: Match, index: int) -> str:
    module, node = match.modules[index], match.nodes[index]
    return type(module).__name__ if module is not None else str(getattr(node.target, "__name__", node.target))


def _argument(match: Match, index: int, function: str, argument: str, attribute: str, cls: type) -> Any:
    """An argument of step ``index``: the module's ``attribute`` for a ``cls`` module, else the function's."""
    module, node = match.modules[index], match.nodes[index]
    if isinstance(module, cls):
        return getattr(module, attribute)
    if module is None and node.target in FUNCTIONS.get(function).targets:
        value = FUNCTIONS.get(function).bind(node).get(argument)
        if isinstance(value, fx.Node):
            raise UnsupportedLayerError(f"the {argument} of {function} is computed in the forward pass")
        return value
    return None


@register_graph_factory(
    "cp_down",
    function_preserving=True,
    description="Conv2d -> PixelUnshuffle, or a stride-2 Conv2d => CP-Down (channel-preserving branches, summed "
    "or concatenated, and a pixel unshuffle)",
)
def cp_down(match: Match, **args: Any) -> nn.Module:
    """BI-DiffSR's CP-Down replacing a downsampling pattern (see the module docstring)."""
    _no_args("cp_down", args)
    conv = _conv_step(match, 0, "cp_down")
    if len(match.nodes) == 1:
        if tuple(conv.stride) != (2, 2):
            raise UnsupportedLayerError(f"cp_down on a single Conv2d needs stride 2, got {tuple(conv.stride)}")
        return CPDown.from_strided_conv(conv)
    if len(match.nodes) == 2:
        factor = _argument(match, 1, "pixel_unshuffle", "downscale_factor", "downscale_factor", nn.PixelUnshuffle)
        if isinstance(factor, int):
            return CPDown.from_conv_unshuffle(conv, factor)
    raise UnsupportedLayerError(
        "cp_down replaces `Conv2d -> PixelUnshuffle` or a stride-2 `Conv2d`, got "
        + " -> ".join(_kind(match, i) for i in range(len(match.nodes)))
    )


@register_graph_factory(
    "cp_up",
    function_preserving=True,
    description="Conv2d -> PixelShuffle, or 2x nearest upsampling -> Conv2d => CP-Up (channel-preserving branches, "
    "concatenated, and a pixel shuffle)",
)
def cp_up(match: Match, **args: Any) -> nn.Module:
    """BI-DiffSR's CP-Up replacing an upsampling pattern (see the module docstring)."""
    _no_args("cp_up", args)
    if len(match.nodes) == 2 and isinstance(match.modules[0], nn.Conv2d):
        factor = _argument(match, 1, "pixel_shuffle", "upscale_factor", "upscale_factor", nn.PixelShuffle)
        if isinstance(factor, int):
            return CPUp.from_conv_shuffle(match.modules[0], factor)
    if len(match.nodes) == 2 and isinstance(match.modules[1], nn.Conv2d):
        mode = _argument(match, 0, "interpolate", "mode", "mode", nn.Upsample)
        scale = _argument(match, 0, "interpolate", "scale_factor", "scale_factor", nn.Upsample)
        size = _size(match)
        if mode == "nearest" and size is None and _is_two(scale):
            return CPUp.from_nearest_conv(match.modules[1])
        if mode == "nearest" and scale is None and size is not None:
            return SizedCPUp.from_nearest_conv_to_size(match.modules[1], _doubled_size(match, size))
        raise UnsupportedLayerError(
            f"cp_up rewrites a 2x nearest-neighbour upsampling exactly; got mode={mode!r}, scale_factor={scale!r}, "
            f"size={size!r}"
        )
    raise UnsupportedLayerError(
        "cp_up replaces `Conv2d -> PixelShuffle` or `Upsample(scale_factor=2, mode='nearest') -> Conv2d`, got "
        + " -> ".join(_kind(match, i) for i in range(len(match.nodes)))
    )


def _size(match: Match) -> Any:
    """The upsampling's ``size``: a constant, ``COMPUTED`` when the forward pass computes it, or ``None``."""
    module, node = match.modules[0], match.nodes[0]
    if isinstance(module, nn.Upsample):
        return module.size
    value = FUNCTIONS.get("interpolate").bind(node).get("size")
    return COMPUTED if flat_nodes(value) else value


#: Stands for a ``size=`` computed in the forward pass (e.g. ``skip.shape[-2:]``).
COMPUTED = "computed in the forward pass"


def _doubled_size(match: Match, size: Any) -> tuple[int, int] | None:
    """The fixed size of a 2x upsampling (``None`` when computed), checked on the traced shapes: an upsampling to a
    size that is not twice the input's is refused."""
    source, result = _spatial(match.nodes[0].args[0]), _spatial(match.nodes[0])
    if source is None or result is None:
        raise UnsupportedLayerError(
            "cp_up rewrites a nearest upsampling to a size only where the size is twice the input's, which needs the "
            "traced shapes; give binarize() example_inputs"
        )
    if result != (2 * source[0], 2 * source[1]):
        raise UnsupportedLayerError(
            f"cp_up: this nearest upsampling resizes {source[0]} x {source[1]} to {result[0]} x {result[1]}, not by "
            f"2, so it has no exact CP-Up form"
        )
    return None if size == COMPUTED else result


def _spatial(value: Any) -> tuple[int, int] | None:
    """The height and width of a traced 4-d value, when the trace carried its shape."""
    shape = _traced_shape(value)
    return (int(shape[-2]), int(shape[-1])) if shape is not None and len(shape) == 4 else None


def _traced_shape(value: Any) -> tuple[int, ...] | None:
    """A traced value's shape (``node.meta["shape"]``, set by tracing with example inputs), or ``None``."""
    return value.meta.get("shape") if isinstance(value, fx.Node) else None


def _is_two(scale: Any) -> bool:
    values = scale if isinstance(scale, (tuple, list)) else (scale,)
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and float(v) == 2.0 for v in values)


@register_graph_factory(
    "cs_fusion",
    function_preserving=True,
    description="cat([x, skip], dim=1) -> Conv2d(C_x + C_s -> C) => CS-Fusion (channel shuffle and channel-preserving "
    "branches; two C -> C branches for equal widths)",
)
def cs_fusion(match: Match, parity: str = "opposite", **args: Any) -> nn.Module:
    """BI-DiffSR's CS-Fusion replacing the concatenation and fusion convolution of a UNet skip connection.

    Args:
        match: ``cat -> Conv2d`` (or the Conv2d after ``cat -> channelwise`` as context); the concatenation must
            join exactly two different tensors along dim 1. Inputs of unequal widths need their shapes in the
            trace (example inputs).
        parity: ``"opposite"`` (the release, default) or ``"same"`` (the paper's Eq. 3); see :class:`CSFusion`.
    """
    _no_args("cs_fusion", args)
    if parity not in PARITIES:
        raise UnsupportedLayerError(f"cs_fusion: parity must be one of {list(PARITIES)}, got {parity!r}")
    whole_chain = match.context == 0 and len(match.nodes) == 2  # cat -> Conv2d, both replaced
    conv_only = match.context > 0 and len(match.replaced) == 1  # the Conv2d, found through its context
    if match.modules[0] is not None or not (whole_chain or conv_only):
        raise UnsupportedLayerError(
            "cs_fusion replaces `cat -> Conv2d`, or the Conv2d of `cat -> channelwise -> Conv2d` (context: 2)"
        )
    conv = _conv_step(match, len(match.nodes) - 1, "cs_fusion")
    bound = FUNCTIONS.get("cat").bind(match.nodes[0])
    tensors, dim = bound.get("tensors"), bound.get("dim")
    if dim != 1:
        raise UnsupportedLayerError(f"cs_fusion fuses along channels (dim=1), but the cat joins along dim={dim!r}")
    if not isinstance(tensors, (list, tuple)) or len(tensors) != 2 or len(set(tensors)) != 2:
        raise UnsupportedLayerError("cs_fusion fuses exactly two different tensors (the decoder tensor and the skip)")
    channels = [_channels(t) for t in tensors]
    if None in channels:
        if conv.in_channels != 2 * conv.out_channels:
            raise UnsupportedLayerError(
                f"cs_fusion needs the widths of the two concatenated tensors for a {conv.in_channels} -> "
                f"{conv.out_channels} fusion (not C + C -> C); give binarize() example_inputs so that the trace "
                f"carries shapes"
            )
        return CSFusion.from_fusion_conv(conv, parity)  # type: ignore[arg-type]
    widths = (int(channels[0]), int(channels[1]))  # type: ignore[arg-type]
    if sum(widths) != conv.in_channels:
        raise UnsupportedLayerError(
            f"cs_fusion: the concatenation joins {widths[0]} + {widths[1]} channels but the convolution takes "
            f"{conv.in_channels}"
        )
    return CSFusion.from_fusion_conv(conv, parity, widths)  # type: ignore[arg-type]


def _channels(value: Any) -> int | None:
    """The channel count (dim 1) of a traced value, when the trace carried its shape."""
    shape = _traced_shape(value)
    return int(shape[1]) if shape is not None and len(shape) > 1 else None

