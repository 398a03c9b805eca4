"""BI-DiffSR's building blocks against an independent, from-the-formulas implementation (reference sections 1-4).

The reference below is written from the method's description only: the BI-Conv unit (TaR shift, sign with the
ApproxSign gradient, sign weights with a detached per-channel mean-absolute scale and a clipped straight-through
gradient, TaA RPReLU, identity shortcut), CP-Down, CP-Up, CS-Fusion with both pairings, and the group index. Its
release form is the authors' release: sign(0) = 0, and the weight's gradient is that of clip(W, -1, 1) alone (the
binary weight minus the clipped one is added as a constant), without the scale. Values and the gradients of every
parameter, the latent weights included, are compared.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from binarize.errors import UnsupportedLayerError
from binarize.nn import BinaryConv2d
from binarize.nn.timestep import group_index
from binarize.plugins.bidiffsr import CPDown, CPUp, CSFusion, bi_conv, bi_conv_options, binarize_branches


# ---------------------------------------------------------------------------------------------------------------
# The independent reference
# ---------------------------------------------------------------------------------------------------------------
def ref_sign(x: Tensor, zero: float = 1.0) -> Tensor:
    """sign with sign(0) = ``zero``; gradient of ApproxSign (2 + 2x on [-1, 0), 2 - 2x on [0, 1), else 0)."""
    smooth = torch.where(x < -1, -torch.ones_like(x), torch.where(x < 0, 2 * x + x * x,
                         torch.where(x < 1, 2 * x - x * x, torch.ones_like(x))))
    hard = torch.where(x > 0, 1.0, torch.where(x < 0, -1.0, zero)).to(x.dtype)
    return smooth + (hard - smooth).detach()


def ref_weight(w: Tensor, release: bool = False) -> Tensor:
    """alpha * sign(W), alpha = mean |W| per output channel (no gradient), gradient masked to |W| <= 1.

    The release: sign(0) = 0 and the gradient of clip(W, -1, 1), i.e. dL/dW = dL/dW_b * 1{|W| <= 1}. Otherwise
    sign(0) = +1 and the chain rule through alpha * (the clipped straight-through sign): alpha * dL/dW_b * 1{|W| <= 1}.
    """
    alpha = w.detach().abs().mean(dim=(1, 2, 3), keepdim=True)
    clipped = w.clamp(-1, 1)
    hard = torch.where(w > 0, 1.0, torch.where(w < 0, -1.0, 0.0 if release else 1.0)).to(w.dtype)
    if release:
        return (alpha * hard - clipped).detach() + clipped
    return alpha * (clipped + (hard - clipped).detach())


def ref_bi_conv(x: Tensor, g: Tensor, p: dict[str, Tensor], release: bool = False) -> Tensor:
    """Section 1: TaR -> sign -> conv with alpha sign(W) -> TaA (shift, PReLU, shift) -> + x."""
    col = (slice(None), slice(None), None, None)
    xr = x + p["tar"][g][col]
    k = p["weight"].shape[-1]
    y = F.conv2d(ref_sign(xr, 0.0 if release else 1.0), ref_weight(p["weight"], release), padding=k // 2)
    y = y + p["shift_in"][g][col]
    y = torch.where(y > 0, y, p["slope"][g][col] * y)
    y = y + p["shift_out"][g][col]
    return y + x


def params_of(unit: nn.Module) -> dict[str, Tensor]:
    """The BI-Conv's parameters under reference names, randomised away from their initial values."""
    with torch.no_grad():
        for param in (unit.shift.bias, unit.activation.shift_in, unit.activation.shift_out):
            param.normal_(0, 0.3)
        unit.activation.slope.uniform_(0.05, 0.5)
    return {"weight": unit.weight, "tar": unit.shift.bias, "shift_in": unit.activation.shift_in,
            "slope": unit.activation.slope, "shift_out": unit.activation.shift_out}


# ---------------------------------------------------------------------------------------------------------------
# BI-Conv
# ---------------------------------------------------------------------------------------------------------------
@settings(max_examples=15)
@given(channels=st.sampled_from([2, 4, 8]), kernel=st.sampled_from([1, 3]), batch=st.integers(1, 3),
       release=st.booleans(), seed=st.integers(0, 2**16))
