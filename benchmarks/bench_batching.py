"""``length_grouping``: training with length-grouped batches vs plainly shuffled ones.

Both sides call :func:`ckd_tune.train.train` with the same KD config, data and student seed;
only ``group_by_length`` differs. Grouping examples of similar length into a batch removes most
of the padding that dynamic padding leaves in a random batch, so the steps get cheaper; it also
changes which examples share a batch, so the benchmark checks the held-out (test split) accuracy
too: one run per seed on each side, compared pairwise with the report's own statistics.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import BenchResult, Context, Target, fmt_number, mean, median, ratio

NAME = "length_grouping"
THRESHOLD = 1.5
SIDES = {"grouped": True, "shuffled": False}
LR = 1e-4  # in the range the GLUE searches pick (the bench's base 5e-5 barely moves in 3 epochs)


def timed_run(ctx: Context, config: Any) -> dict[str, Any]:
    """One KD run: wall time, per-epoch throughput, padding, best validation and test accuracy."""
    from ckd_tune.train import evaluate, train

    prepared = ctx.prepared
    t0 = time.perf_counter()
    student = prepared.build_student(config.seed)
    result = train(config, prepared.data, student, prepared.teacher_signal)
    wall = time.perf_counter() - t0
    student.load_state_dict(result.best_state)
    test = evaluate(student, prepared.data, "test", batch_size=2 * config.batch_size)
    return {
        "wall_s": wall,
        "examples_per_s": [h["examples_per_s"] for h in result.history],
        "best_val_score": result.best_score,
        "test_score": test[prepared.data.main_metric],
    }


def padded_tokens(ctx: Context, config: Any) -> dict[str, int]:
    """Tokens the model sees in one epoch's batches (with padding) vs real tokens."""
    from ckd_tune.train import train_loader

    data = ctx.prepared.data
    padded = sum(b["input_ids"].numel() for b in train_loader(config, data, 0))
    return {"padded": padded, "real": int(sum(data.train.lengths))}


def run(ctx: Context) -> BenchResult:
    """Train each side once per seed (``settings.repeats`` seeds, alternating order)."""
    from ckd_tune.report.stats import compare, verdict

    prepared = ctx.prepared
    base = prepared.base_config.replace(method=ctx.settings.method, lr=LR)
    runs: list[dict[str, Any]] = []
    for seed in range(ctx.settings.repeats):
        order = list(SIDES) if seed % 2 == 0 else list(reversed(SIDES))
        entry: dict[str, Any] = {"seed": seed, "order": order}
        for side in order:
            entry[side] = timed_run(ctx, base.replace(seed=seed, group_by_length=SIDES[side]))
        entry["throughput_ratio"] = ratio(
            mean(entry["grouped"]["examples_per_s"]), mean(entry["shuffled"]["examples_per_s"])
        )
        runs.append(entry)
    speedup = median([r["throughput_ratio"] for r in runs])
    test = {side: {r["seed"]: r[side]["test_score"] for r in runs} for side in SIDES}
    comparison = compare(
        test["grouped"], test["shuffled"], name="grouped", baseline_name="shuffled"
    )
    metric = prepared.data.main_metric
    summary = {
        "throughput_ratio_median": speedup,
        "grouped_examples_per_s_median": median(
            [x for r in runs for x in r["grouped"]["examples_per_s"]]
        ),
        "shuffled_examples_per_s_median": median(
            [x for r in runs for x in r["shuffled"]["examples_per_s"]]
        ),
        "wall_ratio_median": median(
            [ratio(r["shuffled"]["wall_s"], r["grouped"]["wall_s"]) for r in runs]
        ),
        **{f"{side}_test_{metric}_mean": mean(list(test[side].values())) for side in SIDES},
        "test_comparison": comparison,
        "test_verdict": verdict(comparison, metric),
        "tokens_per_epoch": {
            side: padded_tokens(ctx, base.replace(group_by_length=flag))
            for side, flag in SIDES.items()
        },
    }
    diff = comparison["mean_diff"]
    return BenchResult(
        name=NAME,
        description="Student training with length-grouped batches (group_by_length, the "
        "default for text) vs plainly shuffled batches: examples/s per epoch and held-out test "
        "accuracy per seed; same KD config, data and seeds, 1 thread.",
        settings=ctx.settings_dict(train_config=base.to_flat(), seeds=ctx.settings.repeats),
        measurements={"runs": runs},
        summary=summary,
        target=Target(
            "length-grouped batches >= 1.5x the training examples/s of shuffled batches "
            "(median over seeds); the test-accuracy difference is reported, not targeted",
            speedup,
            THRESHOLD,
        ),
        headline=f"grouped batches {fmt_number(speedup)}x the examples/s; test {metric} "
        f"{'n/a' if diff is None else f'{diff:+.4f}'} vs shuffled "
        f"({'significant' if comparison['significant'] else 'no significant difference'}, "
        f"{len(runs)} seeds)",
        notes=[
            "Validation and test prediction batch by length on both sides (that is not what "
            "group_by_length switches), so the wall-time ratio understates the training speed-up.",
            "The accuracy comparison is the report's: paired t-test and Welch's test over seeds, "
            "significant only when both give p <= 0.05 and the paired 95% CI excludes 0.",
        ],
    )
