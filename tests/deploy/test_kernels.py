"""The compiled xnor-popcount kernels: bit-exact against float convolutions of the +-1 tensors, on every
instruction set this CPU runs, with their epilogue, threads, build fallback and errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from binarize.deploy import kernels
from binarize.deploy.bits import pack_signs
from binarize.deploy.kernels import ISAS, KernelWarning

ROOT = Path(__file__).resolve().parents[2]


def _available() -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KernelWarning)  # test_kernels_build_with_a_compiler reports the reason
        return kernels.kernels_available()


needs_kernels = pytest.mark.skipif(not _available(), reason="the compiled kernels do not build here")


def _supported() -> tuple[str, ...]:
    return ISAS[: ISAS.index(kernels.kernel_isa()) + 1] if _available() else ()


@pytest.fixture(params=ISAS)
def isa(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each instruction set in turn, forced through BINARIZE_DEPLOY_ISA (skipped where the CPU lacks it)."""
    if not _available():
        pytest.skip("the compiled kernels do not build here")
    if request.param not in _supported():
        pytest.skip(f"this CPU does not support {request.param} (it runs {', '.join(_supported())})")
    monkeypatch.setenv("BINARIZE_DEPLOY_ISA", request.param)
    return request.param


def _signs(values: torch.Tensor) -> torch.Tensor:
    """+-1 in float64 with sign(0) = +1, as the packed bits mean."""
    return torch.where(values < 0, -1.0, 1.0).to(torch.float64)


