"""Expansions: nn.MultiheadAttention and transformers' Conv1D hold linear maps outside any convertible module;
binarize() rewrites them exactly (ProjectedMultiheadAttention, nn.Linear) so that layer rules reach every weight."""

from __future__ import annotations

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.pytorch_utils import Conv1D

from binarize import binarize, plan
from binarize.nn import BinaryLinear
from binarize.nn.attention import ProjectedMultiheadAttention
from binarize.nn.expansions import EXPANSIONS, class_path

KEEP_LINEAR = {"name": "keep-linear", "rules": [{"select": {"type": "Linear"}, "keep": "float"}]}


@settings(max_examples=40, deadline=None)
@given(
    batch_first=st.booleans(), other_dims=st.booleans(), bias=st.booleans(), unbatched=st.booleans(),
    attn_mask=st.sampled_from([None, "2d", "per-head", "causal"]), padding=st.booleans(),
    boolean_masks=st.booleans(), need_weights=st.booleans(), average=st.booleans(), seed=st.integers(0, 2**16),
)
def test_projected_attention_equals_multihead_attention(
    batch_first: bool, other_dims: bool, bias: bool, unbatched: bool, attn_mask: str | None, padding: bool,
    boolean_masks: bool, need_weights: bool, average: bool, seed: int,
) -> None:
    """Outputs, attention weights and input gradients, for every layout, mask kind and option."""
    torch.manual_seed(seed)
    embed, heads, batch, target, source = 8, 2, 3, 4, 5
    kdim = 6 if other_dims else None
    mha = nn.MultiheadAttention(embed, heads, bias=bias, kdim=kdim, vdim=kdim, batch_first=batch_first).double()
    projected = ProjectedMultiheadAttention.from_float(mha)

    def shaped(length: int, dim: int) -> torch.Tensor:
        if unbatched:
            return torch.randn(length, dim, dtype=torch.double)
        return torch.randn(*((batch, length) if batch_first else (length, batch)), dim, dtype=torch.double)

    def as_mask(blocked: torch.Tensor) -> torch.Tensor:  # True: not allowed; the float form adds a penalty
        return blocked if boolean_masks else blocked.double() * -4.0 + torch.randn(blocked.shape).double() * 0.1

    query, key, value = shaped(target, embed), shaped(source, kdim or embed), shaped(source, kdim or embed)
    kwargs: dict = {"need_weights": need_weights, "average_attn_weights": average}
    if attn_mask == "2d":
        kwargs["attn_mask"] = as_mask(torch.rand(target, source) > 0.7)
    elif attn_mask == "per-head":
        kwargs["attn_mask"] = as_mask(torch.rand((1 if unbatched else batch) * heads, target, source) > 0.7)
    elif attn_mask == "causal":
        causal = torch.ones(target, source, dtype=torch.bool).triu(1)  # is_causal promises exactly this mask
        exact = causal if boolean_masks else torch.zeros(target, source, dtype=torch.double).masked_fill(causal, -torch.inf)
        kwargs["attn_mask"], kwargs["is_causal"] = exact, True
    if "attn_mask" in kwargs and boolean_masks:
        kwargs["attn_mask"][..., 0] = False  # every query sees a key
    if padding:
        blocked = torch.zeros(source, dtype=torch.bool) if unbatched else torch.zeros(batch, source, dtype=torch.bool)
        blocked[..., -1] = True
        kwargs["key_padding_mask"] = as_mask(blocked)
    inputs_a = [t.clone().requires_grad_() for t in (query, key, value)]
    inputs_b = [t.clone().requires_grad_() for t in (query, key, value)]
    out_a, weights_a = mha(*inputs_a, **kwargs)
    out_b, weights_b = projected(*inputs_b, **kwargs)
    torch.testing.assert_close(out_b, out_a)
    assert (weights_a is None) == (weights_b is None)
    if weights_a is not None:
        torch.testing.assert_close(weights_b, weights_a)
    grads_a = torch.autograd.grad(out_a.sum(), inputs_a)
    grads_b = torch.autograd.grad(out_b.sum(), inputs_b)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(b, a)


