"""Cluster-scale sweeps proven on one machine, the way Ray's own tests prove multi-node
behaviour: ``ray.cluster_utils.Cluster`` starts a head and worker nodes on this host (each its
own raylet with its own resources and object store) and the real CLI joins them with
``--address``, from a working directory of its own.

One cluster serves the module: a head and a worker node of 1 CPU each, started in a directory
that is not the driver's, with a private short ``RAY_TMPDIR`` (this Ray and no other).

- Packed GPUs: a node with one *logical* GPU (``num_gpus=1`` on a CPU host) joins; four trials of
  ``--gpus-per-trial 0.25`` run on it at once (the default concurrency counts GPUs), each
  training on CPU with one log line that says why.
- A lost node: two trials of 1 CPU, one on each node; once the worker node's trial has saved its
  first checkpoint the worker node is removed (its raylet and workers killed). That trial resumes
  from its checkpoint on the head, read from the shared ``--storage-path``; every trial is one
  FINISHED MLflow run on an ``mlflow server --serve-artifacts``; nothing is written where the
  driver runs but what its flags name; the bench reached the worker through the object store
  (the driver's data and cache paths are relative to its own working directory).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import fault_injection  # noqa: E402  (needs TESTS on sys.path)
from mlflow_server import mlflow_server  # noqa: E402
from search_support import (  # noqa: E402
    SWEEP_TIMEOUT,
    cache_dir_fixture,  # noqa: F401  (the cache_dir fixture)
    check_one_run_per_trial,
    cli,
    cli_env,
    kill_group,
    mlflow_runs,
    no_ray_left_fixture,  # noqa: F401  (an autouse fixture)
    ok,
    spawn,
    sweep_args,
    trial_runs,
    wait_for,
)

pytestmark = pytest.mark.slow

LOGICAL_GPU = "but CUDA is not available in this worker; training on CPU"


@dataclass
class LocalCluster:
    """A multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``)."""

    cluster: Any
    nodes_cwd: Path  # the working directory every node (and so every Ray worker) starts in
    worker: Any = None  # the worker node (ray._private.node.Node)

    @property
    def address(self) -> str:
        return self.cluster.address

    def add_node(self, **node_args: Any) -> Any:
        """A node of this cluster (the first: the head), started in :attr:`nodes_cwd`."""
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(self.nodes_cwd)
            return self.cluster.add_node(**node_args)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory) -> LocalCluster:
    """A head and a worker node of 1 CPU each.

    The nodes' processes inherit this process's environment, so it gets the CLI's PYTHONPATH
    (Ray workers import ``fault_injection`` by name) and a private RAY_TMPDIR (short: Ray's
    socket paths) for the module's duration. The head notices a lost node within seconds (GCS
    health checks every 0.5 s; Ray's defaults take 15 s or more).
    """
    from ray.cluster_utils import Cluster

    nodes_cwd = tmp_path_factory.mktemp("nodes") / "cwd"
    nodes_cwd.mkdir()
    ray_tmp = Path(tempfile.mkdtemp(prefix="ckc", dir="/tmp"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_TMPDIR", str(ray_tmp))
        mp.setenv("PYTHONPATH", cli_env()["PYTHONPATH"])
        mp.delenv("RAY_ADDRESS", raising=False)
        local = LocalCluster(Cluster(), nodes_cwd)
        try:
            local.add_node(
                num_cpus=1,
                include_dashboard=False,
                _system_config={
                    "health_check_initial_delay_ms": 0,
                    "health_check_period_ms": 500,
                    "health_check_failure_threshold": 3,
                },
            )
            local.worker = local.add_node(num_cpus=1)
            yield local
        finally:
            local.cluster.shutdown()
            shutil.rmtree(ray_tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# Packed GPUs


def test_four_trials_share_one_logical_gpu_at_once(ray_cluster, tmp_path, cache_dir, glue_dir):
    """``--gpus-per-trial 0.25`` on a node with one GPU: 4 trials at once, all given GPU 0; on
    a logical GPU each trains on CPU and says so (``--verbose`` shows the workers' logs)."""
    gpu_node = ray_cluster.add_node(num_cpus=2, num_gpus=1)
    try:
        db = f"sqlite:///{tmp_path / 'mlflow.db'}"
        args = sweep_args(tmp_path / "runs", db, cache_dir, glue_dir)
        args += ["--methods", "kd", "--num-samples", "4", "--max-epochs", "1", "--sweep", "gpu"]
        args += ["--address", ray_cluster.address, "--verbose"]
        args += ["--gpus-per-trial", "0.25", "--cpus-per-trial", "0.5"]  # no --max-concurrent
        proc = cli(args, cwd=tmp_path, RAY_DEDUP_LOGS="0")  # every worker's line, not one
    finally:
        ray_cluster.cluster.remove_node(gpu_node)
    ok(proc)
    runs = trial_runs(mlflow_runs(db, "gpu"))
    assert [r.info.status for r in runs] == ["FINISHED"] * 4
    # Ray started all four before any ended: packed, not queued
    assert max(r.info.start_time for r in runs) < min(r.info.end_time for r in runs)
    fallbacks = [line for line in proc.stderr.splitlines() if LOGICAL_GPU in line]
    assert len(fallbacks) == 4, proc.stderr[-6000:]
    assert all("Ray assigned GPU ids [0]" in line for line in fallbacks), fallbacks


# ------------------------------------------------------------------------------------------
# A node lost mid-sweep


@dataclass
class LostNodeSweep:
    status: int
    stdout: str
    stderr: str
    driver_cwd: Path
    storage: Path  # --storage-path
    server_root: Path  # the MLflow server's directory (its database and served artifacts)
    runs: list
    head: str  # node ids
    worker: str
    placements: list  # fault_injection.Placement of every trial attempt

    def attempts(self, trial_id: str) -> list:
        return [p for p in self.placements if p.trial_id == trial_id]


@pytest.fixture(scope="module")
def lost_node_sweep(ray_cluster, tmp_path_factory, cache_dir, glue_dir) -> LostNodeSweep:
    """kd, 2 trials of 4 epochs, 1 CPU each on the 2 nodes; the worker node removed once Tune
    holds a checkpoint of its trial. The driver runs in a directory of its own with its --data-dir,
    --cache-dir and --output relative to it, the checkpoints go to a directory every node
    sees (--storage-path), the runs to an MLflow server that serves artifacts."""
    root = tmp_path_factory.mktemp("lost_node")
    driver_cwd, state, storage = root / "driver", root / "state", root / "shared" / "ray"
    driver_cwd.mkdir()
    state.mkdir()
    head, worker = ray_cluster.cluster.head_node.node_id, ray_cluster.worker.node_id

    def relative(path: Path) -> Path:
        return Path(os.path.relpath(path, driver_cwd))

    with mlflow_server(root / "mlflow") as uri:
        args = sweep_args(Path("runs"), uri, relative(cache_dir), relative(glue_dir))
        args += ["--methods", "kd", "--num-samples", "2", "--max-epochs", "4", "--sweep", "lost"]
        args += ["--address", ray_cluster.address, "--storage-path", str(storage)]
        proc = spawn(["-m", "fault_injection", str(state), "--", *args], driver_cwd, root / "d")

        def worker_trial_checkpointed() -> bool:
            """The worker's trial has reported its second epoch to the driver: Tune then holds
            its first checkpoint (it asks for a result's checkpoint before the next result)."""
            on_worker = [
                p.trial_id for p in fault_injection.placements(state) if p.node_id == worker
            ]
            results = list(storage.glob(f"kd/*{on_worker[0]}*/result.json")) if on_worker else []
            return bool(results) and len(results[0].read_text().splitlines()) >= 2

        try:
            wait_for(worker_trial_checkpointed, proc, SWEEP_TIMEOUT, "a worker trial's 2nd epoch")
            ray_cluster.cluster.remove_node(ray_cluster.worker, allow_graceful=False)
            status = proc.wait(timeout=SWEEP_TIMEOUT)
        finally:
            kill_group(proc)
        runs = mlflow_runs(uri, "lost")
    return LostNodeSweep(
        status=status,
        stdout=(root / "d.out").read_text(),
        stderr=(root / "d.err").read_text(),
        driver_cwd=driver_cwd,
        storage=storage,
        server_root=root / "mlflow",
        runs=runs,
        head=head,
        worker=worker,
        placements=fault_injection.placements(state),
    )


def test_a_sweep_places_trials_on_two_nodes(lost_node_sweep):
    sweep = lost_node_sweep
    assert sweep.status == 0, sweep.stderr[-4000:]
    first = {}
    for p in sweep.placements:
        first.setdefault(p.trial_id, p)
    assert len(first) == 2
    assert {p.node_id for p in first.values()} == {sweep.head, sweep.worker}
    assert all(p.epoch == 0 for p in first.values())


def test_a_trial_of_a_lost_node_resumes_from_its_checkpoint_on_another(lost_node_sweep):
    sweep = lost_node_sweep
    lost = next(p.trial_id for p in sweep.placements if p.node_id == sweep.worker)
    kept = next(p.trial_id for p in sweep.placements if p.trial_id != lost)
    assert [p.node_id for p in sweep.attempts(kept)] == [sweep.head]
    first, retry = sweep.attempts(lost)  # exactly one retry
    assert (first.node_id, first.epoch) == (sweep.worker, 0)
    assert retry.node_id == sweep.head and retry.epoch >= 1, retry  # not from scratch
    # every trial exactly once: one FINISHED run each, the retry in the lost trial's own run
    check_one_run_per_trial(sweep.runs, sweep.storage.parent, ("kd",), 2)
    runs = {r.data.tags["ray_trial_id"]: r for r in trial_runs(sweep.runs)}
    assert {r.info.status for r in runs.values()} == {"FINISHED"}
    assert runs[lost].data.tags["retries"] == "1"
    assert "retries" not in runs[kept].data.tags
    assert all(r.data.metrics["epoch"] == 4 for r in runs.values())


def test_the_sweep_after_a_lost_node_completes(lost_node_sweep):
    sweep = lost_node_sweep
    summary = json.loads((sweep.driver_cwd / "runs" / "lost" / "summary.json").read_text())
    assert [(s["method"], s["status"], s["trials"], s["errored"]) for s in summary] == [
        ("kd", "ok", 2, 0)
    ]
    assert [r.info.status for r in sweep.runs if r.data.tags.get("role") == "summary"] == [
        "FINISHED"
    ]
    assert "best config" in sweep.stdout


def test_trials_do_not_depend_on_the_drivers_working_directory(lost_node_sweep):
    """Checkpoints in --storage-path only; the driver's directory holds only its --output
    (relative to it: the sweep's metadata and summary); MLflow's artifacts went through the
    server to its artifact store, none to a path of the driver."""
    sweep = lost_node_sweep
    assert sorted(p.name for p in sweep.driver_cwd.iterdir()) == ["runs"]
    assert not (sweep.driver_cwd / "runs" / "lost" / "ray").exists()  # not the default storage
    assert len(list(sweep.storage.glob("kd/*/checkpoint_*"))) >= 2
    summary_run = next(r for r in sweep.runs if r.data.tags.get("role") == "summary")
    assert summary_run.info.artifact_uri.startswith("mlflow-artifacts:"), summary_run.info
    served = list((sweep.server_root / "mlartifacts").rglob("summary.json"))
    assert len(served) == 1 and summary_run.info.run_id in served[0].parts, served
