"""Experiment configs of ``binarize train``: defaults, YAML files, overrides and their errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from binarize.training import ConfigError, ExperimentConfig, load_config


def test_defaults_and_round_trip() -> None:
    config = load_config()
    assert config == ExperimentConfig().validate()
    assert load_config(config.to_dict()) == config
    assert config.diffusion.target == "residual" and config.diffusion.steps == 2000


def test_yaml_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("name: x\nmodel: zoo:bidiffsr-unet-tiny\nrecipe: null\ndata: {patch: 32, batch: 2}\n")
    config = load_config(path, ["optim.lr=1e-3", "optim.betas=[0.8, 0.9]", "diffusion.target=epsilon", "steps=7"])
    assert config.recipe is None and config.data.patch == 32 and config.steps == 7
    assert config.optim.lr == 1e-3 and config.optim.betas == (0.8, 0.9)
    assert config.diffusion.target == "epsilon"


@pytest.mark.parametrize(
    ("data", "overrides", "message"),
    [
        ({"stepz": 3}, [], "unknown key 'stepz'.*Did you mean 'steps'"),
        ({"data": {"bach": 3}}, [], "unknown key 'data.bach'.*'batch'"),
        ({"steps": "many"}, [], "steps must be int"),
        ({"optim": {"betas": [0.9]}}, [], "optim.betas must be tuple"),
        ({"diffusion": {"target": "eps"}}, [], "diffusion.target must be one of epsilon, residual, residual-edm, x0"),
        ({"optim": {"schedule": "cosin"}}, [], "optim.schedule must be one of constant, cosine.*Did you mean 'cosine'"),
        ({"steps": 10, "optim": {"warmup": 10}}, [], "optim.warmup must be from 0 to steps - 1 = 9"),
        ({"teacher_weight": -1}, [], "teacher_weight must be 0 or more"),
        ({"data": {"patch": 40}}, [], "multiple of 8 x scale = 16"),
        ({"steps": 0}, [], "steps must be positive"),
        ({}, ["steps"], "KEY=VALUE"),
        ({}, ["data=3", "data.batch=2"], "'data' is not a section"),
        ({"diffusion": {"sampling_steps": 3000}}, [], "cannot exceed"),
    ],
)
def test_bad_configs_say_what_is_wrong(data: dict, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(data, overrides)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


@pytest.mark.parametrize("warmup", [0, 3])
def test_learning_rate_schedules(warmup: int) -> None:
    constant = load_config({"steps": 20, "optim": {"lr": 1e-3, "warmup": warmup}}).optim
    cosine = load_config({"steps": 20, "optim": {"lr": 1e-3, "warmup": warmup, "schedule": "cosine"}}).optim
    for step in range(warmup):  # linear warm-up to the peak, in both
        assert constant.lr_at(step, 20) == cosine.lr_at(step, 20) == pytest.approx(1e-3 * (step + 1) / warmup)
    assert [constant.lr_at(step, 20) for step in range(warmup, 20)] == [1e-3] * (20 - warmup)
    decayed = [cosine.lr_at(step, 20) for step in range(warmup, 20)]
    assert decayed[0] == pytest.approx(1e-3) and all(a > b for a, b in zip(decayed, decayed[1:]))
    assert decayed[-1] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * (19 - warmup) / (20 - warmup))))


def test_every_shipped_experiment_starts_from_something_that_exists() -> None:
    """Initial weights and teachers are shipped zoo models or the run folder of an earlier shipped stage."""
    from binarize.showcase.cards import earlier_stages
    from binarize.training.config import available_experiments
    from binarize.zoo import TRAINED

    for name in available_experiments():
        config = load_config(name)
        assert config.name == name and config.out == f"runs/{name}"
        for source in (config.init, config.teacher):
            if source is not None and source.startswith("zoo:"):
                assert source.removeprefix("zoo:") in TRAINED, f"{name} starts from {source}, which is not shipped"
        assert config.teacher is None or config.teacher.startswith("zoo:"), f"{name}: a shipped teacher is a zoo model"
        if config.init is not None and not config.init.startswith("zoo:"):
            assert earlier_stages(config), f"{name} starts from {config.init}, which no shipped stage writes"


def test_training_sets_of_data_source() -> None:
    """``embedded`` is the seven training photos; ``embedded+textures`` adds the three grayscale textures."""
    from binarize.data import EMBEDDED_PHOTOS, TEXTURES, TRAIN
    from binarize.training.data import training_images

    photos = training_images(load_config({"data": {"source": "embedded"}}))
    both = training_images(load_config({"data": {"source": "embedded+textures"}}))
    assert len(photos) == len(TRAIN) and len(both) == len(TRAIN) + len(TEXTURES)
    assert all(torch.equal(a, b) for a, b in zip(photos, both))
    assert torch.equal(both[-1], EMBEDDED_PHOTOS.get("gravel")())
