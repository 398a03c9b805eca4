"""PReLU and RPReLU with per-channel and per-sample (timestep-group) parameters, on both channel layouts."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from binarize.nn import ChannelPReLU, RPReLU
from binarize.nn.activations import channel_prelu


def reference(x: Tensor, slope: Tensor, channel_dim: int) -> Tensor:
    """``where(x > 0, x, a x)`` with ``slope`` (``(C,)`` or ``(B, C)``) broadcast by hand."""
    if slope.dim() == 1:
        shape = [1] * x.dim()
        shape[channel_dim] = -1
        return torch.where(x > 0, x, x * slope.view(shape))
    shape = [slope.shape[0]] + [1] * (x.dim() - 1)
    shape[channel_dim] = slope.shape[1]
    return torch.where(x > 0, x, x * slope.reshape(shape))


@pytest.mark.parametrize(
    ("shape", "channel_dim", "per_sample"),
    [((3, 4, 5, 6), 1, False), ((3, 4, 5, 6), 1, True), ((3, 4), 1, True), ((3, 4, 7), 1, True),
     ((3, 5, 4), -1, False), ((3, 5, 4), -1, True), ((4,), -1, False), ((3, 4), -1, True)],
)
def test_channel_prelu_values_and_gradients(shape: tuple[int, ...], channel_dim: int, per_sample: bool) -> None:
    channels = shape[1] if channel_dim == 1 else shape[-1]
    x = torch.randn(shape, dtype=torch.float64)
    x.view(-1)[0] = 0.0
    slope = torch.rand((shape[0], channels) if per_sample else (channels,), dtype=torch.float64)
    results = []
    for fn in (lambda a, b: channel_prelu(a, b, channel_dim), lambda a, b: reference(a, b, channel_dim)):
        xg, sg = x.clone().requires_grad_(), slope.clone().requires_grad_()
        out = fn(xg, sg)
        results.append((out, *torch.autograd.grad(out, [xg, sg], torch.ones_like(out))))
    assert torch.equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1:], results[1][1:]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_timestep_groups_gather_one_row_per_sample() -> None:
    act = RPReLU(3, groups=4)
    prelu = ChannelPReLU(3, groups=4)
    with torch.no_grad():
        for p in (*act.parameters(), *prelu.parameters()):
            p.copy_(torch.randn_like(p))
    x, groups = torch.randn(2, 3, 4, 4), torch.tensor([3, 1])
    for i, g in enumerate(groups.tolist()):
        col = (slice(None), None, None)
        expected = reference(x[i : i + 1] + act.shift_in[g][col], act.slope[g], 1) + act.shift_out[g][col]
        torch.testing.assert_close(act(x, groups)[i : i + 1], expected)
        torch.testing.assert_close(prelu(x, groups)[i : i + 1], reference(x[i : i + 1], prelu.slope[g], 1))
    shared = act(x, torch.tensor(3))
    torch.testing.assert_close(shared, act(x, torch.tensor([3, 3])))
    with pytest.raises(RuntimeError, match="group index"):
        act(x)


@pytest.mark.parametrize(("cls", "channel_dim", "shape", "groups", "sample_groups"), [
    (RPReLU, 1, (3, 4, 5, 6), None, None),
    (RPReLU, 1, (3, 4, 5, 6), 5, [0, 4, 2]),
    (RPReLU, 1, (3, 4, 5, 6), 5, 3),
    (RPReLU, -1, (3, 7, 4), None, None),
    (RPReLU, -1, (3, 7, 4), 5, [1, 1, 0]),
    (RPReLU, -1, (4,), None, None),
    (ChannelPReLU, 1, (3, 4, 6), 5, [4, 0, 1]),
    (ChannelPReLU, -1, (2, 4), None, None),
])
def test_module_gradients_match_the_formula(cls: type, channel_dim: int, shape: tuple[int, ...],
                                            groups: int | None, sample_groups: object) -> None:
    channels = shape[1] if channel_dim == 1 else shape[-1]
    act = cls(channels, channel_dim, groups=groups, dtype=torch.float64)
    with torch.no_grad():
        for p in act.parameters():
            p.copy_(torch.randn_like(p))
    g = None if sample_groups is None else torch.tensor(sample_groups)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)

    def formula() -> Tensor:
        def param(p: Tensor) -> Tensor:
            rows = p if g is None else p[g]
            if rows.dim() == 1:
                view = [1] * x.dim()
                view[channel_dim] = -1
                return rows.view(view)
            view = [rows.shape[0]] + [1] * (x.dim() - 1)
            view[channel_dim] = -1
            return rows.view(view)

        z = x + param(act.shift_in) if cls is RPReLU else x
        y = torch.where(z > 0, z, z * param(act.slope))
        return y + param(act.shift_out) if cls is RPReLU else y

    upstream = torch.randn(shape, dtype=torch.float64)
    out, expected = act(x, g), formula()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    params = [x, *act.parameters()]
    for a, b in zip(torch.autograd.grad(out, params, upstream), torch.autograd.grad(expected, params, upstream)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
