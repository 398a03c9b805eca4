"""The ``binarize`` command line.

Subcommands live in :data:`COMMANDS`; a new one is a function registered with :func:`command` (its arguments are
declared by a ``configure(parser)`` function), so that adding ``train``, ``eval`` or ``bench`` never edits
:func:`main`. Every anticipated failure (a bad model spec, a bad recipe, ...) is a
:class:`~binarize.errors.BinarizeError`, printed as one ``binarize: error: ...`` line with exit code 2.

Examples:
    >>> main(["summary", "zoo:resnet8", "--json"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch
from torch import nn

from binarize._registry import Registry
from binarize.cost import CostReport, measure_cost
from binarize.coverage import explain_full_precision_weights
from binarize.errors import BinarizeError
from binarize.specs import ALLOWED_FORMS, resolve_model

__all__ = [
    "COMMANDS", "Command", "CommandError", "command", "main", "build_parser", "non_negative_int", "parse_input_shape",
    "positive_int",
]

PROG = "binarize"


class CommandError(BinarizeError):
    """A failure a command reports as one line (exit code 2) instead of a traceback."""


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, one-line help, argument declarations and the function that runs it."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""


#: Every subcommand, by name. Register new ones with :func:`command`.
COMMANDS: Registry[Command] = Registry("command")


def command(
    name: str, *, help: str, configure: Callable[[argparse.ArgumentParser], None], description: str = ""
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Register the decorated ``run(args) -> exit code`` function as the subcommand ``name``.

    Args:
        name: the subcommand (``binarize NAME ...``).
        help: one line shown in ``binarize --help``.
        configure: adds the subcommand's arguments to its parser.
        description: longer text for ``binarize NAME --help`` (defaults to ``help``).
    """

    def add(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS.register(name, Command(name, help, configure, run, description or help))
        return run

    return add


#: Modules that register further commands when imported (kept out of ``import binarize``: some are heavy).
COMMAND_MODULES: tuple[str, ...] = (
    "binarize.training.commands", "binarize.metrics", "binarize.bench.cli", "binarize.showcase.commands",
    "binarize.deploy.commands",
)


def _load_command_modules() -> None:
    for module in COMMAND_MODULES:
        importlib.import_module(module)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per registered command."""
    _load_command_modules()
    try:
        package_version = version("binarize")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
        package_version = "unknown"
    parser = argparse.ArgumentParser(
        prog=PROG, description="Turn full-precision PyTorch networks into binary networks with declarative recipes."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, cmd in COMMANDS.items():
        cmd_parser = sub.add_parser(name, help=cmd.help, description=cmd.description)
        cmd.configure(cmd_parser)
        cmd_parser.set_defaults(_run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (``sys.argv[1:]`` when None) and return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args._run(args))
    except SystemExit as exit_:  # argparse: --help, --version and usage errors
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    except BrokenPipeError:  # `binarize summary ... | head`: the reader went away, nothing left to say
        _silence_stdout()
        return 1
    except (BinarizeError, OSError) as error:
        message = " ".join(str(error).split("\n"))
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again."""
    try:
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (captured output)
        pass


# ----------------------------------------------------------------------------------------------------------------
# Shared argument helpers
# ----------------------------------------------------------------------------------------------------------------
def parse_input_shape(text: str) -> tuple[int, ...]:
    """``"1,3,32,32"`` (or ``1x3x32x32``) -> ``(1, 3, 32, 32)``; an argparse ``type``."""
    compact = text.replace(" ", "")
    parts = compact.split(",") if "," in compact else compact.split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise argparse.ArgumentTypeError(f"expected positive integers such as 1,3,32,32 (B,C,H,W), got {text!r}")
    return shape


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number of 1 or more.

    Examples:
        >>> positive_int("3")
        3
        >>> positive_int("0")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: expected a positive integer, got '0'
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value >= 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer below 2**63, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse ``type``: a whole number of 0 or more."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**63 - 1, got {text!r}")
    return value


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``MODEL [--size N | --input-shape B,C,H,W]``, shared by the commands that run a model."""
    parser.add_argument("model", metavar="MODEL", help=f"the network: {ALLOWED_FORMS}")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--size", type=positive_int, help="spatial input size (height = width); default: the model's")
    shape.add_argument(
        "--input-shape", type=parse_input_shape, metavar="B,C,H,W", help="full shape of the (first) input tensor"
    )


# ----------------------------------------------------------------------------------------------------------------
# binarize summary
# ----------------------------------------------------------------------------------------------------------------
def _configure_summary(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--recipe", metavar="R", help="a shipped recipe name (e.g. reactnet) or a YAML file")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def _measure(model: nn.Module, inputs: tuple, what: str) -> CostReport:
    try:
        return measure_cost(model, inputs)
    except BinarizeError:
        raise
    except Exception as error:  # a forward pass that does not accept these inputs
        shapes = ", ".join("x".join(map(str, t.shape)) for t in inputs if isinstance(t, torch.Tensor))
        raise CommandError(
            f"the forward pass of {what} failed on inputs of shape {shapes}: {type(error).__name__}: {error}; "
            f"pass --size or --input-shape to match what the model expects"
        ) from error


def summarize(
    model_spec: str,
    recipe: str | None = None,
    *,
    size: int | None = None,
    input_shape: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The data behind ``binarize summary``: cost after the recipe, the FP reference and the engine report.

    Args:
        model_spec: ``timm:NAME``, ``zoo:NAME`` or ``path/to/file.py:factory``.
        recipe: a recipe name or file; None for the full-precision figures only.
        size: spatial input size.
        input_shape: shape of the first input (exclusive with ``size``).

    Returns:
        A JSON-serialisable dict (see the CLI contract in ``DESIGN.md``).
    """
    model_size = size if size is not None else (input_shape[-1] if input_shape and len(input_shape) >= 3 else None)
    spec = resolve_model(model_spec, size=model_size)
    inputs = spec.example_inputs(size=size, input_shape=input_shape)
    fp = _measure(spec.model, inputs, spec.name)
    result = fp
    engine: dict[str, Any] = {
        "replaced": [], "skipped": [], "graph_replaced": [], "expanded": [], "notes": [], "untraced": None,
        "order_source": None,
    }
    if recipe is not None:
        from binarize.api import binarize  # imported late: the engine is not needed for FP figures

        binarized = binarize(spec.model, recipe, example_inputs=inputs)
        report = getattr(binarized, "binarize_report", None)
        if report is not None:
            engine.update(report.to_dict())
        result = _measure(binarized, inputs, f"{spec.name} binarized with {recipe!r}")
    shapes = [list(t.shape) for t in inputs if isinstance(t, torch.Tensor)]
    data = result.to_dict()
    full_precision_weights = explain_full_precision_weights(
        result.full_precision_weights, engine if recipe is not None else None
    )
    return {
        "model": spec.name,
        "recipe": recipe,
        "input_shape": shapes[0] if shapes else None,
        "input_shapes": shapes,
        **result.totals(),
        "params": result.params,
        "fp_reference": {**fp.totals(), "params": fp.params},
        "ratios": {
            "params": _ratio(fp.params_m, result.params_m),
            "ops": _ratio(fp.ops_g, result.ops_g),
        },
        "layers": data["layers"],
        "functional": data["functional"],
        "full_precision_weights": full_precision_weights,
        "replaced": list(engine.get("replaced", [])),
        "skipped": list(engine.get("skipped", [])),
        "graph_replaced": list(engine.get("graph_replaced", [])),
        "expanded": list(engine.get("expanded", [])),
        "notes": list(engine.get("notes", [])),
        "untraced": engine.get("untraced"),
        "order_source": engine.get("order_source"),
        "_table": result.format_table(),
    }


