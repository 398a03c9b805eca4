"""Fused binary operations: the same values and gradients as the unfused layer, and less saved for the backward pass.

The reference is the same layer forced onto the unfused path (``_fusable`` returning False), which runs the
binarizers as modules with their own autograd functions and the plain torch operation.
"""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from binarize.binarizers import BINARIZERS, get_binarizer
from binarize.nn import BinaryConv1d, BinaryConv2d, BinaryConvTranspose2d, BinaryLinear
from binarize.nn.functional import binary_conv, binary_linear
from binarize.plugins.bidiffsr import bi_conv_options

FUSED = [name for name in BINARIZERS.names() if get_binarizer(name).surrogate(torch.zeros(1)) is not None]
SCALES = [None, "mean_abs", "channel_mean_abs"]


def test_every_sign_estimator_has_a_fused_form() -> None:
    assert sorted(FUSED) == ["approx_sign", "clipped_ste", "ede", "ste", "swish_sign"]
    assert get_binarizer("heaviside").surrogate(torch.zeros(1)) is None
    assert get_binarizer(torch.sign).surrogate(torch.zeros(1)) is None


def unfused(layer: nn.Module) -> nn.Module:
    """The same layer on the unfused path."""
    twin = copy.deepcopy(layer)
    twin._fusable = lambda: False  # type: ignore[method-assign]
    return twin


def run(layer: nn.Module, x: Tensor, **kwargs: object) -> tuple[Tensor, list[Tensor]]:
    xg = x.clone().requires_grad_()
    out = layer(xg, **kwargs)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.dtype)
    grads = torch.autograd.grad(out, [xg, *layer.parameters()], upstream)
    return out, list(grads)


def assert_same(fused: nn.Module, x: Tensor, tol: float = 1e-12, **kwargs: object) -> None:
    reference = unfused(fused)
    out, grads = run(fused, x, **kwargs)
    ref_out, ref_grads = run(reference, x, **kwargs)
    assert torch.equal(out, ref_out)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * max(1.0, b.abs().max().item()))


@st.composite
def conv_layers(draw: st.DrawFn) -> tuple[nn.Module, Tensor]:
    dims = draw(st.sampled_from([1, 2]))
    groups = draw(st.sampled_from([1, 2]))
    cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    k, dilation, stride = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    padding: int | str = draw(st.one_of(st.integers(0, 2), st.sampled_from(["same", "valid"])))
    if padding == "same":
        stride = 1
        assume(dilation * (k - 1) % 2 == 0)
    size = draw(st.integers(dilation * (k - 1) + 1, 7))
    cls = nn.Conv1d if dims == 1 else nn.Conv2d
    conv = cls(cin, cout, k, stride=stride, padding=padding, dilation=dilation, groups=groups,
               bias=draw(st.booleans()), dtype=torch.float64)
    options = {
        "input_binarizer": draw(st.sampled_from([None, *FUSED])),
        "weight_binarizer": draw(st.sampled_from([None, *FUSED])),
        "scale": draw(st.sampled_from(SCALES)),
        "input_shift": draw(st.booleans()),
        "pad_value": draw(st.sampled_from([None, -1.0, 1.0])),
    }
    binary = (BinaryConv1d if dims == 1 else BinaryConv2d).from_float(conv, **options)
    x = torch.randn((2, cin) + (size,) * dims, dtype=torch.float64)
    x[0, 0, 0] = 0.0  # an exact zero exercises sign(0)
    return binary, x


@settings(max_examples=60, deadline=None)
@given(case=conv_layers())
def test_fused_convolution_equals_the_unfused_layer(case: tuple[nn.Module, Tensor]) -> None:
    layer, x = case
    assert_same(layer, x)


@settings(max_examples=25, deadline=None)
@given(
    stride=st.integers(1, 2), padding=st.integers(0, 1), output_padding=st.integers(0, 1), bias=st.booleans(),
    binarizer=st.sampled_from(FUSED), scale=st.sampled_from(SCALES),
)
def test_fused_transposed_convolution_equals_the_unfused_layer(
    stride: int, padding: int, output_padding: int, bias: bool, binarizer: str, scale: str | None
) -> None:
    assume(output_padding < stride)
    conv = nn.ConvTranspose2d(3, 2, 3, stride, padding, output_padding, bias=bias, dtype=torch.float64)
    layer = BinaryConvTranspose2d.from_float(conv, input_binarizer=binarizer, weight_binarizer=binarizer, scale=scale)
    assert_same(layer, torch.randn(2, 3, 4, 5, dtype=torch.float64))


