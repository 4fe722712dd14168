"""``python -m ckd_tune.search``: tune every KD method with an equal budget, then compare them.

Per method: Optuna TPE (or random) sampling through Ray Tune's ``OptunaSearch``, every trial run
to the end (FIFO; ASHA optional, never judging a trial before its annealing ends), one MLflow run
per trial; then a sweep summary and the comparison report. The protocol is argued in
``docs/protocol.md``.
"""

from __future__ import annotations

import argparse
import base64
import logging
import math
import os
import sys
import time
import urllib.request
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ckd_tune import cache
from ckd_tune.benches import BENCHES, BenchRequest, PreparedBench, get_bench
from ckd_tune.errors import UserInputError
from ckd_tune.methods import METHODS, get_method
from ckd_tune.spaces import SearchSpace, default_space_path, load_space
from ckd_tune.tracking import (
    ROLE_SUMMARY,
    credentials_to_env,
    default_tracking_uri,
    find_run,
    get_experiment_id,
    open_client,
    redact,
)

log = logging.getLogger("ckd_tune")
METRIC = "best_val_score"
DEFAULT_METHODS = ("ckd", "kd", "annealing_kd", "none")
INTERRUPTED = "interrupted; continue with the same command plus --resume"


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


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m ckd_tune.search",
        description="Tune KD methods (Continuation-KD, Annealing-KD, vanilla KD, no-KD) with an equal "
        "search budget each (Ray Tune + Optuna TPE + ASHA), track every trial in MLflow, and compare "
        "the best configs over several seeds on the held-out split.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--bench", required=True, help=f"benchmark: {', '.join(sorted(BENCHES))}")
    p.add_argument(
        "--task",
        help="task within the bench (GLUE: sst2, cola, mrpc, rte, stsb, ...); "
        "default: the bench's first task",
    )
    p.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma-separated methods from {', '.join(METHODS)}",
    )
    p.add_argument(
        "--profile",
        default="quick",
        choices=sorted({name for bench in BENCHES.values() for name in bench.profiles}),
        help="run size: smoke (tests, < 1 min), quick (2 CPU cores, <= 30 min; see "
        "docs/protocol.md), paper (GPUs)",
    )
    p.add_argument("--num-samples", type=int, help="trials per method (default: the profile's)")
    p.add_argument(
        "--max-epochs", type=int, help="student epochs per trial (default: the profile's)"
    )
    p.add_argument("--searcher", default="tpe", choices=["tpe", "random"], help="Optuna sampler")
    p.add_argument(
        "--scheduler",
        default="fifo",
        choices=["fifo", "asha"],
        help="fifo: run every trial to the end; asha: stop weak trials early, but never before "
        "the end of the annealing window of the method's space (its grace period)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="search seed: the samplers' and every search trial's; the report's re-runs use "
        "seed + 1, ..., seed + seeds (disjoint from it)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        help="local data directory (GLUE TSV layout / CIFAR ImageFolder); "
        "default: $CKD_TUNE_DATA, else ../shared/data/<bench data> if present, else download",
    )
    p.add_argument(
        "--teacher",
        help="fine-tuned teacher (path or hub id); default: fine-tune the profile's "
        "teacher once and cache it",
    )
    p.add_argument("--student", help="student model (path or hub id); default: the profile's")
    p.add_argument(
        "--space-dir",
        type=Path,
        help="directory of <method>.yaml search spaces (default: the shipped search_spaces/)",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=Path("ckd_runs"),
        help="where sweeps, summaries and reports are written",
    )
    p.add_argument(
        "--sweep",
        help="sweep name (default: <bench>-<task>-<profile>-<timestamp>; with --resume: "
        "the latest sweep of this bench/task/profile under --output)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="teacher and logit cache (default: $CKD_TUNE_CACHE or ~/.cache/ckd_tune)",
    )
    p.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)"
    )
    p.add_argument("--experiment", help="MLflow experiment name (default: ckd_tune/<bench>/<task>)")
    p.add_argument(
        "--address",
        help="Ray cluster to join: 'auto' (the one `ray start` runs on this machine), host:port "
        "or ray://host:port (default: $RAY_ADDRESS if set, else a new local Ray for this sweep)",
    )
    p.add_argument(
        "--storage-path",
        help="Ray results directory or cloud URI shared by the cluster "
        "(default: <output>/<sweep>/ray)",
    )
    p.add_argument(
        "--cpus-per-trial", type=float, default=1.0, help="CPUs (and torch threads) per trial"
    )
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        help="GPUs per trial, fractional allowed (0.25 packs 4 trials per GPU); default: 0 "
        "without GPUs, else 0.5",
    )
    p.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        help="trials at once (default: CPUs / cpus-per-trial of this machine or cluster)",
    )
    p.add_argument(
        "--max-failures",
        type=int,
        default=1,
        help="retries of a crashed trial from its last checkpoint before it counts as failed",
    )
    p.add_argument(
        "--seeds", type=int, help="report: seeds per best config (default: the profile's)"
    )
    p.add_argument(
        "--no-report", action="store_true", help="stop after the search (no seed re-runs)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted sweep, keeping every finished trial",
    )
    p.add_argument("--quiet", action="store_true", help="only the final table")
    p.add_argument("--verbose", action="store_true", help="also show the trial processes' own logs")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit status (2 for bad input)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        plan = make_plan(args)
    except UserInputError as err:
        print(f"ckd_tune.search: error: {err}", file=sys.stderr)
        return 2
    try:
        return run(plan)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside Ray Tune's graceful stop
        print(INTERRUPTED, file=sys.stderr, flush=True)
        return 130


