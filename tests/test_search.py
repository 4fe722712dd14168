"""The search CLI end to end: smoke sweep, MLflow/Ray records, failures, interruption and
resume, bad input, and the scale-out paths against a real Ray cluster and MLflow server.

One session-scoped smoke sweep (all four methods, 2 trials each) is shared by the record and
output tests; the other sweeps use method subsets and one epoch to stay fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import fault_injection  # noqa: E402  (needs TESTS on sys.path)

from ckd_tune import search  # noqa: E402

BIN = Path(sys.executable).parent
ALL_METHODS = ("ckd", "kd", "annealing_kd", "none")
EXPERIMENT = "ckd_tune/glue/sst2"
TRIAL_TAGS = ("method", "bench", "task", "sweep", "searcher", "seed", "role", "ray_trial_id")
CORE_METRICS = {"val_score", "best_val_score", "train_loss", "epoch", "best_epoch", "val_accuracy"}
SCHEDULE_METRICS = {"T", "phi", "psi"}  # logged by the methods that have schedules
SWEEP_TIMEOUT = 420
# smoke budget: 2 trials per method with a space; none searches nothing, so it runs once
SMOKE_TRIALS = {"ckd": 2, "kd": 2, "annealing_kd": 2, "none": 1}


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


def start_cli(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """Start the CLI in its own session (so a signal can go to it alone), output to files."""
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
        return subprocess.Popen(  # the child keeps its own copies of the files
            [sys.executable, "-m", "ckd_tune.search", *args],
            cwd=cwd,
            env=cli_env(),
            stdout=out,
            stderr=err,
            text=True,
            start_new_session=True,
        )


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@pytest.fixture(autouse=True)
def _no_ray_left():
    """Each test leaves Ray shut down in this process."""
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()
        pytest.fail("the test left Ray initialised in the test process")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """Teacher and logit cache shared by every sweep of the session (the teacher trains once)."""
    return tmp_path_factory.mktemp("ckd_cache")


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


def ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"status {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"


# ------------------------------------------------------------------------------------------
# Searcher and scheduler construction


def plan_for(tmp_path: Path, glue_dir: Path, *extra: str) -> search.Plan:
    argv = sweep_args(tmp_path / "runs", f"sqlite:///{tmp_path / 'm.db'}", tmp_path, glue_dir)
    return search.make_plan(search.build_parser().parse_args([*argv, *extra]))


def test_tune_config_is_optuna_tpe_run_to_the_end_by_default(tmp_path, glue_dir):
    from optuna.samplers import TPESampler
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    plan = plan_for(tmp_path, glue_dir, "--num-samples", "6", "--max-epochs", "3")
    config = search.tune_config(plan, "ckd", concurrent=2)
    assert isinstance(config.search_alg, ConcurrencyLimiter)
    assert config.search_alg.max_concurrent == 2
    assert isinstance(config.search_alg.searcher, OptunaSearch)
    sampler = config.search_alg.searcher._sampler
    assert isinstance(sampler, TPESampler) and sampler._n_startup_trials == 3  # half the budget
    assert isinstance(config.scheduler, FIFOScheduler)  # no trial judged mid-annealing
    assert not isinstance(config.scheduler, ASHAScheduler)
    assert (config.metric, config.mode, config.num_samples) == ("best_val_score", "max", 6)
    # a method whose space searches nothing gets one trial: more would all be the same run
    assert search.tune_config(plan, "none", concurrent=2).num_samples == 1


def test_asha_waits_past_the_annealing_window(tmp_path, glue_dir):
    import random

    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from ckd_tune.config import TrainConfig
    from ckd_tune.methods import METHODS

    plan = plan_for(tmp_path, glue_dir, "--scheduler", "asha", "--max-epochs", "10")
    grace = {m: search.grace_period(plan.spaces[m], 10) for m in ALL_METHODS}
    assert grace == {"ckd": 10, "annealing_kd": 8, "kd": 1, "none": 1}
    # no sampled trial of any space still anneals after its method's grace period
    rng = random.Random(0)
    for method in ALL_METHODS:
        for _ in range(200):
            config = TrainConfig.from_flat({**plan.spaces[method].sample_random(rng), "epochs": 10})
            ends = [getattr(config, f) for f in METHODS[method].annealing_fields]
            assert all(end * 10 <= grace[method] for end in ends)
    def first_rung(scheduler: ASHAScheduler) -> int:  # ASHA's first decision: the grace period
        return min(milestone for milestone, _ in scheduler._brackets[0]._rungs)

    kd = search.tune_config(plan, "kd", concurrent=1).scheduler
    assert isinstance(kd, ASHAScheduler) and first_rung(kd) == 1 and kd._max_t == 10
    annealing = search.tune_config(plan, "annealing_kd", concurrent=1).scheduler
    assert isinstance(annealing, ASHAScheduler) and first_rung(annealing) == 8
    # ckd's psi may move until the last epoch: nothing to stop early, so FIFO
    assert isinstance(search.tune_config(plan, "ckd", concurrent=1).scheduler, FIFOScheduler)


def test_tune_config_random_sampler_and_fifo(tmp_path, glue_dir):
    from optuna.samplers import RandomSampler, TPESampler
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    plan = plan_for(tmp_path, glue_dir, "--searcher", "random", "--scheduler", "fifo")
    config = search.tune_config(plan, "kd", concurrent=1)
    sampler = config.search_alg.searcher._sampler
    assert isinstance(sampler, RandomSampler) and not isinstance(sampler, TPESampler)
    assert isinstance(config.scheduler, FIFOScheduler)
    assert not isinstance(config.scheduler, ASHAScheduler)


# ------------------------------------------------------------------------------------------
# Bad input: status 2, one line naming the problem and the fix, before Ray starts


def _bad_space(kind: str, tmp: Path) -> Path:
    space_dir = tmp / kind
    space_dir.mkdir()
    good = (REPO / "search_spaces" / "kd.yaml").read_text()
    if kind == "malformed":
        (space_dir / "kd.yaml").write_text("method: kd\nparams: {lr: [1.0e-5,\n")
    else:
        (space_dir / "kd.yaml").write_text(good + "\nlearning_rate_typo: 3\n")
    return space_dir


BAD_INPUTS = {
    # name: (extra argv (formatted with tmp=, glue=), words the one line must contain)
    "unknown bench": (["--bench", "imagenet"], ["--bench", "imagenet", "choose from"]),
    "unknown task": (["--task", "mnli_typo"], ["--task", "mnli_typo", "choose from"]),
    "unknown method": (["--methods", "kd,fitnets"], ["fitnets"]),
    "duplicate method": (["--methods", "kd,none,kd"], ["--methods", "twice"]),
    "malformed yaml": (["--methods", "kd", "--space-dir", "{malformed}"], ["kd.yaml", "YAML"]),
    "unknown yaml key": (
        ["--methods", "kd", "--space-dir", "{unknown_key}"],
        ["kd.yaml", "learning_rate_typo"],
    ),
    "missing data dir": (["--data-dir", "{tmp}/nonexistent"], ["--data-dir", "not a directory"]),
    "empty data dir": (["--data-dir", "{empty}"], ["--data-dir", "empty"]),
    "data dir without the task": (
        ["--data-dir", "{other_task}"],
        ["no train split", "SST-2/train.tsv", "--data-dir"],
    ),
    "zero samples": (["--num-samples", "0"], ["--num-samples", ">= 1"]),
    "negative gpus": (["--gpus-per-trial", "-1"], ["--gpus-per-trial", ">= 0"]),
    "silent tracking server": (
        ["--tracking-uri", "http://127.0.0.1:9"],
        ["--tracking-uri", "does not answer"],
    ),
    "resume without sweep": (["--resume"], ["--resume", "run without --resume"]),
    "missing teacher": (
        ["--teacher", "{tmp}/no_such_teacher"],
        ["--teacher", "no_such_teacher", "does not exist"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_before_ray(case, tmp_path, glue_dir, capsys):
    import ray

    extra, words = BAD_INPUTS[case]
    (tmp_path / "empty").mkdir()
    (tmp_path / "other_task" / "CoLA").mkdir(parents=True)
    paths = {
        "tmp": tmp_path,
        "empty": tmp_path / "empty",
        "other_task": tmp_path / "other_task",
        "malformed": _bad_space("malformed", tmp_path) if "malformed" in case else "",
        "unknown_key": _bad_space("unknown_key", tmp_path) if "key" in case else "",
    }
    argv = sweep_args(tmp_path / "runs", f"sqlite:///{tmp_path / 'm.db'}", tmp_path, glue_dir)
    argv += [a.format(**paths) for a in extra]
    capsys.readouterr()
    t0 = time.monotonic()
    status = search.main(argv)
    err = capsys.readouterr().err
    assert status == 2
    assert len(lines(err)) == 1, err
    assert err.startswith("ckd_tune.search: error: ")
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    assert time.monotonic() - t0 < 30
    assert not ray.is_initialized()
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("sweep.json"))


def test_bad_input_in_a_real_process_is_one_stderr_line(tmp_path, glue_dir, cache_dir):
    """The same through the real entry point: nothing else (warnings, logs) reaches stderr."""
    (tmp_path / "empty").mkdir()
    db = f"sqlite:///{tmp_path / 'm.db'}"
    args = sweep_args(tmp_path / "runs", db, cache_dir, glue_dir, "--data-dir", "empty")
    proc = cli(args, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert lines(proc.stderr) == [
        "ckd_tune.search: error: --data-dir: empty is empty; point it at the glue data "
        "(see --help), or leave it out to download"
    ]


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
    assert extra <= SCHEDULE_METRICS, f"method-specific metrics beyond schedules: {extra}"
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
        assert any(f"{n}/{n} trials ended" in line or "finished:" in line for line in progress)
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
        "params:\n  kd_alpha: {type: uniform, low: 0.1, high: 0.9}\n"
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
    status = search.main(argv)
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
    assert stderr.count(search.INTERRUPTED) == 1, stderr
    assert lines(stderr)[-1] == search.INTERRUPTED
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
    mlflow_port, ray_port = free_port(), free_port()
    uri = f"http://127.0.0.1:{mlflow_port}"
    server_cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port)]
    server_cmd += ["--backend-store-uri", f"sqlite:///{tmp_path / 'srv.db'}", "--workers", "1"]
    server_cmd += ["--default-artifact-root", str(tmp_path / "artifacts")]
    head_cmd = [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2"]
    head_cmd += ["--port", str(ray_port), "--disable-usage-stats", "--include-dashboard", "false"]
    with open(tmp_path / "server.log", "w") as server_log, open(tmp_path / "head.log", "w") as log:
        server = subprocess.Popen(
            server_cmd, cwd=tmp_path, stdout=server_log, stderr=server_log, start_new_session=True
        )
        head = subprocess.Popen(
            head_cmd, cwd=tmp_path, env=env, stdout=log, stderr=log, start_new_session=True
        )
    try:
        address_file = ray_tmp / "ray" / "ray_current_cluster"
        deadline = time.monotonic() + 120
        while not (address_file.is_file() and healthy(uri)):
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            assert head.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Ray head or the MLflow server did not start"
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
        stop_session(server.pid)
        head.wait(timeout=30)
        server.wait(timeout=30)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


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


# ------------------------------------------------------------------------------------------
# Reconciling MLflow runs with Ray's final trial states


@dataclass
class FakeTrial:
    """What :meth:`MLflowTrialCallback.reconcile` reads of a Ray ``Trial``."""

    trial_id: str
    status: str
    last_result: dict
    error_file: str | None = None
    config: dict | None = None

    def __post_init__(self) -> None:
        self.config = self.config or {"lr": 0.001}

    def __str__(self) -> str:
        return f"run_trial_{self.trial_id}"


def test_reconcile_sets_each_run_from_the_final_trial_state(tmp_path):
    """Ended trials whose callbacks were missed (driver killed) get the right final status."""
    from mlflow.tracking import MlflowClient

    from ckd_tune.tracking import MLflowTrialCallback, discard_trial_runs, get_experiment_id

    db = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(db)
    experiment_id = get_experiment_id(client, EXPERIMENT, tmp_path / "artifacts")
    tags = {
        "sweep": "s",
        "method": "kd",
        "bench": "glue",
        "task": "sst2",
        "searcher": "tpe",
        "seed": "0",
    }
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
    tracker = MLflowTrialCallback(db, experiment_id, tags, max_epochs=2)
    for name in ("finished", "errored", "interrupted"):
        tracker.on_trial_start(0, [], trials[name])  # a run left RUNNING by a killed driver
    tracker.reconcile(list(trials.values()))

    runs = {r.data.tags["ray_trial_id"]: r for r in trial_runs(mlflow_runs(db, "s"))}
    assert set(runs) == {"a1", "a2", "a3", "a4"}
    assert runs["a1"].info.status == runs["a3"].info.status == "FINISHED"
    assert runs["a1"].data.tags["stopped_early"] == "true"  # 1 of 2 epochs
    assert runs["a3"].data.metrics["best_val_score"] == 0.5 and runs["a3"].data.params
    assert runs["a2"].info.status == "FAILED"
    assert runs["a2"].data.tags["failure_reason"] == "RuntimeError: boom at epoch 2"
    assert runs["a4"].info.status == "KILLED"
    for run in runs.values():
        assert {t: run.data.tags[t] for t in tags} == tags and run.data.tags["role"] == "trial"

    tracker.reconcile(list(trials.values()))  # idempotent: no new runs
    assert len(trial_runs(mlflow_runs(db, "s"))) == 4
    # a method restarted from scratch drops the runs of its earlier, unrestorable attempt
    assert discard_trial_runs(client, experiment_id, "s", "kd") == 4
    assert trial_runs(mlflow_runs(db, "s")) == []
