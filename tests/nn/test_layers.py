"""Binary layers: exact equivalence with everything off, every option, every torch argument, clear refusals."""

from __future__ import annotations

import copy
import inspect
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from binarize.errors import UnsupportedLayerError
from binarize.nn import (
    LAYERS,
    OPTION_DEFAULTS,
    BinaryConv2d,
    BinaryConvTranspose2d,
    BinaryLinear,
    LearnableBias,
    RPReLU,
    binary_class_for,
)

ALL_ON = {
    "weight_binarizer": "ste",
    "input_binarizer": "approx_sign",
    "scale": "channel_mean_abs",
    "input_shift": True,
    "activation": "rprelu",
    "shortcut": "auto",
}


@st.composite
def conv_cases(draw: st.DrawFn) -> tuple[nn.Module, torch.Tensor]:
    dims = draw(st.sampled_from([1, 2]))
    groups = draw(st.sampled_from([1, 2]))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 3))
    k = draw(st.integers(1, 4))
    dilation = draw(st.integers(1, 2))
    stride = draw(st.integers(1, 3))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    padding: int | str = draw(st.one_of(st.integers(0, 2), st.sampled_from(["same", "valid"])))
    if padding == "same":
        stride = 1
        assume(dilation * (k - 1) % 2 == 0)  # torch warns about an extra padded copy otherwise
    size = draw(st.integers(max(3, dilation * (k - 1) + 1), 9))
    if mode != "zeros" and isinstance(padding, int):
        assume(padding < size)
    cls = nn.Conv1d if dims == 1 else nn.Conv2d
    layer = cls(cin, cout, k, stride=stride, padding=padding, dilation=dilation, groups=groups,
                bias=draw(st.booleans()), padding_mode=mode)
    x = torch.randn((2, cin) + (size,) * dims)
    return layer, x


@settings(max_examples=60, deadline=None)
@given(case=conv_cases())
def test_all_off_equals_torch_conv_bit_for_bit(case: tuple[nn.Module, torch.Tensor]) -> None:
    layer, x = case
    binary = binary_class_for(layer).from_float(layer)
    assert isinstance(binary, type(layer))
    assert torch.equal(binary(x), layer(x))
    # And with every option on, forward and backward still run and keep the output shape.
    on = binary_class_for(layer).from_float(layer, **ALL_ON)
    xg = x.clone().requires_grad_()
    out = on(xg)
    assert out.shape == layer(x).shape
    out.sum().backward()
    assert xg.grad is not None and on.weight.grad is not None


@settings(max_examples=30, deadline=None)
@given(
    cin=st.integers(1, 4), cout=st.integers(1, 4), k=st.integers(1, 4), stride=st.integers(1, 3),
    padding=st.integers(0, 1), output_padding=st.integers(0, 2), dilation=st.integers(1, 2), bias=st.booleans(),
)
def test_all_off_equals_torch_conv_transpose(cin, cout, k, stride, padding, output_padding, dilation, bias) -> None:
    assume(output_padding < max(stride, dilation))
    layer = nn.ConvTranspose2d(cin, cout, k, stride, padding, output_padding, 1, bias, dilation)
    x = torch.randn(2, cin, 4, 5)
    binary = BinaryConvTranspose2d.from_float(layer)
    assert torch.equal(binary(x), layer(x))
    on = BinaryConvTranspose2d.from_float(layer, **ALL_ON)
    assert on(x).shape == layer(x).shape
    assert on.shortcut == (cin == cout and stride == 1 and dilation * (k - 1) + output_padding == 2 * padding)


def test_conv_transpose_output_size_argument() -> None:
    layer = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    binary = BinaryConvTranspose2d.from_float(layer)
    x = torch.randn(1, 3, 4, 4)
    assert torch.equal(binary(x, output_size=[8, 8]), layer(x, output_size=[8, 8]))


@given(fin=st.integers(1, 6), fout=st.integers(1, 6), lead=st.lists(st.integers(1, 3), max_size=2), bias=st.booleans())
@settings(max_examples=30, deadline=None)
def test_all_off_equals_torch_linear(fin: int, fout: int, lead: list[int], bias: bool) -> None:
    layer = nn.Linear(fin, fout, bias=bias)
    x = torch.randn(*lead, fin)
    assert torch.equal(BinaryLinear.from_float(layer)(x), layer(x))
    on = BinaryLinear.from_float(layer, **ALL_ON)
    assert on(x).shape == layer(x).shape and on.shortcut == (fin == fout)


