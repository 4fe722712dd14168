"""A multi-task study (``--task sst2,mrpc,rte`` or ``--task all``): one sweep per task, then a
cross-task report.

Every task runs exactly the sweep a single ``--task`` runs (the same protocol, methods, budget
and seeds), in the order given, on one Ray session, in ``<study>/<task>/``; every task's sweep
run nests under the study's MLflow run. Before the first task the time each task should take on
this machine is printed (:mod:`ckd_tune.search.estimate`), and after each task what it took,
with the remaining tasks' estimates rescaled by it. ``--resume`` continues the study: finished
tasks are reused, an interrupted one resumes, the others start.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

from ckd_tune import cache
from ckd_tune.search.plan import STUDY_FILE, Study
from ckd_tune.search.sweep import (
    INTERRUPTED,
    artifact_root,
    init_ray,
    prepare,
    print_plan,
    quiet_libraries,
    run_sweep,
)
from ckd_tune.tracking_uri import redact, ui_link

if TYPE_CHECKING:
    from ckd_tune.benches import Profile
    from ckd_tune.search.estimate import Estimate
    from ckd_tune.search.plan import Plan

REPORT_DIR = "report"


def task_done(plan: Plan) -> bool:
    """Whether the task's sweep finished, its report included (``--no-report``: its search)."""
    if plan.args.no_report:
        return (plan.sweep_dir / "summary.json").is_file()
    return (plan.sweep_dir / REPORT_DIR / "results.json").is_file()


def run_study(study: Study) -> int:
    """Run every task's sweep, then the cross-task report; the process exit status."""
    args = study.args
    quiet_libraries(args)
    import ray

    from ckd_tune.tracking import ROLE_STUDY, get_experiment_id, open_client, sweep_run

    tracking_uri = study.plans[0].tracking_uri
    print(
        f"study {study.name}: {len(study.tasks)} tasks ({', '.join(study.tasks)}), each the "
        f"same sweep: methods {', '.join(study.plans[0].methods)}; MLflow: {redact(tracking_uri)}",
        flush=True,
    )
    estimates = print_estimates(study)
    study.study_dir.mkdir(parents=True, exist_ok=True)
    meta = study.study_dir / STUDY_FILE
    if not meta.exists():
        cache.write_json(
            {
                "bench": args.bench,
                "tasks": study.tasks,
                "profile": args.profile,
                "methods": study.plans[0].methods,
                "seed": args.seed,
                "experiment": study.experiment,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
            meta,
        )
    if not init_ray(args):
        return 2
    client = open_client(tracking_uri)
    experiment_id = get_experiment_id(client, study.experiment, artifact_root(study.plans[0]))
    tags = {"bench": args.bench, "tasks": ",".join(study.tasks), "profile": args.profile}
    name = f"study {args.bench} {','.join(study.tasks)} {args.profile}"
    study_run = sweep_run(client, experiment_id, study.name, tags, name, role=ROLE_STUDY)
    status = "KILLED"
    try:
        measured: dict[str, float] = {}
        for i, (task, plan) in enumerate(zip(study.tasks, study.plans, strict=True), 1):
            head = f"study: task {i}/{len(study.tasks)} {task}"
            if task_done(plan):
                print(f"{head}: finished in an earlier run; reusing it", flush=True)
                continue
            print(f"{head}: starting{_eta(estimates, measured, task)}", flush=True)
            print_plan(plan)
            t0 = time.perf_counter()
            prepared = prepare(plan)
            if prepared is None:
                status = "FAILED"
                return 2
            rc = run_sweep(plan, prepared, client, experiment_id, study_run)
            if rc:
                return rc
            measured[task] = time.perf_counter() - t0
            left = _left(study, estimates, measured)
            print(f"{head}: done in {measured[task] / 60:.1f} min{left}", flush=True)
        if not args.no_report:
            from ckd_tune.report.study import make_study_report

            make_study_report(study.study_dir, client=client, run_id=study_run)
        print(f"study: runs table: {ui_link(tracking_uri, experiment_id)}", flush=True)
        status = "FINISHED"
        return 0
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr, flush=True)
        return 130
    except Exception:
        status = "FAILED"
        raise
    finally:  # KILLED when interrupted: --resume marks it RUNNING again
        client.set_terminated(study_run, status=status)
        ray.shutdown()


def print_estimates(study: Study) -> dict[str, Estimate]:
    """Each task's estimated time on this machine (benches with a speed probe: GLUE), printed.

    On a cluster (``--address``) it still times this machine and assumes its concurrency."""
    import torch

    from ckd_tune.search.estimate import estimate, probe_glue
    from ckd_tune.search.tuner import default_concurrency, method_samples

    if study.args.bench != "glue":
        print(f"study: no time estimate for {study.args.bench} (no speed probe)", flush=True)
        return {}
    print("study: timing a few training steps of each task's student and teacher ...", flush=True)
    estimates = {}
    for task, plan in zip(study.tasks, study.plans, strict=True):
        if task_done(plan):
            continue
        speed = probe_glue(plan.request)
        here = {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}
        concurrent = plan.args.max_concurrent or default_concurrency(
            here, plan.cpus_per_trial, plan.gpus_per_trial
        )
        arms = len(plan.methods) + (1 if "kd" in plan.methods else 0)  # + the positive control
        estimates[task] = e = estimate(
            speed,
            prepared_profile(plan),
            trials=[method_samples(plan, m) for m in plan.methods],
            reruns=0 if plan.args.no_report else arms * plan.seeds,
            epochs=plan.epochs,
            concurrent=concurrent,
        )
        sizes = ", ".join(f"{k} {v}" for k, v in speed.sizes.items())
        print(
            f"study: {task}: ~{e.total / 60:.0f} min (teacher {e.teacher / 60:.0f} unless cached, "
            f"search {e.search / 60:.0f}, re-runs {e.reruns / 60:.0f}); {sizes}",
            flush=True,
        )
    total = sum(e.total for e in estimates.values())
    print(
        f"study: ~{total / 60:.0f} min in all, from this machine's speed (Ray's and MLflow's "
        "overheads not included; rescaled after each task)",
        flush=True,
    )
    return estimates


def prepared_profile(plan: Plan) -> Profile:
    """The bench profile ``plan`` runs."""
    from ckd_tune.benches import get_bench

    return get_bench(plan.request.bench).profiles[plan.args.profile]


def _eta(estimates: dict[str, Estimate], measured: dict[str, float], task: str) -> str:
    from ckd_tune.search.estimate import calibrated

    if task not in estimates:
        return ""
    _, scaled = calibrated({t: e.total for t, e in estimates.items()}, measured)
    return f" (estimated {scaled[task] / 60:.0f} min)"


def _left(study: Study, estimates: dict[str, Estimate], measured: dict[str, float]) -> str:
    from ckd_tune.search.estimate import calibrated

    if not estimates:
        return ""
    ratio, scaled = calibrated({t: e.total for t, e in estimates.items()}, measured)
    left = [t for t in study.tasks if t in scaled and t not in measured]
    if not left:
        return ""
    return (
        f"; {len(left)} task(s) left, ~{sum(scaled[t] for t in left) / 60:.0f} min "
        f"(estimates x{ratio:.2f}, as the finished tasks ran)"
    )


__all__ = ["run_study", "task_done"]
