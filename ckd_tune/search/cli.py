"""The command line, ``python -m ckd_tune.search``: the parser and :func:`main`, which runs one
task's sweep (:mod:`~ckd_tune.search.sweep`) or a multi-task study (:mod:`~ckd_tune.search.study`).

Only the parser and the flag checks load at start (``--help`` and bad flags answer at once);
torch, Ray, MLflow and Optuna are imported once the flags are good.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import NoReturn

from ckd_tune.errors import UserInputError
from ckd_tune.methods import METHODS
from ckd_tune.report.mlflow_models import REGISTER_HELP
from ckd_tune.search.plan import Plan, is_study, make_plan, make_study
from ckd_tune.search.sweep import (
    INTERRUPTED,
    PROG,
    artifact_root,
    init_ray,
    prepare,
    print_plan,
    quiet_libraries,
    run_sweep,
)

DEFAULT_METHODS = ("ckd", "kd", "annealing_kd", "none")


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
        help="task within the bench (GLUE: sst2, cola, mrpc, rte, stsb, ...; default: the "
        "bench's first task); several comma-separated (sst2,mrpc,rte) or 'all' (every task "
        "whose data is present) run a multi-task study: each task's sweep in turn, the same "
        "budget each, then a cross-task report",
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
        help="sweep name (default: <bench>-<task>-<profile>-<timestamp>; a study's: "
        "<bench>-study-<profile>-<timestamp>; with --resume: the latest sweep of this "
        "bench/task/profile, or study of this bench/profile, under --output)",
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
        if is_study(args.task):
            from ckd_tune.search.study import run_study

            study = make_study(args)
            return run_study(study)
        plan = make_plan(args)
    except UserInputError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr, flush=True)
        return 130
    try:
        return run(plan)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside Ray Tune's graceful stop
        print(INTERRUPTED, file=sys.stderr, flush=True)
        return 130


def run(plan: Plan) -> int:
    """Prepare the bench, search each method, write the summary, print the table, run the report."""
    quiet_libraries(plan.args)
    import ray

    from ckd_tune.tracking import get_experiment_id, open_client

    args = plan.args
    print_plan(plan)
    # the bench first (data, teacher, assistant): its input errors come before Ray starts
    prepared = prepare(plan)
    if prepared is None:
        return 2
    if not init_ray(args):
        return 2
    try:
        client = open_client(plan.tracking_uri)
        experiment = args.experiment or prepared.experiment_name
        experiment_id = get_experiment_id(client, experiment, artifact_root(plan))
        return run_sweep(plan, prepared, client, experiment_id)
    finally:
        ray.shutdown()