def test_attention_with_extra_keys_is_left_and_reported() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    model.attn = nn.MultiheadAttention(8, 2, add_bias_kv=True)
    out = binarize(model, KEEP_LINEAR)
    assert isinstance(out.attn, nn.MultiheadAttention) and out.binarize_report.expanded == []
    (entry,) = [s for s in out.binarize_report.skipped if s["name"] == "attn"]
    assert "add_bias_kv or add_zero_attn" in entry["reason"]


def _vit() -> nn.Module:
    return torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
    ).eval()


def test_torchvision_vit_attention_projections_are_binarized() -> None:
    torch.manual_seed(0)
    model, x = _vit(), torch.randn(2, 3, 32, 32)
    reference = model(x).detach()
    same = binarize(model, KEEP_LINEAR, example_inputs=x)  # expanded, nothing binarized: the same function
    torch.testing.assert_close(same(x), reference, rtol=1e-5, atol=1e-5)
    binary = binarize(model, "reactnet", example_inputs=x)
    report = binary.binarize_report
    assert [e["old_type"] for e in report.expanded] == ["MultiheadAttention"] * 2
    names = {r["name"] for r in report.replaced}
    for layer in range(2):
        prefix = f"encoder.layers.encoder_layer_{layer}"
        assert {f"{prefix}.self_attention.{p}" for p in ("q_proj", "k_proj", "v_proj", "out_proj")} <= names
        assert {f"{prefix}.mlp.0", f"{prefix}.mlp.3"} <= names
    assert sorted(s["name"] for s in report.skipped) == ["conv_proj", "heads.head"]  # reactnet keeps first / last
    assert sum(isinstance(m, BinaryLinear) for m in binary.modules()) == 12
    binary.train()
    binary(x).logsumexp(-1).mean().backward()
    assert all(p.grad is not None for n, p in binary.named_parameters() if "q_proj.weight" in n)
    assert isinstance(model.encoder.layers[0].self_attention, nn.MultiheadAttention)  # the user's model is untouched


def _gpt2() -> nn.Module:
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=32, bos_token_id=0,
                        eos_token_id=0)
    return GPT2LMHeadModel(config).eval()


def test_gpt2_conv1d_layers_are_binarized() -> None:
    torch.manual_seed(0)
    model, ids = _gpt2(), torch.randint(0, 100, (2, 8))
    inputs = {"input_ids": ids}
    with torch.no_grad():
        reference = model(**inputs).logits
        same = binarize(model, KEEP_LINEAR, example_inputs=inputs)
        torch.testing.assert_close(same(**inputs).logits, reference, rtol=1e-5, atol=1e-5)
    binary = binarize(model, "reactnet", example_inputs=inputs)
    report = binary.binarize_report
    assert len(report.expanded) == 8 and {e["old_type"] for e in report.expanded} == {"Conv1D"}
    assert not any(isinstance(m, Conv1D) for m in binary.modules())
    assert len(report.replaced) == 7  # the 8 Conv1D layers but the first (reactnet keeps it), lm_head last
    assert sorted(s["name"] for s in report.skipped) == ["lm_head", "transformer.h.0.attn.c_attn"]
    assert binary.lm_head.weight is binary.transformer.wte.weight  # tied weights stay tied
    binary.train()
    binary(**inputs).logits.logsumexp(-1).mean().backward()
    assert binary.transformer.h[1].mlp.c_fc.weight.grad is not None
    text = str(report)
    assert "expanded (so that their linear maps are convertible layers):" in text
    assert any(line.split()[:3] == ["transformer.h.1.mlp.c_fc", "Conv1D", "Linear"] for line in text.splitlines())


def test_shared_attention_stays_shared_and_plan_does_not_touch_the_model() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.again = self.attn

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.again(self.attn(x, x, x)[0], x, x)[0]

    model = Twice()
    decided = plan(model, KEEP_LINEAR)
    assert {d.candidate.name for d in decided.decisions} == {f"attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "out_proj")}
    assert isinstance(model.attn, nn.MultiheadAttention)
    out = binarize(model, "reactnet", example_inputs=torch.randn(1, 3, 8))
    assert out.attn is out.again and isinstance(out.attn, ProjectedMultiheadAttention)
    assert out.binarize_report.expanded[0]["aliases"] == ["again"]


def test_expansions_are_registered_by_import_path() -> None:
    assert class_path(nn.MultiheadAttention) in EXPANSIONS
    assert class_path(Conv1D) in EXPANSIONS  # matches transformers' class without binarize importing it
