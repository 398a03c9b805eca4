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


@pytest.mark.parametrize("timestep_groups", [None, 5])
def test_bi_conv_compiles_as_one_graph_forward_and_backward(timestep_groups: int | None) -> None:
    """Every BI-DiffSR option (fused binarization, TaR shift, TaA RPReLU, folded bias, shortcut) in one graph."""
    from binarize.plugins.bidiffsr import bi_conv_options

    torch._dynamo.reset()
    conv = nn.Conv2d(4, 4, 3, padding=1, dtype=torch.float64)
    layer = BinaryConv2d.from_float(conv, **bi_conv_options(timestep_groups))
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    kwargs = {} if timestep_groups is None else {"timestep_groups": torch.tensor([0, 2, 4])}
    results = []
    for module in (layer, compiled):
        xg = x.clone().requires_grad_()
        out = module(xg, **kwargs)
        grads = torch.autograd.grad(out.square().sum(), [xg, *layer.parameters()])
        results.append((out, grads))
    (out, grads), (compiled_out, compiled_grads) = results
    torch.testing.assert_close(compiled_out, out, rtol=0, atol=1e-12)
    for a, b in zip(compiled_grads, grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
