"""The packed export: sizes, round trips, whole third-party and zoo models on packed bits, damaged files, the CLI."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from torch import nn

import binarize
from binarize.cli import main
from binarize.deploy import ExportError, PackedLayer, export, load, read_packed
from binarize.deploy.export import _pack_bytes, _unpack_bytes
from binarize.specs import resolve_model
from binarize.training.evaluate import load_model
from binarize.training.model import resolve_checkpoint
from deploy_oracle import IMPLEMENTATIONS


def _randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """Shifts, RPReLU tables and biases away from their initial zeros, so that they matter."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() <= 2 and any(part in name for part in ("shift", "activation", "bias")):
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model.eval()


def _agree(got: torch.Tensor, expected: torch.Tensor) -> None:
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) <= 1e-5 * max(1.0, float(expected.abs().max()))


def test_byte_packing_round_trips_and_counts_bits_first_least_significant() -> None:
    signs = torch.tensor([[1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0]])
    packed = _pack_bytes(signs)
    assert packed.tolist() == [[6, 1]] and packed.dtype == torch.uint8
    assert torch.equal(_unpack_bytes(packed, 9), signs)


@pytest.mark.parametrize("compiled", IMPLEMENTATIONS)
def test_timm_resnet18_with_reactnet_runs_packed_and_the_file_is_its_theoretical_size(
    tmp_path: Path, compiled: bool
) -> None:
    spec = resolve_model("timm:resnet18")
    model = _randomised(binarize.binarize(spec.model, "reactnet", example_inputs=spec.example_inputs(64)))
    report = export(model, tmp_path / "r18.safetensors", source={"model": "timm:resnet18", "size": None})
    binary = sum(m.weight.numel() for m in model.modules() if isinstance(m, binarize.nn.layers.BinaryLayerMixin))
    assert report.binary_weights == binary and report.binary_bytes == binary // 8
    assert 0 < report.overhead < 0.02 and report.file_bytes == (tmp_path / "r18.safetensors").stat().st_size
    assert report.theory_bytes == binary / 8 + report.float_bytes
    packed = load(tmp_path / "r18.safetensors", compiled=compiled)
    assert len(packed.deploy_report.packed) == len(report_layers(packed)) == 19 and not packed.deploy_report.kept
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
        _agree(packed(x), expected)
        _agree(load(tmp_path / "r18.safetensors", packed=False)(x), expected)


def report_layers(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, PackedLayer)]


@pytest.mark.parametrize("compiled", IMPLEMENTATIONS)
def test_a_vit_with_reactnet_runs_its_binary_linears_packed(tmp_path: Path, compiled: bool) -> None:
    spec = resolve_model("timm:vit_tiny_patch16_224", size=32)
    model = _randomised(binarize.binarize(spec.model, "reactnet", example_inputs=spec.example_inputs(32)))
    export(model, tmp_path / "vit.safetensors", source={"model": "timm:vit_tiny_patch16_224", "size": 32})
    packed = load(tmp_path / "vit.safetensors", compiled=compiled)
    kinds = {type(m).__name__ for m in packed.modules() if isinstance(m, PackedLayer)}
    assert "PackedLinear" in kinds and len(packed.deploy_report.packed) >= 24
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        _agree(packed(x), model(x))


@pytest.mark.parametrize("compiled", IMPLEMENTATIONS)
def test_the_zoo_bidiffsr_model_runs_packed_with_mixed_timesteps(tmp_path: Path, compiled: bool) -> None:
    target = tmp_path / "bidiffsr.safetensors"
    assert main(["export", "zoo:bidiffsr-small-x2", str(target)]) == 0
    trained, _ = load_model(resolve_checkpoint("zoo:bidiffsr-small-x2"))
    packed = load(target, compiled=compiled)
    assert len(packed.deploy_report.packed) == 56 and not packed.deploy_report.kept
    generator = torch.Generator().manual_seed(3)
    x, cond = torch.randn(3, 3, 24, 24, generator=generator), torch.randn(3, 3, 24, 24, generator=generator)
    t = torch.tensor([3, 800, 1990])
    with torch.no_grad():
        _agree(packed(x, t, cond), trained(x, t, cond))


def test_half_stores_float_parts_in_float16_and_loads_them_as_float32(tmp_path: Path) -> None:
    model = _randomised(binarize.binarize(nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 16, 3, padding=1),
                                                        nn.Conv2d(16, 4, 1)), "reactnet"))
    full = export(model, tmp_path / "full.safetensors")
    half = export(model, tmp_path / "half.safetensors", half=True)
    assert half.float_bytes < full.float_bytes and half.binary_bytes == full.binary_bytes
    stored = read_packed(tmp_path / "half.safetensors")
    assert {v.dtype for k, v in stored.float_state().items() if v.is_floating_point()} == {torch.float16}
    assert all(v.dtype == torch.float32 for k, v in stored.tensors.items() if k.endswith(".weight.alpha"))
    fake = load(tmp_path / "half.safetensors", model=model, packed=False)
    packed = load(tmp_path / "half.safetensors", model=model, compiled=False)
    assert all(p.dtype == torch.float32 for p in packed.parameters())
    x = torch.randn(1, 3, 12, 12)
    with torch.no_grad():
        _agree(packed(x), fake(x))


