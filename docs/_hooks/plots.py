"""Plots of every registered binarizer, rendered from the code at build time (matplotlib, Agg backend).

For each binarizer the forward function is evaluated on a grid and the surrogate gradient is read back from
autograd (``x.grad`` after ``b(x).sum().backward()``), so the pictures show what the code computes, not what a
paper says. The dashed curve is the smooth function whose derivative the backward pass uses: the running integral
of the surrogate gradient, anchored at the midpoint of the two output values where the forward output jumps.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from binarize.binarizers import BINARIZERS, get_binarizer  # noqa: E402

#: Output folder inside the site.
PLOT_DIR = "assets/plots/binarizers"

# Variants worth showing next to a binarizer's defaults: (label, spec, EDE progress or None).
_VARIANTS: dict[str, list[tuple[str, object, float | None]]] = {
    "ede": [
        ("progress 0 (start)", "ede", 0.0),
        ("progress 0.5", "ede", 0.5),
        ("progress 1 (end)", "ede", 1.0),
    ],
    "heaviside": [
        ("threshold 0, clip 1 (defaults)", "heaviside", None),
        ("threshold 0.5, clip 0.5 (DoReFa)", {"name": "heaviside", "threshold": 0.5, "clip": 0.5}, None),
    ],
    "swish_sign": [
        ("beta 5 (default)", "swish_sign", None),
        ("beta 2", {"name": "swish_sign", "beta": 2.0}, None),
    ],
}


def _curves(spec: object, progress: float | None, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Forward values, surrogate gradient and the midpoint of the output values of one binarizer on ``x``."""
    binarizer = get_binarizer(spec)
    assert binarizer is not None
    if progress is not None:
        binarizer.set_progress(progress)  # type: ignore[operator]
    x = x.clone().requires_grad_(True)
    y = binarizer(x)
    y.sum().backward()
    assert x.grad is not None
    low, high = binarizer.values
    return y.detach(), x.grad.detach(), (low + high) / 2


def _integral(x: torch.Tensor, y: torch.Tensor, grad: torch.Tensor, anchor: float) -> torch.Tensor:
    """Trapezoidal running integral of ``grad`` over ``x``, equal to ``anchor`` where the forward output jumps."""
    steps = (grad[1:] + grad[:-1]) / 2 * (x[1:] - x[:-1])
    running = torch.cat([torch.zeros(1, dtype=x.dtype), torch.cumsum(steps, 0)])
    jump = int(torch.nonzero(y > anchor)[0])
    return running - running[jump] + anchor


def render(name: str, x_range: float = 2.0, points: int = 801) -> bytes:
    """PNG bytes of the forward function (left) and the surrogate gradient (right) of binarizer ``name``."""
    x = torch.linspace(-x_range, x_range, points, dtype=torch.float64)
    variants = _VARIANTS.get(name, [("defaults", name, None)])
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.2), dpi=100)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, spec, progress) in enumerate(variants):
        y, grad, anchor = _curves(spec, progress, x)
        colour = colours[i % len(colours)]
        left.plot(x, y, color=colour, linewidth=2, label=f"forward, {label}" if len(variants) > 1 else "forward")
        left.plot(x, _integral(x, y, grad, anchor), color=colour, linestyle="--", linewidth=1.2,
                  label="smooth twin (integral of the gradient)" if i == 0 else None)
        right.plot(x, grad, color=colour, linewidth=2, label=label)
    left.set_title(f"{name}: forward")
    right.set_title(f"{name}: surrogate gradient $\\partial y / \\partial x$")
    for ax in (left, right):
        ax.axhline(0, color="0.6", linewidth=0.6)
        ax.axvline(0, color="0.6", linewidth=0.6)
        ax.set_xlabel("x")
        ax.grid(alpha=0.3)
    left.set_ylim(-1.6, 1.6)
    left.legend(fontsize=7, loc="upper left")
    if len(variants) > 1:
        right.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def render_all(render_one: Callable[[str], bytes] = render) -> dict[str, bytes]:
    """``{site path: PNG bytes}`` for every registered binarizer (``assets/plots/binarizers/NAME.png``)."""
    with torch.random.fork_rng(devices=[]):
        return {f"{PLOT_DIR}/{name}.png": render_one(name) for name in BINARIZERS.names()}
