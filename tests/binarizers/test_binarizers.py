"""Every registered binarizer: values, sign(0), surrogate gradients, specs and errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from binarize.binarizers import BINARIZERS, EDE, Binarizer, ede_coefficients, get_binarizer, set_progress, sign
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
