"""Orchestration: :func:`make_report` re-runs every best configuration over the seeds, analyses,
plots and writes ``report.md``, ``results.json``, the PNGs and the best students, and logs them to
MLflow; the search CLI (:func:`ckd_tune.search.sweep.report_setup`) and the report CLI each build its
:class:`ReportSetup`. Also the MLflow reads and
writes around it and the description of the student and the machine."""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ckd_tune.methods import get_method
from ckd_tune.report.formatting import redact_uri, seed_list, shown_path
from ckd_tune.report.markdown import render_markdown
from ckd_tune.report.mlflow_models import input_example, log_student_model, register_model
from ckd_tune.report.plots import (
    PLOTS,
    plot_learned_schedules,
    plot_schedules,
    plot_search,
    plot_test_scores,
    plot_val_curves,
)
from ckd_tune.report.reruns import CONTROL, RerunJob, _log_rerun, run_reruns
from ckd_tune.report.results import analyse, schedule_curves, search_trace
from ckd_tune.report.stats import BASELINE
from ckd_tune.report.students import STUDENT_JSON, save_student

if TYPE_CHECKING:
    from ckd_tune.benches import PreparedBench
    from ckd_tune.teacher import Teacher

PREDICTIONS = "test_predictions.npz"  # every re-run's test predictions, beside results.json


@dataclass
class ReportSetup:
    """What a report needs besides the bench and the summaries: the sweep, its budget and the
    resources of a re-run (built from the search's plan, or from what the sweep recorded in MLflow)."""

    sweep: str
    report_dir: Path
    seed: int  # the search's seed; re-runs use seed + 1, ..., seed + seeds (never the search's)
    seeds: int
    epochs: int
    profile: str = ""
    num_samples: int | None = None
    searcher: str | None = None
    scheduler: str | None = None
    experiment_id: str | None = None
    summary_run: str | None = None
    tracking_uri: str | None = None
    device: str = "cpu"
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    # method -> its space's numeric ranges {"name", "low", "high", "log"} (the range check)
    spaces: dict[str, list[dict[str, Any]]] | None = None
    positive_control: bool = True  # re-run kd on shuffled teacher logits too
    register_model: str | None = None  # register the best student under this name


def space_ranges(space: Any) -> list[dict[str, Any]]:
    """A :class:`ckd_tune.spaces.SearchSpace`'s numeric ranges, for :func:`range_flags`."""
    return [
        {"name": p.name, "low": p.low, "high": p.high, "log": p.type == "loguniform" or p.log}
        for p in space.params
        if p.type != "categorical"
    ]


class _Collector:
    """Receives re-run records in the driver: logs each to MLflow, keeps only each method's best state."""

    def __init__(self, total: int, log_one: Callable[[dict[str, Any]], str | None], metric: str):
        self.records: dict[str, list[dict[str, Any]]] = {}  # arm -> records
        self.best: dict[str, dict[str, Any]] = {}
        self.total, self.done = total, 0
        self.log_one = log_one
        self.metric = metric

    def __call__(self, record: dict[str, Any]) -> None:
        state = record.pop("state", None)
        record["run_id"] = self.log_one(record)
        self.records.setdefault(record["arm"], []).append(record)
        self.done += 1
        method, seed = record["arm"], record["seed"]
        if record["status"] == "ok":
            print(
                f"report: {method} seed {seed}: test {self.metric} {record['test_score']:.4f} "
                f"(val {record['val_score']:.4f}, best epoch {record['best_epoch']}) "
                f"[{self.done}/{self.total}]",
                flush=True,
            )
            best = self.best.get(method)
            key = (record["val_score"], -seed)
            if method == CONTROL:
                return
            if best is None or key > (best["record"]["val_score"], -best["record"]["seed"]):
                self.best[method] = {"record": record, "state": state}
        else:
            print(
                f"report: {method} seed {seed}: FAILED ({str(record['error'])[:160]}) "
                f"[{self.done}/{self.total}]",
                flush=True,
            )


