"""The command ``binarize export``: a trained checkpoint, or a model spec binarized with a recipe, as a packed file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from binarize.cli import CommandError, command, positive_int

__all__: list[str] = []


def _configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="MODEL_OR_CHECKPOINT",
                        help="a checkpoint written by `binarize train` (a file or zoo:NAME of a trained model), or a "
                        "model spec (timm:NAME, zoo:NAME, path/to/file.py:factory) with --recipe")
    parser.add_argument("out", metavar="OUT", help="the packed file to write (.safetensors)")
    parser.add_argument("--recipe", help="recipe for a model spec (a shipped name or a YAML file)")
    parser.add_argument("--size", type=positive_int, metavar="PX",
                        help="input size a model spec is built for (networks such as a ViT fix it)")
    parser.add_argument("--half", action="store_true", help="store the float parts as float16 (scales stay float32)")
    parser.add_argument("--trust-code", action="store_true",
                        help="allow a checkpoint or spec that builds its model by running a Python file")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


@command(
    "export",
    help="write a binarized model as a packed 1-bit file for deployment",
    configure=_configure_export,
    description="Write every binary weight as bits (plus per-channel scales), the float parts in float32 (or float16 "
    "with --half), the recipe and how to rebuild the architecture, to one safetensors file; binarize.deploy.load "
    "runs it on packed bits. From a checkpoint the trained weights are exported; from a model spec and --recipe, "
    "the freshly binarized network (its initial weights).",
)
def run_export(args: argparse.Namespace) -> int:
    from binarize.deploy.export import export, export_checkpoint

    target = Path(args.out)
    if target.exists() and not args.overwrite:
        raise CommandError(f"{target} exists; pass --overwrite to replace it")
    if target.exists() and _same_file(target, args.source):
        raise CommandError(f"{target} is the input itself; write the packed file elsewhere")
    checkpoint = _checkpoint(args.source)
    if checkpoint is not None:
        if args.recipe:
            raise CommandError("--recipe applies to a model spec; a checkpoint carries its own recipe")
        print(export_checkpoint(checkpoint, target, half=args.half, trust_code=args.trust_code))
        return 0
    model, source = _binarized_spec(args)
    print(export(model, target, half=args.half, source=source, recipe=args.recipe))
    print("(freshly binarized weights: export a trained checkpoint for a useful model)")
    return 0


def _same_file(target: Path, source: str) -> bool:
    candidate = Path(source)
    return candidate.exists() and candidate.resolve() == target.resolve()


def _binarized_spec(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The model spec binarized with ``--recipe`` (its initial weights), and its source."""
    if not args.recipe:
        raise CommandError(f"{args.source} is not a checkpoint; a model spec needs --recipe (e.g. --recipe reactnet)")
    from binarize.api import binarize
    from binarize.specs import resolve_model, untrusted_code

    if (refused := untrusted_code(args.source, args.trust_code, "the model spec")) is not None:
        raise CommandError(refused)
    spec = resolve_model(args.source, size=args.size)
    model = binarize(spec.model, args.recipe, example_inputs=spec.example_inputs(args.size)).eval()
    return model, {"model": args.source, "size": args.size}


def _checkpoint(text: str) -> Path | None:
    """The checkpoint file ``text`` names (a file, or ``zoo:NAME`` of a trained model), else ``None``."""
    if text.startswith("zoo:"):
        from binarize.zoo import TRAINED

        name = text[len("zoo:"):]
        return TRAINED.get(name).checkpoint if name in TRAINED else None
    path = Path(text)
    return path if path.is_file() and path.suffix == ".safetensors" else None
