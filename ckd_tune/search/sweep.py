"""One task's sweep, the steps the search CLI and a multi-task study share: prepare the bench,
join Ray, search every method, summarise, print the table and run the report.

Ray, MLflow and the report are imported inside the functions: importing this module stays light.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ckd_tune.errors import UserInputError
from ckd_tune.search.plan import Plan
from ckd_tune.tracking_uri import is_server, redact, ui_link

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from ckd_tune.benches import PreparedBench
    from ckd_tune.report.build import ReportSetup

INTERRUPTED = "interrupted; continue with the same command plus --resume"
PROG = "ckd_tune.search"


def quiet_libraries(args: argparse.Namespace) -> None:
    """Ray's and MLflow's own console output, which the progress lines replace."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our ProgressPrinter replaces Ray's tables
    # a failed trial's traceback stays in its error.txt and MLflow's failure_reason; the
    # progress line names the error: no screenful of traceback per failed trial unless --verbose
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "1" if args.verbose else "0")
    # MLflow 3 prints two "View run" lines per finished run with an http:// tracking server
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    logging.getLogger("ray.tune.execution.experiment_state").setLevel(logging.ERROR)


def print_plan(plan: Plan) -> None:
    """The sweep's first line: methods, budget, seed and MLflow store."""
    args = plan.args
    print(
        f"sweep {plan.sweep}: methods {', '.join(plan.methods)}, {plan.num_samples} trials per "
        f"method with a search space, {plan.epochs} epochs each ({args.searcher}, "
        f"{args.scheduler}); search seed {args.seed}; MLflow: {redact(plan.tracking_uri)}",
        flush=True,
    )


def prepare(plan: Plan) -> PreparedBench | None:
    """The bench of ``plan`` (data, teacher, assistant), its teacher printed; ``None`` after
    printing the one-line error of bad input."""
    from ckd_tune.benches import get_bench

    try:
        prepared = get_bench(plan.request.bench).prepare(plan.request)
    except UserInputError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return None
    prepared.base_config = prepared.base_config.replace(seed=plan.args.seed, epochs=plan.epochs)
    print_teacher(prepared)
    return prepared


def init_ray(args: argparse.Namespace) -> bool:
    """Join ``--address`` (or start a local Ray); False after printing why it could not."""
    import ray

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
        return False
    return True


def artifact_root(plan: Plan) -> Path | None:
    """Where a new experiment keeps its artifacts: beside the sweeps for a local store; a
    server keeps its own (served ones included), never a path of this driver that the
    cluster's workers may not see."""
    return None if is_server(plan.tracking_uri) else plan.sweep_dir.parent / "mlartifacts"


def run_sweep(
    plan: Plan,
    prepared: PreparedBench,
    client: MlflowClient,
    experiment_id: str,
    parent_run_id: str | None = None,
) -> int:
    """One task's sweep on a running Ray: every method's search, the summary, the table and
    the report, under the sweep's MLflow run (nested under ``parent_run_id`` when given).
    Returns 0, or 130 when interrupted (the sweep's run is then KILLED)."""
    from ckd_tune.search.summary import METRIC, open_sweep_run, write_summary
    from ckd_tune.search.table import mlflow_pointer, print_table
    from ckd_tune.search.tuner import SweepInterrupted, search_method

    args = plan.args
    experiment = args.experiment or prepared.experiment_name
    write_sweep_meta(plan)
    summary_run = open_sweep_run(plan, prepared, client, experiment_id, parent_run_id)
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


def write_sweep_meta(plan: Plan) -> None:
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


def print_teacher(prepared: PreparedBench) -> None:
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
