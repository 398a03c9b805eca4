"""Tests of the full-precision BI-DiffSR UNet (``zoo:bidiffsr-unet`` and its small and tiny configurations)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.fx
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from zoo_unet_checks import (
    COMMON_BAD_ARGUMENTS,
    assert_seeded_example_inputs,
    assert_time_step_changes_output,
    assert_traces_equal,
    random_inputs,
)

from binarize.zoo import ZOO
from binarize.zoo._parts import SelfAttention, SinusoidalEmbedding
from binarize.zoo.bidiffsr_unet import (
    CONFIGS,
    BiDiffSRUNet,
    Downsample,
    Fusion,
    ResBlock,
    Upsample,
    bidiffsr_unet,
    bidiffsr_unet_small,
    bidiffsr_unet_tiny,
)


@pytest.fixture(scope="module")
def paper_model() -> BiDiffSRUNet:
    return bidiffsr_unet().eval()


# --- parameter and layer counts of the paper configuration, from the layer formulas --------------------------------


def _conv(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def _linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def _group_norm(c: int) -> int:
    return 2 * c


def _expected_parameters(width: int, mults: tuple[int, ...], enc: int, dec: int, in_ch: int, out_ch: int) -> int:
    channels = [width * m for m in mults]
    time_dim = width

    def res_block(c: int) -> int:
        return 2 * _group_norm(c) + 2 * _conv(c, c, 3) + _linear(time_dim, c)

    total = _linear(width, 4 * width) + _linear(4 * width, width)  # time MLP
    total += _conv(in_ch, channels[0], 3)  # stem
    for i, c in enumerate(channels):
        total += enc * res_block(c)
        if i < len(channels) - 1:
            total += _conv(c, c // 2, 3)  # CP-Down convolution (then PixelUnshuffle)
    bottom = channels[-1]
    total += 2 * res_block(bottom) + _group_norm(bottom) + _conv(bottom, 3 * bottom, 1, bias=False)
    total += _conv(bottom, bottom, 1)  # attention projection
    for i, c in enumerate(channels):
        total += dec * (_conv(2 * c, c, 1) + res_block(c))
        if i > 0:
            total += _conv(c, 2 * c, 3)  # CP-Up convolution (then PixelShuffle)
    total += _group_norm(channels[0]) + _conv(channels[0], out_ch, 3)
    return total


def test_paper_config_parameter_count(paper_model: BiDiffSRUNet) -> None:
    expected = _expected_parameters(64, (1, 2, 4, 8), 2, 3, 6, 3)
    assert sum(p.numel() for p in paper_model.parameters()) == expected == 50_947_747
    small = bidiffsr_unet_small()
    assert sum(p.numel() for p in small.parameters()) == _expected_parameters(16, (1, 2, 4, 8), 2, 3, 6, 3)
    tiny = bidiffsr_unet_tiny()
    assert sum(p.numel() for p in tiny.parameters()) == _expected_parameters(16, (1, 2), 1, 2, 6, 3)


def test_paper_config_layer_counts(paper_model: BiDiffSRUNet) -> None:
    levels, enc, dec = 4, 2, 3
    res_blocks = levels * (enc + dec) + 2
    # stem + two per residual block + CP-Down + CP-Up + fusions + attention qkv/proj + output
    expected_convs = 1 + 2 * res_blocks + (levels - 1) + (levels - 1) + levels * dec + 2 + 1
    convs = [m for m in paper_model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == expected_convs == 66
    assert sum(isinstance(m, ResBlock) for m in paper_model.modules()) == res_blocks == 22
    assert sum(isinstance(m, nn.Linear) for m in paper_model.modules()) == 2 + res_blocks
    assert sum(isinstance(m, nn.GroupNorm) for m in paper_model.modules()) == 2 * res_blocks + 2
    assert sum(isinstance(m, nn.PixelUnshuffle) for m in paper_model.modules()) == levels - 1
    assert sum(isinstance(m, nn.PixelShuffle) for m in paper_model.modules()) == levels - 1
    assert sum(isinstance(m, SelfAttention) for m in paper_model.modules()) == 1
    blocks = [m for m in paper_model.modules() if isinstance(m, ResBlock)]
    assert all(block.dropout.p == 0.2 for block in blocks)
    assert sum(isinstance(m, nn.Dropout) for m in paper_model.modules()) == res_blocks


def test_paper_config_naming_contract(paper_model: BiDiffSRUNet) -> None:
    model = paper_model

    def is_conv(module: nn.Module, c_in: int, c_out: int, k: int, bias: bool = True) -> bool:
        return (
            type(module) is nn.Conv2d
            and (module.in_channels, module.out_channels, module.kernel_size) == (c_in, c_out, (k, k))
            and module.stride == (1, 1)
            and (module.bias is not None) == bias
        )

    assert is_conv(model.stem, 6, 64, 3)
    assert isinstance(model.time_embedding, SinusoidalEmbedding) and model.time_embedding.dim == 64
    assert [type(m) for m in model.time_mlp] == [nn.Linear, nn.SiLU, nn.Linear]
    assert (model.time_mlp[0].in_features, model.time_mlp[0].out_features) == (64, 256)
    assert (model.time_mlp[2].in_features, model.time_mlp[2].out_features) == (256, 64)

    assert len(model.encoder) == len(model.decoder) == 4
    for i, c in enumerate((64, 128, 256, 512)):
        encoder, decoder = model.encoder[i], model.decoder[i]
        assert len(encoder.blocks) == 2 and len(decoder.blocks) == len(decoder.fusions) == 3
        for block in [*encoder.blocks, *decoder.blocks]:
            assert is_conv(block.conv1, c, c, 3) and is_conv(block.conv2, c, c, 3)
            assert block.norm1.num_channels == block.norm2.num_channels == c and block.norm1.num_groups == 16
            assert isinstance(block.act, nn.SiLU) and isinstance(block.dropout, nn.Dropout)
            assert isinstance(block.time_proj[0], nn.SiLU)
            assert (block.time_proj[1].in_features, block.time_proj[1].out_features) == (64, c)
        for fusion in decoder.fusions:
            assert is_conv(fusion.conv, 2 * c, c, 1)
        if i < 3:
            assert is_conv(encoder.downsample.conv, c, c // 2, 3)
            assert encoder.downsample.shuffle.downscale_factor == 2
        else:
            assert encoder.downsample is None
        if i > 0:
            assert is_conv(decoder.upsample.conv, c, 2 * c, 3) and decoder.upsample.shuffle.upscale_factor == 2
        else:
            assert decoder.upsample is None

    assert is_conv(model.encoder[0].downsample.conv, 64, 32, 3)
    assert is_conv(model.decoder[1].upsample.conv, 128, 256, 3)
    assert is_conv(model.decoder[0].fusions[0].conv, 128, 64, 1)
    assert model.decoder[0].upsample is None and model.encoder[3].downsample is None

    middle = model.middle
    assert isinstance(middle.block1, ResBlock) and isinstance(middle.block2, ResBlock)
    assert isinstance(middle.attention, SelfAttention)
    assert is_conv(middle.attention.qkv, 512, 1536, 1, bias=False) and is_conv(middle.attention.proj, 512, 512, 1)
    assert model.out_norm.num_channels == 64 and isinstance(model.out_act, nn.SiLU)
    assert is_conv(model.out_conv, 64, 3, 3)
    names = dict(model.named_modules())
    assert "decoder.3.upsample.conv" in names and "encoder.2.downsample.conv" in names
    assert "middle.attention.qkv" in names and "decoder.0.fusions.2.conv" in names


def test_paper_config_traces_with_equal_outputs_at_16(paper_model: BiDiffSRUNet) -> None:
    inputs = ZOO.get("bidiffsr-unet").inputs(16)
    with torch.no_grad():
        out = paper_model(*inputs)
    assert out.shape == (1, 3, 16, 16) and torch.isfinite(out).all()
    assert_traces_equal(paper_model, inputs)


# --- the registered entries -------------------------------------------------------------------------------------


def test_entries_are_registered_with_their_configs() -> None:
    assert set(CONFIGS) == {"bidiffsr-unet", "bidiffsr-unet-small", "bidiffsr-unet-tiny"}
    assert ZOO.get("bidiffsr-unet").default_size == 64
    assert ZOO.get("bidiffsr-unet-tiny").default_size == 16
    assert ZOO.get("bidiffsr-unet").factory is bidiffsr_unet
    assert ZOO.get("bidiffsr-unet-small").factory is bidiffsr_unet_small
    assert ZOO.get("bidiffsr-unet-tiny").factory is bidiffsr_unet_tiny
    tiny = ZOO.get("bidiffsr-unet-tiny").build()
    assert tiny.width == 16 and tiny.channel_mults == (1, 2) and tiny.encoder_blocks == 1
    assert tiny.decoder_blocks == 2 and tiny.middle.block1.norm1.num_groups == 8 and tiny.size_multiple == 2
    assert all(m.p == 0.0 for m in tiny.modules() if isinstance(m, nn.Dropout))
    assert bidiffsr_unet_tiny(width=32).width == 32  # keyword arguments override the configuration
    assert CONFIGS["bidiffsr-unet-tiny"]["width"] == 16


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_example_inputs_are_seeded(name: str) -> None:
    assert_seeded_example_inputs(name)


# --- behaviour of the tiny configuration --------------------------------------------------------------------------


def test_tiny_output_shape_and_gradients() -> None:
    model = bidiffsr_unet_tiny()
    x_t, t, cond = random_inputs(2, 8)
    out = model(x_t, t, cond)
    assert out.shape == (2, 3, 8, 8)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    with torch.no_grad():
        wide = model(*random_inputs(1, 12))
    assert wide.shape == (1, 3, 12, 12)
    rectangular = model(torch.randn(1, 3, 4, 10), torch.tensor([5]), torch.randn(1, 3, 4, 10))
    assert rectangular.shape == (1, 3, 4, 10)


def test_eval_mode_is_deterministic_and_dropout_acts_in_training() -> None:
    model = bidiffsr_unet_tiny(dropout=0.5)
    inputs = random_inputs(2, 8)
    model.eval()
    with torch.no_grad():
        first, second = model(*inputs), model(*inputs)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    model.train()
    with torch.no_grad():
        torch.manual_seed(0)
        trained = model(*inputs)
    assert not torch.allclose(trained, first)


def test_condition_comes_first_in_the_input() -> None:
    model = bidiffsr_unet_tiny().eval()
    with torch.no_grad():
        model.stem.weight.zero_()
        model.stem.weight[:, :3] = 1.0  # only the first three input channels reach the network
    x_t, t, cond = random_inputs(1, 8)
    with torch.no_grad():
        reference = model(x_t, t, cond)
        assert torch.equal(model(torch.zeros_like(x_t), t, cond), reference)
        assert not torch.equal(model(x_t, t, torch.zeros_like(cond)), reference)


def test_time_step_changes_the_output() -> None:
    assert_time_step_changes_output(bidiffsr_unet_tiny())


def test_tiny_traces_with_equal_outputs() -> None:
    model = bidiffsr_unet_tiny()
    assert_traces_equal(model, random_inputs(2, 16))
    graph = torch.fx.symbolic_trace(model)
    modules = dict(graph.named_modules())
    called = [modules[n.target] for n in graph.graph.nodes if n.op == "call_module"]
    assert sum(isinstance(m, nn.PixelUnshuffle) for m in called) == 1
    assert sum(isinstance(m, nn.PixelShuffle) for m in called) == 1
    functions = [n.target for n in graph.graph.nodes if n.op == "call_function"]
    assert functions.count(torch.bmm) == 2  # the attention's two matrix products
    # a traced graph accepts any size; the size check belongs to the eager model only
    assert graph(*random_inputs(1, 8)).shape == (1, 3, 8, 8)


def test_no_attention_gives_identity_middle() -> None:
    model = bidiffsr_unet_tiny(attention=False).eval()
    assert isinstance(model.middle.attention, nn.Identity)
    assert not any(isinstance(m, SelfAttention) for m in model.modules())
    assert_traces_equal(model, random_inputs(1, 8))


# --- the blocks ----------------------------------------------------------------------------------------------------


def test_sinusoidal_embedding_values() -> None:
    embedding = SinusoidalEmbedding(8)
    assert list(embedding.parameters()) == [] and "frequencies" not in embedding.state_dict()
    t = torch.tensor([0, 1, 1234])
    out = embedding(t)
    assert out.shape == (3, 8) and out.dtype == torch.float32
    for row, step in enumerate(t.tolist()):
        for k in range(4):
            frequency = math.exp(-math.log(10000.0) * k / 4)
            assert out[row, k].item() == pytest.approx(math.sin(step * frequency), abs=1e-3)
            assert out[row, 4 + k].item() == pytest.approx(math.cos(step * frequency), abs=1e-3)
    with pytest.raises(ValueError, match="even integer"):
        SinusoidalEmbedding(7)


def test_res_block_is_residual_and_time_conditioned() -> None:
    block = ResBlock(16, 8, dropout=0.0, groups=8)
    x, temb = torch.randn(2, 16, 4, 4), torch.randn(2, 8)
    assert block(x, temb).shape == x.shape
    with torch.no_grad():
        block.conv2.weight.zero_()
        block.conv2.bias.zero_()
    torch.testing.assert_close(block(x, temb), x, rtol=0, atol=0)


def test_down_and_up_sampling_shapes() -> None:
    x = torch.randn(2, 16, 8, 6)
    down = Downsample(16)
    assert down(x).shape == (2, 32, 4, 3)
    up = Upsample(32)
    assert up(down(x)).shape == (2, 16, 8, 6)


def test_fusion_takes_the_decoder_tensor_first() -> None:
    fusion = Fusion(2)
    with torch.no_grad():
        fusion.conv.weight.zero_()
        fusion.conv.bias.zero_()
        fusion.conv.weight[0, 0] = 1.0  # output channel 0 <- input channel 0 (the decoder tensor's first channel)
        fusion.conv.weight[1, 2] = 1.0  # output channel 1 <- input channel 2 (the skip's first channel)
    x, skip = torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3)
    out = fusion(x, skip)
    torch.testing.assert_close(out[:, 0], x[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(out[:, 1], skip[:, 0], rtol=0, atol=0)


def test_attention_matches_scaled_dot_product_attention() -> None:
    attention = SelfAttention(16, groups=8).eval()
    x = torch.randn(2, 16, 3, 5)
    with torch.no_grad():
        q, k, v = attention.qkv(attention.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=-1)  # (B, HW, C)
        attended = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # (B, HW, C)
        expected = x + attention.proj(attended.transpose(1, 2).reshape(x.shape))
        actual = attention(x)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    graph = torch.fx.symbolic_trace(attention)
    torch.testing.assert_close(graph(x), actual, rtol=0, atol=0)


# --- skip bookkeeping over random configurations --------------------------------------------------------------------


@settings(max_examples=12)
@given(
    width=st.sampled_from([16, 32]),
    base=st.sampled_from([1, 2]),
    levels=st.integers(1, 4),
    encoder_blocks=st.integers(1, 3),
    attention=st.booleans(),
    batch=st.integers(1, 2),
    scale=st.integers(1, 2),
)
def test_random_configs_pop_the_skips_they_pushed(
    width: int, base: int, levels: int, encoder_blocks: int, attention: bool, batch: int, scale: int
) -> None:
    model = BiDiffSRUNet(
        width=width,
        channel_mults=tuple(base * 2**i for i in range(levels)),
        encoder_blocks=encoder_blocks,
        decoder_blocks=encoder_blocks + 1,
        attention=attention,
        dropout=0.1,
        norm_groups=8,
    ).eval()
    pushed: list[torch.Tensor] = []
    fused: list[tuple[torch.Tensor, torch.Tensor]] = []

    def record_output(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        pushed.append(output)

    def record_fusion(module: nn.Module, args: tuple) -> None:
        fused.append(args)

    handles = [model.stem.register_forward_hook(record_output)]
    for level in model.encoder:
        handles += [block.register_forward_hook(record_output) for block in level.blocks]
        if level.downsample is not None:
            handles.append(level.downsample.register_forward_hook(record_output))
    handles += [m.register_forward_pre_hook(record_fusion) for m in model.modules() if isinstance(m, Fusion)]

    size = model.size_multiple * scale
    with torch.no_grad():
        out = model(*random_inputs(batch, size))
    for handle in handles:
        handle.remove()

    assert out.shape == (batch, 3, size, size) and torch.isfinite(out).all()
    assert len(pushed) == 1 + levels * encoder_blocks + (levels - 1) == levels * (encoder_blocks + 1)
    assert len(fused) == len(pushed)
    for (x, skip), expected in zip(fused, reversed(pushed)):
        assert skip is expected  # last in, first out
        assert x.shape == skip.shape
    assert [len(level.fusions) for level in model.decoder] == [encoder_blocks + 1] * levels


# --- errors ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        *COMMON_BAD_ARGUMENTS,
        ({"channel_mults": (1, 2, 2, 4)}, r"twice the one before .* got \(1, 2, 2, 4\); e.g. \(1, 2, 4, 8\)"),
        ({"channel_mults": (1, 3)}, "twice the one before"),
        ({"encoder_blocks": 0, "decoder_blocks": 1}, "encoder_blocks must be a positive integer"),
        ({"decoder_blocks": 2}, r"decoder_blocks must be encoder_blocks \+ 1 = 3 .* got decoder_blocks=2"),
        ({"encoder_blocks": 3}, r"decoder_blocks must be encoder_blocks \+ 1 = 4"),
        ({"decoder_blocks": True}, "decoder_blocks must be a positive integer"),
        ({"attention": 1}, "attention must be True or False"),
        ({"width": 24, "norm_groups": 16}, "norm_groups=16 must divide every channel count .* not 24"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BiDiffSRUNet(**kwargs)


def test_bad_input_sizes_raise() -> None:
    model = bidiffsr_unet_tiny(channel_mults=(1, 2, 4)).eval()  # three levels: multiples of 4
    x_t, t, cond = random_inputs(1, 12)
    with torch.no_grad():
        assert model(x_t, t, cond).shape == (1, 3, 12, 12)
        with pytest.raises(ValueError, match=r"multiples of 2 \*\* 2 = 4, got 10x10"):
            model(*random_inputs(1, 10))
        with pytest.raises(ValueError, match=r"multiples of 2 \*\* 2 = 4, got 12x6"):
            model(x_t[..., :6], t, cond[..., :6])
        with pytest.raises(ValueError, match="x_t and cond must have the same height and width"):
            model(x_t, t, cond[..., :8, :8])
    torch.fx.symbolic_trace(model)  # the size check is skipped while tracing
