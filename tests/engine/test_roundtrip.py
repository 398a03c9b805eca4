"""A binarized model is an ordinary ``nn.Module``: state_dict, deepcopy, pickling, torch.compile, idempotence.

Every case converts a small full-precision model with one recipe: the layer-rule recipes ``reactnet`` (learnable
shifts and RPReLU), ``irnet`` (EDE binarizers with a ``progress`` buffer), ``xnorpp`` (a learnable factorized
scale), the graph-rule recipe ``reactnet-ds`` (strided convolutions become ``ConsistentDownsample`` blocks), and a
recipe dict whose graph rule ``[Conv2d, ReLU]`` rewrites forward code, so that the result, or one of its submodules,
is a :class:`torch.fx.GraphModule`. Models: the shared ``TinyCNN``, timm ``resnet18`` at 32x32 and timm
``vit_tiny_patch16_224`` at 32x32, plus two ``nn.Sequential``-based models for the graph rule.

Every test also checks that :func:`binarize.binarize` left its input untouched (same state_dict, same module
types).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
import torch._dynamo
from torch import fx, nn

from binarize import RecipeError, binarize
from binarize.binarizers import set_progress
from binarize.engine.graph_factories import GRAPH_FACTORIES, register_graph_factory
from binarize.engine.patterns import Match
from binarize.nn import BinaryConv2d


# --------------------------------------------------------------------------------------------------------------
# The graph-rule recipe and its factory (registered for this module only)
# --------------------------------------------------------------------------------------------------------------
class ConvReLU(nn.Module):
    """``relu(conv(x))`` with the activation as a function call, so a second pass of ``[Conv2d, ReLU]`` (which
    wants a ReLU *module*) finds nothing to match: the rule is idempotent."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


FACTORY = "roundtrip_conv_relu"

#: ``(state_dict copy, [(module path, module kind)])`` of a model, see :func:`snapshot`.
Snapshot = tuple[dict[str, torch.Tensor], list[tuple[str, type]]]


def graph_recipe(*, optional: bool = True) -> dict[str, Any]:
    """reactnet's layer rules after one graph rule ``[Conv2d, ReLU] => ConvReLU``."""
    rule = {"pattern": ["Conv2d", "ReLU"], "replace": FACTORY, "optional": optional}
    return {"name": "roundtrip-graph", "extends": "reactnet", "graph_rules": [rule]}


@pytest.fixture(autouse=True, scope="module")
def _conv_relu_factory() -> Iterator[None]:
    @register_graph_factory(FACTORY, function_preserving=True, description="conv + ReLU module => ConvReLU")
    def build(match: Match) -> nn.Module:
        return ConvReLU(match.modules[0])

    yield
    GRAPH_FACTORIES.unregister(FACTORY)


# --------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------
def conv_relu_stack() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
    )


