"""A multi-task study end to end: ``--task sst2,mrpc`` on the smoke profile, then ``--resume``
after its last task's report was lost (the issue's acceptance run, made lean: kd and none, one
trial each, two seeds)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from search_support import (  # noqa: E402
    cache_dir_fixture,  # noqa: F401  (the cache_dir fixture)
    cli,
    ok,
    sweep_args,
)

pytestmark = pytest.mark.slow
STUDY = "s"
TASKS = ("sst2", "mrpc")


@dataclass
class Study:
    dir: Path
    db: str
    first: object  # the CompletedProcess of the first run
    resumed: object  # ... and of the --resume after mrpc's report was deleted


@pytest.fixture(scope="module", name="study")
def study_fixture(tmp_path_factory, cache_dir, glue_dir) -> Study:
    tmp = tmp_path_factory.mktemp("study")
    db = f"sqlite:///{tmp / 'mlflow.db'}"
    args = [a for a in sweep_args(tmp / "runs", db, cache_dir, glue_dir) if a != "--no-report"]
    args += ["--task", ",".join(TASKS), "--methods", "kd,none", "--num-samples", "1"]
    args += ["--seeds", "2", "--max-epochs", "1", "--sweep", STUDY]
    first = cli(args, cwd=tmp)
    ok(first)
    (tmp / "runs" / STUDY / "mrpc" / "report" / "results.json").unlink()
    resumed = cli([*args, "--resume"], cwd=tmp)
    ok(resumed)
    return Study(tmp / "runs" / STUDY, db, first, resumed)


def test_the_study_prints_its_time_budget_and_a_line_per_task(study):
    out = study.first.stdout
    assert "study s: 2 tasks (sst2, mrpc), each the same sweep: methods kd, none" in out
    for task in TASKS:
        assert f"study: {task}: ~" in out  # the estimate, up front
    assert out.index("study: sst2: ~") < out.index("study: task 1/2 sst2: starting (estimated")
    assert "study: task 1/2 sst2: done in" in out and "1 task(s) left, ~" in out
    assert out.index("study: task 2/2 mrpc: starting") > out.index("study: task 1/2 sst2: done")
    assert "study: Across 2 tasks" in out


def test_each_task_is_a_whole_sweep_and_the_study_has_its_cross_task_report(study):
    for task in TASKS:
        report = json.loads((study.dir / task / "report" / "results.json").read_text())
        assert report["setup"]["task"] == task and report["sweep"] == f"{STUDY}/{task}"
        assert set(report["methods"]) == {"kd", "none"}
    results = json.loads((study.dir / "report" / "results.json").read_text())
    assert list(results["tasks"]) == list(TASKS)
    agg = results["aggregate"]
    assert set(agg["methods"]) == {"kd", "none"} and agg["positive_control"] is not None
    assert agg["comparisons"]["kd"]["none"]["n_tasks"] == 2
    md = (study.dir / "report" / "report.md").read_text()
    assert "| method | SST-2 (acc) | MRPC (F1) | Avg |" in md
    assert (study.dir / "report" / "forest.png").is_file()


def test_mlflow_nests_trials_under_tasks_under_the_study(study):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(study.db)
    experiment = client.get_experiment_by_name("ckd_tune/glue/study")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    by_role: dict[str, list] = {}
    for r in runs:
        by_role.setdefault(r.data.tags.get("role"), []).append(r)
    (study_run,) = by_role["study"]
    assert study_run.info.status == "FINISHED" and study_run.info.run_name.startswith("study glue")
    assert "verdict" in study_run.data.tags
    sweeps = {r.data.tags["task"]: r for r in by_role["summary"]}
    assert set(sweeps) == set(TASKS)
    for task, sweep in sweeps.items():
        assert sweep.data.tags["mlflow.parentRunId"] == study_run.info.run_id
        assert sweep.data.tags["sweep"] == f"{STUDY}/{task}"
        assert sweep.info.status == "FINISHED"
    for r in by_role["trial"] + by_role["rerun"]:  # every trial and re-run under its task
        assert r.data.tags["mlflow.parentRunId"] == sweeps[r.data.tags["task"]].info.run_id
    assert len(by_role["trial"]) == 2 * 2  # kd and none, one trial each, two tasks
    # mrpc's report ran twice; its first re-runs were deleted: one run per (arm, seed) left
    reruns = [
        (r.data.tags["task"], r.data.tags["arm"], r.data.tags["seed"]) for r in by_role["rerun"]
    ]
    assert len(reruns) == len(set(reruns)) == 2 * 3 * 2  # tasks x (kd, none, control) x seeds


def test_resume_reuses_finished_tasks_and_completes_the_rest(study):
    out = study.resumed.stdout
    assert "study: task 1/2 sst2: finished in an earlier run; reusing it" in out
    assert "kd: search already finished in this sweep; reusing its results" in out
    assert "study: task 2/2 mrpc: done in" in out
    assert (study.dir / "mrpc" / "report" / "results.json").is_file()
    results = json.loads((study.dir / "report" / "results.json").read_text())
    assert list(results["tasks"]) == list(TASKS)
