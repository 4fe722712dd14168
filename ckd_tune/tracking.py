"""MLflow tracking: one parent run per sweep, and under it one run per Ray Tune trial (also
across resumes) and per re-run, each with the datasets it used as inputs.

Ray's stock ``MLflowLoggerCallback`` opens a second run for a resumed trial and leaves the
first one RUNNING; :class:`MLflowTrialCallback` instead finds a trial's run by its tags
(``sweep``, ``ray_trial_id``) and keeps logging into it. The tracking URI helpers, which need
no MLflow, are in :mod:`ckd_tune.tracking_uri`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from ray.tune import Callback
from ray.tune.experiment import Trial

if TYPE_CHECKING:
    from ckd_tune import data

log = logging.getLogger(__name__)

ROLE_TRIAL, ROLE_RERUN, ROLE_SUMMARY = "trial", "rerun", "summary"
ROLE_STUDY = "study"  # a multi-task study's run, the parent of its tasks' sweep runs
_RAY_KEYS = {"time_total_s", "time_this_iter_s"}


def open_client(uri: str) -> MlflowClient:
    """An ``MlflowClient`` whose store is ready; safe when several sweeps open one new database.

    MLflow creates a new sqlite database's tables on first use without a lock, so two processes
    opening the same fresh ``mlflow.db`` at once crash one of them ("table ... already exists").
    Here the first use happens under an inter-process lock named after the database file.
    """
    if not uri.startswith("sqlite:"):
        return MlflowClient(uri)
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    lock = Path(tempfile.gettempdir()) / f"ckd_tune-mlflow-{digest}.lock"
    with FileLock(str(lock)):
        return MlflowClient(uri)  # the client opens its store (creating the tables) right away


EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
"""Tags of the experiments the suite creates: MLflow 3's kind for model training (not GenAI)."""


def get_experiment_id(client: MlflowClient, name: str, artifact_root: Path | None = None) -> str:
    """The id of experiment ``name``, created (with artifacts under ``artifact_root`` and
    :data:`EXPERIMENT_TAGS`) if new."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = artifact_root.resolve().as_uri() if artifact_root else None
    try:
        return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
    except Exception:  # another sweep created it first
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def find_run(client: MlflowClient, experiment_id: str, tags: dict[str, str]) -> str | None:
    """The id of the run whose tags include ``tags``, or None."""
    query = " and ".join(f"tags.{k} = '{v}'" for k, v in tags.items())
    runs = client.search_runs([experiment_id], filter_string=query, max_results=1)
    return runs[0].info.run_id if runs else None


def sweep_run(
    client: MlflowClient,
    experiment_id: str,
    sweep: str,
    tags: Mapping[str, str],
    name: str,
    *,
    role: str = ROLE_SUMMARY,
    parent_run_id: str | None = None,
) -> str:
    """The sweep's parent run (role ``summary``), created with ``tags`` and ``name`` if new and
    marked RUNNING again when a resumed sweep finds it; every trial and re-run nests under it.

    A multi-task study's run is one too (role ``study``), and its tasks' sweep runs nest under
    it (``parent_run_id``)."""
    key = {"sweep": sweep, "role": role}
    run_id = find_run(client, experiment_id, key)
    if run_id is None:
        all_tags = {**tags, **key, MLFLOW_RUN_NAME: name}
        if parent_run_id is not None:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
        return client.create_run(experiment_id, tags=all_tags).info.run_id
    if client.get_run(run_id).info.status != "RUNNING":
        client.update_run(run_id, status="RUNNING")
    return run_id


def log_datasets(client: MlflowClient, run_id: str, inputs: Sequence[data.DatasetInput]) -> None:
    """The splits a run used as its MLflow dataset inputs (name, digest, source, context, size)."""
    datasets = []
    for d in inputs:
        if d.source.startswith("hf://"):
            source_type = "hugging_face"
        else:
            source_type = "local" if d.source else "code"
        entity = Dataset(
            name=d.name,
            digest=d.digest,
            source_type=source_type,
            source=json.dumps({"uri": d.source}),
            profile=json.dumps({"num_rows": d.size}),
        )
        datasets.append(DatasetInput(entity, tags=[InputTag(MLFLOW_DATASET_CONTEXT, d.context)]))
    if datasets:
        client.log_inputs(run_id, datasets=datasets)


def numeric_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The finite numeric entries of a result (Ray's bookkeeping keys other than times dropped)."""
    skip = {
        "training_iteration",
        "timestamp",
        "pid",
        "iterations_since_restore",
        "time_since_restore",
        "timesteps_total",
        "episodes_total",
        "timesteps_since_restore",
    }
    return {
        k: float(v)
        for k, v in result.items()
        if k not in skip
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
    }


