"""The command line, ``python -m ckd_tune.search``: the parser, :func:`main` and the sweep's steps.

Only the parser and the flag checks load at start (``--help`` and bad flags answer at once);
torch, Ray, MLflow and Optuna are imported once the flags are good.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from ckd_tune.errors import UserInputError
from ckd_tune.methods import METHODS
from ckd_tune.report.mlflow_models import REGISTER_HELP
from ckd_tune.search.plan import Plan, make_plan
from ckd_tune.tracking_uri import is_server, redact, ui_link

if TYPE_CHECKING:
    from ckd_tune.benches import PreparedBench
    from ckd_tune.report.build import ReportSetup

DEFAULT_METHODS = ("ckd", "kd", "annealing_kd", "none")
INTERRUPTED = "interrupted; continue with the same command plus --resume"
PROG = "ckd_tune.search"


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (``--help`` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser (names only: benches, profiles and methods are checked by
    :func:`ckd_tune.search.plan.make_plan`, whose errors list the registered ones)."""
    p = _Parser(
        prog=f"python -m {PROG}",
        description="Tune KD methods (Continuation-KD, Annealing-KD, vanilla KD, no-KD) with an equal "
        "search budget each (Ray Tune + Optuna TPE + ASHA), track every trial in MLflow, and compare "
        "the best configs over several seeds on the held-out split.",
    )
    p.add_argument("--bench", required=True, help="benchmark: glue, cifar10 or cifar100")
    p.add_argument(
        "--task",
        help="task within the bench (GLUE: sst2, cola, mrpc, rte, stsb, ...); "
        "default: the bench's first task",
    )
    p.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma-separated KD methods, any of {', '.join(sorted(METHODS))} (default: "
        f"{','.join(DEFAULT_METHODS)}: the set whose quick run fits its 25 minutes on 2 CPU "
        "cores; the others are opt-in, e.g. --methods kd,dkd,dist,ctkd)",
    )
    p.add_argument(
        "--profile",
        default="quick",
        help="run size: smoke (tests, < 1 min), quick (the default: 2 CPU cores, <= 30 min; see "
        "docs/protocol.md), paper (GPUs)",
    )
    p.add_argument("--num-samples", type=int, help="trials per method (default: the profile's)")
    p.add_argument(
        "--max-epochs", type=int, help="student epochs per trial (default: the profile's)"
    )
    p.add_argument(
        "--searcher",
        default="tpe",
        choices=["tpe", "random"],
        help="Optuna sampler (default: tpe)",
    )
    p.add_argument(
        "--scheduler",
        default="fifo",
        choices=["fifo", "asha"],
        help="fifo (the default): run every trial to the end; asha: stop weak trials early, but "
        "never before the end of the annealing window of the method's space (its grace period)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="search seed (default: 0): the samplers' and every search trial's; the report's "
        "re-runs use seed + 1, ..., seed + seeds (disjoint from it)",
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
        "--assistant",
        help="teacher assistant of takd, distilled from the teacher once and cached: the model "
        "it starts from (path or hub id; CIFAR: a network such as resnet20); default: the "
        "profile's (GLUE: the first 4 layers of the bundled encoder; CIFAR: resnet20, smoke: "
        "resnet8)",
    )
    p.add_argument(
        "--space-dir",
        type=Path,
        help="directory of <method>.yaml search spaces (default: the shipped search_spaces/)",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=Path("ckd_runs"),
        help="where sweeps, summaries and reports are written (default: ckd_runs)",
    )
    p.add_argument(
        "--sweep",
        help="sweep name (default: <bench>-<task>-<profile>-<timestamp>; with --resume: "
        "the latest sweep of this bench/task/profile under --output)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
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
        "--cpus-per-trial",
        type=float,
        default=1.0,
        help="CPUs (and torch threads) per trial (default: 1)",
    )
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        help="GPUs per trial, fractional allowed (0.25 packs 4 trials per GPU); default: 0 "
        "without GPUs, else 0.5",
    )
    p.add_argument(
        "--max-concurrent",
        type=int,
        help="trials at once (default: what fits this machine or cluster: CPUs / cpus-per-trial, "
        "or GPUs / gpus-per-trial if fewer)",
    )
    p.add_argument(
        "--max-failures",
        type=int,
        default=1,
        help="retries of a crashed trial (or one on a lost node) from its last checkpoint before it "
        "counts as failed (default: 1; on preemptible nodes 3 or more: see docs/cluster.md)",
    )
    p.add_argument(
        "--seeds", type=int, help="report: seeds per best config (default: the profile's)"
    )
    p.add_argument(
        "--no-report", action="store_true", help="stop after the search (no seed re-runs)"
    )
    p.add_argument("--register-model", metavar="NAME", help=f"report: {REGISTER_HELP}")
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
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    try:
        return run(plan)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside Ray Tune's graceful stop
        print(INTERRUPTED, file=sys.stderr, flush=True)
        return 130


