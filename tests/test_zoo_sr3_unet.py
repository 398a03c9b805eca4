"""Tests of the SR3-style diffusion UNet (``zoo:sr3-unet``) and of the test UNet ``unets.FunctionalStyleUNet``."""

from __future__ import annotations

import pytest
import torch
import torch.fx
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from unets import FunctionalStyleUNet
from zoo_unet_checks import (
    COMMON_BAD_ARGUMENTS,
    assert_seeded_example_inputs,
    assert_time_step_changes_output,
    assert_traces_equal,
    random_inputs,
)

from binarize.zoo import ZOO
from binarize.zoo._parts import DecoderLevel, EncoderLevel, SelfAttention
from binarize.zoo.sr3_unet import ResnetBlock, SR3UNet, Upsample


@pytest.mark.parametrize("name", ["sr3-unet", "sr3-unet-tiny"])
def test_entries_are_registered_with_their_inputs(name: str) -> None:
    assert ZOO.get("sr3-unet").default_size == 64 and ZOO.get("sr3-unet-tiny").default_size == 16
    assert_seeded_example_inputs(name)


def test_tiny_shapes_and_layout() -> None:
    model = ZOO.get("sr3-unet-tiny").build()
    x_t, t, cond = random_inputs(2, 8)
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
    assert_time_step_changes_output(ZOO.get("sr3-unet-tiny").build())


def test_tiny_traces_with_equal_outputs() -> None:
    model = ZOO.get("sr3-unet-tiny").build()
    assert_traces_equal(model, random_inputs(2, 16))
    graph = torch.fx.symbolic_trace(model)
    modules = dict(graph.named_modules())
    upsamples = [n for n in graph.graph.nodes if n.op == "call_module" and isinstance(modules[n.target], nn.Upsample)]
    assert len(upsamples) == 1
    (user,) = upsamples[0].users  # the upsampled map feeds the following convolution only
    assert user.op == "call_module" and isinstance(modules[user.target], nn.Conv2d)


def test_paper_config_traces_with_equal_outputs_at_16() -> None:
    model = ZOO.get("sr3-unet").build()
    assert sum(p.numel() for p in model.parameters()) == 60_657_795
    assert_traces_equal(model, ZOO.get("sr3-unet").inputs(16))


def test_paper_config_layout() -> None:
    model = SR3UNet()
    assert [len(level.blocks) for level in model.encoder] == [2, 2, 2, 2]
    assert [len(level.blocks) for level in model.decoder] == [3, 3, 3, 3]
    assert [len(level.attentions) for level in model.encoder] == [0, 0, 0, 2]
    assert [len(level.attentions) for level in model.decoder] == [0, 0, 0, 3]  # indexed by resolution level
    assert model.decoder[0].upsample is None and model.decoder[3].upsample is not None
    assert model.out_conv.in_channels == 64 and model.out_conv.out_channels == 3
    names = model.state_dict().keys()
    assert {"middle_attention.qkv.weight", "middle_attention.proj.weight", "encoder.3.attentions.1.proj.bias"} <= names
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
    inputs = random_inputs(batch, size)
    with torch.no_grad():
        out = model(*inputs)
    assert out.shape == (batch, 3, size, size) and torch.isfinite(out).all()
    assert [len(level.blocks) for level in model.decoder] == [res_blocks + 1] * levels
    assert sum(isinstance(m, SelfAttention) for m in model.modules()) == 1 + len(attention) * (2 * res_blocks + 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        *COMMON_BAD_ARGUMENTS,
        ({"res_blocks": 0}, "res_blocks must be a positive integer"),
        ({"res_blocks": True}, "res_blocks must be a positive integer"),
        ({"attention_resolutions": (16,)}, "attention_resolutions holds downsampling factors"),
        ({"attention_resolutions": (3,)}, "attention_resolutions holds downsampling factors"),
        ({"width": 16, "norm_groups": 32}, "norm_groups=32 must divide every channel count"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SR3UNet(**kwargs)


def test_levels_need_one_attention_and_fusion_per_block() -> None:
    blocks = [ResnetBlock(8, 8, 8, groups=4) for _ in range(2)]
    with pytest.raises(ValueError, match=r"one attention per block \(2\) or none, got 1"):
        EncoderLevel(blocks, None, attentions=[SelfAttention(8, groups=4)])
    with pytest.raises(ValueError, match=r"one fusion per block \(2\), got 3"):
        DecoderLevel(blocks, None, fusions=[nn.Identity() for _ in range(3)])
    assert EncoderLevel(blocks, None).attentions is None  # no attentions submodule at all
    assert len(DecoderLevel(blocks, None, attentions=[]).attentions) == 0


def test_functional_style_unet_shapes_and_trace() -> None:
    model = FunctionalStyleUNet()
    x_t, t, cond = random_inputs(2, 8)
    assert model(x_t, t, cond).shape == (2, 3, 8, 8)
    assert len(model.fuse_convs) == len(model.dec_res) == 4 and len(model.down_convs) == len(model.ups) == 1
    assert_traces_equal(model, (x_t, t, cond))
    graph = torch.fx.symbolic_trace(model).graph
    functions = {node.target for node in graph.nodes if node.op == "call_function"}
    assert torch.nn.functional.pixel_unshuffle in functions and torch.cat in functions


@settings(max_examples=10)
@given(width=st.sampled_from([8, 16]), levels=st.integers(1, 3), blocks=st.integers(1, 2), batch=st.integers(1, 2))
def test_functional_style_unet_random_configs(width: int, levels: int, blocks: int, batch: int) -> None:
    model = FunctionalStyleUNet(width=width, levels=levels, blocks=blocks, groups=4).eval()
    size = 2 ** (levels - 1) * 2
    with torch.no_grad():
        out = model(*random_inputs(batch, size))
    assert out.shape == (batch, 3, size, size) and torch.isfinite(out).all()
    assert len(model.fuse_convs) == levels * (blocks + 1)


def test_functional_style_unet_bad_arguments() -> None:
    with pytest.raises(ValueError, match="width must be even"):
        FunctionalStyleUNet(width=12, groups=8)
    with pytest.raises(ValueError, match="levels and blocks"):
        FunctionalStyleUNet(levels=0)
