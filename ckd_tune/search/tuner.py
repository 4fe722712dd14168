"""One method's search as a Ray Tune ``Tuner``: Optuna sampler (TPE or random) behind a
``ConcurrencyLimiter``, FIFO or ASHA, the trainable with its resources, the run config with the
MLflow and progress callbacks; run fresh, resumed, or reused when it already finished."""

from __future__ import annotations

import math
import os
import sys
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
    done_path = plan.sweep_dir / f"{dir_name(method)}.summary.json"
    if done_path.is_file():
        print(f"{method}: search already finished in this sweep; reusing its results", flush=True)
        return MethodSummary(**cache.read_json(done_path))
    path = f"{plan.storage.rstrip('/')}/{dir_name(method)}"
    pbt = is_pbt(method)
    variant = method.partition(":")[2]
    trainable = make_trainable(prepared, plan.cpus_per_trial, plan.gpus_per_trial)
    tags = {
        "method": method,
        "bench": prepared.bench,
        "task": prepared.task,
        "sweep": plan.sweep,
        "searcher": variant if pbt else args.searcher,
        "scheduler": variant if pbt else args.scheduler,
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
        concurrent = args.max_concurrent or default_concurrency(
            _cluster_resources(), plan.cpus_per_trial, plan.gpus_per_trial
        )
        concurrent = min(concurrent, method_samples(plan, method))
        space = plan.spaces[method]
        tuner = Tuner(
            trainable,
            param_space={**space.constants(), **space.tune_domains()} if pbt else None,
            tune_config=(pbt_config if pbt else tune_config)(plan, method, concurrent),
            run_config=RunConfig(
                name=dir_name(method),
                storage_path=plan.storage,
                verbose=0,
                callbacks=callbacks,
                failure_config=FailureConfig(max_failures=args.max_failures),
                # PBT copies a donor's checkpoint after the donor may have saved newer ones
                checkpoint_config=CheckpointConfig(num_to_keep=3 if pbt else 1),
            ),
        )
    results = tuner.fit()
    trials = saved_trials(results)
    tracker.reconcile(trials)  # runs the callbacks missed (driver killed, trial ended unseen)
    ended = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
    if ended < max(len(trials), method_samples(plan, method)):
        raise SweepInterrupted(method, ended)
    summary = summarise(method, trials, prepared, time.perf_counter() - t0)
    if pbt and summary.best_trial is not None:
        attach_learned_schedule(
            summary, trials, plan.sweep_dir / f"{dir_name(method)}.schedule.json"
        )
    cache.write_json(asdict(summary), done_path)
    return summary


def is_pbt(method: str) -> bool:
    """Whether ``method`` is a population-based variant: Population Based Training
    (``ckd:pbt``) or Population Based Bandits (``ckd:pb2``), which share everything but how a
    copied member's parameters are changed."""
    return method.partition(":")[2] in ("pbt", "pb2")


def dir_name(method: str) -> str:
    """``method`` as a file or directory name: ``ckd:pbt -> ckd-pbt``."""
    return method.replace(":", "-")


MEMBERS_SHOWN = 3  # the top members whose learned schedules the summary keeps (the plot)


def attach_learned_schedule(summary: MethodSummary, trials: list[Any], path: Any) -> None:
    """The best member's per-epoch values (its lineage: epochs copied from donors included, as
    its last checkpoint's history holds them) into ``summary.schedule`` and the file ``path``,
    which ``summary.best_config["schedule_file"]`` then names: re-runs replay it. The top
    :data:`MEMBERS_SHOWN` finished members' schedules go to ``summary.members`` (best first)."""
    from ckd_tune.search.summary import METRIC

    finished = [t for t in trials if t.status == "TERMINATED" and METRIC in (t.last_result or {})]
    ranked = sorted(finished, key=lambda t: -t.last_result[METRIC])
    best = next(t for t in trials if t.trial_id == summary.best_trial)
    ranked = [best, *(t for t in ranked if t is not best)][:MEMBERS_SHOWN]
    members = []
    for trial in ranked:
        schedule = member_schedule(trial)
        if schedule is not None:
            members.append(
                {
                    "trial_id": trial.trial_id,
                    METRIC: float(trial.last_result[METRIC]),
                    "schedule": schedule,
                }
            )
    if not members or members[0]["trial_id"] != best.trial_id:
        return
    summary.schedule = members[0]["schedule"]
    summary.members = members
    cache.write_json({"method": summary.method, "schedule": summary.schedule}, path)
    summary.best_config = {**summary.best_config, "schedule_file": str(path)}


def member_schedule(trial: Any) -> list[dict[str, float]] | None:
    """A PBT member's learned per-epoch schedule, from its own newest checkpoint's history
    (after an exploit, Ray's saved trial state may still name the donor's checkpoint, seen with
    synchronous PBT in Ray 2.60, whose history is not this member's); None without one."""
    from pathlib import Path

    import torch

    from ckd_tune.methods.ckd import learned_schedule
    from ckd_tune.trainable import STATE_FILE

    own = sorted(Path(trial.path).glob(f"checkpoint_*/{STATE_FILE}"))
    if own:
        state = torch.load(own[-1], map_location="cpu", weights_only=True)
    elif trial.checkpoint is not None:
        with trial.checkpoint.as_directory() as directory:
            state = torch.load(f"{directory}/{STATE_FILE}", map_location="cpu", weights_only=True)
    else:
        return None
    return learned_schedule(state["history"])


def pbt_config(plan: Plan, method: str, concurrent: int) -> Any:
    """``TuneConfig`` of a ``<method>:pbt`` (or ``:pb2``) search: the space's ``params`` sampled
    once per member (Ray's random generator, seeded), then Population Based Training (or PB2:
    :func:`pb2_scheduler`) on ``training_iteration`` (epochs) with the space's ``pbt:`` settings, synchronous (every member reaches the
    perturbation epoch before any is judged: the same decisions whatever the concurrency).

    PBT ranks on ``val_score``, the current epoch's score, not ``best_val_score``: what a bottom
    member copies is the donor's *current* weights and schedule state, so that is what must be
    ranked; a best-so-far score would keep rewarding a member that has since degraded.
    """
    from ray.tune import TuneConfig
    from ray.tune.schedulers import PopulationBasedTraining
    from ray.tune.search.basic_variant import BasicVariantGenerator

    space = plan.spaces[method]
    settings = space.pbt
    assert settings is not None
    burn_in, interval = settings.epochs(plan.epochs)
    domains = space.tune_domains()
    common = {
        "time_attr": "training_iteration",
        "metric": PBT_METRIC,
        "mode": "max",
        "perturbation_interval": interval,
        "quantile_fraction": settings.quantile_fraction,
        "custom_explore_fn": ClipToSpace(space),
        "synch": True,
    }
    if method.partition(":")[2] == "pb2":
        scheduler = pb2_scheduler(space, burn_in, **common)
    else:
        scheduler = resumable(PopulationBasedTraining)(
            burn_in_period=burn_in,
            hyperparam_mutations={name: domains[name] for name in settings.mutate},
            resample_probability=settings.resample_probability,
            **common,
        )
    return TuneConfig(
        num_samples=method_samples(plan, method),
        search_alg=BasicVariantGenerator(random_state=plan.args.seed, max_concurrent=concurrent),
        scheduler=scheduler,
    )


PBT_METRIC = "val_score"


def pb2_scheduler(space: SearchSpace, burn_in: int, **kwargs: Any) -> Any:
    """Ray's ``PB2`` with PBT's settings: bounds from the space's ranges (``custom_explore_fn``
    still clips and rounds integers) and the same burn-in (PB2's constructor has none: it is set
    on the PBT it extends); PB2 never resamples (its GP-UCB bandit chooses the new values)."""
    from ray.tune.schedulers.pb2 import PB2

    scheduler = resumable(PB2)(hyperparam_bounds=space.pb2_bounds(), **kwargs)
    scheduler._burn_in_period = burn_in
    # ... and the first synchronisation point PBT's constructor derives from it
    scheduler._next_perturbation_sync = max(scheduler._perturbation_interval, burn_in)
    return scheduler


class _ResumedPopulation:
    """Synchronous PBT (and PB2) that can resume: ``Tuner.restore`` builds a fresh scheduler
    and re-adds the saved members, each already ``d`` epochs in, while the scheduler believes
    they are at epoch 0 and that the next synchronisation point is the first one. Ray 2.60 then
    deadlocks: the first sync sets the next point to the members' epoch, which none is below,
    so no member is ever chosen to run again. A re-added member's state is set to where the
    killed run left it (its epoch, its last perturbation point) and the next synchronisation
    point to the first one after the least advanced unfinished member's epoch: an exploit that
    the kill interrupted is at most skipped, never waited for forever."""

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)  # type: ignore[misc]
        done = int((trial.last_result or {}).get(self._time_attr) or 0)
        if done <= 0 or trial.status in ("TERMINATED", "ERROR"):
            return
        first = max(self._perturbation_interval, self._burn_in_period)
        interval = max(1, int(self._perturbation_interval))
        state = self._trial_state[trial]
        state.last_train_time = done
        if done >= first:
            state.last_perturbation_time = first + (done - first) // interval * interval
        following = first if done < first else state.last_perturbation_time + interval
        resumed = getattr(self, "_resumed_next_sync", None)
        self._resumed_next_sync = following if resumed is None else min(resumed, following)
        self._next_perturbation_sync = self._resumed_next_sync


