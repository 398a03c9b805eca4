"""Every shipped recipe (but the diffusion ones) on every architecture in ``timm_models.TIMM_MODELS``.

For each (architecture, recipe) pair the binarized model must run forward and backward in train mode and forward in
eval mode, give outputs of the same shapes as the full-precision model, pass gradients to the weights of its binary
layers, leave the model it was given untouched and (for every recipe but ``identity``) keep the first and last
executed convolution / linear layer in full precision. ``identity`` must reproduce the full-precision outputs bit for
bit. First and last layers are found here with forward hooks on the full-precision model, independently of the
engine.

Each full-precision model is built once per test process (tests run architecture by architecture) and deep-copied
for each recipe. timm zero-initialises some weights (the last BatchNorm scale of each residual branch, some
classifier heads), which leaves whole branches without a gradient; the reference model refills every all-zero
parameter with small random values, so that "a gradient reaches a binary layer" tests the binary layers rather than
the initialisation. The backward pass starts from a fixed random projection of the outputs (a plain sum would give
every sample the same output gradient, which train-mode BatchNorm cancels).

Gradients are not required to be finite: with random weights, a ReLU before a binary layer makes every binarized
input +1, the layer's output is then constant per channel, and train-mode BatchNorm over a zero variance multiplies
the gradient by about 1/sqrt(eps) per layer, which overflows in deep networks (DenseNet, DLA, GhostNet).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from binarize.api import binarize
from binarize.recipe import available_recipes, load_recipe
from timm_models import TIMM_MODELS, TimmArch, create_model

ARCHS: dict[str, TimmArch] = {arch.name: arch for arch in TIMM_MODELS}
# Diffusion recipes (a `timestep` section) need a timestep input that classifiers do not have; they are tested on
# diffusion UNets (tests/plugins).
RECIPES: list[str] = sorted(r for r in available_recipes() if load_recipe(r).timestep is None)
# Recipes that are allowed to binarize the first and last layers.
BINARIZES_ENDS: frozenset[str] = frozenset({"identity"})
# Layer kinds whose first / last execution is checked (any subclass, e.g. timm's Conv2dSame, counts).
WEIGHT_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)


@dataclass(frozen=True)
class Reference:
    """The full-precision model of one architecture and what the tests compare against."""

    model: nn.Module  # never run in train mode nor given to binarize(): tests deep-copy it
    x: Tensor
    first: str  # module path of the first executed conv / linear layer
    last: str  # module path of the last executed conv / linear layer
    eval_out: list[Tensor]
    train_shapes: list[tuple[int, ...]]
    projections: list[Tensor]  # one fixed random tensor per train-mode output, for the loss


def tensors(out: Any) -> Iterator[Tensor]:
    """The tensors in a model output (a tensor, or nested tuples / lists / dicts of them), in order."""
    if isinstance(out, Tensor):
        yield out
    elif isinstance(out, (tuple, list)):
        for item in out:
            yield from tensors(item)
    elif isinstance(out, dict):
        for key in sorted(out):
            yield from tensors(out[key])
    else:
        raise TypeError(f"unexpected model output of type {type(out).__name__}")


def shapes(out: Any) -> list[tuple[int, ...]]:
    """The shapes of the tensors in a model output."""
    return [tuple(t.shape) for t in tensors(out)]


@lru_cache(maxsize=4)  # tests run architecture by architecture; a few models at a time keep memory low
def reference(name: str) -> Reference:
    """Build architecture ``name`` once per process with a fixed seed and record its reference behaviour."""
    arch = ARCHS[name]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create_model(arch)
        with torch.no_grad():
            for param in model.parameters():
                if not param.any():
                    param.normal_(0.0, 0.1)
        x = torch.randn(arch.input_shape)
    model.eval()

    order: list[str] = []
    handles = [
        module.register_forward_hook(lambda *_, path=path: order.append(path))
        for path, module in model.named_modules()
        if isinstance(module, WEIGHT_LAYERS)
    ]
    try:
        with torch.no_grad():
            eval_out = [t.clone() for t in tensors(model(x))]
    finally:
        for handle in handles:
            handle.remove()
    assert order, f"{name}: no conv / linear layer ran"

    train_copy = copy.deepcopy(model).train()
    with torch.no_grad():
        train_shapes = shapes(train_copy(x))
    generator = torch.Generator().manual_seed(1)
    projections = [torch.randn(shape, generator=generator) for shape in train_shapes]
    return Reference(model, x, order[0], order[-1], eval_out, train_shapes, projections)


def assert_untouched(model: nn.Module, original: nn.Module) -> None:
    """``model`` (a deep copy of ``original`` given to binarize) still has the original structure and values."""
    assert not hasattr(model, "binarize_report"), "binarize() wrote a report onto the model it was given"
    assert [(n, type(m)) for n, m in model.named_modules()] == [
        (n, type(m)) for n, m in original.named_modules()
    ], "binarize() changed the modules of the model it was given"
    got, want = model.state_dict(), original.state_dict()
    assert got.keys() == want.keys()
    changed = [k for k in want if not torch.equal(got[k], want[k])]
    assert not changed, f"binarize() changed these tensors of the model it was given: {changed}"
    assert model.training == original.training


def is_binary_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a binary layer that binarizes its weight or its input."""
    return bool(getattr(module, "binary_weight", False) or getattr(module, "binary_input", False))


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("arch", TIMM_MODELS, ids=lambda arch: arch.id)
def test_recipe_on_timm_model(arch: TimmArch, recipe: str) -> None:
    ref = reference(arch.name)
    given = copy.deepcopy(ref.model)

    model = binarize(given, recipe, example_inputs=(ref.x,))

    assert model is not given
    assert_untouched(given, ref.model)
    report = model.binarize_report
    fp_paths = dict(ref.model.named_modules())
    for entry in report.replaced:
        new = model.get_submodule(entry["name"])
        assert type(new).__name__ == entry["new_type"], entry
        # Layers that a graph rule created have no float counterpart in the original model.
        assert entry["name"] not in fp_paths or type(new) is not type(fp_paths[entry["name"]]), entry
    layer_replaced = {entry["name"]: entry for entry in report.replaced}
    for entry in report.graph_replaced:
        # a module a graph rule created is still there, or a layer rule replaced it in turn (and says so)
        now = type(model.get_submodule(entry["name"])).__name__
        assert now == entry["new_type"] or layer_replaced[entry["name"]]["new_type"] == now, entry

    # Eval mode first (a train-mode forward would update BatchNorm statistics); identity is bit-exact.
    model.eval()
    with torch.no_grad():
        eval_out = list(tensors(model(ref.x)))
    assert shapes(eval_out) == [tuple(t.shape) for t in ref.eval_out]
    if recipe == "identity":
        for got_t, want_t in zip(eval_out, ref.eval_out, strict=True):
            diff = (got_t - want_t).abs().max()
            assert torch.equal(got_t, want_t), f"identity changed the outputs (max |diff| {diff})"
    else:
        assert all(torch.isfinite(t).all() for t in eval_out), "non-finite outputs in eval mode"

    # Train mode: forward, shapes, backward.
    model.train()
    out = list(tensors(model(ref.x)))
    assert shapes(out) == ref.train_shapes
    sum((t.float() * p).sum() for t, p in zip(out, ref.projections, strict=True)).backward()

    binary = {path: m for path, m in model.named_modules() if is_binary_layer(m)}
    if recipe != "identity":
        assert binary, f"recipe {recipe!r} binarized no layer of {arch.name}; report:\n{report}"
        reached = [p for p, m in binary.items() if m.weight.grad is not None and m.weight.grad.abs().sum() > 0]
        assert reached, f"no gradient reached the weight of any binary layer: {sorted(binary)}"

    if recipe not in BINARIZES_ENDS:
        for path in (ref.first, ref.last):
            # Nothing at or inside the first/last layer is binary. (A graph rule may have rewritten a custom layer
            # into a GraphModule around an equivalent plain layer, e.g. timm's Linear, whose forward calls F.linear.)
            inside = [p for p in binary if p == path or p.startswith(f"{path}.")]
            assert not inside, f"{path} (first/last executed layer) has binary layers: {inside}"
            fp_type = type(ref.model.get_submodule(path))
            got = type(model.get_submodule(path))
            rewritten = any(g["name"].startswith(f"{path}.") or g["name"] == path for g in report.graph_replaced)
            assert got is fp_type or rewritten, f"{path} (first/last executed layer) became {got.__name__}"
