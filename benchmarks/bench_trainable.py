"""``trainable_overhead``: student throughput inside the Ray Tune trainable vs the bare loop.

Both sides train the same student (method ``kd``, 1 thread, the same seed) on the same data for
the same epochs. The bare side calls :func:`ckd_tune.train.train` in this process; the Ray side
runs a real ``Tuner`` with one trial of :func:`ckd_tune.trainable.run_trial` (through
``make_trainable``: data and teacher logits from the object store, a checkpoint every epoch)
and reads ``examples_per_s`` from the trial's reported results. Repetitions alternate the order.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from benchmarks.common import (
    BenchResult,
    Context,
    Target,
    fmt_number,
    mean,
    median,
    ratio,
    ray_worker_niceness,
)

NAME = "trainable_overhead"
THRESHOLD = 0.95


def bare_run(ctx: Context, config: Any) -> dict[str, Any]:
    """``train`` called directly; returns wall time and per-epoch throughput."""
    import torch

    from ckd_tune.train import train

    prepared = ctx.prepared
    device = "cuda" if torch.cuda.is_available() else "cpu"  # what run_trial picks
    t0 = time.perf_counter()
    student = prepared.build_student(config.seed)
    result = train(config, prepared.data, student, prepared.teacher_signal, device=device)
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "examples_per_s": [h["examples_per_s"] for h in result.history],
        "best_val_score": result.best_score,
    }


def tuner_run(ctx: Context, config: dict[str, Any], rep: int) -> dict[str, Any]:
    """A one-trial ``Tuner`` of the package's trainable; Ray started and stopped inside."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # one checkpoint per short epoch trips Ray's snapshot-frequency warning: noise here
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import ray
    from ray.tune import CheckpointConfig, RunConfig, TuneConfig, Tuner

    from ckd_tune.trainable import make_trainable

    prepared = ctx.prepared
    t0 = time.perf_counter()
    # "local": a fresh Ray of our own (as the CLI does), never one `ray start` left running
    ray.init(
        address="local", include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False
    )
    init_s = time.perf_counter() - t0
    try:
        t1 = time.perf_counter()
        tuner = Tuner(
            make_trainable(prepared, 1, 0),
            param_space=config,
            tune_config=TuneConfig(num_samples=1, metric="best_val_score", mode="max"),
            run_config=RunConfig(
                name=f"trainable-{rep}",
                storage_path=str(ctx.work_dir / "trainable_overhead"),
                verbose=0,
                checkpoint_config=CheckpointConfig(num_to_keep=1),
            ),
        )
        grid = tuner.fit()
        fit_s = time.perf_counter() - t1
    finally:
        ray.shutdown()
    wall = time.perf_counter() - t0
    result = grid[0]
    if result.error is not None:
        raise RuntimeError(f"the trial failed: {result.error}")
    history = result.metrics_dataframe
    return {
        "wall_s": wall,
        "ray_init_s": init_s,
        "fit_s": fit_s,
        "examples_per_s": [float(x) for x in history["examples_per_s"]],
        "best_val_score": float(result.metrics["best_val_score"]),
    }


def run(ctx: Context) -> BenchResult:
    """Measure both sides ``settings.repeats`` times and compare."""

    prepared = ctx.prepared
    sampled = {"method": ctx.settings.method}
    config = prepared.base_config.replace(**sampled)
    reps = []
    for rep in range(ctx.settings.repeats):
        order = ("bare", "trainable") if rep % 2 == 0 else ("trainable", "bare")
        entry: dict[str, Any] = {"order": list(order)}
        for side in order:
            entry[side] = bare_run(ctx, config) if side == "bare" else tuner_run(ctx, sampled, rep)
        entry["throughput_ratio"] = ratio(
            mean(entry["trainable"]["examples_per_s"]), mean(entry["bare"]["examples_per_s"])
        )
        entry["wall_ratio"] = ratio(entry["bare"]["wall_s"], entry["trainable"]["wall_s"])
        entry["fit_wall_ratio"] = ratio(entry["bare"]["wall_s"], entry["trainable"]["fit_s"])
        reps.append(entry)

    bare_eps = [x for r in reps for x in r["bare"]["examples_per_s"]]
    ray_eps = [x for r in reps for x in r["trainable"]["examples_per_s"]]
    throughput = median([r["throughput_ratio"] for r in reps])
    summary = {
        "bare_examples_per_s_median": median(bare_eps),
        "trainable_examples_per_s_median": median(ray_eps),
        "throughput_ratio_median": throughput,
        "throughput_ratio_per_rep": [r["throughput_ratio"] for r in reps],
        "bare_wall_s_median": median([r["bare"]["wall_s"] for r in reps]),
        "trainable_wall_s_median": median([r["trainable"]["wall_s"] for r in reps]),
        "trainable_fit_s_median": median([r["trainable"]["fit_s"] for r in reps]),
        "ray_init_s_median": median([r["trainable"]["ray_init_s"] for r in reps]),
        "end_to_end_wall_ratio_median": median([r["wall_ratio"] for r in reps]),
        "fit_wall_ratio_median": median([r["fit_wall_ratio"] for r in reps]),
        "same_best_val_score": all(
            abs(r["bare"]["best_val_score"] - r["trainable"]["best_val_score"]) < 1e-9 for r in reps
        ),
    }
    e2e = summary["end_to_end_wall_ratio_median"]
    return BenchResult(
        name=NAME,
        description="Student training throughput (examples/s per epoch) inside the Ray Tune "
        "trainable (one-trial Tuner of run_trial via make_trainable) vs train() called directly; "
        "same config, data, epochs, 1 thread.",
        settings=ctx.settings_dict(
            train_config=config.to_flat(), teacher=ctx.teacher_info(), prepared_in_process=True
        ),
        measurements={"repetitions": reps},
        summary=summary,
        target=Target(
            "trainable examples/s >= 95% of the bare loop's (median over repetitions of the "
            "per-repetition ratio of mean per-epoch examples/s)",
            throughput,
            THRESHOLD,
        ),
        headline=f"throughput ratio {fmt_number(throughput, 3)} (per-epoch ex/s); end-to-end wall ratio "
        f"{fmt_number(e2e, 3)} incl. Ray start-up + checkpoints",
        notes=[
            "examples_per_s is measured by train() over each epoch's training steps only, on "
            "both sides; it excludes validation and the per-epoch checkpoint.",
            "end_to_end_wall_ratio = bare wall / trainable wall, where the trainable wall includes "
            "ray.init, the object-store put of the prepared bench, the trial actor's start-up, one "
            "checkpoint per epoch and ray.shutdown; fit_wall_ratio leaves out ray.init/shutdown.",
            "same_best_val_score: both sides train identically (same seed), a correctness check.",
            f"Ray ran the trial at niceness {ray_worker_niceness()} (RAY_worker_niceness; Ray's "
            f"default is 15), the bare loop at {os.nice(0)}: when other processes compete for the "
            "cores the trial gets less CPU, which lowers the ratio for reasons unrelated to the "
            "trainable. Measure on a quiet machine, or pass --ray-worker-niceness 0.",
        ],
    )
