"""MLflow tracking (:mod:`ckd_tune.tracking`) against a local sqlite store: experiments, runs
found by their tags, one run per trial across a driver restart, and reconciling runs with Ray's
final trial states."""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import dataclass

import pytest
from mlflow.tracking import MlflowClient

from ckd_tune.tracking import (
    ROLE_TRIAL,
    MLflowTrialCallback,
    discard_trial_runs,
    find_run,
    get_experiment_id,
    numeric_metrics,
    open_client,
    sweep_run,
    trial_error,
    trial_run_name,
)
from tests.conftest import make_points_task

EXPERIMENT = "ckd_tune/glue/sst2"
TAGS = {
    "sweep": "s",
    "method": "kd",
    "bench": "glue",
    "task": "sst2",
    "searcher": "tpe",
    "seed": "0",
}


@dataclass
class FakeTrial:
    """What :meth:`MLflowTrialCallback.reconcile` reads of a Ray ``Trial``."""

    trial_id: str
    status: str
    last_result: dict
    error_file: str | None = None
    config: dict | None = None
    num_failures: int = 0
    experiment_tag: str = ""

    def __post_init__(self) -> None:
        self.config = self.config or {"lr": 0.001}

    def __str__(self) -> str:
        return f"run_trial_{self.trial_id}"


@pytest.fixture
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'm.db'}"


def runs_of(db: str, sweep: str = "s") -> list:
    """The trial runs of ``sweep`` (deleted ones excluded)."""
    client = MlflowClient(db)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], f"tags.sweep = '{sweep}'")
    return [r for r in runs if r.data.tags.get("role") == ROLE_TRIAL]


def test_experiment_is_created_once_with_its_artifact_root(db, tmp_path):
    client = open_client(db)
    first = get_experiment_id(client, EXPERIMENT, tmp_path / "artifacts")
    assert get_experiment_id(client, EXPERIMENT, tmp_path / "elsewhere") == first
    experiment = client.get_experiment(first)
    assert experiment.name == EXPERIMENT
    assert experiment.artifact_location == (tmp_path / "artifacts").resolve().as_uri()
    # a model-training experiment, so MLflow 3's UI does not treat it as a GenAI one
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_find_run_matches_every_tag(db, tmp_path):
    client = open_client(db)
    experiment_id = get_experiment_id(client, EXPERIMENT, tmp_path / "artifacts")
    a = client.create_run(experiment_id, tags={"sweep": "s", "method": "kd"}).info.run_id
    b = client.create_run(experiment_id, tags={"sweep": "s", "method": "ckd"}).info.run_id
    assert find_run(client, experiment_id, {"sweep": "s", "method": "kd"}) == a
    assert find_run(client, experiment_id, {"sweep": "s", "method": "ckd"}) == b
    assert find_run(client, experiment_id, {"sweep": "t", "method": "kd"}) is None


def test_numeric_metrics_keep_finite_numbers_only():
    result = {
        "val_score": 0.5,
        "epoch": 2,
        "time_total_s": 3.0,  # kept: a time
        "training_iteration": 2,  # Ray's bookkeeping
        "pid": 123,
        "done": True,  # a bool is no metric
        "train_loss": math.nan,
        "T": math.inf,
        "trial_id": "abc",
    }
    assert numeric_metrics(result) == {"val_score": 0.5, "epoch": 2.0, "time_total_s": 3.0}


def test_trial_error_is_the_last_line_of_the_error_file(tmp_path):
    path = tmp_path / "error.txt"
    path.write_text("Traceback (most recent call last):\n  ...\nValueError: boom\n\n")
    assert trial_error(FakeTrial("a", "ERROR", {}, error_file=str(path))) == "ValueError: boom"
    assert trial_error(FakeTrial("b", "ERROR", {})) == "trial failed (no error file)"


def test_one_run_per_trial_across_a_driver_restart(db, tmp_path):
    """Results go to the trial's run with the epoch as step; the callback of a restarted driver,
    restored from an experiment state saved before this trial started, finds the same run by
    its tags and finishes it. The run nests under the sweep's run and has its data as inputs."""
    client = open_client(db)
    experiment_id = get_experiment_id(client, EXPERIMENT, tmp_path / "artifacts")
    parent = sweep_run(client, experiment_id, "s", {"bench": "glue"}, "sweep glue/sst2 smoke")
    inputs = make_points_task().dataset_inputs(["train", "val"])
    trial = FakeTrial(
        "t1", "RUNNING", {}, config={"lr": 0.01, "seed": 3}, experiment_tag="3_lr=0.01"
    )

    def callback() -> MLflowTrialCallback:
        return MLflowTrialCallback(db, experiment_id, TAGS, 3, parent, inputs)

    tracker = callback()
    tracker.on_trial_start(0, [], trial)
    tracker.on_trial_result(0, [], trial, {"epoch": 1, "val_score": 0.4, "done": False})
    restarted = pickle.loads(pickle.dumps(callback()))
    trial.last_result = {"epoch": 3, "val_score": 0.6}
    restarted.on_trial_start(1, [], trial)
    restarted.on_trial_result(1, [], trial, trial.last_result)
    restarted.on_trial_complete(1, [], trial)

    (run,) = [r for r in runs_of(db) if r.info.run_id != parent]
    assert run.info.status == "FINISHED"
    assert run.data.tags["ray_trial_id"] == "t1" and run.data.tags["seed"] == "3"
    assert run.info.run_name == "kd-t03"  # readable, with Ray's trial number
    assert run.data.tags["mlflow.parentRunId"] == parent
    logged = {
        d.dataset.name: (d.dataset.digest, d.tags[0].value, json.loads(d.dataset.profile))
        for d in run.inputs.dataset_inputs
    }
    assert logged == {  # logged once, though the restarted driver saw the trial start again
        i.name: (i.digest, i.context, {"num_rows": i.size}) for i in inputs
    }
    assert set(logged) == {"synthetic/points/train", "synthetic/points/val"}
    assert run.data.tags["stopped_early"] == "false"  # all 3 epochs
    assert run.data.params == {"lr": "0.01", "seed": "3"}
    history = MlflowClient(db).get_metric_history(run.info.run_id, "val_score")
    assert [(m.step, m.value) for m in history] == [(1, 0.4), (3, 0.6)]


