"""The comparison report: re-train each method's best configuration over several seeds and compare.

After a sweep (automatically at the end of ``python -m ckd_tune.search``, or later with
``python -m ckd_tune.report --experiment NAME``), each method's best configuration *by validation
score* is trained again with seeds ``sweep_seed + 0 .. n-1`` (the same seeds for every method, so
scores pair by seed), and the best-validation-epoch weights are scored once on the held-out test
split (GLUE dev / CIFAR test), which the search never saw. The report then gives per method the
mean, sample std and Student-t 95% CI of the test score, the difference to vanilla KD (``kd``) with
a paired t-test and Welch's test, the gain over plain fine-tuning (``none``), the teacher's score,
each search's budget, four plots, and the best seed's student, saved so that one call loads it::

    from ckd_tune.report import load_student
    model = load_student("ckd_runs/<sweep>/report/models/ckd")

Standalone, over an existing sweep's MLflow runs (the bench is rebuilt from what the sweep's
summary run records; the teacher comes from the cache)::

    python -m ckd_tune.report --experiment ckd_tune/glue/sst2 [--sweep NAME] [--seeds N]
        [--tracking-uri URI] [--output DIR] [--data-dir DIR] [--cache-dir DIR] [--no-ray]

Layout: pure functions turn score lists into statistics (:func:`describe`, :func:`compare`,
:func:`verdict`), re-run records into the results dict (:func:`analyse`), the results dict into
markdown (:func:`render_markdown`) and data into plots (``plot_*``); :func:`make_report` does the
orchestration (Ray tasks, MLflow runs, files). Every re-run is one MLflow run tagged
``role=rerun``; the re-runs of an earlier report of the same sweep are soft-deleted (``mlflow runs
restore`` brings them back) so each (sweep, method, seed) has exactly one.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy import stats
from torch import nn

from ckd_tune import cache
from ckd_tune.config import TrainConfig
from ckd_tune.errors import NonFiniteLossError, UserInputError
from ckd_tune.methods import METHODS

if TYPE_CHECKING:
    from ckd_tune.benches import PreparedBench

log = logging.getLogger("ckd_tune")

BASELINE = "kd"  # the comparison every method is tested against
FINETUNE = "none"  # the student trained on labels only: the gain from distillation is over this
ALPHA = 0.05
CONFIDENCE = 0.95
STUDENT_JSON = "student.json"
WEIGHTS_FILE = "model.pt"
PLOTS = {
    "val_curves": "val_curves.png",
    "schedules": "schedules.png",
    "search": "search_efficiency.png",
    "test_scores": "test_scores.png",
}
_IGNORED_CONFIG_KEYS = {"seed", "method", "num_threads"}
_COLORS = {"none": "#7f7f7f", "kd": "#1f77b4", "annealing_kd": "#ff7f0e", "ckd": "#2ca02c"}
_EXTRA_COLORS = ["#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]


# --------------------------------------------------------------------------------------------
# Statistics (pure)
# --------------------------------------------------------------------------------------------


def describe(scores: Iterable[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """n, mean, sample std (ddof=1) and the Student-t ``confidence`` interval of the mean.

    std and the interval are ``None`` with fewer than 2 scores (they cannot be estimated).
    """
    x = np.asarray(list(scores), dtype=float)
    out: dict[str, Any] = {
        "n": int(x.size),
        "mean": None,
        "std": None,
        "ci_low": None,
        "ci_high": None,
        "values": [float(v) for v in x],
    }
    if x.size == 0:
        return out
    mean = float(x.mean())
    out["mean"] = mean
    if x.size < 2:
        return out
    std = float(x.std(ddof=1))
    if std == 0.0:
        low = high = mean
    else:
        low, high = stats.t.interval(
            confidence, x.size - 1, loc=mean, scale=std / math.sqrt(x.size)
        )
    out.update(std=std, ci_low=float(low), ci_high=float(high))
    return out


def compare(
    scores: Mapping[int, float],
    baseline: Mapping[int, float],
    *,
    name: str = "method",
    baseline_name: str = BASELINE,
    alpha: float = ALPHA,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """``scores - baseline`` (both keyed by seed): paired t-test, Welch's test, mean difference + CI.

    The paired test (``scipy.stats.ttest_rel``) uses the seeds both have; Welch's test
    (``ttest_ind(equal_var=False)``) all scores of each. ``mean_diff`` and its CI are the paired
    ones (Welch's are given as ``welch_*``). ``significant`` needs both p-values <= ``alpha`` and a
    paired CI that excludes 0; ``testable`` is False when either test cannot be done (fewer than 2
    seeds) or is undefined (no variation).
    """
    seeds = sorted(set(scores) & set(baseline))
    a, b = list(scores.values()), list(baseline.values())
    out: dict[str, Any] = {
        "method": name,
        "baseline": baseline_name,
        "n": len(a),
        "n_baseline": len(b),
        "n_paired": len(seeds),
        "paired_seeds": seeds,
        "mean_diff": None,
        "ci_low": None,
        "ci_high": None,
        "p_paired": None,
        "t_paired": None,
        "p_welch": None,
        "t_welch": None,
        "welch_mean_diff": None,
        "welch_ci_low": None,
        "welch_ci_high": None,
        "alpha": alpha,
        "confidence": confidence,
        "testable": False,
        "significant": False,
        "direction": None,
    }
    pa = np.asarray([scores[s] for s in seeds], dtype=float)
    pb = np.asarray([baseline[s] for s in seeds], dtype=float)
    if seeds:
        out["mean_diff"] = float((pa - pb).mean())
    if a and b:
        out["welch_mean_diff"] = float(np.mean(a) - np.mean(b))
        if not seeds:
            out["mean_diff"] = out["welch_mean_diff"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # near-constant data: scipy warns, we check
        if len(seeds) >= 2:
            res = stats.ttest_rel(pa, pb)
            ci = res.confidence_interval(confidence)
            out.update(
                p_paired=_finite(res.pvalue),
                t_paired=_finite(res.statistic),
                ci_low=_finite(ci.low),
                ci_high=_finite(ci.high),
            )
        if len(a) >= 2 and len(b) >= 2:
            res = stats.ttest_ind(a, b, equal_var=False)
            ci = res.confidence_interval(confidence)
            out.update(
                p_welch=_finite(res.pvalue),
                t_welch=_finite(res.statistic),
                welch_ci_low=_finite(ci.low),
                welch_ci_high=_finite(ci.high),
            )
    testable = (
        out["p_paired"] is not None
        and out["p_welch"] is not None
        and out["ci_low"] is not None
        and out["ci_high"] is not None
    )
    out["testable"] = testable
    if testable:
        excludes_zero = out["ci_low"] > 0 or out["ci_high"] < 0
        out["significant"] = bool(
            out["p_paired"] <= alpha and out["p_welch"] <= alpha and excludes_zero
        )
    if out["mean_diff"] is not None:
        out["direction"] = (
            "better" if out["mean_diff"] > 0 else "worse" if out["mean_diff"] < 0 else "equal"
        )
    return out


def verdict(comparison: Mapping[str, Any], metric: str = "score") -> str:
    """One plain sentence about a :func:`compare` result; never calls an unproven gap a win."""
    a, b = comparison["method"], comparison["baseline"]
    diff = comparison["mean_diff"]
    n = comparison["n_paired"]
    if comparison["n"] == 0 or comparison["n_baseline"] == 0:
        missing = a if comparison["n"] == 0 else b
        return f"{a} vs {b}: the test cannot be done: {missing} has no successful re-run."
    if _too_few(comparison):
        return (
            f"{a} vs {b}: the test cannot be done with {n} paired seed(s) "
            f"(at least 2 are needed); observed difference {_signed(diff)} {metric}."
        )
    tests = (
        f"95% CI [{_signed(comparison['ci_low'])}, {_signed(comparison['ci_high'])}]; "
        f"paired t-test p = {format_p(comparison['p_paired'])}, "
        f"Welch p = {format_p(comparison['p_welch'])}; {n} seeds"
    )
    if comparison["significant"]:
        return (
            f"{a} is significantly {comparison['direction']} than {b}: "
            f"{_signed(diff)} {metric} ({tests})."
        )
    if not comparison["testable"]:
        return (
            f"no significant difference between {a} and {b}: {_signed(diff)} {metric}; the tests "
            f"are undefined because the scores do not vary across seeds ({n} seeds)."
        )
    note = ""
    alpha = comparison["alpha"]
    if comparison["p_paired"] <= alpha < comparison["p_welch"]:
        note = " The paired test alone is below the threshold; Welch's test does not confirm it."
    elif comparison["p_welch"] <= alpha < comparison["p_paired"]:
        note = " Welch's test alone is below the threshold; the paired test does not confirm it."
    return (
        f"no significant difference between {a} and {b}: {_signed(diff)} {metric} ({tests}); "
        f"the evidence does not separate them.{note}"
    )


def short_verdict(comparison: Mapping[str, Any] | None) -> str:
    """A table cell: 'significantly better', 'no significant difference', 'not testable', ..."""
    if comparison is None:
        return "n/a"
    if comparison["significant"]:
        return f"significantly {comparison['direction']}"
    if _too_few(comparison):
        return "not testable (n < 2)"
    return "no significant difference"


def overall_verdict(
    comparisons: Mapping[str, Mapping[str, Any]],
    statuses: Mapping[str, str],
    baseline: str = BASELINE,
) -> str:
    """The headline sentence of the comparison against ``baseline``."""
    label = "vanilla KD (kd)" if baseline == BASELINE else baseline
    if baseline not in statuses:
        return f"{label} was not part of this sweep, so no method is compared against it."
    if statuses[baseline] == "failed":
        return f"{label} failed in the search, so no method can be compared against it."
    if statuses[baseline] != "ok":
        return f"{label} has no successful re-run, so no method can be compared against it."
    others = [m for m in statuses if m != baseline]
    if not others:
        return f"{label} is the only method of this sweep; there is nothing to compare."
    labels = {m: short_verdict(comparisons.get(m)) for m in others if statuses[m] == "ok"}
    better = [m for m, v in labels.items() if v == "significantly better"]
    worse = [m for m, v in labels.items() if v == "significantly worse"]
    untestable = [m for m, v in labels.items() if v.startswith("not testable")]
    failed = [m for m in others if statuses[m] != "ok"]
    parts = []
    if better:
        parts.append(
            f"{_join(better)} {'is' if len(better) == 1 else 'are'} significantly better than {label} "
            "on the test split (both tests p <= 0.05, CI of the difference excludes 0)."
        )
    elif untestable and len(untestable) == len(labels):
        parts.append(
            f"The comparison with {label} cannot be tested (fewer than 2 seeds), so no method "
            "is shown to be better or worse."
        )
        untestable = []
    else:
        parts.append(f"No method is significantly better than {label} on the test split.")
    if worse:
        parts.append(f"{_join(worse)} {'is' if len(worse) == 1 else 'are'} significantly worse.")
    rest = [m for m in others if m not in better + worse + failed + untestable]
    if rest:
        parts.append(f"For {_join(rest)}: no significant difference.")
    if untestable:
        parts.append(f"For {_join(untestable)} the test cannot be done (fewer than 2 seeds).")
    if failed:
        parts.append(
            f"{_join(failed)} failed and {'is' if len(failed) == 1 else 'are'} not compared."
        )
    return " ".join(parts)


def _too_few(c: Mapping[str, Any]) -> bool:
    """Fewer than 2 paired seeds, or fewer than 2 scores on either side: no test is possible."""
    return c["n_paired"] < 2 or c["n"] < 2 or c["n_baseline"] < 2


def format_p(p: float | None) -> str:
    """A p-value for text: 'n/a', '< 0.001' or three decimals."""
    if p is None:
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


# --------------------------------------------------------------------------------------------
# Curves (pure)
# --------------------------------------------------------------------------------------------


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
    """``METHODS[m].schedule(config, p)`` on a progress grid for each method's flat config.

    Methods without a schedule (``none``, ``kd``) are left out. Returns
    ``{method: {"progress": [...], "psi": [...], "phi": [...], "T": [...]}}``.
    """
    grid = np.linspace(0.0, 1.0, points)
    out: dict[str, dict[str, list[float]]] = {}
    for method, flat in configs.items():
        if not flat or method not in METHODS:
            continue
        config = TrainConfig.from_flat({**flat, "method": method})
        values = [METHODS[method].schedule(config, float(p)) for p in grid]
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


# --------------------------------------------------------------------------------------------
# Results (pure): search summaries + re-run records -> the results dict
# --------------------------------------------------------------------------------------------


def analyse(
    summaries: Sequence[Mapping[str, Any]],
    reruns: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    metric: str,
    teacher: Mapping[str, Any] | None = None,
    base_config: Mapping[str, Any] | None = None,
    baseline: str = BASELINE,
    finetune: str = FINETUNE,
) -> dict[str, Any]:
    """Per-method statistics, comparisons to ``baseline`` and ``finetune``, and the verdict.

    ``summaries`` are :class:`ckd_tune.search.MethodSummary` dicts; ``reruns[method]`` the re-run
    records (``seed``, ``status`` ``"ok"``/``"failed"``, ``test_score``, ``val_score``, ...).
    A method whose search failed gets status ``"failed"`` (shown as FAILED), one whose re-runs all
    failed ``"reruns_failed"``.
    """
    base = dict(base_config or {})
    methods: dict[str, dict[str, Any]] = {}
    test_by_seed: dict[str, dict[int, float]] = {}
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
            "config": dict(s.get("best_config") or {}),
            "config_changes": config_changes(s.get("best_config") or {}, base),
            "seeds": [dict(r) for r in records],
            "failed_seeds": [int(r["seed"]) for r in records if r["status"] != "ok"],
            "test": describe(r["test_score"] for r in ok),
            "val": describe(r["val_score"] for r in ok),
            "rerun_seconds": float(sum(r.get("seconds", 0.0) for r in records)),
        }
    comparisons: dict[str, dict[str, Any]] = {}
    for ref in dict.fromkeys((baseline, finetune)):
        if ref not in methods or methods[ref]["status"] != "ok":
            continue
        comparisons[ref] = {
            name: compare(test_by_seed[name], test_by_seed[ref], name=name, baseline_name=ref)
            for name, m in methods.items()
            if name != ref and m["status"] == "ok"
        }
    for ref_comparisons in comparisons.values():
        for c in ref_comparisons.values():
            c["verdict"] = verdict(c, metric)
    statuses = {name: m["status"] for name, m in methods.items()}
    return {
        "metric": metric,
        "baseline": baseline,
        "finetune": finetune,
        "teacher": dict(teacher or {}),
        "methods": methods,
        "comparisons": comparisons,
        "verdict": overall_verdict(comparisons.get(baseline, {}), statuses, baseline),
    }


# --------------------------------------------------------------------------------------------
# Markdown (pure)
# --------------------------------------------------------------------------------------------


def render_markdown(results: Mapping[str, Any]) -> str:
    """The report as markdown, from a results dict (as written to ``results.json``)."""
    setup = results["setup"]
    metric = results["metric"]
    methods = results["methods"]
    teacher = results.get("teacher") or {}
    baseline, finetune = results["baseline"], results["finetune"]
    vs_base = results["comparisons"].get(baseline, {})
    vs_ft = results["comparisons"].get(finetune, {})
    machine = setup.get("machine", {})
    lines: list[str] = [f"# KD comparison report: {results['sweep']}", ""]
    lines += [f"**Verdict:** {results['verdict']}", ""]

    lines += ["## Setup", ""]
    gpus = ", ".join(machine.get("gpus") or []) or "none"
    ray_info = machine.get("ray")
    lines += [
        f"- **Bench / task:** {setup['bench']} / {setup['task']} (profile `{setup['profile']}`); "
        f"test metric: **{metric}** on the held-out test split (never used for selection)",
        f"- **Teacher:** {teacher.get('name', 'n/a')} (val {metric} {_num(teacher.get('val'))}, "
        f"test {metric} {_num(teacher.get('test'))})",
        f"- **Student:** {setup.get('student', 'n/a')}",
        f"- **Search budget per method:** {setup.get('num_samples') or 'n/a'} trials "
        f"(searcher {setup.get('searcher') or 'n/a'}, scheduler {setup.get('scheduler') or 'n/a'}), "
        f"up to {setup.get('epochs')} epochs each; best configuration chosen by validation "
        f"{metric}",
        f"- **Re-runs:** {len(setup['seeds'])} seeds per method ({_seed_list(setup['seeds'])}, "
        "the same for every method, paired by seed), full epochs, best-validation-epoch weights "
        "scored on the test split",
        f"- **Machine:** {machine.get('platform', 'n/a')}; {machine.get('cpus', 'n/a')} CPUs; "
        f"GPUs: {gpus}; torch {machine.get('torch', 'n/a')}"
        + (
            f"; Ray cluster: {ray_info.get('nodes')} node(s), {ray_info.get('CPU')} CPUs, "
            f"{ray_info.get('GPU') or 0} GPUs"
            if ray_info
            else ""
        ),
        (
            f"- **MLflow:** experiment id {setup['experiment_id']}, summary run "
            f"{setup.get('summary_run') or 'n/a'} (re-runs are tagged `role=rerun`)"
            if setup.get("experiment_id")
            else "- **MLflow:** not used"
        ),
        "",
    ]

    lines += ["## Results", ""]
    lines += [
        f"Test {metric} over the re-run seeds: mean ± sample std, Student-t 95% CI of the mean; "
        f"Δ = mean paired difference to {finetune} (plain fine-tuning, the gain from distillation) "
        f"and to {baseline} (vanilla KD); * marks a significant difference (see below).",
        "",
        f"| method | status | best val {metric} (search) | test {metric} mean ± std | 95% CI | "
        f"seeds ok / run | Δ vs {finetune} | Δ vs {baseline} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if teacher:
        lines.append(
            f"| teacher | - | {_num(teacher.get('val'))} | {_num(teacher.get('test'))} | - | - | "
            f"{_delta_teacher(teacher.get('test'), methods.get(finetune))} | - |"
        )
    for name, m in methods.items():
        test = m["test"]
        run = len(m["seeds"])
        if m["status"] == "failed":
            lines.append(
                f"| {name} | **FAILED** (every search trial failed) | - | FAILED | - | 0 / 0 | - | - |"
            )
            continue
        status = "ok" if m["status"] == "ok" else "**all re-runs failed**"
        mean_std = (
            "-"
            if test["mean"] is None
            else f"{_num(test['mean'])} ± {_num(test['std'])}"
            if test["std"] is not None
            else f"{_num(test['mean'])} (1 seed)"
        )
        ci = (
            f"[{_num(test['ci_low'])}, {_num(test['ci_high'])}]"
            if test["ci_low"] is not None
            else "n/a (n < 2)"
        )
        lines.append(
            f"| {name} | {status} | {_num(m['search']['best_val_score'])} | {mean_std} | {ci} | "
            f"{test['n']} / {run} | {_delta(vs_ft.get(name), name == finetune)} | "
            f"{_delta(vs_base.get(name), name == baseline)} |"
        )
    lines.append("")
    failed_seeds = {n: m["failed_seeds"] for n, m in methods.items() if m["failed_seeds"]}
    if failed_seeds:
        lines += [
            "Failed re-runs (non-finite loss or a crash; excluded from the statistics): "
            + "; ".join(f"{n}: seeds {_seed_list(s)}" for n, s in failed_seeds.items()),
            "",
        ]
    lines += ["### Best configurations (changes from the bench defaults)", ""]
    for name, m in methods.items():
        if m["status"] == "failed":
            lines.append(f"- **{name}**: FAILED, no configuration")
        else:
            changes = ", ".join(f"`{k}={_fmt(v)}`" for k, v in m["config_changes"].items())
            lines.append(f"- **{name}**: {changes or 'the defaults'}")
    lines.append("")

    lines += [f"## Statistical comparison vs vanilla KD ({baseline})", ""]
    lines += [
        f"Difference = method − {baseline} in test {metric}, paired by seed. A difference is "
        "called significant only when the paired t-test and Welch's t-test both give p ≤ 0.05 "
        "and the 95% CI of the paired difference excludes 0; otherwise the report says "
        '"no significant difference".',
        "",
    ]
    if vs_base:
        lines += [
            "| method | mean difference | 95% CI | paired t-test p | Welch p | seeds | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, c in vs_base.items():
            ci = (
                f"[{_signed(c['ci_low'])}, {_signed(c['ci_high'])}]"
                if c["ci_low"] is not None
                else "n/a"
            )
            lines.append(
                f"| {name} | {_signed(c['mean_diff'])} | {ci} | {format_p(c['p_paired'])} | "
                f"{format_p(c['p_welch'])} | {c['n_paired']} | {short_verdict(c)} |"
            )
        lines.append("")
        lines += [f"- {c['verdict']}" for c in vs_base.values()]
        lines.append("")
    lines += [f"**Verdict:** {results['verdict']}", ""]
    if vs_ft:
        lines += [f"Gain from distillation (vs {finetune}, plain fine-tuning):", ""]
        lines += [f"- {c['verdict']}" for c in vs_ft.values()]
        lines.append("")

    lines += ["## Search budget", ""]
    lines += [
        "| method | trials | failed trials | trial-epochs | search wall time | re-run time |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in methods.items():
        s = m["search"]
        lines.append(
            f"| {name} | {s.get('trials', '-')} | {s.get('errored', '-')} | "
            f"{s.get('trial_epochs', '-')} | {_duration(s.get('wall_seconds'))} | "
            f"{_duration(m['rerun_seconds']) if m['seeds'] else '-'} |"
        )
    lines.append("")

    plots = results.get("plots", {})
    captions = {
        "val_curves": f"Validation {metric} per epoch of the best configurations (mean ± std over seeds)",
        "schedules": "Schedules of the best configurations over training (psi, phi, T)",
        "search": f"Search efficiency: best validation {metric} so far vs cumulative trial-epochs",
        "test_scores": f"Test {metric} per seed (box + points); the dashed line is the teacher",
    }
    lines += ["## Plots", ""]
    for key, caption in captions.items():
        if key in plots:
            lines += [f"### {caption}", "", f"![{caption}]({plots[key]})", ""]

    lines += ["## Best models", ""]
    saved = {n: m["model"] for n, m in methods.items() if m.get("model")}
    if saved:
        lines += [
            "For each method, the student of the seed with the best **validation** score (not "
            "test, so the choice stays honest), at its best validation epoch:",
            "",
            f"| method | seed | val {metric} | test {metric} | path |",
            "|---|---|---|---|---|",
        ]
        for name, info in saved.items():
            lines.append(
                f"| {name} | {info['seed']} | {_num(info['val_score'])} | "
                f"{_num(info['test_score'])} | `{info['path']}` |"
            )
        first = next(iter(saved.values()))
        lines += [
            "",
            "Load one with a single call (returns a `torch.nn.Module` in eval mode):",
            "",
            "```python",
            "from ckd_tune.report import load_student",
            f'model = load_student("{first["path"]}")',
            "```",
            "",
        ]
        if first.get("format") == "transformers":
            lines += [
                "The directory is also a plain Hugging Face model with its tokenizer "
                "(`AutoModelForSequenceClassification.from_pretrained(path)`, "
                "`AutoTokenizer.from_pretrained(path)`).",
                "",
            ]
        else:
            lines += [
                f"The directory holds the state dict (`{WEIGHTS_FILE}`, load with "
                f"`weights_only=True`) and `{STUDENT_JSON}`, which names the builder and its "
                "arguments.",
                "",
            ]
    else:
        lines += ["No model was saved (no method has a successful re-run).", ""]
    files = ", ".join(f"`{v}`" for v in plots.values())
    lines += [
        f"Machine-readable results: `results.json`; plots: {files}. The same files are "
        "artifacts of the sweep's MLflow summary run (folder `report`).",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Plots (from data; matplotlib Agg, no pyplot state)
# --------------------------------------------------------------------------------------------


def _figure(width: float = 7.0, height: float = 4.5) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _color(method: str, order: Sequence[str]) -> str:
    if method in _COLORS:
        return _COLORS[method]
    extras = [m for m in order if m not in _COLORS]
    return _EXTRA_COLORS[extras.index(method) % len(_EXTRA_COLORS)] if method in extras else "k"


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_val_curves(
    curves: Mapping[str, Sequence[Sequence[float]]],
    path: Path,
    *,
    metric: str = "score",
    teacher: float | None = None,
) -> Path:
    """Validation score per epoch, mean ± std over seeds, one line per method.

    ``curves[method]`` holds one list of per-epoch scores per seed (lists may differ in length).
    """
    fig = _figure()
    ax = fig.subplots()
    order = list(curves)
    drawn = False
    for method, seeds in curves.items():
        seeds = [s for s in seeds if len(s)]
        if not seeds:
            continue
        length = max(len(s) for s in seeds)
        epochs = np.arange(1, length + 1)
        mean = np.array([np.mean([s[e] for s in seeds if len(s) > e]) for e in range(length)])
        std = np.array(
            [
                np.std([s[e] for s in seeds if len(s) > e], ddof=1)
                if sum(len(s) > e for s in seeds) > 1
                else 0.0
                for e in range(length)
            ]
        )
        color = _color(method, order)
        ax.plot(epochs, mean, marker="o", color=color, label=f"{method} (n={len(seeds)})")
        ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2)
        drawn = True
    if not drawn:
        _empty(ax, "no re-run histories")
    else:
        if teacher is not None:
            ax.axhline(teacher, color="k", linestyle="--", linewidth=1, label="teacher")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"validation {metric}")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend()
    ax.set_title("Best configurations: validation curves (mean ± std over seeds)")
    fig.savefig(path, dpi=110)
    return path


def plot_schedules(curves: Mapping[str, Mapping[str, Sequence[float]]], path: Path) -> Path:
    """psi, phi and T of each method's best config over training progress (from :func:`schedule_curves`)."""
    keys = [k for k in ("psi", "phi", "T") if any(k in c for c in curves.values())]
    keys += sorted({k for c in curves.values() for k in c} - {"progress", *keys})
    fig = _figure(4.0 * max(1, len(keys)), 3.8)
    axes = fig.subplots(1, max(1, len(keys)), squeeze=False)[0]
    if not keys:
        _empty(axes[0], "no method in this sweep has a schedule")
    order = list(curves)
    for ax, key in zip(axes, keys, strict=False):
        for method, c in curves.items():
            if key in c:
                ax.plot(c["progress"], c[key], color=_color(method, order), label=method)
        ax.set_title(key)
        ax.set_xlabel("training progress")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Schedules of the best configurations")
    fig.savefig(path, dpi=110)
    return path


def plot_search(
    traces: Mapping[str, Sequence[Sequence[float]]], path: Path, *, metric: str = "score"
) -> Path:
    """Best-so-far validation score vs cumulative trial-epochs, one step line per method."""
    fig = _figure()
    ax = fig.subplots()
    order = list(traces)
    drawn = False
    for method, trace in traces.items():
        if not trace:
            continue
        x = [p[0] for p in trace]
        y = [p[1] for p in trace]
        ax.step(x, y, where="post", color=_color(method, order), label=method)
        ax.plot(x[-1:], y[-1:], "o", color=_color(method, order))
        drawn = True
    if drawn:
        ax.set_xlabel("cumulative trial-epochs")
        ax.set_ylabel(f"best validation {metric} so far")
        ax.grid(alpha=0.3)
        ax.legend()
    else:
        _empty(ax, "no trial runs with best_val_score found in MLflow")
    ax.set_title("Search efficiency")
    fig.savefig(path, dpi=110)
    return path


def plot_test_scores(
    scores: Mapping[str, Sequence[float]],
    path: Path,
    *,
    metric: str = "score",
    teacher: float | None = None,
    failed: Iterable[str] = (),
) -> Path:
    """Box + strip plot of per-seed test scores per method; the teacher as a horizontal line."""
    fig = _figure()
    ax = fig.subplots()
    names = list(scores)
    failed = set(failed)
    rng = np.random.default_rng(0)
    with_data = [i for i, n in enumerate(names) if len(scores[n])]
    if with_data:
        ax.boxplot(
            [scores[names[i]] for i in with_data],
            positions=[i + 1 for i in with_data],
            widths=0.5,
            showfliers=False,
        )
    for i, name in enumerate(names, start=1):
        values = list(scores[name])
        if values:
            x = i + rng.uniform(-0.12, 0.12, size=len(values))
            ax.scatter(x, values, color=_color(name, names), zorder=3, s=22)
        else:
            label = "FAILED" if name in failed else "no runs"
            ax.text(i, 0.5, label, ha="center", va="center", color="#d62728",
                    transform=ax.get_xaxis_transform())  # fmt: skip
    if teacher is not None:
        ax.axhline(
            teacher, color="k", linestyle="--", linewidth=1, label=f"teacher ({teacher:.4f})"
        )
        ax.legend()
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.set_xlim(0.4, len(names) + 0.6)
    ax.set_ylabel(f"test {metric}")
    ax.grid(alpha=0.3, axis="y")
    ax.set_title("Test scores of the best configurations, one point per seed")
    fig.savefig(path, dpi=110)
    return path


# --------------------------------------------------------------------------------------------
# Saving and loading students
# --------------------------------------------------------------------------------------------


def student_spec(model: nn.Module, build_student: Any = None) -> dict[str, Any]:
    """How to rebuild ``model`` (a non-Hugging-Face student): ``{"builder": "mod:fn", "kwargs"}``.

    A builder object may say it itself with a ``student_spec`` attribute (a dict or a method
    returning one); CIFAR ResNets / WRNs are recognised; any other module is rebuilt by calling
    its class without arguments.
    """
    from ckd_tune.resnet import CifarResNet, WideResNet

    spec = getattr(build_student, "student_spec", None)
    if callable(spec):
        spec = spec()
    if isinstance(spec, dict) and "builder" in spec:
        return {"builder": spec["builder"], "kwargs": dict(spec.get("kwargs") or {})}
    if isinstance(model, CifarResNet) and model.fc.in_features == 64:
        return {
            "builder": "ckd_tune.resnet:cifar_resnet",
            "kwargs": {"depth": model.depth, "num_classes": model.num_classes},
        }
    if isinstance(model, WideResNet):
        return {
            "builder": "ckd_tune.resnet:wide_resnet",
            "kwargs": {
                "depth": model.depth,
                "widen_factor": model.widen_factor,
                "num_classes": model.num_classes,
                "dropout_rate": model.layer1[0].dropout_rate,
            },
        }
    cls = type(model)
    return {"builder": f"{cls.__module__}:{cls.__qualname__}", "kwargs": {}}


def save_student(
    model: nn.Module, directory: Path, build_student: Any = None, info: Mapping[str, Any] = ()
) -> Path:
    """Save a trained student into ``directory`` (replaced) so :func:`load_student` loads it.

    Hugging Face models: ``save_pretrained`` (safetensors) plus the tokenizer when the builder is
    a :class:`ckd_tune.models.TextModelSpec`; anything else: ``model.pt`` (the state dict) and the
    builder spec. Both get ``student.json`` (format, how to load, ``info``).
    """
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    meta: dict[str, Any] = {**dict(info)}
    if hasattr(model, "save_pretrained"):
        from ckd_tune.models import TextModelSpec, load_tokenizer

        model.save_pretrained(directory, safe_serialization=True)
        tokenizer = False
        if isinstance(build_student, TextModelSpec):
            load_tokenizer(build_student.name_or_path).save_pretrained(directory)
            tokenizer = True
        meta.update(
            format="transformers",
            auto_class="transformers.AutoModelForSequenceClassification",
            tokenizer=tokenizer,
        )
    else:
        spec = student_spec(model, build_student)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(state, directory / WEIGHTS_FILE)
        meta.update(format="torch", weights=WEIGHTS_FILE, **spec)
        from ckd_tune.models import VisionModelSpec

        if isinstance(build_student, VisionModelSpec):  # also usable as a CIFAR --teacher
            cache.write_json(
                {"arch": build_student.arch, "num_classes": build_student.num_classes},
                directory / "spec.json",
            )
        try:  # check now that the spec rebuilds this exact module, not when the user needs it
            _build_from_spec(meta).load_state_dict(state)
        except Exception as err:
            log.warning(
                "the saved student in %s cannot be rebuilt from %s (%s); load %s by hand",
                directory,
                spec["builder"],
                err,
                WEIGHTS_FILE,
            )
            meta["rebuild_error"] = str(err)
    meta["load"] = f'from ckd_tune.report import load_student; model = load_student("{directory}")'
    cache.write_json(meta, directory / STUDENT_JSON)
    return directory


def load_student(path: str | Path) -> nn.Module:
    """The student saved by a report (a ``report/models/<method>`` directory), in eval mode."""
    path = Path(path).expanduser()
    if path.is_file():
        path = path.parent
    meta_path = path / STUDENT_JSON
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path} is not a saved student (no {STUDENT_JSON})")
    meta = json.loads(meta_path.read_text())
    if meta["format"] == "transformers":
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(path)
    elif meta["format"] == "torch":
        model = _build_from_spec(meta)
        state = torch.load(
            path / meta.get("weights", WEIGHTS_FILE), map_location="cpu", weights_only=True
        )
        model.load_state_dict(state)
    else:
        raise ValueError(f"{meta_path}: unknown student format {meta['format']!r}")
    return model.eval()


