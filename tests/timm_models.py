"""The timm architectures that every shipped recipe is tested against (see ``test_timm_matrix.py``).

Each entry is the smallest variant of one architecture family, built with random weights (``pretrained=False``)
and run on a small input, so that create + forward + backward takes well under half a second on one CPU thread.
Every model gets ``num_classes=10`` (a smaller head) unless its entry says otherwise.

Every BatchNorm layer must normalise over at least three values per channel: train mode rejects one, and with two
the normalised values are +-1 whatever the input, so no gradient flows back through the layer. Models that end on a
1x1 feature map therefore get a batch of four (32x32 images, and Inception-v3 at 75x75); at 64x64 the last map is
at least 2x2 and a batch of two suffices.

The list is meant to be diverse rather than long: plain and grouped/depthwise convolutions, squeeze-excitation,
multi-branch and re-parameterisable blocks, dense concatenation, Inception branches, attention (global, windowed,
cross-covariance, multi-axis), token-mixing MLPs, pooling mixers, and convolutions that subclass ``nn.Conv2d``
(``Conv2dSame``, ``ScaledStdConv2d``) which an exact-type layer rule must leave alone.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import timm
from torch import nn


class TimmArch(NamedTuple):
    """One architecture to test: the timm model name, ``create_model`` keyword arguments and the input shape."""

    name: str
    kwargs: dict[str, Any]
    input_shape: tuple[int, ...]

    @property
    def id(self) -> str:
        """The test id (the timm name)."""
        return self.name


S32 = (4, 3, 32, 32)
S64 = (2, 3, 64, 64)

TIMM_MODELS: list[TimmArch] = [
    # ResNet with basic blocks: the classic BNN backbone (ReActNet, Bi-Real Net).
    TimmArch("resnet18", {}, S32),
    # ResNeXt bottleneck (grouped 3x3) with squeeze-excitation.
    TimmArch("seresnext26ts", {}, S32),
    # ResNeSt: split attention with radix-grouped convolutions.
    TimmArch("resnest14d", {}, S32),
    # ConvNeXt: 7x7 depthwise conv, LayerNorm, Linear MLP inside a conv net, layer scale.
    TimmArch("convnext_atto", {}, S32),
    # EfficientNet: MBConv (expand / depthwise / project), SE, SiLU, stochastic depth.
    TimmArch("efficientnet_b0", {}, S32),
    # TF-ported EfficientNet-Lite: "same" padding, so the stem is Conv2dSame (a Conv2d subclass).
    TimmArch("tf_efficientnet_lite0", {}, S32),
    # MobileNetV2: inverted residuals with ReLU6.
    TimmArch("mobilenetv2_035", {}, S32),
    # MobileNetV3: hard-swish, SE with hard-sigmoid gates, a Linear-free conv head.
    TimmArch("mobilenetv3_small_050", {}, S32),
    # MobileNetV4: universal inverted bottleneck blocks.
    TimmArch("mobilenetv4_conv_small_035", {}, S32),
    # RegNetY: grouped bottlenecks with SE.
    TimmArch("regnety_002", {}, S32),
    # NF-RegNet: normaliser-free, ScaledStdConv2d (a Conv2d subclass) everywhere but the SE convs.
    TimmArch("nf_regnet_b0", {}, S32),
    # ViT: patch embedding conv, pre-norm attention blocks, class token.
    TimmArch("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8}, S32),
    # DeiT with a distillation token: two Linear heads (head, head_dist).
    TimmArch("deit_tiny_distilled_patch16_224", {"img_size": 32, "patch_size": 8}, S32),
    # EVA-02: rotary position embedding and SwiGLU MLP.
    TimmArch("eva02_tiny_patch14_224", {"img_size": 28}, (2, 3, 28, 28)),
    # Swin: shifted-window attention with relative position bias, patch merging.
    TimmArch("swin_tiny_patch4_window7_224", {"img_size": 32, "window_size": 2}, S32),
    # MaxViT: MBConv + block / grid attention.
    TimmArch("maxvit_pico_rw_256", {"img_size": 64}, S64),
    # MLP-Mixer: token-mixing and channel-mixing MLPs (Linear over the token axis).
    TimmArch("mixer_s32_224", {"img_size": 64}, S64),
    # ResMLP: Affine normalisation, Linear token mixing.
    TimmArch("resmlp_12_224", {"img_size": 32}, S32),
    # DenseNet: concatenation of all earlier feature maps.
    TimmArch("densenet121", {}, S32),
    # GhostNet: cheap depthwise "ghost" features concatenated with primary ones.
    TimmArch("ghostnet_050", {}, S32),
    # RepVGG: 3x3 + 1x1 + identity branches (train-time form).
    TimmArch("repvgg_a0", {}, S32),
    # MobileOne: over-parameterised re-parameterisable branches (many 1x1 / depthwise convs).
    TimmArch("mobileone_s0", {}, S32),
    # DLA: deep layer aggregation trees.
    TimmArch("dla46_c", {}, S32),
    # HRNet: parallel multi-resolution branches with fusion (upsampling + strided convs).
    TimmArch("hrnet_w18_small", {}, S64),
    # CSPNet (CS3-Darknet): cross-stage partial blocks.
    TimmArch("cs3darknet_s", {}, S64),
    # Inception-v3: parallel 1x1 / 3x3 / factorised 1x7-7x1 branches (needs >= 75 px).
    TimmArch("inception_v3", {}, (4, 3, 75, 75)),
    # LeViT: Linear + BatchNorm1d, attention with learned biases, distillation head.
    TimmArch("levit_128s", {"img_size": 64}, S64),
    # MobileViT: convolutions + unfolded transformer blocks.
    TimmArch("mobilevit_xxs", {}, S64),
    # EfficientFormerV2: 4D conv-attention stages, then attention with talking heads.
    TimmArch("efficientformerv2_s0", {"img_size": 64}, S64),
    # PoolFormerV2 (MetaFormer): average-pooling token mixer, 1x1-conv MLP.
    TimmArch("poolformerv2_s12", {}, S32),
    # ConvMixer: patch conv then depthwise + pointwise convs with GELU.
    TimmArch("convmixer_768_32", {}, S32),
    # CoaT-Lite: conv position encoding and factorised attention.
    TimmArch("coat_lite_tiny", {"img_size": 32}, S32),
    # XCiT: cross-covariance attention and local patch interaction.
    TimmArch("xcit_nano_12_p16_224", {"img_size": 32}, S32),
    # PiT: pooling-based ViT with depthwise-conv token pooling.
    TimmArch("pit_ti_224", {"img_size": 32}, S32),
    # FastViT: RepMixer with structural re-parameterisation, large-kernel conv stem.
    TimmArch("fastvit_t8", {}, S64),
    # EdgeNeXt: split depthwise transposed attention.
    TimmArch("edgenext_xx_small", {}, S64),
    # MambaOut: gated CNN blocks (Linear gate + depthwise conv).
    TimmArch("mambaout_femto", {}, S32),
]

DEFAULT_KWARGS: dict[str, Any] = {"pretrained": False, "num_classes": 10}


def create_model(arch: TimmArch) -> nn.Module:
    """Build ``arch`` with random weights and a 10-class head (entries may override the defaults)."""
    return timm.create_model(arch.name, **{**DEFAULT_KWARGS, **arch.kwargs})
