"""Bad command-line values and bad files given to train / eval / upscale / summary: clean errors, nothing lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from binarize.cli import main
from binarize.data import load_image, save_image
from binarize.errors import RecipeError
from binarize.recipe import load_recipe
from binarize.training import ConfigError, load_config, train
from tiny_experiment import tiny_experiment

BAD_TEXT = {
    "random bytes": bytes(range(256)) * 3,
    "a PNG": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(40),
    "Latin-1": "name: caf\u00e9\nrules: []\n".encode("latin-1"),
    "UTF-16": "name: x\n".encode("utf-16"),
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt") / "run"
    result = train(load_config({**tiny_experiment("tiny", recipe="bidiffsr", steps=1), "out": str(folder)}),
                   progress=False)
    assert result.last_checkpoint is not None
    return result.last_checkpoint


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "lr.png"
    save_image(torch.rand(3, 12, 20, generator=torch.Generator().manual_seed(0)), path)
    return path


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == ""
    return captured.err.strip().splitlines()[-1]


@pytest.mark.parametrize("kind", sorted(BAD_TEXT))
def test_a_recipe_file_that_is_not_utf8_is_a_recipe_error_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    path = tmp_path / "mine.yaml"
    path.write_bytes(BAD_TEXT[kind])
    with pytest.raises(RecipeError, match="mine.yaml.*not a UTF-8 text file") as caught:
        load_recipe(path)
    assert caught.value.file == str(path)
    line = _error(capsys, "summary", "zoo:resnet8", "--recipe", str(path))
    assert line.startswith("binarize: error: ") and "mine.yaml" in line and "UTF-8" in line


@pytest.mark.parametrize("kind", sorted(BAD_TEXT))
def test_an_experiment_config_that_is_not_utf8_names_the_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_bytes(BAD_TEXT[kind])
    with pytest.raises(ConfigError, match=r"experiment\.yaml: not a UTF-8 text file"):
        load_config(path)


def test_a_utf8_byte_order_mark_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + b"name: bom\nextends: reactnet\n")
    assert load_recipe(path).name == "bom"


def test_config_values_of_the_wrong_type_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_text("name: x\nsteps: twenty\n")
    assert _error(capsys, "train", str(path)) == f"binarize: error: {path}: steps must be int, got 'twenty'"


@pytest.mark.parametrize(("command", "value", "expected"), [
    ("train", "-3", "argument --steps: expected a positive integer, got '-3'"),
    ("train", "0", "argument --steps: expected a positive integer, got '0'"),
    ("eval", "0", "argument --steps: expected a positive integer, got '0'"),
    ("upscale", "-3", "argument --steps: expected a positive integer, got '-3'"),
    ("upscale", "5000", "5000 sampling steps: the model was trained with a 2000-step diffusion, so DDIM takes 1 to 2000"),
    ("eval", "5000", "5000 sampling steps"),
])
def test_bad_step_counts_are_clean_errors(
    checkpoint: Path, image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, value: str,
    expected: str,
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({**tiny_experiment("t"), "out": str(tmp_path / "run")}))
    argv = {"train": ["train", str(config)], "eval": ["eval", str(checkpoint)],
            "upscale": ["upscale", str(image), str(tmp_path / "sr.png"), "--model", str(checkpoint)]}[command]
    assert expected in _error(capsys, *argv, "--steps", value)
    assert not (tmp_path / "run").exists() and not (tmp_path / "sr.png").exists()


@pytest.mark.parametrize("value", ["0", "7", "32", "100", "-64", "big"])
def test_bad_tile_sizes_are_clean_errors_stating_the_constraint(
    checkpoint: Path, image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    line = _error(capsys, "upscale", str(image), str(tmp_path / "sr.png"), "--model", str(checkpoint), "--tile", value)
    assert "argument --tile" in line and ("multiple of 8 and at least 64" in line or "expected auto" in line)


def test_the_tile_help_states_its_constraints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["upscale", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "a multiple of 8, at least 64; auto (default)" in help_text and "--overwrite" in help_text


def test_upscale_refuses_to_overwrite_its_input_unless_asked(
    checkpoint: Path, image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = image.read_bytes()
    same = image.parent / "." / image.name
    line = _error(capsys, "upscale", str(image), str(same), "--model", str(checkpoint), "--steps", "1")
    assert "is the input image" in line and "--overwrite" in line
    assert image.read_bytes() == before
    assert main(["upscale", str(image), str(image), "--model", str(checkpoint), "--steps", "1", "--overwrite",
                 "--no-progress"]) == 0
    assert tuple(load_image(image).shape) == (3, 24, 40)


def test_upscale_prints_its_plan_and_progress_before_and_while_it_works(
    checkpoint: Path, image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sr.png"
    assert main(["upscale", str(image), str(out), "--model", str(checkpoint), "--steps", "2", "--tile", "64"]) == 0
    err = capsys.readouterr().err
    assert "(20x12, x2): 40x24 output in one pass, 2 steps: about" in err and "2/2" in err
    big = tmp_path / "big.png"
    save_image(torch.rand(3, 40, 48), big)
    assert main(["upscale", str(big), str(out), "--model", str(checkpoint), "--steps", "2", "--tile", "64"]) == 0
    err = capsys.readouterr().err
    assert "96x80 output in 4 tiles of 64 px, 2 steps" in err and "8/8" in err


@settings(max_examples=15, deadline=None)
@given(st.binary(min_size=1, max_size=64).filter(lambda data: _not_utf8(data)))
def test_any_non_utf8_recipe_is_a_recipe_error(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.yaml"
        path.write_bytes(data)
        with pytest.raises(RecipeError, match="not a UTF-8 text file"):
            load_recipe(path)


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return True
    return False


def test_an_output_with_nan_is_an_error_not_a_black_image() -> None:
    from binarize.training import CheckpointError, upscale_image

    class Overflowing(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gain = torch.nn.Parameter(torch.ones(()))

        def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
            return x * self.gain * float("nan")

    config = load_config(tiny_experiment("t"))
    with pytest.raises(CheckpointError, match="output holds .* NaN or infinite values"):
        upscale_image(Overflowing(), config, torch.rand(3, 8, 8), steps=2)


def test_a_checkpoint_naming_a_python_file_runs_it_only_when_trusted(
    checkpoint: Path, image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    from binarize.training import CheckpointError, load_model

    marker = tmp_path / "ran"
    code = tmp_path / "net.py"
    code.write_text(f"import pathlib\ndef build():\n    pathlib.Path({str(marker)!r}).write_text('x')\n")
    forged = tmp_path / "forged.safetensors"
    shutil.copy(checkpoint, forged)
    with safe_open(str(forged), framework="pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        metadata = dict(handle.metadata())
    config = json.loads(metadata["config"])
    config["model"] = f"{code}:build"
    metadata["config"] = json.dumps(config)
    save_file(tensors, str(forged), metadata=metadata)
    with pytest.raises(CheckpointError, match="builds its model by running the Python file .*--trust-code"):
        load_model(forged)
    for argv in (["upscale", str(image), str(tmp_path / "o.png"), "--model", str(forged)], ["eval", str(forged)],
                 ["publish", str(forged), "--zoo", str(tmp_path / "zoo")]):
        assert "--trust-code" in _error(capsys, *argv)
    assert not marker.exists() and not [p for p in (tmp_path / "zoo").rglob("*") if p.is_file()]


def test_publish_never_replaces_or_half_writes_a_zoo_entry(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zoo = tmp_path / "zoo"
    assert main(["publish", str(checkpoint), "--zoo", str(zoo), "--name", "good", "--crop", "32"]) == 0
    capsys.readouterr()
    published = (zoo / "checkpoints" / "good.safetensors").read_bytes()
    assert "already has 'good'" in _error(capsys, "publish", str(checkpoint), "--zoo", str(zoo), "--name", "good")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(checkpoint.read_bytes()[:-10])
    _error(capsys, "publish", str(broken), "--zoo", str(zoo), "--name", "good", "--overwrite")
    _error(capsys, "publish", str(broken), "--zoo", str(zoo), "--name", "other")
    assert (zoo / "checkpoints" / "good.safetensors").read_bytes() == published
    assert sorted(p.name for p in (zoo / "checkpoints").iterdir()) == ["good.safetensors"]
    assert oct((zoo / "checkpoints" / "good.safetensors").stat().st_mode & 0o777) != oct(0o600)


@pytest.mark.parametrize(("setting", "expected"), [
    ("optim.lr=nan", "optim.lr must be a finite number"),
    ("optim.betas=[0.9,2]", "optim.betas must both be in [0, 1)"),
    ("diffusion.beta_start=0.5", "diffusion: betas must satisfy"),
    ("model_args.width=3", "width must be even"),
    ("seed=99999999999999999999999", "seed must be below 2**63"),
    ("data.batch=100000", "data.batch must be at most 4,096"),
    ("steps=999999999999", "steps must be at most 100,000,000"),
])
def test_config_values_torch_would_choke_on_are_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setting: str, expected: str
) -> None:
    line = _error(capsys, "train", "bidiffsr-tiny-x2", "--out", str(tmp_path / "run"), "--set", setting)
    assert expected in line and (f"--set {setting}" in line or setting.startswith("model_args"))
    assert not (tmp_path / "run").exists()


def test_an_empty_config_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="the config is empty"):
        load_config(path)


@pytest.mark.parametrize("text", ["name: x\ndefaults: {pad_value: " + "9" * 5000 + "}\n", "[" * 5000])
def test_yaml_beyond_plain_data_limits_is_a_recipe_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError, match="odd.yaml"):
        load_recipe(path)


@pytest.mark.parametrize("argv", [["--max-memory", "1e308"], ["--seed", "99999999999999999999999"]])
def test_huge_sampling_options_are_clean_errors(
    checkpoint: Path, image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert "argument " + argv[0] in _error(capsys, "upscale", str(image), str(tmp_path / "o.png"), "--model",
                                           str(checkpoint), *argv)


def test_an_image_declaring_a_huge_size_is_a_data_error(tmp_path: Path) -> None:
    import struct
    import zlib

    from binarize.errors import BinarizeError

    save_image(torch.rand(3, 2, 2), tmp_path / "small.png")
    data = bytearray((tmp_path / "small.png").read_bytes())
    start = data.index(b"IHDR")  # the header chunk: its size fields, then its CRC over type and data
    data[start + 4:start + 12] = struct.pack(">II", 100_000, 100_000)
    data[start + 17:start + 21] = struct.pack(">I", zlib.crc32(bytes(data[start:start + 17])))
    png = bytes(data)
    path = tmp_path / "bomb.png"
    path.write_bytes(png)
    with pytest.raises(BinarizeError, match="too large to decode safely"):
        load_image(path)
