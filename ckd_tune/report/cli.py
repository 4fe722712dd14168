"""The CLI, ``python -m ckd_tune.report --experiment NAME``: a report over an existing sweep's
MLflow runs. It finds the sweep's summary run, rebuilds the bench from what that run records and
calls :func:`ckd_tune.report.build.make_report`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ckd_tune.errors import UserInputError
from ckd_tune.report.formatting import redact_uri
from ckd_tune.report.mlflow_models import REGISTER_HELP
from ckd_tune.search.plan import default_gpus, trial_device
from ckd_tune.search.summary import MethodSummary

if TYPE_CHECKING:
    from ckd_tune.benches import PreparedBench
    from ckd_tune.report.build import ReportSetup


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m ckd_tune.report",
        description="Re-train each method's best configuration of a finished sweep over several "
        "seeds, score it on the held-out test split and write the comparison report "
        "(report.md, results.json, plots, best students).",
    )
    p.add_argument("--experiment", required=True, help="MLflow experiment name of the sweep")
    p.add_argument("--sweep", help="sweep name (default: the experiment's latest sweep)")
    p.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)"
    )
    p.add_argument("--seeds", type=int, help="seeds per best config (default: the profile's)")
    p.add_argument(
        "--output",
        type=Path,
        help="directory holding sweeps; the report goes to <output>/<sweep>/report "
        "(default: the sweep's own directory as recorded, else ./ckd_runs)",
    )
    p.add_argument("--data-dir", type=Path, help="data directory (default: the sweep's)")
    p.add_argument("--cache-dir", type=Path, help="teacher and logit cache (default: the sweep's)")
    p.add_argument(
        "--cpus-per-run", type=float, default=1.0, help="CPUs (threads) per re-run (default: 1)"
    )
    p.add_argument(
        "--gpus-per-run",
        type=float,
        default=None,
        help="GPUs per re-run (default: 0 without GPUs, else 0.5)",
    )
    p.add_argument(
        "--no-ray", action="store_true", help="run the re-runs one after another in this process"
    )
    p.add_argument("--register-model", metavar="NAME", help=REGISTER_HELP)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit status (2 for bad input)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    try:
        client, experiment_id, run = _find_summary_run(args)
        sweep_info = _sweep_info(client, run)
        setup, prepared, summaries = _prepare(
            args, sweep_info, experiment_id, run.info.run_id, client.tracking_uri
        )
    except UserInputError as err:
        print(f"ckd_tune.report: error: {err}", file=sys.stderr)
        return 2
    from ckd_tune.report.build import make_report

    started_ray = False
    if not args.no_ray:
        import ray

        if not ray.is_initialized():
            ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
            started_ray = True
    try:
        make_report(setup, prepared, summaries, client)
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    return 0


def _find_summary_run(args: argparse.Namespace) -> tuple[Any, str, Any]:
    """The ``MlflowClient`` (its ``tracking_uri`` without credentials), the experiment's id and
    the sweep's summary run; UserInputError if any is missing."""
    if args.seeds is not None and args.seeds < 1:
        raise UserInputError(f"--seeds: must be >= 1, got {args.seeds}")
    from mlflow.tracking import MlflowClient

    from ckd_tune.tracking import ROLE_SUMMARY
    from ckd_tune.tracking_uri import credentials_to_env, default_tracking_uri

    uri = credentials_to_env(args.tracking_uri or default_tracking_uri(Path.cwd()))
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise UserInputError(
            f"--tracking-uri: no MLflow database at {uri.removeprefix('sqlite:///')}"
        )
    client = MlflowClient(uri)
    try:
        experiment = client.get_experiment_by_name(args.experiment)
    except Exception as err:
        raise UserInputError(
            f"--tracking-uri: cannot read MLflow at {redact_uri(uri)}: {err}"
        ) from None
    if experiment is None:
        raise UserInputError(
            f"--experiment: no MLflow experiment named {args.experiment!r} at {redact_uri(uri)}"
        )
    query = f"tags.role = '{ROLE_SUMMARY}'"
    if args.sweep:
        query += f" and tags.sweep = '{args.sweep}'"
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=query,
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    if not runs:
        which = f"sweep {args.sweep!r}" if args.sweep else "any sweep"
        raise UserInputError(
            f"--sweep: no summary run of {which} in experiment {args.experiment!r} "
            "(did the search finish?)"
        )
    return client, experiment.experiment_id, runs[0]