class MLflowTrialCallback(Callback):
    """Logs each trial of one method's Tuner to exactly one MLflow run, nested under the sweep's
    run (``parent_run_id``) with the trial's training and validation data as inputs."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        tags: dict[str, str],
        max_epochs: int,
        parent_run_id: str | None = None,
        inputs: Sequence[data.DatasetInput] = (),
    ) -> None:
        self.max_epochs = max_epochs
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.tags = tags  # method, bench, task, sweep, searcher
        self.parent_run_id = parent_run_id
        self.inputs = list(inputs)
        self._runs: dict[str, str] = {}
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def __getstate__(self) -> dict[str, Any]:  # Ray pickles callbacks into its experiment state
        return {**self.__dict__, "_client": None}

    def _key(self, trial: Trial) -> dict[str, str]:
        return {
            "sweep": self.tags["sweep"],
            "method": self.tags["method"],
            "ray_trial_id": trial.trial_id,
        }

    def _create_run(self, trial: Trial) -> str:
        seed = str(trial.config.get("seed", self.tags.get("seed", "")))
        tags = {
            **self.tags,
            **self._key(trial),
            "role": ROLE_TRIAL,
            "seed": seed,
            MLFLOW_RUN_NAME: trial_run_name(self.tags["method"], trial),
        }
        if self.parent_run_id:
            tags[MLFLOW_PARENT_RUN_ID] = self.parent_run_id
        run_id = self.client.create_run(self.experiment_id, tags=tags).info.run_id
        params = [Param(k, str(v)) for k, v in sorted(trial.config.items())]
        self.client.log_batch(run_id, params=params)
        log_datasets(self.client, run_id, self.inputs)
        return run_id

    def _run_id(self, trial: Trial) -> str:
        if trial.trial_id in self._runs:
            return self._runs[trial.trial_id]
        run_id = find_run(self.client, self.experiment_id, self._key(trial))
        if run_id is None:
            run_id = self._create_run(trial)
        else:
            self.client.update_run(run_id, status="RUNNING")
        self._runs[trial.trial_id] = run_id
        return run_id

    def reconcile(self, trials: list[Trial]) -> None:
        """Make each trial's run match its final Ray status, creating missing runs.

        After the driver was killed, Ray restores finished trials without calling the
        callbacks again, so their runs may still say RUNNING (or be missing). Ended trials
        become FINISHED / FAILED (with ``failure_reason``); trials left unfinished by an
        interruption become KILLED until a resume picks them up again.
        """
        query = (
            f"tags.sweep = '{self.tags['sweep']}' and tags.method = '{self.tags['method']}' "
            f"and tags.role = '{ROLE_TRIAL}'"
        )
        runs = {
            r.data.tags.get("ray_trial_id"): r
            for r in self.client.search_runs([self.experiment_id], query, max_results=10000)
        }
        for trial in trials:
            ended = trial.status in (Trial.TERMINATED, Trial.ERROR)
            run = runs.get(trial.trial_id)
            if run is None:
                if not ended:
                    continue  # never started: nothing to record yet
                run_id = self._create_run(trial)
                metrics = numeric_metrics(trial.last_result or {})
                if metrics:
                    step = int(trial.last_result.get("epoch", 0))
                    now = int(time.time() * 1000)
                    self.client.log_batch(
                        run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()]
                    )
                status, tags = "RUNNING", {}
            else:
                run_id, status, tags = run.info.run_id, run.info.status, run.data.tags
            if trial.status == Trial.TERMINATED:
                if "stopped_early" not in tags:
                    stopped = (trial.last_result or {}).get("epoch", 0) < self.max_epochs
                    self.client.set_tag(run_id, "stopped_early", str(bool(stopped)).lower())
                if status != "FINISHED":
                    self.client.set_terminated(run_id, status="FINISHED")
            elif trial.status == Trial.ERROR:
                if "failure_reason" not in tags:
                    self.client.set_tag(run_id, "failure_reason", trial_error(trial)[:5000])
                if status != "FAILED":
                    self.client.set_terminated(run_id, status="FAILED")
            elif status == "RUNNING":
                self.client.set_terminated(run_id, status="KILLED")
            self._runs.pop(trial.trial_id, None)

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._run_id(trial)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in numeric_metrics(result).items()]
        self.client.log_batch(self._run_id(trial), metrics=metrics)

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        run_id = self._run_id(trial)
        stopped = trial.last_result.get("epoch", 0) < self.max_epochs
        self.client.log_batch(run_id, tags=[RunTag("stopped_early", str(bool(stopped)).lower())])
        self.client.set_terminated(run_id, status="FINISHED")

    def on_trial_recover(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """A crashed trial that Ray retries from its checkpoint: same run, crash count tagged."""
        tags = [RunTag("retries", str(trial.num_failures))]
        tags.append(RunTag("last_crash", trial_error(trial)[:5000]))
        self.client.log_batch(self._run_id(trial), tags=tags)

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        run_id = self._run_id(trial)
        reason = trial_error(trial)
        self.client.log_batch(run_id, tags=[RunTag("failure_reason", reason[:5000])])
        self.client.set_terminated(run_id, status="FAILED")


def trial_run_name(method: str, trial: Trial) -> str:
    """A name a person reads in the runs table: ``"ckd-t03"`` (Ray's trial number within the
    method's search, from its experiment tag ``"3_t_max=..."``), else ``"ckd-t<trial id>"``."""
    number = str(getattr(trial, "experiment_tag", "") or "").split("_", 1)[0]
    return f"{method}-t{int(number):02d}" if number.isdigit() else f"{method}-t{trial.trial_id}"


def discard_trial_runs(client: MlflowClient, experiment_id: str, sweep: str, method: str) -> int:
    """Delete (restorably) the trial runs of ``sweep``/``method``; returns how many.

    A method's search that starts afresh (its earlier attempt was killed before Ray saved any
    experiment state) gets new trial ids, so the earlier attempt's runs belong to no trial.
    """
    query = f"tags.sweep = '{sweep}' and tags.method = '{method}' and tags.role = '{ROLE_TRIAL}'"
    runs = client.search_runs([experiment_id], query, max_results=10000)
    for run in runs:
        client.delete_run(run.info.run_id)
    if runs:
        log.warning("%s: discarded %d runs of an interrupted earlier attempt", method, len(runs))
    return len(runs)


def trial_error(trial: Trial) -> str:
    """The last line of a failed trial's error (the exception and its message)."""
    path = trial.error_file
    if path and Path(path).is_file():
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
        if lines:
            return lines[-1].strip()
    return "trial failed (no error file)"