def test_a_file_without_source_needs_the_architecture_and_the_model_is_not_changed(tmp_path: Path) -> None:
    model = _randomised(binarize.binarize(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 2, 1)),
                                          "reactnet"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export(model, tmp_path / "m.safetensors")
    with pytest.raises(ExportError, match="stores no model source; pass the binarized architecture"):
        load(tmp_path / "m.safetensors")
    packed = load(tmp_path / "m.safetensors", model=model, compiled=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(packed[1], PackedLayer) and not isinstance(model[1], PackedLayer)
    with pytest.raises(ExportError, match="does not fit the model"):
        load(tmp_path / "m.safetensors", model=binarize.binarize(
            nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 2, 1), nn.BatchNorm2d(2)), "reactnet"))
    with pytest.raises(ExportError, match="has no binary layer"):
        export(nn.Sequential(nn.Conv2d(3, 8, 3)), tmp_path / "none.safetensors")


def _flip_data_byte(path: Path, offset_from_end: int) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def test_damaged_foreign_and_truncated_files_are_refused_naming_what_is_wrong(tmp_path: Path) -> None:
    model = binarize.binarize(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 8, 3)), "reactnet")
    path = tmp_path / "m.safetensors"
    export(model, path)
    clean = path.read_bytes()
    _flip_data_byte(path, 3)
    with pytest.raises(ExportError, match="is damaged: data that does not match the stored checksum in"):
        read_packed(path)
    path.write_bytes(clean[: len(clean) // 2])
    with pytest.raises(ExportError, match="is not a readable safetensors file"):
        read_packed(path)
    header_size = struct.unpack("<Q", clean[:8])[0]
    header = json.loads(clean[8:8 + header_size])
    header["__metadata__"]["index"] = "not base64!"
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + clean[8 + header_size:])
    with pytest.raises(ExportError, match="its tensor index cannot be read"):
        read_packed(path)
    checkpoint = resolve_checkpoint("zoo:bidiffsr-small-x2")
    with pytest.raises(ExportError, match="is not a packed binarize export"):
        read_packed(checkpoint)
    with pytest.raises(ExportError, match="no packed model at"):
        read_packed(tmp_path / "missing.safetensors")


def test_cli_exports_a_model_spec_and_refuses_what_it_cannot_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "resnet8.safetensors"
    assert main(["export", "zoo:resnet8", str(target), "--recipe", "reactnet", "--half"]) == 0
    out = capsys.readouterr().out
    assert "binary weights as bits" in out and "freshly binarized weights" in out
    assert isinstance(load(target, compiled=False), nn.Module)
    assert main(["export", "zoo:resnet8", str(target), "--recipe", "reactnet"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["export", "zoo:resnet8", str(tmp_path / "x.safetensors")]) == 2
    assert "needs --recipe" in capsys.readouterr().err
    assert main(["export", "zoo:fp-small-x2", str(tmp_path / "fp.safetensors")]) == 2
    assert "full-precision checkpoint" in capsys.readouterr().err
    assert main(["export", "zoo:bidiffsr-small-x2", str(tmp_path / "y.safetensors"), "--recipe", "reactnet"]) == 2
    assert "carries its own recipe" in capsys.readouterr().err


def test_upscale_packed_reports_size_and_speed_and_writes_the_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from binarize.data import save_image

    save_image(torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(4)), tmp_path / "lr.png")
    args = ["upscale", str(tmp_path / "lr.png"), str(tmp_path / "sr.png"), "--steps", "2", "--no-progress"]
    assert main([*args, "--model", "zoo:bidiffsr-small-x2", "--packed"]) == 0
    captured = capsys.readouterr()
    assert "packed: 56 binary layers on packed bits" in captured.err and "smaller" in captured.err
    assert "wrote" in captured.out and (tmp_path / "sr.png").is_file()
    assert main([*args, "--model", "zoo:fp-small-x2", "--packed", "--overwrite"]) == 2
    assert "--packed needs a binarized model" in capsys.readouterr().err


@pytest.mark.parametrize("compiled", IMPLEMENTATIONS)
def test_the_tiny_bidiffsr_unet_freezes_with_mixed_timesteps(compiled: bool) -> None:
    from binarize.deploy import freeze
    from binarize.zoo import ZOO

    generator = torch.Generator().manual_seed(5)
    x, cond = torch.randn(3, 3, 16, 16, generator=generator), torch.randn(3, 3, 16, 16, generator=generator)
    t = torch.tensor([0, 999, 1999])
    model = _randomised(binarize.binarize(ZOO.get("bidiffsr-unet-tiny").build(), "bidiffsr",
                                          example_inputs=(x, t, cond)), seed=6)
    packed = freeze(model, compiled=compiled)
    assert packed.deploy_report.packed and not packed.deploy_report.kept
    with torch.no_grad():
        _agree(packed(x, t, cond), model(x, t, cond))
