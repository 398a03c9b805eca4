"""``binarize bench quality``: runs per recipe on the tiny UNet, the comparison recipes, the paper's claims."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from binarize.bench.quality import (
    ABLATION_LADDER,
    METHODS,
    QUALITY_MODES,
    QualityResult,
    comparison_recipe,
    measure_quality,
)
from binarize.cli import main
from binarize.errors import BinarizeError
from binarize.recipe import load_recipe
from binarize.training import trainer


def test_every_method_takes_the_bidiffsr_layer_selection() -> None:
    selection = load_recipe("bidiffsr").to_dict()["rules"]
    assert comparison_recipe("fp") is None
    for method in ("bnn", "xnor", "reactnet", "bbcu"):
        recipe = comparison_recipe(method)
        own = load_recipe(method).to_dict()
        assert recipe["rules"] == selection and recipe["defaults"] == own["defaults"] and recipe["name"] == method
    for ablation in ABLATION_LADDER:
        assert comparison_recipe(ablation) == load_recipe(ablation).to_dict()


def _result(scores: dict[str, float]) -> QualityResult:
    runs = {label: {"held_out_loss": 1.0 - value, "psnr_y": 30.0 + value} for label, value in scores.items()}
    return QualityResult("full", 10, "cpu", runs)


def _verdicts(result: QualityResult) -> dict[str, bool]:
    return {c["claim"]: c["holds"] for c in result.claims() if c["metric"] == "psnr_y"}


def test_claims_hold_on_the_papers_own_ordering() -> None:
    paper = {"fp": 9, "bnn": 0, "dorefa": 0.5, "xnor": 3, "irnet": 2, "reactnet": 4, "bbcu": 4.5, "bidiffsr": 8,
             "bidiffsr-no-shortcut": 1, "bidiffsr-identity": 2, "bidiffsr-cp": 5, "bidiffsr-cs": 7,
             "bidiffsr-tar": 6, "bidiffsr-taa": 6.5}
    verdicts = _verdicts(_result(paper))
    assert len(verdicts) == 6 and all(verdicts.values()), verdicts
    flipped = _verdicts(_result({**paper, "bidiffsr": 4.2, "bnn": 3.5}))
    assert not flipped["BI-DiffSR is the best binary method"]
    assert not flipped["BNN and DoReFa are behind XNOR, ReActNet, BBCU and BI-DiffSR"]
    assert flipped["full precision is best"]


def test_claims_need_their_runs() -> None:
    assert _result({"fp": 1, "bnn": 0}).claims() == []
    assert [c["claim"] for c in _result(dict.fromkeys(("fp", *METHODS), 1.0)).claims()][0] == "full precision is best"


def test_quick_runs_train_measure_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = measure_quality("quick", out=tmp_path, labels=["fp", "bnn"], steps=2, echo=lambda _: None)
    assert set(first.runs) == {"fp", "bnn"} and not first.failed
    fp, bnn = first.runs["fp"], first.runs["bnn"]
    assert fp["steps"] == 2 and fp["recipe"] is None and bnn["recipe"] == "bnn"
    assert fp["params_m"] > bnn["params_m"] > 0 and fp["held_out_loss"] > 0
    assert (tmp_path / "bnn" / "result.json").is_file() and (tmp_path / "bnn" / "checkpoints").is_dir()
    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(trainer, "train", no_training)
    again = measure_quality("quick", out=tmp_path, labels=["fp", "bnn"], steps=2, echo=lambda _: None)
    assert again.runs == first.runs and not again.failed  # finished runs are read back, not retrained
    text = first.format()
    assert "held-out loss" in text and "fp" in text and "bnn" in text


def test_quality_command_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["bench", "quality", "--runs", "fp", "--steps", "1", "--out", str(tmp_path), "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and printed["runs"]["fp"]["steps"] == 1 and printed["mode"] == "quick"
    assert json.loads((tmp_path / "quality.json").read_text()) == printed


@pytest.mark.parametrize(("mode", "labels", "message"), [("fast", None, "unknown quality mode"),
                                                         ("quick", ["reactnett"], "Did you mean .reactnet.")])
def test_bad_mode_or_run_is_refused(tmp_path: Path, mode: str, labels: list[str] | None, message: str) -> None:
    with pytest.raises(BinarizeError, match=message):
        measure_quality(mode, out=tmp_path, labels=labels)


def test_full_comparison_keeps_the_papers_schedule_and_a_constant_rate(tmp_path: Path) -> None:
    """The full comparison's numbers stay comparable when the zoo experiment it starts from changes its schedule."""
    from binarize.bench.quality import _run_config

    config = _run_config(QUALITY_MODES["full"], "bidiffsr", 2000, tmp_path)
    diffusion = config.diffusion
    assert (diffusion.steps, diffusion.beta_start, diffusion.beta_end) == (2000, 1e-6, 0.01)
    assert (config.optim.schedule, config.optim.warmup, config.steps) == ("constant", 0, 2000)
    assert config.recipe["name"] == "bidiffsr" and config.out == str(tmp_path / "bidiffsr")
