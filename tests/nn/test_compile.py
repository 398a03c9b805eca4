"""Binary layers stay torch.compile-friendly: dynamo captures them without graph breaks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from binarize.binarizers import BINARIZERS
from binarize.nn import BinaryConv2d, BinaryLinear
from binarize.scaling import SCALES


@pytest.mark.parametrize(
    ("binarizer", "scale"),
    list(zip(BINARIZERS.names(), (SCALES.names() * 2)[: len(BINARIZERS)])),
)
def test_no_graph_breaks(binarizer: str, scale: str) -> None:
    torch._dynamo.reset()
    options = dict(weight_binarizer=binarizer, input_binarizer=binarizer, scale=scale, input_shift=True,
                   activation="rprelu", shortcut=True)
    conv = BinaryConv2d.from_float(nn.Conv2d(4, 4, 3, padding=1), **options)
    linear = BinaryLinear.from_float(nn.Linear(4, 4), **options)
    assert torch._dynamo.explain(conv)(torch.randn(2, 4, 5, 5)).graph_break_count == 0
    assert torch._dynamo.explain(linear)(torch.randn(2, 3, 4)).graph_break_count == 0


def test_every_scale_is_covered() -> None:
    covered = set((SCALES.names() * 2)[: len(BINARIZERS)])
    assert covered == set(SCALES.names())