def _build_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    module_name, _, attr = spec["builder"].partition(":")
    builder: Any = import_module(module_name)
    for part in attr.split("."):
        builder = getattr(builder, part)
    return builder(**spec.get("kwargs", {}))


# --------------------------------------------------------------------------------------------
# Re-runs
# --------------------------------------------------------------------------------------------


def rerun(
    prepared: PreparedBench,
    method: str,
    flat_config: Mapping[str, Any],
    seed: int,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Train ``method``'s config with ``seed`` for all its epochs; score the best-val weights on test.

    Returns a record with ``status`` ``"ok"`` (history, best epoch, val and test metrics,
    ``state``: the best weights on the CPU) or ``"failed"`` (non-finite loss; partial history).
    """
    from ckd_tune.train import evaluate, train

    config = TrainConfig.from_flat({**flat_config, "method": method, "seed": seed})
    metric = prepared.data.main_metric
    record: dict[str, Any] = {"method": method, "seed": seed, "status": "ok", "error": None}
    t0 = time.perf_counter()

    def failed(error: str, history: list[dict[str, float]]) -> dict[str, Any]:
        record.update(status="failed", error=error, history=list(history),
                      seconds=time.perf_counter() - t0)  # fmt: skip
        return record

    student = prepared.build_student(seed)
    try:
        result = train(config, prepared.data, student, prepared.teacher_signal, device=device)
    except NonFiniteLossError as err:
        partial = getattr(err, "result", None)
        return failed(str(err), partial.history if partial is not None else [])
    if result.best_state is None:  # e.g. a correlation metric of constant predictions (NaN)
        return failed(f"the validation {metric} was never a number", result.history)
    student.load_state_dict(result.best_state)
    test = evaluate(student, prepared.data, "test", batch_size=2 * config.batch_size, device=device)
    if not _is_number(test.get(metric)):
        return failed(
            f"the test {metric} is not a number ({test.get(metric)}; constant predictions?)",
            result.history,
        )
    record.update(
        best_epoch=result.best_epoch,
        val_score=float(result.best_score),
        val={k: float(v) for k, v in result.best_metrics.items()},
        test={k: float(v) for k, v in test.items()},
        test_score=float(test[metric]),
        history=list(result.history),
        seconds=time.perf_counter() - t0,
        state={k: v.detach().cpu() for k, v in result.best_state.items()},
    )
    return record


def _rerun_task(
    prepared: PreparedBench, method: str, flat_config: dict, seed: int, gpus: float
) -> dict[str, Any]:
    """:func:`rerun` inside a Ray task (Ray exposes only this task's GPUs)."""
    device = "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"
    return rerun(prepared, method, flat_config, seed, device)


def run_reruns(
    prepared: PreparedBench,
    jobs: Sequence[tuple[str, Mapping[str, Any], int]],
    on_result: Callable[[dict[str, Any]], None],
    *,
    device: str = "cpu",
    cpus: float = 1.0,
    gpus: float = 0.0,
) -> None:
    """Run ``(method, flat_config, seed)`` jobs; ``on_result(record)`` in this process as each ends.

    In parallel as Ray tasks (``num_cpus=cpus, num_gpus=gpus``, the bench put in the object store
    once) when Ray is initialised, else one after another here. A task that crashes is recorded
    as a failed seed.
    """
    if not jobs:
        return
    import ray

    if not ray.is_initialized():
        for method, config, seed in jobs:
            on_result(rerun(prepared, method, dict(config), seed, device))
        return
    bench_ref = ray.put(prepared)
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_rerun_task)
    pending = {
        task.remote(bench_ref, method, dict(config), seed, gpus): (method, seed)
        for method, config, seed in jobs
    }
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        method, seed = pending.pop(done[0])
        try:
            record = ray.get(done[0])
        except ray.exceptions.RayError as err:
            lines = [line for line in str(err).splitlines() if line.strip()]
            record = {
                "method": method,
                "seed": seed,
                "status": "failed",
                "error": lines[-1] if lines else type(err).__name__,
                "history": [],
                "seconds": 0.0,
            }
        on_result(record)


def _log_rerun(
    client: Any,
    experiment_id: str,
    tags: Mapping[str, str],
    record: Mapping[str, Any],
    flat_config: Mapping[str, Any],
    metric: str,
) -> str:
    """One MLflow run for one re-run: config params, per-epoch metrics, test metrics, status."""
    from mlflow.entities import Metric, Param, RunTag

    run_tags = {
        **tags,
        "method": record["method"],
        "seed": str(record["seed"]),
        "mlflow.runName": f"{record['method']} seed {record['seed']}",
    }
    run_id = client.create_run(experiment_id, tags=run_tags).info.run_id
    now = int(time.time() * 1000)
    config = {**flat_config, "method": record["method"], "seed": record["seed"]}
    params = [Param(k, str(v)) for k, v in sorted(config.items())]
    metrics = [
        Metric(k, float(v), now, int(h.get("epoch", i + 1)))
        for i, h in enumerate(record.get("history", []))
        for k, v in h.items()
        if _is_number(v)
    ]
    if record["status"] == "ok":
        last = int(record["history"][-1]["epoch"]) if record.get("history") else 0
        metrics += [
            Metric(f"test_{k}", v, now, last) for k, v in record["test"].items() if _is_number(v)
        ]
        metrics += [Metric("test_score", record["test_score"], now, last)]
        metrics += [Metric("rerun_best_epoch", record["best_epoch"], now, last)]
    for i in range(0, len(params), 100):  # MLflow's batch limits: 100 params, 1000 metrics
        client.log_batch(run_id, params=params[i : i + 100])
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i : i + 1000])
    if record["status"] == "ok":
        client.set_terminated(run_id, status="FINISHED")
    else:
        client.log_batch(run_id, tags=[RunTag("failure_reason", str(record.get("error"))[:5000])])
        client.set_terminated(run_id, status="FAILED")
    return run_id


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------


