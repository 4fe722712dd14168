"""``scaling`` and ``memory``: one sweep run with 1 and with 2 concurrent trials.

Both benchmarks use the same pair of sweeps of the real CLI (random search + FIFO, so both
runs train exactly the same trial configs for the same epochs; ``--cpus-per-trial 1``, one
torch thread per trial), sampled for memory while they run. ``scaling`` compares their wall
times; ``memory`` compares per-trial peak memory and reports the driver's peak. Whichever runs
second reuses the sweeps of the first.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from benchmarks.common import BenchResult, Context, Target, fmt_number, ratio
from benchmarks.sweeps import REPO_ROOT, SweepRun, SweepSpec, run_sweep

SCALING = "scaling"
MEMORY = "memory"
SPEEDUP_THRESHOLD = 1.5  # 2 concurrent trials on 2 cores: ideal 2x
MEMORY_GROWTH_THRESHOLD = 1.10  # per-trial peak RSS, 2 concurrent / 1 concurrent
CONCURRENCY = (1, 2)

CLUSTER_NOTE = (
    "On a multi-GPU Ray cluster the same sweep spreads by resources, not by code changes: "
    "`--address auto --gpus-per-trial 0.25 --cpus-per-trial C` makes every trial ask Ray for a "
    "quarter GPU, so Ray packs 4 trials per GPU and runs 4 x (number of GPUs) trials at once "
    "(bounded by CPUs / C per node and by --max-concurrent), each trial seeing only its GPU; the "
    "driver puts the data and teacher logits in the object store once and every node fetches "
    "them, and --storage-path on shared storage lets trials checkpoint and resume on any node. "
    "Wall time then falls roughly with the number of concurrent trials until the searcher's "
    "sequential decisions (TPE needs finished trials) or ASHA's rungs become the bottleneck; "
    "the CPU numbers here show the per-trial overhead of running trials side by side."
)


def sweeps(ctx: Context) -> dict[int, SweepRun]:
    """The 1- and 2-concurrent-trial sweeps (run once per runner invocation, memory sampled)."""
    if "scaling_sweeps" not in ctx.shared:
        s = ctx.settings
        runs = {}
        for k in CONCURRENCY:
            spec = SweepSpec(
                name=f"scaling-concurrent{k}",
                args=[
                    "--methods", s.search_method,
                    "--searcher", "random",
                    "--scheduler", "fifo",
                    "--seed", "0",
                    "--num-samples", str(s.scaling_samples),
                    "--max-epochs", str(s.scaling_epochs),
                    "--cpus-per-trial", "1",
                    "--max-concurrent", str(k),
                ],
                sample_memory=True,
            )  # fmt: skip
            runs[k] = run_sweep(ctx, spec)
        ctx.shared["scaling_sweeps"] = runs
    return ctx.shared["scaling_sweeps"]


def _sweep_settings(ctx: Context, **extra: Any) -> dict[str, Any]:
    s = ctx.settings
    return ctx.settings_dict(
        sweep={
            "method": s.search_method,
            "searcher": "random",
            "scheduler": "fifo",
            "num_samples": s.scaling_samples,
            "max_epochs": s.scaling_epochs,
            "cpus_per_trial": 1,
            "max_concurrent": list(CONCURRENCY),
        },
        **extra,
    )


def run_scaling(ctx: Context) -> BenchResult:
    """Speed-up of the sweep's wall time from 1 to 2 concurrent trials."""
    runs = sweeps(ctx)
    one, two = runs[1], runs[2]
    speedup = ratio(one.search_wall_s, two.search_wall_s)
    e2e = ratio(one.wall_s, two.wall_s)
    eps = {
        k: [e.examples_per_s for e in r.events if e.examples_per_s is not None]
        for k, r in runs.items()
    }
    summary = {
        "search_wall_s": {k: r.search_wall_s for k, r in runs.items()},
        "process_wall_s": {k: r.wall_s for k, r in runs.items()},
        "speedup_search": speedup,
        "speedup_end_to_end": e2e,
        "trial_epochs": {k: r.trial_epochs for k, r in runs.items()},
        "per_trial_examples_per_s_mean": {
            k: (sum(v) / len(v) if v else None) for k, v in eps.items()
        },
        "concurrent_trials_seen": {
            k: (r.memory or {}).get("concurrent_trials_max") for k, r in runs.items()
        },
        "same_trial_results": _final_scores(one) == _final_scores(two),
    }
    return BenchResult(
        name=SCALING,
        description="Wall time of the same sweep (random + FIFO, identical trials) with 1 vs 2 "
        "concurrent trials, --cpus-per-trial 1, on this machine.",
        settings=_sweep_settings(ctx),
        measurements={f"concurrent_{k}": r.to_json() for k, r in runs.items()},
        summary=summary,
        target=Target(
            "search wall time speed-up from 1 to 2 concurrent trials >= 1.5x on 2 cores",
            speedup,
            SPEEDUP_THRESHOLD,
        ),
        headline=f"1 -> 2 concurrent trials: search {fmt_number(speedup)}x, end-to-end {fmt_number(e2e)}x",
        notes=[
            "search_wall_s is the method's search as the CLI times it (Tuner.fit and bookkeeping); "
            "process_wall_s adds Python/library imports, Ray start-up, and loading the data and "
            "cached teacher in the driver.",
            "The per-trial examples/s drop with 2 concurrent trials shows how much the two "
            "trials contend for the cores and memory bandwidth (and with any other load).",
            "same_trial_results: both sweeps trained the same trials to the same final scores "
            "(random search with one seed samples the same configs whatever the concurrency).",
        ],
        note=CLUSTER_NOTE,
    )


