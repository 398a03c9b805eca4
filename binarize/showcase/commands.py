"""The commands ``binarize demo`` and ``binarize publish``."""

from __future__ import annotations

import argparse
import json
import sys
import time

from binarize.cli import command, positive_int

__all__: list[str] = []


def _configure_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", metavar="DIR",
                        help="folder for report.md, report.json and side_by_side.png (default: ./demo_out)")
    parser.add_argument("--json", action="store_true", help="print the JSON report instead of the tables")


@command(
    "demo",
    help="upscale the held-out photos with the trained full-precision and BI-DiffSR zoo models, compare and cost them",
    configure=_configure_demo,
    description="Loads the trained x2 zoo models shipped with the package (zoo:fp-small-x2, zoo:bidiffsr-small-x2 "
    "and zoo:bidiffsr-small-x2-fp-init; no download), upscales the whole embedded held-out photos with a few DDIM "
    "steps (the binarized models on packed bits), prints the quality table (bicubic, full precision, BI-DiffSR: "
    "PSNR-Y per photo and mean, SSIM-Y, and each card's 50-step numbers) and the cost table (parameters, "
    "operations, checkpoint and packed bytes, packed speed), and writes report.md, report.json and side_by_side.png "
    "(every column captioned) into --out. The numbers are checked against the zoo cards. Under a minute on two "
    "CPU cores.",
)
def run_demo_command(args: argparse.Namespace) -> int:
    from binarize.showcase.demo import run_demo

    began = time.perf_counter()
    report = run_demo(args.out, echo=lambda line: print(line, file=sys.stderr))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(f"quality: {report.protocol()}\n")
        print(report.quality_table())
        print("\ncost\n")
        print(report.cost_table())
        print(f"\nmatches the zoo cards: {'yes' if report.matches_cards() else 'NO'}")
    print(f"wrote {', '.join(str(p) for p in report.files)} in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    return 0


def _configure_publish(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint written by `binarize train`")
    parser.add_argument("--name", help="zoo name (default: the experiment's name)")
    parser.add_argument("--zoo", metavar="DIR", help="zoo folder (default: the installed package's zoo)")
    parser.add_argument("--hardware", default="unknown hardware", metavar="TEXT",
                        help="where the model was trained, for the card (e.g. '2-core CPU, 1 thread')")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing zoo entry of the same name")
    parser.add_argument("--crop", type=positive_int, metavar="PX",
                        help="measure centred PX x PX crops of the held-out photos instead of the whole photos "
                             "(quicker for a large network; the card says so)")
    parser.add_argument("--trust-code", action="store_true",
                        help="allow a checkpoint whose model is a Python file (file.py:factory) to run that file")


@command(
    "publish",
    help="put a trained checkpoint into the zoo: compact copy, measured, with its result card",
    configure=_configure_publish,
    description="Writes ZOO/checkpoints/NAME.safetensors (weights only, float16 storage), measures that file on the "
    "held-out photos (the protocol of `binarize demo`) and writes its card, ZOO/cards/NAME.md and NAME.json, with "
    "the config, the training wall time from the run's log.jsonl, the quality against bicubic, the cost and the "
    "commands that reproduce it.",
)
def run_publish(args: argparse.Namespace) -> int:
    from binarize.showcase.cards import publish

    data = publish(args.checkpoint, name=args.name, zoo=args.zoo, hardware=args.hardware, overwrite=args.overwrite,
                   trust_code=args.trust_code, crop=args.crop)
    quality = data["quality"]
    print(f"published zoo:{data['name']}: PSNR-Y {quality['model']['psnr_y']:.2f} dB (bicubic "
          f"{quality['bicubic']['psnr_y']:.2f}), {data['cost']['checkpoint_bytes']:,} bytes")
    return 0