def _activations(n: int, c: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random activations with exact zeros of both signs, and per-sample shifts that cancel some values exactly."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen)
    pick = torch.rand(n, c, h, w, generator=gen)
    x = torch.where(pick < 0.05, torch.zeros(()), x)
    x = torch.where((pick >= 0.05) & (pick < 0.1), torch.tensor(-0.0), x)
    shift = torch.randn(n, c, generator=gen)
    x = torch.where(pick > 0.95, -shift[:, :, None, None].expand_as(x), x)  # x + shift == 0 exactly: +1
    return x.contiguous(), shift


def _packed_weight(signs: torch.Tensor, groups: int) -> torch.Tensor:
    o, cg, kh, kw = signs.shape
    return pack_signs(signs.reshape(groups, o // groups, cg, kh, kw), dim=2)


@st.composite
def _convolutions(draw: st.DrawFn) -> dict:
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.sampled_from([1, 3, 8, 13, 63, 64, 65, 100, 128, 130]))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pads = [draw(st.integers(0, 2)) for _ in range(4)]
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 11))
    # Grow the bottom / right padding until the kernel fits.
    pads[1] = max(pads[1], dh * (kh - 1) + 1 - h - pads[0])
    pads[3] = max(pads[3], dw * (kw - 1) + 1 - w - pads[2])
    return {
        "n": draw(st.integers(1, 3)),
        "groups": groups,
        "cg": cg,
        "og": draw(st.integers(1, 11)),
        "h": h,
        "w": w,
        "kernel": (kh, kw),
        "stride": (draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        "dilation": (dh, dw),
        "pads": tuple(pads),
        "pad_negative": draw(st.booleans()),
        "shifted": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


@settings(max_examples=60)
@given(case=_convolutions())
def _check_convolution(isa: str, case: dict) -> None:
    n, groups, cg, og = case["n"], case["groups"], case["cg"], case["og"]
    top, bottom, left, right = case["pads"]
    x, shift = _activations(n, groups * cg, case["h"], case["w"], case["seed"])
    shift = shift if case["shifted"] else None
    fill = -1.0 if case["pad_negative"] else 1.0
    values = x if shift is None else x + shift[:, :, None, None]
    padded = F.pad(values, (left, right, top, bottom), value=fill)

    packed = kernels.pack_activations(
        x, groups=groups, pads=case["pads"], shift=shift, pad_negative=case["pad_negative"]
    )
    expected_bits = pack_signs(padded.reshape(n, groups, cg, *padded.shape[2:]), dim=2)
    assert torch.equal(packed, expected_bits)

    gen = torch.Generator().manual_seed(case["seed"] + 1)
    weight = _signs(torch.randn(groups * og, cg, *case["kernel"], generator=gen))
    acc = kernels.xnor_accumulate(
        packed, _packed_weight(weight, groups), channels=cg, stride=case["stride"], dilation=case["dilation"]
    )
    expected = F.conv2d(_signs(padded), weight, stride=case["stride"], dilation=case["dilation"], groups=groups)
    assert acc.dtype == torch.int32
    assert torch.equal(acc, expected.to(torch.int32))


def test_accumulators_equal_the_float_convolution_of_the_signs(isa: str) -> None:
    _check_convolution(isa)


@pytest.mark.parametrize("rows, features, outputs", [(37, 768, 70), (5, 100, 9), (64, 4096, 8)])
def test_linear_shapes(isa: str, rows: int, features: int, outputs: int) -> None:
    """A linear layer as a 1 x 1 convolution of 1 x 1 images (channels contiguous in memory)."""
    x, shift = _activations(rows, features, 1, 1, seed=rows)
    packed = kernels.pack_activations(x, groups=1, pads=(0, 0, 0, 0), shift=shift)
    weight = _signs(torch.randn(outputs, features, 1, 1))
    acc = kernels.xnor_accumulate(packed, _packed_weight(weight, 1), channels=features, stride=1, dilation=1)
    expected = _signs(x + shift[:, :, None, None]).flatten(1) @ weight.flatten(1).T
    assert torch.equal(acc.flatten(1), expected.to(torch.int32))


@pytest.mark.parametrize("alpha_shape", [None, (), (10,)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_epilogue_scales_then_shifts_in_float32(isa: str, alpha_shape: tuple[int, ...] | None, with_bias: bool) -> None:
    """alpha * acc + bias rounded as torch rounds it (product, then sum), signed zeros included."""
    groups, og, cg = 2, 5, 70
    x, _ = _activations(2, groups * cg, 9, 8, seed=3)
    packed = kernels.pack_activations(x, groups=groups, pads=(1, 1, 1, 1))
    weight = _packed_weight(_signs(torch.randn(groups * og, cg, 3, 3)), groups)
    alpha = None if alpha_shape is None else torch.randn(alpha_shape)
    bias = torch.randn(groups * og) if with_bias else None
    out = kernels.xnor_conv2d(packed, weight, channels=cg, stride=(1, 2), dilation=1, alpha=alpha, bias=bias)
    expected = kernels.xnor_accumulate(packed, weight, channels=cg, stride=(1, 2), dilation=1).to(torch.float32)
    if alpha is not None:
        expected = expected * (alpha.view(1, -1, 1, 1) if alpha.dim() else alpha)
    if bias is not None:
        expected = expected + bias.view(1, -1, 1, 1)
    assert out.dtype == torch.float32 and out.is_contiguous()
    assert torch.equal(out.view(torch.int32), expected.view(torch.int32))


def test_zero_accumulators_keep_the_sign_of_a_negative_scale(isa: str) -> None:
    x = torch.ones(1, 2, 1, 1)  # two +1 inputs against weights +1, -1: acc = 0
    weight = pack_signs(torch.tensor([1.0, -1.0])).view(1, 1, 1, 1, 1)
    packed = kernels.pack_activations(x, groups=1, pads=(0, 0, 0, 0))
    out = kernels.xnor_conv2d(packed, weight, channels=2, stride=1, dilation=1, alpha=torch.tensor(-2.0))
    assert out.item() == 0.0 and torch.signbit(out).item()


def test_two_threads_give_the_result_of_one(isa: str) -> None:
    x, shift = _activations(2, 130, 23, 21, seed=5)
    weight = _packed_weight(_signs(torch.randn(24, 130, 3, 3)), 1)
    alpha, bias = torch.randn(24), torch.randn(24)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            packed = kernels.pack_activations(x, groups=1, pads=(1, 1, 1, 1), shift=shift, pad_negative=True)
            out = kernels.xnor_conv2d(packed, weight, channels=130, stride=1, dilation=1, alpha=alpha, bias=bias)
            results.append((packed, out))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])


@needs_kernels
def test_isa_choice_and_its_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    best = kernels.kernel_isa()
    assert best in ISAS
    monkeypatch.setenv("BINARIZE_DEPLOY_ISA", "portable")
    assert kernels.kernel_isa() == "portable"
    monkeypatch.setenv("BINARIZE_DEPLOY_ISA", "sse9")
    with pytest.raises(ValueError, match="not one of portable, avx2, avx512_vpopcntdq"):
        kernels.kernel_isa()
    if best != ISAS[-1]:
        monkeypatch.setenv("BINARIZE_DEPLOY_ISA", ISAS[-1])
        with pytest.raises(ValueError, match="not supported by this CPU"):
            kernels.pack_activations(torch.zeros(1, 1, 1, 1), groups=1, pads=(0, 0, 0, 0))


@needs_kernels
def test_arguments_are_checked() -> None:
    x = torch.zeros(1, 6, 4, 4)
    with pytest.raises(TypeError, match="float32"):
        kernels.pack_activations(x.double(), groups=1, pads=(0, 0, 0, 0))
    with pytest.raises(ValueError, match="groups=4"):
        kernels.pack_activations(x, groups=4, pads=(0, 0, 0, 0))
    with pytest.raises(ValueError, match="pads"):
        kernels.pack_activations(x, groups=1, pads=(0, -1, 0, 0))
    with pytest.raises(ValueError, match="shift must have shape"):
        kernels.pack_activations(x, groups=1, pads=(0, 0, 0, 0), shift=torch.zeros(6, 1))
    packed = kernels.pack_activations(x, groups=1, pads=(0, 0, 0, 0))
    weight = torch.zeros(1, 2, 3, 3, 1, dtype=torch.int64)
    with pytest.raises(ValueError, match="do not fit 65 channels"):
        kernels.xnor_accumulate(packed, weight, channels=65, stride=1, dilation=1)
    with pytest.raises(ValueError, match="does not fit"):
        kernels.xnor_accumulate(packed, weight, channels=6, stride=1, dilation=2)
    with pytest.raises(ValueError, match="alpha"):
        kernels.xnor_conv2d(packed, weight, channels=6, stride=1, dilation=1, alpha=torch.ones(3))
    with pytest.raises(ValueError, match="stride"):
        kernels.xnor_conv2d(packed, weight, channels=6, stride=0, dilation=1)


def test_kernels_build_with_a_compiler() -> None:
    if shutil.which(os.environ.get("CXX") or "c++") is None:
        pytest.skip("no C++ compiler here")
    assert kernels.kernels_available()


def _reset(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    """A fresh load, as in a new process (monkeypatch restores the loaded library afterwards)."""
    monkeypatch.setattr(kernels, "_library", None)
    monkeypatch.setattr(kernels, "_failure", None)
    monkeypatch.setenv("BINARIZE_DEPLOY_CACHE", str(cache))
    monkeypatch.delenv("BINARIZE_DEPLOY_KERNELS", raising=False)


def _warns_once(match: str) -> None:
    with pytest.warns(KernelWarning, match=match) as record:
        assert not kernels.kernels_available()
    assert len(record) == 1 and "the pure-torch reference runs instead" in str(record[0].message)
    assert "\n" not in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not kernels.kernels_available()  # cached: no second warning
    with pytest.raises(RuntimeError, match="not available"):
        kernels.pack_activations(torch.zeros(1, 1, 1, 1), groups=1, pads=(0, 0, 0, 0))


def test_missing_compiler_warns_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _reset(monkeypatch, tmp_path)
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    _warns_once("not found")


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands in for the compiler")
def test_failing_build_warns_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _reset(monkeypatch, tmp_path / "cache")
    compiler = tmp_path / "broken-c++"
    compiler.write_text(
        textwrap.dedent(
            """\
            #!/bin/sh
            if [ "$1" = "--version" ]; then echo "broken 1.0"; exit 0; fi
            echo "xnor.cpp:1:1: error: this compiler is broken" >&2
            exit 1
            """
        )
    )
    compiler.chmod(0o755)
    monkeypatch.setenv("CXX", str(compiler))
    _warns_once("build failed: xnor.cpp:1:1: error: this compiler is broken")
    assert not list((tmp_path / "cache").rglob("*.so"))


def test_disabled_by_the_environment_without_a_warning(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _reset(monkeypatch, tmp_path)
    monkeypatch.setenv("BINARIZE_DEPLOY_KERNELS", "0")
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    assert not kernels.kernels_available()  # warnings are errors here
    with pytest.raises(RuntimeError, match="BINARIZE_DEPLOY_KERNELS"):
        kernels.kernel_isa()


@pytest.mark.slow
@needs_kernels
def test_concurrent_builds_share_one_cache(tmp_path: Path) -> None:
    """Two processes building into the same empty cache at once both load a complete library."""
    script = (
        "import warnings; warnings.simplefilter('error'); from binarize.deploy import kernels; "
        "assert kernels.kernels_available(); print(kernels.kernel_isa())"
    )
    env = {**os.environ, "BINARIZE_DEPLOY_CACHE": str(tmp_path)}
    env.pop("BINARIZE_DEPLOY_ISA", None)
    procs = [
        subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=300)[0].strip() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    assert outputs[0] == outputs[1] == kernels.kernel_isa()
    assert len(list(tmp_path.rglob("*.so"))) == 1


@settings(max_examples=40, deadline=None)
@given(case=_convolutions(), fused=st.sampled_from(["none", "prelu", "rprelu", "all"]))
def _check_fused_epilogue(isa: str, case: dict, fused: str) -> None:
    from binarize.deploy import reference

    n, groups, cg, og = case["n"], case["groups"], case["cg"], case["og"]
    top, bottom, left, right = case["pads"]
    x, _ = _activations(n, groups * cg, case["h"], case["w"], case["seed"])
    packed = kernels.pack_activations(x, groups=groups, pads=case["pads"], pad_negative=case["pad_negative"])
    gen = torch.Generator().manual_seed(case["seed"] + 2)
    signs = _signs(torch.randn(groups * og, cg, *case["kernel"], generator=gen))
    weight = _packed_weight(signs, groups)
    prepared = kernels.prepare_weight(weight)
    geometry = {"channels": cg, "stride": case["stride"], "dilation": case["dilation"]}
    acc = kernels.xnor_accumulate(packed, weight, prepared=prepared, **geometry)
    assert torch.equal(acc, reference.xnor_accumulate(packed, weight, **geometry))

    o = groups * og
    alpha, bias = torch.rand(o, generator=gen) + 0.1, torch.randn(o, generator=gen)
    tap_sums = signs.sum(dim=1).to(torch.int32)
    border = (top, left, case["h"], case["w"], tap_sums, -1.0 if not case["pad_negative"] else 1.0)
    rows = [torch.randn(n, o, generator=gen) for _ in range(3)]
    prelu = None
    if fused == "prelu":
        prelu = (None, rows[1], None)
    elif fused in ("rprelu", "all"):
        prelu = tuple(rows)
    out_shape = acc.shape
    residual = torch.randn(out_shape, generator=gen) if fused == "all" else None
    extras = {"alpha": alpha, "bias": bias, "border": border, "prelu": prelu, "residual": residual}
    out = kernels.xnor_conv2d(packed, weight, prepared=prepared, **geometry, **extras)
    expected = reference.xnor_conv2d(packed, weight, **geometry, **extras)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


def test_fused_epilogue_matches_the_reference(isa: str) -> None:
    """Border correction, scale, bias, PReLU / RPReLU and residual in the kernel against the torch definition."""
    _check_fused_epilogue(isa)


def test_border_correction_restores_a_zero_padding(isa: str) -> None:
    """Packed with +1 padding and corrected with coef -1, the output is the convolution of the zero-padded signs."""
    x, _ = _activations(2, 70, 9, 11, seed=7)
    weight = _signs(torch.randn(12, 70, 3, 3))
    packed = kernels.pack_activations(x, groups=1, pads=(1, 1, 2, 2))
    border = (1, 2, 9, 11, weight.sum(dim=1), -1.0)
    out = kernels.xnor_conv2d(packed, _packed_weight(weight, 1), channels=70, stride=(2, 1), dilation=(1, 2),
                              border=border)
    zero_padded = F.pad(_signs(x), (2, 2, 1, 1))
    expected = F.conv2d(zero_padded, weight, stride=(2, 1), dilation=(1, 2))
    assert torch.equal(out, expected.to(torch.float32))


def test_prepared_weight_gives_the_same_result(isa: str) -> None:
    x, _ = _activations(1, 130, 12, 12, seed=9)
    weight = _packed_weight(_signs(torch.randn(20, 130, 3, 3)), 1)
    packed = kernels.pack_activations(x, groups=1, pads=(1, 1, 1, 1))
    prepared = kernels.prepare_weight(weight)
    assert prepared.dtype == torch.int64
    with_prepared = kernels.xnor_accumulate(packed, weight, channels=130, stride=1, dilation=1, prepared=prepared)
    without = kernels.xnor_accumulate(packed, weight, channels=130, stride=1, dilation=1)
    assert torch.equal(with_prepared, without)


@needs_kernels
def test_fused_arguments_are_checked() -> None:
    packed = kernels.pack_activations(torch.zeros(1, 6, 4, 4), groups=1, pads=(1, 1, 1, 1))
    weight = torch.zeros(1, 2, 3, 3, 1, dtype=torch.int64)
    geometry = {"channels": 6, "stride": 1, "dilation": 1}
    with pytest.raises(ValueError, match="prepared"):
        kernels.xnor_conv2d(packed, weight, prepared=torch.zeros(3, dtype=torch.int64), **geometry)
    with pytest.raises(ValueError, match="tap_sums must have shape"):
        kernels.xnor_conv2d(packed, weight, border=(1, 1, 4, 4, torch.zeros(2, 3), -1.0), **geometry)
    with pytest.raises(ValueError, match="integers"):
        kernels.xnor_conv2d(packed, weight, border=(1, 1, 4, 4, torch.full((2, 3, 3), 0.5), -1.0), **geometry)
    with pytest.raises(ValueError, match="slope"):
        kernels.xnor_conv2d(packed, weight, prelu=(None, None, None), **geometry)
    with pytest.raises(ValueError, match=r"prelu shift_in must have shape \(N, O\)"):
        kernels.xnor_conv2d(packed, weight, prelu=(torch.zeros(2, 2), torch.zeros(1, 2), None), **geometry)
    with pytest.raises(ValueError, match="residual must have shape"):
        kernels.xnor_conv2d(packed, weight, residual=torch.zeros(1, 2, 3, 3), **geometry)
