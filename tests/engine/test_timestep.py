"""Timestep-aware binarization: grouped parameters gathered per sample, routed through the graph or a hook."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import fx, nn

from binarize import RecipeError, binarize
from binarize.nn import BinaryConv2d
from binarize.nn.timestep import group_index

T, K = 100, 4


def sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    freqs = torch.exp(-math.log(1e4) * torch.arange(dim // 2) / (dim // 2))
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class TinyDenoiser(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, 8, 3, padding=1)
        self.time = nn.Linear(8, 8)
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.Conv2d(8, 8, 3, padding=1))
        self.conv_out = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x) + self.time(sinusoid(t, 8))[:, :, None, None]
        return self.conv_out(self.body(h))


class BranchyDenoiser(TinyDenoiser):
    """The same network with value-dependent control flow: torch.fx cannot trace it."""

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = super().forward(x, t)
        return out if out.abs().sum() >= 0 else -out


def recipe(route: str = "auto", k: int = K) -> dict:
    return {
        "name": "timestep-test",
        "extends": "reactnet",
        "timestep": {"input": "t", "T": T, "K": k, "route": route},
        "defaults": {"timestep_aware": True},
    }


def randomize(model: nn.Module) -> nn.Module:
    """Give every shift / slope its own value per group, so that groups really differ."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(k in name for k in ("shift", "activation")):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(3, 3, 8, 8)


def test_group_index_follows_the_rule() -> None:
    t = torch.tensor([0, 24, 25, 49, 50, 99, 150, -3])
    assert group_index(t, T, K).tolist() == [0, 0, 1, 1, 2, 3, 3, 0]
    assert group_index(torch.tensor(1999), 2000, 5).item() == 4 and group_index(torch.tensor(399), 2000, 5).item() == 0


@pytest.mark.parametrize(("model_cls", "route"), [(TinyDenoiser, "graph"), (BranchyDenoiser, "hook")])
def test_routes_and_grouped_parameters(model_cls: type[nn.Module], route: str, x: torch.Tensor) -> None:
    out = binarize(model_cls(), recipe())
    info = out.binarize_report.timestep
    assert info["route"] == route and info["K"] == K and info["input"] == "t"
    # conv_in and the time embedding's linear layer (both read a model input) and conv_out are kept by first / last;
    # registration order (the untraceable model, without example inputs) knows only one first layer
    in_order = out.binarize_report.order_source != "registration"
    assert info["layers"] == (["body.0", "body.2"] if in_order else ["body.0", "body.2", "time"])
    assert isinstance(out, fx.GraphModule) == (route == "graph")
    layer = out.get_submodule("body.0")
    assert isinstance(layer, BinaryConv2d) and layer.timestep_groups == K
    assert layer.shift.bias.shape == (K, 8) and layer.activation.shift_in.shape == (K, 8)
    assert "routed by" in str(out.binarize_report)
    randomize(out)(x, torch.tensor([3, 40, 90]))


def test_mixed_batches_equal_one_sample_at_a_time(x: torch.Tensor) -> None:
    for model_cls in (TinyDenoiser, BranchyDenoiser):
        model = randomize(binarize(model_cls(), recipe())).eval()
        t = torch.tensor([3, 40, 90])
        together = model(x, t)
        for i in range(3):
            torch.testing.assert_close(together[i : i + 1], model(x[i : i + 1], t[i : i + 1]))


def test_one_shared_group_equals_a_single_group_layer(x: torch.Tensor) -> None:
    """All samples in group g give exactly what a K = 1 network with group g's parameters gives."""
    model = randomize(binarize(TinyDenoiser(), recipe())).eval()
    single = binarize(TinyDenoiser(), recipe(k=1)).eval()
    g = 2
    state = {k: (v[g : g + 1] if v.dim() == 2 and v.shape[0] == K and ("shift" in k or "activation" in k) else v)
             for k, v in model.state_dict().items()}
    single.load_state_dict(state)
    t = torch.full((3,), 60)  # group 2 of 4 over T = 100; group 0 of 1
    assert torch.equal(model(x, t), single(x, t))


def test_graph_and_hook_routes_compute_the_same(x: torch.Tensor) -> None:
    graph = randomize(binarize(TinyDenoiser(), recipe("graph"))).eval()
    hook = binarize(TinyDenoiser(), recipe("hook")).eval()
    assert not isinstance(hook, fx.GraphModule)
    hook.load_state_dict(graph.state_dict())
    t = torch.tensor([3, 40, 90])
    torch.testing.assert_close(graph(x, t), hook(x, t))
    torch.testing.assert_close(graph(x, t=t), hook(x, t=t))  # keyword arguments too


def test_every_group_gets_a_gradient_tensor_and_only_used_groups_move(x: torch.Tensor) -> None:
    model = randomize(binarize(TinyDenoiser(), recipe()))
    model(x, torch.tensor([3, 4, 90])).square().mean().backward()  # groups 0 and 3 only
    grad = model.get_submodule("body.0").activation.shift_out.grad
    assert grad is not None and grad.shape == (K, 8)
    assert grad[0].abs().sum() > 0 and grad[3].abs().sum() > 0
    assert grad[1].abs().sum() == 0 and grad[2].abs().sum() == 0


def test_hook_route_copies_and_pickles(x: torch.Tensor, tmp_path) -> None:
    model = randomize(binarize(BranchyDenoiser(), recipe())).eval()
    t = torch.tensor([3, 40, 90])
    clone = copy.deepcopy(model)
    torch.testing.assert_close(clone(x, t), model(x, t))
    assert clone.get_submodule("body.0").timestep_state is not model.get_submodule("body.0").timestep_state
    path = tmp_path / "m.pt"
    torch.save(model, path)
    torch.testing.assert_close(torch.load(path, weights_only=False)(x, t), model(x, t))


def test_errors() -> None:
    bad = {"name": "no-timestep", "extends": "reactnet", "defaults": {"timestep_aware": True}}
    with pytest.raises(RecipeError, match="no `timestep` section"):
        binarize(TinyDenoiser(), bad)
    wrong_input = {**recipe(), "timestep": {"input": "step", "T": T, "K": K}}
    with pytest.raises(RecipeError, match="'step' is not an argument"):
        binarize(TinyDenoiser(), wrong_input)
    with pytest.raises(RecipeError, match="route: graph"):
        binarize(BranchyDenoiser(), recipe("graph"))
    with pytest.raises(RecipeError, match="cannot exceed"):
        binarize(TinyDenoiser(), {**recipe(), "timestep": {"input": "t", "T": 3, "K": 5}})
    layer = BinaryConv2d(4, 4, 3, padding=1, input_shift=True, timestep_groups=3)
    with pytest.raises(RuntimeError, match="needs timestep groups"):
        layer(torch.randn(1, 4, 5, 5))
    assert layer(torch.randn(2, 4, 5, 5), timestep_groups=torch.tensor([0, 2])).shape == (2, 4, 5, 5)
