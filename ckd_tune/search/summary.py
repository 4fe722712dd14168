"""What each method's search produced (:class:`MethodSummary`, which the report reads), the best
finished trial (:func:`summarise`) and the sweep's MLflow summary run (:func:`write_summary`).

Light on import: MLflow, Ray and torch load only inside the functions that use them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ckd_tune.benches import PreparedBench
    from ckd_tune.search.plan import Plan

METRIC = "best_val_score"  # what the searches maximise: a trial's best validation score so far


@dataclass
class MethodSummary:
    """What one method's search produced."""

    method: str
    status: str  # "ok" | "failed"
    best_val_score: float | None
    best_config: dict[str, Any]
    best_trial: str | None
    best_run_id: str | None
    trials: int
    errored: int
    trial_epochs: int
    wall_seconds: float
    # ``<method>:pbt``: the best member's per-epoch values ({"epoch", "T", "phi", "psi", "margin"})
    schedule: list[dict[str, float]] | None = None
    # ... and the top members' ({"trial_id", "best_val_score", "schedule"}, best first)
    members: list[dict[str, Any]] | None = None


def summarise(
    method: str, trials: Sequence[Any], prepared: PreparedBench, wall: float
) -> MethodSummary:
    """Condense a method's Ray trials: best config by validation, trials, failures, trial-epochs.

    The best trial is the one with the highest :data:`METRIC` among the trials that finished
    (``TERMINATED``: run to the end or stopped by ASHA); an errored or unfinished trial never
    wins, whatever it reported before it stopped. ``trials`` are Ray ``Trial`` objects (``status``,
    ``last_result``, ``config``, ``trial_id``), as :func:`ckd_tune.search.tuner.saved_trials`
    reads them.
    """
    finished = [t for t in trials if t.status == "TERMINATED" and METRIC in (t.last_result or {})]
    errored = sum(t.status == "ERROR" for t in trials)
    trial_epochs = sum(int((t.last_result or {}).get("epoch", 0)) for t in trials)
    if not finished:
        return MethodSummary(
            method, "failed", None, {}, None, None, len(trials), errored, trial_epochs, wall
        )
    best = max(finished, key=lambda t: t.last_result[METRIC])
    return MethodSummary(
        method,
        "ok",
        float(best.last_result[METRIC]),
        prepared.base_config.replace(**best.config).to_flat(),
        best.trial_id,
        None,
        len(trials),
        errored,
        trial_epochs,
        wall,
    )


def open_sweep_run(
    plan: Plan,
    prepared: PreparedBench,
    client: Any,
    experiment_id: str,
    parent_run_id: str | None = None,
) -> str:
    """The sweep's MLflow parent run (``sweep glue/sst2 quick``; reused on resume), under which
    every trial and re-run nests and which ends up holding the summary and the report; nested
    itself under a multi-task study's run when ``parent_run_id`` is given."""
    from ckd_tune.tracking import sweep_run

    tags = {
        "bench": prepared.bench,
        "task": prepared.task,
        "method": "all",
        "searcher": plan.args.searcher,
        "seed": str(plan.args.seed),
        "profile": plan.args.profile,
    }
    name = f"sweep {prepared.data.name} {plan.args.profile}"
    return sweep_run(client, experiment_id, plan.sweep, tags, name, parent_run_id=parent_run_id)


def write_summary(
    plan: Plan,
    prepared: PreparedBench,
    summaries: list[MethodSummary],
    client: Any,
    experiment_id: str,
    run_id: str,
) -> None:
    """Best configs and budget into the sweep's run ``run_id`` (see :func:`open_sweep_run`).

    Fills in each summary's ``best_run_id`` (the best trial's MLflow run) and writes
    ``<sweep>/summary.json``.
    """
    from mlflow.entities import Metric, Param

    from ckd_tune import cache
    from ckd_tune.tracking import find_run

    for s in summaries:
        s.best_run_id = s.best_trial and find_run(
            client,
            experiment_id,
            {"sweep": plan.sweep, "method": s.method, "ray_trial_id": s.best_trial},
        )
    now = int(time.time() * 1000)
    metrics = [
        Metric(f"{s.method}.best_val_score", s.best_val_score, now, 0)
        for s in summaries
        if s.best_val_score is not None
    ]
    metrics += [Metric(f"{s.method}.trial_epochs", s.trial_epochs, now, 0) for s in summaries]
    metric = prepared.data.main_metric
    metrics += [
        Metric(f"{role}.val_score", t.metrics["val"][metric], now, 0)
        for role, t in (("teacher", prepared.teacher), ("assistant", prepared.assistant))
        if t is not None
    ]
    request = sweep_request(plan, prepared)  # what `python -m ckd_tune.report` rebuilds from
    existing = client.get_run(run_id).data.params
    params = [Param(k, str(v)) for k, v in request.items() if v is not None and k not in existing]
    client.log_batch(run_id, metrics=metrics, params=params)
    client.log_dict(
        run_id,
        {
            "sweep": plan.sweep,
            "request": request,
            "best_configs": {s.method: s.best_config for s in summaries if s.status == "ok"},
            "methods": [asdict(s) for s in summaries],
            "teacher": {"name": prepared.teacher.name, "metrics": prepared.teacher.metrics},
            "assistant": None
            if prepared.assistant is None
            else {"name": prepared.assistant.name, "metrics": prepared.assistant.metrics},
        },
        "summary.json",
    )
    cache.write_json([asdict(s) for s in summaries], plan.sweep_dir / "summary.json")


def sweep_request(plan: Plan, prepared: PreparedBench) -> dict[str, Any]:
    """The settings that rebuild this sweep's bench (for a later ``python -m ckd_tune.report``)."""
    request, args = plan.request, plan.args
    return {
        "bench": prepared.bench,
        "task": prepared.task,
        "profile": args.profile,
        "data_dir": str(request.data_dir) if request.data_dir else None,
        "teacher": request.teacher,
        "student": request.student,
        "assistant": request.assistant,
        "cache_dir": str(request.cache_dir),
        "seed": args.seed,
        "epochs": plan.epochs,
        "num_samples": plan.num_samples,
        "searcher": args.searcher,
        "scheduler": args.scheduler,
        "methods": ",".join(plan.methods),
        "sweep_dir": str(plan.sweep_dir),
    }