class SeqNet(nn.Sequential):
    """Convolutions and ReLUs then a linear head, all in one Sequential: the graph rule rewrites the root."""

    def __init__(self) -> None:
        super().__init__(*conv_relu_stack(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


class Untraceable(nn.Module):
    """A root whose forward fx cannot trace (a branch on a traced value), around a traceable Sequential: the
    graph rule rewrites ``features`` into a GraphModule and the root keeps its class."""

    def __init__(self) -> None:
        super().__init__()
        self.features = conv_relu_stack()
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        if x.dim() == 4:
            x = x.mean((2, 3))
        return self.head(x)


@dataclass(frozen=True)
class Case:
    model: str
    recipe: str

    @property
    def id(self) -> str:
        return f"{self.model}-{self.recipe}"

    @property
    def has_graph_rule(self) -> bool:
        return self.recipe in ("reactnet-ds", "graph")

    def spec(self) -> str | dict[str, Any]:
        return graph_recipe() if self.recipe == "graph" else self.recipe


def _timm(name: str, **kwargs: Any) -> Callable[[], nn.Module]:
    return lambda: timm.create_model(name, pretrained=False, num_classes=10, **kwargs)


#: model name -> (builder, input shape). Every model runs in eval mode, so BatchNorm uses running statistics and a
#: batch of two is enough even where the last feature map is 1x1.
MODELS: dict[str, tuple[Callable[[], nn.Module] | None, tuple[int, ...]]] = {
    "tiny_cnn": (None, (2, 3, 16, 16)),  # built by the shared ``make_tiny_cnn`` fixture
    "resnet18": (_timm("resnet18"), (2, 3, 32, 32)),
    "vit": (_timm("vit_tiny_patch16_224", img_size=32), (2, 3, 32, 32)),
    "seq": (SeqNet, (2, 3, 16, 16)),
    "untraceable": (Untraceable, (2, 3, 16, 16)),
}

#: Every recipe on the tiny CNN; on the timm models (a few seconds each) the recipes that differ most there:
#: irnet's buffers and reactnet-ds's rewrite in residual blocks, reactnet's shifts and xnorpp's factorized scale on
#: the Linear layers of a ViT (inputs ``[batch, tokens, channels]``).
CASES = [
    *(Case("tiny_cnn", r) for r in ("reactnet", "irnet", "xnorpp", "reactnet-ds")),
    *(Case("resnet18", r) for r in ("irnet", "reactnet-ds")),
    *(Case("vit", r) for r in ("reactnet", "xnorpp")),
    Case("seq", "graph"),
    Case("untraceable", "graph"),
]


@dataclass
class Setup:
    case: Case
    model: nn.Module  # the full-precision input, in eval mode
    x: torch.Tensor
    snapshot: Snapshot

    def convert(self, model: nn.Module | None = None) -> nn.Module:
        """Binarize (the FP model by default) with the case's recipe, seeded, and return it in eval mode."""
        torch.manual_seed(1234)
        return binarize(self.model if model is None else model, self.case.spec()).eval()

    def assert_input_untouched(self) -> None:
        assert_untouched(self.model, self.snapshot)


@pytest.fixture(params=CASES, ids=lambda c: c.id)
def setup(request: pytest.FixtureRequest) -> Iterator[Setup]:
    case: Case = request.param
    build, shape = MODELS[case.model]
    torch.manual_seed(0)
    model = (build or request.getfixturevalue("make_tiny_cnn"))().eval()
    x = torch.randn(*shape)
    s = Setup(case, model, x, snapshot(model))
    yield s
    s.assert_input_untouched()


# --------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------
def kind(module: nn.Module) -> type:
    """The module's class; every GraphModule counts as ``fx.GraphModule`` (torch makes one class per instance)."""
    return fx.GraphModule if isinstance(module, fx.GraphModule) else type(module)


def snapshot(model: nn.Module) -> Snapshot:
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, [(name, kind(m)) for name, m in model.named_modules()]


def assert_untouched(model: nn.Module, before: Snapshot) -> None:
    state, types = snapshot(model)
    assert types == before[1], "module tree changed"
    assert list(state) == list(before[0]), "state_dict keys changed"
    for key, value in state.items():
        assert torch.equal(value, before[0][key]), f"{key} changed"


def run(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Output, input gradient and parameter gradients of ``model(x).square().sum()`` in eval mode."""
    model.eval()
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    out = model(x)
    out.square().sum().backward()
    grads = {
        n.removeprefix("_orig_mod."): p.grad.detach().clone()  # torch.compile's wrapper adds the prefix
        for n, p in model.named_parameters()
        if p.grad is not None
    }
    model.zero_grad(set_to_none=True)
    return out.detach(), x.grad.detach(), grads


@torch.no_grad()
def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.eval()(x)


def assert_same_run(a: nn.Module, b: nn.Module, x: torch.Tensor, atol: float = 0.0) -> torch.Tensor:
    """``a`` and ``b`` give the same outputs and gradients (see :func:`run`); returns ``a``'s output."""
    out_a, dx_a, grads_a = run(a, x)
    out_b, dx_b, grads_b = run(b, x)
    torch.testing.assert_close(out_b, out_a, rtol=0, atol=atol)
    torch.testing.assert_close(dx_b, dx_a, rtol=0, atol=atol)
    assert list(grads_b) == list(grads_a)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=0, atol=atol, msg=lambda m, n=name: f"{n}: {m}")
    return out_a


@torch.no_grad()
def perturb(model: nn.Module) -> None:
    """Move every parameter and running statistic away from its initial value, and advance EDE progress, so
    that a round trip that dropped or misplaced any of them would change the outputs or gradients."""
    gen = torch.Generator().manual_seed(7)
    for p in model.parameters():
        p.add_(0.05 * torch.randn(p.shape, generator=gen))
    for name, buf in model.named_buffers():
        if name.endswith("running_var"):
            buf.mul_(0.5 + torch.rand(buf.shape, generator=gen))
        elif name.endswith("running_mean"):
            buf.add_(0.1 * torch.randn(buf.shape, generator=gen))
    set_progress(model, 0.7)


def binary_layer_names(model: nn.Module) -> list[str]:
    return [entry["name"] for entry in model.binarize_report.replaced]


def assert_converted(setup: Setup, out: nn.Module) -> None:
    """The conversion did something, and the result is a module of the expected kind."""
    report = out.binarize_report
    assert isinstance(out, nn.Module) and report.replaced
    if setup.case.recipe == "xnorpp":  # the factorized scale is learnable
        assert any(".scale.factors." in n for n, _ in out.named_parameters())
    if setup.case.recipe == "irnet":  # EDE keeps its progress in a buffer
        assert any(n.endswith("binarizer.progress") for n, _ in out.named_buffers())
    if setup.case.has_graph_rule:
        assert report.graph_replaced
    if setup.case.model == "seq":
        assert isinstance(out, fx.GraphModule)
    elif setup.case.model == "untraceable":
        assert type(out) is Untraceable and isinstance(out.features, fx.GraphModule)
    else:
        assert type(out) is type(setup.model)


# --------------------------------------------------------------------------------------------------------------
# 1 + 3b. state_dict round trip, through torch.save / torch.load(weights_only=True)
# --------------------------------------------------------------------------------------------------------------
def test_state_dict_round_trip(setup: Setup, tmp_path: Path) -> None:
    first = setup.convert()
    second = setup.convert()
    assert_converted(setup, first)
    keys = list(first.state_dict())
    assert keys == list(second.state_dict()), "state_dict keys differ between two conversions"
    if not setup.case.has_graph_rule:
        # layer rules only: every full-precision entry keeps its key and its value
        fp_state, converted = setup.model.state_dict(), first.state_dict()
        for key, value in fp_state.items():
            assert torch.equal(converted[key], value), key

    perturb(first)
    path = tmp_path / "state.pt"
    torch.save(first.state_dict(), path)
    loaded = torch.load(path, weights_only=True)
    assert list(loaded) == keys

    for key, value in first.state_dict().items():
        assert torch.equal(loaded[key], value), key
    result = second.load_state_dict(loaded, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert_same_run(first, second, setup.x)

    if setup.case.recipe == "irnet":
        progress = [b for n, b in second.named_buffers() if n.endswith("binarizer.progress")]
        assert progress and all(float(b) == pytest.approx(0.7) for b in progress)


@pytest.mark.parametrize("recipe", ["irnet", "xnorpp", "graph"])
def test_strict_loading_reports_a_missing_binary_entry(recipe: str) -> None:
    fp = SeqNet().eval()
    spec = graph_recipe() if recipe == "graph" else recipe
    first, second = binarize(fp, spec), binarize(fp, spec)
    state = first.state_dict()
    added = [k for k in state if k not in fp.state_dict()]  # keys the conversion added (scales, buffers, ...)
    assert added
    del state[added[-1]]
    with pytest.raises(RuntimeError, match="Missing key"):
        second.load_state_dict(state, strict=True)
    second.load_state_dict(first.state_dict(), strict=True)


# --------------------------------------------------------------------------------------------------------------
# 2. copy.deepcopy
# --------------------------------------------------------------------------------------------------------------
def test_deepcopy_is_equal_and_independent(setup: Setup) -> None:
    model = setup.convert()
    assert_converted(setup, model)
    perturb(model)
    clone = copy.deepcopy(model)
    assert snapshot(clone)[1] == snapshot(model)[1]
    reference = assert_same_run(model, clone, setup.x)

    tensors = lambda m: [*m.parameters(), *m.buffers()]  # noqa: E731
    assert not {t.data_ptr() for t in tensors(model)} & {t.data_ptr() for t in tensors(clone)}
    with torch.no_grad():
        for p in clone.parameters():
            p.add_(1.0)
        for b in clone.buffers():
            if b.is_floating_point():
                b.add_(0.5)
    torch.testing.assert_close(forward(model, setup.x), reference, rtol=0, atol=0)
    assert not torch.equal(forward(clone, setup.x), reference)


def test_deepcopy_keeps_the_report_of_a_plain_module() -> None:
    model = binarize(conv_relu_stack(), "reactnet")  # no graph rule: an ordinary Sequential
    clone = copy.deepcopy(model)
    assert clone.binarize_report.to_dict() == model.binarize_report.to_dict()


def test_deepcopy_keeps_the_report_of_a_graph_module() -> None:
    """GraphModule.__deepcopy__ rebuilds the module from its graph; binarize() marks the report as preserved."""
    model = binarize(SeqNet(), graph_recipe())
    assert isinstance(model, fx.GraphModule)
    clone = copy.deepcopy(model)
    assert clone.binarize_report.to_dict() == model.binarize_report.to_dict()


# --------------------------------------------------------------------------------------------------------------
# 3a. pickling the whole module
# --------------------------------------------------------------------------------------------------------------
def test_torch_save_whole_model(setup: Setup, tmp_path: Path) -> None:
    model = setup.convert()
    perturb(model)
    path = tmp_path / "model.pt"
    torch.save(model, path)
    loaded = torch.load(path, weights_only=False)
    # (a GraphModule comes back with the class name "GraphModule": torch's pickling keeps the name only for
    # torch.package, so compare kinds, not names)
    assert snapshot(loaded)[1] == snapshot(model)[1]
    assert loaded.binarize_report.to_dict() == model.binarize_report.to_dict()
    assert_same_run(model, loaded, setup.x)


# --------------------------------------------------------------------------------------------------------------
# 4. torch.compile
# --------------------------------------------------------------------------------------------------------------
@pytest.fixture
def _fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.usefixtures("_fresh_dynamo")
@pytest.mark.parametrize("which", ["tiny_cnn-reactnet", "seq-graph"])
def test_torch_compile_matches_eager(which: str, make_tiny_cnn: Callable[[], nn.Module]) -> None:
    """Forward and backward of ``torch.compile(model, backend="aot_eager")`` match eager within 1e-5.

    ``aot_eager`` runs dynamo and AOTAutograd (so the custom autograd functions of the binarizers are traced into
    forward and backward graphs) without inductor's code generation, which takes ~30 s per model on two cores.
    Inductor is not used on purpose for a second reason: it reorders floating-point sums, and a binary layer's
    pre-activations are often exactly 0 (sums of +-alpha), so a ReLU or a clipped STE mask can flip on a 1e-8
    difference and change a gradient by far more than 1e-5 even though the forward outputs agree.
    """
    model_name, recipe = which.split("-")
    torch.manual_seed(0)
    fp = (make_tiny_cnn if model_name == "tiny_cnn" else SeqNet)().eval()
    model = binarize(fp, graph_recipe() if recipe == "graph" else recipe).eval()
    perturb(model)
    x = torch.randn(2, 3, 16, 16)
    compiled = torch.compile(model, backend="aot_eager")
    assert_same_run(model, compiled, x, atol=1e-5)
    assert_same_run(model, compiled, x + 0.5, atol=1e-5)  # a second call reuses the compiled graph


# --------------------------------------------------------------------------------------------------------------
# 5. Idempotence
# --------------------------------------------------------------------------------------------------------------
def test_binarizing_twice_converts_nothing_more(setup: Setup) -> None:
    once = setup.convert()
    binary = binary_layer_names(once)
    before = snapshot(once)
    twice = setup.convert(once)
    assert_untouched(once, before)  # the second pass converted a copy

    report = twice.binarize_report
    assert report.replaced == [] and report.graph_replaced == []
    already = {s["name"] for s in report.skipped if s["reason"] == "already binary"}
    assert already == set(binary)
    assert snapshot(twice)[1] == before[1]
    assert list(twice.state_dict()) == list(before[0])
    for key, value in twice.state_dict().items():
        assert torch.equal(value, before[0][key]), key
    assert_same_run(once, twice, setup.x)


def test_a_non_optional_graph_rule_refuses_an_already_rewritten_model() -> None:
    """Documented behaviour: a graph rule that is not ``optional`` must match, and a rewritten model holds no
    ``[Conv2d, ReLU]`` chain any more, so converting it again needs ``optional: true``."""
    once = binarize(SeqNet(), graph_recipe(optional=False))
    before = snapshot(once)
    with pytest.raises(RecipeError, match="matches nothing"):
        binarize(once, graph_recipe(optional=False))
    assert_untouched(once, before)


class RegisteredOutOfOrder(nn.Module):
    """``fc1`` is registered before the convolutions although it runs after them."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 8)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.mid = nn.Conv2d(8, 8, 3, padding=1)
        self.fc2 = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mid(torch.relu(self.stem(x))).mean((2, 3))
        return self.fc2(torch.relu(self.fc1(x)))


def test_first_last_are_stable_on_a_second_pass_without_example_inputs() -> None:
    """Without example inputs the order comes from fx; a binarized model must still trace (binary layers as
    leaves), else the second pass falls back to registration order, where ``fc1`` is first and ``fc2`` last, and
    binarizes the float stem."""
    recipe = {
        "name": "conv-only",
        "defaults": {"weight_binarizer": "ste", "input_binarizer": "ste", "scale": "channel_mean_abs"},
        "rules": [
            {"select": {"type": ["Conv2d"]}, "binarize": {}},
            {"select": "first", "keep": "float"},
            {"select": "last", "keep": "float"},
        ],
    }
    once = binarize(RegisteredOutOfOrder(), recipe)
    assert binary_layer_names(once) == ["mid"] and once.binarize_report.order_source == "fx"
    twice = binarize(once, recipe)
    assert type(twice.stem) is nn.Conv2d and not isinstance(twice.stem, BinaryConv2d)
    assert twice.binarize_report.replaced == []
    assert twice.binarize_report.order_source == "fx"
