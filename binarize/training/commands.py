"""The commands ``binarize train``, ``binarize eval`` and ``binarize upscale``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from binarize.cli import CommandError, command, non_negative_int, positive_int
from binarize.data import load_image, save_image
from binarize.diffusion.sampler import SIZE_MULTIPLE
from binarize.diffusion.tiles import MIN_TILE
from binarize.training.config import load_config

__all__: list[str] = []


def _configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment config (YAML); see the training documentation")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set optim.lr=1e-4 (repeatable)")
    parser.add_argument("--out", help="run folder (default: the config's `out`)")
    parser.add_argument("--steps", type=positive_int, metavar="N",
                        help="total training steps, 1 or more (default: the config's `steps`)")
    parser.add_argument("--no-resume", action="store_true", help="start afresh even if the run folder has checkpoints")
    parser.add_argument("--resume-weights-only", action="store_true",
                        help="resume from a checkpoint that lacks (complete) optimiser state, with a fresh Adam state")
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
    result = train(config, resume=not args.no_resume, progress=not args.no_progress, echo=_stderr,
                   weights_only=args.resume_weights_only)
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
    region = parser.add_mutually_exclusive_group()
    region.add_argument("--crop", type=positive_int, metavar="PX",
                        help="evaluate centred PX x PX crops of the embedded held-out photos instead of the whole "
                             "photos (quicker; the report says so)")
    region.add_argument("--full", action="store_true", help="whole photos (the default)")
    _add_sampling_arguments(parser)
    parser.add_argument("--out", default="eval_out", help="folder for eval.json, eval.md and eval.png")
    parser.add_argument("--json", action="store_true", help="print the JSON report")
    _add_trust_argument(parser)


@command(
    "eval",
    help="evaluate a checkpoint: PSNR-Y / SSIM-Y per image and mean, against bicubic",
    configure=_configure_eval,
)
def run_eval(args: argparse.Namespace) -> int:
    from binarize.training.evaluate import evaluate, load_model, sampler_for, test_images

    if args.crop is not None and args.data is not None:
        raise CommandError("--crop applies to the embedded held-out photos; an image folder (--data) is evaluated "
                           "whole: leave out --crop, or crop the folder's images yourself")
    model, checkpoint = load_model(_checkpoint_path(args.checkpoint), trust_code=args.trust_code)
    sampler = sampler_for(checkpoint.config, args.steps)  # a bad --steps fails before any work
    images = test_images(checkpoint.config.scale, args.data, args.lr_dir, args.crop)
    what = "whole images" if args.crop is None else f"centred {args.crop}x{args.crop} crops"
    title = (f"{checkpoint.config.name} (step {checkpoint.step}): {what}, x{checkpoint.config.scale}, "
             f"DDIM {sampler.steps} steps, seed {args.seed}")
    report = evaluate(model, checkpoint.config, images, steps=args.steps, seed=args.seed, tile=args.tile,
                      budget=args.max_memory, out=args.out, title=title)
    if args.json:
        print(json.dumps({**report.to_dict(), "protocol": {"crop": args.crop, "steps": sampler.steps,
                                                           "seed": args.seed, "scale": checkpoint.config.scale}}))
    else:
        print(report.markdown(title), end="")
    return 0


def _configure_upscale(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="the low-resolution image")
    parser.add_argument("output", help="where to write the result (PNG)")
    parser.add_argument("--model", required=True, help="a checkpoint of `binarize train`, or zoo:NAME")
    parser.add_argument("--scale", type=int, help="the upscaling factor (must match the model's; default: the model's)")
    _add_sampling_arguments(parser)
    parser.add_argument("--overwrite", action="store_true", help="allow OUTPUT to be the INPUT file itself")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar and no estimate")
    parser.add_argument("--packed", action="store_true",
                        help="run the binary layers on packed bits (binarize.deploy) and report the packed size and "
                             "speed against the float model")
    _add_trust_argument(parser)


def _add_trust_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-code", action="store_true",
                        help="allow a checkpoint whose model is a Python file (file.py:factory) to run that file")


def _add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """``--steps``, ``--tile``, ``--max-memory`` and ``--seed``, shared by eval and upscale."""
    parser.add_argument("--steps", type=positive_int, metavar="N",
                        help="DDIM steps, from 1 to the diffusion's steps (default: the model's config)")
    parser.add_argument("--tile", type=tile_size, default="auto", metavar="PX|auto",
                        help=f"run the network on overlapping tiles of PX x PX output pixels: a multiple of "
                             f"{SIZE_MULTIPLE}, at least {MIN_TILE}; auto (default) picks the largest tile that fits "
                             "--max-memory, or none when the whole image fits")
    parser.add_argument("--max-memory", type=gibibytes, metavar="GIB",
                        help="memory the sampling may use, in GiB, with --tile auto (default: half of the memory "
                             "available now)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the sampling noise")


def tile_size(text: str) -> int | str:
    """An argparse ``type`` for ``--tile``: ``auto`` or a multiple of the size multiple of at least
    :data:`~binarize.diffusion.tiles.MIN_TILE` pixels."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a tile side in pixels, got {text!r}") from None
    if value < MIN_TILE or value % SIZE_MULTIPLE:
        raise argparse.ArgumentTypeError(
            f"a tile side is a multiple of {SIZE_MULTIPLE} and at least {MIN_TILE} pixels (64, 128, 256, ...), "
            f"got {value}"
        )
    return value