@dataclass
class Plan:
    """A validated sweep: everything decided before anything expensive starts."""

    args: argparse.Namespace
    request: BenchRequest
    methods: list[str]
    spaces: dict[str, SearchSpace]
    sweep: str
    sweep_dir: Path
    storage: str
    tracking_uri: str
    num_samples: int
    epochs: int
    seeds: int


def make_plan(args: argparse.Namespace) -> Plan:
    """Validate the flags, spaces, data and tracking server; raise UserInputError on bad input."""
    bench = get_bench(args.bench)
    task = args.task or bench.default_task
    if task not in bench.tasks:
        raise UserInputError(
            f"--task: unknown task {task!r} for bench {bench.name}; choose from {list(bench.tasks)}"
        )
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise UserInputError("--methods: give at least one method")
    for method in methods:
        get_method(method)
    if len(set(methods)) != len(methods):
        raise UserInputError(f"--methods: a method is listed twice: {args.methods}")
    spaces = {
        m: load_space(default_space_path(m, args.space_dir), bench=bench.space_key) for m in methods
    }
    for name in ("num_samples", "max_epochs", "seeds", "max_concurrent"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserInputError(f"--{name.replace('_', '-')}: must be >= 1, got {value}")
    if args.cpus_per_trial <= 0:
        raise UserInputError(f"--cpus-per-trial: must be > 0, got {args.cpus_per_trial}")
    if args.gpus_per_trial is not None and args.gpus_per_trial < 0:
        raise UserInputError(f"--gpus-per-trial: must be >= 0, got {args.gpus_per_trial}")
    data_dir = args.data_dir or bench.default_data_dir()
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UserInputError(f"--data-dir: {data_dir} is not a directory")
    if data_dir is not None and not any(Path(data_dir).iterdir()):
        raise UserInputError(
            f"--data-dir: {data_dir} is empty; point it at the {bench.name} data "
            "(see --help), or leave it out to download"
        )
    for flag in ("teacher", "student"):
        model = getattr(args, flag)
        if model and model.startswith((".", "/", "~")) and not Path(model).expanduser().exists():
            raise UserInputError(
                f"--{flag}: {model} does not exist; give an existing model directory or a hub id"
                + (", or leave --teacher out to fine-tune one" if flag == "teacher" else "")
            )
    if args.profile not in bench.profiles:
        raise UserInputError(
            f"--profile: {args.profile!r} is not a {bench.name} profile; "
            f"choose from {sorted(bench.profiles)}"
        )
    profile = bench.profiles[args.profile]
    device = _device(args)
    request = BenchRequest(
        bench=bench.name,
        task=task,
        profile=args.profile,
        data_dir=Path(data_dir) if data_dir else None,
        teacher=args.teacher,
        student=args.student,
        cache_dir=(args.cache_dir or cache.default_cache_dir()).expanduser(),
        device=device,
        num_threads=max(1, int(args.cpus_per_trial)),
    )
    output = args.output.expanduser().resolve()
    sweep = _sweep_name(args, output, task)
    sweep_dir = output / sweep
    # user:password@ of an http URI moves to MLflow's env variables: never printed or saved
    tracking_uri = credentials_to_env(args.tracking_uri or default_tracking_uri(Path.cwd()))
    check_tracking_uri(tracking_uri)
    return Plan(
        args=args,
        request=request,
        methods=methods,
        spaces=spaces,
        sweep=sweep,
        sweep_dir=sweep_dir,
        storage=args.storage_path or str(sweep_dir / "ray"),
        tracking_uri=tracking_uri,
        num_samples=args.num_samples or profile.num_samples,
        epochs=args.max_epochs or profile.epochs,
        seeds=args.seeds or profile.seeds,
    )


def _device(args: argparse.Namespace) -> str:
    import torch

    gpus = args.gpus_per_trial
    if gpus is None:
        args.gpus_per_trial = gpus = 0.5 if torch.cuda.is_available() else 0.0
    return "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"


def _sweep_name(args: argparse.Namespace, output: Path, task: str) -> str:
    prefix = f"{args.bench}-{task}-{args.profile}"
    if args.sweep:
        if "/" in args.sweep or args.sweep.startswith("."):
            raise UserInputError(f"--sweep: {args.sweep!r} must be a plain name")
        if args.resume and not (output / args.sweep / "sweep.json").is_file():
            raise UserInputError(f"--resume: no sweep {args.sweep!r} under {output}")
        return args.sweep
    if args.resume:
        found = sorted(output.glob(f"{prefix}-*/sweep.json"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise UserInputError(
                f"--resume: no earlier {prefix} sweep under {output}; run without --resume"
            )
        return found[-1].parent.name
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_tracking_uri(uri: str) -> None:
    """Raise UserInputError if the MLflow tracking URI cannot be used."""
    scheme = uri.split(":", 1)[0]
    if scheme in ("http", "https"):
        request = urllib.request.Request(credentials_to_env(uri).rstrip("/") + "/health")
        user, password = (os.environ.get(f"MLFLOW_TRACKING_{k}") for k in ("USERNAME", "PASSWORD"))
        if user and password:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()
        except OSError as err:
            raise UserInputError(
                f"--tracking-uri: MLflow server {redact(uri)} does not answer ({err})"
            ) from None
    elif scheme == "sqlite":
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
            raise UserInputError(f"--tracking-uri: cannot write the sqlite database {path}")
    elif scheme not in ("file", "databricks", "postgresql", "mysql", "mssql"):
        raise UserInputError(f"--tracking-uri: unsupported scheme in {redact(uri)}")


def run(plan: Plan) -> int:
    """Prepare the bench, search each method, write the summary, print the table, run the report."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our ProgressPrinter replaces Ray's tables
    # a failed trial's traceback stays in its error.txt and MLflow's failure_reason; the
    # progress line names the error: no screenful of traceback per failed trial unless --verbose
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "1" if plan.args.verbose else "0")
    # MLflow 3 prints two "View run" lines per finished run with an http:// tracking server
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import ray

    logging.getLogger("ray.tune.execution.experiment_state").setLevel(logging.ERROR)
    args = plan.args
    print(
        f"sweep {plan.sweep}: methods {', '.join(plan.methods)}, {plan.num_samples} trials per "
        f"method with a search space, {plan.epochs} epochs each ({args.searcher}, "
        f"{args.scheduler}); search seed {args.seed}; MLflow: {redact(plan.tracking_uri)}",
        flush=True,
    )
    # the bench first (data, teacher): its input errors come before Ray starts
    try:
        prepared = get_bench(plan.request.bench).prepare(plan.request)
    except UserInputError as err:
        print(f"ckd_tune.search: error: {err}", file=sys.stderr)
        return 2
    prepared.base_config = prepared.base_config.replace(seed=args.seed, epochs=plan.epochs)
    _print_teacher(prepared)
    try:
        ray.init(
            # "local": a fresh Ray of our own, not whatever `ray start` left on this machine
            address=args.address or (None if os.environ.get("RAY_ADDRESS") else "local"),
            include_dashboard=False,
            logging_level=logging.WARNING,
            configure_logging=True,
            log_to_driver=args.verbose,
        )
    except (ConnectionError, RuntimeError, ValueError) as err:
        print(
            f"ckd_tune.search: error: --address: cannot join the Ray cluster at {args.address}: {err}",
            file=sys.stderr,
        )
        return 2
    try:
        _write_sweep_meta(plan)
        experiment = args.experiment or prepared.experiment_name
        client = open_client(plan.tracking_uri)
        experiment_id = get_experiment_id(client, experiment, plan.sweep_dir.parent / "mlartifacts")
        try:
            summaries = [search_method(plan, prepared, m, experiment_id) for m in plan.methods]
        except SweepInterrupted:
            print(INTERRUPTED, file=sys.stderr, flush=True)
            return 130
        summary_run = write_summary(plan, prepared, summaries, client, experiment_id)
        print_table(plan, summaries, experiment, experiment_id, summary_run)
        if not args.no_report:
            from ckd_tune.report import build_report

            build_report(plan, prepared, summaries, client, experiment_id, summary_run)
        client.set_terminated(summary_run, status="FINISHED")
    finally:
        ray.shutdown()
    return 0


def _write_sweep_meta(plan: Plan) -> None:
    """``<sweep>/sweep.json`` (what ``--resume`` looks for); kept as first written."""
    args = plan.args
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    meta_path = plan.sweep_dir / "sweep.json"
    if not meta_path.exists():
        cache.write_json(
            {
                "bench": plan.request.bench,
                "task": plan.request.task,
                "profile": args.profile,
                "methods": plan.methods,
                "num_samples": plan.num_samples,
                "epochs": plan.epochs,
                "searcher": args.searcher,
                "scheduler": args.scheduler,
                "seed": args.seed,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
            meta_path,
        )


def search_method(
    plan: Plan, prepared: PreparedBench, method: str, experiment_id: str
) -> MethodSummary:
    """Run (or resume, or reuse the finished) search of one method.

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
    trainable = make_trainable(prepared, args.cpus_per_trial, args.gpus_per_trial)
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
    tracker = MLflowTrialCallback(plan.tracking_uri, experiment_id, tags, max_epochs=plan.epochs)
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
        concurrent = args.max_concurrent or max(1, int(_cluster_cpus() // args.cpus_per_trial))
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
    summary = summarise(method, results, prepared, time.perf_counter() - t0)
    cache.write_json(asdict(summary), done_path)
    return summary


def saved_trials(results: Any) -> list[Any]:
    """The trials as Ray saved them for ``Tuner.restore`` (the experiment state on storage).

    After Ctrl-C, Ray's in-memory trials read TERMINATED (its cleanup stops them) while the
    saved state keeps them unfinished, which is what a resume continues, so this is the truth.
    """
    from ray.tune import ExperimentAnalysis

    return ExperimentAnalysis(results.experiment_path, storage_filesystem=results.filesystem).trials


class SweepInterrupted(Exception):
    """Ray Tune stopped a method's search before all its trials ended (SIGINT / Ctrl-C)."""

    def __init__(self, method: str, ended: int) -> None:
        super().__init__(f"{method}: search interrupted after {ended} ended trials")
        self.method = method


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

    end = 0.0
    for name in get_method(space.method).annealing_fields:
        spec = next((p for p in space.params if p.name == name), None)
        if spec is not None:
            end = max(end, float(spec.high if spec.type != "categorical" else max(spec.choices)))
        else:
            end = max(end, float(space.fixed.get(name, getattr(TrainConfig(), name))))
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


def summarise(method: str, results: Any, prepared: PreparedBench, wall: float) -> MethodSummary:
    """Condense a method's ResultGrid: best config by validation, trials, failures, trial-epochs."""
    from ckd_tune.trainable import trial_config

    ok = [r for r in results if r.error is None and r.metrics and METRIC in r.metrics]
    trial_epochs = sum(int(r.metrics.get("epoch", 0)) for r in results if r.metrics)
    if not ok:
        return MethodSummary(
            method,
            "failed",
            None,
            {},
            None,
            None,
            len(results),
            results.num_errors,
            trial_epochs,
            wall,
        )
    best = max(ok, key=lambda r: r.metrics[METRIC])
    config = trial_config(prepared, best.config).to_flat()
    return MethodSummary(
        method,
        "ok",
        float(best.metrics[METRIC]),
        config,
        best.metrics.get("trial_id"),
        None,
        len(results),
        results.num_errors,
        trial_epochs,
        wall,
    )


def write_summary(
    plan: Plan,
    prepared: PreparedBench,
    summaries: list[MethodSummary],
    client: Any,
    experiment_id: str,
) -> str:
    """The sweep's MLflow summary run (one per sweep, reused on resume): best configs and budget."""
    from mlflow.entities import Metric, Param

    tags = {"sweep": plan.sweep, "role": ROLE_SUMMARY}
    run_id = find_run(client, experiment_id, tags)
    if run_id is None:
        all_tags = {
            **tags,
            "bench": prepared.bench,
            "task": prepared.task,
            "method": "all",
            "searcher": plan.args.searcher,
            "seed": str(plan.args.seed),
            "mlflow.runName": f"{plan.sweep} summary",
        }
        run_id = client.create_run(experiment_id, tags=all_tags).info.run_id
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
    metrics += [
        Metric(
            "teacher.val_score", prepared.teacher.metrics["val"][prepared.data.main_metric], now, 0
        )
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
        },
        "summary.json",
    )
    cache.write_json([asdict(s) for s in summaries], plan.sweep_dir / "summary.json")
    return run_id


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
        "cache_dir": str(request.cache_dir),
        "seed": args.seed,
        "epochs": plan.epochs,
        "num_samples": plan.num_samples,
        "searcher": args.searcher,
        "scheduler": args.scheduler,
        "methods": ",".join(plan.methods),
        "sweep_dir": str(plan.sweep_dir),
    }


def _print_teacher(prepared: PreparedBench) -> None:
    t = prepared.teacher
    metric = prepared.data.main_metric
    how = "reused from cache" if t.reused else f"trained in {t.train_seconds:.0f} s"
    print(
        f"teacher: {t.name} ({how}); val {metric} {t.metrics['val'][metric]:.4f}, "
        f"test {metric} {t.metrics['test'][metric]:.4f}",
        flush=True,
    )


def print_table(
    plan: Plan,
    summaries: list[MethodSummary],
    experiment: str,
    experiment_id: str,
    summary_run: str,
) -> None:
    """The final table: best validation score, trials, budget and config per method."""
    rows = [("method", "best val", "trials (failed)", "trial-epochs", "wall", "best config")]
    for s in summaries:
        score = "FAILED" if s.best_val_score is None else f"{s.best_val_score:.4f}"
        keys = plan.spaces[s.method].param_names
        config = ", ".join(f"{k}={_fmt(s.best_config[k])}" for k in keys if k in s.best_config)
        rows.append(
            (
                s.method,
                score,
                f"{s.trials} ({s.errored})",
                str(s.trial_epochs),
                f"{s.wall_seconds / 60:.1f} min",
                config,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    print()
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5])
    print(
        f"\nMLflow experiment {experiment!r} (id {experiment_id}), summary run {summary_run}; "
        f"view with: mlflow ui --backend-store-uri {redact(plan.tracking_uri)}"
    )
    print(f"sweep files: {plan.sweep_dir}", flush=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if math.isfinite(value) else str(value)
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
