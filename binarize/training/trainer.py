r"""The training loop of ``binarize train``: exact resumption, JSON-lines logs, safetensors checkpoints, DDP.

Every step is a pure function of ``(seed, step, rank)``: the patches it trains on (item ``(step * world + rank) *
batch + i`` of a deterministic patch dataset), its timesteps and noise (a generator seeded from the triple) and the
dropout masks (the global generator is re-seeded from it). So a run that stops after any checkpoint and resumes from
it computes exactly what an uninterrupted run computes: :math:`N` steps equal :math:`N/2` steps, a restart and
:math:`N/2` more, bit for bit on the CPU.

Under ``torchrun --nproc_per_node N`` (the environment variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) the model
is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` (gloo on the CPU, nccl on CUDA); each process trains
on its own patches and rank 0 logs and writes checkpoints.

Files in the run folder (``config.out``): ``config.yaml`` (the resolved experiment), ``log.jsonl`` (one JSON object
per logged step: ``step``, ``loss``, ``steps_per_s``, ``elapsed_s`` and, on evaluation steps,
``held_out_loss``), ``checkpoints/step_<N>.safetensors``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from torch import Tensor, nn

from binarize.diffusion import PREDICTION_TARGETS, draw_timesteps, training_loss
from binarize.training.checkpoint import (
    CheckpointError, latest_checkpoint, listed_names, load_weights, read_checkpoint, write_checkpoint,
)
from binarize.training.config import ExperimentConfig
from binarize.training.data import held_out_batch, held_out_loss, patch_dataset
from binarize.training.features import FeatureDistillation
from binarize.training.model import build_model, load_teacher

__all__ = ["DivergedError", "TrainResult", "step_seed", "train"]


class DivergedError(CheckpointError):
    """The training loss became NaN or infinite; the run stopped without writing a checkpoint of that state."""


@dataclass
class TrainResult:
    """What a call of :func:`train` did.

    Attributes:
        model: the trained network (unwrapped from DDP).
        step: the steps done in total (including those before a resume).
        resumed_from: the checkpoint the run resumed from, if any.
        last_checkpoint: the last checkpoint written (or found).
        losses: the training loss of every step run in this call.
    """

    model: nn.Module
    step: int
    resumed_from: Path | None
    last_checkpoint: Path | None
    losses: list[float]


def step_seed(seed: int, step: int, rank: int) -> int:
    """A 63-bit seed for one step of one process (distinct for every triple)."""
    return (seed * 1_000_003 + step * 7919 + rank * 104_729 + 1) % (2**63 - 1)


@dataclass
class _Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> _Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return cls(rank, world, local)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def _device(place: _Distributed, requested: str | None = None) -> torch.device:
    if requested is not None:
        return torch.device(requested)
    if torch.cuda.is_available():
        torch.cuda.set_device(place.local_rank)
        return torch.device("cuda", place.local_rank)
    return torch.device("cpu")


def _batches(dataset: Any, config: ExperimentConfig, place: _Distributed, start: int) -> Iterator[dict[str, Tensor]]:
    """The batches of steps ``start, start + 1, ...`` for this process (loaded with ``data.workers`` workers)."""
    from torch.utils.data import DataLoader

    batch = config.data.batch
    indices = [
        (step * place.world + place.rank) * batch + i for step in range(start, config.steps) for i in range(batch)
    ]
    loader = DataLoader(dataset, batch_size=batch, sampler=indices, num_workers=config.data.workers,
                        persistent_workers=False, drop_last=False)
    yield from loader


def train(
    config: ExperimentConfig,
    *,
    resume: bool = True,
    progress: bool = True,
    stop_after: int | None = None,
    echo: Callable[[str], None] = print,
    device: str | None = None,
    weights_only: bool = False,
) -> TrainResult:
    """Train ``config`` (resuming from the run folder's latest checkpoint unless ``resume=False``).

    Args:
        config: the experiment.
        resume: continue from ``out/checkpoints`` when a checkpoint is there.
        progress: show a progress bar (rank 0) with the loss and the speed.
        stop_after: stop after this many steps of this call (for tests and time-boxed runs), after checkpointing.
        echo: where one-line messages go (rank 0).
        device: ``cpu``, ``cuda``, ...; default: this process's CUDA device when CUDA is available, else the CPU.
        weights_only: resume from a checkpoint without (complete) optimiser state, starting Adam afresh from its
            weights; without it such a checkpoint is an error, since a fresh Adam state changes the training.

    Raises:
        DivergedError: the loss became NaN or infinite (the step, the last good checkpoint and what to try are in
            the message; no checkpoint of the diverged state is written).
        CheckpointError: the checkpoint to resume from is damaged, was trained with another recipe or model, or
            lacks optimiser state (without ``weights_only``).
    """
    place = _Distributed.from_environment()
    where = _device(place, device)
    out = Path(config.out)
    folder = out / "checkpoints"
    found = latest_checkpoint(folder) if resume else None
    built = build_model(config, initialise=found is None)
    model = built.model.to(where).train()
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.optim.lr, betas=config.optim.betas, weight_decay=config.optim.weight_decay
    )
    start, resumed_from = 0, None
    if found is not None:
        start = _restore(found, model, optimizer, built, config, weights_only=weights_only)
        resumed_from = found
        if place.main:
            echo(f"resuming from {found} (step {start})")
    if place.main and built.init_note is not None:
        echo(built.init_note)
    if place.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
    wrapped: nn.Module = model
    if place.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(model, device_ids=[where.index] if where.type == "cuda" else None)
    schedule = config.diffusion.schedule()
    target = PREDICTION_TARGETS.get(config.diffusion.target)
    teacher = load_teacher(config, where)
    features = FeatureDistillation(model, teacher, config.teacher_features) if config.teacher_features else None
    dataset = patch_dataset(config, place.world)
    held_out = tuple(x.to(where) for x in held_out_batch(config)) if place.main else None
    end = config.steps if stop_after is None else min(config.steps, start + stop_after)
    bar = _progress(progress and place.main, start, config.steps)
    losses: list[float] = []
    last = found
    began = time.perf_counter()
    log = (out / "log.jsonl").open("a", encoding="utf-8") if place.main else None
    in_step = False
    try:
        for step, batch in zip(range(start, end), _batches(dataset, config, place, start)):
            seed = step_seed(config.seed, step, place.rank)
            generator = torch.Generator().manual_seed(seed)
            torch.manual_seed(seed)  # dropout
            hr, cond = batch["hr"].to(where), batch["cond"].to(where)
            t = draw_timesteps(hr.shape[0], schedule.steps, generator, per_sample=config.diffusion.per_sample_t)
            noise = torch.randn(hr.shape, generator=generator).to(where)
            with features.capturing() if features is not None else nullcontext():
                loss = training_loss(wrapped, schedule, target, hr, cond, t, noise, teacher=teacher,
                                     teacher_weight=config.teacher_weight)
            if features is not None:
                loss = loss + config.teacher_feature_weight * features.loss()
            value = _agreed_loss(loss, place)
            if not math.isfinite(value):
                raise _diverged(step + 1, value, last, config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            in_step = True  # only the optimiser step changes what a checkpoint holds
            for group in optimizer.param_groups:
                group["lr"] = config.optim.lr_at(step, config.steps)
            optimizer.step()
            losses.append(value)
            in_step = False
            done = step + 1
            record: dict[str, Any] = {"step": done, "loss": losses[-1], "lr": optimizer.param_groups[0]["lr"]}
            if place.main and held_out is not None and (
                (config.eval_every and done % config.eval_every == 0) or done == config.steps
            ):
                model.eval()
                record["held_out_loss"] = held_out_loss(model, config, held_out)
                model.train()
                if not math.isfinite(record["held_out_loss"]):  # the weights went bad in this step's update
                    raise _diverged(done, record["held_out_loss"], last, config, what="held-out loss")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
            elapsed = time.perf_counter() - began
            if log is not None and (done % max(config.log_every, 1) == 0 or done == end or "held_out_loss" in record):
                record.update(steps_per_s=round((done - start) / elapsed, 4), elapsed_s=round(elapsed, 3))
                log.write(json.dumps(record) + "\n")
                log.flush()
            if (config.checkpoint_every and done % config.checkpoint_every == 0) or done == end:
                last = _save(folder, model, optimizer, config, built, done, place)
    except KeyboardInterrupt:
        # The last step finished (its optimiser step is done): keep it, so a restart loses nothing.
        finished = start + len(losses)
        consistent = not in_step  # an interrupt inside the optimiser step may have left weights half-updated
        if place.world == 1 and losses and consistent and (
            last is None or last.name != f"step_{finished:08d}.safetensors"
        ):
            last = _save(folder, model, optimizer, config, built, finished, place)
            echo(f"interrupted: saved {last}; run the same command to resume")
        raise
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
    return TrainResult(model, start + len(losses), resumed_from, last, losses)


def _save(folder: Path, model: nn.Module, optimizer: Any, config: ExperimentConfig, built: Any, step: int,
          place: _Distributed) -> Path:
    path = folder / f"step_{step:08d}.safetensors"
    if place.main:
        write_checkpoint(path, model=model, config=config, recipe=built.recipe, recipe_hash=built.recipe_hash,
                         step=step, optimizer=optimizer)
    place.barrier()
    return path


def _agreed_loss(loss: Tensor, place: _Distributed) -> float:
    """This process's loss as a float; under DDP, NaN on every rank when any rank's loss is not finite (so all
    ranks stop together instead of waiting for a gradient exchange that never comes)."""
    value = float(loss.detach())
    if place.world > 1:
        flag = torch.tensor([0.0 if math.isfinite(value) else 1.0], device=loss.device)
        dist.all_reduce(flag)
        if flag.item():
            return math.nan
    return value


def _diverged(step: int, value: float, last: Path | None, config: ExperimentConfig,
              what: str = "training loss") -> DivergedError:
    kept = (f"the last good checkpoint is {last}, and the run resumes from it" if last is not None
            else "no checkpoint was written yet")
    return DivergedError(
        f"step {step}: the {what} is {value} (the network diverged); stopped without writing a checkpoint "
        f"of this state: {kept}. Lower the learning rate (--set optim.lr=..., now {config.optim.lr:g}) or check the "
        "data and the initial weights"
    )


def _restore(path: Path, model: nn.Module, optimizer: Any, built: Any, config: ExperimentConfig, *,
             weights_only: bool) -> int:
    checkpoint = read_checkpoint(path)
    if path.name != f"step_{checkpoint.step:08d}.safetensors":
        raise CheckpointError(
            f"{path} holds step {checkpoint.step}, not the step its name says; the run folder's checkpoints were "
            f"renamed or copied in: name it step_{checkpoint.step:08d}.safetensors or remove it"
        )
    if checkpoint.recipe_hash != built.recipe_hash:
        differences = _recipe_differences(checkpoint.recipe, built.recipe) or "how they were written (same content)"
        raise CheckpointError(
            f"{path} was trained with {_recipe_name(checkpoint.recipe)}, this config binarizes with "
            f"{_recipe_name(built.recipe)}; they differ in {differences}. "
            "Use another `out` folder, or the recipe it was trained with"
        )
    if checkpoint.config.model != config.model or checkpoint.config.model_args != config.model_args:
        raise CheckpointError(
            f"{path} holds {checkpoint.config.model} {checkpoint.config.model_args}, not {config.model} "
            f"{config.model_args}; use another `out` folder"
        )
    load_weights(model, checkpoint.model_state, path, config.model)
    missing = _missing_optimizer_state(checkpoint.optimizer_state, optimizer, checkpoint.step)
    if missing is None:
        return checkpoint.step
    if not weights_only:
        raise CheckpointError(
            f"{path} lacks {missing}, so resuming would restart Adam's moments and change the training; resume "
            "from an earlier checkpoint, or pass --resume-weights-only to continue from its weights with a fresh "
            "optimiser"
        )
    return checkpoint.step


def _missing_optimizer_state(state: dict[str, Any] | None, optimizer: Any, step: int) -> str | None:
    """What optimiser state a checkpoint lacks or holds wrongly (``None``: complete and sound), loading it into
    ``optimizer`` when it is."""
    if state is None:
        return "the optimiser state (a weights-only file)"
    if state.get("missing"):
        return f"the optimiser state of parameters {listed_names([str(index) for index in state['missing']])}"
    complete = frozenset().union(*state["state"].values())
    partial = [str(index) for index, values in state["state"].items() if frozenset(values) != complete]
    if partial:
        return f"part of the optimiser state (of parameters {listed_names(partial)})"
    params = [p for group in optimizer.param_groups for p in group["params"]]
    unsound = _unsound_adam_state(state["state"], params, step)
    if unsound:
        return f"sound optimiser state ({unsound})"
    try:
        optimizer.load_state_dict({"state": state["state"], "param_groups": state["param_groups"]})
    except (ValueError, KeyError, RuntimeError) as exc:
        return f"optimiser state that fits this model ({_first_problem(exc)})"
    return None


def _unsound_adam_state(per_param: dict[int, dict[str, Tensor]], params: list[Tensor], step: int) -> str:
    """Adam's state that cannot have come from training: moments of another shape than their parameter, a
    negative second moment, a step count that is not a whole number from 1 to the checkpoint's step."""
    for index, values in sorted(per_param.items()):
        if index >= len(params):
            return f"state for parameter {index}, but the model has {len(params)}"
        for key, value in values.items():
            if key == "step":
                count = float(value)
                if not (count.is_integer() and 1 <= count <= max(step, 1)):
                    return f"parameter {index}: step count {count:g}, expected a whole number from 1 to {step}"
            elif value.shape != params[index].shape:
                return f"parameter {index}: {key} of shape {tuple(value.shape)}, the parameter's is " \
                       f"{tuple(params[index].shape)}"
            elif key == "exp_avg_sq" and bool((value < 0).any()):
                return f"parameter {index}: negative values in exp_avg_sq"
    return ""


def _first_problem(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:2])[:300]


def _recipe_name(recipe: dict[str, Any] | None) -> str:
    return "full precision (no recipe)" if recipe is None else f"the recipe {recipe.get('name', '?')!r}"


def _recipe_differences(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    """The keys where two resolved recipes differ, as ``path: old -> new`` (the first few)."""
    return listed_names(list(_differences(old, new, "recipe")), "; ")


def _differences(old: Any, new: Any, where: str) -> Iterator[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            if key not in new:
                yield f"{where}.{key}: {_short(old[key])} -> (absent)"
            elif key not in old:
                yield f"{where}.{key}: (absent) -> {_short(new[key])}"
            else:
                yield from _differences(old[key], new[key], f"{where}.{key}")
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new)):
            yield from _differences(a, b, f"{where}[{index}]")
    elif old != new:
        yield f"{where}: {_short(old)} -> {_short(new)}"


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _progress(enabled: bool, start: int, total: int) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True)