@dataclass
class ReportSetup:
    """What a report needs besides the bench and the summaries (built from a Plan or from MLflow)."""

    sweep: str
    report_dir: Path
    seed: int  # the sweep's seed; re-runs use seed, seed + 1, ..., seed + seeds - 1
    seeds: int
    epochs: int
    profile: str = ""
    num_samples: int | None = None
    searcher: str | None = None
    scheduler: str | None = None
    experiment_id: str | None = None
    summary_run: str | None = None
    tracking_uri: str | None = None
    device: str = "cpu"
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0


def build_report(
    plan: Any,
    prepared: PreparedBench,
    summaries: Sequence[Any],
    client: Any,
    experiment_id: str,
    summary_run: str | None,
) -> dict[str, Any]:
    """The report at the end of ``ckd_tune.search`` (a :class:`ckd_tune.search.Plan`); see make_report."""
    args = plan.args
    setup = ReportSetup(
        sweep=plan.sweep,
        report_dir=Path(plan.sweep_dir) / "report",
        seed=int(args.seed),
        seeds=int(plan.seeds),
        epochs=int(plan.epochs),
        profile=args.profile,
        num_samples=plan.num_samples,
        searcher=getattr(args, "searcher", None),
        scheduler=getattr(args, "scheduler", None),
        experiment_id=experiment_id,
        summary_run=summary_run,
        tracking_uri=plan.tracking_uri,
        device=plan.request.device,
        cpus_per_run=float(args.cpus_per_trial),
        gpus_per_run=float(args.gpus_per_trial or 0.0),
    )
    return make_report(setup, prepared, summaries, client)


