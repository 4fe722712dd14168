"""The search CLI end to end: smoke sweep, MLflow/Ray records, failures, interruption and
resume, and the scale-out paths against a real Ray cluster and MLflow server.

One session-scoped smoke sweep (all four methods, 2 trials each) is shared by the record and
output tests; the other sweeps use method subsets and one epoch to stay fast. The parts have
fast tests of their own: test_search_cli.py (flags, bad input), test_search_tuner.py,
test_search_summary.py, test_search_table.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import fault_injection  # noqa: E402  (needs TESTS on sys.path)
from mlflow_server import free_port, mlflow_server  # noqa: E402
from search_support import (  # noqa: E402
    ALL_METHODS,
    BIN,
    REPO,
    SWEEP_TIMEOUT,
    cache_dir_fixture,  # noqa: F401  (the cache_dir fixture)
    check_one_run_per_trial,
    cli,
    cli_env,
    kill_group,
    lines,
    mlflow_runs,
    no_ray_left_fixture,  # noqa: F401  (an autouse fixture)
    ok,
    ray_trial_ids,
    reported,
    start_cli,
    stop_session,
    sweep_args,
    trial_runs,
    wait_for,
)

from ckd_tune.search.cli import INTERRUPTED, main  # noqa: E402

TRIAL_TAGS = ("method", "bench", "task", "sweep", "searcher", "seed", "role", "ray_trial_id")
CORE_METRICS = {"val_score", "best_val_score", "train_loss", "epoch", "best_epoch", "val_accuracy"}
SCHEDULE_METRICS = {"T", "phi", "psi", "margin"}  # logged by the methods that have schedules
# smoke budget: 2 trials per method with a space; none searches nothing, so it runs once
SMOKE_TRIALS = {"ckd": 2, "kd": 2, "annealing_kd": 2, "none": 1}


@dataclass
class Sweep:
    proc: subprocess.CompletedProcess
    out: Path
    db: str
    name: str
    seconds: float

    @property
    def dir(self) -> Path:
        return self.out / self.name


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory, cache_dir, glue_dir) -> Sweep:
    """The smoke profile over all four methods, 2 trials each (the issue's acceptance run)."""
    tmp = tmp_path_factory.mktemp("smoke")
    db = f"sqlite:///{tmp / 'mlflow.db'}"
    t0 = time.monotonic()
    proc = cli(sweep_args(tmp / "runs", db, cache_dir, glue_dir, "--sweep", "smoke"), cwd=tmp)
    return Sweep(proc, tmp / "runs", db, "smoke", time.monotonic() - t0)


# ------------------------------------------------------------------------------------------
# The smoke sweep


@pytest.mark.slow
def test_smoke_sweep_records_one_mlflow_run_per_trial(smoke_sweep):
    ok(smoke_sweep.proc)
    runs = mlflow_runs(smoke_sweep.db, smoke_sweep.name)
    trials = trial_runs(runs)
    assert Counter(r.data.tags["method"] for r in trials) == SMOKE_TRIALS
    for run in trials:
        tags = run.data.tags
        missing = [t for t in TRIAL_TAGS if not tags.get(t)]
        assert not missing, f"run {run.info.run_id} lacks tags {missing}"
        assert (tags["bench"], tags["task"], tags["sweep"]) == ("glue", "sst2", "smoke")
        assert (tags["searcher"], tags["seed"], tags["role"]) == ("tpe", "0", "trial")
        assert run.info.status == "FINISHED"
        assert run.data.params, "the sampled config is logged as params"
    names = {m: {frozenset(r.data.metrics) for r in trial_runs(runs, m)} for m in ALL_METHODS}
    for method, sets in names.items():
        assert len(sets) == 1, f"{method}: trials logged different metrics {sets}"
        (metrics,) = sets
        assert metrics >= CORE_METRICS, f"{method} lacks {CORE_METRICS - metrics}"
    common = frozenset.intersection(*(s for sets in names.values() for s in sets))
    extra = frozenset.union(*(s for sets in names.values() for s in sets)) - common
    # beyond the shared metrics: schedules, and each method's loss terms (loss_<term>)
    terms = {m for m in extra if m.startswith("loss_")}
    assert extra - terms <= SCHEDULE_METRICS, f"method-specific metrics: {extra - terms}"
    summary = [r for r in runs if r.data.tags.get("role") == "summary"]
    assert len(summary) == 1
    assert summary[0].info.status == "FINISHED"
    assert {f"{m}.best_val_score" for m in ALL_METHODS} <= set(summary[0].data.metrics)
    check_one_run_per_trial(runs, smoke_sweep.dir, ALL_METHODS, SMOKE_TRIALS)


@pytest.mark.slow
def test_smoke_sweep_files(smoke_sweep):
    ok(smoke_sweep.proc)
    sweep_dir = smoke_sweep.dir
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    assert meta["methods"] == list(ALL_METHODS) and meta["num_samples"] == 2
    summaries = json.loads((sweep_dir / "summary.json").read_text())
    assert [s["method"] for s in summaries] == list(ALL_METHODS)
    for s in summaries:
        assert s["status"] == "ok" and s["errored"] == 0
        assert s["trials"] == SMOKE_TRIALS[s["method"]]
        assert 0.0 <= s["best_val_score"] <= 1.0 and s["best_config"]["method"] == s["method"]
        assert (sweep_dir / f"{s['method']}.summary.json").is_file()
        method_dir = sweep_dir / "ray" / s["method"]
        assert list(method_dir.glob("experiment_state-*.json")), method_dir
        assert len(ray_trial_ids(method_dir)) == SMOKE_TRIALS[s["method"]]


@pytest.mark.slow
def test_smoke_sweep_output_is_progress_and_a_table(smoke_sweep):
    ok(smoke_sweep.proc)
    out = smoke_sweep.proc.stdout.splitlines()
    assert len(out) < 200, f"{len(out)} stdout lines"
    for method in ALL_METHODS:
        progress = [line for line in out if f" {method}: " in line and "trials ended" in line]
        assert progress, f"no progress line for {method}"
        n = SMOKE_TRIALS[method]
        # the method's last line counts every trial as ended, none failed
        assert f" {method}: {n}/{n} trials ended (0 failed)" in progress[-1], progress
    header = next(i for i, line in enumerate(out) if line.startswith("method "))
    rows = [line.split()[0] for line in out[header + 1 :] if line.strip()][: len(ALL_METHODS)]
    assert rows == list(ALL_METHODS)
    for line in out[header + 1 : header + 1 + len(ALL_METHODS)]:
        assert "FAILED" not in line and f"{SMOKE_TRIALS[line.split()[0]]} (0)" in line


# ------------------------------------------------------------------------------------------
# Failing trials


@pytest.mark.slow
def test_failing_trials_do_not_stop_the_sweep(tmp_path, glue_dir, cache_dir, monkeypatch, capsys):
    """kd: an absurd fixed lr makes every loss NaN; none: one trial's student build raises.

    In-process run with the bench's student builder wrapped by :mod:`fault_injection`; the
    Ray workers import that module through PYTHONPATH.
    """
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from ckd_tune.benches import BENCHES

    spaces = tmp_path / "spaces"
    spaces.mkdir()
    (spaces / "kd.yaml").write_text(
        "method: kd\nfixed: {lr: 1.0e+8}\n"
        "params:\n  weight_decay: {type: loguniform, low: 1.0e-4, high: 0.1}\n"
    )
    # the wide space searches none's optimiser settings: two distinct trials, one made to crash
    shutil.copy(REPO / "search_spaces" / "wide" / "none.yaml", spaces / "none.yaml")
    state = tmp_path / "faults"
    state.mkdir()
    bench = BENCHES["glue"]

    def prepare(request):
        prepared = bench.prepare(request)
        prepared.build_student = fault_injection.FaultyStudent(
            prepared.build_student, str(state), methods=("none",)
        )
        return prepared

    monkeypatch.setitem(BENCHES, "glue", replace(bench, prepare=prepare))
    monkeypatch.setenv("PYTHONPATH", cli_env()["PYTHONPATH"])
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = sweep_args(tmp_path / "runs", db, cache_dir, glue_dir)
    argv += ["--methods", "kd,none", "--space-dir", str(spaces), "--max-epochs", "1"]
    argv += ["--sweep", "faults", "--max-concurrent", "2"]
    status = main(argv)
    out = capsys.readouterr().out
    assert status == 0, out

    runs = mlflow_runs(db, "faults")
    kd = trial_runs(runs, "kd")
    assert len(kd) == 2 and all(r.info.status == "FAILED" for r in kd)
    for run in kd:
        assert "NonFiniteLossError" in run.data.tags["failure_reason"], run.data.tags
    none = sorted(trial_runs(runs, "none"), key=lambda r: r.info.status)
    assert [r.info.status for r in none] == ["FAILED", "FINISHED"]
    assert "injected failure" in none[0].data.tags["failure_reason"]
    assert "failure_reason" not in none[1].data.tags
    assert not [r for r in runs if r.info.status == "RUNNING"]

    builds = Counter(fault_injection.calls(state))
    kd_ids = {r.data.tags["ray_trial_id"] for r in kd}
    assert {builds[("kd", t)] for t in kd_ids} == {1}, "a NaN trial was retried"
    crashed = none[0].data.tags["ray_trial_id"]
    assert builds[("none", crashed)] == 2, "a crashed trial gets --max-failures 1 retry"
    assert builds[("none", none[1].data.tags["ray_trial_id"])] == 1

    summaries = {
        s["method"]: s for s in json.loads((tmp_path / "runs/faults/summary.json").read_text())
    }
    assert summaries["kd"]["status"] == "failed" and summaries["kd"]["best_val_score"] is None
    assert summaries["kd"]["errored"] == 2
    assert summaries["none"]["status"] == "ok" and summaries["none"]["errored"] == 1
    table = {
        line.split()[0]: line for line in out.splitlines() if line.startswith(("kd ", "none "))
    }
    assert "FAILED" in table["kd"] and "FAILED" not in table["none"]
    assert "FAILED: " in out and "injected failure" in out  # progress lines name the error

    for method, states in (("kd", {"FAIL"}), ("none", {"FAIL", "COMPLETE"})):
        searcher = ConcurrencyLimiter(OptunaSearch(), 1)
        searcher.restore_from_dir(str(tmp_path / "runs/faults/ray" / method))
        told = {t.state.name for t in searcher.searcher._ot_study.trials}
        assert told == states, f"{method}: Optuna was told {told}"


# ------------------------------------------------------------------------------------------
# Interruption and resume


@pytest.mark.slow
def test_sigint_then_sigkill_then_resume(tmp_path, glue_dir, cache_dir):
    """Ctrl-C stops gracefully (status 130, one line); a killed driver resumes; no duplicates."""
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "runs"
    args = sweep_args(out, db, cache_dir, glue_dir, "--methods", "kd,none", "--sweep", "s")
    ray_dir = out / "s" / "ray"

    # 1. Ctrl-C (SIGINT to the whole process group, as a terminal sends it) during kd
    proc = start_cli(args, tmp_path, tmp_path / "run1")
    try:
        wait_for(lambda: reported(ray_dir / "kd"), proc, 240, "a kd trial reported")
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 130
    finally:
        kill_group(proc)
    stderr = (tmp_path / "run1.err").read_text()
    assert stderr.count(INTERRUPTED) == 1, stderr
    assert lines(stderr)[-1] == INTERRUPTED
    assert "best config" not in (tmp_path / "run1.out").read_text()  # no table of partial results
    assert not (out / "s" / "kd.summary.json").exists()
    runs = mlflow_runs(db, "s")
    assert not [r for r in runs if r.info.status == "RUNNING"]  # interrupted trials: KILLED

    # 2. --resume, then SIGKILL the driver once kd is done and a none trial reported
    proc = start_cli([*args, "--resume"], tmp_path, tmp_path / "run2")
    try:
        wait_for(lambda: reported(ray_dir / "none"), proc, 300, "a none trial reported")
        os.kill(proc.pid, signal.SIGKILL)  # the driver alone, as the OOM killer would
        proc.wait(timeout=30)
    finally:
        kill_group(proc)
    assert "kd: resuming the interrupted search" in (tmp_path / "run2.out").read_text()
    assert (out / "s" / "kd.summary.json").is_file()
    assert not (out / "s" / "none.summary.json").exists()
    kd_ids = sorted(r.data.tags["ray_trial_id"] for r in trial_runs(mlflow_runs(db, "s"), "kd"))

    # 3. --resume again: kd is reused, none's Ray experiment is restored
    proc3 = cli([*args, "--resume"], cwd=tmp_path)
    ok(proc3)
    assert "kd: search already finished in this sweep" in proc3.stdout
    assert "none: resuming the interrupted search" in proc3.stdout
    runs = mlflow_runs(db, "s")
    check_one_run_per_trial(runs, out / "s", ("kd", "none"), {"kd": 2, "none": 1})
    assert sorted(r.data.tags["ray_trial_id"] for r in trial_runs(runs, "kd")) == kd_ids
    assert all(r.info.status == "FINISHED" for r in trial_runs(runs))
    assert len([r for r in runs if r.data.tags.get("role") == "summary"]) == 1
    summaries = json.loads((out / "s" / "summary.json").read_text())
    assert [(s["method"], s["status"], s["trials"]) for s in summaries] == [
        ("kd", "ok", 2),
        ("none", "ok", 1),
    ]


# ------------------------------------------------------------------------------------------
# Scale-out: a real Ray cluster (`ray start`) and a real MLflow server


@pytest.mark.slow
def test_sweep_on_a_ray_cluster_logging_to_an_mlflow_server(tmp_path, glue_dir, cache_dir):
    """``--address auto`` joins a `ray start` head; ``--tracking-uri http://`` a live server.

    The head runs in the foreground (``--block``) in its own session with a private
    RAY_TMPDIR, so that the sweep finds this cluster and no other, and so that stopping it
    stops exactly the processes this test started (``ray stop`` would stop every Ray on the
    machine). The default --storage-path (a local directory) works: the head is this machine.
    """
    ray_tmp = Path(tempfile.mkdtemp(prefix="ckr", dir="/tmp"))  # short: Ray's socket paths
    env = cli_env(RAY_TMPDIR=str(ray_tmp))
    head_cmd = [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2"]
    head_cmd += ["--port", str(free_port()), "--disable-usage-stats", "--include-dashboard"]
    head_cmd += ["false"]
    with open(tmp_path / "head.log", "w") as log:
        head = subprocess.Popen(
            head_cmd, cwd=tmp_path, env=env, stdout=log, stderr=log, start_new_session=True
        )
    server = contextlib.ExitStack()
    try:
        uri = server.enter_context(mlflow_server(tmp_path / "mlflow"))
        address_file = ray_tmp / "ray" / "ray_current_cluster"
        deadline = time.monotonic() + 120
        while not address_file.is_file():
            assert head.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Ray head did not start"
            time.sleep(0.5)

        args = sweep_args(tmp_path / "runs", uri, cache_dir, glue_dir)
        args += ["--methods", "kd", "--num-samples", "2", "--max-epochs", "1", "--sweep", "c"]
        args += ["--address", "auto"]
        proc = subprocess.run(
            [sys.executable, "-m", "ckd_tune.search", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=SWEEP_TIMEOUT,
        )
        ok(proc)
        assert "View run" not in proc.stdout  # MLflow's per-run links would flood the output
        # the driver joined this cluster instead of starting a Ray of its own (which, with
        # the same RAY_TMPDIR, would have made a second session directory)
        sessions = [p for p in (ray_tmp / "ray").glob("session_*") if p.name != "session_latest"]
        assert len(sessions) == 1, sessions
        assert list(sessions[0].glob("logs/python-core-driver-*")), "no driver joined the head"
        runs = mlflow_runs(uri, "c")
        check_one_run_per_trial(runs, tmp_path / "runs" / "c", ("kd",), 2)
        assert all(r.info.status == "FINISHED" for r in trial_runs(runs))
        assert len([r for r in runs if r.data.tags.get("role") == "summary"]) == 1
    finally:
        stop_session(head.pid)
        head.wait(timeout=30)
        server.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)