def test_binary_conv_computes_the_documented_formula() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
    layer = BinaryConv2d.from_float(conv, **ALL_ON)
    with torch.no_grad():
        layer.shift.bias.normal_()
        layer.activation.shift_in.normal_()
        layer.activation.shift_out.normal_()
    x = torch.randn(2, 4, 5, 5)
    h = x + layer.shift.bias.view(1, -1, 1, 1)
    xb = torch.where(h >= 0, 1.0, -1.0)
    w = conv.weight
    alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    y = F.conv2d(xb, torch.where(w >= 0, 1.0, -1.0) * alpha, padding=1)
    a = layer.activation
    y = F.prelu(y + a.shift_in.view(1, -1, 1, 1), a.slope) + a.shift_out.view(1, -1, 1, 1)
    torch.testing.assert_close(layer(x), y + x)


def test_pad_value_pads_binary_inputs_explicitly() -> None:
    conv = nn.Conv2d(2, 3, 3, padding=(1, 2), bias=False)
    layer = BinaryConv2d.from_float(conv, input_binarizer="ste", pad_value=-1.0)
    x = torch.randn(1, 2, 4, 4)
    xb = torch.where(x >= 0, 1.0, -1.0)
    expected = F.conv2d(F.pad(xb, (2, 2, 1, 1), value=-1.0), conv.weight)
    torch.testing.assert_close(layer(x), expected)
    same = BinaryConv2d.from_float(nn.Conv2d(2, 2, 3, padding="same", dilation=2), pad_value=0.0)
    ref = nn.Conv2d(2, 2, 3, padding="same", dilation=2)
    ref.load_state_dict(same.state_dict(), strict=False)
    torch.testing.assert_close(same(x), ref(x))
    assert "pad_value=-1.0" in repr(layer)