_RESUMABLE = {"PopulationBasedTraining": "ResumablePBT", "PB2": "ResumablePB2"}


def resumable(scheduler_class: type) -> type:
    """``scheduler_class`` (PopulationBasedTraining or PB2) with :class:`_ResumedPopulation`:
    this module's ``ResumablePBT`` or ``ResumablePB2`` (importable, so they pickle by name)."""
    return __getattr__(_RESUMABLE[scheduler_class.__name__])


def __getattr__(name: str) -> Any:
    """``ResumablePBT`` and ``ResumablePB2``, built on first use (Ray loads only when needed)."""
    if name not in _RESUMABLE.values():
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name in globals():
        return globals()[name]
    if name == "ResumablePBT":
        from ray.tune.schedulers import PopulationBasedTraining as base
    else:
        from ray.tune.schedulers.pb2 import PB2 as base
    cls = type(name, (_ResumedPopulation, base), {"__module__": __name__, "__qualname__": name})
    globals()[name] = cls
    return cls


class ClipToSpace:
    """PBT's ``custom_explore_fn``: perturbed values back into the space's ranges (x1.2 of an
    ``anneal_fraction`` of 0.9 would be an invalid config)."""

    def __init__(self, space: SearchSpace) -> None:
        self.bounds = {
            p.name: (p.low, p.high, p.type == "int")
            for p in space.params
            if p.type != "categorical"
        }

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        for name, (low, high, integer) in self.bounds.items():
            if name in config:
                value = min(max(config[name], low), high)
                config[name] = round(value) if integer else float(value)
        return config


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


def default_concurrency(resources: dict[str, float], cpus: float, gpus: float) -> int:
    """Trials that fit at once on a cluster with ``resources`` (Ray's ``cluster_resources()``)
    when each takes ``cpus`` CPUs and ``gpus`` GPUs: the scarcer of the two, at least 1.

    ``--gpus-per-trial 0.25`` on 1 GPU and 8 CPUs: 4 trials. A cluster with no GPU yet (an
    autoscaler adds GPU nodes on demand) is sized by its CPUs, with a warning: its trials wait
    until a GPU joins.
    """
    fits = [resources.get("CPU", os.cpu_count() or 1) / cpus]
    if gpus > 0:
        if resources.get("GPU", 0) > 0:
            fits.append(resources["GPU"] / gpus)
        else:
            print(
                f"warning: --gpus-per-trial {gpus:g} but the Ray cluster has no GPU now; "
                "trials wait until a node with GPUs joins",
                file=sys.stderr,
                flush=True,
            )
    return max(1, math.floor(min(fits) + 1e-9))  # 0.3 / 0.1 is 2.9999999999999996


def _cluster_resources() -> dict[str, float]:
    import ray

    return ray.cluster_resources()