class _Collector:
    """Receives re-run records in the driver: logs each to MLflow, keeps only each method's best state."""

    def __init__(self, total: int, log_one: Callable[[dict[str, Any]], str | None], metric: str):
        self.records: dict[str, list[dict[str, Any]]] = {}
        self.best: dict[str, dict[str, Any]] = {}
        self.total, self.done = total, 0
        self.log_one = log_one
        self.metric = metric

    def __call__(self, record: dict[str, Any]) -> None:
        state = record.pop("state", None)
        record["run_id"] = self.log_one(record)
        self.records.setdefault(record["method"], []).append(record)
        self.done += 1
        method, seed = record["method"], record["seed"]
        if record["status"] == "ok":
            print(
                f"report: {method} seed {seed}: test {self.metric} {record['test_score']:.4f} "
                f"(val {record['val_score']:.4f}, best epoch {record['best_epoch']}) "
                f"[{self.done}/{self.total}]",
                flush=True,
            )
            best = self.best.get(method)
            key = (record["val_score"], -seed)
            if best is None or key > (best["record"]["val_score"], -best["record"]["seed"]):
                self.best[method] = {"record": record, "state": state}
        else:
            print(
                f"report: {method} seed {seed}: FAILED ({str(record['error'])[:160]}) "
                f"[{self.done}/{self.total}]",
                flush=True,
            )


