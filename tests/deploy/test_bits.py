"""The packed sign layout and the reference xnor-popcount arithmetic, bit-exact against +-1 float arithmetic."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from binarize.deploy.bits import WORD_BITS, pack_signs, packed_words, popcount, unpack_signs, xnor_matmul


def _signs(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, shape, generator=generator).float() * 2 - 1


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 70), min_size=1, max_size=4).map(tuple), seed=st.integers(0, 2**31),
       data=st.data())
def test_packing_round_trips_along_any_axis(shape: tuple[int, ...], seed: int, data: st.DataObject) -> None:
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    values = _signs(shape, seed)
    words = pack_signs(values, dim)
    count = shape[dim]
    assert words.dtype == torch.int64 and words.shape[-1] == packed_words(count)
    assert torch.equal(unpack_signs(words, count).movedim(-1, dim), values)


def test_bit_layout_is_little_endian_with_set_bits_for_minus_one() -> None:
    values = torch.ones(130)
    values[[0, 63, 64, 129]] = -1
    words = pack_signs(values)
    assert words.tolist() == [1 | -(1 << 63), 1, 2]  # bit 63 is the int64 sign bit
    assert pack_signs(torch.tensor([0.0, -0.0, 1e-30, -1e-30])).tolist() == [8]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=9))
def test_popcount_counts_the_set_bits_of_every_word(words: list[int]) -> None:
    expected = sum(bin(w & (2**64 - 1)).count("1") for w in words)
    assert int(popcount(torch.tensor(words, dtype=torch.int64))) == expected


@settings(max_examples=50, deadline=None)
@given(m=st.integers(1, 9), n=st.integers(1, 9), count=st.integers(1, 3 * WORD_BITS + 5), seed=st.integers(0, 2**31))
def test_xnor_matmul_is_the_integer_dot_product_of_the_signs(m: int, n: int, count: int, seed: int) -> None:
    a, b = _signs((m, count), seed), _signs((n, count), seed + 1)
    result = xnor_matmul(pack_signs(a), pack_signs(b), count, rows_per_chunk=4)
    assert result.dtype == torch.int32
    assert torch.equal(result, (a.double() @ b.double().T).to(torch.int32))


def test_bad_shapes_are_clear_errors() -> None:
    words = pack_signs(_signs((3, 70), 0))
    with pytest.raises(ValueError, match="65 signs need 2 words"):
        unpack_signs(words[:, :1], 65)
    with pytest.raises(ValueError, match=r"expected packed matrices \(M, W\) and \(N, W\)"):
        xnor_matmul(words, words[:, :1], 70)