def gibibytes(text: str) -> int:
    """An argparse ``type``: a positive amount of GiB, as bytes."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 2**40:
        raise argparse.ArgumentTypeError(f"expected a positive number of GiB such as 4 or 0.5, got {text!r}")
    return int(value * 2**30)


@command("upscale", help="super-resolve an image with a trained model", configure=_configure_upscale)
def run_upscale(args: argparse.Namespace) -> int:
    from binarize.diffusion.tiles import plan_tiles
    from binarize.training.evaluate import load_model, sampler_for, upscale_image

    _refuse_overwriting_the_input(Path(args.input), Path(args.output), args.overwrite)
    model, checkpoint = load_model(_checkpoint_path(args.model), trust_code=args.trust_code)
    config = checkpoint.config
    if args.scale is not None and args.scale != config.scale:
        raise CommandError(
            f"--scale {args.scale} does not match the model, which upscales by {config.scale}; "
            f"drop --scale or use a x{args.scale} model"
        )
    steps = sampler_for(config, args.steps).steps
    lr = load_image(args.input, min_size=2)
    shape = (1, 3, lr.shape[-2] * config.scale, lr.shape[-1] * config.scale)
    runner = _packed(model, config) if args.packed else model
    plan = plan_tiles(model, shape, steps, tile=args.tile, budget=args.max_memory, timed=runner)
    bar = None
    if not args.no_progress:
        _stderr(f"upscaling {args.input} ({lr.shape[-1]}x{lr.shape[-2]}, x{config.scale}): {plan.describe()}")
        from tqdm.auto import tqdm

        bar = tqdm(total=plan.tiles * steps, desc="upscale", unit="tile" if plan.tile else "step",
                   dynamic_ncols=True, file=sys.stderr)
    try:
        sr = upscale_image(runner, config, lr, steps=steps, tile=plan.tile, seed=args.seed,
                           on_forward=None if bar is None else bar.update)
    finally:
        if bar is not None:
            bar.close()
    path = save_image(sr, args.output)
    print(f"wrote {path} ({sr.shape[-1]}x{sr.shape[-2]}, x{config.scale})")
    return 0


def _packed(model: Any, config: Any) -> Any:
    """The packed form of a binarized denoiser, after one line comparing it with the float model."""
    from binarize.deploy import freeze
    from binarize.deploy.compare import compare_packed, denoiser_inputs

    if not _has_binary_layers(model):
        raise CommandError("--packed needs a binarized model; this checkpoint is full precision (recipe: null)")
    packed = freeze(model)
    size = 32 * config.scale
    _stderr(compare_packed(model, packed, denoiser_inputs(size)).describe(f"one evaluation at {size}x{size}"))
    return packed


def _has_binary_layers(model: Any) -> bool:
    from binarize.nn.layers import BinaryLayerMixin

    return any(isinstance(m, BinaryLayerMixin) for m in model.modules())


def _refuse_overwriting_the_input(source: Path, target: Path, overwrite: bool) -> None:
    same = source.resolve() == target.resolve() or (source.exists() and target.exists() and source.samefile(target))
    if same and not overwrite:
        raise CommandError(
            f"the output {str(target)!r} is the input image; choose another output path, or pass --overwrite to "
            "replace the input with the result"
        )


def _checkpoint_path(spec: str) -> Path:
    from binarize.training.model import resolve_checkpoint

    return resolve_checkpoint(spec)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)
