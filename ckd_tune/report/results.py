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
from ckd_tune.report.stats import BASELINE, FINETUNE, compare, describe, overall_verdict, verdict

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