def test_bi_conv_matches_the_reference_forward_and_backward(
    channels: int, kernel: int, batch: int, release: bool, seed: int
) -> None:
    torch.manual_seed(seed)
    unit = bi_conv(channels, kernel, release=release).double()
    params = params_of(unit)
    x = torch.randn(batch, channels, 5, 5, dtype=torch.double)
    x[0, 0, 0, :2] = -params["tar"].detach()[0, 0]  # exact zeros after the shift exercise sign(0)
    t = torch.randint(0, 2000, (batch,))
    t[0] = 0
    g = group_index(t, 2000, 5)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = unit(x1, timestep_groups=g)
    ref = ref_bi_conv(x2, g, params, release)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    assert_same_gradients(ours, ref, {"x": (x1, x2), **{name: (p, p) for name, p in params.items()}})


def assert_same_gradients(ours: Tensor, ref: Tensor, inputs: dict[str, tuple[Tensor, Tensor]]) -> None:
    """The gradients of ``ours`` and ``ref`` for one random upstream gradient agree for every named input (a pair:
    the tensor ``ours`` was computed from, the one ``ref`` was; a parameter shared by both appears twice)."""
    grad = torch.randn_like(ours)
    ours_grads = torch.autograd.grad(ours, [a for a, _ in inputs.values()], grad, retain_graph=True)
    ref_grads = torch.autograd.grad(ref, [b for _, b in inputs.values()], grad, retain_graph=True)
    for name, a, b in zip(inputs, ours_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=name)


def test_bi_conv_shape_and_parameter_counts() -> None:
    unit = bi_conv(16, timestep_groups=5)
    assert unit.bias is None and unit.shortcut and unit.is_binary
    assert tuple(unit.shift.bias.shape) == (5, 16)  # TaR: C_in per group
    taa = [unit.activation.shift_in, unit.activation.slope, unit.activation.shift_out]
    assert sum(p.numel() for p in taa) == 5 * 3 * 16  # TaA: 3 C_out per group
    assert torch.all(unit.activation.slope == 0.25) and not unit.shift.bias.any()


def test_sign_of_zero_default_is_binary_and_release_is_ternary() -> None:
    x = torch.zeros(1, 4, 3, 3)
    g = torch.zeros(1, dtype=torch.long)
    strict = bi_conv(4, 1, timestep_groups=5)
    release = bi_conv(4, 1, timestep_groups=5, release=True)
    release.load_state_dict(strict.state_dict())
    # zero input: +1 everywhere (strict) vs 0 everywhere (release, the conv then contributes nothing)
    assert not torch.equal(strict(x, timestep_groups=g), release(x, timestep_groups=g))
    torch.testing.assert_close(release(x, timestep_groups=g), release.activation(torch.zeros(1, 4, 3, 3), g))


def test_bias_is_folded_into_taa_exactly() -> None:
    conv = nn.Conv2d(6, 6, 3, padding=1)
    options = {**bi_conv_options(5), "input_binarizer": None, "weight_binarizer": None, "scale": None}
    folded = BinaryConv2d.from_float(conv, **options)
    kept = BinaryConv2d.from_float(conv, **{**options, "fold_bias": False})
    assert folded.bias is None and kept.bias is not None
    x, g = torch.randn(3, 6, 4, 4), torch.tensor([0, 2, 4])
    torch.testing.assert_close(folded(x, timestep_groups=g), kept(x, timestep_groups=g))
    assert sum(p.numel() for p in kept.parameters()) - sum(p.numel() for p in folded.parameters()) == 6


def test_fold_bias_needs_an_rprelu() -> None:
    with pytest.raises(UnsupportedLayerError, match="fold_bias.*rprelu"):
        BinaryConv2d.from_float(nn.Conv2d(4, 4, 3, padding=1), fold_bias=True, activation="prelu")


