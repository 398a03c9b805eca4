"""Result cards of trained zoo models, and ``binarize publish`` that writes them.

A card holds what a user needs to trust and reproduce a checkpoint: the experiment config (model, recipe, data,
diffusion target and schedule, optimiser, steps), how it was trained (wall time, hardware, the exact commands),
its quality on the held-out photos against bicubic and its cost, measured by :func:`measure_checkpoint` on the
published (compact) file itself, so ``binarize demo`` reproduces the card's numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from binarize._files import atomic_path, write_text_atomic
from binarize.showcase.measure import DEMO_STEPS, ModelMeasurement, measure_checkpoint, protocol_text
from binarize.training.checkpoint import CheckpointError, compact_checkpoint, read_checkpoint
from binarize.training.config import ExperimentConfig, available_experiments, load_config

__all__ = ["card_data", "card_markdown", "earlier_stages", "publish", "reproduce_commands", "training_summary",
           "with_earlier_stages"]


def training_summary(run_folder: str | Path) -> dict[str, Any]:
    """Steps, wall time (summed over resumed segments) and last held-out loss from a run's ``log.jsonl``."""
    path = Path(run_folder) / "log.jsonl"
    if not path.is_file():
        return {}
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    wall, previous = 0.0, 0.0
    for record in records:
        elapsed = record.get("elapsed_s")
        if elapsed is None:
            continue
        if elapsed < previous:  # a resumed segment starts its clock again
            wall += previous
        previous = elapsed
    wall += previous
    held_out = [r for r in records if "held_out_loss" in r]
    summary: dict[str, Any] = {"steps": records[-1]["step"] if records else 0, "wall_s": round(wall, 1)}
    if held_out:
        summary["held_out_loss"] = held_out[-1]["held_out_loss"]
        summary["held_out_curve"] = [[r["step"], r["held_out_loss"]] for r in held_out]
    return summary


def with_earlier_stages(training: dict[str, Any], config: ExperimentConfig) -> dict[str, Any]:
    """``training`` (a :func:`training_summary`) with the wall time of the earlier stages added: the runs whose
    checkpoints ``init`` names, followed back while their run folders are there (``stages`` counts the runs)."""
    wall, stages, start, seen = training.get("wall_s"), 1, config.init, set()
    while wall is not None and start is not None and not start.startswith("zoo:") and start not in seen:
        seen.add(start)
        path = Path(start)
        earlier = training_summary(path.parent.parent).get("wall_s") if path.is_file() else None
        if earlier is None:
            break
        wall, stages, start = wall + earlier, stages + 1, read_checkpoint(path).config.init
    return {**training, "wall_s": wall, "stages": stages} if stages > 1 else training


def reproduce_commands(config: ExperimentConfig, step: int, name: str) -> list[str]:
    """The commands that train the checkpoint again and publish it under ``name``.

    A run that starts from the checkpoint of another shipped experiment (``init:
    runs/STAGE/checkpoints/...``) is preceded by the commands that train that stage first.
    """
    shipped = load_config(config.name) if config.name in available_experiments() else None
    if shipped is not None and _without_out(shipped) == _without_out(config):
        train, out = f"binarize train {config.name}", shipped.out
    else:
        train, out = f"binarize train {name}.yaml  # the card's config", config.out
    publish_command = f"binarize publish {out}/checkpoints/step_{step:08d}.safetensors --name {name}"
    return [*earlier_stages(config), train, publish_command]


def earlier_stages(config: ExperimentConfig, _seen: frozenset[str] = frozenset()) -> list[str]:
    """``binarize train STAGE`` for every shipped experiment whose run folder holds ``config.init``, first stage
    first (empty for random or zoo initial weights; a cycle of stages ends where it repeats)."""
    if config.init is None or str(config.init).startswith("zoo:"):
        return []
    start = Path(config.init).as_posix()
    seen = _seen | {config.name}
    for stage in available_experiments():
        earlier = load_config(stage)
        if stage not in seen and start.startswith(f"{Path(earlier.out).as_posix()}/checkpoints/"):
            return [*earlier_stages(earlier, seen), f"binarize train {stage}"]
    return []


def _without_out(config: ExperimentConfig) -> dict[str, Any]:
    """The experiment as data without its run folder (the same experiment may run anywhere)."""
    return {k: v for k, v in config.to_dict().items() if k != "out"}


