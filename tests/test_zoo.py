"""Tests of the reference networks in binarize.zoo (parametrised over the registry)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from binarize.cost import measure_cost
from binarize.specs import resolve_model
from binarize.zoo import ZOO, ZooEntry, image_inputs, register


@pytest.mark.parametrize("name", ZOO.names())
def test_entry_builds_and_runs(name: str) -> None:
    entry = ZOO.get(name)
    assert entry.name == name and entry.description and entry.default_size > 0
    model = entry.build()
    with torch.no_grad():
        out = model(*entry.inputs())
    assert out.shape[0] == 1 and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ZOO.names())
def test_entry_uses_standard_torch_layers(name: str) -> None:
    """Type-based recipe rules must find every weighted layer: they are all standard torch.nn classes."""
    model = ZOO.get(name).build()
    for module in model.modules():
        if list(module.parameters(recurse=False)):
            assert type(module).__module__.startswith("torch.nn"), type(module)


@pytest.mark.parametrize("name", ZOO.names())
def test_entry_resolves_as_spec_at_another_size(name: str) -> None:
    spec = resolve_model(f"zoo:{name}", size=16)
    with torch.no_grad():
        spec.model(*spec.example_inputs())


def test_resnet8_shape_and_cost() -> None:
    entry = ZOO.get("resnet8")
    model = entry.build()
    assert model(*entry.inputs()).shape == (1, 10)
    report = measure_cost(model, entry.inputs())
    assert len(report.layers) == 10  # 8 main-path layers + 2 shortcut convolutions
    assert report.layers[0].output_shape == [1, 16, 32, 32]


def test_mlp_mixer_is_linear_only() -> None:
    entry = ZOO.get("mlp-mixer-tiny")
    model = entry.build()
    weighted = {type(m) for m in model.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))}
    assert weighted == {nn.Linear}
    assert model(*entry.inputs()).shape == (1, 10)
    with pytest.raises(ValueError, match="image_size=16"):
        model(*entry.inputs(16))


def test_register_new_entry_and_duplicates() -> None:
    entry = ZooEntry("test-tiny", "a test net", lambda: nn.Conv2d(1, 1, 1), image_inputs(1), 4)
    try:
        register(entry)
        assert resolve_model("zoo:test-tiny").example_inputs()[0].shape == (1, 1, 4, 4)
        with pytest.raises(ValueError, match="already registered"):
            register(ZooEntry("test-tiny", "other", lambda: nn.ReLU(), image_inputs(1), 4))
    finally:
        ZOO.unregister("test-tiny")
