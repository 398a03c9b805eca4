"""binarize() on models as users bring them: in-place activations after binary layers, compiled and TorchScript
models, tied weights."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
import timm
import torchvision
from torch import nn

from binarize import binarize
from binarize.errors import BinarizeError
from binarize.nn import BinaryConv2d, BinaryLinear

ALL_LINEAR = {"name": "all-linear", "rules": [{"select": {"type": "Linear"}, "binarize": {}}]}


@pytest.mark.parametrize("activation", [None, "rprelu"])
@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_an_in_place_activation_after_a_binary_layer_gets_the_same_gradients(activation: str | None, layer: str) -> None:
    torch.manual_seed(0)
    options = {"input_binarizer": "approx_sign", "weight_binarizer": "ste", "scale": "channel_mean_abs",
               "input_shift": True, "activation": activation}
    if layer == "linear":
        binary, x = BinaryLinear.from_float(nn.Linear(6, 10), **options), torch.randn(2, 3, 6)
    else:
        binary, x = BinaryConv2d.from_float(nn.Conv2d(4, 6, 3), **options), torch.randn(2, 4, 5, 5)
    grads = []
    for inplace in (False, True):
        binary.zero_grad()
        x_ = x.clone().requires_grad_()
        F.hardswish(binary(x_), inplace=inplace).square().sum().backward()
        grads.append([x_.grad, *(p.grad for p in binary.parameters())])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("recipe", ["reactnet", "reactnet-ds"])
def test_torchvision_mobilenet_v3_small_trains(recipe: str) -> None:
    torch.manual_seed(0)
    model, x = torchvision.models.mobilenet_v3_small(num_classes=10), torch.randn(2, 3, 64, 64)
    binary = binarize(model, recipe, example_inputs=x).train()
    optimizer = torch.optim.SGD(binary.parameters(), lr=0.01)
    loss = F.cross_entropy(binary(x), torch.tensor([1, 2]))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and any(isinstance(m, BinaryLinear) for m in binary.modules())


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 3, 1))


def test_a_compiled_model_is_converted_through_its_original_module() -> None:
    torch.manual_seed(0)
    model = _net()
    compiled = torch.compile(model)
    x = torch.randn(1, 3, 8, 8)
    binary = binarize(compiled, "reactnet", example_inputs=x)
    assert not hasattr(binary, "_orig_mod") and isinstance(binary[2], BinaryConv2d)
    assert any("torch.compile" in note for note in binary.binarize_report.notes)
    assert "note: the model was compiled with torch.compile" in str(binary.binarize_report)
    binary(x).sum().backward()
    assert isinstance(model[2], nn.Conv2d)  # the user's model is untouched


def test_torchscript_modules_get_a_clear_error() -> None:
    with warnings.catch_warnings():  # torch 2.14 deprecates TorchScript; users still bring such modules
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(_net())
    with pytest.raises(BinarizeError, match="TorchScript module.*Binarize the eager nn.Module, then script or trace"):
        binarize(scripted, "reactnet")


class TiedAutoencoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 16)
        self.encode, self.middle, self.decode = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 16)
        self.decode.weight = self.encode.weight  # tied layers
        self.head = nn.Linear(16, 20, bias=False)
        self.head.weight = self.embed.weight  # an output projection tied to the embedding

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.decode(self.middle(self.encode(self.embed(tokens)))))


def test_tied_weights_stay_tied() -> None:
    torch.manual_seed(0)
    model, tokens = TiedAutoencoder(), torch.randint(0, 20, (2, 5))
    binary = binarize(model, ALL_LINEAR)
    assert isinstance(binary.decode, BinaryLinear) and isinstance(binary.head, BinaryLinear)
    assert binary.decode.weight is binary.encode.weight and binary.head.weight is binary.embed.weight
    assert sum(p.numel() for p in binary.parameters()) == sum(p.numel() for p in model.parameters())
    binary(tokens).square().mean().backward()
    assert binary.embed.weight.grad is not None and binary.embed.weight.grad.abs().sum() > 0
    assert model.decode.weight is model.encode.weight and not isinstance(model.head, BinaryLinear)


def test_a_tie_that_cannot_be_kept_is_noted() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
    model[2].bias = model[0].bias
    recipe = {"name": "fold", "defaults": {"activation": "rprelu", "fold_bias": True},
              "rules": [{"select": {"type": "Linear"}, "binarize": {}}]}
    binary = binarize(model, recipe)
    assert [n for n in binary.binarize_report.notes if "bias was tied" in n] == [
        "0.bias was tied to another layer's parameter; its binary layer holds no such parameter, so that tie is not kept",
        "2.bias was tied to another layer's parameter; its binary layer holds no such parameter, so that tie is not kept",
    ]


def test_timm_levit_with_a_filled_attention_bias_cache_converts() -> None:
    """An eval forward with gradients on leaves LeViT's attention-bias cache holding non-leaf tensors."""
    torch.manual_seed(0)
    model = timm.create_model("levit_128s", pretrained=False, num_classes=10).eval()
    x = torch.randn(2, 3, 224, 224)  # two samples: the head's batch norm trains below
    model(x)  # fills attention_bias_cache with tensors that have autograd history
    assert any(getattr(m, "attention_bias_cache", None) for m in model.modules())
    binary = binarize(model, "reactnet", example_inputs=x)
    assert len(binary.binarize_report.replaced) > 40
    binary.train()
    binary(x).logsumexp(-1).sum().backward()


def test_a_model_on_the_meta_device_converts_and_runs_on_meta_tensors() -> None:
    with torch.device("meta"):
        model = nn.Sequential(_net(), nn.Flatten(), nn.Linear(3 * 64, 10))
    x = torch.randn(2, 3, 8, 8, device="meta")
    binary = binarize(model, "reactnet", example_inputs=x)
    assert isinstance(binary[0][2], BinaryConv2d) and binary[0][2].weight.device.type == "meta"
    y = binary(x)  # shape checking without memory
    assert y.shape == (2, 10) and y.device.type == "meta"
    y.sum().backward()
    binary.to_empty(device="cpu")  # then materialise, as for any meta-initialised model
    assert binary(torch.randn(2, 3, 8, 8)).shape == (2, 10)
