"""Shipped classifier recipes on models users bring from transformers and torchvision: every linear-like weight is
binarized or listed with its reason, and the converted models train."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from binarize import binarize
from binarize.coverage import weight_coverage
from binarize.nn import BinaryLinear


class Logits(nn.Module):
    """``forward(ids) -> logits`` around a transformers model, for the cost pass's positional inputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids).logits


def _gpt2() -> nn.Module:
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=32,
                                      bos_token_id=0, eos_token_id=0))


def _llama() -> nn.Module:
    return LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32))


def _bert() -> nn.Module:
    return BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=2, intermediate_size=64,
                                                     max_position_embeddings=32, num_labels=3))


#: name -> (builder, layers reactnet binarizes, layers it keeps: first and last)
LANGUAGE_MODELS: dict[str, tuple[Callable[[], nn.Module], int, set[str]]] = {
    "gpt2": (_gpt2, 7, {"model.transformer.h.0.attn.c_attn", "model.lm_head"}),
    "llama": (_llama, 11, {"model.model.layers.0.self_attn.q_proj", "model.model.layers.0.self_attn.k_proj",
                           "model.model.layers.0.self_attn.v_proj", "model.lm_head"}),
    "bert": (_bert, 10, {"model.bert.encoder.layer.0.attention.self.query",
                         "model.bert.encoder.layer.0.attention.self.key",
                         "model.bert.encoder.layer.0.attention.self.value", "model.classifier"}),
}


@pytest.mark.parametrize("name", list(LANGUAGE_MODELS))
def test_transformers_models_binarize_with_every_weight_accounted_for(name: str) -> None:
    build, binarized, kept = LANGUAGE_MODELS[name]
    torch.manual_seed(0)
    model, ids = Logits(build().eval()), torch.randint(0, 100, (2, 8))
    binary = binarize(model, "reactnet", example_inputs=(ids,))
    report = binary.binarize_report
    assert len(report.replaced) == binarized and {s["name"] for s in report.skipped} == kept
    found = weight_coverage(binary, (ids,))
    binary_weights = {f"{n}.weight" for n, m in binary.named_modules() if isinstance(m, BinaryLinear)}
    listed = {w["module"] for w in found["full_precision_weights"]}
    assert listed == kept  # the kept layers, each with its rule as the reason (a tied head named by its embedding)
    assert all(w["reason"].startswith("kept in full precision by rules[") for w in found["full_precision_weights"])
    assert len(binary_weights) == binarized and 0.5 < found["coverage"] < 1
    binary.train()
    binary(ids).logsumexp(-1).mean().backward()
    assert all(m.weight.grad is not None for m in binary.modules() if isinstance(m, BinaryLinear))


@pytest.mark.parametrize("build", [torchvision.models.resnet18, torchvision.models.efficientnet_b0],
                         ids=["resnet18", "efficientnet_b0"])
def test_torchvision_classifiers_train(build: Callable[..., nn.Module]) -> None:
    torch.manual_seed(0)
    model, x = build(num_classes=10), torch.randn(2, 3, 64, 64)
    binary = binarize(model, "reactnet", example_inputs=x).train()
    loss = F.cross_entropy(binary(x), torch.tensor([3, 7]))
    loss.backward()
    found = weight_coverage(binary.eval(), (x,))
    assert torch.isfinite(loss) and found["coverage"] > 0.5
    assert all(w["reason"] for w in found["full_precision_weights"])
