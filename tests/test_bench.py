"""``binarize bench``: the full-precision twin, the training batch, the memory tracker and the commands.

Timings are printed by the commands, never asserted: these tests check what is measured and how it is reported.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from binarize import binarize
from binarize.bench import LiveTensorBytes, TrainingStep, fp_twin_recipe, measure_overhead, peak_memory, training_batch
from binarize.bench.step import fixed_target
from binarize.bench.timing import paired_times
from binarize.bench.twin import TWIN_OVERRIDES
from binarize.cli import main
from binarize.nn import BinaryConv2d
from binarize.recipe import load_recipe

TINY = ["--model", "zoo:bidiffsr-unet-tiny", "--size", "16", "--batch", "2", "--steps", "1", "--warmup", "0"]


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", ["bidiffsr", "reactnet", "bbcu"])
def test_twin_switches_off_binarizers_and_scale_and_keeps_the_rest(name: str) -> None:
    recipe, twin = load_recipe(name), fp_twin_recipe(name)
    assert twin.name == f"{name}-fp-twin"
    assert twin.graph_rules == recipe.graph_rules and twin.timestep == recipe.timestep
    assert all(twin.defaults[k] is None for k in TWIN_OVERRIDES)
    assert {k: v for k, v in twin.defaults.items() if k not in TWIN_OVERRIDES} == {
        k: v for k, v in recipe.defaults.items() if k not in TWIN_OVERRIDES
    }
    for rule, twin_rule in zip(recipe.rules, twin.rules):
        assert twin_rule.select == rule.select and twin_rule.action == rule.action
        if rule.options:
            assert {k: twin_rule.options[k] for k in TWIN_OVERRIDES} == TWIN_OVERRIDES


def test_twin_of_bidiffsr_keeps_every_layer_option_but_the_binarizers() -> None:
    from binarize.zoo import ZOO

    entry = ZOO.get("bidiffsr-unet-tiny")
    model, inputs = entry.build(), entry.inputs()
    binary = binarize(model, "bidiffsr", example_inputs=inputs)
    twin = binarize(model, fp_twin_recipe("bidiffsr"), example_inputs=inputs)
    layers = [m for m in binary.modules() if isinstance(m, BinaryConv2d)]
    twins = [m for m in twin.modules() if isinstance(m, BinaryConv2d)]
    assert len(layers) == len(twins) > 0
    for layer, other in zip(layers, twins):
        expected = {**layer.options(), **TWIN_OVERRIDES}
        assert other.options() == expected and layer.is_binary and not other.binary_weight
    assert sum(p.numel() for p in binary.parameters()) == sum(p.numel() for p in twin.parameters())


def test_training_batch_mixes_timesteps_and_perturbs_images() -> None:
    x_t, t, cond, label = training_batch(
        (torch.zeros(1, 3, 4, 4), torch.tensor([5]), torch.ones(1, 3, 4, 4), torch.tensor([2])),
        6, timestep_position=1, total_timesteps=2000,
    )
    assert x_t.shape == cond.shape == (6, 3, 4, 4) and t.shape == label.shape == (6,)
    assert t.dtype == torch.long and len(set(t.tolist())) > 1 and t.max() < 2000
    assert label.tolist() == [2] * 6
    assert not torch.equal(x_t[0], x_t[1])
    again = training_batch((torch.zeros(1, 3, 4, 4), torch.tensor([5])), 6, timestep_position=1,
                           total_timesteps=2000)
    assert torch.equal(again[0], x_t) and torch.equal(again[1], t)
    with pytest.raises(ValueError, match="total_timesteps"):
        training_batch((torch.zeros(1, 2), torch.tensor([1])), 2, timestep_position=1)


def test_live_tensor_bytes_follows_allocations_and_frees() -> None:
    tracker = LiveTensorBytes()
    before = torch.zeros(250)  # 1000 bytes, alive before
    tracker.track([before, before.view(25, 10), 3])
    assert tracker.current == 1000
    with tracker:
        a = torch.ones(500)  # +2000
        b = a * 2  # +2000 -> peak 5000
        del a, b  # -4000
        c = torch.ones(100)  # +400
        c.add_(1)  # in place: no new storage
    assert tracker.peak == 5000 and tracker.current == 1400
    del before, c
    assert tracker.current == 0


def test_peak_memory_counts_what_was_alive_and_the_step_temporaries() -> None:
    alive = [torch.zeros(100)]
    assert peak_memory(lambda: torch.ones(50) + 1, torch.device("cpu"), alive=alive) == 400 + 200 + 200


def test_a_binary_training_step_needs_about_the_memory_of_its_twin() -> None:
    conv = nn.Conv2d(8, 8, 3, padding=1)
    from binarize.plugins.bidiffsr import bi_conv_options

    options = bi_conv_options(None)
    twin_options = {**options, **TWIN_OVERRIDES}
    peaks = []
    for opts in (options, twin_options):
        model = nn.Sequential(*[BinaryConv2d.from_float(conv, **opts) for _ in range(4)])
        x = torch.randn(2, 8, 24, 24)
        step = TrainingStep.adam(model, (x,), fixed_target(model, (x,)))
        step()
        peaks.append(peak_memory(step, torch.device("cpu"), alive=step.alive()))
    assert peaks[0] <= peaks[1] * 1.1


def test_measure_overhead_reports_every_field() -> None:
    result = measure_overhead("zoo:bidiffsr-unet-tiny", "bidiffsr", size=16, batch=2, steps=1, warmup=0)
    data = result.to_dict()
    for key in ("model", "recipe", "device", "dtype", "compile", "time_binary_s", "time_fp_s", "time_ratio",
                "memory_binary_bytes", "memory_fp_bytes", "memory_ratio"):
        assert key in data
    assert data["model"] == "zoo:bidiffsr-unet-tiny" and data["recipe"] == "bidiffsr" and data["device"] == "cpu"
    assert data["time_binary_s"] > 0 and data["time_fp_s"] > 0 and data["memory_fp_bytes"] > 0
    # One step each: the median of the per-step ratios is the ratio of the two times.
    assert data["time_ratio"] == pytest.approx(data["time_binary_s"] / data["time_fp_s"])
    assert data["time_ratio_quartiles"] == (data["time_ratio"], data["time_ratio"])
    assert data["memory_ratio"] == pytest.approx(data["memory_binary_bytes"] / data["memory_fp_bytes"])
    assert "ratio" in result.format()


def test_bench_overhead_command_prints_json() -> None:
    code, out, err = run_cli("bench", "overhead", *TINY, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["model"] == "zoo:bidiffsr-unet-tiny" and data["batch"] == 2 and data["dtype"] == "fp32"
    assert data["compile"] is False and data["memory_ratio"] > 0


def test_bench_overhead_command_runs_a_classifier_with_reactnet_in_bf16() -> None:
    code, out, err = run_cli("bench", "overhead", "--model", "zoo:resnet8", "--recipe", "reactnet", "--size", "16",
                             "--batch", "2", "--steps", "1", "--warmup", "0", "--dtype", "bf16")
    assert code == 0, err
    assert "zoo:resnet8" in out and "bf16" in out and "ratio" in out


def test_bench_rewrite_command() -> None:
    code, out, err = run_cli("bench", "rewrite", "--model", "zoo:resnet8", "--repeats", "1", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["replaced"] > 0 and data["ratio"] == pytest.approx(data["time_binarize_s"] / data["time_forward_s"])


def test_bench_errors_are_one_line() -> None:
    code, _, err = run_cli("bench", "overhead", "--model", "zoo:nope", "--steps", "1")
    assert code == 2 and "nope" in err and err.count("\n") == 1
    code, _, err = run_cli("bench", "overhead", "--device", "tpu", "--steps", "1")
    assert code == 2 and "cpu or cuda" in err
    if not torch.cuda.is_available():
        code, _, err = run_cli("bench", "overhead", "--device", "cuda", "--steps", "1")
        assert code == 2 and "--device cpu" in err
    code, _, err = run_cli("bench", "overhead", "--dtype", "fp8")
    assert code == 2 and "fp8" in err
    code, _, err = run_cli("bench")
    assert code == 2


@given(
    base=st.lists(st.floats(0.01, 10.0), min_size=1, max_size=40),
    ratio=st.floats(0.5, 3.0),
    drift=st.floats(1.0, 5.0),
)
def test_the_paired_ratio_cancels_a_drift_that_hits_both_works_of_a_round(
    base: list[float], ratio: float, drift: float
) -> None:
    """The machine slows down steadily over the run: each round's two steps slow down alike, so every per-round
    ratio, and their median, is the true one; the quartiles bracket it."""
    factors = [1.0 + (drift - 1.0) * i / len(base) for i in range(len(base))]
    fp = [b * f for b, f in zip(base, factors)]
    binary = [ratio * t for t in fp]
    summary = paired_times(binary, fp)
    assert summary.ratio == pytest.approx(ratio)
    low, high = summary.ratio_quartiles  # the quartiles interpolate, so allow for the last bit
    assert low <= summary.ratio * (1 + 1e-12) and summary.ratio <= high * (1 + 1e-12)
    assert low == pytest.approx(ratio) and high == pytest.approx(ratio)
    assert summary.median_a == pytest.approx(statistics.median(binary))


def test_paired_times_refuses_unpaired_samples() -> None:
    with pytest.raises(ValueError, match="equally long"):
        paired_times([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="non-empty"):
        paired_times([], [])
