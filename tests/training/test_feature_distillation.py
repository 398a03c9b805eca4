"""Distillation of intermediate features (``teacher_features``): what is matched, the loss, errors and training."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from binarize import binarize
from binarize.training import load_config, train
from binarize.training.config import ConfigError
from binarize.training.features import FeatureDistillation
from binarize.zoo import ZOO
from tiny_experiment import tiny_experiment

BLOCK_INPUTS = [r"(encoder|decoder)\.\d+\.blocks\.\d+\.norm1:input", "out_norm:input"]


def _tiny_unet() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    entry = ZOO.get("bidiffsr-unet-tiny")
    torch.manual_seed(0)
    return entry.build().eval(), entry.inputs(16)


def _features_after_one_pass(student: nn.Module, teacher: nn.Module, inputs: tuple) -> FeatureDistillation:
    features = FeatureDistillation(student, teacher, BLOCK_INPUTS)
    with features.capturing():
        student(*inputs)
        with torch.no_grad():
            teacher(*inputs)
    return features


def test_a_function_preserving_rewrite_has_zero_feature_loss() -> None:
    teacher, inputs = _tiny_unet()
    student = binarize(copy.deepcopy(teacher), "identity", example_inputs=inputs)
    features = _features_after_one_pass(student, teacher, inputs)
    assert len(features.names) >= 4 and all(side == "input" for _, side in features.names)
    assert features.loss().detach().item() == 0.0


def test_binarizing_gives_a_feature_loss_whose_gradient_reaches_only_the_student() -> None:
    teacher, inputs = _tiny_unet()
    student = binarize(copy.deepcopy(teacher), "bidiffsr", example_inputs=inputs)
    loss = _features_after_one_pass(student, teacher, inputs).loss()
    assert loss.detach().item() > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_features_are_recorded_only_inside_capturing() -> None:
    teacher, inputs = _tiny_unet()
    student = binarize(copy.deepcopy(teacher), "bidiffsr", example_inputs=inputs)
    features = FeatureDistillation(student, teacher, BLOCK_INPUTS)
    student(*inputs)
    teacher(*inputs)  # outside the block: nothing kept
    with pytest.raises(ConfigError, match="did not run in both networks"):
        features.loss()
    features.remove()
    with features.capturing():
        student(*inputs)
        teacher(*inputs)
    with pytest.raises(ConfigError, match="did not run"):  # hooks removed: nothing recorded
        features.loss()


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"no\.such\.module", "matches no module that both .* have; some that both have: "),
        (r"encoder\.0\.blocks\.0", r"did not run in both networks .*':input'"),
    ],
)
def test_bad_feature_choices_say_what_is_wrong(pattern: str, message: str) -> None:
    teacher, inputs = _tiny_unet()
    student = binarize(copy.deepcopy(teacher), "bidiffsr", example_inputs=inputs)
    with pytest.raises(ConfigError, match=message):
        features = FeatureDistillation(student, teacher, [pattern])
        with features.capturing():
            student(*inputs)
            teacher(*inputs)
        features.loss()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"teacher_features": ["out_norm:input"]}, "teacher_features needs a teacher"),
        ({"teacher": "zoo:fp-small-x2", "teacher_features": ["(unclosed"]}, "is not a regular expression"),
        ({"teacher": "zoo:fp-small-x2", "teacher_features": "out_norm"}, "teacher_features must be list"),
        ({"teacher": "zoo:fp-small-x2", "teacher_feature_weight": -1}, "teacher_feature_weight must be 0 or more"),
    ],
)
def test_bad_feature_config_says_what_is_wrong(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(tiny_experiment("features", **changes))


def test_a_run_with_feature_distillation_trains_and_resumes(tmp_path: Path) -> None:
    teacher_run = train(load_config(tiny_experiment("teacher", recipe=None, steps=2, checkpoint_every=2,
                                                    out=str(tmp_path / "teacher"))), progress=False)
    config = load_config(tiny_experiment(
        "student", recipe="bidiffsr", steps=3, checkpoint_every=1, init=str(teacher_run.last_checkpoint),
        teacher=str(teacher_run.last_checkpoint), teacher_features=BLOCK_INPUTS, teacher_feature_weight=0.5,
        out=str(tmp_path / "student")))
    whole = train(config, progress=False)
    config_again = load_config({**config.to_dict(), "out": str(tmp_path / "again")})
    train(config_again, progress=False, stop_after=2)
    resumed = train(config_again, progress=False)
    assert whole.step == resumed.step == 3
    for (name, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_the_documented_feature_patterns_fit_the_zoo_networks() -> None:
    """The ``teacher_features`` example of docs/training.md is a valid config and selects features of the
    BI-DiffSR UNet and its binarization that run in both."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", page, re.DOTALL) if "teacher_features" in b)
    example = yaml.safe_load(block)
    config = load_config(tiny_experiment("documented", **example))
    teacher, inputs = _tiny_unet()
    student = binarize(copy.deepcopy(teacher), "bidiffsr", example_inputs=inputs)
    features = FeatureDistillation(student, teacher, config.teacher_features)
    with features.capturing():
        student(*inputs)
        teacher(*inputs)
    assert features.loss().detach().item() > 0 and len(features.names) >= 5
