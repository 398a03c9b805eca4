"""Architecture figures of BI-DiffSR, drawn at build time from the binarized network (matplotlib, Agg backend).

``zoo:bidiffsr-unet`` (the paper configuration) is binarized with the ``bidiffsr`` recipe, exactly as
``binarize summary zoo:bidiffsr-unet --recipe bidiffsr`` does it (with example inputs, so that the recipe's
``first`` / ``last`` selectors follow the execution order). The figures are then read off the result, not typed in:

* ``unet.svg``: the UNet, one band per resolution level, the encoder going down on the left, the middle at the
  bottom, the decoder going up on the right, skip connections as dashed arrows. Every box is a module of the
  binarized network, labelled with its channels and coloured by precision: binary where all its convolutions are
  binary (:class:`binarize.nn.BinaryConv2d` with ``is_binary``), full precision where none is. The channel counts,
  the resolutions (the CP-Down unshuffle factors), the number of blocks per level and the convolution counts of the
  legend all come from the model; the figure refuses to render if its boxes do not account for every binary
  convolution of the network.
* ``blocks.svg``: the inside of CP-Down, CP-Up and CS-Fusion (:mod:`binarize.plugins.bidiffsr.blocks`), one
  instance of each taken from the network: the number of branches, their kernel sizes, whether they carry a
  shortcut, the (un)shuffle factors and CS-Fusion's channel pairing are read from it.

Both are SVG with text drawn as paths, a fixed hash salt and no date, so a build gives the same bytes every time.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Patch  # noqa: E402
from matplotlib.path import Path  # noqa: E402
from torch import nn  # noqa: E402

import binarize  # noqa: E402
from binarize.nn import BinaryConv2d  # noqa: E402
from binarize.plugins.bidiffsr import CPDown, CPUp, CSFusion  # noqa: E402
from binarize.zoo import ZOO  # noqa: E402

#: Output folder inside the site.
FIGURE_DIR = "assets/figures/bidiffsr"
MODEL = "bidiffsr-unet"
RECIPE = "bidiffsr"
#: Spatial size of the example inputs used to binarize the network (the structure does not depend on it).
EXAMPLE_SIZE = 16

# (face, edge) colours.
_COLOURS = {
    "binary": ("#f9c784", "#b8620b"),
    "float": ("#b9d7ee", "#2b6a9e"),
    "mixed": ("#d9c2e9", "#6d3f8f"),
    "neutral": ("#eeeeee", "#707070"),
}
_PRECISION_NAMES = {
    "binary": "binary: every convolution a BI-Conv (1-bit weights and activations)",
    "float": "full precision",
    "mixed": "binary and full-precision convolutions",
}
_ARROW = "#333333"
_SKIP = "#8a8a8a"
_RC = {"svg.hashsalt": "binarize-docs", "svg.fonttype": "path", "font.family": "DejaVu Sans"}


# ---------------------------------------------------------------------------------------------------------------
# What the network is made of
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Box:
    """One module of the binarized network, as the figure shows it."""

    path: str
    title: str
    channels: str
    convs: int
    binary: int

    @property
    def precision(self) -> str:
        """``binary`` (all convolutions binary), ``float`` (none) or ``mixed``."""
        if self.convs and self.binary == self.convs:
            return "binary"
        return "float" if self.binary == 0 else "mixed"


@dataclass(frozen=True)
class Level:
    """One resolution level: its encoder (entry then residual blocks) and its decoder steps (fusion, block)."""

    index: int
    channels: int
    scale: int
    encoder: list[Box]
    decoder: list[tuple[Box, Box]]
    upsample: Box | None

    @property
    def resolution(self) -> str:
        """``H × W`` at level 0, ``H/2 × W/2`` at a level half its size, and so on."""
        return "H × W" if self.scale == 1 else f"H/{self.scale} × W/{self.scale}"


@dataclass(frozen=True)
class Architecture:
    """The binarized UNet, level by level, with its convolution counts."""

    in_channels: int
    out_box: Box
    levels: list[Level]
    middle: list[Box]
    binary_convs: int
    float_convs: int
    resblock: str
    examples: dict[str, tuple[str, nn.Module]] = field(default_factory=dict)

    def boxes(self) -> Iterator[Box]:
        """Every box of the UNet figure."""
        yield self.out_box
        for level in self.levels:
            yield from level.encoder
            for fusion, block in level.decoder:
                yield fusion
                yield block
            if level.upsample is not None:
                yield level.upsample
        yield from self.middle


def _is_binary(module: nn.Module) -> bool:
    return isinstance(module, BinaryConv2d) and module.is_binary


def _convolutions(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def _has(model: nn.Module, path: str) -> bool:
    try:
        model.get_submodule(path)
    except AttributeError:
        return False
    return True


def _count(model: nn.Module, prefix: str) -> int:
    """How many numbered children ``prefix.0``, ``prefix.1``, ... the module has."""
    n = 0
    while _has(model, f"{prefix}.{n}"):
        n += 1
    return n


def _factor(module: nn.Module, attribute: str) -> int:
    """The factor of a ``PixelUnshuffle`` / ``PixelShuffle`` attribute, 1 for an ``Identity``."""
    layer = getattr(module, attribute)
    return int(getattr(layer, "downscale_factor", getattr(layer, "upscale_factor", 1)))


def _box(model: nn.Module, path: str, title: str, channels: str | None = None) -> Box:
    module = model.get_submodule(path)
    convs = _convolutions(module)
    if channels is None:
        if isinstance(module, CPDown):
            before, after = _factor(module, "before"), _factor(module, "after")
            channels = f"{module.in_channels // before**2} → {module.out_channels * after**2}"
        elif isinstance(module, CPUp):
            channels = f"{module.in_channels} → {module.out_channels // _factor(module, 'shuffle') ** 2}"
        elif isinstance(module, CSFusion):
            channels = f"{module.out_channels} + {module.out_channels} → {module.out_channels}"
        elif isinstance(module, nn.Conv2d):
            channels = f"{module.in_channels} → {module.out_channels}"
        else:
            channels = str(convs[0].in_channels)
    return Box(path, title, channels, len(convs), sum(_is_binary(c) for c in convs))


def binarized_unet() -> nn.Module:
    """``zoo:bidiffsr-unet`` binarized with the ``bidiffsr`` recipe, as ``binarize summary`` does it."""
    entry = ZOO.get(MODEL)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = entry.build()
        return binarize.binarize(model, RECIPE, example_inputs=entry.example_inputs(EXAMPLE_SIZE))


def describe(model: nn.Module) -> Architecture:
    """Read the levels, blocks, channels and precisions of a binarized BI-DiffSR UNet.

    Raises:
        RuntimeError: when the boxes do not account for every binary convolution of the network.
    """
    n_levels = _count(model, "encoder")
    scale = 1
    levels = []
    for i in range(n_levels):
        enc = f"encoder.{i}"
        if i == 0:
            entry = _box(model, "stem", "stem conv")
        else:
            entry = _box(model, f"encoder.{i - 1}.downsample.conv", "CP-Down")
            down = model.get_submodule(f"encoder.{i - 1}.downsample.conv")
            scale *= _factor(down, "before") * _factor(down, "after")
        blocks = [_box(model, f"{enc}.blocks.{j}", "ResBlock") for j in range(_count(model, f"{enc}.blocks"))]
        dec = f"decoder.{i}"
        steps = [
            (_box(model, f"{dec}.fusions.{j}.conv", "CS-Fusion"), _box(model, f"{dec}.blocks.{j}", "ResBlock"))
            for j in range(_count(model, f"{dec}.blocks"))
        ]
        upsample = _box(model, f"{dec}.upsample.conv", "CP-Up") if _has(model, f"{dec}.upsample.conv") else None
        if len(steps) != len(blocks) + 1:
            raise RuntimeError(f"level {i}: {len(steps)} decoder steps for {len(blocks) + 1} skips")
        channels = model.get_submodule(f"{enc}.blocks.0.conv1").in_channels
        levels.append(Level(i, channels, scale, [entry, *blocks], steps, upsample))
    attention = model.get_submodule("middle.attention")
    middle = [
        _box(model, "middle.block1", "ResBlock"),
        _box(model, "middle.attention", "Self-attention", str(_convolutions(attention)[0].in_channels)),
        _box(model, "middle.block2", "ResBlock"),
    ]
    convs = _convolutions(model)
    binary = sum(_is_binary(c) for c in convs)
    inner = _convolutions(model.get_submodule("encoder.0.blocks.0"))
    kernels = sorted({_kernel(c) for c in inner})
    resblock = f"{len(inner)} convolutions ({', '.join(kernels)}) and a residual connection"
    examples: dict[str, tuple[str, nn.Module]] = {}
    for name, module in model.named_modules():
        kind = type(module).__name__
        # the smallest binary instance of each block
        if isinstance(module, (CPDown, CPUp, CSFusion)) and all(_is_binary(b) for b in module.branches):
            if kind not in examples or module.out_channels < examples[kind][1].out_channels:
                examples[kind] = (name, module)
    architecture = Architecture(
        in_channels=model.get_submodule("stem").in_channels,
        out_box=_box(model, "out_conv", "out conv"),
        levels=levels,
        middle=middle,
        binary_convs=binary,
        float_convs=len(convs) - binary,
        resblock=resblock,
        examples=examples,
    )
    shown = sum(box.binary for box in architecture.boxes())
    if shown != binary:
        raise RuntimeError(f"the figure's boxes hold {shown} binary convolutions, the network {binary}")
    return architecture


# ---------------------------------------------------------------------------------------------------------------
# Drawing helpers (data coordinates in inches, y up)
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Rect:
    x: float
    y: float
    w: float
    h: float

    @property
    def top(self) -> tuple[float, float]:
        return (self.x, self.y + self.h / 2)

    @property
    def bottom(self) -> tuple[float, float]:
        return (self.x, self.y - self.h / 2)

    @property
    def left(self) -> tuple[float, float]:
        return (self.x - self.w / 2, self.y)

    @property
    def right(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y)


def _canvas(width: float, height: float) -> tuple[plt.Figure, Axes]:
    fig = plt.figure(figsize=(width, height), dpi=100, facecolor="white")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    return fig, ax


def _draw_box(
    ax: Axes, x: float, y: float, w: float, h: float, title: str, detail: str, style: str, size: float = 7.5
) -> _Rect:
    face, edge = _COLOURS[style]
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.05",
                                facecolor=face, edgecolor=edge, linewidth=1.0, zorder=3))
    if detail:
        ax.text(x, y + h * 0.18, title, ha="center", va="center", fontsize=size, fontweight="bold", zorder=4)
        ax.text(x, y - h * 0.2, detail, ha="center", va="center", fontsize=size - 0.5, zorder=4)
    else:
        ax.text(x, y, title, ha="center", va="center", fontsize=size, fontweight="bold", zorder=4)
    return _Rect(x, y, w, h)


def _arrow(ax: Axes, points: Sequence[tuple[float, float]], colour: str = _ARROW, dashed: bool = False) -> None:
    """An arrow along a polyline, head at the last point."""
    ax.add_patch(FancyArrowPatch(path=Path(list(points)), arrowstyle="-|>", mutation_scale=9, color=colour,
                                 linewidth=1.0, linestyle=(0, (4, 2)) if dashed else "-", shrinkA=0, shrinkB=0,
                                 zorder=2))


def _up_left(ax: Axes, source: _Rect, target: _Rect) -> None:
    """From the top of ``source`` up and across to the bottom of ``target`` (one row higher, to the side)."""
    (x0, y0), (x1, y1) = source.top, target.bottom
    mid = (y0 + y1) / 2
    _arrow(ax, [(x0, y0), (x0, mid), (x1, mid), (x1, y1)])


def _svg(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# The UNet
# ---------------------------------------------------------------------------------------------------------------
def render_unet(arch: Architecture) -> bytes:
    """SVG bytes of the UNet figure."""
    pitch, bh = 0.5, 0.34  # row pitch and box height
    x_label, x_left, x_mid, x_fuse, x_right = 0.62, 1.9, 3.35, 4.8, 6.12
    w_left, w_mid, w_fuse, w_right = 1.2, 1.05, 1.12, 1.05
    top_margin, bottom_margin = 0.5, 0.9
    width = x_right + w_right / 2 + 0.25

    # Rows, top down: the output conv, then per level its rows (one per encoder box) and, between levels, a row
    # for the CP-Up; the middle last.
    rows_per_level = [max(len(level.encoder), len(level.decoder)) for level in arch.levels]
    n_rows = 1 + sum(rows_per_level) + (len(arch.levels) - 1) + 1
    height = top_margin + n_rows * pitch + bottom_margin

    def y_of(row: int) -> float:
        return height - top_margin - (row + 0.5) * pitch

    with plt.rc_context(_RC):
        fig, ax = _canvas(width, height)
        out = arch.out_box
        out_rect = _draw_box(ax, x_right, y_of(0), w_right, bh, out.title, out.channels, out.precision)
        ax.text(x_right, height - 0.2, "noise estimate", ha="center", va="center", fontsize=7.5, style="italic")
        _arrow(ax, [out_rect.top, (x_right, height - 0.3)])
        ax.text(x_left, height - 0.2, f"[cond, xₜ]: {arch.in_channels} channels", ha="center", va="center",
                fontsize=7.5, style="italic")

        row = 1
        level_rows: list[list[int]] = []
        for level, n in zip(arch.levels, rows_per_level):
            level_rows.append(list(range(row, row + n)))
            row += n + 1
        middle_row = n_rows - 1

        # level bands
        for level, rows in zip(arch.levels, level_rows):
            last = middle_row if level is arch.levels[-1] else rows[-1]
            top, bottom = y_of(rows[0]) + pitch / 2 - 0.03, y_of(last) - pitch / 2 + 0.03
            ax.add_patch(FancyBboxPatch((0.08, bottom), width - 0.16, top - bottom,
                                        boxstyle="round,pad=0,rounding_size=0.08",
                                        facecolor="#f4f4f4" if level.index % 2 == 0 else "#fafafa",
                                        edgecolor="#d0d0d0", linewidth=0.6, zorder=0))
            centre = y_of(rows[len(rows) // 2])
            ax.text(x_label, centre + 0.17, f"level {level.index}", ha="center", va="center", fontsize=8,
                    fontweight="bold")
            ax.text(x_label, centre, level.resolution, ha="center", va="center", fontsize=7.5)
            ax.text(x_label, centre - 0.16, f"{level.channels} channels", ha="center", va="center", fontsize=7.5)
        ax.text(x_label, y_of(middle_row), "middle", ha="center", va="center", fontsize=8, fontweight="bold")

        last_left: _Rect | None = None
        drawn: list[tuple[list[_Rect], _Rect | None]] = []  # per level: its fusions and its CP-Up
        for level, rows in zip(arch.levels, level_rows):
            # encoder, top down
            left = []
            for box, r in zip(level.encoder, rows):
                rect = _draw_box(ax, x_left, y_of(r), w_left, bh, box.title, box.channels, box.precision)
                _arrow(ax, [last_left.bottom if last_left else (x_left, height - 0.3), rect.top])
                left.append(rect)
                last_left = rect
            # decoder, bottom up: step j sits on the row of the encoder tensor it fuses (the last skip first)
            fusions, blocks = [], []
            for j, (fusion, block) in enumerate(level.decoder):
                r = rows[len(level.decoder) - 1 - j]
                f = _draw_box(ax, x_fuse, y_of(r), w_fuse, bh, fusion.title, fusion.channels, fusion.precision)
                b = _draw_box(ax, x_right, y_of(r), w_right, bh, block.title, block.channels, block.precision)
                _arrow(ax, [f.right, b.left])
                fusions.append(f)
                blocks.append(b)
            for j in range(1, len(blocks)):
                _up_left(ax, blocks[j - 1], fusions[j])
            for j, f in enumerate(fusions):  # skip connections
                _arrow(ax, [left[len(left) - 1 - j].right, f.left], colour=_SKIP, dashed=True)
            up_rect = None
            if level.upsample is not None:  # in the row above the level: it feeds the level above
                up = level.upsample
                up_rect = _draw_box(ax, x_right, y_of(rows[0] - 1), w_right, bh, up.title, up.channels, up.precision)
                _arrow(ax, [blocks[-1].top, up_rect.bottom])
            else:
                _arrow(ax, [blocks[-1].top, out_rect.bottom])
            drawn.append((fusions, up_rect))
        for (fusions, _), (_, up_rect) in zip(drawn, drawn[1:]):
            assert up_rect is not None
            _up_left(ax, up_rect, fusions[0])

        # the middle, from the lowest encoder level into the lowest decoder level
        assert last_left is not None
        rects = []
        for box, x, w in zip(arch.middle, (x_left, x_mid, x_fuse), (w_left, w_mid, w_fuse)):
            rects.append(_draw_box(ax, x, y_of(middle_row), w, bh, box.title, box.channels, box.precision))
        _arrow(ax, [last_left.bottom, rects[0].top])
        _arrow(ax, [rects[0].right, rects[1].left])
        _arrow(ax, [rects[1].right, rects[2].left])
        _arrow(ax, [rects[2].top, drawn[-1][0][0].bottom])

        handles = [Patch(facecolor=_COLOURS[p][0], edgecolor=_COLOURS[p][1], label=_PRECISION_NAMES[p])
                   for p in ("binary", "float", "mixed") if any(b.precision == p for b in arch.boxes())]
        handles.append(Line2D([], [], color=_SKIP, linestyle=(0, (4, 2)), label="skip connection"))
        ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(width / 2, 0.4), bbox_transform=ax.transData,
                  ncol=2, fontsize=7.5, frameon=False, handlelength=1.6, columnspacing=1.5)
        ax.text(width / 2, 0.3,
                f"{arch.binary_convs} binary convolutions, {arch.float_convs} full-precision convolutions; "
                "the time MLP and projections (not shown) are full-precision linear layers",
                ha="center", va="center", fontsize=7.5)
        ax.text(width / 2, 0.12, f"ResBlock: {arch.resblock}", ha="center", va="center", fontsize=7.5)
        return _svg(fig)


# ---------------------------------------------------------------------------------------------------------------
# The blocks
# ---------------------------------------------------------------------------------------------------------------
def _channels(multiple: Fraction) -> str:
    """``C``, ``2C``, ``C/2``, ``3C/4``."""
    top = "" if multiple.numerator == 1 else str(multiple.numerator)
    return f"{top}C" if multiple.denominator == 1 else f"{top}C/{multiple.denominator}"


def _kernel(conv: nn.Conv2d) -> str:
    return "×".join(str(k) for k in conv.kernel_size)


def _branches(ax: Axes, x: float, y: float, y_add: float, module: nn.Module, detail: str, spacing: float
              ) -> list[_Rect]:
    """The BI-Conv branches of a block side by side, each with its shortcut and the addition it ends in."""
    branches = list(module.branches)
    n = len(branches)
    w, bh = 0.78, 0.36
    rects = []
    for i, branch in enumerate(branches):
        bx = x + (i - (n - 1) / 2) * spacing
        style = "binary" if _is_binary(branch) else "float"
        title = "BI-Conv" if _is_binary(branch) else "Conv"
        rect = _draw_box(ax, bx, y, w, bh, f"{title} {_kernel(branch)}", detail, style, size=7)
        if getattr(branch, "shortcut", False):
            side = -1 if i < n / 2 else 1
            add = Circle((bx, y_add), 0.07, facecolor="white", edgecolor=_ARROW, linewidth=1.0, zorder=3)
            ax.add_patch(add)
            ax.text(bx, y_add, "+", ha="center", va="center", fontsize=8, zorder=4)
            _arrow(ax, [rect.bottom, (bx, y_add + 0.07)])
            start = (bx, y + bh / 2 + 0.08)
            ax.add_patch(Circle(start, 0.022, color=_ARROW, zorder=3))
            outer = bx + side * (w / 2 + 0.09)
            ax.plot([start[0], outer, outer], [start[1], start[1], y_add], color=_ARROW, linewidth=1.0, zorder=2)
            _arrow(ax, [(outer, y_add), (bx + side * 0.07, y_add)])
            rects.append(_Rect(bx, y_add, 0.14, 0.14))
        else:
            rects.append(rect)
    return rects


def render_blocks(arch: Architecture) -> bytes:
    """SVG bytes of the three blocks' insides, one example of each from the network."""
    panel, height = 2.35, 4.0
    width = 3 * panel
    # y of the seven rows of every panel: input, split / shuffle, branches, additions, sum / concatenation,
    # (un)shuffle, output
    gaps = (0.0, 0.42, 0.62, 0.42, 0.42, 0.42, 0.42)
    rows = [height - 0.62 - sum(gaps[: k + 1]) for k in range(7)]
    spacing = 1.08
    with plt.rc_context(_RC):
        fig, ax = _canvas(width, height)
        for p, kind in enumerate(("CPDown", "CPUp", "CSFusion")):
            if kind not in arch.examples:
                raise RuntimeError(f"the network has no binary {kind}")
            name, module = arch.examples[kind]
            x = (p + 0.5) * panel
            n = len(module.branches)
            title = {"CPDown": "CP-Down", "CPUp": "CP-Up", "CSFusion": "CS-Fusion"}[kind]
            ax.text(x, height - 0.18, title, ha="center", va="center", fontsize=9.5, fontweight="bold")
            if isinstance(module, CPDown):
                c = module.in_channels // _factor(module, "before") ** 2
            else:
                c = module.in_channels if isinstance(module, CPUp) else module.out_channels
            ax.text(x, height - 0.38, f"e.g. {name}: C = {c}", ha="center", va="center", fontsize=6.5,
                    color="#555555")
            if p:
                ax.plot([p * panel, p * panel], [0.35, height - 0.1], color="#dddddd", linewidth=0.8)
            text = {"ha": "center", "va": "center", "fontsize": 7.5, "style": "italic"}

            if kind == "CPDown":
                before, after = _factor(module, "before"), _factor(module, "after")
                c_in = Fraction(1, 1)
                chunk = Fraction(module.in_channels // n, module.in_channels) * before**2
                ax.text(x, rows[0], f"x: {_channels(c_in)} × H × W", **text)
                split = _draw_box(ax, x, rows[1], 1.7, 0.3, f"split into {n} channel chunks", "", "neutral", 7)
                _arrow(ax, [(x, rows[0] - 0.1), split.top])
                ends = _branches(ax, x, rows[2], rows[3], module,
                                 f"{_channels(chunk)} → {_channels(chunk)}", spacing)
                for e in ends:
                    _arrow(ax, [(e.x, split.bottom[1]), (e.x, rows[2] + 0.18)])
                join = _draw_box(ax, x, rows[4], 0.9, 0.3, "sum", "", "neutral", 7)
                shuffle = _draw_box(ax, x, rows[5], 1.6, 0.3, f"PixelUnshuffle({after})", "", "neutral", 7)
                factor = before * after
                out = f"{_channels(chunk * after**2)} × H/{factor} × W/{factor}"
            elif kind == "CPUp":
                r = _factor(module, "shuffle")
                ax.text(x, rows[0], "x: C × H × W", **text)
                ends = _branches(ax, x, rows[2], rows[3], module, "C → C", spacing)
                for e in ends:
                    _arrow(ax, [(x, rows[0] - 0.1), (x, rows[1]), (e.x, rows[1]), (e.x, rows[2] + 0.18)])
                join = _draw_box(ax, x, rows[4], 1.3, 0.3, f"concatenate: {_channels(Fraction(n))}", "", "neutral",
                                 7)
                shuffle = _draw_box(ax, x, rows[5], 1.6, 0.3, f"PixelShuffle({r})", "", "neutral", 7)
                out = f"{_channels(Fraction(n, r * r))} × {r}H × {r}W"
            else:
                pairs = {"opposite": ("x odd, s even", "x even, s odd"), "same": ("x even, s even", "x odd, s odd")}
                first, second = pairs[module.parity]
                ax.text(x - 0.55, rows[0], "x: C (decoder)", **text)
                ax.text(x + 0.55, rows[0], "s: C (skip)", **text)
                mix = _draw_box(ax, x, rows[1], 2.05, 0.36, "channel shuffle",
                                f"f₁ = [{first}],  f₂ = [{second}]", "neutral", 7)
                _arrow(ax, [(x - 0.55, rows[0] - 0.1), (x - 0.55, mix.top[1])])
                _arrow(ax, [(x + 0.55, rows[0] - 0.1), (x + 0.55, mix.top[1])])
                ends = _branches(ax, x, rows[2], rows[3], module, "C → C", spacing)
                for e, label in zip(ends, ("f₁", "f₂")):
                    _arrow(ax, [(e.x, mix.bottom[1]), (e.x, rows[2] + 0.18)])
                    ax.text(e.x + 0.06, rows[2] + 0.38, label, fontsize=7.5, va="center")
                join = _draw_box(ax, x, rows[4], 0.9, 0.3, "sum", "", "neutral", 7)
                shuffle = None
                out = "C × H × W"
            for e in ends:
                _arrow(ax, [e.bottom, (e.x, rows[4] + 0.25), (join.x + (e.x - x) * 0.3, join.top[1])])
            last = join
            if shuffle is not None:
                _arrow(ax, [join.bottom, shuffle.top])
                last = shuffle
            _arrow(ax, [last.bottom, (x, rows[6] + 0.1)])
            ax.text(x, rows[6], f"out: {out}", **text)

        ax.legend(handles=[Patch(facecolor=_COLOURS["binary"][0], edgecolor=_COLOURS["binary"][1],
                                 label="BI-Conv: binary convolution with TaR, TaA and an identity shortcut"),
                           Patch(facecolor=_COLOURS["neutral"][0], edgecolor=_COLOURS["neutral"][1],
                                 label="no weights: split, sum, concatenate, (un)shuffle")],
                  loc="lower center", bbox_to_anchor=(width / 2, 0.0), bbox_transform=ax.transData, ncol=2,
                  fontsize=7, frameon=False, handlelength=1.6)
        return _svg(fig)


def render_all() -> dict[str, bytes]:
    """``{site path: SVG bytes}``: ``assets/figures/bidiffsr/unet.svg`` and ``.../blocks.svg``."""
    arch = describe(binarized_unet())
    return {f"{FIGURE_DIR}/unet.svg": render_unet(arch), f"{FIGURE_DIR}/blocks.svg": render_blocks(arch)}
