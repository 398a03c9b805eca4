"""Diffusion UNets written the way two well-known research code bases write them, for the graph-rule tests.

Neither was written with this library in mind: they keep the habits that stop plain symbolic tracing (shape
asserts, ``len()`` of shapes, shape unpacking, loops over ranks, ``isinstance`` dispatch, sliced ``nn.Sequential``
and module lists built in loops).

* :class:`GuidedStyleSuperRes` follows the layout of guided-diffusion's super-resolution model (Dhariwal and Nichol,
  2021): the low-resolution image is upsampled and concatenated to the noisy input, ``TimestepEmbedSequential``
  blocks dispatch on ``isinstance``, residual blocks use a scale-shift norm, resampling is a stride-2 convolution
  and a nearest upsampling followed by a convolution, attention is a legacy QKV block on flattened spatial axes.
* :class:`SR3StyleUNet` follows the layout of SR3's UNet (Saharia et al., 2021): ``ResnetBlocWithAttn`` blocks
  (GroupNorm -> SiLU -> conv blocks, a time-embedding projection, a 1x1 residual convolution), stride-2
  convolution downsampling, ``nn.Upsample`` + convolution upsampling, and skips concatenated into the decoder's
  blocks.
* :class:`RestormerStyleUNet` follows the layout of Restormer (Zamir et al., 2022), the restoration UNet that
  BI-DiffSR's own network descends from, with a timestep embedding added to every block as diffusion restorers do:
  a channel LayerNorm written with shape unpacking, downsampling by a convolution halving the channels followed by
  ``nn.PixelUnshuffle`` (and once ``F.pixel_unshuffle``), upsampling by a convolution doubling them followed by
  ``nn.PixelShuffle``, and once ``F.interpolate(size=skip.shape[-2:])`` followed by a convolution; skips are
  concatenated and reduced by a 1x1 convolution.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GuidedStyleSuperRes", "RestormerStyleUNet", "SR3StyleUNet"]


# ----------------------------------------------------------------------------------------------------------------
# guided-diffusion style
# ----------------------------------------------------------------------------------------------------------------
def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    """Sinusoidal embeddings of ``timesteps`` (N,) -> (N, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half).to(
        device=timesteps.device
    )
    args = timesteps[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class GroupNorm32(nn.GroupNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def normalization(channels: int) -> nn.Module:
    return GroupNorm32(8, channels)


class TimestepBlock(nn.Module):
    @abstractmethod
    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``x`` given the timestep embedding ``emb``."""


class TimestepEmbedSequential(nn.Sequential, TimestepBlock):
    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            if isinstance(layer, TimestepBlock):
                x = layer(x, emb)
            else:
                x = layer(x)
        return x


class Upsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        self.channels = channels
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == self.channels
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        if self.use_conv:
            x = self.conv(x)
        return x


class Downsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        self.channels = channels
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == self.channels
        return self.op(x)


class ResBlock(TimestepBlock):
    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None,
                 use_scale_shift_norm: bool = True) -> None:
        super().__init__()
        self.out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(normalization(channels), nn.SiLU(),
                                       nn.Conv2d(channels, self.out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * self.out_channels if use_scale_shift_norm else self.out_channels)
        )
        self.out_layers = nn.Sequential(normalization(self.out_channels), nn.SiLU(), nn.Dropout(p=0.0),
                                        nn.Conv2d(self.out_channels, self.out_channels, 3, padding=1))
        if self.out_channels == channels:
            self.skip_connection: nn.Module = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(channels, self.out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)
        while len(emb_out.shape) < len(h.shape):
            emb_out = emb_out[..., None]
        if self.use_scale_shift_norm:
            out_norm, out_rest = self.out_layers[0], self.out_layers[1:]
            scale, shift = torch.chunk(emb_out, 2, dim=1)
            h = out_norm(h) * (1 + scale) + shift
            h = out_rest(h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class QKVAttentionLegacy(nn.Module):
    def __init__(self, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        bs, width, length = qkv.shape
        assert width % (3 * self.n_heads) == 0
        ch = width // (3 * self.n_heads)
        q, k, v = qkv.reshape(bs * self.n_heads, ch * 3, length).split(ch, dim=1)
        scale = 1 / math.sqrt(math.sqrt(ch))
        weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
        weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
        a = torch.einsum("bts,bcs->bct", weight, v)
        return a.reshape(bs, -1, length)


class AttentionBlock(nn.Module):
    def __init__(self, channels: int, num_heads: int = 1) -> None:
        super().__init__()
        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.attention = QKVAttentionLegacy(num_heads)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))
        h = self.proj_out(self.attention(qkv))
        return (x + h).reshape(b, c, *spatial)


class GuidedStyleUNet(nn.Module):
    """A guided-diffusion-style UNet: ``forward(x, timesteps)``; levels of ``num_res_blocks`` blocks."""

    def __init__(self, in_channels: int, model_channels: int, out_channels: int, num_res_blocks: int,
                 attention_resolutions: tuple[int, ...], channel_mult: tuple[int, ...]) -> None:
        super().__init__()
        self.model_channels = model_channels
        time_embed_dim = model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(model_channels, time_embed_dim), nn.SiLU(),
                                        nn.Linear(time_embed_dim, time_embed_dim))
        ch = input_ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        input_block_chans = [ch]
        ds = 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, time_embed_dim, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attention_resolutions:
                    layers.append(AttentionBlock(ch))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                input_block_chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch, use_conv=True)))
                input_block_chans.append(ch)
                ds *= 2
        self.middle_block = TimestepEmbedSequential(ResBlock(ch, time_embed_dim), AttentionBlock(ch),
                                                    ResBlock(ch, time_embed_dim))
        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                ich = input_block_chans.pop()
                layers = [ResBlock(ch + ich, time_embed_dim, int(model_channels * mult))]
                ch = int(model_channels * mult)
                if ds in attention_resolutions:
                    layers.append(AttentionBlock(ch))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch, use_conv=True))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(normalization(ch), nn.SiLU(), nn.Conv2d(input_ch, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        assert y is None, "this model is not class-conditional"
        hs = []
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        h = x.type(torch.float32)
        for module in self.input_blocks:
            h = module(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = torch.cat([h, hs.pop()], dim=1)
            h = module(h, emb)
        h = h.type(x.dtype)
        return self.out(h)


class GuidedStyleSuperRes(GuidedStyleUNet):
    """``forward(x, timesteps, low_res)``: ``low_res`` is bilinearly upsampled to ``x``'s size and concatenated."""

    def __init__(self, model_channels: int = 16, channel_mult: tuple[int, ...] = (1, 1, 2),
                 num_res_blocks: int = 1, attention_resolutions: tuple[int, ...] = (4,)) -> None:
        super().__init__(6, model_channels, 3, num_res_blocks, attention_resolutions, channel_mult)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, low_res: torch.Tensor | None = None,
                **kwargs: object) -> torch.Tensor:
        _, _, new_height, new_width = x.shape
        upsampled = F.interpolate(low_res, (new_height, new_width), mode="bilinear")
        x = torch.cat([x, upsampled], dim=1)
        return super().forward(x, timesteps, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# SR3 style
# ----------------------------------------------------------------------------------------------------------------
class PositionalEncoding(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, noise_level: torch.Tensor) -> torch.Tensor:
        count = self.dim // 2
        step = torch.arange(count, dtype=noise_level.dtype, device=noise_level.device) / count
        encoding = noise_level.unsqueeze(1) * torch.exp(-math.log(1e4) * step.unsqueeze(0))
        return torch.cat([torch.sin(encoding), torch.cos(encoding)], dim=-1)


class FeatureWiseAffine(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.noise_func = nn.Sequential(nn.Linear(in_channels, out_channels))

    def forward(self, x: torch.Tensor, noise_embed: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        return x + self.noise_func(noise_embed).view(batch, -1, 1, 1)


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class SR3Upsample(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.up(x))


class SR3Downsample(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Block(nn.Module):
    def __init__(self, dim: int, dim_out: int, groups: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.GroupNorm(groups, dim), Swish(), nn.Dropout(dropout) if dropout != 0 else nn.Identity(),
            nn.Conv2d(dim, dim_out, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, dim_out: int, noise_level_emb_dim: int, groups: int = 8) -> None:
        super().__init__()
        self.noise_func = FeatureWiseAffine(noise_level_emb_dim, dim_out)
        self.block1 = Block(dim, dim_out, groups=groups)
        self.block2 = Block(dim_out, dim_out, groups=groups)
        self.res_conv = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        h = self.block1(x)
        h = self.noise_func(h, time_emb)
        h = self.block2(h)
        return h + self.res_conv(x)


class SelfAttention(nn.Module):
    def __init__(self, in_channel: int, n_head: int = 1, norm_groups: int = 8) -> None:
        super().__init__()
        self.n_head = n_head
        self.norm = nn.GroupNorm(norm_groups, in_channel)
        self.qkv = nn.Conv2d(in_channel, in_channel * 3, 1, bias=False)
        self.out = nn.Conv2d(in_channel, in_channel, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channel, height, width = x.shape
        n_head = self.n_head
        head_dim = channel // n_head
        qkv = self.qkv(self.norm(x)).view(batch, n_head, head_dim * 3, height, width)
        query, key, value = qkv.chunk(3, dim=2)
        attn = torch.einsum("bnchw, bncyx -> bnhwyx", query, key).contiguous() / math.sqrt(channel)
        attn = attn.view(batch, n_head, height, width, -1).softmax(-1)
        attn = attn.view(batch, n_head, height, width, height, width)
        out = torch.einsum("bnhwyx, bncyx -> bnchw", attn, value).contiguous()
        return self.out(out.view(batch, channel, height, width)) + x


class ResnetBlocWithAttn(nn.Module):
    def __init__(self, dim: int, dim_out: int, *, noise_level_emb_dim: int, norm_groups: int = 8,
                 with_attn: bool = False) -> None:
        super().__init__()
        self.with_attn = with_attn
        self.res_block = ResnetBlock(dim, dim_out, noise_level_emb_dim, groups=norm_groups)
        if with_attn:
            self.attn = SelfAttention(dim_out, norm_groups=norm_groups)

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        x = self.res_block(x, time_emb)
        if self.with_attn:
            x = self.attn(x)
        return x


class SR3StyleUNet(nn.Module):
    """An SR3-style UNet: ``forward(x, time)`` where ``x`` is the noisy image concatenated to the condition."""

    def __init__(self, in_channel: int = 6, out_channel: int = 3, inner_channel: int = 16, norm_groups: int = 8,
                 channel_mults: tuple[int, ...] = (1, 2, 2), attn_res: tuple[int, ...] = (8,), res_blocks: int = 1,
                 image_size: int = 16) -> None:
        super().__init__()
        noise_level_channel = inner_channel
        self.noise_level_mlp = nn.Sequential(
            PositionalEncoding(inner_channel), nn.Linear(inner_channel, inner_channel * 4), Swish(),
            nn.Linear(inner_channel * 4, inner_channel),
        )
        num_mults = len(channel_mults)
        pre_channel = inner_channel
        feat_channels = [pre_channel]
        now_res = image_size
        downs: list[nn.Module] = [nn.Conv2d(in_channel, inner_channel, kernel_size=3, padding=1)]
        for ind in range(num_mults):
            is_last = ind == num_mults - 1
            use_attn = now_res in attn_res
            channel_mult = inner_channel * channel_mults[ind]
            for _ in range(res_blocks):
                downs.append(ResnetBlocWithAttn(pre_channel, channel_mult, noise_level_emb_dim=noise_level_channel,
                                                norm_groups=norm_groups, with_attn=use_attn))
                feat_channels.append(channel_mult)
                pre_channel = channel_mult
            if not is_last:
                downs.append(SR3Downsample(pre_channel))
                feat_channels.append(pre_channel)
                now_res = now_res // 2
        self.downs = nn.ModuleList(downs)
        self.mid = nn.ModuleList([
            ResnetBlocWithAttn(pre_channel, pre_channel, noise_level_emb_dim=noise_level_channel,
                               norm_groups=norm_groups, with_attn=True),
            ResnetBlocWithAttn(pre_channel, pre_channel, noise_level_emb_dim=noise_level_channel,
                               norm_groups=norm_groups, with_attn=False),
        ])
        ups: list[nn.Module] = []
        for ind in reversed(range(num_mults)):
            is_last = ind < 1
            use_attn = now_res in attn_res
            channel_mult = inner_channel * channel_mults[ind]
            for _ in range(0, res_blocks + 1):
                ups.append(ResnetBlocWithAttn(pre_channel + feat_channels.pop(), channel_mult,
                                              noise_level_emb_dim=noise_level_channel, norm_groups=norm_groups,
                                              with_attn=use_attn))
                pre_channel = channel_mult
            if not is_last:
                ups.append(SR3Upsample(pre_channel))
                now_res = now_res * 2
        self.ups = nn.ModuleList(ups)
        self.final_conv = Block(pre_channel, out_channel, groups=norm_groups)

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        t = self.noise_level_mlp(time) if self.noise_level_mlp is not None else None
        feats = []
        for layer in self.downs:
            if isinstance(layer, ResnetBlocWithAttn):
                x = layer(x, t)
            else:
                x = layer(x)
            feats.append(x)
        for layer in self.mid:
            if isinstance(layer, ResnetBlocWithAttn):
                x = layer(x, t)
            else:
                x = layer(x)
        for layer in self.ups:
            if isinstance(layer, ResnetBlocWithAttn):
                x = layer(torch.cat((x, feats.pop()), dim=1), t)
            else:
                x = layer(x)
        return self.final_conv(x)


# ----------------------------------------------------------------------------------------------------------------
# Restormer style
# ----------------------------------------------------------------------------------------------------------------
class WithBiasLayerNorm(nn.Module):
    """Layer norm over the channels of each pixel, through a (b, h*w, c) view."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = x.flatten(2).transpose(1, 2)
        mu = y.mean(-1, keepdim=True)
        sigma = y.var(-1, keepdim=True, unbiased=False)
        y = (y - mu) / torch.sqrt(sigma + 1e-5) * self.weight + self.bias
        return y.transpose(1, 2).reshape(b, c, h, w)


class GatedBlock(nn.Module):
    """Norm -> 1x1 expand -> depth-wise 3x3 -> gate -> 1x1 project, plus the timestep embedding; residual."""

    def __init__(self, dim: int, emb_dim: int, expansion: float = 2.0) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.norm = WithBiasLayerNorm(dim)
        self.emb = nn.Linear(emb_dim, dim)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.norm(x) + self.emb(emb)[:, :, None, None]
        x1, x2 = self.dwconv(self.project_in(h)).chunk(2, dim=1)
        return x + self.project_out(F.gelu(x1) * x2)


class RestormerDownsample(nn.Module):
    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat // 2, kernel_size=3, stride=1, padding=1, bias=False),
                                  nn.PixelUnshuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class RestormerUpsample(nn.Module):
    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat * 2, kernel_size=3, stride=1, padding=1, bias=False),
                                  nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class RestormerStyleUNet(nn.Module):
    """A three-level Restormer-style UNet: ``forward(x, t)`` with ``x`` the noisy image concatenated to the
    condition; the decoder's first level reduces a 32 + 32 skip concatenation, its second a 32 + 16 one."""

    def __init__(self, inp_channels: int = 6, out_channels: int = 3, dim: int = 16) -> None:
        super().__init__()
        self.dim = dim
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim * 4), nn.SiLU(), nn.Linear(dim * 4, dim * 4))
        self.patch_embed = nn.Conv2d(inp_channels, dim, kernel_size=3, stride=1, padding=1, bias=False)
        self.encoder_level1 = GatedBlock(dim, dim * 4)
        self.down1_2 = RestormerDownsample(dim)
        self.encoder_level2 = GatedBlock(dim * 2, dim * 4)
        self.down2_3 = nn.Conv2d(dim * 2, dim, kernel_size=3, stride=1, padding=1, bias=False)
        self.latent = GatedBlock(dim * 4, dim * 4)
        self.up3_2 = RestormerUpsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, kernel_size=1, bias=False)
        self.decoder_level2 = GatedBlock(dim * 2, dim * 4)
        self.up2_1 = nn.Conv2d(dim * 2, dim * 2, kernel_size=3, stride=1, padding=1, bias=False)
        self.reduce_chan_level1 = nn.Conv2d(dim * 3, dim, kernel_size=1, bias=False)
        self.decoder_level1 = GatedBlock(dim, dim * 4)
        self.output = nn.Conv2d(dim, out_channels, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, inp_img: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.dim))
        out_enc_level1 = self.encoder_level1(self.patch_embed(inp_img), emb)
        out_enc_level2 = self.encoder_level2(self.down1_2(out_enc_level1), emb)
        latent = self.latent(F.pixel_unshuffle(self.down2_3(out_enc_level2), 2), emb)
        inp_dec_level2 = torch.cat([self.up3_2(latent), out_enc_level2], 1)
        out_dec_level2 = self.decoder_level2(self.reduce_chan_level2(inp_dec_level2), emb)
        upsampled = F.interpolate(out_dec_level2, size=out_enc_level1.shape[-2:], mode="nearest")
        inp_dec_level1 = torch.cat([self.up2_1(upsampled), out_enc_level1], 1)
        out_dec_level1 = self.decoder_level1(self.reduce_chan_level1(inp_dec_level1), emb)
        return self.output(out_dec_level1) + inp_img[:, -3:]
