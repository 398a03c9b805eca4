"""The commands ``binarize train``, ``binarize eval`` and ``binarize upscale``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from binarize.cli import CommandError, command
from binarize.data import load_image, save_image
from binarize.training.config import load_config

__all__: list[str] = []


def _configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment config (YAML); see the training documentation")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set optim.lr=1e-4 (repeatable)")
    parser.add_argument("--out", help="run folder (default: the config's `out`)")
    parser.add_argument("--steps", type=int, help="total training steps (default: the config's `steps`)")
    parser.add_argument("--no-resume", action="store_true", help="start afresh even if the run folder has checkpoints")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


@command(
    "train",
    help="train a (binarized) diffusion SR model from an experiment config",
    configure=_configure_train,
    description="Train a diffusion super-resolution model: the config names the model, the recipe (or null for full "
    "precision), the data (the embedded photos by default), the diffusion and the optimiser. Checkpoints "
    "(safetensors, with the config and the recipe) go to OUT/checkpoints and the run resumes from the latest one; "
    "metrics go to OUT/log.jsonl. Under `torchrun --nproc_per_node N -m binarize train ...` it trains with "
    "DistributedDataParallel.",
)
def run_train(args: argparse.Namespace) -> int:
    from binarize.training.trainer import train

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"out={json.dumps(args.out)}")
    if args.steps is not None:
        overrides.append(f"steps={args.steps}")
    config = load_config(args.config, overrides)
    result = train(config, resume=not args.no_resume, progress=not args.no_progress, echo=_stderr)
    if result.losses:
        print(f"trained {config.name} to step {result.step}: last loss {result.losses[-1]:.5f}, checkpoint "
              f"{result.last_checkpoint}")
    else:
        print(f"{config.name} is already trained to step {result.step} ({result.last_checkpoint})")
    return 0


def _configure_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint written by `binarize train`, or zoo:NAME (a trained zoo model)")
    parser.add_argument("--data", help="HR image folder (default: the embedded held-out photos)")
    parser.add_argument("--lr-dir", help="matching LR images (default: bicubic downscaling of the HR images)")
    parser.add_argument("--full", action="store_true", help="whole embedded photos instead of their centred crops")
    parser.add_argument("--steps", type=int, help="DDIM steps (default: the checkpoint's config)")
    parser.add_argument("--tile", type=int, help="run the network on tiles of this size (bounds memory)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling noise")
    parser.add_argument("--out", default="eval_out", help="folder for eval.json, eval.md and eval.png")
    parser.add_argument("--json", action="store_true", help="print the JSON report")


@command(
    "eval",
    help="evaluate a checkpoint: PSNR-Y / SSIM-Y per image and mean, against bicubic",
    configure=_configure_eval,
)
def run_eval(args: argparse.Namespace) -> int:
    from binarize.training.data import HELD_OUT_CROP
    from binarize.training.evaluate import evaluate, load_model, test_images

    model, checkpoint = load_model(_checkpoint_path(args.checkpoint))
    images = test_images(checkpoint.config.scale, args.data, args.lr_dir, None if args.full else HELD_OUT_CROP)
    report = evaluate(model, checkpoint.config, images, steps=args.steps, seed=args.seed, tile=args.tile,
                      out=args.out, title=f"{checkpoint.config.name} (step {checkpoint.step})")
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(report.markdown(f"{checkpoint.config.name} (step {checkpoint.step})"), end="")
    return 0


def _configure_upscale(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="the low-resolution image")
    parser.add_argument("output", help="where to write the result (PNG)")
    parser.add_argument("--model", required=True, help="a checkpoint of `binarize train`, or zoo:NAME")
    parser.add_argument("--scale", type=int, help="the upscaling factor (must match the model's; default: the model's)")
    parser.add_argument("--steps", type=int, help="DDIM steps (default: the model's config)")
    parser.add_argument("--tile", type=int, help="run the network on tiles of this size (bounds memory)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling noise")


@command("upscale", help="super-resolve an image with a trained model", configure=_configure_upscale)
def run_upscale(args: argparse.Namespace) -> int:
    from binarize.training.evaluate import load_model, upscale_image

    model, checkpoint = load_model(_checkpoint_path(args.model))
    if args.scale is not None and args.scale != checkpoint.config.scale:
        raise CommandError(
            f"--scale {args.scale} does not match the model, which upscales by {checkpoint.config.scale}; "
            f"drop --scale or use a x{args.scale} model"
        )
    lr = load_image(args.input, min_size=2)
    sr = upscale_image(model, checkpoint.config, lr, steps=args.steps, tile=args.tile, seed=args.seed)
    path = save_image(sr, args.output)
    print(f"wrote {path} ({sr.shape[-1]}x{sr.shape[-2]}, x{checkpoint.config.scale})")
    return 0


def _checkpoint_path(spec: str) -> Path:
    from binarize.training.model import resolve_checkpoint

    return resolve_checkpoint(spec)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)
