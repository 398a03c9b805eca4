"""Every function-preserving graph rule shipped in a recipe: structure-only outputs equal the original's."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from binarize import available_recipes, binarize, load_recipe
from binarize.engine.graph_factories import GRAPH_FACTORIES
from binarize.zoo import ZOO
from unets import FunctionalStyleUNet


def _preserving_rules() -> list[tuple[str, int, dict]]:
    found, seen = [], []
    for name in available_recipes():
        for index, rule in enumerate(load_recipe(name).graph_rules):
            data = {**rule.to_dict(), "optional": True}
            rewrites = rule.replace != "leave"  # `leave` names structures a recipe deliberately keeps
            if GRAPH_FACTORIES.get(rule.replace).function_preserving and rewrites and data not in seen:
                seen.append(data)
                found.append((name, index, data))
    return found


class Functional(nn.Module):
    """Convolution and linear calls on the module's own parameters, with constant arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(6, 3, 3, 3) * 0.2)
        self.kernel_bias = nn.Parameter(torch.randn(6) * 0.1)
        self.grouped = nn.Parameter(torch.randn(6, 3, 3, 3) * 0.2)
        self.proj = nn.Parameter(torch.randn(5, 6) * 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.kernel, self.kernel_bias, stride=2, padding=1)
        x = F.conv2d(torch.relu(x), self.grouped, padding="same", groups=2)
        return F.linear(x.mean((2, 3)), self.proj)


class Resampling(nn.Module):
    """Functional resampling: a convolution before F.pixel_shuffle, and F.interpolate (nearest) before a conv."""

    def __init__(self) -> None:
        super().__init__()
        self.expand = nn.Conv2d(4, 8, 3, padding=1)
        self.smooth = nn.Conv2d(2, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pixel_shuffle(self.expand(x), 2)
        return self.smooth(F.interpolate(x, scale_factor=2, mode="nearest"))


def _unet_inputs(batch: int, size: int) -> tuple[torch.Tensor, ...]:
    return torch.randn(batch, 3, size, size), torch.randint(0, 2000, (batch,)), torch.randn(batch, 3, size, size)


def _models() -> list[tuple[str, nn.Module, tuple[torch.Tensor, ...]]]:
    return [
        ("functional", Functional(), (torch.randn(2, 3, 9, 9),)),
        # timm's Linear subclass calls F.linear on its parameters; Conv2dSame calls F.conv2d after dynamic padding.
        ("mobilenetv3", timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=10),
         (torch.randn(2, 3, 32, 32),)),
        ("tf_efficientnet_lite0", timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=10),
         (torch.randn(2, 3, 33, 33),)),
        ("resampling", Resampling(), (torch.randn(2, 4, 5, 6),)),
        # diffusion UNets: the BI-DiffSR topology (zoo and written differently) and the SR3 style
        ("bidiffsr-unet-tiny", ZOO.get("bidiffsr-unet-tiny").build(), _unet_inputs(2, 16)),
        ("functional-unet", FunctionalStyleUNet(), _unet_inputs(2, 16)),
        ("sr3-unet-tiny", ZOO.get("sr3-unet-tiny").build(), _unet_inputs(2, 16)),
    ]


RULES = _preserving_rules()


def test_some_shipped_rule_is_function_preserving() -> None:
    assert RULES, "no shipped recipe has a function-preserving graph rule"


@pytest.mark.parametrize(("recipe", "index", "rule"), RULES, ids=[f"{r}[{i}]" for r, i, _ in RULES])
def test_structure_only_output_equals_the_original(recipe: str, index: int, rule: dict) -> None:
    rewrites = 0
    for name, model, inputs in _models():
        model.eval()
        out = binarize(model, {"name": f"{recipe}-rule-{index}", "graph_rules": [rule]}, structure_only=True,
                       verify=inputs)
        report = out.binarize_report
        rewrites += len(report.graph_replaced)
        assert report.verify["expected_equal"] is True, name
        assert report.verify["max_abs_diff"] <= 1e-5, (name, report.verify)
        torch.testing.assert_close(out(*inputs), model(*inputs), atol=1e-5, rtol=1e-5)
    assert rewrites, f"{recipe} graph_rules[{index}] rewrote nothing on the test models"