def test_pad_value_refusals() -> None:
    with pytest.raises(UnsupportedLayerError, match="padding_mode='zeros'"):
        BinaryConv2d.from_float(nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"), pad_value=-1.0)
    with pytest.raises(UnsupportedLayerError, match="does not pad its input"):
        BinaryConvTranspose2d.from_float(nn.ConvTranspose2d(2, 2, 3), pad_value=1.0)


def test_shortcut_true_refuses_shape_changes_and_auto_skips() -> None:
    down = nn.Conv2d(4, 8, 3, stride=2, padding=1)
    with pytest.raises(UnsupportedLayerError, match="shortcut: auto"):
        BinaryConv2d.from_float(down, shortcut=True)
    assert BinaryConv2d.from_float(down, shortcut="auto").shortcut is False
    keep = nn.Conv2d(4, 4, 3, padding=1)
    layer = BinaryConv2d.from_float(keep, shortcut=True)
    x = torch.randn(1, 4, 6, 6)
    torch.testing.assert_close(layer(x), keep(x) + x)


def test_from_float_keeps_dtype_device_training_flag_and_requires_grad() -> None:
    conv = nn.Conv2d(3, 3, 3, dtype=torch.float64).eval()
    conv.bias.requires_grad_(False)
    layer = BinaryConv2d.from_float(conv, **ALL_ON)
    assert layer.weight.dtype == torch.float64 and layer.shift.bias.dtype == torch.float64
    assert not layer.training and not layer.bias.requires_grad
    assert layer.weight is not conv.weight and torch.equal(layer.weight, conv.weight)


def test_from_float_refuses_subclasses_with_their_own_forward_and_wrong_types() -> None:
    class Custom(nn.Conv2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * 2

    class Plain(nn.Conv2d):
        pass

    with pytest.raises(UnsupportedLayerError, match="own forward"):
        BinaryConv2d.from_float(Custom(2, 2, 1))
    assert isinstance(BinaryConv2d.from_float(Plain(2, 2, 1)), BinaryConv2d)
    with pytest.raises(TypeError, match="expects a Conv2d"):
        BinaryConv2d.from_float(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="unknown binary-layer option"):
        BinaryConv2d.from_float(nn.Conv2d(2, 2, 1), shorcut=True)
    with pytest.raises(UnsupportedLayerError, match="lazy"):
        BinaryConv2d.from_float(nn.LazyConv2d(2, 1))
    with pytest.raises(TypeError, match="shortcut must be"):
        BinaryConv2d(2, 2, 1, shortcut="yes")
    with pytest.raises(TypeError, match="pad_value must be"):
        BinaryConv2d(2, 2, 1, pad_value=True)


def test_registry_and_lookup() -> None:
    assert LAYERS.names() == ["Conv1d", "Conv2d", "ConvTranspose2d", "Linear"]
    assert binary_class_for(nn.Conv2d(1, 1, 1)) is BinaryConv2d
    assert binary_class_for(nn.Conv3d(1, 1, 1)) is None
    assert binary_class_for(BinaryConv2d(1, 1, 1)) is None


@pytest.mark.parametrize("name", LAYERS.names())
def test_signature_is_the_torch_layers_plus_the_options(name: str) -> None:
    """The API reference shows real signatures: the torch layer's arguments (same names, order and defaults), then
    every binary-layer option as a keyword-only argument with its default, each documented under Args."""
    cls = LAYERS.get(name)
    params = list(inspect.signature(cls).parameters.values())
    torch_params = list(inspect.signature(cls.float_class.__init__).parameters.values())[1:]
    positional = [p for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert [(p.name, p.default) for p in positional] == [(p.name, p.default) for p in torch_params]
    keyword = {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert keyword == OPTION_DEFAULTS
    assert len(params) == len(positional) + len(keyword)
    args = (cls.__doc__ or "").split("Args:", 1)[1].split("Raises:", 1)[0]
    documented = re.findall(r"^        (\w+):", args, flags=re.MULTILINE)
    assert documented == list(OPTION_DEFAULTS)


def test_options_round_trip_and_state_dict() -> None:
    conv = nn.Conv2d(4, 4, 3, padding=1)
    layer = BinaryConv2d.from_float(conv, **ALL_ON, pad_value=1.0)
    opts = layer.options()
    assert set(opts) == set(OPTION_DEFAULTS)
    twin = BinaryConv2d.from_float(conv, **opts)
    twin.load_state_dict(layer.state_dict())
    x = torch.randn(1, 4, 5, 5)
    assert torch.equal(twin(x), layer(x))
    clone = copy.deepcopy(layer)
    assert torch.equal(clone(x), layer(x))
    assert layer.is_binary and layer.binary_weight and layer.binary_input
    assert not BinaryConv2d.from_float(conv, weight_binarizer="ste").is_binary


def test_channel_modules_on_linear_layout() -> None:
    x = torch.randn(2, 3, 5)
    shift = LearnableBias(5, -1)
    with torch.no_grad():
        shift.bias.copy_(torch.arange(5.0))
    torch.testing.assert_close(shift(x), x + torch.arange(5.0))
    act = RPReLU(5, -1)
    with torch.no_grad():
        act.slope.copy_(torch.linspace(0, 1, 5))
    torch.testing.assert_close(act(x), torch.where(x > 0, x, x * torch.linspace(0, 1, 5)))


@pytest.mark.parametrize(("binary_cls", "float_cls", "args"), [
    (BinaryConv2d, nn.Conv2d, (3, 4, 3)),
    (BinaryLinear, nn.Linear, (5, 2)),
])
def test_a_layer_built_directly_is_initialised_as_torch_initialises_its_float_twin(
    binary_cls: type[nn.Module], float_cls: type[nn.Module], args: tuple[int, ...]
) -> None:
    """from_float skips the random initialisation it would overwrite; a layer built with its constructor does not."""
    torch.manual_seed(3)
    reference = float_cls(*args)
    torch.manual_seed(3)
    built = binary_cls(*args)
    assert torch.equal(built.weight, reference.weight) and torch.equal(built.bias, reference.bias)
    converted = binary_cls.from_float(reference)
    assert torch.equal(converted.weight, reference.weight) and converted.weight is not reference.weight
    assert not converted.weight.is_meta and not converted.bias.is_meta