@pytest.mark.parametrize("binarizer", FUSED)
@pytest.mark.parametrize("lead", [(), (3,), (2, 3)])
def test_fused_linear_equals_the_unfused_layer(binarizer: str, lead: tuple[int, ...]) -> None:
    linear = nn.Linear(5, 4, dtype=torch.float64)
    layer = BinaryLinear.from_float(linear, input_binarizer=binarizer, weight_binarizer="clipped_ste",
                                    scale="channel_mean_abs", input_shift=True, activation="rprelu")
    assert_same(layer, torch.randn(*lead, 5, dtype=torch.float64))


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-12), (torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("release", [False, True])
@pytest.mark.parametrize("groups", [None, 5])
def test_bi_conv_is_fused_and_equals_the_unfused_path(
    dtype: torch.dtype, tol: float, release: bool, groups: int | None
) -> None:
    layer = BinaryConv2d.from_float(nn.Conv2d(4, 4, 3, padding=1, dtype=dtype),
                                    **bi_conv_options(groups, release=release))
    assert layer._fusable()
    x = torch.randn(3, 4, 5, 5).to(dtype)
    kwargs = {} if groups is None else {"timestep_groups": torch.tensor([0, 2, 4])}
    assert_same(layer, x, tol, **kwargs)


@pytest.mark.parametrize("shift_zero", [0.0, -0.0])
def test_the_fused_shift_maps_negative_zero_to_plus_one_like_the_unfused_sign(shift_zero: float) -> None:
    """``x + b`` is -0 where both are -0: the fused sign (one copysign pass on ``x + (b + 0)``) still gives +1."""
    layer = BinaryConv2d.from_float(nn.Conv2d(2, 2, 1, bias=False, dtype=torch.float64),
                                    input_binarizer="approx_sign", input_shift=True)
    with torch.no_grad():
        layer.shift.bias.fill_(shift_zero)
        layer.weight.fill_(1.0)
    x = torch.tensor([-0.0, 0.0, -1.0, 2.0], dtype=torch.float64).view(1, 2, 2, 1)
    out, _ = run(layer, x)
    # Each output sums the two channels' signs: sign(-0) + sign(-1) = 1 - 1, sign(0) + sign(2) = 1 + 1 (-0 -> -1
    # would give -2 at the first position).
    assert out.flatten().tolist() == [0.0, 2.0, 0.0, 2.0]
    assert_same(layer, x)


def test_layouts_the_fused_operation_does_not_cover_use_the_modules() -> None:
    reflect = BinaryConv2d.from_float(nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"),
                                      input_binarizer="approx_sign", weight_binarizer="ste")
    asymmetric = BinaryConv2d.from_float(nn.Conv2d(2, 2, 2, padding="same"), input_binarizer="approx_sign")
    assert not reflect._fusable() and not asymmetric._fusable()
    x = torch.randn(1, 2, 5, 5)
    assert reflect(x).shape == x.shape


def saved_activation_bytes(layer: nn.Module, x: Tensor, **kwargs: object) -> int:
    """Bytes of the distinct activation-sized tensors the forward pass keeps for the backward pass."""
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        if t.numel() >= x.numel():
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x.requires_grad_(), **kwargs)
    return sum(seen.values())


@pytest.mark.parametrize("groups", [None, 5])
def test_a_bi_conv_saves_no_more_activations_than_its_full_precision_twin(groups: int | None) -> None:
    conv = nn.Conv2d(8, 8, 3, padding=1)
    options = bi_conv_options(groups)
    binary = BinaryConv2d.from_float(conv, **options)
    twin = BinaryConv2d.from_float(conv, **{**options, "input_binarizer": None, "weight_binarizer": None,
                                            "scale": None})
    kwargs = {} if groups is None else {"timestep_groups": torch.tensor([1, 3])}
    x = torch.randn(2, 8, 12, 12)  # larger than the weight, which the count must leave out
    assert saved_activation_bytes(binary, x.clone(), **kwargs) == saved_activation_bytes(twin, x.clone(), **kwargs)
    unfused_bytes = saved_activation_bytes(unfused(binary), x.clone(), **kwargs)
    assert unfused_bytes > saved_activation_bytes(binary, x.clone(), **kwargs)