def card_data(name: str, measurement: ModelMeasurement, training: dict[str, Any], hardware: str,
              demo: ModelMeasurement | None = None) -> dict[str, Any]:
    """The card as plain data (what ``cards/NAME.json`` holds); ``demo`` is the measurement ``binarize demo`` makes
    (:data:`~binarize.showcase.measure.DEMO_STEPS` steps, binarized models packed), which the demo checks itself
    against."""
    checkpoint = measurement.checkpoint
    config = checkpoint.config
    recipe = checkpoint.recipe["name"] if checkpoint.recipe else None
    return {
        "name": name,
        "model": config.model,
        "recipe": recipe,
        "scale": config.scale,
        "target": config.diffusion.target,
        "config": _without_out(config),
        "training": {**training, "steps": checkpoint.step, "hardware": hardware,
                     "reproduce": reproduce_commands(config, checkpoint.step, name)},
        "evaluation": _evaluation(measurement),
        "quality": {"bicubic": measurement.bicubic, "model": measurement.quality},
        **({"demo": {**_evaluation(demo), "quality": {"bicubic": demo.bicubic, "model": demo.quality},
                     "packed": demo.deployment is not None}} if demo is not None else {}),
        "cost": {**measurement.cost, "checkpoint_bytes": measurement.checkpoint_bytes},
    }


#: How a card names the embedded training sets of ``data.source``.
_EMBEDDED_DATA = {"embedded": "the embedded photos", "embedded+textures": "the embedded photos and textures"}


def _training_data(source: str) -> str:
    return _EMBEDDED_DATA.get(source, f"the images of `{source}`")


def _evaluation(measurement: ModelMeasurement) -> dict[str, Any]:
    return {"images": measurement.report.rows, "steps": measurement.steps, "crop": measurement.crop,
            "protocol": protocol_text(measurement.checkpoint.config.scale, measurement.steps, measurement.crop)}


def card_markdown(data: dict[str, Any]) -> str:
    """The card for people: what the model is, how it was trained, how good and how costly it is."""
    training, cost, quality = data["training"], data["cost"], data["quality"]
    config = data["config"]
    diffusion = config["diffusion"]
    lines = [
        f"# {data['name']}",
        "",
        f"`{data['model']}` x{data['scale']}, "
        + (f"binarized with the `{data['recipe']}` recipe" if data["recipe"] else "full precision (no recipe)")
        + f"; trained with `binarize train` on {_training_data(config['data']['source'])}. "
        f"Use it as `zoo:{data['name']}`.",
        "",
        "| | |",
        "| --- | --- |",
        f"| diffusion | target `{diffusion['target']}`, linear betas {diffusion['beta_start']:g} to "
        f"{diffusion['beta_end']:g} over T = {diffusion['steps']}, one timestep per sample: "
        f"{diffusion['per_sample_t']} |",
        f"| sampling | DDIM, {diffusion['sampling_steps']} steps |",
        f"| data | {config['data']['patch']} px HR patches, batch {config['data']['batch']} |",
        f"| optimiser | Adam, lr {config['optim']['lr']:g}{_lr_schedule(config['optim'])}, betas "
        f"{tuple(config['optim']['betas'])} |",
        f"| initial weights | {config.get('init') or 'random (seed ' + str(config['seed']) + ')'} |",
        *([f"| teacher | {config['teacher']} (distillation weight {config.get('teacher_weight', 1.0):g}) |"]
          if config.get("teacher") else []),
        f"| steps | {training['steps']} |",
        f"| wall time | {_minutes(training.get('wall_s'))}"
        + (f" ({training['stages']} stages)" if training.get("stages", 1) > 1 else "")
        + f" on {training['hardware']} |",
        f"| held-out denoising loss | {_number(training.get('held_out_loss'), '.5f')} |",
        "",
        "## Quality",
        "",
        _sentence(data["evaluation"]["protocol"]),
        "",
        *_quality_table(data["evaluation"]["images"], quality),
        "",
    ]
    if "demo" in data:
        demo = data["demo"]
        lines += [
            f"`binarize demo` samples with {demo['steps']} DDIM steps"
            + (" on packed bits" if demo.get("packed") else "") + " (under a minute on two cores): "
            + demo["protocol"] + ".",
            "",
            *_quality_table(demo["images"], demo["quality"]),
            "",
        ]
    lines += [
        "## Cost",
        "",
        f"One network evaluation for a 3 x {cost['size']} x {cost['size']} output, the paper's convention "
        "(binary parameters / 32, binary operations / 64).",
        "",
        "| params (M) | OPs (G) | FP params | binary weights | binary layers | checkpoint |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {cost['params_m']:.4f} | {cost['ops_g']:.4f} | {cost['fp_params']:,} | {cost['binary_params']:,} | "
        f"{cost['binary_layers']} | {cost['checkpoint_bytes'] / 2**20:.2f} MiB (float16 weights) |",
        "",
        "## Reproduce",
        "",
        "```bash",
        *training["reproduce"],
        "```",
        "",
    ]
    return "\n".join(lines)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _lr_schedule(optim: dict[str, Any]) -> str:
    schedule, warmup = optim.get("schedule", "constant"), optim.get("warmup", 0)
    parts = [schedule] + ([f"{warmup} warm-up steps"] if warmup else [])
    return f" ({', '.join(parts)})"