def _ratio(before: float, after: float) -> float | None:
    return before / after if after else None


def _format_summary(data: dict[str, Any]) -> str:
    shapes = ", ".join("x".join(map(str, s)) for s in data["input_shapes"])
    lines = [f"model   {data['model']}", f"recipe  {data['recipe'] or '(none: full precision)'}", f"input   {shapes}", ""]
    lines.append(data["_table"])
    if data["recipe"] is not None:
        ref = data["fp_reference"]
        ratios = data["ratios"]
        lines += [
            "",
            "full-precision reference (before the recipe):",
            f"params  {ref['params_m']:10.4f} M   ops {ref['ops_g']:10.4f} G",
            f"reduction: params x{_fmt_ratio(ratios['params'])}, ops x{_fmt_ratio(ratios['ops'])}",
            _coverage_line(data),
            "",
            f"replaced {len(data['replaced'])} layer(s), skipped {len(data['skipped'])}",
        ]
        lines += [
            f"  graph rewrite {g['name']}: {g['old_types']} => {g['new_type']}"
            f" ({'function-preserving' if g['function_preserving'] else 'not function-preserving'})"
            for g in data["graph_replaced"]
        ]
        lines += [f"  expanded {e['name']}: {e['old_type']} => {e['new_type']} ({e['reason']})" for e in data["expanded"]]
        lines += [f"  untraced {u['name'] or '<root>'} ({u['type']}): {u['reason']}" for u in data["untraced"] or []]
        lines += [f"  skipped {s.get('name')} ({s.get('type')}): {s.get('reason')}" for s in data["skipped"]]
        lines += [f"  full precision {w['name']} ({w['macs']:,} MACs): {w['reason']}"
                  for w in data["full_precision_weights"] if w["reason"] != _skipped_reason(data, w["module"])]
    return "\n".join(lines)


def _skipped_reason(data: dict[str, Any], module: str) -> str | None:
    """The skipped entry's reason for ``module`` (already printed as a skipped layer), or ``None``."""
    return next((s.get("reason") for s in data["skipped"] if s.get("name") == module), None)


def _coverage_line(data: dict[str, Any]) -> str:
    """``coverage: 93.1% of layer MACs binary; 4 weights stay in full precision (the largest: ...)``."""
    coverage = data["coverage"]
    weights = data["full_precision_weights"]
    line = "coverage: " + ("n/a (no layer MACs)" if coverage is None else f"{100 * coverage:.1f}% of layer MACs binary")
    if not weights:
        return line + "; every layer weight is binary"
    largest = weights[0]
    return (f"{line}; {len(weights)} weight(s) stay in full precision (the largest by MACs: {largest['name']}, "
            f"{largest['reason']}); --json lists them all")


def _fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


@command(
    "summary",
    help="parameters and operations of a model, before and after a recipe",
    configure=_configure_summary,
    description=(
        "Resolve MODEL, apply the recipe (if any) and print the cost of one forward pass in the paper's convention: "
        "params = FP params + binary params / 32, ops = FP MACs + binary MACs / 64 + normalisation ops."
    ),
)
def run_summary(args: argparse.Namespace) -> int:
    """``binarize summary``: print the cost table (or one JSON object with ``--json``)."""
    data = summarize(args.model, args.recipe, size=args.size, input_shape=args.input_shape)
    if args.json:
        print(json.dumps({k: v for k, v in data.items() if not k.startswith("_")}, indent=2))
    else:
        print(_format_summary(data))
    return 0
