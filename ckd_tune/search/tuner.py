"""One method's search as a Ray Tune ``Tuner``: Optuna sampler (TPE or random) behind a
``ConcurrencyLimiter``, FIFO or ASHA, the trainable with its resources, the run config with the
MLflow and progress callbacks; run fresh, resumed, or reused when it already finished."""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ckd_tune import cache
from ckd_tune.search.summary import METRIC, MethodSummary, summarise

if TYPE_CHECKING:
    from ckd_tune.benches import PreparedBench
    from ckd_tune.search.plan import Plan
    from ckd_tune.spaces import SearchSpace


class SweepInterrupted(Exception):
    """Ray Tune stopped a method's search before all its trials ended (SIGINT / Ctrl-C)."""

    def __init__(self, method: str, ended: int) -> None:
        super().__init__(f"{method}: search interrupted after {ended} ended trials")
        self.method = method


def search_method(
    plan: Plan, prepared: PreparedBench, method: str, experiment_id: str, parent_run_id: str
) -> MethodSummary:
    """Run (or resume, or reuse the finished) search of one method, its trials' MLflow runs
    nested under the sweep's run ``parent_run_id``.

    Raises :class:`SweepInterrupted` if Ray Tune stopped before every trial ended (Ctrl-C).
    """
    from mlflow.tracking import MlflowClient
    from ray.tune import CheckpointConfig, FailureConfig, RunConfig, Tuner

    from ckd_tune.progress import ProgressPrinter
    from ckd_tune.tracking import MLflowTrialCallback, discard_trial_runs
    from ckd_tune.trainable import make_trainable

    args = plan.args
    done_path = plan.sweep_dir / f"{method}.summary.json"
    if done_path.is_file():
        print(f"{method}: search already finished in this sweep; reusing its results", flush=True)
        return MethodSummary(**cache.read_json(done_path))
    path = f"{plan.storage.rstrip('/')}/{method}"
    trainable = make_trainable(prepared, plan.cpus_per_trial, plan.gpus_per_trial)
    tags = {
        "method": method,
        "bench": prepared.bench,
        "task": prepared.task,
        "sweep": plan.sweep,
        "searcher": args.searcher,
        "scheduler": args.scheduler,
        "seed": str(args.seed),
        "profile": args.profile,
    }
    tracker = MLflowTrialCallback(
        plan.tracking_uri,
        experiment_id,
        tags,
        max_epochs=plan.epochs,
        parent_run_id=parent_run_id,
        inputs=prepared.data.dataset_inputs(["train", "val"]),
    )
    callbacks: list[Any] = [tracker]
    if not args.quiet:
        callbacks.append(ProgressPrinter(method, method_samples(plan, method)))
    t0 = time.perf_counter()
    if args.resume and Tuner.can_restore(path):
        print(f"{method}: resuming the interrupted search at {path}", flush=True)
        tuner = Tuner.restore(
            path, trainable=trainable, resume_unfinished=True, resume_errored=False
        )
    else:
        # an attempt killed before Ray saved its experiment state left runs of trials that
        # this fresh search will not continue
        discard_trial_runs(MlflowClient(plan.tracking_uri), experiment_id, plan.sweep, method)
        concurrent = args.max_concurrent or max(1, int(_cluster_cpus() // plan.cpus_per_trial))
        tuner = Tuner(
            trainable,
            tune_config=tune_config(plan, method, min(concurrent, method_samples(plan, method))),
            run_config=RunConfig(
                name=method,
                storage_path=plan.storage,
                verbose=0,
                callbacks=callbacks,
                failure_config=FailureConfig(max_failures=args.max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=1),
            ),
        )
    results = tuner.fit()
    trials = saved_trials(results)
    tracker.reconcile(trials)  # runs the callbacks missed (driver killed, trial ended unseen)
    ended = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
    if ended < max(len(trials), method_samples(plan, method)):
        raise SweepInterrupted(method, ended)
    summary = summarise(method, trials, prepared, time.perf_counter() - t0)
    cache.write_json(asdict(summary), done_path)
    return summary


def saved_trials(results: Any) -> list[Any]:
    """The trials as Ray saved them for ``Tuner.restore`` (the experiment state on storage).

    After Ctrl-C, Ray's in-memory trials read TERMINATED (its cleanup stops them) while the
    saved state keeps them unfinished, which is what a resume continues, so this is the truth.
    """
    from ray.tune import ExperimentAnalysis

    return ExperimentAnalysis(results.experiment_path, storage_filesystem=results.filesystem).trials


def method_samples(plan: Plan, method: str) -> int:
    """Search trials of ``method``: the plan's budget, or 1 when its space searches nothing
    (every trial would train the same config with the same seed)."""
    return plan.num_samples if plan.spaces[method].params else 1


def grace_period(space: SearchSpace, epochs: int) -> int:
    """Epochs before ASHA may stop a trial of ``space``: past the latest end of its annealing.

    The method's ``annealing_fields`` (fractions of training) are bounded by the space (a
    searched range's upper bound, a fixed value, or the default); the grace period covers the
    largest, so no trial is judged while its teacher temperature or psi is still moving.
    """
    from ckd_tune.config import TrainConfig
    from ckd_tune.methods import get_method

    defaults = TrainConfig.from_flat({"method": space.method}).to_flat()
    end = 0.0
    for name in get_method(space.method).annealing_fields:
        spec = next((p for p in space.params if p.name == name), None)
        if spec is not None:
            end = max(end, float(spec.high if spec.type != "categorical" else max(spec.choices)))
        else:
            end = max(end, float(space.fixed.get(name, defaults[name])))
    return min(epochs, max(1, math.ceil(end * epochs - 1e-9)))


def tune_config(plan: Plan, method: str, concurrent: int) -> Any:
    """One method's ``TuneConfig``: Optuna (TPE or random) behind a ``ConcurrencyLimiter``,
    and FIFO (or ASHA past the annealing window) on ``training_iteration`` = epochs.

    TPE starts from ``n_startup`` random trials (half the budget, at least 2): with the
    small budgets of a CPU run, a density model fitted to fewer points steers at random.
    """
    import optuna
    from optuna.samplers import RandomSampler, TPESampler
    from ray.tune import TuneConfig
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" lines
    args = plan.args
    with warnings.catch_warnings():  # multivariate/group TPE: "experimental" since Optuna 2.2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = (
            TPESampler(
                seed=args.seed,
                n_startup_trials=max(2, plan.num_samples // 2),
                multivariate=True,
                group=True,
            )
            if args.searcher == "tpe"
            else RandomSampler(seed=args.seed)
        )
    searcher = OptunaSearch(
        space=plan.spaces[method].define_by_run, metric=METRIC, mode="max", sampler=sampler
    )
    grace = grace_period(plan.spaces[method], plan.epochs)
    scheduler = (
        ASHAScheduler(
            time_attr="training_iteration",
            max_t=plan.epochs,
            grace_period=grace,
            reduction_factor=2,
        )
        if args.scheduler == "asha" and grace < plan.epochs
        else FIFOScheduler()
    )
    return TuneConfig(
        metric=METRIC,
        mode="max",
        num_samples=method_samples(plan, method),
        search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrent),
        scheduler=scheduler,
    )


def _cluster_cpus() -> float:
    import ray

    return ray.cluster_resources().get("CPU", os.cpu_count() or 1)