def _quality_table(rows: list[dict[str, Any]], quality: dict[str, Any]) -> list[str]:
    lines = ["| image | size | bicubic PSNR-Y | PSNR-Y | vs bicubic | bicubic SSIM-Y | SSIM-Y |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['name']} | {row['size']} | {row['bicubic_psnr_y']:.2f} | {row['psnr_y']:.2f} | "
                     f"{row['psnr_y'] - row['bicubic_psnr_y']:+.2f} | {row['bicubic_ssim_y']:.4f} | "
                     f"{row['ssim_y']:.4f} |")
    gain = quality["model"]["psnr_y"] - quality["bicubic"]["psnr_y"]
    lines.append(
        f"| **mean** | | {quality['bicubic']['psnr_y']:.2f} | **{quality['model']['psnr_y']:.2f}** | **{gain:+.2f}** | "
        f"{quality['bicubic']['ssim_y']:.4f} | **{quality['model']['ssim_y']:.4f}** |"
    )
    return lines


def _minutes(seconds: float | None) -> str:
    return "unknown" if seconds is None else f"{seconds / 60:.0f} min"


def _number(value: float | None, spec: str) -> str:
    return "not recorded" if value is None else format(value, spec)


def publish(checkpoint: str | Path, *, name: str | None = None, zoo: str | Path | None = None,
            hardware: str = "unknown hardware", overwrite: bool = False, trust_code: bool = False,
            crop: int | None = None) -> dict[str, Any]:
    """Compact ``checkpoint`` into ``zoo/checkpoints/NAME.safetensors``, measure that file and write its card.

    Args:
        checkpoint: a checkpoint written by ``binarize train`` (its run folder's ``log.jsonl`` gives the wall time,
            plus that of the earlier stages whose checkpoint ``init`` names, where their run folders are there).
        name: the zoo name (default: the experiment's name).
        zoo: the zoo folder (default: the installed package's).
        hardware: where it was trained, for the card.
        overwrite: replace an existing zoo entry of the same name (otherwise an error).
        trust_code: allow a model built by running a Python file (see :func:`~binarize.training.load_model`).
        crop: measure centred crops of this side instead of the whole photos (quicker for a large network; the
            card says so).

    The compact file is written and measured beside the zoo first and moved into place only when that succeeded,
    so a checkpoint that fails never replaces or half-writes an entry.

    Returns:
        The card's data.

    Raises:
        CheckpointError: the checkpoint cannot be read or its weights do not fit its model; the entry exists.
    """
    from binarize.zoo._trained import zoo_folder

    source = Path(checkpoint)
    found = read_checkpoint(source)
    name = name or found.config.name
    root = Path(zoo) if zoo is not None else zoo_folder()
    target = root / "checkpoints" / f"{name}.safetensors"
    if target.exists() and not overwrite:
        raise CheckpointError(
            f"the zoo at {str(root)!r} already has {name!r}; choose another --name, or pass --overwrite to replace it"
        )
    with atomic_path(target) as staged:
        compact_checkpoint(source, staged)
        measurement = measure_checkpoint(staged, trust_code=trust_code, crop=crop)
        demo = measure_checkpoint(staged, steps=DEMO_STEPS, trust_code=trust_code, packed=True, crop=crop)
    training = with_earlier_stages(training_summary(source.parent.parent), found.config)
    data = card_data(name, measurement, training, hardware, demo)
    write_text_atomic(root / "cards" / f"{name}.json", json.dumps(data, indent=2) + "\n")
    write_text_atomic(root / "cards" / f"{name}.md", card_markdown(data))
    return data
