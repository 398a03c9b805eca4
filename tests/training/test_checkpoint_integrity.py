"""Damaged, edited and diverged checkpoints are refused with one clear line, and nothing is written from them.

Every bad file is generated here from a real checkpoint of the tiny UNet: flipped bytes in the tensor data, NaN
weights, removed optimiser tensors, broken or missing metadata, tensors of the wrong shape.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import binarize.training.trainer as trainer
from binarize.cli import main
from binarize.training import CheckpointError, load_config, load_model, read_checkpoint, train
from binarize.training.checkpoint import tensor_checksum, write_checkpoint
from binarize.training.trainer import DivergedError
from tiny_experiment import tiny_experiment

Tensors = dict[str, torch.Tensor]
Metadata = dict[str, str]


def _config(folder: Path, steps: int = 2) -> dict:
    return {**tiny_experiment("tiny", recipe="bidiffsr", steps=steps, checkpoint_every=1), "out": str(folder)}


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder trained for two steps; tests copy it and damage the copy's last checkpoint."""
    folder = tmp_path_factory.mktemp("good") / "run"
    train(load_config(_config(folder)), progress=False)
    return folder


def _copy(good: Path, tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "run"
    shutil.copytree(good, folder)
    return folder, folder / "checkpoints" / "step_00000002.safetensors"


def _read(path: Path) -> tuple[Tensors, Metadata]:
    with safe_open(str(path), framework="pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}, dict(handle.metadata())  # noqa: SIM118


def _rewrite(path: Path, edit: Callable[[Tensors, Metadata], None], *, checksums: bool = True) -> None:
    """Apply ``edit`` to the file's tensors and metadata; with ``checksums``, store checksums that fit the edit."""
    tensors, metadata = _read(path)
    edit(tensors, metadata)
    if checksums:
        metadata["checksums"] = json.dumps({k: tensor_checksum(v) for k, v in sorted(tensors.items())})
    save_file(tensors, str(path), metadata=metadata)


def _flip_bytes(path: Path, count: int = 64) -> None:
    data = bytearray(path.read_bytes())
    start = 8 + struct.unpack("<Q", data[:8])[0]  # safetensors: header length, JSON header, then the tensor data
    for offset in range(start + 1000, start + 1000 + 97 * count, 97):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _one_line_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("binarize: error: ") and err.count("\n") == 1, err
    return err


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "checkpoints").iterdir())}


