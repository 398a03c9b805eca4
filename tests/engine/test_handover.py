"""binarize() on its own copy hands the copy's weights to the binary layers instead of copying them again; the
result is the same as with copies, and the user's model never shares a tensor with it."""

from __future__ import annotations

import torch
from torch import nn

import pytest

from binarize.api import binarize
from binarize.nn import BinaryConv2d, BinaryLinear
from binarize.nn.handover import handing_over, storage_key

RECIPE = {"name": "all", "rules": [{"select": {"type": ["Conv2d", "Linear"]}, "binarize": {}}]}


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 4)
        self.tied = nn.Linear(4, 4, bias=False)
        self.tied.weight = self.fc.weight  # one parameter in two layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x).mean((2, 3))
        return self.tied(self.fc(h))


def storages(model: nn.Module) -> set[int]:
    return {storage_key(t) for t in (*model.parameters(), *model.buffers())} - {None}


def test_the_result_shares_no_storage_with_the_model_and_keeps_its_values() -> None:
    model = Net()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out = binarize(model, RECIPE)
    assert isinstance(out.conv, BinaryConv2d) and isinstance(out.fc, BinaryLinear)
    assert not storages(out) & storages(model)
    assert torch.equal(out.conv.weight, model.conv.weight) and torch.equal(out.conv.bias, model.conv.bias)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(1.0)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_tied_weights_stay_one_parameter_of_the_copy() -> None:
    model = Net()
    out = binarize(model, RECIPE)
    assert out.fc.weight is out.tied.weight  # the tie is kept...
    assert storage_key(out.fc.weight) != storage_key(model.fc.weight)  # ...on the copy, not the user's weight


def test_in_place_conversion_copies_the_weights() -> None:
    model = Net()
    conv = model.conv
    binarize(model, RECIPE, inplace=True)
    assert isinstance(model.conv, BinaryConv2d) and model.conv.weight is not conv.weight
    assert storage_key(model.conv.weight) != storage_key(conv.weight)


def test_a_weight_in_another_memory_layout_is_copied_into_the_usual_one() -> None:
    model = Net().to(memory_format=torch.channels_last)
    assert not model.conv.weight.is_contiguous()
    out = binarize(model, RECIPE)
    assert out.conv.weight.is_contiguous()


def test_from_float_takes_over_only_what_is_handed_over() -> None:
    conv = nn.Conv2d(3, 4, 3)
    kept = BinaryConv2d.from_float(conv)
    assert kept.weight is not conv.weight and kept.bias is not conv.bias
    with handing_over([conv.weight]):
        taken = BinaryConv2d.from_float(conv)
    assert taken.weight is conv.weight and taken.bias is not conv.bias
    assert torch.equal(taken.bias, conv.bias) and taken.bias.requires_grad


def test_binarize_hands_over_the_copy_s_untied_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    import binarize.nn.layers as layers

    taken: list[tuple[int, ...]] = []
    original = layers.may_take_over

    def spy(old: torch.Tensor, fresh: torch.Tensor, device: torch.device | None = None) -> bool:
        result = original(old, fresh, device)
        if result:
            taken.append(tuple(old.shape))
        return result

    monkeypatch.setattr(layers, "may_take_over", spy)
    binarize(Net(), RECIPE)
    assert sorted(taken) == [(4,), (4,), (4, 3, 3, 3)]  # conv weight and bias, fc bias; not the tied fc weight


def test_a_replacement_that_keeps_the_old_layer_gets_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    from binarize.engine.handlers import HANDLERS, Outcome
    from binarize.engine.plan import Decision

    class Wrapper(nn.Module):
        def __init__(self, old: nn.Module, new: nn.Module) -> None:
            super().__init__()
            self.old, self.new = old, new

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.new(x) + self.old(x)

    binarize_layer = HANDLERS.get("binarize")

    def wrap(decision: Decision) -> Outcome:
        built = binarize_layer(decision).replacement
        assert built is not None
        return Outcome(replacement=Wrapper(decision.candidate.module, built))

    monkeypatch.setitem(HANDLERS._entries, "binarize", wrap)
    out = binarize(Net(), RECIPE)
    assert isinstance(out.conv, Wrapper)
    assert storage_key(out.conv.old.weight) != storage_key(out.conv.new.weight)
    assert torch.equal(out.conv.old.weight, out.conv.new.weight)
