"""``binarize train / eval / upscale`` on the tiny UNet: exact resumption, checkpoints, evaluation, bad input, DDP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from binarize.cli import main
from binarize.data import load_image, save_image
from binarize.training import CheckpointError, ConfigError, load_config, load_model, read_checkpoint, train
from tiny_experiment import tiny_experiment

TINY = tiny_experiment("tiny", recipe="bidiffsr", steps=4, log_every=1, checkpoint_every=2,
                       optim={"schedule": "cosine", "warmup": 1})


def tiny(tmp_path: Path, name: str = "run", **changes: object) -> dict:
    return {**TINY, **changes, "out": str(tmp_path / name)}


def test_resuming_is_exact(tmp_path: Path) -> None:
    whole = train(load_config(tiny(tmp_path, "whole")), progress=False)
    half = load_config(tiny(tmp_path, "halves"))
    first = train(half, progress=False, stop_after=2)
    second = train(half, progress=False)
    assert first.step == 2 and second.resumed_from is not None and second.step == 4
    assert whole.losses == first.losses + second.losses
    for (name, a), (_, b) in zip(whole.model.state_dict().items(), second.model.state_dict().items()):
        assert torch.equal(a, b), name
    log = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and "held_out_loss" in log[-1]
    config = load_config(tiny(tmp_path))
    assert [r["lr"] for r in log] == [config.optim.lr_at(step, 4) for step in range(4)]  # warm-up, then cosine


def test_checkpoint_rebuilds_the_model_from_the_file_alone(tmp_path: Path) -> None:
    result = train(load_config(tiny(tmp_path)), progress=False)
    checkpoint = read_checkpoint(result.last_checkpoint)
    assert checkpoint.step == 4 and checkpoint.recipe["name"] == "bidiffsr" and checkpoint.optimizer_state
    model, _ = load_model(result.last_checkpoint)
    x = (torch.rand(1, 3, 16, 16), torch.tensor([7]), torch.rand(1, 3, 16, 16))
    result.model.eval()
    with torch.no_grad():
        assert torch.equal(model(*x), result.model(*x))
    assert not list(result.last_checkpoint.parent.glob("*.tmp"))  # atomic writes leave nothing behind


def test_a_run_folder_refuses_another_recipe(tmp_path: Path) -> None:
    train(load_config(tiny(tmp_path, steps=2)), progress=False)
    with pytest.raises(CheckpointError, match="was trained with the recipe .bidiffsr., this config binarizes with the recipe .reactnet."):
        train(load_config(tiny(tmp_path, recipe="reactnet", steps=4)), progress=False)


def test_cli_train_eval_upscale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(tiny(tmp_path)))  # JSON is YAML
    assert main(["train", str(config), "--no-progress", "--steps", "2"]) == 0
    assert "trained tiny to step 2" in capsys.readouterr().out
    checkpoint = next((tmp_path / "run" / "checkpoints").glob("*.safetensors"))
    assert main(["eval", str(checkpoint), "--out", str(tmp_path / "ev"), "--json", "--steps", "1", "--tile", "64"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["size"]) for r in report["images"]] == [("chelsea", "450x300"), ("flower", "640x426")]
    assert report["protocol"] == {"crop": None, "steps": 1, "seed": 0, "scale": 2}  # whole photos by default
    assert report["mean"]["bicubic_psnr_y"] > 25
    assert {p.name for p in (tmp_path / "ev").iterdir()} == {"eval.json", "eval.md", "eval.png"}
    assert main(["eval", str(checkpoint), "--out", str(tmp_path / "ev"), "--crop", "64"]) == 0
    table = capsys.readouterr().out
    assert "centred 64x64 crops, x2, DDIM 2 steps" in table and "| chelsea | 64x64 |" in table
    assert main(["eval", str(checkpoint), "--crop", "64", "--data", str(tmp_path)]) == 2
    assert "an image folder (--data) is evaluated whole" in capsys.readouterr().err
    image = tmp_path / "lr.png"
    save_image(torch.rand(3, 13, 21), image)  # any size: padded for the UNet, cropped back
    assert main(["upscale", str(image), str(tmp_path / "sr.png"), "--model", str(checkpoint), "--steps", "2"]) == 0
    assert tuple(load_image(tmp_path / "sr.png").shape) == (3, 26, 42)
    assert main(["upscale", str(image), str(tmp_path / "sr.png"), "--model", str(checkpoint), "--scale", "4"]) == 2
    assert "does not match the model" in capsys.readouterr().err
    (tmp_path / "junk.png").write_text("not an image")
    assert main(["upscale", str(tmp_path / "junk.png"), str(tmp_path / "x.png"), "--model", str(checkpoint)]) == 2
    assert main(["eval", str(tmp_path / "junk.png")]) == 2
    err = capsys.readouterr().err
    assert "junk.png" in err and "not a readable safetensors checkpoint" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_torchrun_two_processes(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(tiny(tmp_path, steps=2)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), "-m", "binarize", "train", str(config), "--no-progress"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000002.safetensors").step == 2


def test_an_interrupted_run_keeps_its_last_finished_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import binarize.training.trainer as trainer

    whole = train(load_config(tiny(tmp_path, "whole", checkpoint_every=0)), progress=False)
    real, calls = trainer.training_loss, []

    def interrupt_third(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    config = load_config(tiny(tmp_path, "cut", checkpoint_every=0))
    monkeypatch.setattr(trainer, "training_loss", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False, echo=lambda message: None)
    monkeypatch.setattr(trainer, "training_loss", real)
    saved = sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir())
    assert saved == ["step_00000002.safetensors"]  # the two finished steps, nothing half-written
    resumed = train(config, progress=False)
    assert resumed.resumed_from is not None and resumed.losses == whole.losses[2:]
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_distillation_from_a_teacher(tmp_path: Path) -> None:
    teacher = train(load_config(tiny(tmp_path, "teacher", recipe=None, steps=2)), progress=False).last_checkpoint
    student = train(load_config(tiny(tmp_path, "student", steps=2, teacher=str(teacher), teacher_weight=0.5)),
                    progress=False)
    plain = train(load_config(tiny(tmp_path, "plain", steps=2)), progress=False)
    assert student.step == 2 and student.losses[0] > plain.losses[0]  # the same first step plus the extra term
    other = tiny(tmp_path, "other", steps=2, teacher=str(teacher), diffusion={"target": "residual-edm"})
    with pytest.raises(ConfigError, match="teacher .* was trained with diffusion.target 'residual'"):
        train(load_config(other), progress=False)
