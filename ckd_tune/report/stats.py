"""Statistics (pure): score lists into summaries and comparisons, and comparisons into words.

:func:`describe` gives n, mean, sample std and the Student-t CI of one method's scores;
:func:`compare` the paired t-test and Welch's test of a method against a reference (vanilla KD,
``BASELINE``, or plain fine-tuning, ``FINETUNE``); :func:`verdict`, :func:`short_verdict` and
:func:`overall_verdict` say what a comparison shows without ever calling an unproven gap a win.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from ckd_tune.report.formatting import signed

BASELINE = "kd"  # the comparison every method is tested against
FINETUNE = "none"  # the student trained on labels only: the gain from distillation is over this
ALPHA = 0.05
CONFIDENCE = 0.95


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
            out.update(_t_test(stats.ttest_rel(pa, pb), confidence, "paired", "ci"))
        if len(a) >= 2 and len(b) >= 2:
            welch = stats.ttest_ind(a, b, equal_var=False)
            out.update(_t_test(welch, confidence, "welch", "welch_ci"))
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


def _t_test(res: Any, confidence: float, name: str, ci_name: str) -> dict[str, float | None]:
    """p, t and CI of a scipy t-test result as ``p_<name>``, ``t_<name>``, ``<ci_name>_low/high``."""
    ci = res.confidence_interval(confidence)
    return {
        f"p_{name}": _finite(res.pvalue),
        f"t_{name}": _finite(res.statistic),
        f"{ci_name}_low": _finite(ci.low),
        f"{ci_name}_high": _finite(ci.high),
    }


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
            f"(at least 2 are needed); observed difference {signed(diff)} {metric}."
        )
    tests = (
        f"95% CI [{signed(comparison['ci_low'])}, {signed(comparison['ci_high'])}]; "
        f"paired t-test p = {format_p(comparison['p_paired'])}, "
        f"Welch p = {format_p(comparison['p_welch'])}; {n} seeds"
    )
    if comparison["significant"]:
        return (
            f"{a} is significantly {comparison['direction']} than {b}: "
            f"{signed(diff)} {metric} ({tests})."
        )
    if not comparison["testable"]:
        return (
            f"no significant difference between {a} and {b}: {signed(diff)} {metric}; the tests "
            f"are undefined because the scores do not vary across seeds ({n} seeds)."
        )
    note = ""
    alpha = comparison["alpha"]
    if comparison["p_paired"] <= alpha < comparison["p_welch"]:
        note = " The paired test alone is below the threshold; Welch's test does not confirm it."
    elif comparison["p_welch"] <= alpha < comparison["p_paired"]:
        note = " Welch's test alone is below the threshold; the paired test does not confirm it."
    return (
        f"no significant difference between {a} and {b}: {signed(diff)} {metric} ({tests}); "
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


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _join(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
