"""Results (pure): search summaries and re-run records into the results dict, plus its curves.

:func:`analyse` builds the per-method statistics, the comparisons to vanilla KD and to plain
fine-tuning and the headline verdict (the dict written to ``results.json``);
:func:`search_trace` turns MLflow metric histories into a best-so-far search curve,
:func:`schedule_curves` evaluates each best configuration's schedules over training, and
:func:`config_changes` lists where a configuration differs from the bench's defaults.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ckd_tune.config import TrainConfig
from ckd_tune.methods import METHODS
from ckd_tune.report.formatting import signed
from ckd_tune.report.paper import paper_effect
from ckd_tune.report.reruns import CONTROL
from ckd_tune.report.stats import (
    ALPHA,
    BASELINE,
    FINETUNE,
    compare,
    describe,
    format_p,
    holm,
    mde,
    overall_verdict,
    paired_bootstrap,
    seed_mde,
    seeds_needed,
    verdict,
)

RANGE_EDGE = 0.05  # a best value within 5% of a search range's bound: the range may bind

_IGNORED_CONFIG_KEYS = {"seed", "method", "num_threads"}


def search_trace(trials: Sequence[Sequence[tuple[float, int, float]]]) -> list[list[float]]:
    """Best-so-far validation score against cumulative trial-epochs for one method's search.

    ``trials`` are in start-time order, each a list of ``(timestamp, epoch, best_val_score)``
    (an MLflow metric history). The trial-epochs of all trials are merged in the order the search
    saw them (timestamp, then trial start order, then epoch), so concurrent trials interleave.
    Returns ``[[cumulative trial-epochs, best so far], ...]``.
    """
    points: dict[tuple[int, int], tuple[float, float]] = {}
    for i, history in enumerate(trials):
        for timestamp, step, value in history:
            if value is not None and math.isfinite(value):
                points[(i, int(step))] = (
                    float(timestamp),
                    float(value),
                )  # a replayed epoch: last wins
    ordered = sorted(points.items(), key=lambda kv: (kv[1][0], kv[0][0], kv[0][1]))
    trace, best = [], -math.inf
    for n, (_, (_, value)) in enumerate(ordered, start=1):
        best = max(best, value)
        trace.append([n, best])
    return trace


def schedule_curves(
    configs: Mapping[str, Mapping[str, Any]], points: int = 201
) -> dict[str, dict[str, list[float]]]:
    """The method's ``schedule(progress)`` on a progress grid for each method's flat config.

    Methods without scheduled values (``none``) are left out; ``kd`` has its constant ``T``;
    ``ctkd`` only its ``lambda`` curriculum (its ``T`` is learned: each run's history has it).
    Returns ``{method: {"progress": [...], "psi": [...], "phi": [...], "T": [...]}}``.
    """
    grid = np.linspace(0.0, 1.0, points)
    out: dict[str, dict[str, list[float]]] = {}
    for method, flat in configs.items():
        base = method.partition(":")[0]  # a search variant (ckd:pbt) schedules as its method
        if not flat or base not in METHODS:
            continue
        config = TrainConfig.from_flat({**flat, "method": base})
        scheduled = config.build_method()
        values = [scheduled.schedule(config.progress(float(p))) for p in grid]
        keys = sorted(set().union(*(v.keys() for v in values)))
        if not keys:
            continue
        out[method] = {"progress": [float(p) for p in grid]}
        for key in keys:
            out[method][key] = [float(v.get(key, math.nan)) for v in values]
    return out


def config_changes(flat: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of a flat config that differ from the bench's base config (seed etc. ignored)."""
    return {
        k: v
        for k, v in sorted(flat.items())
        if k not in _IGNORED_CONFIG_KEYS and (k not in base or base[k] != v)
    }


def range_flags(
    config: Mapping[str, Any], params: Sequence[Mapping[str, Any]], edge: float = RANGE_EDGE
) -> list[dict[str, Any]]:
    """The searched parameters whose best value lies within ``edge`` of a bound of its range.

    ``params``: the space's numeric parameters as ``{"name", "low", "high", "log"}`` (log:
    measured on a log scale). Such a value suggests the range cut the search short: widen it.
    """
    flags = []
    for spec in params:
        value, low, high = config.get(spec["name"]), spec["low"], spec["high"]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or high <= low:
            continue
        scale = math.log if spec.get("log") else float
        span = scale(high) - scale(low)
        position = (scale(value) - scale(low)) / span
        for bound, near in (("low", position <= edge), ("high", position >= 1 - edge)):
            if near:
                flags.append(
                    {"param": spec["name"], "value": value, "bound": bound, "low": low,
                     "high": high}
                )  # fmt: skip
    return flags


def analyse(
    summaries: Sequence[Mapping[str, Any]],
    reruns: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    metric: str,
    teacher: Mapping[str, Any] | None = None,
    base_config: Mapping[str, Any] | None = None,
    baseline: str = BASELINE,
    finetune: str = FINETUNE,
    task: str = "",
    labels: Sequence[float] | None = None,
    spaces: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    n_boot: int = 2000,
) -> dict[str, Any]:
    """Per-method statistics, comparisons to ``baseline`` and ``finetune``, the positive control
    and the verdict.

    ``summaries`` are :class:`ckd_tune.search.summary.MethodSummary` dicts; ``reruns[arm]`` the re-run
    records (``seed``, ``status`` ``"ok"``/``"failed"``, ``test_score``, ``val_score``,
    ``test_predictions``, ...), including the positive control's arm :data:`CONTROL`.
    A method whose search failed gets status ``"failed"`` (shown as FAILED), one whose re-runs all
    failed ``"reruns_failed"``. With the test ``labels`` and each record's ``test_predictions``,
    every comparison gets a paired bootstrap over seeds x test examples (the test the verdict
    uses, Holm-adjusted across the report's comparisons), its minimum detectable difference and
    the paper's effect at stake; without them the verdict falls back to the seed-only tests.
    A search variant (``ckd:pbt``) whose base method (``ckd``) is in the sweep is also compared
    with it, in ``comparisons[base][variant]`` (same test, same Holm family), with a
    ``learned_verdict`` sentence: does the learned schedule beat the hand-designed one.
    """
    base = dict(base_config or {})
    methods: dict[str, dict[str, Any]] = {}
    test_by_seed: dict[str, dict[int, float]] = {}
    preds: dict[str, dict[int, np.ndarray]] = {}
    for arm, records in reruns.items():
        preds[arm] = {
            int(r["seed"]): np.asarray(r["test_predictions"])
            for r in records
            if r["status"] == "ok" and r.get("test_predictions") is not None
        }
    for s in summaries:
        name = s["method"]
        records = sorted(reruns.get(name, []), key=lambda r: r["seed"])
        ok = [r for r in records if r["status"] == "ok"]
        if s["status"] != "ok":
            status = "failed"
        elif not ok:
            status = "reruns_failed"
        else:
            status = "ok"
        test_by_seed[name] = {int(r["seed"]): float(r["test_score"]) for r in ok}
        config = dict(s.get("best_config") or {})
        methods[name] = {
            "status": status,
            "search": {
                k: s.get(k)
                for k in (
                    "status",
                    "best_val_score",
                    "best_trial",
                    "best_run_id",
                    "trials",
                    "errored",
                    "trial_epochs",
                    "wall_seconds",
                )
            },
            "config": config,
            "config_changes": config_changes(config, base),
            "range_flags": range_flags(config, (spaces or {}).get(name, [])),
            "seeds": [_public(r) for r in records],
            "failed_seeds": [int(r["seed"]) for r in records if r["status"] != "ok"],
            "test": describe(r["test_score"] for r in ok),
            "val": describe(r["val_score"] for r in ok),
            "rerun_seconds": float(sum(r.get("seconds", 0.0) for r in records)),
        }
    label_array = None if labels is None else np.asarray(labels)

    def comparison(name: str, ref: str, scores: Mapping[int, float]) -> dict[str, Any]:
        c = compare(scores, test_by_seed[ref], name=name, baseline_name=ref)
        diffs = [scores[seed] - test_by_seed[ref][seed] for seed in c["paired_seeds"]]
        c["mde_seed_only"] = seed_mde(c)
        c["bootstrap"] = None
        if label_array is not None and len(set(preds.get(name, {})) & set(preds.get(ref, {}))):
            c["bootstrap"] = paired_bootstrap(
                preds[name], preds[ref], label_array, metric, n_boot=n_boot
            )
        boot = c["bootstrap"]
        c["mde"] = mde(boot["se"]) if boot else c["mde_seed_only"]
        c["paper"] = paper_effect(task, name, ref)
        c["seeds_needed"] = None
        stake = (c["paper"] or {}).get("at_stake")
        if boot and stake:
            sd_seed = float(np.std(diffs, ddof=1)) if len(diffs) >= 2 else None
            c["seeds_needed"] = seeds_needed(stake, sd_seed, boot["se_test"])
        return c

    comparisons: dict[str, dict[str, Any]] = {}
    for ref in dict.fromkeys((baseline, finetune)):
        if ref not in methods or methods[ref]["status"] != "ok":
            continue
        comparisons[ref] = {
            name: comparison(name, ref, test_by_seed[name])
            for name, m in methods.items()
            if name != ref and m["status"] == "ok"
        }
    for name, m in methods.items():  # a search variant (ckd:pbt) against its base method
        ref = variant_base(name)
        if ref is None or ref not in methods or m["status"] != "ok":
            continue
        if methods[ref]["status"] != "ok" or name in comparisons.get(ref, {}):
            continue  # kd:pbt vs kd is already among the comparisons with the baseline
        comparisons.setdefault(ref, {})[name] = comparison(name, ref, test_by_seed[name])
    family = [c for ref_c in comparisons.values() for c in ref_c.values()]
    adjusted = holm({str(i): c["bootstrap"] and c["bootstrap"]["p"] for i, c in enumerate(family)})
    for i, c in enumerate(family):
        c["p_holm"] = adjusted[str(i)]
        if c["bootstrap"] is not None:  # the verdict's test; else compare()'s seed-only rule
            boot = c["bootstrap"]
            excludes_zero = boot["ci_low"] > 0 or boot["ci_high"] < 0
            c["significant"] = bool(c["p_holm"] <= ALPHA and excludes_zero)
            c["testable"] = c["n_paired"] >= 2
        c["verdict"] = verdict(c, metric)
        c["sensitivity"] = sensitivity(c)
        if variant_base(c["method"]) == c["baseline"]:
            c["learned_verdict"] = learned_verdict(c, metric)

    control_ok = [r for r in reruns.get(CONTROL, []) if r["status"] == "ok"]
    control = None
    if control_ok and methods.get(baseline, {}).get("status") == "ok":
        test_by_seed[CONTROL] = {int(r["seed"]): float(r["test_score"]) for r in control_ok}
        control = _positive_control(
            comparison(baseline, CONTROL, test_by_seed[baseline]), control_ok, metric
        )
    statuses = {name: m["status"] for name, m in methods.items()}
    return {
        "metric": metric,
        "baseline": baseline,
        "finetune": finetune,
        "teacher": dict(teacher or {}),
        "methods": methods,
        "comparisons": comparisons,
        "positive_control": control,
        "verdict": overall_verdict(comparisons.get(baseline, {}), statuses, baseline),
    }


def variant_base(name: str) -> str | None:
    """The base method of a search variant (``ckd:pbt -> ckd``); None for a plain method."""
    base, _, variant = name.partition(":")
    return base if variant else None


def variant_comparisons(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The comparisons of each search variant (``ckd:pbt``) with its base method (``ckd``):
    the learned schedule against the hand-designed one, from ``results["comparisons"]``."""
    return [
        c
        for ref, by_method in results["comparisons"].items()
        for name, c in by_method.items()
        if variant_base(name) == ref
    ]


def learned_verdict(c: Mapping[str, Any], metric: str) -> str:
    """One sentence: does ``c["method"]``'s learned schedule beat ``c["baseline"]``'s
    hand-designed one (the difference, its CI and the verdict's test)."""
    name, ref, diff = c["method"], c["baseline"], c["mean_diff"]
    boot = c.get("bootstrap")
    low, high = (boot["ci_low"], boot["ci_high"]) if boot else (c["ci_low"], c["ci_high"])
    ci = "n/a" if low is None or high is None else f"[{signed(low)}, {signed(high)}]"
    p = c.get("p_holm") if boot else c.get("p_paired")
    test = (
        f"bootstrap 95% CI {ci}, Holm-adjusted p = {format_p(p)}"
        if boot
        else f"seed-only paired t-test 95% CI {ci}, p = {format_p(p)}"
    )
    if diff is None:
        return f"{name} vs {ref}: no paired re-runs, so the learned schedule is not compared."
    if c["significant"] and c["direction"] == "better":
        answer = "the learned schedule beats the hand-designed one"
    elif c["significant"]:
        answer = "the learned schedule is worse than the hand-designed one"
    else:
        answer = "the learned schedule is not shown to beat the hand-designed one"
    return (
        f"{name} (schedule learned by the search) vs {ref} (hand-designed schedule, its best "
        f"searched config): {answer}: {signed(diff)} {metric} ({test})."
    )


def _positive_control(
    c: Mapping[str, Any] | None, control: Sequence[Mapping[str, Any]], metric: str
) -> dict[str, Any] | None:
    """The positive control's result from the comparison of vanilla KD with its control arm."""
    if c is None:
        return None
    boot = c["bootstrap"]
    diff, low, high, p = (
        (boot["diff"], boot["ci_low"], boot["ci_high"], boot["p"])
        if boot
        else (c["mean_diff"], c["ci_low"], c["ci_high"], c["p_paired"])
    )
    passed = bool(p is not None and p <= ALPHA and low is not None and low > 0)
    method = c["method"]
    shown_p = "n/a" if p is None else f"{p:.3g}"
    return {
        "method": method,
        "versus": CONTROL,
        "description": f"{method} against {method} trained on teacher logits shuffled across "
        "examples (same config, same seeds)",
        "difference": diff,
        "ci": [low, high],
        "p": p,
        "p_paired_t": c["p_paired"],
        "mde": c["mde"],
        "test": "paired bootstrap over seeds x test examples" if boot else "paired t-test",
        "control": describe(r["test_score"] for r in control),
        "seeds": [_public(r) for r in control],
        "passed": passed,
        "verdict": (
            f"Positive control passed: {method} beats its shuffled-teacher control by "
            f"{signed(diff)} {metric} (95% CI [{signed(low)}, {signed(high)}], p = {shown_p}): "
            "this bench can separate methods."
            if passed
            else f"Positive control FAILED: {method} vs its shuffled-teacher control "
            f"{signed(diff)} {metric} (p = {shown_p}): this bench and profile cannot separate "
            "methods, so a 'no significant difference' below says nothing about the methods."
        ),
    }


def sensitivity(c: Mapping[str, Any]) -> str:
    """What the comparison could have seen: its minimum detectable difference (80% power,
    alpha 0.05) next to the paper's effect at stake, in plain words."""
    name, ref, d = c["method"], c["baseline"], c["mde"]
    if d is None:
        return f"{name} vs {ref}: the minimum detectable difference cannot be estimated."
    text = f"{name} vs {ref}: differences below {d * 100:.1f} points are not detectable here"
    paper = c.get("paper")
    if not paper:
        return text + " (80% power, alpha 0.05); the paper reports no number for this pair."
    points = " / ".join(f"{v:+.2f} ({k})" for k, v in paper["points"].items())
    stake = paper["at_stake"]
    text += f" (80% power, alpha 0.05); the paper reports {points}."
    if stake is None:
        return text
    if d <= stake:
        return text + f" This budget can resolve the paper's {stake * 100:+.2f} points."
    need = c.get("seeds_needed")
    more = (
        f"it would take about {need} seeds on this test set"
        if need
        else "no number of seeds can on this test set: its own sampling noise is larger than "
        "the effect, so it takes several tasks (the multi-task study)"
    )
    return text + f" This budget cannot resolve the paper's {stake * 100:+.2f} points; {more}."


def _public(record: Mapping[str, Any]) -> dict[str, Any]:
    """A re-run record for results.json: without its per-example test predictions."""
    return {k: v for k, v in record.items() if k != "test_predictions"}
