"""``binarize bench quality``: the same diffusion SR UNet trained under each shipped recipe, for an equal budget.

Every run is an ordinary ``binarize train`` experiment (the mode's base experiment with ``recipe`` and ``steps``
overridden), so runs resume from their checkpoints when the benchmark is started again, and a finished run is only
measured, never retrained. Each run is judged by

* the held-out denoising loss (:func:`binarize.diffusion.denoising_loss`: fixed timesteps and noise on the centred
  crops of the held-out photos): lower is better, and it separates methods long before sampled images do;
* in modes that sample, PSNR-Y / SSIM-Y of DDIM samples of the whole held-out photos against bicubic upsampling;
* the cost of one forward pass in the paper's convention (:func:`binarize.measure_cost`).

As in the paper's comparison, every method binarizes the same layers: the earlier methods (``bnn`` ... ``bbcu``)
keep their binarizers, scales, shifts, activations and shortcuts but take BI-DiffSR's layer selection (every
convolution except the stem, the output, the self-attention and the two highest-resolution decoder levels), with the
network's own downsampling, upsampling and skip fusions binarized as plain convolutions. BI-DiffSR's ablations share
that selection by construction.

The paper's comparison (BI-DiffSR, NeurIPS 2024, Tables 1 and 2) is restated as :data:`PAPER_CLAIMS`; the benchmark
checks each claim on its own measurements and prints which hold, so a disagreement is visible, never hidden.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from binarize._files import write_text_atomic
from binarize._threads import cpu_threads
from binarize.errors import BinarizeError

__all__ = ["PAPER_CLAIMS", "comparison_recipe", "QUALITY_MODES", "QualityMode", "QualityResult", "measure_quality", "run_label"]

#: The label of the full-precision run (recipe ``null``).
FP_LABEL = "fp"

#: The earlier binarization methods of the paper's Table 2, then BI-DiffSR.
METHODS: tuple[str, ...] = ("bnn", "dorefa", "xnor", "irnet", "reactnet", "bbcu", "bidiffsr")

#: The paper's Table 1 ablations, from the plain binary UNet to the full method (each adds one part).
ABLATION_LADDER: tuple[str, ...] = (
    "bidiffsr-no-shortcut", "bidiffsr-identity", "bidiffsr-cp", "bidiffsr-cs", "bidiffsr",
)

#: Table 1's timestep-module ablation: either module alone (both are below "none", i.e. ``bidiffsr-cs``).
TIMESTEP_ABLATIONS: tuple[str, ...] = ("bidiffsr-tar", "bidiffsr-taa")


@dataclass(frozen=True)
class QualityMode:
    """One way to run the benchmark.

    Attributes:
        experiment: the shipped experiment every run starts from (model, data, diffusion, optimiser).
        steps: training steps of every run (the equal budget).
        labels: the runs: ``fp`` (full precision) or a recipe name.
        sample: also sample the held-out photos with DDIM and measure PSNR-Y / SSIM-Y.
        overrides: further config overrides (``KEY=VALUE``) for every run.
    """

    experiment: str
    steps: int
    labels: tuple[str, ...]
    sample: bool
    overrides: tuple[str, ...] = ()


#: What every run of the full comparison uses, whatever the zoo experiment it starts from says: the paper's noise
#: schedule (linear betas from 1e-6 to 1e-2 over T = 2000) and a constant learning rate.
COMPARISON_SETTINGS: tuple[str, ...] = (
    "diffusion.steps=2000", "diffusion.beta_start=1.0e-6", "diffusion.beta_end=0.01", "optim.schedule=constant",
    "optim.warmup=0",
)

#: ``quick``: a smoke run in about a minute on two CPU cores (the tiny UNet, a few steps: numbers mean nothing);
#: ``full``: the small UNet of the zoo's experiments, every method and ablation, 2000 steps, sampled PSNR.
QUALITY_MODES: dict[str, QualityMode] = {
    "quick": QualityMode(
        "bidiffsr-tiny-x2", steps=4, labels=(FP_LABEL, "bnn", "reactnet", "bidiffsr"), sample=False,
        overrides=("data.batch=2", "checkpoint_every=2"),
    ),
    "full": QualityMode(
        "bidiffsr-small-x2", steps=2000, labels=(FP_LABEL, *METHODS, *ABLATION_LADDER[:-1], *TIMESTEP_ABLATIONS),
        sample=True,
        overrides=("checkpoint_every=500", "eval_every=500", *COMPARISON_SETTINGS),
    ),
}


def run_label(recipe: str | None) -> str:
    """The label of a run: ``fp`` for full precision, else the recipe's name."""
    return FP_LABEL if recipe is None else recipe