def _sweep_info(client: Any, run: Any) -> dict[str, Any]:
    """The bench request and method summaries recorded by
    :func:`ckd_tune.search.summary.write_summary`."""
    run_id = run.info.run_id
    try:
        found = any(a.path == "summary.json" for a in client.list_artifacts(run_id))
    except Exception as err:
        raise UserInputError(
            f"--sweep: cannot list the artifacts of run {run_id} ({err})"
        ) from None
    if not found:
        raise UserInputError(
            f"--sweep: the summary run {run_id} (sweep {run.data.tags.get('sweep')}) has no "
            "summary.json; was the search interrupted before its summary?"
        )
    previous = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, "summary.json", tmp)
            summary = json.loads(Path(path).read_text())
    except Exception as err:
        raise UserInputError(
            f"--sweep: the summary run {run_id} has no readable summary.json ({err})"
        ) from None
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = previous
    request = {**run.data.tags, **run.data.params, **(summary.get("request") or {})}
    request.setdefault("sweep", summary.get("sweep") or run.data.tags.get("sweep"))
    missing = [k for k in ("bench", "task", "profile", "sweep") if not request.get(k)]
    if missing:
        raise UserInputError(
            f"--sweep: the summary run {run_id} does not record {', '.join(missing)}; "
            "it was written by an older ckd_tune (re-run the search with --resume to update it)"
        )
    return {"request": request, "methods": summary.get("methods") or []}


def _prepare(
    args: argparse.Namespace,
    info: dict[str, Any],
    experiment_id: str,
    summary_run: str,
    tracking_uri: str,
) -> tuple[ReportSetup, PreparedBench, list[MethodSummary]]:
    from ckd_tune.benches import BenchRequest, get_bench
    from ckd_tune.report.build import ReportSetup

    req = info["request"]
    bench = get_bench(req["bench"])
    if req["profile"] not in bench.profiles:
        raise UserInputError(f"--sweep: unknown profile {req['profile']!r} for bench {bench.name}")
    profile = bench.profiles[req["profile"]]
    gpus = default_gpus() if args.gpus_per_run is None else args.gpus_per_run
    if args.cpus_per_run <= 0 or gpus < 0:
        raise UserInputError("--cpus-per-run must be > 0 and --gpus-per-run >= 0")
    device = trial_device(gpus)
    data_dir = args.data_dir or (Path(req["data_dir"]) if req.get("data_dir") else None)
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UserInputError(f"--data-dir: {data_dir} is not a directory")
    cache_dir = args.cache_dir or (Path(req["cache_dir"]) if req.get("cache_dir") else None)
    sweep = req["sweep"]
    fields = set(MethodSummary.__dataclass_fields__)
    summaries = [
        MethodSummary(**{k: v for k, v in m.items() if k in fields}) for m in info["methods"]
    ]
    if not summaries:
        raise UserInputError(f"--sweep: the summary of {sweep} lists no methods")
    request = BenchRequest(
        bench=bench.name,
        task=req["task"],
        profile=req["profile"],
        data_dir=Path(data_dir) if data_dir else None,
        teacher=req.get("teacher") or None,
        student=req.get("student") or None,
        assistant=req.get("assistant") or None,
        device=device,
        num_threads=max(1, int(args.cpus_per_run)),
        methods=tuple(s.method for s in summaries),
        **({"cache_dir": Path(cache_dir).expanduser()} if cache_dir else {}),
    )
    seed = int(req.get("seed") or 0)
    epochs = int(req.get("epochs") or profile.epochs)
    prepared = bench.prepare(request)
    prepared.base_config = prepared.base_config.replace(seed=seed, epochs=epochs)
    if args.output is not None:
        sweep_dir = args.output.expanduser().resolve() / sweep
    elif req.get("sweep_dir"):
        sweep_dir = Path(req["sweep_dir"])
    else:
        sweep_dir = Path("ckd_runs").resolve() / sweep
    setup = ReportSetup(
        sweep=sweep,
        report_dir=sweep_dir / "report",
        seed=seed,
        seeds=args.seeds or profile.seeds,
        epochs=epochs,
        profile=req["profile"],
        num_samples=int(req["num_samples"]) if req.get("num_samples") else None,
        searcher=req.get("searcher"),
        scheduler=req.get("scheduler"),
        experiment_id=experiment_id,
        summary_run=summary_run,
        tracking_uri=tracking_uri,
        device=device,
        cpus_per_run=args.cpus_per_run,
        gpus_per_run=gpus,
        register_model=args.register_model,
    )
    return setup, prepared, summaries
