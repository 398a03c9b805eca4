"""``binarize bench deploy``: the whole-model and per-layer tables and the sizes, measured in one run."""

from __future__ import annotations

import json

import pytest

from binarize.bench.deploy import measure_deploy
from binarize.cli import main


def test_measure_deploy_times_every_form_and_every_packed_layer() -> None:
    result = measure_deploy("zoo:resnet8", "reactnet", threads=(1, 2), repeats=1, warmup=0)
    assert [m.threads for m in result.models] == [1, 2]
    for timing in result.models:
        assert min(timing.float_ms, timing.fake_quantised_ms, timing.packed_ms) > 0
        assert timing.packed_vs_float > 0 and timing.packed_vs_fake_quantised > 0
    names = [layer.name for layer in result.layers]
    assert names == ["layer1.conv1", "layer1.conv2", "layer2.conv1", "layer2.conv2", "layer2.shortcut.0",
                     "layer3.conv1", "layer3.conv2", "layer3.shortcut.0"]
    assert result.layers[0].shape == "conv 16->16 k3x3 @32x32" and result.layers[2].shape.startswith("conv 16->32 k3x3 s2")
    assert 0 < result.packed_bytes < result.float_bytes and not result.kept
    text = result.format()
    assert "packed vs float" in text and "layer1.conv1" in text and "smaller" in text


def test_bench_deploy_command_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "deploy", "--model", "zoo:mlp-mixer-tiny", "--threads", "1", "--repeats", "1", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "zoo:mlp-mixer-tiny" and data["recipe"] == "reactnet"
    assert [m["threads"] for m in data["models"]] == [1]
    assert data["layers"] and all(layer["shape"].startswith("linear") for layer in data["layers"])