def run_memory(ctx: Context) -> BenchResult:
    """Peak memory of the driver and of one trial, with 1 vs 2 concurrent trials."""
    runs = sweeps(ctx)
    mem = {k: r.memory or {} for k, r in runs.items()}
    per_trial = {k: m.get("trial_peak_rss_mb") for k, m in mem.items()}
    growth = ratio(per_trial[2], per_trial[1])
    sizes = _payload_sizes(ctx)
    bare = _bare_probe(ctx)
    summary = {
        "trial_peak_rss_mb": per_trial,
        "trial_peak_uss_mb": {k: m.get("trial_peak_uss_mb") for k, m in mem.items()},
        "trial_peak_pss_mb": {k: m.get("trial_peak_pss_mb") for k, m in mem.items()},
        "trials_rss_sum_max_mb": {k: m.get("trials_rss_sum_max_mb") for k, m in mem.items()},
        "concurrent_trials_seen": {k: m.get("concurrent_trials_max") for k, m in mem.items()},
        "per_trial_growth": growth,
        "driver_peak_rss_mb": {k: r.driver_peak_rss_mb for k, r in runs.items()},
        "ray_services_rss_mb": {k: m.get("ray_services_peak_rss_mb_sum") for k, m in mem.items()},
        **sizes,
        "bare_process_peak_mb": bare,
        "trial_minus_bare_training_mb": None
        if per_trial[1] is None or "train_mb" not in bare
        else round(per_trial[1] - bare["train_mb"], 1),
    }
    return BenchResult(
        name=MEMORY,
        description="Peak resident memory of the sweep driver (its VmHWM) and of each trial "
        "worker (RSS/USS polled from outside), with 1 vs 2 concurrent trials.",
        settings=_sweep_settings(ctx, poll_interval_s=ctx.settings.poll_interval_s),
        measurements={f"concurrent_{k}": r.to_json(with_events=False) for k, r in runs.items()},
        summary=summary,
        target=Target(
            "a trial's peak RSS with 2 concurrent trials <= 1.10x its peak with 1",
            growth,
            MEMORY_GROWTH_THRESHOLD,
            higher_is_better=False,
        ),
        headline=f"trial peak RSS {_mb(per_trial[1])} (1 at a time) vs {_mb(per_trial[2])} "
        f"(2 at a time); driver {_mb(runs[1].driver_peak_rss_mb)}",
        notes=[
            "Trial workers are found by their Ray process title (ImplicitFunc); memory is polled "
            f"every {ctx.settings.poll_interval_s} s, USS/PSS every 4th poll, so short peaks "
            "between polls can be missed.",
            "RSS counts pages shared with other processes (libraries, object-store pages the "
            "worker maps); USS counts only the worker's own pages.",
            "bare_process_peak_mb: the same student trained for the same epochs in a plain Python "
            "process with the same imports and the same unpickled bench, no Ray: the trial's "
            "peak minus this (trial_minus_bare_training_mb) is what running inside Ray adds.",
            "The prepared bench (data + teacher logits) is put in Ray's object store once per "
            "search; each trial deserialises its own copy of the tensors, so its size "
            "(prepared_pickle_mb) is part of every trial's footprint, independent of how many "
            "trials run at once.",
        ],
    )


def _bare_probe(ctx: Context) -> dict[str, Any]:
    """Peak RSS of one student trained the same way in a plain process (no Ray), for scale."""
    from ray import cloudpickle

    path = ctx.work_dir / "prepared.pkl"
    path.write_bytes(cloudpickle.dumps(ctx.prepared))  # what with_parameters stores
    s = ctx.settings
    command = [sys.executable, "-m", "benchmarks.memory_probe", str(path), str(s.scaling_epochs)]
    done = subprocess.run(
        [*command, s.search_method], capture_output=True, text=True, cwd=REPO_ROOT, check=False
    )
    if done.returncode != 0:
        return {"error": done.stderr[-1000:]}
    return {k: round(v, 1) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def _payload_sizes(ctx: Context) -> dict[str, Any]:
    """Sizes (MB) of what a trial holds besides PyTorch itself."""
    prepared = ctx.prepared
    student = prepared.build_student(0)
    params = sum(p.numel() * p.element_size() for p in student.parameters())
    logits = sum(t.numel() * t.element_size() for t in prepared.teacher.logits.values())
    try:
        from ray import cloudpickle

        pickled: float | None = len(cloudpickle.dumps(prepared)) / 2**20
    except Exception:  # a size for context only
        pickled = None
    return {
        "student_params_mb": round(params / 2**20, 2),
        "student_training_state_mb_approx": round(4 * params / 2**20, 2),  # weights+grads+Adam
        "teacher_logits_mb": round(logits / 2**20, 3),
        "prepared_pickle_mb": None if pickled is None else round(pickled, 2),
    }


def _final_scores(run: SweepRun) -> list[float]:
    """Each trial's last reported best score, sorted (order-free comparison of two sweeps)."""
    last: dict[str, float] = {}
    for e in run.events:
        last[e.trial_id] = e.best_val_score
    return sorted(last.values())


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} MB"
