"""Binary layers and shipped recipes on a CUDA device (skipped where none is present).

These checks cover what CPU runs cannot: CUDA kernels (cuDNN convolutions), bf16 autocast and torch.compile with
Inductor's GPU code generation.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from binarize import available_recipes, binarize, measure_cost
from binarize.nn import BinaryConv2d, BinaryConvTranspose2d, BinaryLinear

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

ALL_ON = dict(weight_binarizer="ste", input_binarizer="approx_sign", scale="channel_mean_abs", input_shift=True,
              activation="rprelu", shortcut="auto")


@pytest.fixture(autouse=True)
def _deterministic_cudnn() -> None:
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2), (4, 8, 17, 17)),
        (nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"), (4, 8, 9, 9)),
        (nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1), (2, 8, 7, 7)),
        (nn.Linear(16, 16), (3, 5, 16)),
    ],
)
def test_all_off_is_bit_identical_on_cuda(layer: nn.Module, shape: tuple[int, ...]) -> None:
    layer = layer.cuda()
    binary_cls = {nn.Conv2d: BinaryConv2d, nn.ConvTranspose2d: BinaryConvTranspose2d, nn.Linear: BinaryLinear}
    binary = binary_cls[type(layer)].from_float(layer)
    assert binary.weight.is_cuda
    x = torch.randn(shape, device="cuda")
    assert torch.equal(binary(x), layer(x))
    on = binary_cls[type(layer)].from_float(layer, **ALL_ON)
    out = on(x.requires_grad_())
    out.sum().backward()
    assert out.shape == layer(x).shape and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("recipe", available_recipes())
@pytest.mark.parametrize("arch", ["resnet18", "vit_tiny_patch16_224"])
def test_recipes_train_on_cuda_in_fp32_and_bf16(arch: str, recipe: str) -> None:
    model = timm.create_model(arch, pretrained=False, num_classes=10).cuda()
    x = torch.randn(4, 3, 224, 224, device="cuda")
    binary = binarize(model, recipe, example_inputs=x)
    for autocast in (False, True):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            out = binary(x)
        assert out.shape == (4, 10)
        out.float().square().mean().backward()
        grads = [p.grad for p in binary.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        binary.zero_grad()


def test_compiled_binary_layer_matches_eager_on_cuda() -> None:
    torch._dynamo.reset()
    layer = BinaryConv2d.from_float(nn.Conv2d(16, 16, 3, padding=1).cuda(), **ALL_ON)
    compiled = torch.compile(layer, fullgraph=True)
    x = torch.randn(8, 16, 32, 32, device="cuda", requires_grad=True)
    eager_out = layer(x)
    eager_out.square().mean().backward()
    eager_grad = layer.weight.grad.clone()
    layer.zero_grad()
    compiled_out = compiled(x)
    compiled_out.square().mean().backward()
    torch.testing.assert_close(compiled_out, eager_out, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(layer.weight.grad, eager_grad, atol=1e-4, rtol=1e-4)


def test_cost_is_device_independent() -> None:
    model = binarize(timm.create_model("resnet18", pretrained=False), "reactnet")
    x = torch.zeros(1, 3, 224, 224)
    on_cpu = measure_cost(model, (x,))
    on_cuda = measure_cost(model.cuda(), (x.cuda(),))
    assert on_cuda.to_dict()["params_m"] == on_cpu.to_dict()["params_m"]
    assert on_cuda.to_dict()["ops_g"] == pytest.approx(on_cpu.to_dict()["ops_g"], rel=1e-9)


def test_training_and_sampling_on_cuda(tmp_path: Path) -> None:
    from binarize.training import load_config, load_model, train
    from binarize.training.evaluate import evaluate, test_images

    config = load_config({"name": "cuda", "model": "zoo:bidiffsr-unet-tiny", "recipe": "bidiffsr",
                          "data": {"patch": 16, "batch": 2}, "diffusion": {"sampling_steps": 2}, "steps": 2,
                          "checkpoint_every": 2, "out": str(tmp_path)})
    result = train(config, progress=False, device="cuda")
    assert next(result.model.parameters()).is_cuda and result.step == 2
    model, checkpoint = load_model(result.last_checkpoint)
    report = evaluate(model.cuda(), checkpoint.config, test_images(2, crop=32))
    assert all(torch.isfinite(torch.tensor(row["psnr_y"])) for row in report.rows)