# ---------------------------------------------------------------------------------------------------------------
# CP-Down, CP-Up, CS-Fusion
# ---------------------------------------------------------------------------------------------------------------
def _binary(block: nn.Module, release: bool) -> tuple[nn.Module, list[dict[str, Tensor]]]:
    block = binarize_branches(block, timestep_groups=5, release=release).double()
    with torch.no_grad():  # weights beyond [-1, 1] exercise the clipped gradient
        for branch in block.branches:
            branch.weight.mul_(4.0)
    return block, [params_of(branch) for branch in block.branches]


def _parameters(pa: dict[str, Tensor], pb: dict[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
    return {f"{branch}.{name}": (p, p) for branch, ps in (("a", pa), ("b", pb)) for name, p in ps.items()}


@pytest.mark.parametrize("release", [False, True])
def test_cp_down_is_section_2(release: bool) -> None:
    block, (pa, pb) = _binary(CPDown(8, 4), release)  # C = 8 -> 2C = 16 at half resolution
    x, g = torch.randn(2, 8, 6, 6, dtype=torch.double), torch.tensor([100, 1900]) // 400
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref = F.pixel_unshuffle(ref_bi_conv(x2[:, :4], g, pa, release) + ref_bi_conv(x2[:, 4:], g, pb, release), 2)
    out = _run(block, x1, g)
    assert out.shape == (2, 16, 3, 3)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    assert_same_gradients(out, ref, {"x": (x1, x2), **_parameters(pa, pb)})


@pytest.mark.parametrize("release", [False, True])
def test_cp_up_is_section_2(release: bool) -> None:
    block, (pa, pb) = _binary(CPUp(8, 16), release)  # C = 8 -> C/2 = 4 at double resolution
    x, g = torch.randn(2, 8, 3, 3, dtype=torch.double), torch.tensor([3, 1])
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref = F.pixel_shuffle(torch.cat([ref_bi_conv(x2, g, pa, release), ref_bi_conv(x2, g, pb, release)], 1), 2)
    out = _run(block, x1, g)
    assert out.shape == (2, 4, 6, 6)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    assert_same_gradients(out, ref, {"x": (x1, x2), **_parameters(pa, pb)})


@pytest.mark.parametrize("release", [False, True])
@pytest.mark.parametrize("parity", ["opposite", "same"])
def test_cs_fusion_is_section_3(parity: str, release: bool) -> None:
    block, (pa, pb) = _binary(CSFusion(8, parity), release)
    x, s, g = torch.randn(2, 8, 4, 4, dtype=torch.double), torch.randn(2, 8, 4, 4, dtype=torch.double), torch.tensor([0, 4])
    x1, x2, s1, s2 = (t.clone().requires_grad_() for t in (x, x, s, s))
    if parity == "opposite":  # the release, 0-indexed
        fu1, fu2 = torch.cat([x2[:, 1::2], s2[:, 0::2]], 1), torch.cat([x2[:, 0::2], s2[:, 1::2]], 1)
    else:  # the paper's Eq. 3
        fu1, fu2 = torch.cat([x2[:, 0::2], s2[:, 0::2]], 1), torch.cat([x2[:, 1::2], s2[:, 1::2]], 1)
    ref = ref_bi_conv(fu1, g, pa, release) + ref_bi_conv(fu2, g, pb, release)
    out = _run(block, x1, g, s1)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    assert_same_gradients(out, ref, {"x": (x1, x2), "skip": (s1, s2), **_parameters(pa, pb)})


def _run(block: nn.Module, x: Tensor, g: Tensor, *more: Tensor) -> Tensor:
    """Run a block whose branches take per-sample groups (through the hook-free layer argument)."""
    handles = [b.register_forward_pre_hook(lambda m, a, kw: (a, {**kw, "timestep_groups": g}), with_kwargs=True)
               for b in block.branches]
    try:
        return block(x, *more)
    finally:
        for h in handles:
            h.remove()


@settings(max_examples=25)
@given(c=st.sampled_from([2, 4, 6, 8, 12]), k=st.sampled_from([1, 3, 5]), size=st.sampled_from([2, 4, 6]),
       seed=st.integers(0, 2**16))
def test_full_precision_blocks_equal_the_layers_they_replace(c: int, k: int, size: int, seed: int) -> None:
    """Reference section 2-3 identities: with binarization and shortcuts off, the blocks are the FP patterns."""
    torch.manual_seed(seed)
    x, s = torch.randn(2, c, size, size, dtype=torch.double), torch.randn(2, c, size, size, dtype=torch.double)
    down = nn.Conv2d(c, c // 2, k, padding=k // 2).double()
    torch.testing.assert_close(CPDown.from_conv_unshuffle(down, 2)(x), F.pixel_unshuffle(down(x), 2))
    up = nn.Conv2d(c, 2 * c, k, padding=k // 2).double()
    torch.testing.assert_close(CPUp.from_conv_shuffle(up, 2)(x), F.pixel_shuffle(up(x), 2))
    fuse = nn.Conv2d(2 * c, c, k, padding=k // 2).double()
    for parity in ("opposite", "same"):
        torch.testing.assert_close(CSFusion.from_fusion_conv(fuse, parity)(x, s), fuse(torch.cat([x, s], 1)))
    strided = nn.Conv2d(c, c, k, stride=2, padding=(k - 1) // 2).double()
    torch.testing.assert_close(CPDown.from_strided_conv(strided)(x), strided(x))
    smooth = nn.Conv2d(c, c, k, padding=k // 2).double()
    torch.testing.assert_close(CPUp.from_nearest_conv(smooth)(x), smooth(F.interpolate(x, scale_factor=2)))


def ref_dealing(decoder: int, skip: int, groups: int, parity: str) -> list[list[int]]:
    """Channels of cat([x, skip]) per branch group, dealt by hand: the release's pairing for two equal inputs
    (odd decoder channels with even skip channels first), and round-robin dealing that fills every group equally
    otherwise (the decoder starts at group 1 for "opposite", 0 for "same")."""
    groups_of: list[list[int]] = [[] for _ in range(groups)]
    start = 1 % groups if parity == "opposite" else 0
    for j in range(decoder):
        groups_of[(start + j) % groups].append(j)
    if parity == "same":
        skip_start = start
    elif decoder % groups:  # the skip's deal continues the decoder's, so that the groups come out equal
        skip_start = (start + decoder) % groups
    else:  # the release's pairing: the skip starts one group before the decoder
        skip_start = (start - 1) % groups
    for j in range(skip):
        groups_of[(skip_start + j) % groups].append(decoder + j)
    return groups_of


@settings(max_examples=30, deadline=None)
@given(unit=st.sampled_from([1, 2, 4, 8]), ratio=st.sampled_from([(1, 1, 1), (2, 1, 1), (2, 1, 2), (1, 2, 1),
                                                                    (3, 1, 2), (1, 1, 2), (3, 3, 2)]),
       k=st.sampled_from([1, 3]), seed=st.integers(0, 2**16))
def test_cs_fusion_of_unequal_widths_equals_the_fusion_conv(
    unit: int, ratio: tuple[int, int, int], k: int, seed: int
) -> None:
    """A UNet skip fusion C_x + C_s -> C (e.g. 64 + 32 -> 64, 32 + 16 -> 16) as CS-Fusion: every branch is
    channel-preserving, each branch group holds the dealt channels, and the full-precision block is the conv."""
    torch.manual_seed(seed)
    decoder, skip, out = (unit * r for r in ratio)
    conv = nn.Conv2d(decoder + skip, out, k, padding=k // 2).double()
    x, s = torch.randn(2, decoder, 5, 5, dtype=torch.double), torch.randn(2, skip, 5, 5, dtype=torch.double)
    block = CSFusion.from_fusion_conv(conv, "opposite", (decoder, skip))
    torch.testing.assert_close(block(x, s), conv(torch.cat([x, s], 1)))
    torch.testing.assert_close(block(torch.cat([x, s], 1)), conv(torch.cat([x, s], 1)))
    assert all(b.in_channels == b.out_channels for b in block.branches)
    assert [list(g) for g in block.order.view(block.groups_in, -1).tolist()] == ref_dealing(
        decoder, skip, block.groups_in, "opposite"
    )


def test_cs_fusion_dealing_examples() -> None:
    assert CSFusion(4).order.tolist() == [1, 3, 4, 6, 0, 2, 5, 7]  # the release: x odd + s even, x even + s odd
    assert CSFusion(4, "same").order.tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    assert CSFusion(3).order.tolist() == [1, 3, 5, 0, 2, 4]  # odd C: 1 decoder + 2 skip channels, then 2 + 1
    wide = CSFusion(4, widths=(4, 2))  # 4 + 2 -> 4: a 3 x 2 grid of 2 -> 2 branches
    assert wide.order.tolist() == [2, 5, 0, 3, 1, 4] and wide.mode == "grid" and len(wide.branches) == 6
    assert "4 + 2 -> 4" in repr(wide)


def test_branched_conv_grid_equals_the_conv() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 4, 3, padding=1).double()  # 3 : 2, branches of width 2
    block = CPDown.from_conv_unshuffle(conv, 2)
    x = torch.randn(1, 6, 4, 4, dtype=torch.double)
    assert block.mode == "grid" and len(block.branches) == 6
    torch.testing.assert_close(block(x), F.pixel_unshuffle(conv(x), 2))


def test_branch_counts_follow_the_channel_ratio() -> None:
    assert len(CPDown.from_conv_unshuffle(nn.Conv2d(64, 32, 3, padding=1), 2).branches) == 2
    assert len(CPDown.from_strided_conv(nn.Conv2d(64, 64, 3, stride=2, padding=1)).branches) == 4
    assert len(CPDown.from_strided_conv(nn.Conv2d(64, 128, 3, stride=2, padding=1)).branches) == 2
    assert len(CPUp.from_nearest_conv(nn.Conv2d(64, 64, 3, padding=1)).branches) == 4
    assert len(CPUp.from_nearest_conv(nn.Conv2d(64, 32, 3, padding=1)).branches) == 2
    assert all(b.in_channels == b.out_channels for b in CPUp.from_nearest_conv(nn.Conv2d(64, 32, 3, padding=1)).branches)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: CPDown.from_conv_unshuffle(nn.Conv2d(96, 40, 3, padding=1), 2), "96 -> 40.*ratio 2.4 \\(12 : 5"),
        (lambda: CPDown.from_strided_conv(nn.Conv2d(3, 16, 3, stride=2, padding=1)), "12 -> 16"),
        (lambda: CPDown.from_conv_unshuffle(nn.Conv2d(8, 4, 3), 2), "padding.*does not keep the size"),
        (lambda: CPUp.from_conv_shuffle(nn.Conv2d(8, 16, 3, padding=1, groups=2), 2), "groups=2"),
        (lambda: CPUp.from_nearest_conv(nn.Conv2d(8, 8, 2, padding=0)), "odd kernel"),
        (lambda: CPDown.from_strided_conv(nn.Conv2d(8, 8, 3, stride=2, padding=1, padding_mode="reflect")),
         "padding_mode"),
        (lambda: CSFusion.from_fusion_conv(nn.Conv2d(16, 4, 1)), "in_channels 16 != 2 \\* out_channels 4"),
        (lambda: CSFusion(7, "same"), "even channel count"),
        (lambda: CSFusion(3, widths=(2, 2)), "4 -> 3.*4 : 3 in lowest terms"),
        (lambda: CSFusion.from_fusion_conv(nn.Conv2d(6, 4, 1), widths=(4, 4)), "4 \\+ 4 channels"),
    ],
)
def test_blocks_refuse_what_cannot_be_dimension_consistent(build: object, message: str) -> None:
    with pytest.raises(UnsupportedLayerError, match=message):
        build()  # type: ignore[operator]


def test_group_index_is_section_4() -> None:
    t = torch.arange(2000)
    g = group_index(t, 2000, 5)
    assert all(torch.all(g[400 * k : 400 * (k + 1)] == k) for k in range(5))
