"""``binarize bench``: the overhead of binarized training against the full-precision twin, and the conversion cost.

``binarize bench overhead`` times a training step of a binarized model and of its full-precision twin and prints
the ratios (:func:`~binarize.bench.measure_overhead`); ``binarize bench rewrite`` times the conversion itself
against one forward pass (:func:`~binarize.bench.measure_rewrite`). Both print ratios, never pass/fail verdicts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from binarize._files import write_text_atomic
from binarize._threads import cpu_threads
from binarize.bench.overhead import DTYPES, measure_overhead
from binarize.bench.quality import QUALITY_MODES, measure_quality
from binarize.bench.rewrite import measure_rewrite
from binarize.cli import CommandError, command, non_negative_int, positive_int
from binarize.errors import BinarizeError
from binarize.specs import ALLOWED_FORMS

__all__ = ["run_bench"]


def _common(parser: argparse.ArgumentParser, model: str, recipe: str) -> None:
    parser.add_argument("--model", default=model, metavar="SPEC", help=f"the network, {ALLOWED_FORMS} "
                        f"(default: {model})")
    parser.add_argument("--recipe", default=recipe, metavar="R", help=f"a recipe name or YAML file (default: {recipe})")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="CPU threads for torch (default: torch's own choice)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    overhead = sub.add_parser(
        "overhead",
        help="time and peak memory of a binarized training step against its full-precision twin",
        description=(
            "Binarize MODEL with the recipe and, separately, with its full-precision twin (the same recipe with the "
            "binarizers and the scale switched off: shifts, RPReLU, shortcuts and graph rewrites stay). Time a "
            "training step (forward, L1 loss, backward, Adam) of each, in turns, as medians after warm-up, and the time "
            "ratio as the median of the per-turn ratios; measure the peak memory of one step of each; print the "
            "ratios binary / twin."
        ),
    )
    _common(overhead, "zoo:bidiffsr-unet-small", "bidiffsr")
    overhead.add_argument("--size", type=positive_int, default=64, metavar="N", help="input size (default: 64)")
    overhead.add_argument("--batch", type=positive_int, default=4, metavar="B", help="batch size (default: 4)")
    overhead.add_argument("--dtype", choices=list(DTYPES), default="fp32", help="parameter dtype (default: fp32)")
    overhead.add_argument("--compile", action="store_true", help="run both networks through torch.compile")
    overhead.add_argument("--steps", type=positive_int, default=30, metavar="N",
                          help="timed steps per network (default: 30)")
    overhead.add_argument("--warmup", type=non_negative_int, default=3, metavar="N",
                          help="untimed steps per network first (default: 3)")
    overhead.set_defaults(_bench=_run_overhead)
    rewrite = sub.add_parser(
        "rewrite",
        help="time of binarize() itself against one forward pass of the model",
        description=(
            "Time binarize(MODEL, recipe) (including its deep copy, also timed alone) and one forward pass of MODEL "
            "(eval mode, no gradients), as medians, and print their ratio."
        ),
    )
    _common(rewrite, "timm:resnet50", "reactnet")
    rewrite.add_argument("--size", type=positive_int, metavar="N", help="input size (default: the model's)")
    rewrite.add_argument("--repeats", type=positive_int, default=3, metavar="N",
                         help="timed repetitions (default: 3)")
    rewrite.set_defaults(_bench=_run_rewrite)
    quality = sub.add_parser(
        "quality",
        help="the same diffusion SR UNet trained under each recipe for an equal budget, compared",
        description=(
            "Train the mode's UNet under full precision and every recipe of the mode (the paper's methods and "
            "ablations) for the same number of steps, measure each on the held-out photos (denoising loss; PSNR-Y / "
            "SSIM-Y of DDIM samples in the full mode) and check the paper's orderings. Runs live in OUT/LABEL and "
            "resume from their checkpoints; a finished run is only read back."
        ),
    )
    quality.add_argument("--mode", choices=list(QUALITY_MODES), default="quick",
                         help="quick: a smoke run of a few steps; full: every method and ablation (default: quick)")
    quality.add_argument("--runs", nargs="+", metavar="LABEL", help="only these runs (fp or recipe names)")
    quality.add_argument("--steps", type=positive_int, metavar="N", help="steps per run (default: the mode's)")
    quality.add_argument("--jobs", type=positive_int, default=1, metavar="N", help="runs trained at the same time")
    quality.add_argument("--out", default="bench_quality", metavar="DIR",
                         help="folder of the runs and of quality.json (default: bench_quality)")
    quality.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    quality.add_argument("--json", action="store_true", help="print one JSON object")
    quality.set_defaults(_bench=_run_quality, threads=None, model="the quality benchmark's UNet")
    deploy = sub.add_parser(
        "deploy",
        help="inference on packed bits against the float model and the fake-quantised one",
        description=(
            "Binarize MODEL with the recipe; time the float network (PyTorch eager), the fake-quantised binary "
            "network and its packed form (binarize.deploy.freeze) in turns, batch 1, at each thread count, as "
            "medians with the ratios as medians of per-round ratios; then each packed layer alone against a float "
            "layer of the same shape; and the sizes of the float weights and of the packed file."
        ),
    )
    deploy.add_argument("--model", default="timm:resnet18", metavar="SPEC",
                        help=f"the network, {ALLOWED_FORMS} (default: timm:resnet18)")
    deploy.add_argument("--recipe", default="reactnet", metavar="R", help="a recipe name or YAML file (default: "
                        "reactnet)")
    deploy.add_argument("--size", type=positive_int, metavar="N", help="input size (default: the model's)")
    deploy.add_argument("--threads", dest="thread_counts", type=positive_int, nargs="+", default=[1, 2], metavar="N",
                        help="thread counts to time (default: 1 2)")
    deploy.add_argument("--repeats", type=positive_int, default=10, metavar="N",
                        help="timed rounds per measurement (default: 10)")
    deploy.add_argument("--no-layers", action="store_true", help="skip the per-layer table")
    deploy.add_argument("--json", action="store_true", help="print one JSON object")
    deploy.set_defaults(_bench=_run_deploy, device="cpu", threads=None)


def _run_overhead(args: argparse.Namespace) -> Any:
    return measure_overhead(
        args.model, args.recipe, size=args.size, batch=args.batch, device=args.device, dtype=args.dtype,
        compile=args.compile, steps=args.steps, warmup=args.warmup,
    )


def _run_deploy(args: argparse.Namespace) -> Any:
    from binarize.bench.deploy import measure_deploy

    return measure_deploy(args.model, args.recipe, size=args.size, threads=tuple(args.thread_counts), repeats=args.repeats,
                          layers=not args.no_layers)


def _run_quality(args: argparse.Namespace) -> Any:
    echo = (lambda _: None) if args.json else (lambda line: print(line, file=sys.stderr))
    result = measure_quality(args.mode, out=args.out, labels=args.runs, steps=args.steps, jobs=args.jobs,
                             device=args.device, echo=echo)
    path = Path(args.out) / "quality.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def _run_rewrite(args: argparse.Namespace) -> Any:
    return measure_rewrite(args.model, args.recipe, size=args.size, device=args.device, repeats=args.repeats)


@command(
    "bench",
    help="benchmarks: training overhead against the full-precision twin, conversion time, quality per recipe, "
    "packed inference",
    configure=_configure,
    description=(
        "Benchmarks that print ratios: `binarize bench overhead` (a binarized training step against its "
        "full-precision twin, time and peak memory) and `binarize bench rewrite` (binarize() against one forward "
        "pass), `binarize bench quality` (the same diffusion SR UNet trained under each recipe, compared) and "
        "`binarize bench deploy` (inference on packed bits against the float model). See the "
        "performance and BI-DiffSR pages of the documentation."
    ),
)
def run_bench(args: argparse.Namespace) -> int:
    """``binarize bench overhead|rewrite|quality``: print the measurement (one JSON object with ``--json``)."""
    try:
        with cpu_threads(args.threads):
            result = args._bench(args)
    except BinarizeError:
        raise
    except (RuntimeError, TypeError, ValueError) as error:  # a model that does not run on these inputs
        raise CommandError(f"the benchmark of {args.model} failed: {type(error).__name__}: {error}") from error
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.format())
    return 0