def _recipe_of(label: str) -> str | None:
    return None if label == FP_LABEL else label


@dataclass
class QualityResult:
    """Every run's measurements, the bicubic baseline and the paper's claims checked against them."""

    mode: str
    steps: int
    device: str
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    bicubic: dict[str, float] | None = None
    failed: dict[str, str] = field(default_factory=dict)

    def metric(self) -> tuple[str, bool]:
        """The key that ranks the runs and whether higher is better: PSNR-Y when sampled, else the held-out loss."""
        if self.runs and all("psnr_y" in run for run in self.runs.values()):
            return "psnr_y", True
        return "held_out_loss", False

    def claims(self) -> list[dict[str, Any]]:
        """Each claim of :data:`PAPER_CLAIMS` that this result can check, with whether it holds."""
        checked = []
        for claim in PAPER_CLAIMS:
            if not set(claim.labels) <= set(self.runs):
                continue
            for key, higher in dict.fromkeys([self.metric(), ("held_out_loss", False)]):
                score = {label: run[key] if higher else -run[key] for label, run in self.runs.items()}
                checked.append({"claim": claim.text, "metric": key, "holds": bool(claim.check(score)),
                                "values": {label: self.runs[label][key] for label in claim.labels}})
        return checked

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "steps": self.steps, "device": self.device, "bicubic": self.bicubic,
                "runs": self.runs, "failed": self.failed, "claims": self.claims()}

    def format(self) -> str:
        """The table (one row per run, best first by the ranking metric) and the checked claims."""
        key, higher = self.metric()
        order = sorted(self.runs, key=lambda label: self.runs[label][key], reverse=higher)
        sampled = key == "psnr_y"
        header = ["run", "params M", "OPs G", "held-out loss"] + (["PSNR-Y", "SSIM-Y"] if sampled else []) + ["train s"]
        rows = []
        for label in order:
            run = self.runs[label]
            row = [label, f"{run['params_m']:.4f}", f"{run['ops_g']:.4f}", f"{run['held_out_loss']:.5f}"]
            if sampled:
                row += [f"{run['psnr_y']:.2f}", f"{run['ssim_y']:.4f}"]
            rows.append([*row, f"{run['train_s']:.0f}"])
        if sampled and self.bicubic is not None:
            rows.append(["bicubic", "", "", "", f"{self.bicubic['psnr_y']:.2f}", f"{self.bicubic['ssim_y']:.4f}", ""])
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = [f"bench quality ({self.mode}: {self.steps} steps per run, {self.device}; ranked by {key}; params and "
                 "OPs of one evaluation at the held-out crop size)",
                 "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        lines += [f"{label}: FAILED ({error})" for label, error in self.failed.items()]
        claims = self.claims()
        if claims:
            lines += ["", "the paper's claims on these runs:"]
            lines += [f"  [{'holds' if c['holds'] else 'FAILS'}] {c['claim']} ({c['metric']})" for c in claims]
        return "\n".join(lines)


@dataclass(frozen=True)
class PaperClaim:
    """One ordering the paper reports, as a predicate over scores (higher is better)."""

    text: str
    labels: tuple[str, ...]
    check: Callable[[dict[str, float]], bool]


def _best(label: str, others: Sequence[str]) -> Callable[[dict[str, float]], bool]:
    return lambda score: all(score[label] > score[other] for other in others if other != label)


def _behind(slow: Sequence[str], others: Sequence[str]) -> Callable[[dict[str, float]], bool]:
    return lambda score: max(score[s] for s in slow) < min(score[o] for o in others)


def _increasing(ladder: Sequence[str]) -> Callable[[dict[str, float]], bool]:
    return lambda score: all(score[a] < score[b] for a, b in zip(ladder, ladder[1:]))


_MIDDLE = ("xnor", "reactnet", "bbcu", "bidiffsr")  # IRNet's place differs between the paper's test sets

#: The orderings of the paper's Tables 1 and 2 (x2; Table 2 by PSNR on all four test sets).
PAPER_CLAIMS: tuple[PaperClaim, ...] = (
    PaperClaim("full precision is best", (FP_LABEL, *METHODS), _best(FP_LABEL, METHODS)),
    PaperClaim("BI-DiffSR is the best binary method", METHODS, _best("bidiffsr", METHODS)),
    PaperClaim("BI-DiffSR beats ReActNet, BBCU and XNOR", ("bidiffsr", "reactnet", "bbcu", "xnor"),
               _best("bidiffsr", ("reactnet", "bbcu", "xnor"))),
    PaperClaim("BNN and DoReFa are behind XNOR, ReActNet, BBCU and BI-DiffSR", ("bnn", "dorefa", *_MIDDLE),
               _behind(("bnn", "dorefa"), _MIDDLE)),
    PaperClaim("each ablation step helps (no shortcut < identity < CP-Down/Up < CS-Fusion < TaR+TaA)", ABLATION_LADDER,
               _increasing(ABLATION_LADDER)),
    PaperClaim("TaR or TaA alone is below neither (CS-Fusion) and below both", ("bidiffsr-cs", *TIMESTEP_ABLATIONS,
               "bidiffsr"), lambda s: max(s["bidiffsr-tar"], s["bidiffsr-taa"]) < min(s["bidiffsr-cs"], s["bidiffsr"])),
)


#: The recipe whose layer selection (its ``rules``) every method of the comparison takes.
SELECTION_RECIPE = "bidiffsr"


def comparison_recipe(label: str) -> dict[str, Any] | None:
    """The recipe of a run as plain data: ``None`` for ``fp``; a shipped recipe of the BI-DiffSR family as is; any
    other recipe extended with :data:`SELECTION_RECIPE`'s rules (same binarized layers for every method)."""
    from binarize.recipe import load_recipe

    recipe = _recipe_of(label)
    if recipe is None:
        return None
    own = load_recipe(recipe).to_dict()
    selection = load_recipe(SELECTION_RECIPE).to_dict()
    if own.get("timestep") is not None or own["rules"] == selection["rules"]:
        return own
    return load_recipe({"extends": recipe, "name": recipe, "replace_rules": True, "rules": selection["rules"]}).to_dict()


def _run_config(mode: QualityMode, label: str, steps: int, out: Path) -> Any:
    from binarize.training.config import load_config

    overrides = [*mode.overrides, f"recipe={json.dumps(comparison_recipe(label))}", f"steps={steps}",
                 f"name=quality-{label}", f"out={json.dumps(str(out / label))}"]
    return load_config(mode.experiment, overrides)


def measure_run(mode_name: str, label: str, steps: int, out: str, device: str | None, threads: int | None
                ) -> dict[str, Any]:
    """Train (or resume) one run and measure it; the result is also written to ``out/LABEL/result.json``.

    A finished run's ``result.json`` is read back instead of measuring again.
    """
    folder = Path(out) / label
    done = folder / "result.json"
    if done.is_file():
        stored = json.loads(done.read_text(encoding="utf-8"))
        if stored.get("steps") == steps:
            return stored
    from binarize.showcase.measure import network_cost
    from binarize.training.data import HELD_OUT_CROP, held_out_loss
    from binarize.training.trainer import train

    mode = QUALITY_MODES[mode_name]
    config = _run_config(mode, label, steps, Path(out))
    with cpu_threads(threads):
        began = time.perf_counter()
        trained = train(config, progress=False, echo=lambda _: None, device=device)
        train_s = time.perf_counter() - began
        model = trained.model.eval()
        result: dict[str, Any] = {"label": label, "recipe": _recipe_of(label), "steps": trained.step,
                                  "train_s": train_s, "held_out_loss": held_out_loss(model, config),
                                  "device": str(next(model.parameters()).device)}
        if mode.sample:
            result.update(_sampled(model, config))
        cost = network_cost(model.cpu(), config, size=HELD_OUT_CROP)
    result.update(params_m=cost["params_m"], ops_g=cost["ops_g"], binary_layers=cost["binary_layers"])
    write_text_atomic(done, json.dumps(result, indent=2) + "\n")
    return result


def _sampled(model: torch.nn.Module, config: Any) -> dict[str, float]:
    from binarize.training.evaluate import evaluate, test_images

    mean = evaluate(model, config, test_images(config.scale)).mean
    return {"psnr_y": mean["psnr_y"], "ssim_y": mean["ssim_y"], "bicubic_psnr_y": mean["bicubic_psnr_y"],
            "bicubic_ssim_y": mean["bicubic_ssim_y"]}


def _collect(result: QualityResult, label: str, outcome: Callable[[], dict[str, Any]],
             echo: Callable[[str], None]) -> None:
    """Store one run's measurements, or why it failed (a failed run never stops the others)."""
    try:
        result.runs[label] = outcome()
    except (BinarizeError, RuntimeError, ValueError, TypeError) as error:
        result.failed[label] = f"{type(error).__name__}: {error}"
        echo(f"{label}: failed: {result.failed[label]}")
        return
    echo(f"{label}: {result.runs[label]['steps']} steps, held-out loss {result.runs[label]['held_out_loss']:.5f}")


def measure_quality(
    mode: str = "quick",
    *,
    out: str | Path = "bench_quality",
    labels: Sequence[str] | None = None,
    steps: int | None = None,
    jobs: int = 1,
    device: str | None = None,
    echo: Callable[[str], None] = print,
) -> QualityResult:
    """Train and measure every run of ``mode`` (``jobs`` at a time, each in its own process when ``jobs > 1``).

    Args:
        mode: a key of :data:`QUALITY_MODES`.
        out: the folder of the runs (``out/LABEL``: the run's checkpoints, log and ``result.json``).
        labels: only these runs (default: the mode's).
        steps: override the mode's budget.
        jobs: runs trained at the same time.
        device: ``cpu`` or ``cuda`` (default: CUDA when available).
        echo: where progress lines go.

    Raises:
        BinarizeError: an unknown mode or run label.
    """
    from binarize.recipe import available_recipes
    from binarize.recipe.source import did_you_mean

    if mode not in QUALITY_MODES:
        raise BinarizeError(f"unknown quality mode {mode!r}.{did_you_mean(mode, list(QUALITY_MODES))} "
                            f"Modes: {', '.join(QUALITY_MODES)}")
    chosen = QUALITY_MODES[mode]
    runs = tuple(labels) if labels else chosen.labels
    known = [FP_LABEL, *available_recipes()]
    for label in runs:
        if label not in known:
            raise BinarizeError(f"unknown run {label!r}.{did_you_mean(label, known)} A run is `fp` or a recipe name")
    budget = steps if steps is not None else chosen.steps
    where = device or ("cuda" if torch.cuda.is_available() else "cpu")
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None  # CPU threads per process
    result = QualityResult(mode, budget, torch.cuda.get_device_name(0) if where == "cuda" else "cpu")
    arguments = {label: (mode, label, budget, str(out), where, threads) for label in runs}
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = {label: pool.submit(measure_run, *args) for label, args in arguments.items()}
            for label, future in futures.items():
                _collect(result, label, future.result, echo)
    else:
        for label, args in arguments.items():
            _collect(result, label, lambda args=args: measure_run(*args), echo)
    first = next(iter(result.runs.values()), {})
    if "bicubic_psnr_y" in first:
        result.bicubic = {"psnr_y": first["bicubic_psnr_y"], "ssim_y": first["bicubic_ssim_y"]}
    return result