def make_report(
    setup: ReportSetup,
    prepared: PreparedBench,
    summaries: Sequence[Any],
    client: Any = None,
) -> dict[str, Any]:
    """Re-run, analyse, plot and write ``report.md``, ``results.json`` and the PNGs; return the results.

    ``summaries``: :class:`ckd_tune.search.summary.MethodSummary` objects (or their dicts). ``client``: an
    ``MlflowClient`` (with ``setup.experiment_id``) to log re-runs into and to read the trial runs
    from; ``None`` skips MLflow.
    """
    from ckd_tune.tracking import ROLE_RERUN

    t0 = time.perf_counter()
    summaries = [asdict(s) if is_dataclass(s) else dict(s) for s in summaries]
    report_dir = Path(setup.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(report_dir / "models", ignore_errors=True)  # an earlier report's students
    metric = prepared.data.main_metric
    seeds = [setup.seed + 1 + i for i in range(setup.seeds)]  # disjoint from the search's seed
    configs = {
        s["method"]: dict(s["best_config"])
        for s in summaries
        if s["status"] == "ok" and s.get("best_config")
    }
    failed = [s["method"] for s in summaries if s["method"] not in configs]
    if failed:
        print(f"report: no re-runs for {', '.join(failed)} (every search trial failed)", flush=True)
    jobs = [RerunJob(m, m, configs[m], seed) for seed in seeds for m in configs]
    if setup.positive_control and BASELINE in configs:
        jobs += [RerunJob(CONTROL, BASELINE, configs[BASELINE], s, True) for s in seeds]
    mlflow_on = client is not None and setup.experiment_id is not None
    tags = {
        "role": ROLE_RERUN,
        "sweep": setup.sweep,
        "bench": prepared.bench,
        "task": prepared.task,
        "profile": setup.profile,
    }
    if setup.summary_run:
        tags["mlflow.parentRunId"] = setup.summary_run
    if mlflow_on:
        _delete_old_reruns(client, setup.experiment_id, setup.sweep)

    inputs = prepared.data.dataset_inputs(["train", "val", "test"]) if mlflow_on else []

    def log_one(record: dict[str, Any]) -> str | None:
        if not mlflow_on:
            return None
        return _log_rerun(
            client, setup.experiment_id, tags, record, configs[record["method"]], inputs
        )

    control = " + the positive control" if len(jobs) > len(configs) * len(seeds) else ""
    print(
        f"report: re-training {len(configs)} best configs{control} x {len(seeds)} seeds "
        f"({seed_list(seeds)}; the search used seed {setup.seed}), scoring on the test split",
        flush=True,
    )
    collector = _Collector(len(jobs), log_one, metric)
    run_reruns(
        prepared,
        jobs,
        collector,
        device=setup.device,
        cpus=setup.cpus_per_run,
        gpus=setup.gpus_per_run,
    )

    save_predictions(collector.records, prepared.data.test.labels, report_dir / PREDICTIONS)
    teacher = _teacher_entry(prepared.teacher, metric)
    results = analyse(
        summaries,
        collector.records,
        metric=metric,
        teacher={**teacher, **teacher["scores"]},
        base_config=prepared.base_config.to_flat(),
        task=prepared.task,
        labels=prepared.data.test.labels,
        spaces=setup.spaces,
    )
    results["assistant"] = None
    if prepared.assistant is not None:
        used_by = [s["method"] for s in summaries if get_method(s["method"]).signal == "assistant"]
        results["assistant"] = {**_teacher_entry(prepared.assistant, metric), "used_by": used_by}
    for method, best in collector.best.items():  # the control arm keeps no student
        model, info = _save_best(prepared, best, report_dir, method, setup, metric)
        run_id = best["record"].get("run_id")
        if mlflow_on and setup.tracking_uri is not None and run_id:
            info["mlflow_uri"] = _log_model(model, prepared, setup.tracking_uri, run_id, method)
        results["methods"][method]["model"] = info
    for m in results["methods"].values():
        m.setdefault("model", None)
    for s in summaries:  # a PBT variant's learned schedule, which its re-runs replayed
        if s.get("schedule") and s["method"] in results["methods"]:
            results["methods"][s["method"]]["schedule"] = s["schedule"]
            if s.get("members"):
                results["methods"][s["method"]]["members"] = s["members"]
            name = f"{s['method'].replace(':', '-')}.schedule.json"
            _write_json({"method": s["method"], "schedule": s["schedule"]}, report_dir / name)
    results["registered_model"] = (
        _register_best(results["methods"], setup) if setup.register_model else None
    )

    traces = _search_traces(client, setup, list(results["methods"])) if mlflow_on else {}
    schedules = schedule_curves(configs)
    results.update(
        sweep=setup.sweep,
        generated=time.strftime("%Y-%m-%dT%H:%M:%S"),
        setup={
            "bench": prepared.bench,
            "task": prepared.task,
            "profile": setup.profile,
            "methods": [s["method"] for s in summaries],
            "search_seed": setup.seed,
            "seeds": seeds,
            "splits": prepared.data.describe_splits(),
            "teacher_data": "disjoint" if prepared.data.teacher_train is not None else "shared",
            "num_samples": setup.num_samples,
            "epochs": setup.epochs,
            "searcher": setup.searcher,
            "scheduler": setup.scheduler,
            "student": describe_student(prepared),
            "machine": machine_info(),
            "rerun_resources": {
                "cpus": setup.cpus_per_run,
                "gpus": setup.gpus_per_run,
                "device": setup.device,
            },
            "experiment_id": setup.experiment_id,
            "summary_run": setup.summary_run,
            "tracking_uri": redact_uri(setup.tracking_uri),
            "report_dir": shown_path(report_dir),
        },
        schedules=schedules,
        search_traces=traces,
        plots=dict(PLOTS),
    )
    write_plots(results, report_dir)
    results["setup"]["report_seconds"] = time.perf_counter() - t0
    (report_dir / "report.md").write_text(render_markdown(results))
    _write_json(results, report_dir / "results.json")
    if mlflow_on and setup.summary_run:
        _log_summary(client, setup.summary_run, results, report_dir)
    print(f"report: {results['verdict']}", flush=True)
    print(f"report: {report_dir / 'report.md'}", flush=True)
    return results


def save_predictions(
    records: Mapping[str, Sequence[Mapping[str, Any]]], labels: Any, path: Path
) -> None:
    """Every finished re-run's test predictions (key ``<arm>@<seed>``) and the test labels
    (``labels``), for a study's cross-task statistics (:mod:`ckd_tune.report.study`)."""
    arrays = {"labels": np.asarray(labels)}
    for arm, rows in records.items():
        for r in rows:
            if r["status"] == "ok" and r.get("test_predictions") is not None:
                arrays[f"{arm}@{r['seed']}"] = np.asarray(r["test_predictions"])
    np.savez_compressed(path, **arrays)


def load_predictions(path: Path) -> tuple[np.ndarray, dict[str, dict[int, np.ndarray]]]:
    """What :func:`save_predictions` wrote: the labels and ``{arm: {seed: predictions}}``."""
    with np.load(path) as saved:
        arms: dict[str, dict[int, np.ndarray]] = {}
        for key in saved.files:
            if key != "labels":
                arm, _, seed = key.rpartition("@")
                arms.setdefault(arm, {})[int(seed)] = saved[key]
        return saved["labels"], arms


def write_plots(results: Mapping[str, Any], report_dir: Path) -> None:
    """The PNGs of a results dict into ``report_dir``."""
    metric = results["metric"]
    methods = results["methods"]
    teacher = results.get("teacher") or {}
    curves = {
        name: [
            [h["val_score"] for h in r.get("history", []) if "val_score" in h]
            for r in m["seeds"]
            if r["status"] == "ok"
        ]
        for name, m in methods.items()
        if m["status"] != "failed"
    }
    plot_val_curves(curves, report_dir / PLOTS["val_curves"], metric=metric)
    plot_schedules(results.get("schedules", {}), report_dir / PLOTS["schedules"])
    plot_search(results.get("search_traces", {}), report_dir / PLOTS["search"], metric=metric)
    plot_learned_schedules(
        learned_members(methods),
        results.get("schedules", {}),
        report_dir / PLOTS["learned_schedules"],
    )
    plot_test_scores(
        {name: m["test"]["values"] for name, m in methods.items()},
        report_dir / PLOTS["test_scores"],
        metric=metric,
        teacher=teacher.get("test"),
        failed=[n for n, m in methods.items() if m["status"] == "failed"],
    )


def learned_members(methods: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each row with a learned schedule: its top members' schedules (best first), or just the
    best member's (a summary written before members were kept)."""
    return {
        name: m.get("members") or [{"schedule": m["schedule"]}]
        for name, m in methods.items()
        if m.get("schedule")
    }


def _log_model(
    model: torch.nn.Module, prepared: PreparedBench, tracking_uri: str, run_id: str, method: str
) -> str | None:
    """``model`` as an MLflow model of its re-run's run; None (with a warning) if that fails:
    the student is saved in the report either way, and a report is never lost to MLflow."""
    try:
        example = input_example(prepared.data, model, prepared.build_student)
        return log_student_model(
            model,
            prepared.build_student,
            tracking_uri=tracking_uri,
            run_id=run_id,
            input_example=example,
        )
    except Exception as err:
        print(f"report: {method}: could not log the student as an MLflow model ({err})", flush=True)
        return None


def _register_best(methods: Mapping[str, Any], setup: ReportSetup) -> dict[str, Any] | None:
    """Register the logged student with the highest validation score as ``setup.register_model``."""
    logged = [(n, m["model"]) for n, m in methods.items() if (m["model"] or {}).get("mlflow_uri")]
    if not logged or setup.tracking_uri is None or setup.register_model is None:
        print("report: no student was logged to MLflow; nothing to register", flush=True)
        return None
    method, model = max(logged, key=lambda item: item[1]["val_score"])  # first one on ties
    name = setup.register_model
    version = register_model(model["mlflow_uri"], name, tracking_uri=setup.tracking_uri)
    print(
        f"report: registered {method}'s student (seed {model['seed']}, val "
        f"{model['val_score']:.4f}) as models:/{name}/{version}",
        flush=True,
    )
    return {"name": name, "version": version, "method": method, "uri": f"models:/{name}/{version}"}


def _save_best(
    prepared: PreparedBench,
    best: Mapping[str, Any],
    report_dir: Path,
    method: str,
    setup: ReportSetup,
    metric: str,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Save ``method``'s best student under ``report_dir/models``; the model and its description
    (``path`` relative to the report directory)."""
    directory = report_dir / "models" / method
    record = best["record"]
    model = prepared.build_student(record["seed"])
    model.load_state_dict(best["state"])
    info = {
        "method": record["method"],
        "seed": record["seed"],
        "sweep": setup.sweep,
        "bench": prepared.bench,
        "task": prepared.task,
        "metric": metric,
        "best_epoch": record["best_epoch"],
        "val_score": record["val_score"],
        "test_score": record["test_score"],
        "test": record["test"],
        "run_id": record.get("run_id"),
    }
    save_student(model.cpu(), directory, prepared.build_student, info)
    meta = json.loads((directory / STUDENT_JSON).read_text())
    return model, {
        "path": directory.relative_to(report_dir).as_posix(),
        "format": meta["format"],
        "seed": record["seed"],
        "val_score": record["val_score"],
        "test_score": record["test_score"],
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "mlflow_uri": None,
    }


def _log_summary(client: Any, run_id: str, results: Mapping[str, Any], report_dir: Path) -> None:
    """The report files as artifacts (folder ``report``) and test statistics as metrics."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = []
    for name, m in results["methods"].items():
        for key in ("mean", "std", "ci_low", "ci_high"):
            if m["test"][key] is not None:
                metrics.append(Metric(f"{name}.test_{key}", m["test"][key], now, 0))
        metrics.append(Metric(f"{name}.test_seeds", m["test"]["n"], now, 0))
    for name, c in results["comparisons"].get(results["baseline"], {}).items():
        for key in ("mean_diff", "p_paired", "p_welch", "p_holm", "mde"):
            if c.get(key) is not None:
                metrics.append(Metric(f"{name}.vs_{c['baseline']}.{key}", c[key], now, 0))
    for role in ("teacher", "assistant"):
        for split, score in ((results.get(role) or {}).get("scores") or {}).items():
            if score is not None:
                metrics.append(Metric(f"{role}.{split}_score", score, now, 0))
    control = results.get("positive_control")
    if control and control["difference"] is not None:
        metrics.append(Metric("positive_control.difference", control["difference"], now, 0))
        metrics.append(Metric("positive_control.passed", float(control["passed"]), now, 0))
    client.log_batch(run_id, metrics=metrics[:1000])
    for name in ["report.md", "results.json", *PLOTS.values()]:
        client.log_artifact(run_id, str(report_dir / name), "report")


def _delete_old_reruns(client: Any, experiment_id: str, sweep: str) -> None:
    from ckd_tune.tracking import ROLE_RERUN

    query = f"tags.sweep = '{sweep}' and tags.role = '{ROLE_RERUN}'"
    old = client.search_runs([experiment_id], filter_string=query, max_results=10_000)
    for run in old:
        client.delete_run(run.info.run_id)
    if old:
        print(f"report: replacing {len(old)} re-run(s) of an earlier report of {sweep}", flush=True)


def _search_traces(client: Any, setup: ReportSetup, methods: Sequence[str]) -> dict[str, list]:
    """Per method: the search trace (:func:`search_trace`) from the sweep's MLflow trial runs."""
    from ckd_tune.tracking import ROLE_TRIAL

    traces = {}
    for method in methods:
        query = (
            f"tags.sweep = '{setup.sweep}' and tags.role = '{ROLE_TRIAL}' "
            f"and tags.method = '{method}'"
        )
        runs = client.search_runs(
            [setup.experiment_id],
            filter_string=query,
            max_results=10_000,
            order_by=["attributes.start_time ASC"],
        )
        trials = [
            [
                (m.timestamp, m.step, m.value)
                for m in client.get_metric_history(r.info.run_id, "best_val_score")
            ]
            for r in runs
        ]
        traces[method] = search_trace(trials)
    return traces


def describe_student(prepared: PreparedBench) -> str:
    """A short description of the bench's student."""
    from ckd_tune.models import TextModelSpec

    spec = prepared.build_student
    if isinstance(spec, TextModelSpec):
        layers = f", first {spec.num_layers} layers" if spec.num_layers else ""
        return f"{spec.name_or_path}{layers}"
    model = spec(0)
    params = sum(p.numel() for p in model.parameters())
    return f"{type(model).__name__} ({params:,} parameters)"


def machine_info() -> dict[str, Any]:
    """Where the report ran: platform, CPUs, GPUs, versions, and the Ray cluster if one is up."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }
    try:
        import ray

        if ray.is_initialized():
            res = ray.cluster_resources()
            info["ray"] = {
                "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
                "CPU": res.get("CPU"),
                "GPU": res.get("GPU", 0),
            }
    except Exception:  # machine info must never break the report
        pass
    return info


def _write_json(data: Any, path: Path) -> None:
    """JSON atomically, keys in insertion order (methods stay in the sweep's order)."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
        json.dump(data, f, indent=2, default=str)
    os.replace(f.name, path)


def _teacher_entry(model: Teacher, metric: str) -> dict[str, Any]:
    """The teacher's (or assistant's) entry of the results: its name, its ``metric`` on the
    student's train, val and test splits, and its one-time cost (``train_seconds``; ``reused``:
    read from the cache, that cost paid by an earlier sweep)."""
    scores = {s: _get(model.metrics, s, metric) for s in ("train", "val", "test")}
    return {
        "name": model.name,
        "scores": scores,
        "train_seconds": model.train_seconds,
        "reused": model.reused,
    }


def _get(metrics: Mapping[str, Any], split: str, metric: str) -> float | None:
    value = (metrics or {}).get(split, {}).get(metric)
    return float(value) if value is not None else None
