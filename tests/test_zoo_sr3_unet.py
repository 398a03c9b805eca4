"""Tests of the SR3-style diffusion UNet (``zoo:sr3-unet``) and of the test UNet ``unets.FunctionalStyleUNet``."""

from __future__ import annotations

import pytest
import torch
import torch.fx
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from unets import FunctionalStyleUNet

from binarize.zoo import ZOO
from binarize.zoo.sr3_unet import ResnetBlock, SelfAttention, SR3UNet, Upsample, sr3_inputs


def _inputs(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x_t = torch.randn(batch, 3, size, size, generator=generator)
    cond = torch.randn(batch, 3, size, size, generator=generator)
    return x_t, torch.randint(0, 2000, (batch,), generator=generator), cond


def _assert_traces_equal(model: nn.Module, inputs: tuple) -> None:
    model.eval()
    graph = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        expected = model(*inputs)
        actual = graph(*inputs)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_entries_are_registered_with_their_inputs() -> None:
    entry = ZOO.get("sr3-unet")
    assert entry.default_size == 64 and ZOO.get("sr3-unet-tiny").default_size == 16
    x_t, t, cond = entry.inputs(8)
    assert x_t.shape == cond.shape == (1, 3, 8, 8)
    assert t.dtype == torch.long and t.tolist() == [1234]
    again = sr3_inputs(8)
    assert torch.equal(again[0], x_t) and torch.equal(again[2], cond) and not torch.equal(x_t, cond)


def test_tiny_shapes_and_layout() -> None:
    model = ZOO.get("sr3-unet-tiny").build()
    x_t, t, cond = _inputs(2, 8)
    out = model(x_t, t, cond)
    assert out.shape == (2, 3, 8, 8)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.stem.in_channels == 6 and model.stem.out_channels == 16
    downs = [level.downsample for level in model.encoder if level.downsample is not None]
    assert len(downs) == 1 and downs[0].stride == (2, 2) and downs[0].in_channels == downs[0].out_channels == 16
    ups = [m for m in model.modules() if isinstance(m, Upsample)]
    assert len(ups) == 1 and isinstance(ups[0].up, nn.Upsample) and ups[0].up.mode == "nearest"
    # attention after the encoder block and both decoder blocks at 1/2 resolution, plus the middle
    assert sum(isinstance(m, SelfAttention) for m in model.modules()) == 4
    assert [len(level.blocks) for level in model.decoder] == [2, 2]


def test_resnet_block_shortcut() -> None:
    assert isinstance(ResnetBlock(16, 16, 8, groups=8).res_conv, nn.Identity)
    block = ResnetBlock(16, 32, 8, groups=8)
    assert isinstance(block.res_conv, nn.Conv2d) and block.res_conv.kernel_size == (1, 1)
    assert block(torch.randn(2, 16, 4, 4), torch.randn(2, 8)).shape == (2, 32, 4, 4)


def test_time_step_changes_the_output() -> None:
    model = ZOO.get("sr3-unet-tiny").build().eval()
    x_t, _, cond = _inputs(1, 8)
    with torch.no_grad():
        first = model(x_t, torch.tensor([3]), cond)
        second = model(x_t, torch.tensor([900]), cond)
    assert not torch.allclose(first, second)


def test_tiny_traces_with_equal_outputs() -> None:
    model = ZOO.get("sr3-unet-tiny").build()
    _assert_traces_equal(model, _inputs(2, 16))
    graph = torch.fx.symbolic_trace(model)
    modules = dict(graph.named_modules())
    upsamples = [n for n in graph.graph.nodes if n.op == "call_module" and isinstance(modules[n.target], nn.Upsample)]
    assert len(upsamples) == 1
    (user,) = upsamples[0].users  # the upsampled map feeds the following convolution only
    assert user.op == "call_module" and isinstance(modules[user.target], nn.Conv2d)


def test_paper_config_traces_with_equal_outputs_at_16() -> None:
    model = ZOO.get("sr3-unet").build()
    assert sum(p.numel() for p in model.parameters()) == 60_657_795
    _assert_traces_equal(model, ZOO.get("sr3-unet").inputs(16))


def test_paper_config_layout() -> None:
    model = SR3UNet()
    assert [len(level.blocks) for level in model.encoder] == [2, 2, 2, 2]
    assert [len(level.blocks) for level in model.decoder] == [3, 3, 3, 3]
    assert [len(level.attentions) for level in model.encoder] == [0, 0, 0, 2]
    assert [len(level.attentions) for level in model.decoder] == [0, 0, 0, 3]  # indexed by resolution level
    assert model.decoder[0].upsample is None and model.decoder[3].upsample is not None
    assert model.out_conv.in_channels == 64 and model.out_conv.out_channels == 3
    blocks = [m for m in model.modules() if isinstance(m, ResnetBlock)]
    assert len(blocks) == 8 + 2 + 12 and all(block.dropout.p == 0.2 for block in blocks)


@settings(max_examples=15)
@given(
    levels=st.integers(1, 3),
    res_blocks=st.integers(1, 2),
    mults=st.lists(st.integers(1, 3), min_size=3, max_size=3),
    attention_levels=st.sets(st.integers(0, 2)),
    batch=st.integers(1, 2),
)
def test_random_configs_line_up(
    levels: int, res_blocks: int, mults: list[int], attention_levels: set[int], batch: int
) -> None:
    channel_mults = tuple(mults[:levels])
    attention = tuple(sorted(2**i for i in attention_levels if i < levels))
    model = SR3UNet(
        width=8,
        channel_mults=channel_mults,
        res_blocks=res_blocks,
        attention_resolutions=attention,
        dropout=0.1,
        norm_groups=4,
    ).eval()
    size = 2 ** (levels - 1) * 2
    inputs = _inputs(batch, size)
    with torch.no_grad():
        out = model(*inputs)
    assert out.shape == (batch, 3, size, size) and torch.isfinite(out).all()
    assert [len(level.blocks) for level in model.decoder] == [res_blocks + 1] * levels
    assert sum(isinstance(m, SelfAttention) for m in model.modules()) == 1 + len(attention) * (2 * res_blocks + 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width": 0}, "width must be a positive integer"),
        ({"width": 2.0}, "width must be a positive integer"),
        ({"width": 9, "norm_groups": 3}, "width must be even"),
        ({"channel_mults": ()}, "channel_mults must be a non-empty"),
        ({"channel_mults": (1, 0)}, "channel_mults must be a non-empty"),
        ({"res_blocks": 0}, "res_blocks must be a positive integer"),
        ({"res_blocks": True}, "res_blocks must be a positive integer"),
        ({"attention_resolutions": (16,)}, "attention_resolutions holds downsampling factors"),
        ({"attention_resolutions": (3,)}, "attention_resolutions holds downsampling factors"),
        ({"dropout": 1.0}, "dropout must be a probability"),
        ({"dropout": -0.1}, "dropout must be a probability"),
        ({"norm_groups": 0}, "norm_groups must be a positive integer"),
        ({"width": 16, "norm_groups": 32}, "norm_groups=32 must divide every channel count"),
        ({"in_channels": 0}, "in_channels must be a positive integer"),
        ({"out_channels": -3}, "out_channels must be a positive integer"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SR3UNet(**kwargs)


def test_functional_style_unet_shapes_and_trace() -> None:
    model = FunctionalStyleUNet()
    x_t, t, cond = _inputs(2, 8)
    assert model(x_t, t, cond).shape == (2, 3, 8, 8)
    assert len(model.fuse_convs) == len(model.dec_res) == 4 and len(model.down_convs) == len(model.ups) == 1
    _assert_traces_equal(model, (x_t, t, cond))
    graph = torch.fx.symbolic_trace(model).graph
    functions = {node.target for node in graph.nodes if node.op == "call_function"}
    assert torch.nn.functional.pixel_unshuffle in functions and torch.cat in functions


@settings(max_examples=10)
@given(width=st.sampled_from([8, 16]), levels=st.integers(1, 3), blocks=st.integers(1, 2), batch=st.integers(1, 2))
def test_functional_style_unet_random_configs(width: int, levels: int, blocks: int, batch: int) -> None:
    model = FunctionalStyleUNet(width=width, levels=levels, blocks=blocks, groups=4).eval()
    size = 2 ** (levels - 1) * 2
    with torch.no_grad():
        out = model(*_inputs(batch, size))
    assert out.shape == (batch, 3, size, size) and torch.isfinite(out).all()
    assert len(model.fuse_convs) == levels * (blocks + 1)


def test_functional_style_unet_bad_arguments() -> None:
    with pytest.raises(ValueError, match="width must be even"):
        FunctionalStyleUNet(width=12, groups=8)
    with pytest.raises(ValueError, match="levels and blocks"):
        FunctionalStyleUNet(levels=0)
