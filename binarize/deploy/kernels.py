r"""Compiled xnor-popcount kernels for packed binary convolutions, built on first use.

The C++ sources (``binarize/deploy/csrc``) are compiled once per source, torch and compiler version into a plain
shared library (a C ABI, loaded with :mod:`ctypes`; no torch headers, so the build takes seconds) and cached under
``$XDG_CACHE_HOME/binarize/kernels/<hash>/`` (``~/.cache`` by default, or ``$BINARIZE_DEPLOY_CACHE``). Concurrent
builds (pytest-xdist workers) are safe: a file lock serialises them and the library appears by an atomic rename.

The operations compute exactly what :mod:`binarize.deploy.reference` defines, on the layout of
:mod:`binarize.deploy.bits`:

* :func:`pack_activations`: :math:`\text{bit} = [x + b < 0]` (one float32 add, as torch adds), channels packed per
  group, padded with a constant sign; ``(N, C, H, W)`` float to ``(N, G, H', W', W_g)`` words.
* :func:`xnor_accumulate`: the valid convolution of packed activations with packed weights ``(G, O_g, k_h, k_w,
  W_g)``,

  .. math::
      a_{n,o,y,x} = k_h k_w C_g - 2 \sum_{k_y, k_x, w}
      \operatorname{popcount}\!\left(X_{n, g, y s_h + k_y d_h, x s_w + k_x d_w, w} \oplus W_{g, o, k_y, k_x, w}\right).

* :func:`xnor_conv2d`: :math:`y = \alpha_o a + \beta_o` in float32 (a product, then a sum, each rounded once),
  optionally with a border correction of the padding before the scale, a PReLU / RPReLU and a residual after it,
  all in the kernel's epilogue.
* :func:`prepare_weight`: the weight regrouped once into the kernels' blocked layout (``prepared=``).

The instruction set is chosen at run time (:func:`kernel_isa`): AVX-512 VPOPCNTDQ, AVX2 or portable C++; the
threads follow :func:`torch.get_num_threads`.

Environment:
    ``BINARIZE_DEPLOY_KERNELS=0`` disables the kernels (callers run the pure-torch reference, without a warning).
    ``BINARIZE_DEPLOY_ISA=portable|avx2|avx512_vpopcntdq`` forces an instruction set the CPU supports.
    ``CXX`` names the compiler (``c++`` by default).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor

from binarize.deploy.bits import packed_words

__all__ = [
    "ISAS",
    "KernelWarning",
    "kernel_isa",
    "kernels_available",
    "pack_activations",
    "prepare_weight",
    "xnor_accumulate",
    "xnor_conv2d",
]

#: Instruction sets of the compiled kernels, from the most portable to the fastest.
ISAS = ("portable", "avx2", "avx512_vpopcntdq")

_SOURCE_DIR = Path(__file__).parent / "csrc"
_SOURCES = ("xnor.cpp", "pool.h")
_FLAGS = (
    "-O3",
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-pthread",
    "-ffp-contract=off",  # alpha * acc + bias rounds twice, as torch computes it
    "-fvisibility=hidden",
)
_LIBRARY_NAME = "libbinarize_xnor.so"
_BLOCK = 8  # output channels per prepared weight block
_LOW_NIBBLES = 0x0F0F0F0F0F0F0F0F

#: ``(top, left, height, width, tap_sums, coef)``, see :func:`xnor_conv2d`.
Border = tuple[int, int, int, int, Tensor, float]


class KernelWarning(UserWarning):
    """The compiled kernels could not be built or loaded; the pure-torch reference runs instead."""


_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_failure: str | None = None  # why the kernels are unavailable, once tried


def kernels_available() -> bool:
    """Whether the compiled kernels load (built on the first call, then cached).

    The first failure (no compiler, a build or load error) warns once with :class:`KernelWarning`;
    ``BINARIZE_DEPLOY_KERNELS=0`` turns the kernels off without a warning.
    """
    if _disabled():
        return False
    return _load() is not None


def kernel_isa() -> str:
    """The instruction set the kernels run: the best this CPU supports, or ``BINARIZE_DEPLOY_ISA`` when set.

    Raises:
        RuntimeError: the kernels are not available.
        ValueError: ``BINARIZE_DEPLOY_ISA`` names an unknown instruction set or one this CPU lacks.
    """
    return ISAS[_isa_index(_require())]


def pack_activations(
    x: Tensor,
    *,
    groups: int,
    pads: Sequence[int],
    shift: Tensor | None = None,
    pad_negative: bool = False,
) -> Tensor:
    r"""Sign bits of ``x + shift``, channels packed per group, padded: ``int64`` ``(N, G, H + top + bottom,
    W + left + right, W_g)`` with :math:`W_g` = ``packed_words(C // groups)``.

    A bit is set where :math:`x + b < 0` (``-0.0`` and NaN give clear bits, :math:`+1`); padded pixels are
    :math:`+1` (clear) or, with ``pad_negative``, :math:`-1` in every channel (the spare bits stay clear).

    Args:
        x: ``(N, C, H, W)`` ``float32`` on the CPU.
        groups: :math:`G`, the channel groups (each packed into its own words).
        pads: ``(top, bottom, left, right)``, each :math:`\ge 0`.
        shift: ``None`` or ``(N, C)`` ``float32``, added before the sign.
        pad_negative: pad with :math:`-1` instead of :math:`+1`.
    """
    library = _require()
    x = _float_input(x, "x", 4)
    n, c, h, w = x.shape
    if groups < 1 or c % groups:
        raise ValueError(f"{c} channels do not split into groups={groups}; use a divisor of {c}")
    if len(pads) != 4 or any(int(p) < 0 for p in pads):
        raise ValueError(f"pads must be four non-negative sizes (top, bottom, left, right), got {tuple(pads)}")
    top, bottom, left, right = (int(p) for p in pads)
    if shift is not None:
        shift = _float_input(shift, "shift", 2)
        if tuple(shift.shape) != (n, c):
            raise ValueError(f"shift must have shape (N, C) = {(n, c)}, got {tuple(shift.shape)}")
    out = torch.empty(n, groups, h + top + bottom, w + left + right, packed_words(c // groups), dtype=torch.int64)
    if out.numel() == 0:
        return out
    code = library.binarize_pack(
        x.data_ptr(),
        None if shift is None else shift.data_ptr(),
        out.data_ptr(),
        n, c, h, w, groups, top, bottom, left, right,
        int(bool(pad_negative)),
        _isa_index(library),
        torch.get_num_threads(),
    )
    _check(code, "binarize_pack")
    return out


def prepare_weight(weight: Tensor) -> Tensor:
    r"""``weight`` ``(G, O_g, k_h, k_w, W_g)`` in the kernels' blocked layout, to pass as ``prepared=`` so that calls
    skip regrouping it: an ``int64`` tensor, opaque to callers (its layout may change between versions).

    Blocks of 8 output channels, step-major, each word split into its low and high nibbles (the AVX2 popcount looks
    nibbles up), zero past the last channel:

    .. math:: P_{g, b, k, h, j} = (W_{g, 8 b + j, k} \gg 4 h) \mathbin{\&} \mathtt{0x0f0f\ldots0f},
        \qquad k = (k_y k_w + k_x) W_g + w.
    """
    weight = _word_input(weight, "weight", 5)
    groups, og, kh, kw, words = weight.shape
    blocks = -(-og // _BLOCK)
    steps = weight.reshape(groups, og, kh * kw * words)
    padded = steps.new_zeros(groups, blocks * _BLOCK, kh * kw * words)
    padded[:, :og] = steps
    blocked = padded.reshape(groups, blocks, _BLOCK, -1).transpose(2, 3)  # (G, blocks, steps, 8)
    low = torch.tensor(_LOW_NIBBLES, dtype=torch.int64)
    return torch.stack((blocked & low, (blocked >> 4) & low), dim=3).contiguous()  # (G, blocks, steps, 2, 8)


def xnor_accumulate(
    packed: Tensor,
    weight: Tensor,
    *,
    channels: int,
    stride: int | Sequence[int],
    dilation: int | Sequence[int],
    prepared: Tensor | None = None,
) -> Tensor:
    r"""The integer accumulators :math:`a` (``int32`` ``(N, G O_g, H_o, W_o)``) of the valid convolution of
    ``packed`` ``(N, G, H_p, W_p, W_g)`` with ``weight`` ``(G, O_g, k_h, k_w, W_g)`` over ``channels``
    (:math:`C_g`) signs per tap; see the module docstring for the formula. ``prepared``: ``prepare_weight(weight)``,
    or ``None`` to prepare it in this call."""
    return _conv(packed, weight, channels=channels, stride=stride, dilation=dilation, prepared=prepared,
                 integer=True)


def xnor_conv2d(
    packed: Tensor,
    weight: Tensor,
    *,
    channels: int,
    stride: int | Sequence[int],
    dilation: int | Sequence[int],
    alpha: Tensor | None = None,
    bias: Tensor | None = None,
    prepared: Tensor | None = None,
    border: Border | None = None,
    prelu: tuple[Tensor | None, Tensor, Tensor | None] | None = None,
    residual: Tensor | None = None,
) -> Tensor:
    r"""The accumulators :math:`a` of :func:`xnor_accumulate` through the epilogue, ``float32`` ``(N, G O_g, H_o,
    W_o)``, each step rounded to ``float32`` once, in this order:

    .. math::
        a' = a + c\,S_{o,y,x}, \qquad y = \alpha_o a' + \beta_o, \qquad
        z = y + s_{n,o}, \quad y = (z > 0\ ?\ z : q_{n,o} z) + t_{n,o}, \qquad y = y + r_{n,o,y,x}.

    Args:
        packed: ``(N, G, H_p, W_p, W_g)`` ``int64`` (from :func:`pack_activations`).
        weight: ``(G, O_g, k_h, k_w, W_g)`` ``int64``, channels packed like the activations.
        channels: :math:`C_g`, input channels per group.
        stride: ``(s_h, s_w)`` or one int.
        dilation: ``(d_h, d_w)`` or one int.
        alpha: ``None`` (1), a scalar or ``(O,)`` ``float32`` tensor.
        bias: ``None`` or ``(O,)`` ``float32``.
        prepared: ``prepare_weight(weight)``, or ``None`` to prepare it in this call.
        border: ``None`` or ``(top, left, height, width, tap_sums, coef)``: the input was padded by ``top`` rows and
            ``left`` columns around its ``height x width`` pixels, and :math:`S_{o,y,x}` sums ``tap_sums[o, ky, kx]``
            (``(O, k_h, k_w)``, integers) over the taps of output pixel :math:`(y, x)` that read padding (zero
            elsewhere); ``coef`` is :math:`c` (``-1.0`` corrects a zero padding packed as :math:`+1`).
        prelu: ``None`` or ``(shift_in, slope, shift_out)``: :math:`s, q, t`, each ``(N, O)`` ``float32``; the
            shifts may be ``None`` (0).
        residual: ``None`` or :math:`r`, ``(N, O, H_o, W_o)`` ``float32``.
    """
    return _conv(packed, weight, channels=channels, stride=stride, dilation=dilation, alpha=alpha, bias=bias,
                 prepared=prepared, border=border, prelu=prelu, residual=residual)


def _conv(
    packed: Tensor,
    weight: Tensor,
    *,
    channels: int,
    stride: int | Sequence[int],
    dilation: int | Sequence[int],
    alpha: Tensor | None = None,
    bias: Tensor | None = None,
    prepared: Tensor | None = None,
    border: Border | None = None,
    prelu: tuple[Tensor | None, Tensor, Tensor | None] | None = None,
    residual: Tensor | None = None,
    integer: bool = False,
) -> Tensor:
    library = _require()
    packed = _word_input(packed, "packed", 5)
    weight = _word_input(weight, "weight", 5)
    n, g, hp, wp, words = packed.shape
    wgroups, og, kh, kw, wwords = weight.shape
    if channels < 1 or g != wgroups or words != wwords or words != packed_words(channels):
        raise ValueError(
            f"packed activations {tuple(packed.shape)} and weights {tuple(weight.shape)} do not fit {channels} "
            f"channels per group: both need G first and packed_words({channels}) = {packed_words(channels)} words last"
        )
    sh, sw = _pair(stride, "stride")
    dh, dw = _pair(dilation, "dilation")
    ho = (hp - dh * (kh - 1) - 1) // sh + 1
    wo = (wp - dw * (kw - 1) - 1) // sw + 1
    if kh < 1 or kw < 1 or ho < 1 or wo < 1:
        raise ValueError(f"a {kh}x{kw} kernel (dilation {dh}, {dw}) does not fit a padded {hp}x{wp} input")
    out_channels = g * og
    prepared = _prepared(prepared, weight)
    if alpha is not None:
        alpha = _float_input(alpha, "alpha", None)
        if alpha.numel() not in (1, out_channels) or alpha.dim() > 1:
            raise ValueError(f"alpha must be a scalar or have shape ({out_channels},), got {tuple(alpha.shape)}")
        if alpha.numel() != out_channels or alpha.dim() != 1:
            alpha = alpha.reshape(-1).expand(out_channels).contiguous()
    if bias is not None:
        bias = _float_input(bias, "bias", 1)
        if bias.numel() != out_channels:
            raise ValueError(f"bias must have shape ({out_channels},), got {tuple(bias.shape)}")
    top, left, height, width, tap_sums, coef = _border(border, out_channels, kh, kw)
    shift_in, slope, shift_out = _prelu(prelu, n, out_channels)
    if residual is not None:
        residual = _float_input(residual, "residual", 4)
        if tuple(residual.shape) != (n, out_channels, ho, wo):
            raise ValueError(f"residual must have shape {(n, out_channels, ho, wo)}, got {tuple(residual.shape)}")
    out = torch.empty(n, out_channels, ho, wo, dtype=torch.int32 if integer else torch.float32)
    if out.numel() == 0:
        return out
    code = library.binarize_conv(
        packed.data_ptr(), prepared.data_ptr(),
        None if integer else out.data_ptr(), out.data_ptr() if integer else None,
        _pointer(alpha), _pointer(bias), _pointer(tap_sums), top, left, height, width, coef,
        _pointer(shift_in), _pointer(slope), _pointer(shift_out), _pointer(residual),
        n, g, hp, wp, words, og, kh, kw, channels, sh, sw, dh, dw,
        _isa_index(library),
        torch.get_num_threads(),
    )
    if code == -3:
        raise ValueError("border tap_sums must be integers of magnitude at most 2**24 (sums of weight signs)")
    _check(code, "binarize_conv")
    return out


def _pointer(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _prepared(prepared: Tensor | None, weight: Tensor) -> Tensor:
    """``prepared`` checked against ``weight``'s shape, or prepared now."""
    if prepared is None:
        return prepare_weight(weight)
    groups, og, kh, kw, words = weight.shape
    expected = (groups, -(-og // _BLOCK), kh * kw * words, 2, _BLOCK)
    if not isinstance(prepared, Tensor) or prepared.dtype != torch.int64 or tuple(prepared.shape) != expected:
        got = tuple(prepared.shape) if isinstance(prepared, Tensor) else type(prepared).__name__
        raise ValueError(f"prepared must be prepare_weight(weight), an int64 tensor of shape {expected}, got {got}")
    return prepared.contiguous()


def _border(
    border: Border | None, out_channels: int, kh: int, kw: int
) -> tuple[int, int, int, int, Tensor | None, float]:
    """The border correction's arguments, checked (``tap_sums`` as ``float32``)."""
    if border is None:
        return 0, 0, 0, 0, None, 0.0
    if len(border) != 6:
        raise ValueError("border must be (top, left, height, width, tap_sums, coef)")
    top, left, height, width, tap_sums, coef = border
    if min(int(top), int(left)) < 0 or min(int(height), int(width)) < 1:
        raise ValueError(f"border needs top, left >= 0 and height, width >= 1, got {tuple(border[:4])}")
    if not isinstance(tap_sums, Tensor) or tuple(tap_sums.shape) != (out_channels, kh, kw):
        got = tuple(tap_sums.shape) if isinstance(tap_sums, Tensor) else type(tap_sums).__name__
        raise ValueError(f"border tap_sums must have shape {(out_channels, kh, kw)}, got {got}")
    if kh > 64 or kw > 64:
        raise ValueError(f"the border correction supports kernels up to 64x64, got {kh}x{kw}")
    sums = tap_sums if tap_sums.dtype is torch.float32 else tap_sums.to(torch.float32)
    return int(top), int(left), int(height), int(width), sums.contiguous(), float(coef)


def _prelu(
    prelu: tuple[Tensor | None, Tensor, Tensor | None] | None, n: int, out_channels: int
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """``(shift_in, slope, shift_out)`` checked: ``(N, O)`` ``float32`` each, shifts optional."""
    if prelu is None:
        return None, None, None
    if len(prelu) != 3 or prelu[1] is None:
        raise ValueError("prelu must be (shift_in, slope, shift_out) with a slope; the shifts may be None")
    checked = []
    for name, t in zip(("shift_in", "slope", "shift_out"), prelu):
        if t is not None:
            t = _float_input(t, f"prelu {name}", 2)
            if tuple(t.shape) != (n, out_channels):
                raise ValueError(f"prelu {name} must have shape (N, O) = {(n, out_channels)}, got {tuple(t.shape)}")
        checked.append(t)
    return checked[0], checked[1], checked[2]


# ----------------------------------------------------------------------------------------------------------------
# Argument checks.


def _float_input(t: Tensor, name: str, dims: int | None) -> Tensor:
    if not isinstance(t, Tensor) or t.dtype is not torch.float32 or not t.is_cpu:
        got = f"{t.dtype} on {t.device}" if isinstance(t, Tensor) else type(t).__name__
        raise TypeError(f"{name} must be a float32 CPU tensor, got {got}")
    if dims is not None and t.dim() != dims:
        raise ValueError(f"{name} must have {dims} dimensions, got shape {tuple(t.shape)}")
    return t.contiguous()


def _word_input(t: Tensor, name: str, dims: int) -> Tensor:
    if not isinstance(t, Tensor) or t.dtype is not torch.int64 or not t.is_cpu:
        got = f"{t.dtype} on {t.device}" if isinstance(t, Tensor) else type(t).__name__
        raise TypeError(f"{name} must be an int64 CPU tensor of packed words, got {got}")
    if t.dim() != dims:
        raise ValueError(f"{name} must have {dims} dimensions, got shape {tuple(t.shape)}")
    return t.contiguous()


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _check(code: int, function: str) -> None:
    if code != 0:
        raise RuntimeError(f"{function} refused its arguments (code {code}); this is a bug in binarize.deploy.kernels")


# ----------------------------------------------------------------------------------------------------------------
# Instruction set.


def _isa_index(library: ctypes.CDLL) -> int:
    best = library.best_isa  # detected once, when the library loads
    forced = os.environ.get("BINARIZE_DEPLOY_ISA", "").strip()
    if not forced:
        return best
    if forced not in ISAS:
        raise ValueError(f"BINARIZE_DEPLOY_ISA={forced!r} is not one of {', '.join(ISAS)}")
    index = ISAS.index(forced)
    if index > best:
        raise ValueError(
            f"BINARIZE_DEPLOY_ISA={forced!r} is not supported by this CPU; it supports {', '.join(ISAS[:best + 1])}"
        )
    return index


# ----------------------------------------------------------------------------------------------------------------
# Build and load.


def _disabled() -> bool:
    return os.environ.get("BINARIZE_DEPLOY_KERNELS", "").strip().lower() in ("0", "false", "no", "off")


def _require() -> ctypes.CDLL:
    if _disabled():
        raise RuntimeError("the compiled kernels are disabled by BINARIZE_DEPLOY_KERNELS=0")
    library = _load()
    if library is None:
        raise RuntimeError(f"the compiled kernels are not available: {_failure}")
    return library


def _load() -> ctypes.CDLL | None:
    global _library, _failure
    if _library is not None or _failure is not None:
        return _library
    with _lock:
        if _library is None and _failure is None:
            try:
                _library = _bind(ctypes.CDLL(str(_build())))
            except _BuildError as error:
                _failure = str(error)
            except OSError as error:
                _failure = f"the built library does not load: {error}"
            if _failure is not None:
                warnings.warn(
                    f"binary kernels unavailable ({_failure}); the pure-torch reference runs instead",
                    KernelWarning,
                    stacklevel=3,
                )
    return _library


class _BuildError(Exception):
    pass


def _compiler() -> str:
    return os.environ.get("CXX", "").strip() or "c++"


def _cache_root() -> Path:
    if os.environ.get("BINARIZE_DEPLOY_CACHE"):
        return Path(os.environ["BINARIZE_DEPLOY_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "binarize" / "kernels"


def _build() -> Path:
    """The path of the built library: from the cache, or compiled now (under a file lock)."""
    compiler = _compiler()
    executable = shutil.which(compiler)
    if executable is None:
        raise _BuildError(f"C++ compiler {compiler!r} not found; install one or set CXX")
    try:
        version = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise _BuildError(f"C++ compiler {compiler!r} does not run: {error}") from None
    digest = hashlib.sha256()
    for part in (torch.__version__, sys.platform, version, " ".join(_FLAGS)):
        digest.update(part.encode() + b"\0")
    for name in _SOURCES:
        digest.update((_SOURCE_DIR / name).read_bytes() + b"\0")
    directory = _cache_root() / digest.hexdigest()[:16]
    library = directory / _LIBRARY_NAME
    if library.exists():
        return library
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _BuildError(f"cannot create the kernel cache {directory}: {error}") from None
    with _file_lock(directory / "build.lock"):
        if library.exists():  # built by another process while this one waited
            return library
        _compile(executable, directory, library)
    return library


def _compile(executable: str, directory: Path, library: Path) -> None:
    handle, temporary = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=directory)
    os.close(handle)
    command = [executable, *_FLAGS, str(_SOURCE_DIR / "xnor.cpp"), "-o", temporary]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as error:
        os.unlink(temporary)
        raise _BuildError(f"the compiler did not run: {error}") from None
    log = directory / "build.log"
    log.write_text(" ".join(command) + "\n" + result.stdout + result.stderr)
    if result.returncode != 0:
        os.unlink(temporary)
        first = next((line for line in result.stderr.splitlines() if "error" in line), f"exit {result.returncode}")
        raise _BuildError(f"the build failed: {first.strip()} (full log: {log})")
    os.replace(temporary, library)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (POSIX); elsewhere the atomic rename alone keeps builds safe."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _bind(library: ctypes.CDLL) -> ctypes.CDLL:
    i64, ptr, i32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    library.binarize_best_isa.argtypes = []
    library.binarize_best_isa.restype = i32
    library.binarize_pack.argtypes = [ptr, ptr, ptr, *[i64] * 9, i32, i32, i32]
    library.binarize_pack.restype = i32
    f32 = ctypes.c_float
    library.binarize_conv.argtypes = [*[ptr] * 7, *[i64] * 4, f32, *[ptr] * 4, *[i64] * 13, i32, i32]
    library.binarize_conv.restype = i32
    library.best_isa = library.binarize_best_isa()
    return library
