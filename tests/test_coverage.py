"""Coverage: every weight a convolution or matrix product consumes is binary or listed with the reason it is not."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from binarize import binarize
from binarize.cli import main, summarize
from binarize.coverage import weight_coverage
from binarize.nn import BinaryConv2d, BinaryLinear


class Mixed(nn.Module):
    """Convolutions, linear layers and a weight used in a functional call."""

    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(depth))
        self.fc = nn.Linear(width, width)
        self.gate = nn.Parameter(torch.randn(width, width) / width)
        self.head = nn.Linear(width, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for conv in self.body:
            h = h + conv(h)
        v = self.fc(h.mean((2, 3)))
        return self.head(v * torch.sigmoid(F.linear(v, self.gate)))


@settings(max_examples=20, deadline=None)
@given(width=st.sampled_from([4, 8]), depth=st.integers(1, 3), keep=st.sets(st.sampled_from(["stem", "fc", "head", "body.0"])))
def test_every_consumed_weight_is_binary_or_listed(width: int, depth: int, keep: set[str]) -> None:
    torch.manual_seed(0)
    rules = [{"select": {"type": ["Conv2d", "Linear"]}, "binarize": {}}]
    rules += [{"select": {"name": name}, "keep": "float"} for name in sorted(keep)]
    binary = binarize(Mixed(width, depth), {"name": "some", "defaults": {"input_binarizer": "ste",
                                                                        "weight_binarizer": "ste"}, "rules": rules})
    found = weight_coverage(binary, (torch.randn(1, 3, 6, 6),))
    listed = {w["name"] for w in found["full_precision_weights"]}
    binary_layers = {n for n, m in binary.named_modules() if isinstance(m, (BinaryConv2d, BinaryLinear))}
    assert listed == {f"{name}.weight" for name in keep} | {"gate"}
    assert binary_layers | {w["module"] for w in found["full_precision_weights"] if w["layer_weight"]} == {
        "stem", "fc", "head", *(f"body.{i}" for i in range(depth))
    }
    assert found["binary_macs"] + sum(w["macs"] for w in found["full_precision_weights"]) == found["layer_macs"]
    reasons = {w["name"]: w["reason"] for w in found["full_precision_weights"]}
    assert reasons["gate"].startswith("used in a functional call inside Mixed (<root>)")
    assert all(reasons[f"{name}.weight"].startswith("kept in full precision by rules[") for name in keep)


def test_a_model_that_was_not_converted_says_so() -> None:
    found = weight_coverage(Mixed(4, 1), (torch.randn(1, 3, 6, 6),))
    assert found["coverage"] == 0.0
    assert {w["reason"] for w in found["full_precision_weights"]} == {"the model was not binarized (no recipe)"}


def test_summary_json_has_coverage_and_full_precision_weights() -> None:
    data = summarize("timm:vit_tiny_patch16_224", "reactnet")
    assert 0.95 < data["coverage"] < 1.0
    weights = {w["name"]: w for w in data["full_precision_weights"]}
    assert set(weights) == {"patch_embed.proj.weight", "head.weight"}  # reactnet keeps first and last
    assert weights["head.weight"]["reason"].startswith("kept in full precision by rules[2] select last")
    plain = json.loads(json.dumps({k: v for k, v in data.items() if k != "_table"}))  # what --json prints
    assert plain["coverage"] == data["coverage"] and len(plain["full_precision_weights"]) == 2


def test_summary_text_reports_coverage(capsys: object) -> None:
    assert main(["summary", "zoo:resnet8", "--recipe", "reactnet"]) == 0
    text = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "coverage: " in text and "% of layer MACs binary" in text