@pytest.mark.parametrize("cls", [BinaryConv2d, BinaryLinear])
def test_a_module_input_binarizer_sees_the_shifted_input_when_the_weight_is_fused(cls: type) -> None:
    """heaviside has no fused form: it runs as a module on x + b, and the fused operation must not add b again."""
    float_layer = nn.Conv2d(3, 3, 1, dtype=torch.float64) if cls is BinaryConv2d else nn.Linear(3, 3,
                                                                                                 dtype=torch.float64)
    layer = cls.from_float(float_layer, input_binarizer="heaviside", weight_binarizer="ste", input_shift=True)
    with torch.no_grad():
        layer.shift.bias.copy_(torch.tensor([0.7, -0.4, 0.2], dtype=torch.float64))
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64) if cls is BinaryConv2d else torch.randn(2, 3,
                                                                                             dtype=torch.float64)
    assert layer._operands(x, None).fused
    assert_same(layer, x)


def python_nodes(output: Tensor) -> list[str]:
    """The names of the Python-level autograd nodes behind ``output`` (custom functions, not torch's C++ nodes)."""
    names, stack, seen = [], [output.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if isinstance(node, torch.autograd.function.BackwardCFunction):
            names.append(type(node).__name__)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


@pytest.mark.parametrize("cls", [BinaryConv2d, BinaryLinear])
@pytest.mark.parametrize("activation", ["rprelu", "prelu"])
def test_a_binary_layer_with_its_activation_is_one_python_node_like_its_twin(cls: type, activation: str) -> None:
    float_layer = nn.Conv2d(4, 4, 3, padding=1) if cls is BinaryConv2d else nn.Linear(4, 4)
    options = {**bi_conv_options(5), "activation": activation}
    if activation == "prelu":
        options["fold_bias"] = False
    binary = cls.from_float(float_layer, **options)
    twin = cls.from_float(float_layer, **{**options, "input_binarizer": None, "weight_binarizer": None,
                                          "scale": None})
    x = torch.randn(3, 4, 5, 5) if cls is BinaryConv2d else torch.randn(3, 2, 4)
    groups = torch.tensor([0, 2, 4])
    assert python_nodes(binary(x.requires_grad_(), timestep_groups=groups)) == ["BinaryOperationBackward"]
    assert python_nodes(twin(x, timestep_groups=groups)) == ["ShiftedPReLUBackward"]


def test_functional_forms_match_their_documented_equivalents() -> None:
    h = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, dtype=torch.float64, requires_grad=True)
    approx, clipped = get_binarizer("approx_sign"), get_binarizer("clipped_ste")
    alpha = w.detach().abs().mean(dim=(1, 2), keepdim=True)
    y = binary_conv(h, w, None, alpha_dims=(1, 2), input_surrogate=approx.surrogate(h),
                    weight_surrogate=clipped.surrogate(w), stride=[1], padding=[1], dilation=[1], groups=1,
                    pads=[1, 1], pad_value=-1.0)
    reference = torch.nn.functional.conv1d(torch.nn.functional.pad(approx(h), [1, 1], value=-1.0),
                                           clipped(w) * alpha, padding=1)
    assert torch.equal(y, reference)
    grads = torch.autograd.grad(y.sum(), [h, w])
    ref_grads = torch.autograd.grad(reference.sum(), [h, w])
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    v = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    y = binary_linear(v, w[:, :, 0], None, input_surrogate=approx.surrogate(v))
    assert torch.equal(y, torch.nn.functional.linear(approx(v), w[:, :, 0]))


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_under_autocast_the_fused_operation_computes_like_torch(kind: str) -> None:
    """Under autocast the fused operation runs in the autocast dtype, as F.conv2d / F.linear do unfused."""
    if kind == "conv":
        layer: nn.Module = BinaryConv2d.from_float(nn.Conv2d(8, 8, 3, padding=1), **bi_conv_options(None))
        x = torch.randn(2, 8, 6, 6)
    else:
        layer = BinaryLinear.from_float(nn.Linear(8, 8), **bi_conv_options(None))
        x = torch.randn(3, 8)
    results = []
    for module in (layer, unfused(layer)):
        xg = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = module(xg)
        grads = torch.autograd.grad(out.float().square().mean(), [xg, *module.parameters()])
        results.append((out, *grads))
    for a, b in zip(*results):
        assert a.dtype == b.dtype and torch.equal(a, b)
