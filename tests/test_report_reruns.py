"""Re-runs of the best configs (:mod:`ckd_tune.report.reruns`): a failed seed is recorded, not
hidden; with Ray up the re-runs are Ray tasks with the same numbers as in-process ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ckd_tune import report
from ckd_tune.errors import NonFiniteLossError
from ckd_tune.report import (
    analyse,
    render_markdown,
)
from ckd_tune.report.reruns import RerunJob
from tests.report_support import (
    asdict_summary,
    make_summaries,
    report_setup_dict,
)
from tests.synthetic_bench import make_prepared

# ------------------------------------------------------------------ failures


def test_failed_rerun_is_recorded_per_seed(monkeypatch):
    import ckd_tune.train

    real_train = ckd_tune.train.train

    def flaky(config, *args, **kwargs):
        if config.method == "kd" and config.seed == 1:
            raise NonFiniteLossError("loss became nan at epoch 1, step 2")
        return real_train(config, *args, **kwargs)

    monkeypatch.setattr(ckd_tune.train, "train", flaky)
    prepared = make_prepared()
    kd = make_summaries()[1]
    records = [
        report.rerun(prepared, RerunJob("kd", "kd", kd.best_config, seed)) for seed in (0, 1)
    ]
    assert records[0]["status"] == "ok" and "state" in records[0]
    assert records[1]["status"] == "failed" and "nan" in records[1]["error"]
    records[0].pop("state")
    results = analyse(
        [asdict_summary(s) for s in make_summaries()],
        {"kd": records, "ckd": [{**records[0], "method": "ckd"}]},
        metric="accuracy",
    )
    kd_result = results["methods"]["kd"]
    assert kd_result["status"] == "ok" and kd_result["failed_seeds"] == [1]
    assert kd_result["test"]["n"] == 1
    assert results["methods"]["none"]["status"] == "reruns_failed"
    assert "cannot be done" in results["comparisons"]["kd"]["ckd"]["verdict"]
    results.update(sweep="s", setup=report_setup_dict(), plots={})
    md = render_markdown(results)
    assert "kd: seeds 1" in md and "**all re-runs failed**" in md and "**FAILED**" in md


@pytest.mark.slow  # ~15 s: starts a local Ray and its workers
def test_reruns_run_as_ray_tasks(monkeypatch):
    """With Ray up, re-runs are Ray tasks (bench put once); a crashed task is a failed seed."""
    import ray

    here = Path(__file__).resolve().parent  # Ray's workers must import this module and conftest
    paths = [str(here), str(here.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    prepared = make_prepared()
    kd = make_summaries()[1].best_config
    bad = {**kd, "lr": -1.0}  # TrainConfig raises inside the task
    records = []
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        jobs = [
            RerunJob("kd", "kd", kd, 0),
            RerunJob("kd", "kd", kd, 1),
            RerunJob("kd", "kd", bad, 2),
        ]
        report.run_reruns(prepared, jobs, records.append)
        info = report.machine_info()
    finally:
        ray.shutdown()
    by_seed = {r["seed"]: r for r in records}
    assert by_seed[0]["status"] == by_seed[1]["status"] == "ok"
    assert by_seed[2]["status"] == "failed" and "lr: must be > 0" in by_seed[2]["error"]
    local = report.rerun(prepared, RerunJob("kd", "kd", kd, 1))
    assert by_seed[1]["test_score"] == local["test_score"]  # same seed, same numbers
    assert all(torch.equal(by_seed[1]["state"][k], v) for k, v in local["state"].items())
    assert info["ray"]["CPU"] == 1
