"""Tests of binarize.specs: timm:, zoo: and file.py:factory model specs and their example inputs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from binarize.errors import ModelSpecError
from binarize.specs import RESOLVERS, ModelSpec, infer_example_inputs, resolve_model


def shapes(inputs: tuple) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in inputs]


def write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def test_registry_has_the_three_forms() -> None:
    assert {"timm", "zoo", "file"} <= set(RESOLVERS.names())


def test_timm_spec() -> None:
    spec = resolve_model("timm:resnet18")
    assert isinstance(spec, ModelSpec) and spec.name == "timm:resnet18"
    assert shapes(spec.example_inputs()) == [(1, 3, 224, 224)]
    assert shapes(spec.example_inputs(size=32)) == [(1, 3, 32, 32)]
    assert shapes(spec.example_inputs(input_shape=(2, 3, 16, 16))) == [(2, 3, 16, 16)]


def test_timm_spec_sized_architecture() -> None:
    spec = resolve_model("timm:vit_tiny_patch16_224", size=32)
    (x,) = spec.example_inputs()
    assert tuple(x.shape) == (1, 3, 32, 32)
    spec.model.eval()
    with torch.no_grad():
        assert spec.model(x).shape == (1, 1000)


def test_timm_unknown_name_suggests() -> None:
    with pytest.raises(ModelSpecError, match=r"resnt18.*Did you mean timm:resnet18"):
        resolve_model("timm:resnt18")


def test_zoo_spec() -> None:
    spec = resolve_model("zoo:resnet8")
    assert shapes(spec.example_inputs()) == [(1, 3, 32, 32)]
    assert spec.description
    with pytest.raises(ModelSpecError, match=r"zoo:resnet9.*Did you mean 'resnet8'"):
        resolve_model("zoo:resnet9")


def test_file_spec_with_inferred_conv_inputs(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "net.py",
        """
        from torch import nn

        def build():
            '''A small conv net.'''
            return nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU())
        """,
    )
    spec = resolve_model(f"{path}:build")
    assert spec.description == "A small conv net."
    assert shapes(spec.example_inputs()) == [(1, 4, 32, 32)]
    assert shapes(spec.example_inputs(size=8)) == [(1, 4, 8, 8)]
    assert isinstance(spec.model, nn.Sequential)


def test_file_spec_with_linear_and_class_factory(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "mlp.py",
        """
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(7, 2)

            def forward(self, x):
                return self.fc(x)
        """,
    )
    spec = resolve_model(f"{path}:Net")
    assert shapes(spec.example_inputs()) == [(1, 7)]


def test_file_spec_with_example_inputs_and_rebatching(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "unet.py",
        """
        import torch
        from torch import nn

        import binarize_test_neighbour as helper  # a neighbour of this file

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(helper.CHANNELS, 3, 1)

            def forward(self, x, t):
                return self.conv(x) + t[:, None, None, None]

        def make():
            return Net()

        def example_inputs(size=16):
            return torch.zeros(1, helper.CHANNELS, size, size), torch.zeros(1)
        """,
    )
    write(tmp_path, "binarize_test_neighbour.py", "CHANNELS = 5\n")
    spec = resolve_model(f"{path}:make")
    assert shapes(spec.example_inputs()) == [(1, 5, 16, 16), (1,)]
    assert shapes(spec.example_inputs(size=4)) == [(1, 5, 4, 4), (1,)]
    assert shapes(spec.example_inputs(input_shape=(3, 5, 8, 8))) == [(3, 5, 8, 8), (3,)]


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("missing", r"'missing' is not defined.*Callables defined there: broken, make, not_a_module"),
        ("maek", r"Did you mean 'make'"),
        ("not_a_module", r"not_a_module\(\) returned int, not a torch.nn.Module"),
        ("broken", r"calling broken\(\) raised RuntimeError: nope"),
        ("VALUE", r"'VALUE' is not callable"),
    ],
)
def test_file_spec_errors(tmp_path: Path, factory: str, message: str) -> None:
    path = write(
        tmp_path,
        "models.py",
        """
        from torch import nn

        VALUE = 3

        def make():
            return nn.Linear(1, 1)

        def not_a_module():
            return 3

        def broken():
            raise RuntimeError("nope")
        """,
    )
    with pytest.raises(ModelSpecError, match=message):
        resolve_model(f"{path}:{factory}")


def test_file_spec_import_error_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.py", "import no_such_module_anywhere\n")
    with pytest.raises(ModelSpecError, match="importing .*bad.py raised ModuleNotFoundError"):
        resolve_model(f"{path}:make")
    with pytest.raises(ModelSpecError, match="no such file"):
        resolve_model(f"{tmp_path / 'absent.py'}:make")
    with pytest.raises(ModelSpecError, match="no factory"):
        resolve_model(str(path))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "non-empty string"),
        ("resnet8", r"Did you mean zoo:resnet8\?.*Allowed forms: timm:NAME"),
        ("resnet18", r"Did you mean timm:resnet18\?"),
        ("tim:resnet18", r"Did you mean timm:resnet18\?"),
        ("hf:bert", r"cannot resolve model spec 'hf:bert'.*known prefixes: file, timm, zoo"),
        ("zoo:", "names no model"),
    ],
)
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(ModelSpecError, match=message):
        resolve_model(spec)


def test_example_inputs_argument_errors() -> None:
    spec = resolve_model("zoo:resnet8")
    with pytest.raises(ModelSpecError, match="not both"):
        spec.example_inputs(size=8, input_shape=(1, 3, 8, 8))
    with pytest.raises(ModelSpecError, match="positive"):
        spec.example_inputs(input_shape=(1, 0, 8, 8))
    with pytest.raises(ModelSpecError, match="positive integer"):
        spec.example_inputs(size=0)


def test_infer_without_conv_or_linear() -> None:
    with pytest.raises(ModelSpecError, match="--input-shape"):
        infer_example_inputs(nn.ReLU())
    assert shapes(infer_example_inputs(nn.Conv1d(2, 3, 1), 9)) == [(1, 2, 9)]
