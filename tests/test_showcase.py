"""Zoo cards, ``binarize publish`` and ``binarize demo``: the shipped models are measured exactly as their cards say."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from binarize.cli import main
from binarize.errors import BinarizeError
from binarize.showcase import card_markdown, publish, training_summary
from binarize.showcase.cards import earlier_stages, reproduce_commands, with_earlier_stages
from binarize.showcase import demo as demo_module
from binarize.showcase.measure import DEMO_STEPS
from binarize.training import load_config, train
from binarize.zoo import TRAINED
from tiny_experiment import tiny_experiment

TINY = tiny_experiment("tiny-card", recipe="bidiffsr", steps=3, log_every=1, checkpoint_every=3)


def test_training_summary_adds_up_resumed_segments(tmp_path: Path) -> None:
    records = [{"step": 1, "elapsed_s": 2.0}, {"step": 2, "elapsed_s": 4.0, "held_out_loss": 0.5},
               {"step": 3, "elapsed_s": 1.5}, {"step": 4, "elapsed_s": 3.0, "held_out_loss": 0.25}]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = training_summary(tmp_path)
    assert summary["wall_s"] == 7.0 and summary["steps"] == 4 and summary["held_out_loss"] == 0.25
    assert summary["held_out_curve"] == [[2, 0.5], [4, 0.25]]
    assert training_summary(tmp_path / "missing") == {}


def test_a_second_stage_counts_the_wall_time_of_the_first(tmp_path: Path) -> None:
    stage = tiny_experiment("tiny-stage", recipe=None, steps=2, log_every=1, checkpoint_every=2)
    first = train(load_config({**stage, "out": str(tmp_path / "first")}), progress=False)
    second_config = load_config({**stage, "init": str(first.last_checkpoint), "out": str(tmp_path / "second")})
    second = train(second_config, progress=False)
    own = training_summary(tmp_path / "second")
    both = with_earlier_stages(own, second_config)
    assert both["stages"] == 2
    assert both["wall_s"] == pytest.approx(own["wall_s"] + training_summary(tmp_path / "first")["wall_s"])
    shutil.rmtree(tmp_path / "first")  # the first stage's run folder is gone: only this run's time is known
    assert with_earlier_stages(own, second_config) == own
    data = publish(second.last_checkpoint, zoo=tmp_path / "zoo", hardware="test machine", crop=32)
    assert "stages" not in data["training"] and "stages)" not in card_markdown(data)
    assert "(2 stages) on test machine" in card_markdown({**data, "training": {**data["training"], "stages": 2}})


def test_publish_writes_a_compact_checkpoint_and_its_card(tmp_path: Path) -> None:
    run = train(load_config({**TINY, "out": str(tmp_path / "run")}), progress=False)
    data = publish(run.last_checkpoint, zoo=tmp_path / "zoo", hardware="test machine", crop=32)
    compact = tmp_path / "zoo" / "checkpoints" / "tiny-card.safetensors"
    assert compact.is_file() and data["cost"]["checkpoint_bytes"] == compact.stat().st_size
    assert json.loads((tmp_path / "zoo" / "cards" / "tiny-card.json").read_text()) == data
    assert data["recipe"] == "bidiffsr" and data["target"] == "residual" and data["training"]["steps"] == 3
    assert data["training"]["hardware"] == "test machine" and data["training"]["wall_s"] > 0
    assert data["training"]["reproduce"][0].startswith("binarize train tiny-card.yaml")  # not a shipped experiment
    assert {(row["name"], row["size"]) for row in data["evaluation"]["images"]} == {("chelsea", "32x32"),
                                                                                   ("flower", "32x32")}
    assert data["evaluation"]["protocol"].startswith("centred 32x32 crops") and data["demo"]["steps"] == DEMO_STEPS
    assert data["demo"]["packed"] and data["evaluation"]["steps"] == 2  # the tiny experiment samples with 2 steps
    text = (tmp_path / "zoo" / "cards" / "tiny-card.md").read_text()
    assert text == card_markdown(data) and "## Reproduce" in text and "test machine" in text


def test_shipped_cards_describe_their_checkpoints() -> None:
    assert {"fp-small-x2", "bidiffsr-small-x2", "bidiffsr-small-x2-fp-init"} <= set(TRAINED.names())
    for name in TRAINED.names():
        entry = TRAINED.get(name)
        card = entry.card()
        assert f"binarize train {name}" in card["training"]["reproduce"]
        assert card["cost"]["checkpoint_bytes"] == entry.checkpoint.stat().st_size
        assert entry.card_markdown.read_text() == card_markdown(card)


def test_a_second_stage_card_trains_its_first_stage_first() -> None:
    second = load_config("fp-small-x2")
    assert earlier_stages(second) == ["binarize train fp-small-x2-stage1"]
    assert reproduce_commands(second, 3000, "fp-small-x2")[:2] == ["binarize train fp-small-x2-stage1",
                                                                   "binarize train fp-small-x2"]
    assert earlier_stages(load_config("fp-small-x2-stage1")) == []  # random initial weights
    assert earlier_stages(load_config("fp-small-x4")) == []  # starts from a shipped zoo model


def test_missing_zoo_model_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(demo_module.DEMO_MODELS, "bidiffsr", "bidiffsr-small-x9")
    with pytest.raises(BinarizeError, match="bidiffsr-small-x9.*is not installed"):
        demo_module.run_demo(tmp_path, echo=lambda _: None)


def test_demo_reproduces_the_cards_and_beats_bicubic(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["demo", "--out", str(tmp_path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads((tmp_path / "report.json").read_text()) == printed
    assert printed["steps"] == DEMO_STEPS and printed["protocol"].startswith("whole embedded held-out photos")
    assert {name: image["size"] for name, image in printed["images"].items()} == {"chelsea": "450x300",
                                                                                  "flower": "640x426"}
    quality = printed["quality"]
    assert set(quality) == {"bicubic", *demo_module.DEMO_MODELS}
    for key in demo_module.DEMO_MODELS:  # every model beats bicubic on the whole photos
        assert quality[key]["psnr_y"] > quality["bicubic"]["psnr_y"], key
    assert quality["fp"]["psnr_y"] > quality["bidiffsr"]["psnr_y"]
    assert printed["matches_cards"] is True
    for key, name in demo_module.DEMO_MODELS.items():
        card = TRAINED.get(name).card()
        demo_card = card["demo"]  # the card's measurement with the demo's protocol
        assert demo_card["steps"] == DEMO_STEPS and demo_card["packed"] == (card["recipe"] is not None)
        assert quality[key]["psnr_y"] == pytest.approx(demo_card["quality"]["model"]["psnr_y"], abs=0.01)
        # the binarized models sample on packed bits: a sign flipped by rounding moves SSIM-Y by about 1e-4
        assert quality[key]["ssim_y"] == pytest.approx(demo_card["quality"]["model"]["ssim_y"], abs=5e-4)
        assert printed["cost"][key]["checkpoint_bytes"] == TRAINED.get(name).checkpoint.stat().st_size
    assert printed["cost"]["bidiffsr"]["ops_g"] < printed["cost"]["fp"]["ops_g"]
    for key in ("bidiffsr", "bidiffsr_fp_init"):  # sampled on packed bits, size and speed measured
        cost = printed["cost"][key]
        assert 0 < cost["packed_bytes"] < cost["checkpoint_bytes"] / 4 and cost["packed_ms"] > 0
    assert "packed_bytes" not in printed["cost"]["fp"]
    report = (tmp_path / "report.md").read_text()
    assert "## Quality" in report and f"DDIM {DEMO_STEPS} steps" in report


def test_the_side_by_side_picture_is_captioned(tmp_path: Path) -> None:
    """Every column of the demo's picture carries its label (method and PSNR-Y) inside the picture."""
    from binarize.data import load_image
    from binarize.showcase.figure import CAPTION_HEIGHT, GAP

    report = demo_module.DemoReport(*_fake_measurements())
    picture = demo_module._side_by_side(report)
    psnr = report.psnr_by_image()
    columns = 2 + len(report.measurements)
    assert picture.shape[-1] == 640 * columns + GAP * (columns - 1)  # the wider photo's row (flower, 640 px)
    band = picture[:, :CAPTION_HEIGHT]  # chelsea's row: 450 px columns
    for index in range(columns):  # dark text in every column's band
        left = index * (450 + GAP)
        assert band[:, :, left: left + 450].min() < 0.3, index
    save = tmp_path / "side.png"
    from binarize.data import save_image

    save_image(picture, save)
    assert load_image(save).shape == picture.shape
    assert set(psnr) == {"bicubic", *report.measurements}


def _fake_measurements() -> tuple[dict, dict]:
    """Demo measurements whose outputs are the bicubic images (no sampling: the picture's layout is the point)."""
    from types import SimpleNamespace

    from binarize.data import bicubic_upscale
    from binarize.training.evaluate import EvalReport, test_images

    rows, outputs = [], {}
    for name, hr, lr in test_images(2):
        outputs[name] = bicubic_upscale(lr[None], 2)[0].clamp(0, 1)
        rows.append({"name": name, "size": f"{hr.shape[-1]}x{hr.shape[-2]}", "psnr_y": 30.0, "ssim_y": 0.9,
                     "bicubic_psnr_y": 29.0, "bicubic_ssim_y": 0.8})
    checkpoint = SimpleNamespace(config=SimpleNamespace(scale=2))
    measurement = SimpleNamespace(report=EvalReport(rows, outputs), checkpoint=checkpoint, steps=DEMO_STEPS)
    return {key: measurement for key in demo_module.DEMO_MODELS}, {key: {} for key in demo_module.DEMO_MODELS}
