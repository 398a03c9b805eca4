"""Packed layers compute what the fake-quantised binary layers compute: accumulators exactly, outputs to float
rounding, over shapes and every layer option (hypothesis)."""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from binarize.deploy import freeze, pack_layer
from binarize.deploy.packed import NotPackableError, PackedConv, PackedConvTranspose2d, PackedLinear
from binarize.nn import BinaryConv1d, BinaryConv2d, BinaryConvTranspose2d, BinaryLinear
from deploy_oracle import IMPLEMENTATIONS, oracle_accumulators

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SCALES = [None, "mean_abs", "channel_mean_abs", "learnable", "irnet"]
INPUT_BINARIZERS = ["ste", "approx_sign", "clipped_ste", "swish_sign", "ede"]
WEIGHT_BINARIZERS = ["ste", "clipped_ste", "approx_sign", "ede"]


def _randomise(layer: nn.Module, seed: int) -> None:
    """Non-trivial shifts, activation slopes, biases and learnable scales (they start at 0 or 1)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in layer.named_parameters():
            if name != "weight":
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3 + (0.5 if "alpha" in name else 0))


@st.composite
def options(draw: st.DrawFn, *, timestep: bool = True) -> dict:
    chosen = {
        "input_binarizer": draw(st.sampled_from(INPUT_BINARIZERS)),
        "weight_binarizer": draw(st.sampled_from(WEIGHT_BINARIZERS)),
        "scale": draw(st.sampled_from(SCALES)),
        "input_shift": draw(st.booleans()),
        "activation": draw(st.sampled_from([None, "rprelu", "prelu"])),
        "shortcut": "auto",
    }
    if timestep and draw(st.booleans()):
        chosen["timestep_groups"] = draw(st.integers(2, 4))
        chosen["timestep_parts"] = draw(st.sampled_from([("input_shift",), ("activation",),
                                                          ("input_shift", "activation")]))
    return chosen


def _groups_for(layer: nn.Module, batch: int, seed: int) -> torch.Tensor | None:
    if layer.timestep_groups is None:
        return None
    return torch.randint(0, layer.timestep_groups, (batch,), generator=torch.Generator().manual_seed(seed))


def _check(layer: nn.Module, packed: nn.Module, x: torch.Tensor, groups: torch.Tensor | None, **extra: object) -> None:
    kwargs = {} if groups is None else {"timestep_groups": groups}
    with torch.no_grad():
        expected = layer(x, **extra, **kwargs)
        got = packed(x, **extra, **kwargs)
        accumulators = packed.accumulate(x, groups, **extra)
        oracle = oracle_accumulators(layer, x, groups, **extra)
    assert torch.equal(accumulators, oracle)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    scale = max(1.0, float(expected.abs().max()))
    assert float((got - expected).abs().max()) <= 1e-5 * scale


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths:UserWarning")  # torch's, once
@pytest.mark.parametrize("compiled", IMPLEMENTATIONS)
@SETTINGS
@given(data=st.data(), chosen=options())
def test_conv2d_matches_the_fake_quantised_layer(compiled: bool, data: st.DataObject, chosen: dict) -> None:
    groups = data.draw(st.sampled_from([1, 2, 3]), label="groups")
    cin = groups * data.draw(st.integers(1, 70), label="channels per group")
    cout = groups * data.draw(st.integers(1, 6), label="outputs per group")
    kernel = (data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4)))
    stride = data.draw(st.sampled_from([1, 2, 3]))
    dilation = data.draw(st.sampled_from([1, 2]))
    mode = data.draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    padding: int | str = data.draw(st.integers(0, 2))
    if stride == 1 and data.draw(st.booleans()):
        padding = "same"
    pad_value = data.draw(st.sampled_from([None, -1.0, 0.5, 1.0])) if mode == "zeros" else None
    size = [dilation * (k - 1) + 1 + data.draw(st.integers(0, 5)) for k in kernel]
    if mode != "zeros":
        size = [max(s, 3) for s in size]  # reflect needs more pixels than the padding
    layer = BinaryConv2d(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups,
                         padding_mode=mode, bias=data.draw(st.booleans()), pad_value=pad_value, **chosen).eval()
    seed = data.draw(st.integers(0, 2**16))
    _randomise(layer, seed)
    packed = pack_layer(layer)
    packed.compiled = compiled
    batch = data.draw(st.integers(1, 3))
    x = torch.randn(batch, cin, *size, generator=torch.Generator().manual_seed(seed))
    _check(layer, packed, x, _groups_for(layer, batch, seed))


@pytest.mark.parametrize("compiled", IMPLEMENTATIONS)
@SETTINGS
@given(data=st.data(), chosen=options())
def test_conv1d_linear_and_transposed_match(compiled: bool, data: st.DataObject, chosen: dict) -> None:
    seed = data.draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    kind = data.draw(st.sampled_from(["conv1d", "linear", "transposed"]))
    batch = data.draw(st.integers(1, 3))
    extra: dict = {}
    if kind == "conv1d":
        cin, cout = data.draw(st.integers(1, 130)), data.draw(st.integers(1, 8))
        layer: nn.Module = BinaryConv1d(cin, cout, data.draw(st.integers(1, 5)), padding=data.draw(st.integers(0, 2)),
                                        stride=data.draw(st.integers(1, 2)), **chosen)
        x = torch.randn(batch, cin, 9, generator=generator)
    elif kind == "linear":
        cin, cout = data.draw(st.integers(1, 200)), data.draw(st.integers(1, 40))
        layer = BinaryLinear(cin, cout, bias=data.draw(st.booleans()), **chosen)
        x = torch.randn(batch, data.draw(st.integers(1, 4)), cin, generator=generator)
    else:
        groups = data.draw(st.sampled_from([1, 2]))
        cin, cout = groups * data.draw(st.integers(1, 40)), groups * data.draw(st.integers(1, 5))
        stride, kernel = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4))
        layer = BinaryConvTranspose2d(cin, cout, kernel, stride=stride, padding=data.draw(st.integers(0, kernel - 1)),
                                      output_padding=data.draw(st.integers(0, stride - 1)), groups=groups, **chosen)
        x = torch.randn(batch, cin, 4, 5, generator=generator)
    layer.eval()
    _randomise(layer, seed)
    packed = pack_layer(layer)
    packed.compiled = compiled
    _check(layer, packed, x, _groups_for(layer, batch, seed), **extra)


def test_transposed_output_size_and_unbatched_inputs() -> None:
    layer = BinaryConvTranspose2d(6, 4, 3, stride=2, padding=1, input_binarizer="ste", weight_binarizer="ste",
                                  scale="channel_mean_abs").eval()
    packed = pack_layer(layer)
    packed.compiled = False
    x = torch.randn(2, 6, 5, 5)
    with torch.no_grad():
        assert torch.allclose(packed(x, output_size=[10, 10]), layer(x, output_size=[10, 10]), atol=1e-5)
        assert torch.allclose(packed(x[0]), layer(x[0]), atol=1e-5)
    conv = BinaryConv2d(6, 4, 3, padding=1, input_binarizer="ste", weight_binarizer="ste").eval()
    with torch.no_grad():
        assert torch.allclose(freeze(nn.Sequential(conv), compiled=False)[0](x[0]), conv(x[0]), atol=1e-5)


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"weight_binarizer": "ste"}, "input is not binarized"),
        ({"input_binarizer": "ste"}, "weight is not binarized"),
        ({"input_binarizer": {"name": "ste", "sign_of_zero": 0.0}, "weight_binarizer": "ste"}, "two-valued sign"),
        ({"input_binarizer": "heaviside", "weight_binarizer": "ste"}, "two-valued sign"),
        ({"input_binarizer": "ste", "weight_binarizer": "heaviside"}, "not +-alpha per output channel"),
        ({"input_binarizer": "ste", "weight_binarizer": "ste", "scale": "factorized"}, "not +-alpha per output"),
    ],
)
def test_layers_without_a_packed_form_stay_fake_quantised_and_say_why(options: dict, reason: str) -> None:
    model = nn.Sequential(BinaryConv2d(4, 4, 3, padding=1, **options), nn.ReLU())
    _randomise(model[0], 0)  # a factorized scale starts out constant per channel
    with pytest.raises(NotPackableError, match=re.escape(reason)):
        pack_layer(model[0])
    frozen = freeze(model, compiled=False)
    assert isinstance(frozen[0], BinaryConv2d) and reason in frozen.deploy_report.kept["0"]
    assert frozen.deploy_report.packed == [] and "stay fake-quantised" in str(frozen.deploy_report)


def test_freeze_copies_unless_inplace_and_keeps_timestep_routing() -> None:
    model = nn.Sequential(BinaryConv2d(4, 4, 3, padding=1, input_binarizer="ste", weight_binarizer="ste"),
                          BinaryLinear(4, 2, input_binarizer="ste", weight_binarizer="ste"))
    frozen = freeze(model)
    assert isinstance(model[0], BinaryConv2d) and isinstance(frozen[0], PackedConv)
    assert isinstance(frozen[1], PackedLinear) and not frozen.training
    freeze(model, inplace=True, compiled=False)
    assert isinstance(model[0], PackedConv)
    transposed = BinaryConvTranspose2d(4, 4, 2, stride=2, input_binarizer="ste", weight_binarizer="ste")
    assert isinstance(pack_layer(transposed), PackedConvTranspose2d)
    aware = BinaryConv2d(4, 4, 3, padding=1, input_binarizer="ste", weight_binarizer="ste", input_shift=True,
                         timestep_groups=2)
    with pytest.raises(RuntimeError, match="needs timestep groups"):
        pack_layer(aware)(torch.randn(1, 4, 5, 5))
