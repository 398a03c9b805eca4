"""Tests of the ``binarize`` command line (run in-process through ``main``, plus one subprocess)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from binarize.cli import COMMANDS, command, main, parse_input_shape


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["summary", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    return json.loads(out)


def assert_one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], pattern: str) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert captured.out == ""
    assert "\n" not in err and err.startswith("binarize: error: ") and "Traceback" not in err
    assert pattern in err, err
    return err


def test_summary_json_full_precision(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "zoo:resnet8")
    assert data["model"] == "zoo:resnet8" and data["recipe"] is None
    assert data["input_shape"] == [1, 3, 32, 32]
    assert data["binary_params"] == 0 and data["binary_layers"] == 0
    assert data["params_m"] == pytest.approx(data["fp_params"] / 1e6)
    for key in ("params_m", "ops_g", "fp_params", "binary_params", "binary_layers"):
        assert data["fp_reference"][key] == data[key]
    assert len(data["layers"]) == 10 and data["replaced"] == [] and data["skipped"] == []


def test_summary_json_with_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "zoo:resnet8", "--recipe", "reactnet")
    ref = data["fp_reference"]
    assert data["recipe"] == "reactnet"
    assert data["binary_layers"] == 8 and len(data["replaced"]) == 8
    assert {s["name"] for s in data["skipped"]} == {"conv1", "fc"}
    assert data["params_m"] == pytest.approx((data["fp_params"] + data["binary_params"] / 32) / 1e6)
    assert data["ops_g"] == pytest.approx((data["fp_macs"] + data["binary_macs"] / 64 + data["norm_ops"]) / 1e9)
    assert data["params_m"] < ref["params_m"] / 10 and data["ops_g"] < ref["ops_g"] / 10
    assert data["fp_macs"] + data["binary_macs"] == ref["fp_macs"]  # same work, differently counted
    assert data["ratios"]["params"] == pytest.approx(ref["params_m"] / data["params_m"])
    layers = {entry["name"]: entry for entry in data["layers"]}
    assert layers["layer1.conv1"]["binary"] and layers["layer1.conv1"]["type"] == "BinaryConv2d"
    assert not layers["conv1"]["binary"] and layers["fc"]["type"] == "Linear"


def test_summary_timm_with_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "timm:resnet18", "--recipe", "reactnet", "--size", "32")
    assert data["input_shape"] == [1, 3, 32, 32]
    assert data["binary_layers"] == 19
    assert data["fp_reference"]["fp_params"] == 11_689_512
    assert data["params_m"] < 1.0


def test_summary_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "zoo:mlp-mixer-tiny", "--recipe", "reactnet"]) == 0
    out = capsys.readouterr().out
    for text in ("model   zoo:mlp-mixer-tiny", "recipe  reactnet", "BinaryLinear", "full-precision reference",
                 "reduction: params x", "replaced", "skipped embed", "ops"):
        assert text in out, text


def test_summary_table_without_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "zoo:resnet8"]) == 0
    out = capsys.readouterr().out
    assert "(none: full precision)" in out and "layer1.conv1" in out and "reference" not in out


def test_size_and_input_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_json(capsys, "zoo:resnet8", "--size", "16")["input_shape"] == [1, 3, 16, 16]
    data = run_json(capsys, "zoo:mlp-mixer-tiny", "--input-shape", "2,3,16,16")
    assert data["input_shape"] == [2, 3, 16, 16]
    assert main(["summary", "zoo:resnet8", "--size", "16", "--input-shape", "1,3,8,8"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_file_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "mymodel.py"
    path.write_text(
        textwrap.dedent(
            """
            from torch import nn

            def build():
                return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))
            """
        )
    )
    data = run_json(capsys, f"{path}:build", "--size", "8")
    assert data["fp_macs"] == 4 * 64 * 2 * 9 + 4 * 64 * 4 * 9


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["summary", "zoo:resnet9"], "Did you mean 'resnet8'"),
        (["summary", "resnet18"], "Allowed forms"),
        (["summary", "timm:resnt18"], "Did you mean timm:resnet18"),
        (["summary", "zoo:resnet8", "--recipe", "reactnett"], "reactnet"),
        (["summary", "zoo:resnet8", "--recipe", "/nonexistent/recipe.yaml"], "recipe.yaml"),
        (["summary", "zoo:resnet8", "--input-shape", "1,4,32,32"], "pass --size or --input-shape"),
    ],
)
def test_errors_are_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], pattern: str) -> None:
    assert_one_line_error(capsys, argv, pattern)


def test_usage_errors_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err
    assert main(["summary", "zoo:resnet8", "--input-shape", "1,3,x"]) == 2
    assert "expected positive integers" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "summary" in capsys.readouterr().out


def test_parse_input_shape() -> None:
    assert parse_input_shape("1,3,32,32") == (1, 3, 32, 32)
    assert parse_input_shape("2x3x8x8") == (2, 3, 8, 8)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_input_shape("1,-3")


def test_new_command_plugs_in(capsys: pytest.CaptureFixture[str]) -> None:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("word")

    @command("echo-test", help="say a word", configure=configure)
    def run(args: argparse.Namespace) -> int:
        print(args.word)
        return 0

    try:
        assert main(["echo-test", "hello"]) == 0
        assert capsys.readouterr().out == "hello\n"
    finally:
        COMMANDS.unregister("echo-test")


def test_python_dash_m_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "binarize", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "summary" in result.stdout and result.stdout.startswith("usage: binarize")
