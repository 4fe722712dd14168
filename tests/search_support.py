"""Shared helpers of the search tests (test_search*.py, test_reliability.py): running the CLI in
a subprocess, reading back MLflow runs and Ray trial directories, and Ray/MLflow processes of a
test's own. The fixtures here (``*_fixture``, named without the suffix) are imported by the test
modules that use them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ckd_tune.search.cli import build_parser
from ckd_tune.search.plan import Plan, make_plan

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
BIN = Path(sys.executable).parent
ALL_METHODS = ("ckd", "kd", "annealing_kd", "none")
EXPERIMENT = "ckd_tune/glue/sst2"
SWEEP_TIMEOUT = 420

# ------------------------------------------------------------------------------------------
# Helpers


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of CLI subprocesses: repo and tests importable, no inherited Ray address."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    paths = [str(REPO), str(TESTS), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env


def sweep_args(out: Path, db: str, cache_dir: Path, data: Path, *extra: str) -> list[str]:
    return [
        "--bench",
        "glue",
        "--profile",
        "smoke",
        "--data-dir",
        str(data),
        "--no-report",
        "--output",
        str(out),
        "--cache-dir",
        str(cache_dir),
        "--tracking-uri",
        db,
        *extra,
    ]


def cli(args: list[str], cwd: Path, timeout: float = SWEEP_TIMEOUT, **env: str):
    """Run ``python -m ckd_tune.search ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "ckd_tune.search", *args],
        cwd=cwd,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spawn(argv: list[str], cwd: Path, log: Path, **env: str) -> subprocess.Popen:
    """``python ARGV`` in a session of its own (so killing its group kills it and its Ray, and
    nothing else), stdout / stderr to ``log.out`` / ``log.err``."""
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
        return subprocess.Popen(  # the child keeps its own copies of the files
            [sys.executable, *argv],
            cwd=cwd,
            env=cli_env(**env),
            stdout=out,
            stderr=err,
            text=True,
            start_new_session=True,
        )


def start_cli(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """Start the CLI in its own session (so a signal can go to it alone), output to files."""
    return spawn(["-m", "ckd_tune.search", *args], cwd, log)


def wait_for(predicate, proc: subprocess.Popen, timeout: float, what: str) -> None:
    """Poll ``predicate`` until true; fail if ``proc`` ended first or on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended (status {proc.returncode}) before {what}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL what is left of a CLI started by :func:`start_cli` (its own process group).

    A SIGKILLed driver leaves Ray's per-node agents running for a minute or two; they are in
    the driver's process group, as is everything else the test started through it.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def reported(method_dir: Path) -> bool:
    """Whether some trial of a method's Ray experiment has reported a result."""
    return any(p.stat().st_size > 0 for p in method_dir.glob("*/result.json"))


def mlflow_runs(db: str, sweep: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(db)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None, f"no MLflow experiment {EXPERIMENT} at {db}"
    return client.search_runs(
        [experiment.experiment_id], f"tags.sweep = '{sweep}'", max_results=1000
    )


def trial_runs(runs: list, method: str | None = None) -> list:
    return [
        r
        for r in runs
        if r.data.tags.get("role") == "trial"
        and (method is None or r.data.tags["method"] == method)
    ]


def ray_trial_ids(method_dir: Path) -> list[str]:
    """Trial ids of a method's Ray experiment, from its trial directories."""
    return sorted(p.name.split("_")[2] for p in method_dir.glob("run_trial_*") if p.is_dir())


def check_one_run_per_trial(
    runs: list, sweep_dir: Path, methods: tuple[str, ...], n: int | dict[str, int]
):
    """Exactly ``n`` (or ``n[method]``) trial runs per method, one per Ray trial, none RUNNING."""
    for method in methods:
        want = n[method] if isinstance(n, dict) else n
        ids = [r.data.tags["ray_trial_id"] for r in trial_runs(runs, method)]
        assert len(ids) == want, f"{method}: {len(ids)} trial runs, expected {want}"
        assert sorted(ids) == ray_trial_ids(sweep_dir / "ray" / method), method
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture(autouse=True, name="no_ray_left")
def no_ray_left_fixture():
    """Each test leaves Ray shut down in this process."""
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()
        pytest.fail("the test left Ray initialised in the test process")


@pytest.fixture(scope="session", name="cache_dir")
def cache_dir_fixture(tmp_path_factory) -> Path:
    """Teacher and logit cache shared by every sweep of the session (the teacher trains once)."""
    return tmp_path_factory.mktemp("ckd_cache")


def plan_for(tmp_path: Path, glue_dir: Path, *extra: str) -> Plan:
    """The validated plan of a smoke sweep of the staged GLUE data plus ``extra`` flags."""
    argv = sweep_args(tmp_path / "runs", f"sqlite:///{tmp_path / 'm.db'}", tmp_path, glue_dir)
    return make_plan(build_parser().parse_args([*argv, *extra]))


def ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"status {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"


def stop_session(sid: int, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, every process of session ``sid`` (one this test started)."""

    def members() -> list[int]:  # living ones: a zombie waits for its parent to reap it
        ps = subprocess.run(["ps", "-eo", "pid=,sid=,stat="], capture_output=True, text=True)
        rows = (line.split() for line in ps.stdout.splitlines())
        return [int(r[0]) for r in rows if int(r[1]) == sid and not r[2].startswith("Z")]

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in members():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while members() and time.monotonic() < deadline:
            time.sleep(0.3)