def test_trial_run_name_falls_back_to_the_trial_id():
    tagged = FakeTrial("ab12", "RUNNING", {}, experiment_tag="12_alpha=0.3")
    assert trial_run_name("kd", tagged) == "kd-t12"
    assert trial_run_name("kd", FakeTrial("ab12", "RUNNING", {})) == "kd-tab12"
    assert trial_run_name("kd", FakeTrial("ab12", "RUNNING", {}, experiment_tag="x_y")) == (
        "kd-tab12"
    )
    assert trial_run_name("ckd", FakeTrial("c", "RUNNING", {}, experiment_tag="4_t=2")) == (
        "ckd-t04"
    )


def test_sweep_run_is_found_again_and_marked_running(db, tmp_path):
    client = open_client(db)
    experiment_id = get_experiment_id(client, EXPERIMENT, tmp_path / "artifacts")
    first = sweep_run(client, experiment_id, "s", {"bench": "glue"}, "sweep glue/sst2 quick")
    client.set_terminated(first, status="KILLED")  # an interrupted sweep
    again = sweep_run(client, experiment_id, "s", {"bench": "glue"}, "ignored on reuse")
    run = client.get_run(again)
    assert again == first and run.info.status == "RUNNING"
    assert run.info.run_name == "sweep glue/sst2 quick"
    assert run.data.tags["role"] == "summary" and run.data.tags["bench"] == "glue"
    other = sweep_run(client, experiment_id, "t", {}, "sweep glue/sst2 quick")
    assert other != first


def test_failed_trial_run_names_the_error(db, tmp_path):
    experiment_id = get_experiment_id(open_client(db), EXPERIMENT, tmp_path / "artifacts")
    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback ...\nRuntimeError: out of memory\n")
    trial = FakeTrial("t2", "RUNNING", {"epoch": 1}, error_file=str(error_file), num_failures=1)
    tracker = MLflowTrialCallback(db, experiment_id, TAGS, max_epochs=3)
    tracker.on_trial_start(0, [], trial)
    tracker.on_trial_recover(0, [], trial)
    tracker.on_trial_error(0, [], trial)
    (run,) = runs_of(db)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == "RuntimeError: out of memory"
    assert run.data.tags["retries"] == "1"


def test_reconcile_sets_each_run_from_the_final_trial_state(db, tmp_path):
    """Ended trials whose callbacks were missed (driver killed) get the right final status."""
    client = MlflowClient(db)
    experiment_id = get_experiment_id(client, EXPERIMENT, tmp_path / "artifacts")
    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback ...\nRuntimeError: boom at epoch 2\n")
    done = {"epoch": 1, "best_val_score": 0.5, "val_score": 0.5, "train_loss": 0.7}
    trials = {
        "finished": FakeTrial("a1", "TERMINATED", done),
        "errored": FakeTrial("a2", "ERROR", {"epoch": 1}, error_file=str(error_file)),
        "unseen": FakeTrial("a3", "TERMINATED", done),  # ended with no run at all
        "interrupted": FakeTrial("a4", "PENDING", {"epoch": 1}),  # saved unfinished
        "never started": FakeTrial("a5", "PENDING", {}),
    }
    tracker = MLflowTrialCallback(db, experiment_id, TAGS, max_epochs=2)
    for name in ("finished", "errored", "interrupted"):
        tracker.on_trial_start(0, [], trials[name])  # a run left RUNNING by a killed driver
    tracker.reconcile(list(trials.values()))

    runs = {r.data.tags["ray_trial_id"]: r for r in runs_of(db)}
    assert set(runs) == {"a1", "a2", "a3", "a4"}
    assert runs["a1"].info.status == runs["a3"].info.status == "FINISHED"
    assert runs["a1"].data.tags["stopped_early"] == "true"  # 1 of 2 epochs
    assert runs["a3"].data.metrics["best_val_score"] == 0.5 and runs["a3"].data.params
    assert runs["a2"].info.status == "FAILED"
    assert runs["a2"].data.tags["failure_reason"] == "RuntimeError: boom at epoch 2"
    assert runs["a4"].info.status == "KILLED"
    for run in runs.values():
        assert {t: run.data.tags[t] for t in TAGS} == TAGS and run.data.tags["role"] == "trial"

    tracker.reconcile(list(trials.values()))  # idempotent: no new runs
    assert len(runs_of(db)) == 4
    # a method restarted from scratch drops the runs of its earlier, unrestorable attempt
    assert discard_trial_runs(client, experiment_id, "s", "kd") == 4
    assert runs_of(db) == []
