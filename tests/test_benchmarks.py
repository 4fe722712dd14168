"""The benchmark runner's command line, its pure helpers, and one benchmark run at toy size."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ckd_tune.benches import GLUE_PROFILES

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a top-level package beside ckd_tune/, not installed
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_batching, bench_step  # noqa: E402
from benchmarks.bench_search import Curve, compare_seed  # noqa: E402
from benchmarks.common import MODES, Context, Target, with_overrides  # noqa: E402
from benchmarks.run import BENCHMARKS, build_parser, main  # noqa: E402
from benchmarks.sweeps import EpochEvent, read_events  # noqa: E402


@pytest.fixture(autouse=True)
def _glue_profiles_restored() -> Iterator[None]:
    """A benchmark run registers its profile in ``GLUE_PROFILES``: the later tests must not see it."""
    saved = dict(GLUE_PROFILES)
    yield
    GLUE_PROFILES.clear()
    GLUE_PROFILES.update(saved)


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--quick", "--only", "--out", "--data-dir", "--cache-dir"):
        assert flag in out


def test_only_selects_in_registry_order_and_rejects_unknown_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = build_parser().parse_args(["--quick", "--only", "memory, logit_cache"])
    assert args.quick and args.only == ["logit_cache", "memory"]
    assert build_parser().parse_args([]).only == list(BENCHMARKS)
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--only", "logit_cache,nope"])
    assert exit_info.value.code == 2
    assert "nope" in capsys.readouterr().err


def test_list_names_every_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in BENCHMARKS)
    assert set(MODES) == {"quick", "full"}


def test_target_direction() -> None:
    assert Target("x", 0.96, 0.95).met and not Target("x", 0.9, 0.95).met
    assert Target("x", 0.4, 0.5, higher_is_better=False).met
    assert not Target("x", None, 0.5).met


def _events(scores: list[float]) -> list[EpochEvent]:
    return [
        EpochEvent("t", i + 1, s, s, 100.0 + i, float(i + 1), None) for i, s in enumerate(scores)
    ]


def test_epochs_to_target_per_seed() -> None:
    fast = Curve.of(_events([0.70, 0.80, 0.81, 0.81]))
    slow = Curve.of(_events([0.60, 0.70, 0.75, 0.78, 0.806, 0.80]))
    result = compare_seed({"tpe_asha": fast, "random_fifo": slow})
    assert result["target"] == pytest.approx(0.805)
    assert result["tpe_asha"]["trial_epochs_to_target"] == 3
    assert result["random_fifo"]["trial_epochs_to_target"] == 5
    assert result["epochs_ratio"] == pytest.approx(3 / 5)
    never = compare_seed({"tpe_asha": Curve.of(_events([0.5, 0.6])), "random_fifo": slow})
    assert not never["tpe_asha"]["reached"]
    assert never["tpe_asha"]["trial_epochs_to_target"] == 2  # charged its whole budget


def test_read_events_orders_all_trials_by_report_time(tmp_path: Path) -> None:
    for trial, rows in {"a": [(103, 0.6), (105, 0.7)], "b": [(104, 0.65)]}.items():
        path = tmp_path / "ray" / "ckd" / trial / "result.json"
        path.parent.mkdir(parents=True)
        lines = [
            {"trial_id": trial, "epoch": i + 1, "best_val_score": s, "timestamp": t}
            for i, (t, s) in enumerate(rows)
        ]
        path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    events = read_events(tmp_path)
    assert [(e.trial_id, e.epoch) for e in events] == [("a", 1), ("b", 1), ("a", 2)]


def test_length_grouping_runs_both_sides_per_seed(glue_dir: Path, tmp_path: Path) -> None:
    settings = with_overrides(
        MODES["quick"],
        train_size=96,
        val_size=32,
        test_size=32,
        epochs=1,
        teacher_epochs=1,
        batch_size=8,  # megabatches of 3 batches: grouping has room to cut padding
    )
    ctx = Context(settings, glue_dir, tmp_path / "cache", tmp_path / "out", tmp_path / "work")
    result = bench_batching.run(ctx).to_json()
    runs = result["measurements"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1] and runs[1]["order"] == ["shuffled", "grouped"]
    for run in runs:
        for side in bench_batching.SIDES:
            assert run[side]["examples_per_s"][0] > 0 and 0 <= run[side]["test_score"] <= 1
    summary = result["summary"]
    tokens = summary["tokens_per_epoch"]
    assert tokens["grouped"]["real"] == tokens["shuffled"]["real"]
    assert tokens["grouped"]["padded"] < tokens["shuffled"]["padded"]  # the point of grouping
    assert summary["test_comparison"]["n_paired"] == 2 and summary["test_verdict"]
    assert result["target"]["value"] == summary["throughput_ratio_median"]


def test_train_step_estimates_and_times_every_candidate(glue_dir: Path, tmp_path: Path) -> None:
    settings = with_overrides(
        MODES["quick"], train_size=48, val_size=16, test_size=16, batch_size=8, repeats=1
    )
    ctx = Context(settings, glue_dir, tmp_path / "cache", tmp_path / "out", tmp_path / "work")
    result = bench_step.run(ctx).to_json()
    summary = result["summary"]
    tokens = summary["tokens"]
    assert tokens["steps_per_epoch"] == tokens["timed_steps"] == 6
    assert tokens["padded_per_step"] >= tokens["real_per_step"] > 0
    estimate = result["measurements"]["estimate"]
    assert estimate["train_flops_per_step_padded_tokens"] >= estimate["train_flops_per_step"] > 0
    for clock in ("wall", "cpu"):
        e = estimate[clock]
        assert e["estimate_ms"] == pytest.approx(e["compute_ms"] + e["optimizer_ms"])
    assert set(summary["candidates"]) == set(bench_step.VARIANTS)
    for name, candidate in summary["candidates"].items():
        assert candidate["mean_step_s"] > 0 and candidate["cpu_s_per_step"] > 0, name
    assert summary["candidates"]["baseline"]["ratio_to_baseline"] == pytest.approx(1.0)
    assert result["target"]["value"] == summary["ratio_measured_to_estimate"]
    assert not result["target"]["higher_is_better"]
    assert set(summary["train_loop_check_mean_step_s"]) == {"baseline", bench_step.RECOMMENDED}
    sides = [c["side"] for c in result["measurements"]["train_loop_check"]]
    assert sides == ["baseline", bench_step.RECOMMENDED, bench_step.RECOMMENDED, "baseline"]
    breakdown = summary["where_the_time_goes_ms"]["baseline"]
    assert breakdown["estimate: compute on real tokens"] > 0