def run(plan: Plan) -> int:
    """Prepare the bench, search each method, write the summary, print the table, run the report."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our ProgressPrinter replaces Ray's tables
    # a failed trial's traceback stays in its error.txt and MLflow's failure_reason; the
    # progress line names the error: no screenful of traceback per failed trial unless --verbose
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "1" if plan.args.verbose else "0")
    # MLflow 3 prints two "View run" lines per finished run with an http:// tracking server
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import ray

    from ckd_tune.benches import get_bench
    from ckd_tune.search.summary import METRIC, open_sweep_run, write_summary
    from ckd_tune.search.table import mlflow_pointer, print_table
    from ckd_tune.search.tuner import SweepInterrupted, search_method
    from ckd_tune.tracking import get_experiment_id, open_client

    logging.getLogger("ray.tune.execution.experiment_state").setLevel(logging.ERROR)
    args = plan.args
    print(
        f"sweep {plan.sweep}: methods {', '.join(plan.methods)}, {plan.num_samples} trials per "
        f"method with a search space, {plan.epochs} epochs each ({args.searcher}, "
        f"{args.scheduler}); search seed {args.seed}; MLflow: {redact(plan.tracking_uri)}",
        flush=True,
    )
    # the bench first (data, teacher, assistant): its input errors come before Ray starts
    try:
        prepared = get_bench(plan.request.bench).prepare(plan.request)
    except UserInputError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
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
            f"{PROG}: error: --address: cannot join the Ray cluster at {args.address}: {err}",
            file=sys.stderr,
        )
        return 2
    try:
        _write_sweep_meta(plan)
        experiment = args.experiment or prepared.experiment_name
        client = open_client(plan.tracking_uri)
        # a local store keeps artifacts beside the sweeps; a server keeps its own (served ones
        # included), never a path of this driver that the cluster's workers may not see
        artifacts = None if is_server(plan.tracking_uri) else plan.sweep_dir.parent / "mlartifacts"
        experiment_id = get_experiment_id(client, experiment, artifacts)
        summary_run = open_sweep_run(plan, prepared, client, experiment_id)
        try:
            summaries = [
                search_method(plan, prepared, m, experiment_id, summary_run) for m in plan.methods
            ]
        except SweepInterrupted:
            client.set_terminated(summary_run, status="KILLED")  # --resume marks it RUNNING
            print(INTERRUPTED, file=sys.stderr, flush=True)
            return 130
        write_summary(plan, prepared, summaries, client, experiment_id, summary_run)
        print_table(
            summaries,
            {m: space.param_names for m, space in plan.spaces.items()},
            mlflow_pointer(experiment, experiment_id, summary_run, plan.tracking_uri)
            + f"\nruns table: {ui_link(plan.tracking_uri, experiment_id)}"
            + f"\nevery run, best first: {ui_link(plan.tracking_uri, experiment_id, METRIC)}",
            plan.sweep_dir,
        )
        if not args.no_report:
            from ckd_tune.report.build import make_report

            make_report(report_setup(plan, experiment_id, summary_run), prepared, summaries, client)
        client.set_terminated(summary_run, status="FINISHED")
    finally:
        ray.shutdown()
    return 0


def report_setup(plan: Plan, experiment_id: str, summary_run: str) -> ReportSetup:
    """What the report at the end of the sweep needs of the plan (its seeds, budget, resources)."""
    from ckd_tune.report.build import ReportSetup, space_ranges

    args = plan.args
    return ReportSetup(
        sweep=plan.sweep,
        report_dir=plan.sweep_dir / "report",
        seed=args.seed,
        seeds=plan.seeds,
        epochs=plan.epochs,
        profile=args.profile,
        num_samples=plan.num_samples,
        searcher=args.searcher,
        scheduler=args.scheduler,
        experiment_id=experiment_id,
        summary_run=summary_run,
        tracking_uri=plan.tracking_uri,
        device=plan.request.device,
        cpus_per_run=plan.cpus_per_trial,
        gpus_per_run=plan.gpus_per_trial,
        spaces={m: space_ranges(space) for m, space in plan.spaces.items()},
        register_model=args.register_model,
    )


def _write_sweep_meta(plan: Plan) -> None:
    """``<sweep>/sweep.json`` (what ``--resume`` looks for); kept as first written."""
    from ckd_tune import cache

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


def _print_teacher(prepared: PreparedBench) -> None:
    """One line each for the teacher and (when a method uses it) the teacher assistant."""
    metric = prepared.data.main_metric
    for role, t in (("teacher", prepared.teacher), ("assistant", prepared.assistant)):
        if t is None:
            continue
        how = "reused from cache" if t.reused else f"trained in {t.train_seconds:.0f} s"
        print(
            f"{role}: {t.name} ({how}); val {metric} {t.metrics['val'][metric]:.4f}, "
            f"test {metric} {t.metrics['test'][metric]:.4f}",
            flush=True,
        )
