"""``first`` / ``last`` follow execution order (not registration order), from the best available source."""

from __future__ import annotations

import sys

import timm
import torch
from torch import nn

import pytest

from binarize.api import binarize, plan
from binarize.engine import execution_order
from binarize.errors import BinarizeError
from binarize.recipe import Recipe, Rule

FIRST_LAST = Recipe(
    "fl", rules=[Rule.binarize({"type": ["Conv2d", "Linear"]}), Rule.keep("first"), Rule.keep("last")]
)


class Reordered(nn.Module):
    """Registered head, unused, stem, mid, bn; runs stem -> mid -> bn -> head. ``unused`` never runs."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(8, 2)
        self.unused = nn.Linear(8, 8)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.mid = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(self.mid(self.stem(x))).mean((2, 3)))


class Untraceable(Reordered):
    """Data-dependent control flow defeats torch.fx."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            x = x * 1
        return super().forward(x)


def kept(model: nn.Module, **kwargs: object) -> tuple[set[str], str | None]:
    the_plan = plan(model, FIRST_LAST, **kwargs)
    return {d.candidate.name for d in the_plan.decisions if d.action == "keep"}, the_plan.order_source


def test_forward_order_beats_registration_order() -> None:
    assert kept(Reordered(), example_inputs=torch.randn(1, 3, 8, 8)) == ({"stem", "head"}, "forward")


def test_fx_order_without_inputs() -> None:
    assert kept(Reordered()) == ({"stem", "head"}, "fx")


def test_registration_order_is_the_last_resort() -> None:
    assert kept(Untraceable()) == ({"head", "mid"}, "registration")
    assert kept(Untraceable(), example_inputs=torch.randn(1, 3, 8, 8)) == ({"stem", "head"}, "forward")


def test_timm_input_size_gives_the_order() -> None:
    model = timm.create_model("resnet10t", num_classes=10)
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, 32, 32)}
    names, source = kept(model)
    assert (names, source) == ({"conv1.0", "fc"}, "timm_input_size")


def test_keyword_and_tuple_inputs() -> None:
    x = torch.randn(1, 3, 8, 8)
    assert kept(Reordered(), example_inputs=(x,))[0] == {"stem", "head"}
    assert kept(Reordered(), example_inputs={"x": x})[0] == {"stem", "head"}


def test_a_layer_that_never_runs_is_never_first_or_last() -> None:
    model = Reordered()
    del model.head  # now "unused" is registered first and never runs
    model.head = nn.Linear(8, 2)  # registered last again
    the_plan = plan(model, Recipe("r", rules=[Rule.keep({"type": "Linear", "first": True})]),
                    example_inputs=torch.randn(1, 3, 8, 8))
    assert [d.candidate.name for d in the_plan.decisions if d.action == "keep"] == ["head"]


def test_order_is_computed_only_when_needed() -> None:
    assert plan(Untraceable(), "identity").order_source is None


def test_the_forward_pass_leaves_no_trace() -> None:
    model = Reordered().train()
    model.bn.eval()  # a mixed state must be restored exactly
    stats = (model.bn.running_mean.clone(), model.bn.running_var.clone(), model.bn.num_batches_tracked.clone())
    out = binarize(model, FIRST_LAST, inplace=True, example_inputs=torch.randn(2, 3, 8, 8) + 3)
    assert out is model and out.binarize_report.order_source == "forward"
    assert model.training and model.stem.training and not model.bn.training
    assert torch.equal(model.bn.running_mean, stats[0]) and torch.equal(model.bn.running_var, stats[1])
    assert torch.equal(model.bn.num_batches_tracked, stats[2])
    for module in model.modules():
        assert not module._forward_pre_hooks and not module._forward_hooks
    assert torch.is_grad_enabled()


def test_a_failing_forward_on_example_inputs_is_explained() -> None:
    model = Reordered()
    with pytest.raises(BinarizeError, match="forward pass on example_inputs failed"):
        plan(model, FIRST_LAST, example_inputs=torch.randn(1, 5, 8, 8))
    assert model.training and not model.stem._forward_pre_hooks


def test_a_module_called_twice_takes_its_first_and_last_call() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shared = nn.Linear(4, 4)
            self.middle = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.shared(self.middle(self.shared(x)))

    model = Twice()
    positions, source = execution_order(model, [model.shared, model.middle], torch.randn(1, 4))
    # ``shared`` reads the input and writes the output: it is both an input and an output layer.
    assert source == "forward" and positions == {0: (-1, sys.maxsize), 1: (1, 1)}
    the_plan = plan(model, FIRST_LAST, example_inputs=torch.randn(1, 4))
    assert {d.candidate.name: d.action for d in the_plan.decisions} == {"shared": "keep", "middle": "binarize"}


class TwoStemsTwoHeads(nn.Module):
    """Parallel input branches and parallel heads (like a multi-branch stem and a distillation head)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem_a = nn.Conv2d(3, 4, 3, padding=1)
        self.stem_b = nn.Conv2d(3, 4, 1)
        self.body = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4, 10)
        self.head_dist = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.stem_a(x) + self.stem_b(x))
        h = (self.body(h) + h).mean((2, 3))
        return self.head(h), self.head_dist(h)


@pytest.mark.parametrize("frozen", [False, True])
def test_parallel_input_and_output_layers_are_all_first_and_last(frozen: bool) -> None:
    model = TwoStemsTwoHeads()
    for p in model.parameters():
        p.requires_grad_(not frozen)  # frozen weights: the order must still link the layers
    decisions = plan(model, FIRST_LAST, example_inputs=torch.randn(1, 3, 8, 8)).decisions
    actions = {d.candidate.name: d.action for d in decisions}
    assert actions == {"stem_a": "keep", "stem_b": "keep", "body": "binarize", "head": "keep", "head_dist": "keep"}


def test_blocks_on_a_residual_stream_are_not_all_last() -> None:
    class Stream(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for block in self.blocks:
                x = x + block(x)
            return x

    actions = {d.candidate.name: d.action for d in plan(Stream(), FIRST_LAST, example_inputs=torch.randn(2, 4)).decisions}
    assert actions == {"blocks.0": "keep", "blocks.1": "binarize", "blocks.2": "keep"}


class StemAndTimeMLP(nn.Module):
    """A diffusion-style model: the time MLP runs before the stem, both read model inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.time_mlp = nn.Sequential(nn.Linear(4, 8), nn.SiLU(), nn.Linear(8, 8))
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.out = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(t)
        return self.out(self.body(self.stem(x) + emb[:, :, None, None]))


def test_fx_order_finds_every_input_layer_from_the_data_flow() -> None:
    model = StemAndTimeMLP()
    modules = [model.time_mlp[0], model.time_mlp[2], model.stem, model.body, model.out]
    positions, source = execution_order(model, modules)
    assert source == "fx"
    firsts = [i for i, (first, _) in positions.items() if first == -1]
    lasts = [i for i, (_, last) in positions.items() if last == sys.maxsize]
    assert firsts == [0, 2] and lasts == [4]  # time_mlp.0 and the stem; the output conv
    recipe = Recipe("convs", rules=(Rule.binarize({"type": ["Conv2d"]}), Rule.keep("first"), Rule.keep("last")))
    binary = binarize(model, recipe)
    assert [e["name"] for e in binary.binarize_report.replaced] == ["body"]
