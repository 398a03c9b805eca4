"""Starting a binarized run from full-precision weights (``init``), compact checkpoints and trained zoo models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from binarize import binarize
from binarize.cli import main
from binarize.data import load_image, save_image
from binarize.recipe import load_recipe
from binarize.training import load_config, load_model, read_checkpoint, train
from binarize.training.checkpoint import compact_checkpoint
from binarize.training.config import ConfigError
from binarize.training.model import build_model, resolve_checkpoint
from binarize.zoo import TRAINED, ZOO
from tiny_experiment import tiny_experiment

TINY_FP = tiny_experiment("tiny-fp", recipe=None, steps=2, checkpoint_every=2)


@pytest.fixture(scope="module")
def fp_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fp")
    return train(load_config({**TINY_FP, "out": str(out)}), progress=False).last_checkpoint


def test_init_loads_the_full_precision_weights_before_binarizing(fp_checkpoint: Path, tmp_path: Path) -> None:
    trained = read_checkpoint(fp_checkpoint).model_state
    config = load_config({**TINY_FP, "recipe": "bidiffsr", "init": str(fp_checkpoint), "out": str(tmp_path)})
    started = build_model(config, initialise=True).model.state_dict()
    fresh = build_model(config).model.state_dict()
    # layers the recipe keeps in full precision hold the trained weights; without `initialise`, the seed's
    assert torch.equal(started["stem.weight"], trained["stem.weight"])
    assert not torch.equal(fresh["stem.weight"], trained["stem.weight"])


def test_init_equals_binarizing_the_trained_full_precision_network(fp_checkpoint: Path) -> None:
    fp_model, _ = load_model(fp_checkpoint)
    entry = ZOO.get("bidiffsr-unet-tiny")
    expected = binarize(fp_model, "bidiffsr", example_inputs=entry.inputs(16)).state_dict()
    config = load_config({**TINY_FP, "recipe": "bidiffsr", "init": str(fp_checkpoint)})
    started = build_model(config, initialise=True).model.state_dict()
    assert started.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(started[name], value), name


def test_a_run_with_init_trains_and_resumes(fp_checkpoint: Path, tmp_path: Path) -> None:
    config = load_config({**TINY_FP, "recipe": "bidiffsr", "init": str(fp_checkpoint), "out": str(tmp_path)})
    first = train(config, progress=False)
    again = train(config, progress=False)  # resumes: the init is not loaded over the checkpoint
    assert first.step == again.step == 2 and again.resumed_from is not None
    for (name, a), (_, b) in zip(first.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.fixture(scope="module")
def binary_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("binary")
    return train(load_config({**TINY_FP, "recipe": "bidiffsr", "out": str(out)}), progress=False).last_checkpoint


def test_init_from_a_binarized_checkpoint_of_the_same_recipe_continues_it(
    binary_checkpoint: Path, tmp_path: Path
) -> None:
    trained = read_checkpoint(binary_checkpoint).model_state
    config = load_config({**TINY_FP, "recipe": "bidiffsr", "init": str(binary_checkpoint), "seed": 5,
                          "out": str(tmp_path)})
    started = build_model(config, initialise=True).model.state_dict()
    # every weight, the binary layers' included, is the trained one (not the seed's)
    assert started.keys() == trained.keys()
    for name, value in trained.items():
        assert torch.equal(started[name], value), name
    second_stage = train(config, progress=False)
    assert second_stage.step == 2 and second_stage.resumed_from is None


def test_init_from_a_revised_recipe_of_the_same_name_loads_and_says_so(tmp_path: Path) -> None:
    revised = {**load_recipe("bidiffsr").to_dict(), "description": "an earlier wording of the same recipe"}
    earlier = train(load_config({**TINY_FP, "recipe": revised, "out": str(tmp_path / "earlier")}),
                    progress=False).last_checkpoint
    lines: list[str] = []
    config = load_config({**TINY_FP, "recipe": "bidiffsr", "init": str(earlier), "out": str(tmp_path / "later")})
    train(config, progress=False, echo=lines.append)
    assert any("another revision" in line and str(earlier) in line for line in lines), lines


@pytest.mark.parametrize(
    ("init", "recipe", "message"),
    [
        ("zoo:no-such-model", "bidiffsr", "not a trained zoo model"),
        ("binary", "reactnet", "is a binarized checkpoint .*this experiment uses recipe 'reactnet'"),
        ("binary", None, "is a binarized checkpoint .*no recipe"),
        ("other", "bidiffsr", "init needs the same network"),
    ],
)
def test_bad_init_says_what_is_wrong(
    binary_checkpoint: Path, tmp_path: Path, init: str, recipe: str | None, message: str
) -> None:
    if init == "binary":
        init = str(binary_checkpoint)
    elif init == "other":
        init = str(train(load_config({**TINY_FP, "model_args": {"width": 16}, "out": str(tmp_path / "o")}),
                         progress=False).last_checkpoint)
    config = load_config({**TINY_FP, "recipe": recipe, "init": init, "out": str(tmp_path / "run")})
    with pytest.raises(ConfigError, match=message):
        build_model(config, initialise=True)


def test_compact_checkpoint_halves_the_weights_and_drops_the_optimiser(fp_checkpoint: Path, tmp_path: Path) -> None:
    compact = compact_checkpoint(fp_checkpoint, tmp_path / "compact.safetensors")
    found = read_checkpoint(compact)
    assert found.optimizer_state is None and found.step == 2
    assert all(v.dtype == torch.float16 for v in found.model_state.values() if v.is_floating_point())
    assert compact.stat().st_size < fp_checkpoint.stat().st_size / 2
    full, _ = load_model(fp_checkpoint)
    small, _ = load_model(compact)
    assert next(small.parameters()).dtype == torch.float32
    x = (torch.rand(1, 3, 16, 16), torch.tensor([9]), torch.rand(1, 3, 16, 16))
    with torch.no_grad():
        torch.testing.assert_close(small(*x), full(*x), rtol=1e-2, atol=1e-3)


def test_trained_zoo_models_are_registered_with_their_files() -> None:
    assert "fp-small-x2" in TRAINED
    for name in TRAINED.names():
        entry = TRAINED.get(name)
        assert entry.checkpoint.is_file() and resolve_checkpoint(f"zoo:{name}") == entry.checkpoint
        assert read_checkpoint(entry.checkpoint).config.name == name


def test_upscale_with_a_trained_zoo_model(tmp_path: Path) -> None:
    save_image(torch.rand(3, 12, 10), tmp_path / "lr.png")
    code = main(["upscale", str(tmp_path / "lr.png"), str(tmp_path / "sr.png"), "--model", "zoo:fp-small-x2",
                 "--steps", "2"])
    assert code == 0 and load_image(tmp_path / "sr.png").shape == (3, 24, 20)


def test_unknown_zoo_model_for_upscale_lists_the_trained_ones(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    save_image(torch.rand(3, 8, 8), tmp_path / "lr.png")
    code = main(["upscale", str(tmp_path / "lr.png"), str(tmp_path / "sr.png"), "--model", "zoo:fp-small-x3"])
    err = capsys.readouterr().err
    assert code != 0 and "fp-small-x2" in err and "not a trained zoo model" in err
