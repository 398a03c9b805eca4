"""Tests of binarize.cost: exact MAC, norm and parameter counts in the paper's convention."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from binarize.cost import NORM_OPS_PER_ELEMENT, CostReport, measure_cost


class StandInBinaryConv(nn.Conv2d):
    """A binary conv stand-in: sign of weights and inputs, flagged like binarize.nn layers."""

    is_binary = True
    binary_weight = True
    binary_input = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(torch.sign(x), torch.sign(self.weight), self.bias)


class StandInWeightOnlyConv(nn.Conv2d):
    """Binary weights, full-precision inputs: binary parameters but full-precision MACs."""

    is_binary = False
    binary_weight = True
    binary_input = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, torch.sign(self.weight), self.bias)


def test_conv2d_exact() -> None:
    report = measure_cost(nn.Conv2d(3, 8, 3, padding=1), (torch.zeros(1, 3, 16, 16),))
    assert report.fp_macs == 8 * 16 * 16 * 3 * 9
    assert report.binary_macs == report.attention_macs == report.norm_ops == 0
    assert report.fp_params == 8 * 3 * 9 + 8 and report.binary_params == 0
    (layer,) = report.layers
    assert (layer.name, layer.type, layer.binary, layer.output_shape) == ("", "Conv2d", False, [1, 8, 16, 16])
    assert report.ops_g == pytest.approx(8 * 16 * 16 * 27 / 1e9)


@settings(max_examples=25, deadline=None)
@given(
    groups=st.sampled_from([1, 2]),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 2),
    dilation=st.integers(1, 2),
    size=st.integers(5, 9),
    transposed=st.booleans(),
)
def test_conv_formula_matches_shapes(
    groups: int, kernel: int, stride: int, dilation: int, size: int, transposed: bool
) -> None:
    cin, cout = 4, 6
    cls = nn.ConvTranspose2d if transposed else nn.Conv2d
    conv = cls(cin, cout, kernel, stride=stride, dilation=dilation, groups=groups)
    x = torch.zeros(2, cin, size, size)
    report = measure_cost(conv, (x,))
    out = conv(x)
    if transposed:  # every input element is scattered into C_out/g * k*k outputs
        expected = x.numel() * (cout // groups) * kernel * kernel
    else:  # every output element is a dot product over C_in/g * k*k inputs
        expected = out.numel() * (cin // groups) * kernel * kernel
    assert report.fp_macs == expected
    assert report.layers[0].output_shape == list(out.shape)


def test_conv1d_and_transposed_numbers() -> None:
    assert measure_cost(nn.Conv1d(2, 4, 3), (torch.zeros(1, 2, 10),)).fp_macs == 4 * 8 * 2 * 3
    up = nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)
    assert measure_cost(up, (torch.zeros(1, 4, 5, 5),)).fp_macs == 100 * 3 * 9


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(2, 4), (2, 3, 4)])
def test_linear(bias: bool, shape: tuple[int, ...]) -> None:
    report = measure_cost(nn.Linear(4, 6, bias=bias), (torch.zeros(*shape),))
    assert report.fp_macs == math.prod(shape[:-1]) * 4 * 6
    assert report.fp_params == 24 + (6 if bias else 0)


class VitBlock(nn.Module):
    """A ViT-like attention block: LayerNorm, qkv Linear, fused attention, projection."""

    def __init__(self, dim: int = 16, heads: int = 2, fused: bool = True) -> None:
        super().__init__()
        self.heads, self.fused = heads, fused
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.fused:
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            y = ((q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5).softmax(-1) @ v
        return x + self.proj(y.transpose(1, 2).reshape(b, n, c))


@pytest.mark.parametrize("fused", [True, False])
def test_attention_block(fused: bool) -> None:
    b, n, dim, heads = 2, 5, 16, 2
    report = measure_cost(VitBlock(dim, heads, fused), (torch.zeros(b, n, dim),))
    attention = b * heads * n * n * (dim // heads) * 2  # QK^T and AV
    assert report.attention_macs == attention
    assert report.fp_macs == b * n * dim * 3 * dim + b * n * dim * dim + attention
    assert report.norm_ops == NORM_OPS_PER_ELEMENT * b * n * dim
    assert [layer.name for layer in report.layers] == ["qkv", "proj"]
    assert {(f.name, f.kind) for f in report.functional} == {("", "attention"), ("norm", "norm")}


def test_multihead_attention_counts_projections_and_restores_fastpath() -> None:
    before = torch.backends.mha.get_fastpath_enabled()
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    x = torch.zeros(1, 5, 8)
    report = measure_cost(mha, (x, x, x))
    assert report.attention_macs == 2 * 5 * 5 * 8
    assert report.fp_macs == 4 * 5 * 8 * 8 + report.attention_macs
    assert torch.backends.mha.get_fastpath_enabled() == before


@pytest.mark.parametrize(
    ("norm", "shape"),
    [
        (nn.GroupNorm(2, 4), (2, 4, 3, 3)),
        (nn.BatchNorm2d(4), (2, 4, 3, 3)),
        (nn.BatchNorm1d(4), (2, 4)),
        (nn.LayerNorm(3), (2, 4, 3)),
        (nn.InstanceNorm2d(4, affine=True), (2, 4, 3, 3)),
    ],
)
def test_norm_ops(norm: nn.Module, shape: tuple[int, ...]) -> None:
    report = measure_cost(norm, (torch.randn(*shape),))
    assert report.norm_ops == 5 * math.prod(shape)
    assert report.fp_macs == 0 and report.layers == []
    assert report.ops_g == pytest.approx(5 * math.prod(shape) / 1e9)


def test_binary_layer_attribution_and_paper_convention() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        StandInBinaryConv(8, 8, 3, padding=1, bias=False),
        StandInWeightOnlyConv(8, 8, 1, bias=False),
    )
    report = measure_cost(model, (torch.zeros(1, 3, 16, 16),))
    first, binary, weight_only = 8 * 256 * 27, 8 * 256 * 72, 8 * 256 * 8
    assert report.binary_macs == binary
    assert report.fp_macs == first + weight_only
    assert report.binary_params == 8 * 8 * 9 + 8 * 8
    assert report.fp_params == 8 * 27 + 8 + 2 * 8
    assert report.norm_ops == 5 * 8 * 256
    assert report.params_m == pytest.approx((report.fp_params + report.binary_params / 32) / 1e6)
    assert report.ops_g == pytest.approx((first + weight_only + binary / 64 + 5 * 8 * 256) / 1e9)
    assert (report.binary_layers, report.binary_weight_layers) == (1, 2)
    by_name = {layer.name: layer for layer in report.layers}
    assert by_name["2"].binary and by_name["2"].binary_macs == by_name["2"].macs == binary
    assert not by_name["3"].binary and by_name["3"].binary_weight and by_name["3"].binary_macs == 0
    assert by_name["3"].binary_params == 64 and by_name["0"].binary_params == 0


def test_real_binary_layers() -> None:
    binary_nn = pytest.importorskip("binarize.nn")
    conv = binary_nn.BinaryConv2d.from_float(
        nn.Conv2d(3, 8, 3, padding=1), weight_binarizer="ste", input_binarizer="ste", activation="rprelu"
    )
    report = measure_cost(nn.Sequential(conv), (torch.zeros(1, 3, 16, 16),))
    assert report.binary_macs == 8 * 16 * 16 * 27 and report.fp_macs == 0
    assert report.binary_params == 8 * 27 and report.binary_layers == 1


def test_shared_module_counted_once_for_params_twice_for_macs() -> None:
    shared = nn.Linear(4, 4)

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = shared, shared

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x))

    report = measure_cost(Twice(), (torch.zeros(1, 4),))
    assert report.fp_params == 20 and report.fp_macs == 32
    (layer,) = report.layers
    assert (layer.name, layer.calls, layer.macs) == ("a", 2, 32)


def test_state_is_restored() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.Dropout())
    model.train()
    model[2].eval()
    hooks_before = (
        len(nn.modules.module._global_forward_pre_hooks),
        len(nn.modules.module._global_forward_hooks),
    )
    measure_cost(model, torch.zeros(1, 1, 4, 4))
    assert [m.training for m in model] == [True, True, False] and model.training
    assert torch.is_grad_enabled()
    assert hooks_before == (
        len(nn.modules.module._global_forward_pre_hooks),
        len(nn.modules.module._global_forward_hooks),
    )


def test_state_is_restored_when_forward_fails() -> None:
    model = nn.Sequential(nn.Conv2d(3, 2, 1)).train()
    hooks_before = len(nn.modules.module._global_forward_hooks)
    with pytest.raises(RuntimeError):
        measure_cost(model, (torch.zeros(1, 5, 4, 4),))
    assert model.training and model[0].training
    assert len(nn.modules.module._global_forward_hooks) == hooks_before


def test_report_serialises_and_formats() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), StandInBinaryConv(4, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 3, 8, 8))  # materialise the lazy layer
    report = measure_cost(model, (torch.zeros(1, 3, 8, 8),))
    data = json.loads(json.dumps(report.to_dict()))
    assert {"params_m", "ops_g", "fp_params", "binary_params", "layers", "attention_macs", "norm_ops"} <= set(data)
    assert [entry["name"] for entry in data["layers"]] == ["0", "1", "3"]
    assert data["layers"][1]["binary"] is True
    table = report.format_table()
    assert "StandInBinaryConv" in table and "params" in table and "ops" in table
    assert str(report) == table
    assert isinstance(report, CostReport)


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="torch.nn.Module"):
        measure_cost("model", (torch.zeros(1),))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tuple"):
        measure_cost(nn.Linear(1, 1), {"x": torch.zeros(1, 1)})


def test_binary_layers_used_only_functionally_count_as_full_precision() -> None:
    """A binary layer whose weight the model feeds to F.linear never computes as a binary layer."""
    from binarize import binarize

    class FunctionalUse(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(8, 8)
            self.bypassed = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.linear(self.used(x), self.bypassed.weight, self.bypassed.bias)

    recipe = {"name": "all", "defaults": {"weight_binarizer": "ste", "input_binarizer": "ste"},
              "rules": [{"select": {"type": "Linear"}, "binarize": {}}]}
    model = binarize(FunctionalUse(), recipe)
    report = measure_cost(model, (torch.zeros(1, 8),))
    assert report.binary_params == 64 and report.binary_layers == 1
    assert report.fp_params == 8 + 64 + 8
    assert report.binary_macs == 64 and report.fp_macs == 64