def test_flipped_bytes_are_detected_on_read_and_nothing_is_written(
    good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, last = _copy(good, tmp_path)
    _flip_bytes(last)
    before = _files(folder)
    with pytest.raises(CheckpointError, match=r"is damaged: data that does not match the stored checksum in model\."):
        read_checkpoint(last)
    with pytest.raises(CheckpointError, match="damaged"):
        train(load_config(_config(folder, steps=4)), progress=False)
    assert _files(folder) == before
    assert str(last) in _one_line_error(capsys, "eval", str(last))
    assert "damaged" in _one_line_error(capsys, "upscale", "in.png", str(tmp_path / "o.png"), "--model", str(last))


def test_each_damaged_tensor_is_named(good: Path, tmp_path: Path) -> None:
    _, last = _copy(good, tmp_path)
    tensors, metadata = _read(last)
    name = sorted(k for k in tensors if k.startswith("model."))[3]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 1e-3  # one value, slightly changed
    save_file(tensors, str(last), metadata=metadata)
    with pytest.raises(CheckpointError, match=f"does not match the stored checksum in {name}\\. It was changed"):
        read_checkpoint(last)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_on_load(
    good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: float
) -> None:
    folder, last = _copy(good, tmp_path)

    def poison(tensors: Tensors, _: Metadata) -> None:
        name = next(k for k, v in tensors.items() if k.startswith("model.") and v.is_floating_point())
        tensors[name] = tensors[name].clone()
        tensors[name].view(-1)[:3] = value

    _rewrite(last, poison)  # checksums that fit: only the values give it away
    with pytest.raises(CheckpointError, match=r": NaN or infinity in model\.\S+ \(3 of \d+ values\); the run"):
        load_model(last)
    before = _files(folder)
    with pytest.raises(CheckpointError, match="NaN or infinity"):
        train(load_config(_config(folder, steps=4)), progress=False)
    assert _files(folder) == before
    out = tmp_path / "sr.png"
    _one_line_error(capsys, "upscale", "in.png", str(out), "--model", str(last))
    assert not out.exists()
    assert "NaN or infinity" in _one_line_error(capsys, "eval", str(last), "--out", str(tmp_path / "ev"))


def test_training_stops_at_the_first_non_finite_loss_keeping_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "run"
    real = trainer.training_loss
    calls = []

    def diverging(*args: object, **options: object) -> torch.Tensor:
        calls.append(1)
        loss = real(*args, **options)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(trainer, "training_loss", diverging)
    with pytest.raises(DivergedError, match=r"step 3: the training loss is nan .* the last good checkpoint is "
                                            r".*step_00000002\.safetensors.*optim\.lr"):
        train(load_config(_config(folder, steps=5)), progress=False)
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == [
        "step_00000001.safetensors", "step_00000002.safetensors"
    ]
    assert read_checkpoint(folder / "checkpoints" / "step_00000002.safetensors").step == 2


def test_a_checkpoint_with_non_finite_weights_is_never_written(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    target = tmp_path / "x.safetensors"
    with pytest.raises(CheckpointError, match=r"not writing .*: NaN or infinity in model\.weight \(1 of 4 values\);"):
        write_checkpoint(target, model=model, config=load_config(None), recipe=None, recipe_hash="", step=1)
    assert not list(tmp_path.iterdir())


def _drop_optimizer_state(tensors: Tensors, metadata: Metadata) -> None:
    for key in [k for k in tensors if k.startswith("optim.")]:
        del tensors[key]
    metadata["optim_groups"] = "null"


def _drop_one_moment(tensors: Tensors, _: Metadata) -> None:
    del tensors["optim.0.exp_avg"]


def _drop_optimizer_tensors(tensors: Tensors, _: Metadata) -> None:
    for key in [k for k in tensors if k.startswith("optim.")]:
        del tensors[key]


@pytest.mark.parametrize("edit", [_drop_optimizer_state, _drop_one_moment, _drop_optimizer_tensors])
def test_resuming_without_optimizer_state_needs_an_explicit_flag(
    good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Callable[[Tensors, Metadata], None]
) -> None:
    folder, last = _copy(good, tmp_path)
    _rewrite(last, edit)
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(_config(folder, steps=3)))
    err = _one_line_error(capsys, "train", str(config), "--no-progress")
    assert str(last) in err and "optimiser state" in err and "--resume-weights-only" in err
    assert main(["train", str(config), "--no-progress", "--resume-weights-only"]) == 0
    assert "trained tiny to step 3" in capsys.readouterr().out


def test_optimizer_tensors_removed_after_writing_are_named(good: Path, tmp_path: Path) -> None:
    _, last = _copy(good, tmp_path)
    _rewrite(last, _drop_one_moment, checksums=False)
    with pytest.raises(CheckpointError, match=r"tensors it was written with are missing: optim\.0\.exp_avg\. It was"):
        read_checkpoint(last)


def _set(key: str, value: str) -> Callable[[Tensors, Metadata], None]:
    def edit(_: Tensors, metadata: Metadata) -> None:
        metadata[key] = value

    return edit


def _drop(key: str) -> Callable[[Tensors, Metadata], None]:
    def edit(_: Tensors, metadata: Metadata) -> None:
        del metadata[key]

    return edit


def _config_value(key: str, value: object) -> Callable[[Tensors, Metadata], None]:
    def edit(_: Tensors, metadata: Metadata) -> None:
        config = json.loads(metadata["config"])
        config[key] = value
        metadata["config"] = json.dumps(config)

    return edit


def _wrong_shape(tensors: Tensors, _: Metadata) -> None:
    name = next(k for k, v in tensors.items() if k.startswith("model.") and v.dim() == 4)
    tensors[name] = torch.zeros(*tensors[name].shape[:-1], tensors[name].shape[-1] + 2)


@pytest.mark.parametrize(("edit", "expected"), [
    (_set("config", "{not json"), "the metadata field 'config' is not valid JSON"),
    (_drop("config"), "its metadata lacks the field 'config'"),
    (_drop("step"), "its metadata lacks the field 'step'"),
    (_set("step", "twenty"), "the metadata field 'step' is 'twenty', not a count of steps"),
    (_set("recipe", "[1, 2]"), "the metadata field 'recipe' holds a list"),
    (_config_value("steps", "twenty"), "the experiment config in its metadata does not validate: steps must be int"),
    (_config_value("lr_typo", 1), "does not validate"),
    (_set("recipe_hash", "0" * 64), "its metadata's recipe_hash '000000000000' is not the hash of its recipe"),
    (_set("recipe", "null"), "is not the hash of its recipe (none: full precision)"),
    (_set("step", "99999999999999999999"), "its metadata says step 99999999999999999999, but its run has 2 steps"),
    (_wrong_shape, "its weights do not fit zoo:bidiffsr-unet-tiny: other shapes: "),
])
def test_broken_metadata_and_tensors_are_one_line_errors_naming_the_file(
    good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Callable[[Tensors, Metadata], None],
    expected: str,
) -> None:
    folder, last = _copy(good, tmp_path)
    _rewrite(last, edit)
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(_config(folder, steps=3)))
    before = _files(folder)
    err = _one_line_error(capsys, "train", str(config), "--no-progress")
    assert str(last) in err and expected in err, err
    assert _files(folder) == before
    err = _one_line_error(capsys, "eval", str(last))
    assert str(last) in err and expected in err, err


