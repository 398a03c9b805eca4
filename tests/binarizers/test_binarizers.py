"""Every registered binarizer: values, sign(0), surrogate gradients, specs and errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from binarize.binarizers import (
    BINARIZERS,
    EDE,
    SURROGATE_GRADIENTS,
    Binarizer,
    ede_coefficients,
    get_binarizer,
    scaled_sign,
    set_progress,
    sign,
    surrogate_gradient,
)
from binarize.binarizers.functions import clip_bounds
from binarize.errors import UnknownNameError

ALL = BINARIZERS.names()
DTYPES = [torch.float32, torch.float64, torch.bfloat16]

# The surrogate derivative each estimator must produce, written independently of the implementation.
EXPECTED_GRAD = {
    "ste": lambda x: torch.ones_like(x),
    "clipped_ste": lambda x: (x.abs() <= 1).to(x.dtype),
    "approx_sign": lambda x: (2 - 2 * x.abs()).clamp(min=0),
    "swish_sign": lambda x: torch.autograd.functional.jacobian(
        lambda v: (2 * torch.sigmoid(5 * v) * (1 + 5 * v * (1 - torch.sigmoid(5 * v))) - 1).sum(), x
    ),
    "ede": lambda x: 10 * 0.1 * (1 - torch.tanh(0.1 * x) ** 2),  # progress 0: t = 0.1, k = 10
    "heaviside": lambda x: (x.abs() <= 1).to(x.dtype),
}


def test_every_registered_binarizer_has_an_expected_gradient() -> None:
    assert sorted(EXPECTED_GRAD) == ALL


shapes = st.lists(st.integers(1, 5), min_size=0, max_size=4).map(tuple)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_values_are_binary_and_gradients_match(name: str, dtype: torch.dtype, shape: tuple, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 2).to(dtype)
    x = x.requires_grad_()
    b = get_binarizer(name)
    y = b(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    allowed = torch.tensor(b.values, dtype=dtype)
    assert torch.isin(y.detach(), allowed).all()
    upstream = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    y.backward(upstream)
    expected = upstream.double() * EXPECTED_GRAD[name](x.detach().double())
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-6
    torch.testing.assert_close(x.grad.double(), expected, atol=tol * 10, rtol=tol)


@pytest.mark.parametrize("name", ALL)
def test_sign_of_zero_default_is_positive_and_torch_sign_is_optional(name: str) -> None:
    zero = torch.zeros(3)
    b = get_binarizer(name)
    threshold = getattr(b, "threshold", 0.0)
    at_threshold = zero + threshold
    assert torch.all(b(at_threshold) == max(b.values))
    legacy = get_binarizer({"name": name, "sign_of_zero": 0.0})
    assert torch.all(legacy(at_threshold) == 0.0)


@given(st.floats(-1e6, 1e6, allow_nan=False))
def test_sign_matches_definition(v: float) -> None:
    x = torch.tensor([v], dtype=torch.float64)
    assert sign(x).item() == (1.0 if v >= 0 else -1.0)
    assert sign(x, 0.0).item() == math.copysign(1.0, v) * (v != 0)


def test_ede_schedule_matches_irnet() -> None:
    assert ede_coefficients(0.0) == pytest.approx((10.0, 0.1))
    assert ede_coefficients(1.0) == pytest.approx((1.0, 10.0))
    k, t = ede_coefficients(0.5)
    assert t == pytest.approx(1.0) and k == pytest.approx(1.0)
    model = torch.nn.Sequential(EDE(), torch.nn.Linear(2, 2), EDE())
    assert set_progress(model, 1.0) == 2
    x = torch.tensor([0.05, 2.0], requires_grad=True)
    model[0](x).sum().backward()
    torch.testing.assert_close(x.grad, 10 * (1 - torch.tanh(10 * x.detach()) ** 2))
    assert model.state_dict()["0.progress"].item() == 1.0


def test_heaviside_doreFa_configuration() -> None:
    b = get_binarizer({"name": "heaviside", "threshold": 0.5, "clip": 0.5})
    x = torch.tensor([-0.2, 0.2, 0.5, 0.7, 1.3], requires_grad=True)
    assert b(x).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
    b(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("name", ALL)
def test_config_round_trips(name: str) -> None:
    b = get_binarizer(name)
    assert type(get_binarizer(b.config())) is type(b)
    assert get_binarizer(b) is b


def test_spec_forms_and_errors() -> None:
    assert get_binarizer(None) is None and get_binarizer("none") is None
    wrapped = get_binarizer(torch.sign)
    assert isinstance(wrapped, Binarizer) and wrapped(torch.tensor([-2.0])).item() == -1.0
    with pytest.raises(UnknownNameError, match="Did you mean 'approx_sign'") as err:
        get_binarizer("aprox_sign")
    assert "clipped_ste" in str(err.value)
    with pytest.raises(TypeError, match="bad arguments for binarizer 'ste'"):
        get_binarizer({"name": "ste", "beta": 2})
    with pytest.raises(TypeError, match="needs a 'name'"):
        get_binarizer({"beta": 2})
    with pytest.raises(TypeError, match="a binarizer must be"):
        get_binarizer(3)
    with pytest.raises(ValueError, match="sign_of_zero must be"):
        get_binarizer({"name": "ste", "sign_of_zero": 0.5})
    with pytest.raises(ValueError, match="clip must be > 0"):
        get_binarizer({"name": "clipped_ste", "clip": 0})


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sign_of_zero", [1.0, 0.0])
def test_fused_form_reproduces_the_module(name: str, dtype: torch.dtype, sign_of_zero: float) -> None:
    """A binarizer's surrogate (its fused form) gives its values and its gradient, so fused layers may use it."""
    b = get_binarizer({"name": name, "sign_of_zero": sign_of_zero})
    x = (torch.randn(64, dtype=torch.float64) * 2).to(dtype)
    x[:3] = torch.tensor([0.0, -0.0, 1.0])
    x.requires_grad_()
    fused = b.surrogate(x)
    if fused is None:
        assert name not in SURROGATE_GRADIENTS
        return
    assert fused.name == name and fused.sign_of_zero == sign_of_zero
    y = b(x)
    assert torch.equal(y, sign(x.detach(), sign_of_zero))
    upstream = torch.randn(64, dtype=torch.float64).to(dtype)
    (expected,) = torch.autograd.grad(y, x, upstream)
    got = surrogate_gradient(fused.name, x.detach(), upstream, fused.args)
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-6
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol)


