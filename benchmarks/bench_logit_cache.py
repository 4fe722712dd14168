"""``logit_cache``: a KD trial with cached teacher logits vs a teacher forward pass every step.

Both sides call :func:`ckd_tune.train.train` with the same config (method ``kd``, 1 thread),
data, student seed and epochs; only the teacher signal differs: ``CachedTeacher`` (what GLUE
trials use: logits computed once and read by example index) or ``LiveTeacher`` running the
fine-tuned 6-layer teacher, loaded from the same teacher cache. The two signals are checked to
agree on a batch, so both sides distil from the same targets.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import BenchResult, Context, Target, fmt_number, median, ratio

NAME = "logit_cache"
THRESHOLD = 1.5


def live_teacher(ctx: Context) -> Any:
    """``LiveTeacher`` over the fine-tuned teacher in the cache (never retrains it)."""
    from ckd_tune.models import TextModelSpec
    from ckd_tune.teacher import LiveTeacher, cached_teacher

    prepared = ctx.prepared

    def build(tmp: Any) -> dict:  # prepare() has just published it; reaching here is a bug
        raise RuntimeError("the fine-tuned teacher is missing from the cache")

    directory, _, _ = cached_teacher(
        ctx.cache_dir, prepared.teacher.fingerprint, build, ["model.safetensors"]
    )
    model = TextModelSpec(str(directory), prepared.data.num_labels, pretrained_head=True).build()
    return LiveTeacher(model)


def signal_gap(ctx: Context, live: Any) -> float:
    """Largest absolute difference between cached and live teacher logits on one batch."""
    from torch.utils.data import DataLoader

    data = ctx.prepared.data
    loader = DataLoader(data.train, batch_size=ctx.settings.batch_size, collate_fn=data.collate)
    batch = next(iter(loader))
    return float((ctx.prepared.teacher_signal(batch) - live(batch)).abs().max())


def timed_trial(ctx: Context, config: Any, teacher: Any) -> dict[str, Any]:
    """One KD trial (student build + train) with ``teacher``; wall time and throughput."""
    from ckd_tune.train import train

    prepared = ctx.prepared
    t0 = time.perf_counter()
    student = prepared.build_student(config.seed)
    result = train(config, prepared.data, student, teacher)
    return {
        "wall_s": time.perf_counter() - t0,
        "examples_per_s": [h["examples_per_s"] for h in result.history],
        "best_val_score": result.best_score,
    }


def run(ctx: Context) -> BenchResult:
    """Time both teacher signals ``settings.repeats`` times (alternating order)."""

    prepared = ctx.prepared
    config = prepared.base_config.replace(method=ctx.settings.method)
    live = live_teacher(ctx)
    gap = signal_gap(ctx, live)
    signals = {"cached": prepared.teacher_signal, "live": live}
    reps = []
    for rep in range(ctx.settings.repeats):
        order = ("cached", "live") if rep % 2 == 0 else ("live", "cached")
        entry: dict[str, Any] = {"order": list(order)}
        for side in order:
            entry[side] = timed_trial(ctx, config, signals[side])
        entry["speedup"] = ratio(entry["live"]["wall_s"], entry["cached"]["wall_s"])
        reps.append(entry)
    speedup = median([r["speedup"] for r in reps])
    summary = {
        "cached_trial_s_median": median([r["cached"]["wall_s"] for r in reps]),
        "live_trial_s_median": median([r["live"]["wall_s"] for r in reps]),
        "speedup_median": speedup,
        "speedup_per_rep": [r["speedup"] for r in reps],
        "cached_examples_per_s_median": median(
            [x for r in reps for x in r["cached"]["examples_per_s"]]
        ),
        "live_examples_per_s_median": median(
            [x for r in reps for x in r["live"]["examples_per_s"]]
        ),
        "max_abs_logit_gap_cached_vs_live": gap,
    }
    return BenchResult(
        name=NAME,
        description="Wall time of one KD trial (student build + train(), validation each epoch) "
        "with cached teacher logits vs a live forward pass of the fine-tuned 6-layer teacher "
        "every step; same config, data, seed, epochs, 1 thread.",
        settings=ctx.settings_dict(
            train_config=config.to_flat(),
            teacher=ctx.teacher_info(),
            student_layers=prepared.profile.student_layers,
        ),
        measurements={"repetitions": reps},
        summary=summary,
        target=Target(
            "cached-logit trial >= 1.5x faster than a live-teacher trial (median of live/cached "
            "wall-time ratios)",
            speedup,
            THRESHOLD,
        ),
        headline=f"cached logits {fmt_number(speedup)}x faster per trial",
        notes=[
            "Trial time includes per-epoch validation (student only) on both sides, so the "
            "speed-up of the training steps alone is larger (compare the examples/s).",
            "Computing the cached logits is a one-off per (teacher, data) and is not counted.",
            "max_abs_logit_gap_cached_vs_live checks both sides distil from the same targets.",
        ],
    )