def test_a_recipe_mismatch_on_resume_names_both_recipes_and_what_differs(good: Path, tmp_path: Path) -> None:
    folder, _ = _copy(good, tmp_path)
    changed = _config(folder, steps=3)
    changed["recipe"] = "reactnet"
    with pytest.raises(CheckpointError) as caught:
        train(load_config(changed), progress=False)
    message = str(caught.value)
    assert "trained with the recipe 'bidiffsr', this config binarizes with the recipe 'reactnet'" in message
    assert 'recipe.name: "bidiffsr" -> "reactnet"' in message
    full_precision = {**_config(folder, steps=3), "recipe": None}
    with pytest.raises(CheckpointError, match="this config binarizes with full precision \\(no recipe\\)"):
        train(load_config(full_precision), progress=False)


def _retyped(dtype: torch.dtype) -> Callable[[Tensors, Metadata], None]:
    def edit(tensors: Tensors, _: Metadata) -> None:
        name = next(k for k, v in tensors.items() if k.startswith("model.") and v.dim() == 4)
        tensors[name] = tensors[name].to(dtype)

    return edit


@pytest.mark.parametrize("dtype", [torch.bool, torch.int32])
def test_weights_of_another_kind_are_refused_not_cast(
    good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], dtype: torch.dtype
) -> None:
    folder, last = _copy(good, tmp_path)
    _rewrite(last, _retyped(dtype))
    err = _one_line_error(capsys, "eval", str(last))
    assert "values of another kind: " in err and f"({dtype} instead of torch.float32)" in err
    with pytest.raises(CheckpointError, match="values of another kind"):
        train(load_config(_config(folder, steps=3)), progress=False)


def test_a_float16_copy_of_the_weights_still_loads(good: Path, tmp_path: Path) -> None:
    _, last = _copy(good, tmp_path)
    _rewrite(last, _retyped(torch.float16))
    load_model(last)


def _optimizer_edit(key: str, change: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Tensors, Metadata], None]:
    def edit(tensors: Tensors, _: Metadata) -> None:
        tensors[key] = change(tensors[key])

    return edit


@pytest.mark.parametrize(("edit", "expected"), [
    (_optimizer_edit("optim.0.exp_avg", lambda v: v[:1].clone()), "parameter 0: exp_avg of shape (1,"),
    (_optimizer_edit("optim.0.exp_avg_sq", lambda v: -v - 1), "parameter 0: negative values in exp_avg_sq"),
    (_optimizer_edit("optim.0.step", lambda v: -v), "parameter 0: step count -2, expected a whole number from 1 to 2"),
    (_optimizer_edit("optim.0.step", lambda v: v + 0.5), "step count 2.5"),
])
def test_optimizer_state_that_training_cannot_produce_is_refused(
    good: Path, tmp_path: Path, edit: Callable[[Tensors, Metadata], None], expected: str
) -> None:
    folder, last = _copy(good, tmp_path)
    _rewrite(last, edit)
    before = _files(folder)
    with pytest.raises(CheckpointError, match="lacks sound optimiser state") as caught:
        train(load_config(_config(folder, steps=3)), progress=False)
    assert expected in str(caught.value)
    assert _files(folder) == before


def test_a_checkpoint_renamed_to_another_step_is_refused(good: Path, tmp_path: Path) -> None:
    folder, last = _copy(good, tmp_path)
    last.rename(last.with_name("step_00000009.safetensors"))
    with pytest.raises(CheckpointError, match="holds step 2, not the step its name says"):
        train(load_config(_config(folder, steps=12)), progress=False)


def test_a_non_finite_held_out_loss_stops_the_run_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "run"
    monkeypatch.setattr(trainer, "held_out_loss", lambda *args: float("nan"))
    config = {**_config(folder, steps=3), "eval_every": 2}
    with pytest.raises(DivergedError, match=r"step 2: the held-out loss is nan .*step_00000001\.safetensors"):
        train(load_config(config), progress=False)
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["step_00000001.safetensors"]
    assert "NaN" not in (folder / "log.jsonl").read_text()