def test_a_subclass_with_its_own_forward_is_not_fused() -> None:
    class Doubled(type(get_binarizer("approx_sign"))):  # type: ignore[misc]
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    assert Doubled().surrogate(torch.zeros(1)) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("clip", [1.0, 0.3, 2.5])
def test_clipped_gradient_keeps_the_boundary(dtype: torch.dtype, clip: float) -> None:
    bound = torch.tensor(clip, dtype=dtype)
    above = torch.nextafter(bound, torch.tensor(9.0, dtype=dtype))
    below = torch.nextafter(bound, torch.tensor(0.0, dtype=dtype))
    x = torch.stack([bound, -bound, above, -above, below, -below])
    got = surrogate_gradient("clipped_ste", x, torch.ones_like(x), (clip, clip_bounds(clip)))
    assert got.tolist() == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    torch.testing.assert_close(got, (x.abs() <= clip).to(dtype), rtol=0, atol=0)


def test_clip_bounds_are_the_next_floats() -> None:
    for clip in (1.0, 0.3, 1e-3, 7.5):
        above32, above64 = clip_bounds(clip)
        assert above64 == math.nextafter(clip, math.inf)
        assert above32 == torch.nextafter(torch.tensor(clip), torch.tensor(math.inf)).item()


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=8), st.sampled_from([1.0, 0.0]))
def test_scaled_sign_is_alpha_times_sign(values: list[float], sign_of_zero: float) -> None:
    x = torch.tensor(values + [0.0, -0.0], dtype=torch.float64)
    alpha = torch.rand(x.shape, dtype=torch.float64)
    expected = alpha * torch.tensor([1.0 if v > 0 else -1.0 if v < 0 else sign_of_zero for v in x.tolist()],
                                    dtype=torch.float64)
    assert torch.equal(scaled_sign(x, alpha, sign_of_zero), expected)
    assert torch.equal(scaled_sign(x, None, sign_of_zero), sign(x, sign_of_zero))


@pytest.mark.parametrize("name", sorted(SURROGATE_GRADIENTS.names()))
@pytest.mark.parametrize("dtype", DTYPES)
def test_overwriting_the_gradient_buffer_gives_the_same_result(name: str, dtype: torch.dtype) -> None:
    x = (torch.randn(5, 6, dtype=torch.float64) * 2).to(dtype)
    grad = torch.randn(5, 6, dtype=torch.float64).to(dtype)
    scale = torch.rand(5, 1, dtype=torch.float64).to(dtype)
    fused = get_binarizer(name).surrogate(x)
    expected = surrogate_gradient(name, x, grad, fused.args, scale)
    buffer = grad.clone()
    got = surrogate_gradient(name, x, buffer, fused.args, scale, overwrite=True)
    assert torch.equal(got, expected)
    assert torch.equal(surrogate_gradient(name, x, grad.clone(), fused.args), surrogate_gradient(name, x, grad,
                                                                                               fused.args))


@given(
    st.lists(st.floats(-4.0, 4.0, allow_nan=False, allow_subnormal=True), min_size=1, max_size=40),
    st.sampled_from(DTYPES),
    st.sampled_from([1.0, 0.0]),
)
def test_a_signs_work_space_gives_the_same_gradient(values: list[float], dtype: torch.dtype,
                                                    sign_of_zero: float) -> None:
    """A surrogate that takes the layer's recomputed signs as its work space computes exactly what it computes
    without them, whatever the signs hold at zero."""
    x = torch.tensor(values + [0.0, -0.0, 1.0, -1.0], dtype=torch.float64).to(dtype)
    grad = torch.linspace(-3.0, 3.0, x.numel(), dtype=torch.float64).to(dtype)
    checked = 0
    for name in SURROGATE_GRADIENTS.names():
        fused = get_binarizer(name).surrogate(x)
        if fused is None or not fused.uses_signs:
            continue
        expected = surrogate_gradient(name, x, grad, fused.args)
        signs = sign(x, sign_of_zero)
        got = surrogate_gradient(name, x, grad.clone(), fused.args, overwrite=True, signs=signs)
        assert torch.equal(got, expected)
        checked += 1
    assert checked >= 1  # ApproxSign takes the signs
