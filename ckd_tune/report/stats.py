"""Statistics (pure): score lists into summaries and comparisons, and comparisons into words.

:func:`describe` gives n, mean, sample std and the Student-t CI of one method's scores;
:func:`compare` the paired t-test and Welch's test of a method against a reference (vanilla KD,
``BASELINE``, or plain fine-tuning, ``FINETUNE``); :func:`verdict`, :func:`short_verdict` and
:func:`overall_verdict` say what a comparison shows without ever calling an unproven gap a win.
:func:`paired_bootstrap` adds the test set's own sampling noise to a comparison on one task, and
:func:`study_bootstrap` carries it across the tasks of a multi-task study.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
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
    """One plain sentence about a comparison; never calls an unproven gap a win.

    With a ``bootstrap`` entry (:func:`paired_bootstrap`) and its Holm-adjusted ``p_holm``, the
    sentence reports that test (the report's verdict test) and the seed-only t-test beside it;
    without, the :func:`compare` t-tests alone.
    """
    a, b = comparison["method"], comparison["baseline"]
    diff = comparison["mean_diff"]
    n = comparison["n_paired"]
    if comparison["n"] == 0 or comparison["n_baseline"] == 0:
        missing = a if comparison["n"] == 0 else b
        return f"{a} vs {b}: the test cannot be done: {missing} has no successful re-run."
    boot = comparison.get("bootstrap")
    if _too_few(comparison) and boot is None:
        return (
            f"{a} vs {b}: the test cannot be done with {n} paired seed(s) "
            f"(at least 2 are needed); observed difference {signed(diff)} {metric}."
        )
    if boot is not None:
        tests = (
            f"bootstrap 95% CI [{signed(boot['ci_low'])}, {signed(boot['ci_high'])}], "
            f"p = {format_p(boot['p'])}, Holm-adjusted p = {format_p(comparison.get('p_holm'))}; "
            f"seed-only paired t-test p = {format_p(comparison['p_paired'])}; {n} seeds x "
            f"{boot['n_examples']} test examples"
        )
    else:
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
    if boot is None and not comparison["testable"]:
        return (
            f"no significant difference between {a} and {b}: {signed(diff)} {metric}; the tests "
            f"are undefined because the scores do not vary across seeds ({n} seeds)."
        )
    note = ""
    alpha = comparison["alpha"]
    if boot is None and comparison["p_paired"] <= alpha < comparison["p_welch"]:
        note = " The paired test alone is below the threshold; Welch's test does not confirm it."
    elif boot is None and comparison["p_welch"] <= alpha < comparison["p_paired"]:
        note = " Welch's test alone is below the threshold; the paired test does not confirm it."
    elif boot is not None and (comparison["p_paired"] or 1.0) <= alpha:
        note = (
            " The seed-only t-test is below the threshold, but it ignores the test set's own "
            "sampling noise; the bootstrap over test examples does not confirm it."
        )
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
    if _too_few(comparison) and comparison.get("bootstrap") is None:
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
            "on the test split (see the comparison table for the test)."
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


# --------------------------------------------------------------------------------------------
# Test-set sampling: the metrics under bootstrap weights, the paired bootstrap over seeds x test
# examples, Holm's correction and minimum detectable differences.

METRICS = ("accuracy", "f1", "mcc", "pearson", "spearman")
_CLASSIFICATION = ("accuracy", "f1", "mcc")
_BOOT_CHUNK = 256  # bootstrap replicates per (chunk, n) block of example counts


def metric_scores(
    preds: np.ndarray,
    labels: np.ndarray,
    metric: str,
    weights: np.ndarray | None = None,
) -> np.ndarray | float:
    """The GLUE/CIFAR ``metric`` of ``preds`` against ``labels``, vectorised over replicates.

    ``weights`` is a ``(B, n)`` matrix of non-negative integer counts: row ``b`` says how often
    each test example is drawn in bootstrap replicate ``b``, and the metric of that row is the
    metric of the data set with every example repeated that often. The result then has shape
    ``(B,)``; without ``weights`` it is the plain metric as a float.

    ``preds`` are predicted class indices (classification) or predicted values (regression).
    Metrics, as in ``sklearn``/``scipy`` but 0.0 wherever undefined (never NaN):

    - "accuracy": fraction correct;
    - "f1": F1 of class 1 (``f1_score(pos_label=1, zero_division=0)``; other classes count as
      negative);
    - "mcc": Matthews correlation, binary or multi-class (``matthews_corrcoef``);
    - "pearson", "spearman": correlation of predictions and labels (spearman: average ranks
      for ties); 0.0 with constant predictions or labels or fewer than two examples.
    """
    preds = np.asarray(preds).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if preds.shape != labels.shape:
        raise ValueError(f"{preds.size} predictions for {labels.size} labels")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    single = weights is None
    w = np.ones((1, labels.size)) if weights is None else _check_weights(weights, labels.size)
    if metric in _CLASSIFICATION:
        columns = _count_columns(preds, labels, metric)
        out = _from_counts(w @ columns, w.sum(axis=1), metric)
    elif metric == "pearson":
        out = _weighted_pearson(preds.astype(float), labels.astype(float), w)
    else:
        out = _weighted_pearson(_weighted_ranks(preds, w), _weighted_ranks(labels, w), w)
    return float(out[0]) if single else out


def _check_weights(weights: np.ndarray, n: int) -> np.ndarray:
    w = np.asarray(weights)
    if w.ndim != 2 or w.shape[1] != n:
        raise ValueError(f"weights must have shape (B, {n}), not {w.shape}")
    w = w.astype(float, copy=False)
    if not np.all(np.isfinite(w)) or np.any(w < 0) or np.any(w != np.round(w)):
        raise ValueError("weights must be non-negative integer counts")
    return w


def _count_columns(preds: np.ndarray, labels: np.ndarray, metric: str) -> np.ndarray:
    """Per-example indicator columns ``(n, c)`` whose weighted sums determine ``metric``.

    accuracy: [correct]; f1: [tp, fp, fn] of class 1; mcc: [correct, one-hot(labels),
    one-hot(preds)] over the classes present in either.
    """
    correct = (preds == labels).astype(float)
    if metric == "accuracy":
        return correct[:, None]
    if metric == "f1":
        p1, y1 = preds == 1, labels == 1
        return np.stack([p1 & y1, p1 & ~y1, ~p1 & y1], axis=1).astype(float)
    classes = np.unique(np.concatenate([labels, preds]))
    onehot_y = (labels[:, None] == classes[None, :]).astype(float)
    onehot_p = (preds[:, None] == classes[None, :]).astype(float)
    return np.concatenate([correct[:, None], onehot_y, onehot_p], axis=1)


def _from_counts(sums: np.ndarray, total: np.ndarray, metric: str) -> np.ndarray:
    """``metric`` per row from the weighted column sums of :func:`_count_columns`.

    The sums are integer-valued floats, so the zero checks below are exact.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "accuracy":
            return np.where(total > 0, sums[:, 0] / total, 0.0)
        if metric == "f1":
            tp, fp, fn = sums[:, 0], sums[:, 1], sums[:, 2]
            denom = 2 * tp + fp + fn
            return np.where(denom > 0, 2 * tp / denom, 0.0)
        k = (sums.shape[1] - 1) // 2
        correct, t_sum, p_sum = sums[:, 0], sums[:, 1 : 1 + k], sums[:, 1 + k :]
        cov_ytyp = correct * total - (t_sum * p_sum).sum(axis=1)
        cov_ypyp = total**2 - (p_sum * p_sum).sum(axis=1)
        cov_ytyt = total**2 - (t_sum * t_sum).sum(axis=1)
        denom = cov_ytyt * cov_ypyp
        return np.where(denom > 0, cov_ytyp / np.sqrt(denom), 0.0)


def _weighted_ranks(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``(B, n)``: the average rank each example would have in replicate ``b``'s data set."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])  # first index of each tie group
    group = np.empty(x.size, dtype=np.intp)
    group[order] = np.cumsum(np.r_[True, xs[1:] != xs[:-1]]) - 1
    group_w = np.add.reduceat(w[:, order], starts, axis=1)  # (B, groups)
    below = np.cumsum(group_w, axis=1) - group_w
    group_rank = below + (group_w + 1) / 2
    return group_rank[:, group]


def _weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson correlation per row of counts ``w``; ``x``, ``y`` are ``(n,)`` or ``(B, n)``.

    0.0 where a row draws fewer than two examples or only one distinct value of x or y.
    """
    x = np.broadcast_to(x, w.shape)
    y = np.broadcast_to(y, w.shape)
    drawn = w > 0
    total = w.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = x - ((w * x).sum(axis=1) / total)[:, None]
        yc = y - ((w * y).sum(axis=1) / total)[:, None]
        sxy = (w * xc * yc).sum(axis=1)
        sxx = (w * xc * xc).sum(axis=1)
        syy = (w * yc * yc).sum(axis=1)
        r = sxy / np.sqrt(sxx * syy)
    varies = _varies(x, drawn) & _varies(y, drawn) & (total >= 2)
    ok = varies & np.isfinite(r)
    return np.where(ok, np.clip(r, -1.0, 1.0), 0.0)


def _varies(x: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """Whether the drawn values of each row take more than one value (exact, no tolerance)."""
    high = np.where(drawn, x, -np.inf).max(axis=1)
    low = np.where(drawn, x, np.inf).min(axis=1)
    return high > low


def _example_counts(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    """``(rows, n)`` counts of ``n`` test examples drawn with replacement, one row per replicate."""
    idx = rng.integers(0, n, size=(rows, n)) + (np.arange(rows) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=rows * n).reshape(rows, n).astype(float)


def paired_bootstrap(
    preds: Mapping[int, np.ndarray],
    ref_preds: Mapping[int, np.ndarray],
    labels: np.ndarray,
    metric: str,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Hierarchical paired bootstrap of ``mean_s metric(preds[s]) - metric(ref_preds[s])``.

    ``preds`` and ``ref_preds`` map seeds to test-set predictions (see :func:`metric_scores`);
    only the seeds both have are used. Unlike :func:`compare`, which is conditional on the test
    set, this accounts for test-set sampling too: each of the ``n_boot`` replicates resamples
    the seeds with replacement (the same seeds for both methods) and the test examples with
    replacement (the same examples for every seed and both methods), and recomputes the mean
    difference. Deterministic for a given ``seed``.

    Returns ``diff`` (observed), ``ci_low``/``ci_high`` (percentile ``confidence`` interval),
    ``p`` (two-sided: ``2 * min(P(d* <= 0), P(d* >= 0))`` over the replicates d*, at least
    ``1 / (n_boot + 1)`` and at most 1), ``se`` (sd of the replicates), ``se_seed`` (sd with
    only the seeds resampled, test set fixed; None with fewer than 2 seeds), ``se_test`` (sd with
    only the test examples resampled, all seeds kept), ``n_seeds``, ``n_examples``, ``n_boot``,
    ``confidence``, ``metric`` and ``method``. The partial replicates reuse the draws of the
    full ones. Raises ``ValueError`` without a common seed or for mismatched lengths.
    """
    if n_boot < 2:
        raise ValueError(f"n_boot must be at least 2, not {n_boot}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    labels = np.asarray(labels).reshape(-1)
    n = labels.size
    seeds = sorted(set(preds) & set(ref_preds))
    if not seeds:
        raise ValueError("the two methods have no seed in common")
    if n == 0:
        raise ValueError("no test examples")
    runs = _paired_runs(preds, ref_preds, seeds, n)
    rng = np.random.default_rng(seed)
    per_seed, per_seed_boot, seed_counts = _replicates(runs, labels, metric, n_boot, rng)
    k = len(seeds)
    diff = float(per_seed.mean())
    boot = (per_seed_boot * seed_counts).sum(axis=1) / k  # seeds and examples resampled
    test_only = per_seed_boot.mean(axis=1)
    seed_only = seed_counts @ per_seed / k

    tail = (1 - confidence) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    p_two = 2 * min(np.mean(boot <= 0), np.mean(boot >= 0))
    p = float(min(1.0, max(p_two, 1 / (n_boot + 1))))
    return {
        "diff": diff,
        "ci_low": float(low),
        "ci_high": float(high),
        "p": p,
        "se": float(boot.std(ddof=1)),
        "se_seed": float(seed_only.std(ddof=1)) if k >= 2 else None,
        "se_test": float(test_only.std(ddof=1)),
        "n_seeds": k,
        "n_examples": int(n),
        "n_boot": int(n_boot),
        "confidence": confidence,
        "metric": metric,
        "method": "paired bootstrap over seeds x test examples",
    }


def _paired_runs(
    preds: Mapping[int, np.ndarray], ref_preds: Mapping[int, np.ndarray], seeds: list[int], n: int
) -> list[np.ndarray]:
    """The method's predictions of ``seeds`` then the reference's, each checked to be ``n`` long."""
    runs = [np.asarray(preds[s]).reshape(-1) for s in seeds]
    runs += [np.asarray(ref_preds[s]).reshape(-1) for s in seeds]
    for r in runs:
        if r.size != n:
            raise ValueError(f"{r.size} predictions for {n} labels")
    return runs


def _replicates(
    runs: list[np.ndarray], labels: np.ndarray, metric: str, n_boot: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The paired bootstrap's draws for ``runs`` (k runs of the method, then k of the reference,
    paired by position): the observed per-seed differences ``(k,)``, the per-seed differences
    on each replicate's resampled test examples ``(n_boot, k)`` and each replicate's seed counts
    ``(n_boot, k)`` (the same examples for every run of a replicate)."""
    k, n = len(runs) // 2, labels.size
    observed = np.array([metric_scores(r, labels, metric) for r in runs])
    per_seed = observed[:k] - observed[k:]  # (k,)
    seed_idx = rng.integers(0, k, size=(n_boot, k)) + (np.arange(n_boot) * k)[:, None]
    seed_counts = np.bincount(seed_idx.ravel(), minlength=n_boot * k).reshape(n_boot, k)
    columns = None
    if metric in _CLASSIFICATION:
        blocks = [_count_columns(r, labels, metric) for r in runs]
        width = blocks[0].shape[1]
        columns = np.concatenate(blocks, axis=1)  # (n, 2k * width)
    per_seed_boot = np.empty((n_boot, k))  # replicate x seed: the difference on resampled tests
    for start in range(0, n_boot, _BOOT_CHUNK):
        stop = min(start + _BOOT_CHUNK, n_boot)
        w = _example_counts(rng, stop - start, n)
        if columns is not None:
            sums = w @ columns
            total = w.sum(axis=1)
            scores = np.stack(
                [
                    _from_counts(sums[:, j * width : (j + 1) * width], total, metric)
                    for j in range(2 * k)
                ],
                axis=1,
            )
        else:
            scores = np.stack([metric_scores(r, labels, metric, w) for r in runs], axis=1)
        per_seed_boot[start:stop] = scores[:, :k] - scores[:, k:]
    return per_seed, per_seed_boot, seed_counts


@dataclass(frozen=True)
class TaskPredictions:
    """One task's test predictions of a method and of its reference, by seed, for
    :func:`study_bootstrap`."""

    task: str
    metric: str
    labels: np.ndarray
    preds: Mapping[int, np.ndarray]
    ref_preds: Mapping[int, np.ndarray]


def study_bootstrap(
    tasks: Sequence[TaskPredictions],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Hierarchical bootstrap (task -> seed -> test example) of the mean over tasks of each
    task's mean paired difference ``metric(preds[s]) - metric(ref_preds[s])``.

    Each task's replicates are :func:`paired_bootstrap`'s (seeds and test examples resampled,
    paired). ``hierarchical`` also resamples the tasks with replacement, each drawn task taking
    an independent replicate of its own: the uncertainty of a claim about tasks like these.
    ``fixed_tasks`` keeps every task once: the uncertainty of a claim about these tasks. With
    few tasks the hierarchical interval is coarse (3 tasks: 10 distinct task draws).

    Returns ``diff`` (observed mean over tasks), ``per_task`` (task -> observed difference),
    ``ci_low``/``ci_high``/``p``/``se`` of the hierarchical bootstrap, ``fixed_tasks`` (its own
    ``ci_low``, ``ci_high``, ``p``, ``se``), ``wilcoxon`` (the exact signed-rank test of the
    per-task differences: ``p``, ``min_p`` the smallest p it can give with this many tasks,
    ``positive``/``negative`` counts; ``p`` None below 2 tasks), ``n_tasks``, ``n_boot``,
    ``confidence`` and ``method``. Raises ``ValueError`` without tasks.
    """
    if not tasks:
        raise ValueError("no tasks")
    if n_boot < 2:
        raise ValueError(f"n_boot must be at least 2, not {n_boot}")
    rng = np.random.default_rng(seed)
    observed, boots = [], []
    for t in tasks:
        labels = np.asarray(t.labels).reshape(-1)
        seeds = sorted(set(t.preds) & set(t.ref_preds))
        if not seeds:
            raise ValueError(f"{t.task}: the two methods have no seed in common")
        runs = _paired_runs(t.preds, t.ref_preds, seeds, labels.size)
        per_seed, per_seed_boot, seed_counts = _replicates(runs, labels, t.metric, n_boot, rng)
        observed.append(float(per_seed.mean()))
        boots.append((per_seed_boot * seed_counts).sum(axis=1) / len(seeds))
    boot = np.stack(boots)  # (tasks, n_boot)
    m = len(tasks)
    fixed = boot.mean(axis=0)
    drawn = rng.integers(0, m, size=(n_boot, m))
    replicate = rng.integers(0, n_boot, size=(n_boot, m))
    hierarchical = boot[drawn, replicate].mean(axis=1)
    diffs = np.array(observed)
    return {
        "diff": float(diffs.mean()),
        "per_task": {t.task: d for t, d in zip(tasks, observed, strict=True)},
        **_interval(hierarchical, confidence, n_boot),
        "fixed_tasks": _interval(fixed, confidence, n_boot),
        "wilcoxon": _wilcoxon(diffs),
        "n_tasks": m,
        "n_boot": int(n_boot),
        "confidence": confidence,
        "method": "hierarchical bootstrap over tasks x seeds x test examples",
    }


def _interval(boot: np.ndarray, confidence: float, n_boot: int) -> dict[str, float]:
    """Percentile interval, two-sided p (at least 1 / (n_boot + 1)) and sd of replicates."""
    tail = (1 - confidence) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    p_two = 2 * min(np.mean(boot <= 0), np.mean(boot >= 0))
    return {
        "ci_low": float(low),
        "ci_high": float(high),
        "p": float(min(1.0, max(p_two, 1 / (n_boot + 1)))),
        "se": float(boot.std(ddof=1)),
    }


def _wilcoxon(diffs: np.ndarray) -> dict[str, Any]:
    """Exact two-sided Wilcoxon signed-rank test of per-task differences (zeros dropped)."""
    nonzero = diffs[diffs != 0]
    out: dict[str, Any] = {
        "positive": int((diffs > 0).sum()),
        "negative": int((diffs < 0).sum()),
        "p": None,
        "min_p": None,
    }
    if len(nonzero) >= 2:
        res = stats.wilcoxon(nonzero, alternative="two-sided", method="exact")
        out["p"] = float(res.pvalue)
        out["min_p"] = float(min(1.0, 2 / 2 ** len(nonzero)))
    return out


def holm(pvalues: Mapping[str, float | None]) -> dict[str, float | None]:
    """Holm-Bonferroni adjusted p-values, keyed as ``pvalues``.

    With the m available p-values in ascending order p_(1) <= ... <= p_(m), the adjusted
    p_(i) is ``max_{j <= i} min(1, (m - j + 1) * p_(j))``: monotone in p and capped at 1.
    ``None`` (and NaN) stay ``None`` and do not count toward m.
    """
    present = {}
    for name, p in pvalues.items():
        if p is None or math.isnan(p):
            continue
        if not 0 <= p <= 1:
            raise ValueError(f"p-value of {name!r} is not in [0, 1]: {p}")
        present[name] = float(p)
    out: dict[str, float | None] = dict.fromkeys(pvalues)
    m = len(present)
    running = 0.0
    for i, name in enumerate(sorted(present, key=present.__getitem__)):
        running = max(running, min(1.0, (m - i) * present[name]))
        out[name] = running
    return out


def _quantile_sum(alpha: float, power: float, df: int | None) -> float | None:
    """``q(1 - alpha/2) + q(power)``: normal quantiles, or Student-t ones with ``df``."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), not {alpha}")
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), not {power}")
    if df is None:
        return float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))
    if df < 1:
        return None
    return float(stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df))


def mde(
    se: float | None, *, alpha: float = ALPHA, power: float = 0.8, df: int | None = None
) -> float | None:
    """Minimum detectable difference of a two-sided level-``alpha`` test with standard error ``se``.

    ``(q(1 - alpha/2) + q(power)) * se``, q the standard normal quantile, or Student-t with
    ``df`` degrees of freedom when given: the true difference that such a test detects with
    probability ``power`` (the usual approximation for the t-test). ``None`` for a missing or
    non-finite ``se``, or ``df < 1``. Same units as ``se``.
    """
    if se is None or not math.isfinite(se):
        return None
    if se < 0:
        raise ValueError(f"se must be non-negative, not {se}")
    q = _quantile_sum(alpha, power, df)
    return None if q is None else q * float(se)


def seeds_needed(
    target: float,
    sd_seed: float | None,
    se_test: float | None,
    *,
    alpha: float = ALPHA,
    power: float = 0.8,
    max_seeds: int = 1000,
) -> int | None:
    """Seeds needed for the bootstrap's minimum detectable difference to reach ``target``.

    The smallest n >= 1 with ``(z_{1-alpha/2} + z_power) * sqrt(sd_seed**2 / n + se_test**2)
    <= target``: the seed part of the variance shrinks with more seeds, the test-set part
    ``se_test**2`` does not. ``sd_seed`` is the per-seed sd of the paired difference (so the
    bootstrap's ``se_seed`` is about ``sd_seed / sqrt(n_seeds)``). ``None`` when no n <=
    ``max_seeds`` suffices (e.g. ``se_test`` alone is already too big) or an input is missing
    or non-finite.
    """
    if target is None or sd_seed is None or se_test is None:
        return None
    if not all(math.isfinite(v) for v in (target, sd_seed, se_test)):
        return None
    if sd_seed < 0 or se_test < 0:
        raise ValueError("sd_seed and se_test must be non-negative")
    q = _quantile_sum(alpha, power, None)
    assert q is not None

    def detects(n: int) -> bool:
        return q * math.sqrt(sd_seed**2 / n + se_test**2) <= target

    if detects(1):
        return 1
    room = (target / q) ** 2 - se_test**2  # what the seed part may use
    if room <= 0:
        return None
    n = max(1, math.ceil(sd_seed**2 / room) - 2)  # just below the answer: rounding errs by < 1
    while n <= max_seeds and not detects(n):
        n += 1
    return n if n <= max_seeds else None


def seed_mde(
    comparison: Mapping[str, Any], *, alpha: float = ALPHA, power: float = 0.8
) -> float | None:
    """Minimum detectable difference of :func:`compare`'s paired (seed-only) t-test.

    The standard error ``sd_diff / sqrt(n)`` of the mean paired difference is recovered from the
    paired CI (half-width = ``t_{(1+confidence)/2, n-1} * se``) and the MDE uses Student-t
    quantiles with ``n - 1`` degrees of freedom (see :func:`mde`). This is conditional on the
    test set. ``None`` when the comparison has no paired CI (fewer than 2 seeds, no variation).
    """
    n = comparison.get("n_paired") or 0
    low, high = comparison.get("ci_low"), comparison.get("ci_high")
    if n < 2 or low is None or high is None:
        return None
    confidence = comparison.get("confidence", CONFIDENCE)
    se = (high - low) / (2 * float(stats.t.ppf((1 + confidence) / 2, n - 1)))
    return mde(se, alpha=alpha, power=power, df=n - 1)