def make_report(
    setup: ReportSetup,
    prepared: PreparedBench,
    summaries: Sequence[Any],
    client: Any = None,
) -> dict[str, Any]:
    """Re-run, analyse, plot and write ``report.md``, ``results.json`` and the PNGs; return the results.

    ``summaries``: :class:`ckd_tune.search.MethodSummary` objects (or their dicts). ``client``: an
    ``MlflowClient`` (with ``setup.experiment_id``) to log re-runs into and to read the trial runs
    from; ``None`` skips MLflow.
    """
    from ckd_tune.tracking import ROLE_RERUN

    t0 = time.perf_counter()
    summaries = [asdict(s) if is_dataclass(s) else dict(s) for s in summaries]
    report_dir = Path(setup.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(report_dir / "models", ignore_errors=True)  # an earlier report's students
    metric = prepared.data.main_metric
    seeds = [setup.seed + i for i in range(setup.seeds)]
    configs = {
        s["method"]: dict(s["best_config"])
        for s in summaries
        if s["status"] == "ok" and s.get("best_config")
    }
    failed = [s["method"] for s in summaries if s["method"] not in configs]
    if failed:
        print(f"report: no re-runs for {', '.join(failed)} (every search trial failed)", flush=True)
    jobs = [(m, configs[m], seed) for seed in seeds for m in configs]
    mlflow_on = client is not None and setup.experiment_id is not None
    tags = {
        "role": ROLE_RERUN,
        "sweep": setup.sweep,
        "bench": prepared.bench,
        "task": prepared.task,
        "profile": setup.profile,
    }
    if setup.summary_run:
        tags["mlflow.parentRunId"] = setup.summary_run
    if mlflow_on:
        _delete_old_reruns(client, setup.experiment_id, setup.sweep)

    def log_one(record: dict[str, Any]) -> str | None:
        if not mlflow_on:
            return None
        return _log_rerun(
            client, setup.experiment_id, tags, record, configs[record["method"]], metric
        )

    print(
        f"report: re-training {len(configs)} best configs x {len(seeds)} seeds "
        f"({_seed_list(seeds)}), scoring on the test split",
        flush=True,
    )
    collector = _Collector(len(jobs), log_one, metric)
    run_reruns(
        prepared,
        jobs,
        collector,
        device=setup.device,
        cpus=setup.cpus_per_run,
        gpus=setup.gpus_per_run,
    )

    teacher = {
        "name": prepared.teacher.name,
        "val": _get(prepared.teacher.metrics, "val", metric),
        "test": _get(prepared.teacher.metrics, "test", metric),
    }
    results = analyse(
        summaries,
        collector.records,
        metric=metric,
        teacher=teacher,
        base_config=prepared.base_config.to_flat(),
    )
    for method, best in collector.best.items():
        results["methods"][method]["model"] = _save_best(
            prepared, best, report_dir / "models" / method, setup, metric
        )
    for m in results["methods"].values():
        m.setdefault("model", None)

    traces = _search_traces(client, setup, list(results["methods"])) if mlflow_on else {}
    schedules = schedule_curves(configs)
    results.update(
        sweep=setup.sweep,
        generated=time.strftime("%Y-%m-%dT%H:%M:%S"),
        setup={
            "bench": prepared.bench,
            "task": prepared.task,
            "profile": setup.profile,
            "methods": [s["method"] for s in summaries],
            "seeds": seeds,
            "num_samples": setup.num_samples,
            "epochs": setup.epochs,
            "searcher": setup.searcher,
            "scheduler": setup.scheduler,
            "student": describe_student(prepared),
            "machine": machine_info(),
            "rerun_resources": {
                "cpus": setup.cpus_per_run,
                "gpus": setup.gpus_per_run,
                "device": setup.device,
            },
            "experiment_id": setup.experiment_id,
            "summary_run": setup.summary_run,
            "tracking_uri": _redact(setup.tracking_uri),
            "report_dir": str(report_dir),
        },
        schedules=schedules,
        search_traces=traces,
        plots=dict(PLOTS),
    )
    write_plots(results, report_dir)
    results["setup"]["report_seconds"] = time.perf_counter() - t0
    (report_dir / "report.md").write_text(render_markdown(results))
    _write_json(results, report_dir / "results.json")
    if mlflow_on and setup.summary_run:
        _log_summary(client, setup.summary_run, results, report_dir)
    print(f"report: {results['verdict']}", flush=True)
    print(f"report: {report_dir / 'report.md'}", flush=True)
    return results


def write_plots(results: Mapping[str, Any], report_dir: Path) -> None:
    """The four PNGs of a results dict into ``report_dir``."""
    metric = results["metric"]
    methods = results["methods"]
    teacher = results.get("teacher") or {}
    curves = {
        name: [
            [h["val_score"] for h in r.get("history", []) if "val_score" in h]
            for r in m["seeds"]
            if r["status"] == "ok"
        ]
        for name, m in methods.items()
        if m["status"] != "failed"
    }
    plot_val_curves(curves, report_dir / PLOTS["val_curves"], metric=metric)
    plot_schedules(results.get("schedules", {}), report_dir / PLOTS["schedules"])
    plot_search(results.get("search_traces", {}), report_dir / PLOTS["search"], metric=metric)
    plot_test_scores(
        {name: m["test"]["values"] for name, m in methods.items()},
        report_dir / PLOTS["test_scores"],
        metric=metric,
        teacher=teacher.get("test"),
        failed=[n for n, m in methods.items() if m["status"] == "failed"],
    )


def _save_best(
    prepared: PreparedBench,
    best: Mapping[str, Any],
    directory: Path,
    setup: ReportSetup,
    metric: str,
) -> dict[str, Any]:
    record = best["record"]
    model = prepared.build_student(record["seed"])
    model.load_state_dict(best["state"])
    info = {
        "method": record["method"],
        "seed": record["seed"],
        "sweep": setup.sweep,
        "bench": prepared.bench,
        "task": prepared.task,
        "metric": metric,
        "best_epoch": record["best_epoch"],
        "val_score": record["val_score"],
        "test_score": record["test_score"],
        "test": record["test"],
        "run_id": record.get("run_id"),
    }
    save_student(model.cpu(), directory, prepared.build_student, info)
    meta = json.loads((directory / STUDENT_JSON).read_text())
    return {
        "path": str(directory),
        "format": meta["format"],
        "seed": record["seed"],
        "val_score": record["val_score"],
        "test_score": record["test_score"],
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }


def _log_summary(client: Any, run_id: str, results: Mapping[str, Any], report_dir: Path) -> None:
    """The report files as artifacts (folder ``report``) and test statistics as metrics."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = []
    for name, m in results["methods"].items():
        for key in ("mean", "std", "ci_low", "ci_high"):
            if m["test"][key] is not None:
                metrics.append(Metric(f"{name}.test_{key}", m["test"][key], now, 0))
        metrics.append(Metric(f"{name}.test_seeds", m["test"]["n"], now, 0))
    for name, c in results["comparisons"].get(results["baseline"], {}).items():
        for key in ("mean_diff", "p_paired", "p_welch"):
            if c[key] is not None:
                metrics.append(Metric(f"{name}.vs_{c['baseline']}.{key}", c[key], now, 0))
    if results["teacher"].get("test") is not None:
        metrics.append(Metric("teacher.test_score", results["teacher"]["test"], now, 0))
    client.log_batch(run_id, metrics=metrics[:1000])
    for name in ["report.md", "results.json", *PLOTS.values()]:
        client.log_artifact(run_id, str(report_dir / name), "report")


def _delete_old_reruns(client: Any, experiment_id: str, sweep: str) -> None:
    from ckd_tune.tracking import ROLE_RERUN

    query = f"tags.sweep = '{sweep}' and tags.role = '{ROLE_RERUN}'"
    old = client.search_runs([experiment_id], filter_string=query, max_results=10_000)
    for run in old:
        client.delete_run(run.info.run_id)
    if old:
        print(f"report: replacing {len(old)} re-run(s) of an earlier report of {sweep}", flush=True)


def _search_traces(client: Any, setup: ReportSetup, methods: Sequence[str]) -> dict[str, list]:
    """Per method: the search trace (:func:`search_trace`) from the sweep's MLflow trial runs."""
    from ckd_tune.tracking import ROLE_TRIAL

    traces = {}
    for method in methods:
        query = (
            f"tags.sweep = '{setup.sweep}' and tags.role = '{ROLE_TRIAL}' "
            f"and tags.method = '{method}'"
        )
        runs = client.search_runs(
            [setup.experiment_id],
            filter_string=query,
            max_results=10_000,
            order_by=["attributes.start_time ASC"],
        )
        trials = [
            [
                (m.timestamp, m.step, m.value)
                for m in client.get_metric_history(r.info.run_id, "best_val_score")
            ]
            for r in runs
        ]
        traces[method] = search_trace(trials)
    return traces


def describe_student(prepared: PreparedBench) -> str:
    """A short description of the bench's student."""
    from ckd_tune.models import TextModelSpec

    spec = prepared.build_student
    if isinstance(spec, TextModelSpec):
        layers = f", first {spec.num_layers} layers" if spec.num_layers else ""
        return f"{spec.name_or_path}{layers}"
    model = spec(0)
    params = sum(p.numel() for p in model.parameters())
    return f"{type(model).__name__} ({params:,} parameters)"


def machine_info() -> dict[str, Any]:
    """Where the report ran: platform, CPUs, GPUs, versions, and the Ray cluster if one is up."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }
    try:
        import ray

        if ray.is_initialized():
            res = ray.cluster_resources()
            info["ray"] = {
                "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
                "CPU": res.get("CPU"),
                "GPU": res.get("GPU", 0),
            }
    except Exception:  # machine info must never break the report
        pass
    return info


# --------------------------------------------------------------------------------------------
# CLI: a report over an existing sweep's MLflow runs
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m ckd_tune.report",
        description="Re-train each method's best configuration of a finished sweep over several "
        "seeds, score it on the held-out test split and write the comparison report "
        "(report.md, results.json, plots, best students).",
    )
    p.add_argument("--experiment", required=True, help="MLflow experiment name of the sweep")
    p.add_argument("--sweep", help="sweep name (default: the experiment's latest sweep)")
    p.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)"
    )
    p.add_argument("--seeds", type=int, help="seeds per best config (default: the profile's)")
    p.add_argument(
        "--output",
        type=Path,
        help="directory holding sweeps; the report goes to <output>/<sweep>/report "
        "(default: the sweep's own directory as recorded, else ./ckd_runs)",
    )
    p.add_argument("--data-dir", type=Path, help="data directory (default: the sweep's)")
    p.add_argument("--cache-dir", type=Path, help="teacher and logit cache (default: the sweep's)")
    p.add_argument(
        "--cpus-per-run", type=float, default=1.0, help="CPUs (threads) per re-run (default: 1)"
    )
    p.add_argument(
        "--gpus-per-run",
        type=float,
        default=None,
        help="GPUs per re-run (default: 0 without GPUs, else 0.5)",
    )
    p.add_argument(
        "--no-ray", action="store_true", help="run the re-runs one after another in this process"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit status (2 for bad input)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    try:
        client, experiment_id, run = _find_summary_run(args)
        sweep_info = _sweep_info(client, run)
        setup, prepared, summaries = _prepare(args, sweep_info, experiment_id, run.info.run_id)
    except UserInputError as err:
        print(f"ckd_tune.report: error: {err}", file=sys.stderr)
        return 2
    started_ray = False
    if not args.no_ray:
        import ray

        if not ray.is_initialized():
            ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
            started_ray = True
    try:
        make_report(setup, prepared, summaries, client)
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    return 0


def _find_summary_run(args: argparse.Namespace) -> tuple[Any, str, Any]:
    from mlflow.tracking import MlflowClient

    from ckd_tune.tracking import ROLE_SUMMARY, credentials_to_env, default_tracking_uri

    if args.seeds is not None and args.seeds < 1:
        raise UserInputError(f"--seeds: must be >= 1, got {args.seeds}")
    uri = credentials_to_env(args.tracking_uri or default_tracking_uri(Path.cwd()))
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise UserInputError(
            f"--tracking-uri: no MLflow database at {uri.removeprefix('sqlite:///')}"
        )
    args.tracking_uri = uri
    client = MlflowClient(uri)
    try:
        experiment = client.get_experiment_by_name(args.experiment)
    except Exception as err:
        raise UserInputError(
            f"--tracking-uri: cannot read MLflow at {_redact(uri)}: {err}"
        ) from None
    if experiment is None:
        raise UserInputError(
            f"--experiment: no MLflow experiment named {args.experiment!r} at {_redact(uri)}"
        )
    query = f"tags.role = '{ROLE_SUMMARY}'"
    if args.sweep:
        query += f" and tags.sweep = '{args.sweep}'"
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=query,
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    if not runs:
        which = f"sweep {args.sweep!r}" if args.sweep else "any sweep"
        raise UserInputError(
            f"--sweep: no summary run of {which} in experiment {args.experiment!r} "
            "(did the search finish?)"
        )
    return client, experiment.experiment_id, runs[0]


def _sweep_info(client: Any, run: Any) -> dict[str, Any]:
    """The bench request and method summaries recorded by ``ckd_tune.search.write_summary``."""
    run_id = run.info.run_id
    try:
        found = any(a.path == "summary.json" for a in client.list_artifacts(run_id))
    except Exception as err:
        raise UserInputError(
            f"--sweep: cannot list the artifacts of run {run_id} ({err})"
        ) from None
    if not found:
        raise UserInputError(
            f"--sweep: the summary run {run_id} (sweep {run.data.tags.get('sweep')}) has no "
            "summary.json; was the search interrupted before its summary?"
        )
    previous = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, "summary.json", tmp)
            summary = json.loads(Path(path).read_text())
    except Exception as err:
        raise UserInputError(
            f"--sweep: the summary run {run_id} has no readable summary.json ({err})"
        ) from None
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = previous
    request = {**run.data.tags, **run.data.params, **(summary.get("request") or {})}
    request.setdefault("sweep", summary.get("sweep") or run.data.tags.get("sweep"))
    missing = [k for k in ("bench", "task", "profile", "sweep") if not request.get(k)]
    if missing:
        raise UserInputError(
            f"--sweep: the summary run {run_id} does not record {', '.join(missing)}; "
            "it was written by an older ckd_tune (re-run the search with --resume to update it)"
        )
    return {"request": request, "methods": summary.get("methods") or []}


def _prepare(
    args: argparse.Namespace, info: dict[str, Any], experiment_id: str, summary_run: str
) -> tuple[ReportSetup, PreparedBench, list[Any]]:
    from ckd_tune.benches import BenchRequest, get_bench
    from ckd_tune.search import MethodSummary

    req = info["request"]
    bench = get_bench(req["bench"])
    if req["profile"] not in bench.profiles:
        raise UserInputError(f"--sweep: unknown profile {req['profile']!r} for bench {bench.name}")
    profile = bench.profiles[req["profile"]]
    gpus = args.gpus_per_run
    if gpus is None:
        gpus = 0.5 if torch.cuda.is_available() else 0.0
    if args.cpus_per_run <= 0 or gpus < 0:
        raise UserInputError("--cpus-per-run must be > 0 and --gpus-per-run >= 0")
    device = "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"
    data_dir = args.data_dir or (Path(req["data_dir"]) if req.get("data_dir") else None)
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UserInputError(f"--data-dir: {data_dir} is not a directory")
    cache_dir = args.cache_dir or (Path(req["cache_dir"]) if req.get("cache_dir") else None)
    request = BenchRequest(
        bench=bench.name,
        task=req["task"],
        profile=req["profile"],
        data_dir=Path(data_dir) if data_dir else None,
        teacher=req.get("teacher") or None,
        student=req.get("student") or None,
        device=device,
        num_threads=max(1, int(args.cpus_per_run)),
        **({"cache_dir": Path(cache_dir).expanduser()} if cache_dir else {}),
    )
    seed = int(req.get("seed") or 0)
    epochs = int(req.get("epochs") or profile.epochs)
    prepared = bench.prepare(request)
    prepared.base_config = prepared.base_config.replace(seed=seed, epochs=epochs)
    sweep = req["sweep"]
    if args.output is not None:
        sweep_dir = args.output.expanduser().resolve() / sweep
    elif req.get("sweep_dir"):
        sweep_dir = Path(req["sweep_dir"])
    else:
        sweep_dir = Path("ckd_runs").resolve() / sweep
    fields = set(MethodSummary.__dataclass_fields__)
    summaries = [
        MethodSummary(**{k: v for k, v in m.items() if k in fields}) for m in info["methods"]
    ]
    if not summaries:
        raise UserInputError(f"--sweep: the summary of {sweep} lists no methods")
    setup = ReportSetup(
        sweep=sweep,
        report_dir=sweep_dir / "report",
        seed=seed,
        seeds=args.seeds or profile.seeds,
        epochs=epochs,
        profile=req["profile"],
        num_samples=int(req["num_samples"]) if req.get("num_samples") else None,
        searcher=req.get("searcher"),
        scheduler=req.get("scheduler"),
        experiment_id=experiment_id,
        summary_run=summary_run,
        tracking_uri=args.tracking_uri,
        device=device,
        cpus_per_run=args.cpus_per_run,
        gpus_per_run=gpus,
    )
    return setup, prepared, summaries


# --------------------------------------------------------------------------------------------
# Small formatting helpers
# --------------------------------------------------------------------------------------------


def _write_json(data: Any, path: Path) -> None:
    """JSON atomically, keys in insertion order (methods stay in the sweep's order)."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
        json.dump(data, f, indent=2, default=str)
    os.replace(f.name, path)


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _get(metrics: Mapping[str, Any], split: str, metric: str) -> float | None:
    value = (metrics or {}).get(split, {}).get(metric)
    return float(value) if value is not None else None


def _join(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _num(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _signed(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:+.{digits}f}"


def _delta(c: Mapping[str, Any] | None, is_ref: bool) -> str:
    if is_ref:
        return "(reference)"
    if c is None or c["mean_diff"] is None:
        return "-"
    mark = " *" if c["significant"] else ""
    return f"{_signed(c['mean_diff'])}{mark}"


def _delta_teacher(teacher_test: float | None, finetune: Mapping[str, Any] | None) -> str:
    if teacher_test is None or not finetune or finetune["test"]["mean"] is None:
        return "-"
    return _signed(teacher_test - finetune["test"]["mean"])


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _seed_list(seeds: Sequence[int]) -> str:
    return ", ".join(str(s) for s in seeds) or "none"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if math.isfinite(value) else str(value)
    return str(value)


def _redact(uri: str | None) -> str | None:
    if uri is None:
        return None
    from ckd_tune.tracking import redact

    return redact(uri)


if __name__ == "__main__":
    sys.exit(main())
