"""Reliability and security: injected faults, bad input, and no finished result lost.

What test_search*.py, test_benches.py, test_spaces.py and the data tests already cover (Ctrl-C /
SIGKILL of the driver mid-search then --resume, NaN and crashing trials, bad flags, damaged cache
files, malformed YAML at the loader, broken TSV rows at the reader) is not repeated here.

The sweeps are CPU-bound on a small machine, so one scenario injects every process-level fault
(each a real process killed or a real exception inside training):

- the driver SIGKILLed while it fine-tunes the teacher (a half-written teacher left behind);
- then two sweeps at once on that cache and one sqlite MLflow database (the second through an
  MLflow server on that database, reached with a password in the tracking URI): one trains the
  teacher, the other waits for it and reuses it;
- in the second, ``torch.OutOfMemoryError`` inside every ``kd`` trial (FAILED, with the reason;
  ``kd`` FAILED in the table and the report), and the Ray worker of a ``none`` trial SIGKILLed
  mid-epoch (retried from its checkpoint);
- the first SIGKILLed during its report, then ``--resume``d.

Then: two processes creating one new sqlite database at once, what a killed cache writer leaves,
bad input at the CLI (exit 2, one stderr line, before anything starts), and security checks
(deserialisation calls, credentials, the MLflow UI's bind address).
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import fault_injection  # noqa: E402  (needs TESTS on sys.path)
from mlflow_server import mlflow_server  # noqa: E402
from search_support import (  # noqa: E402
    EXPERIMENT,
    REPO,
    SWEEP_TIMEOUT,
    check_one_run_per_trial,
    cli,
    cli_env,
    kill_group,
    lines,
    mlflow_runs,
    no_ray_left_fixture,  # noqa: F401  (an autouse fixture)
    ok,
    ray_trial_ids,
    spawn,
    sweep_args,
    trial_runs,
)

from ckd_tune import cache  # noqa: E402
from ckd_tune.search.cli import main  # noqa: E402
from ckd_tune.search.table import mlflow_pointer  # noqa: E402

# ------------------------------------------------------------------------------------------
# Helpers


def with_report(args: list[str]) -> list[str]:
    """``sweep_args`` (which adds ``--no-report``) with the report switched back on."""
    return [a for a in args if a != "--no-report"]


def read(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


def table_rows(stdout: str, methods: tuple[str, ...]) -> dict[str, str]:
    """The final table's row of each method (the last table printed)."""
    out = stdout.splitlines()
    header = max(
        i for i, line in enumerate(out) if line.startswith("method ") and "best val" in line
    )
    rows = [line.rstrip() for line in out[header + 1 :] if line.split()]
    return {row.split()[0]: row for row in rows if row.split()[0] in methods}


def leftovers(directory: Path) -> list[Path]:
    """Temporary entries (``.<name>-*``) of cache writers in ``directory``."""
    return sorted(directory.glob(".*")) if directory.is_dir() else []


def finished(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")]


def watch(procs: dict[str, subprocess.Popen], events: dict, timeout: float) -> None:
    """Poll sweeps running at once: ``events[what] = (sweep, predicate, action)`` runs
    ``action()`` once ``predicate()`` holds. Fails if a sweep ends while one of its events is
    pending (it ended before what the test waits for), or on timeout."""
    pending, deadline = dict(events), time.monotonic() + timeout
    while pending:
        for what, (_, predicate, action) in list(pending.items()):
            if predicate():
                action()
                del pending[what]
        for what, (name, _, _) in pending.items():
            if procs[name].poll() is not None:
                pytest.fail(f"{name} ended (status {procs[name].returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {list(pending)}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """A teacher cache, cold when the first sweep of this module starts."""
    return tmp_path_factory.mktemp("rel_cache")


# ------------------------------------------------------------------------------------------
# 1-4, 6b: killed teacher build; two sweeps at once; OOM; killed trial worker; killed report;
# a password in the tracking URI


@pytest.mark.slow
def test_faults_lose_nothing(tmp_path, glue_dir, shared_cache):
    import psutil
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    cache_dir = shared_cache if not any(shared_cache.iterdir()) else tmp_path / "cache"
    teachers, logits = cache_dir / "teachers", cache_dir / "logits"
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # sweep b reaches the same database through a server, with a password in its URI
    # the server's experiments keep artifacts in a directory (not served): the sweeps that
    # reach the database directly log artifacts into them too
    server = contextlib.ExitStack()  # the server runs until the end of the test
    plain_uri = server.enter_context(
        mlflow_server(
            tmp_path / "server", backend_store_uri=db, default_artifact_root=tmp_path / "artifacts"
        )
    )
    secret = f"s3cret-{secrets.token_hex(6)}"
    uri_b = plain_uri.replace("http://", f"http://ckd:{secret}@")
    out0, out_a, out_b = tmp_path / "runs0", tmp_path / "runs_a", tmp_path / "runs_b"
    state = tmp_path / "faults"
    state.mkdir()
    small = ("--num-samples", "1", "--max-epochs", "1")
    args0 = sweep_args(out0, db, cache_dir, glue_dir, "--methods", "kd", *small, "--sweep", "k")
    args_a = sweep_args(out_a, db, cache_dir, glue_dir, "--methods", "kd", *small, "--sweep", "a")
    args_a = with_report([*args_a, "--seeds", "3"])
    args_b = sweep_args(out_b, uri_b, cache_dir, glue_dir, "--methods", "kd,none", "--sweep", "b")
    args_b = with_report([*args_b, "--num-samples", "1", "--max-epochs", "2", "--seeds", "1"])
    args_b += ["--scheduler", "fifo"]
    # kd: every trial runs out of memory at epoch 2; none: its trial hangs at epoch 2 (to be
    # killed); student builds are recorded in <state>/calls.txt
    faults = ["-m", "fault_injection", "--oom", "kd", "--hang", "none", str(state), "--"]
    procs: dict[str, subprocess.Popen] = {}
    killed_trial: list[str] = []

    def kill_worker() -> None:
        pid, trial = read(state / "hang-none").split()
        worker = psutil.Process(int(pid))
        assert os.getsid(worker.pid) == procs["b"].pid, "not a process of this test's sweep"
        assert "ImplicitFunc" in " ".join(worker.cmdline()), worker.cmdline()
        worker.kill()
        killed_trial.append(trial)

    try:
        try:
            # 1. SIGKILL a driver (and all it started) while it fine-tunes the teacher; the
            # build's temp dir exists from just before training to its publication
            procs["run0"] = spawn(["-m", "ckd_tune.search", *args0], tmp_path, tmp_path / "run0")
            building = "the teacher's fine-tuning"
            watch(
                procs,
                {
                    building: (
                        "run0",
                        lambda: (
                            leftovers(teachers) and "the teacher (" in read(tmp_path / "run0.err")
                        ),
                        lambda: os.killpg(procs["run0"].pid, signal.SIGKILL),
                    )
                },
                240,
            )
            kill_group(procs["run0"])
            half_written = leftovers(teachers)
            assert half_written and not finished(teachers), "expected a half-written teacher only"

            # 2. two sweeps at once; b's kd trials run out of memory, its none trial's worker
            # is SIGKILLed mid-epoch; a is SIGKILLed once its search is summarised and a
            # report re-run is logged
            procs["a"] = spawn(["-m", "ckd_tune.search", *args_a], tmp_path, tmp_path / "a")
            procs["b"] = spawn([*faults, *args_b], tmp_path, tmp_path / "b")
            watch(
                procs,
                {
                    "b's none trial to hang": (
                        "b",
                        lambda: len(read(state / "hang-none").split()) == 2,
                        kill_worker,
                    ),
                    "a's first report re-run": (
                        "a",
                        lambda: (
                            (out_a / "a" / "summary.json").is_file()
                            and "report: kd seed" in read(tmp_path / "a.out")
                        ),
                        lambda: os.killpg(procs["a"].pid, signal.SIGKILL),
                    ),
                },
                SWEEP_TIMEOUT,
            )
            kill_group(procs["a"])
            assert procs["b"].wait(timeout=SWEEP_TIMEOUT) == 0, read(tmp_path / "b.err")[-4000:]
        finally:
            for proc in procs.values():
                kill_group(proc)
        _check_sweeps_at_once(tmp_path, db, plain_uri, secret, state, killed_trial)
        _check_cache(teachers, logits, half_written)

        # 4. --resume sweep a: the search is reused, the report redone, nothing duplicated
        first_a = read(tmp_path / "a.out")
        assert "report: kd seed" in first_a
        assert not (out_a / "a" / "report" / "report.md").exists(), "the report finished unkilled"
        table_before = table_rows(first_a, ("kd",))
        ids_before = ray_trial_ids(out_a / "a" / "ray" / "kd")
        runs_before = sorted(r.info.run_id for r in trial_runs(mlflow_runs(db, "a")))
        resumed = cli([*args_a, "--resume"], cwd=tmp_path)
        ok(resumed)
        assert "kd: search already finished in this sweep; reusing its results" in resumed.stdout
        assert "(reused from cache)" in resumed.stdout
        assert ray_trial_ids(out_a / "a" / "ray" / "kd") == ids_before
        assert table_rows(resumed.stdout, ("kd",)) == table_before  # same trials, same best
        assert (out_a / "a" / "report" / "report.md").is_file()
        assert "Traceback" not in resumed.stderr

        runs = mlflow_runs(db, "a")
        check_one_run_per_trial(runs, out_a / "a", ("kd",), 1)
        assert sorted(r.info.run_id for r in trial_runs(runs)) == runs_before
        assert all(r.info.status == "FINISHED" for r in trial_runs(runs))
        summary = [r for r in runs if r.data.tags.get("role") == "summary"]
        assert len(summary) == 1 and summary[0].info.status == "FINISHED"
        reruns = [r for r in runs if r.data.tags.get("role") == "rerun"]  # live runs only
        for arm in ("kd", "kd_shuffled_teacher"):  # kd and its positive control, after seed 0
            seeds = sorted(r.data.tags["seed"] for r in reruns if r.data.tags["arm"] == arm)
            assert seeds == ["1", "2", "3"], arm
        assert all(r.info.status == "FINISHED" for r in reruns)
        client = MlflowClient(db)
        experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
        deleted = client.search_runs(
            [experiment_id],
            "tags.sweep = 'a' and tags.role = 'rerun'",
            run_view_type=ViewType.DELETED_ONLY,
            max_results=100,
        )
        assert deleted, "the killed report's re-runs should be soft-deleted, not live"
        assert f"report: replacing {len(deleted)} re-run(s) of an earlier report" in resumed.stdout
        assert mlflow_runs(db, "k") == []  # killed before it tracked anything
    finally:
        server.close()


def _check_sweeps_at_once(
    tmp: Path, db: str, uri: str, secret: str, state: Path, killed_trial: list[str]
) -> None:
    """Sweeps a and b ran at once: one teacher build, no lock errors, b's faults recorded."""
    outs = {name: read(tmp / f"{name}.out") for name in ("a", "b")}
    errs = {name: read(tmp / f"{name}.err") for name in ("run0", "a", "b")}
    trained = [n for n, text in outs.items() if "(trained in " in text]
    reused = [n for n, text in outs.items() if "(reused from cache)" in text]
    assert len(trained) == 1 and len(reused) == 1, outs  # the other waited on the lock
    assert "half-written" in errs[trained[0]]  # the trainer said what it removed
    for text in (*errs.values(), read(tmp / "server.log")):
        assert "database is locked" not in text and "OperationalError" not in text
    assert "Traceback" not in errs["b"], errs["b"][-4000:]  # failures are one line each

    # the password: in no output, no file, no MLflow param or tag
    assert secret not in outs["b"] and secret not in errs["b"]
    for path in [*tmp.glob("runs_*/**/*"), *tmp.glob("*.log")]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"the password is in {path}"
    runs = mlflow_runs(uri, "b")
    for run in runs:
        values = [*run.data.params.values(), *run.data.tags.values()]
        assert not [v for v in values if secret in v], run.info.run_id

    # b: every trial is one run with its final status
    check_one_run_per_trial(runs, tmp / "runs_b" / "b", ("kd", "none"), 1)
    assert {r.info.run_id for r in mlflow_runs(db, "b")} == {r.info.run_id for r in runs}
    builds = Counter(fault_injection.calls(state))
    (kd,) = trial_runs(runs, "kd")
    assert kd.info.status == "FAILED"
    reason = kd.data.tags["failure_reason"]
    assert "OutOfMemoryError" in reason and "out of memory" in reason, reason
    assert builds[("kd", kd.data.tags["ray_trial_id"])] == 2  # retried once, out of memory again
    assert kd.data.tags["retries"] == "1"
    (none,) = trial_runs(runs, "none")
    (killed,) = killed_trial
    assert none.data.tags["ray_trial_id"] == killed and none.info.status == "FINISHED"
    assert "failure_reason" not in none.data.tags and none.data.metrics["epoch"] == 2
    assert none.data.tags["retries"] == "1" and none.data.tags["last_crash"]
    assert builds[("none", killed)] == 2
    assert f"{killed} crashed (" in outs["b"] and "retrying from its last checkpoint" in outs["b"]
    (trial_dir,) = (tmp / "runs_b" / "b" / "ray" / "none").glob(f"run_trial_{killed}_*")
    results = [json.loads(line) for line in read(trial_dir / "result.json").splitlines()]
    # the retry went on from the epoch-1 checkpoint: epoch 2 is its first iteration
    assert [(r["epoch"], r["iterations_since_restore"]) for r in results] == [(1, 1), (2, 1)]

    # the method whose every trial failed: FAILED in the table, the summary and the report
    table = table_rows(outs["b"], ("kd", "none"))
    assert "FAILED" in table["kd"] and "1 (1)" in table["kd"], table
    assert "FAILED" not in table["none"] and "1 (0)" in table["none"], table
    assert "OutOfMemoryError" in outs["b"]  # the progress line names the error
    summaries = {s["method"]: s for s in json.loads(read(tmp / "runs_b" / "b" / "summary.json"))}
    assert summaries["kd"]["status"] == "failed" and summaries["none"]["status"] == "ok"
    report = read(tmp / "runs_b" / "b" / "report" / "report.md")
    assert "| kd | **FAILED**" in report and "| none | ok |" in report
    assert "report: no re-runs for kd (every search trial failed)" in outs["b"]
    assert [r.info.status for r in runs if r.data.tags.get("role") == "summary"] == ["FINISHED"]
    assert [r.info.status for r in runs if r.data.tags.get("role") == "rerun"] == ["FINISHED"]


def _check_cache(teachers: Path, logits: Path, half_written: list[Path]) -> None:
    """One published teacher and one logit file, both passing their checksums; nothing
    half-written (the killed build's directory included) is left."""
    assert not any(p.exists() for p in half_written)
    (teacher_dir,) = finished(teachers)
    assert cache.checked_dir(teacher_dir, ["model.safetensors"])
    assert not leftovers(teachers) and not leftovers(logits)
    (logit_file,) = logits.glob("*.pt")
    assert cache.load_tensors(logit_file) is not None


# ------------------------------------------------------------------------------------------
# 4. Two processes creating one new sqlite database at once


def test_two_processes_creating_one_mlflow_database_at_once(tmp_path):
    """MLflow creates a new database's tables unlocked; ``open_client`` serialises that."""
    db = f"sqlite:///{tmp_path / 'new.db'}"
    go = tmp_path / "go"
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from ckd_tune.tracking import get_experiment_id, open_client\n"
        "Path(sys.argv[2]).touch()\n"
        "while not Path(sys.argv[3]).exists(): time.sleep(0.005)\n"
        "print(get_experiment_id(open_client(sys.argv[1]), 'ckd_tune/race'))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, db, str(tmp_path / f"ready{i}"), str(go)],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.05)
        go.touch()  # both imported MLflow; both open the database now
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
    for p, (_, stderr) in zip(procs, results, strict=True):
        assert p.returncode == 0, stderr[-3000:]
    assert len({stdout.strip() for stdout, _ in results}) == 1  # one experiment for both


def test_leftovers_of_a_killed_cache_writer_are_removed_not_used(tmp_path, monkeypatch):
    from ckd_tune.teacher import cached_teacher

    teachers = tmp_path / "teachers"
    stale = teachers / ".abc-1x2y"  # what a teacher build killed mid-way leaves
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    other = teachers / ".abd-3z4w"  # another teacher's build (it holds its own lock)
    other.mkdir()

    def build(tmp: Path) -> dict:
        (tmp / "model.safetensors").write_bytes(b"whole")
        return {"train_seconds": 1.0}

    final, meta, reused = cached_teacher(tmp_path, "abc", build, ["model.safetensors"])
    assert not reused and meta["train_seconds"] == 1.0
    assert (final / "model.safetensors").read_bytes() == b"whole"
    assert not stale.exists() and other.exists()

    # a logit file whose writer died before its rename: the temp file is found and removed
    import torch

    path = tmp_path / "logits" / "t-d.pt"
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        cache.save_tensors({"train": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert len(leftovers(path.parent)) == 1 and not path.exists()
    with cache.locked(path):
        assert cache.remove_leftovers(path) == 1
    assert not leftovers(path.parent) and cache.load_tensors(path) is None


# ------------------------------------------------------------------------------------------
# 5. Bad input at the CLI: exit 2 and one line naming the file or flag, before any trial


def _space(tmp: Path, method: str, old: str, new: str) -> list[str]:
    """``--methods METHOD --space-dir D`` with the wide space edited (``old`` -> ``new``)."""
    text = (REPO / "search_spaces" / "wide" / f"{method}.yaml").read_text()  # has every option
    assert old in text
    space_dir = tmp / "spaces"
    space_dir.mkdir()
    (space_dir / f"{method}.yaml").write_text(text.replace(old, new, 1))
    return ["--methods", method, "--space-dir", str(space_dir)]


def _glue(tmp: Path, glue_dir: Path, bad_row: str) -> list[str]:
    """A GLUE data dir whose SST-2 train.tsv has ``bad_row`` as line 302."""
    sst2 = tmp / "glue" / "SST-2"
    sst2.mkdir(parents=True)
    shutil.copy(glue_dir / "SST-2" / "dev.tsv", sst2)
    with open(glue_dir / "SST-2" / "train.tsv") as f:
        head = [next(f) for _ in range(301)]
    (sst2 / "train.tsv").write_text("".join(head) + bad_row + "\n")
    return ["--data-dir", str(tmp / "glue")]


def _cifar_stub(tmp: Path) -> Path:
    """A non-empty directory without CIFAR data."""
    stub = tmp / "cifar_stub"
    stub.mkdir()
    (stub / "notes.txt").write_text("not CIFAR\n")
    return stub


# the wide kd space's first uniform parameter (its name is the method's to choose)
KD_PARAM, KD_LOW, KD_HIGH = re.search(
    r"^  (\w+): \{type: uniform, low: ([^,]+), high: ([^}]+)\}$",
    (REPO / "search_spaces" / "wide" / "kd.yaml").read_text(),
    re.MULTILINE,
).groups()
KD_UNIFORM = f"{KD_PARAM}: {{type: uniform, low: {KD_LOW}, high: {KD_HIGH}}}"
PSI_SHAPES = "[linear, cosine, exponential, sigmoid, step]"
TEMPERATURE_PATHS = "[steps, linear, cosine, exponential]"
BAD_INPUTS = {
    # name: (extra argv from (tmp, glue_dir), words the one stderr line must contain)
    "yaml unknown key in a parameter": (
        lambda t, g: _space(t, "kd", KD_UNIFORM, KD_UNIFORM[:-1] + ", stepp: 2}"),
        ["kd.yaml", f"params.{KD_PARAM}.stepp", "unknown key"],
    ),
    "yaml unknown parameter name": (
        lambda t, g: _space(t, "kd", f"{KD_PARAM}:", f"{KD_PARAM}_typo:"),
        ["kd.yaml", f"{KD_PARAM}_typo", "parameter of method 'kd'"],
    ),
    "yaml low > high": (
        lambda t, g: _space(
            t, "kd", KD_UNIFORM, f"{KD_PARAM}: {{type: uniform, low: {KD_HIGH}, high: {KD_LOW}}}"
        ),
        ["kd.yaml", f"params.{KD_PARAM}", f"low ({KD_HIGH}) must be <= high ({KD_LOW})"],
    ),
    "yaml string for a number": (
        lambda t, g: _space(t, "kd", KD_UNIFORM, KD_UNIFORM.replace(f"low: {KD_LOW}", "low: one")),
        ["kd.yaml", f"params.{KD_PARAM}.low", "expected a number", "'one'"],
    ),
    "yaml number for a list": (
        lambda t, g: _space(t, "kd", "choices: [16, 32]", "choices: 16"),
        ["kd.yaml", "params.batch_size.choices", "list"],
    ),
    "yaml unknown parameter type": (
        lambda t, g: _space(t, "kd", KD_UNIFORM, KD_UNIFORM.replace("uniform", "gaussian")),
        ["kd.yaml", f"params.{KD_PARAM}", "'gaussian'"],
    ),
    "yaml unknown psi shape": (
        lambda t, g: _space(t, "ckd", PSI_SHAPES, PSI_SHAPES[:-1] + ", wobbly]"),
        ["ckd.yaml", "psi_shape", "'wobbly'", "choose from"],
    ),
    "yaml unknown temperature path": (
        lambda t, g: _space(t, "ckd", TEMPERATURE_PATHS, TEMPERATURE_PATHS[:-1] + ", zigzag]"),
        ["ckd.yaml", "temperature_path", "'zigzag'", "choose from"],
    ),
    "glue tsv row without its label": (
        lambda t, g: _glue(t, g, "a row that lost its label"),
        ["SST-2/train.tsv line 302", "expected 2 tab-separated columns, got 1"],
    ),
    "glue label out of range": (
        lambda t, g: _glue(t, g, "a fine film\t7"),
        ["SST-2/train.tsv line 302", "label '7'", "not one of"],
    ),
    "cifar10 teacher path missing": (
        lambda t, g: [
            *("--bench", "cifar10", "--data-dir", str(_cifar_stub(t))),
            *("--teacher", str(t / "no_teacher")),
        ],
        ["--teacher", "no_teacher", "does not exist"],
    ),
    "cifar10 data dir missing": (
        lambda t, g: ["--bench", "cifar10", "--data-dir", str(t / "no_cifar")],
        ["--data-dir", "no_cifar", "not a directory"],
    ),
    "cifar10 data dir without cifar data": (
        lambda t, g: ["--bench", "cifar10", "--data-dir", str(_cifar_stub(t))],
        ["CIFAR data not found", "cifar_stub", "--data-dir"],
    ),
    "password in a silent tracking uri": (
        lambda t, g: ["--tracking-uri", "http://ckd:s3cret-pw@127.0.0.1:9"],
        ["--tracking-uri", "127.0.0.1:9", "does not answer"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_before_any_trial(case, tmp_path, glue_dir, capsys):
    import ray

    make_extra, words = BAD_INPUTS[case]
    argv = sweep_args(tmp_path / "runs", f"sqlite:///{tmp_path / 'm.db'}", tmp_path, glue_dir)
    argv += make_extra(tmp_path, glue_dir)
    capsys.readouterr()
    t0 = time.monotonic()
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    assert len(lines(err)) == 1, err
    assert err.startswith("ckd_tune.search: error: ")
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    assert "s3cret" not in err
    assert time.monotonic() - t0 < 60
    assert not ray.is_initialized()
    assert not list(tmp_path.glob("runs/*/sweep.json"))  # no sweep began
    assert not (tmp_path / "teachers").exists()  # no teacher training began


def test_bad_data_in_a_real_process_is_one_stderr_line(tmp_path, glue_dir):
    """A data error found after the flags are checked: still nothing else on stderr."""
    argv = sweep_args(tmp_path / "runs", f"sqlite:///{tmp_path / 'm.db'}", tmp_path, glue_dir)
    argv += _glue(tmp_path, glue_dir, "a fine film\t7")
    proc = cli(argv, cwd=tmp_path, timeout=180)
    assert proc.returncode == 2, proc.stderr[-3000:]
    path = tmp_path / "glue" / "SST-2" / "train.tsv"
    assert lines(proc.stderr) == [
        f"ckd_tune.search: error: {path} line 302: label '7' is not one of ['0', '1']"
    ]


# ------------------------------------------------------------------------------------------
# 6. Security


UNSAFE_CALLS = {  # deserialisers that can run code from the file they read
    "pickle.load", "pickle.loads", "pickle.Unpickler", "cloudpickle.load", "cloudpickle.loads",
    "dill.load", "dill.loads", "marshal.load", "marshal.loads", "yaml.unsafe_load",
    "yaml.full_load", "yaml.load_all", "torch.jit.load", "joblib.load", "shelve.open",
}  # fmt: skip


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def test_no_unsafe_deserialisation_in_the_package():
    """``torch.load`` only with ``weights_only=True``; ``yaml.load`` only with a SafeLoader;
    pickle only through the restricted CIFAR unpickler."""
    import importlib

    import yaml

    seen = Counter()
    for path in sorted((REPO / "ckd_tune").rglob("*.py")):
        source = path.read_text()
        tree = ast.parse(source)
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        for node in ast.walk(tree):
            where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.ImportFrom) and node.module in ("torch", "pickle", "yaml"):
                names = {a.name for a in node.names}
                assert not names & {"load", "loads", "Unpickler", "unsafe_load"}, where
            if isinstance(node, ast.ClassDef):
                bases = {_dotted(b) for b in node.bases}
                if "pickle.Unpickler" in bases:  # a restricted unpickler: it must vet classes
                    methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
                    assert "find_class" in methods, where
                    seen["unpickler"] += 1
                continue
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func)
            keywords = {k.arg: k.value for k in node.keywords}
            if name == "torch.load":
                flag = keywords.get("weights_only")
                assert isinstance(flag, ast.Constant) and flag.value is True, where
                seen["torch.load"] += 1
            elif name == "yaml.load":
                loader = keywords.get("Loader")
                assert isinstance(loader, ast.Name), where
                cls = getattr(importlib.import_module(module), loader.id)
                assert issubclass(cls, yaml.SafeLoader), where
                seen["yaml.load"] += 1
            elif name in ("np.load", "numpy.load"):
                flag = keywords.get("allow_pickle")
                assert flag is None or (isinstance(flag, ast.Constant) and not flag.value), where
            else:
                assert name not in UNSAFE_CALLS, where
        # the AST saw every textual call (no aliasing that hides one from the checks above)
        assert source.count("torch.load(") == sum(
            1 for n in ast.walk(tree) if isinstance(n, ast.Call) and _dotted(n.func) == "torch.load"
        ), path
    assert seen["torch.load"] >= 4 and seen["yaml.load"] == 1 and seen["unpickler"] == 1, seen


@pytest.mark.parametrize(
    ("uri", "clean", "user", "password"),
    [
        ("http://ckd:s3cret@127.0.0.1:5000", "http://127.0.0.1:5000", "ckd", "s3cret"),
        (
            "https://a%40b:p%3Aw%2F@mlflow.example.org/x",
            "https://mlflow.example.org/x",
            "a@b",
            "p:w/",
        ),
        ("http://ckd:s3cret@[::1]:5000/", "http://[::1]:5000/", "ckd", "s3cret"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000", None, None),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db", None, None),
    ],
)
def test_tracking_credentials_move_to_mlflow_env(uri, clean, user, password, monkeypatch):
    from ckd_tune.tracking_uri import credentials_to_env

    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    assert credentials_to_env(uri) == clean
    assert os.environ.get("MLFLOW_TRACKING_USERNAME") == user
    assert os.environ.get("MLFLOW_TRACKING_PASSWORD") == password


def test_the_documented_mlflow_ui_listens_on_localhost_only(monkeypatch):
    """``mlflow ui`` (as the README and the final table suggest it) binds 127.0.0.1: the
    installed MLflow's ``ui`` command (what ``mlflow ui --help`` documents), and no 0.0.0.0."""
    import click
    from mlflow.cli import cli as mlflow_cli

    ui = mlflow_cli.get_command(click.Context(mlflow_cli), "ui")
    (host,) = [p for p in ui.params if p.name == "host"]
    assert host.default == "127.0.0.1" and "(default: 127.0.0.1)" in host.help
    monkeypatch.delenv(host.envvar, raising=False)  # $MLFLOW_HOST would override it
    context = ui.make_context("ui", [])
    assert context.params["host"] == "127.0.0.1"
    readme = (REPO / "README.md").read_text()
    commands = [
        line for line in readme.splitlines() if "mlflow ui" in line or "mlflow server" in line
    ]
    assert commands, "the README shows how to start the MLflow UI"
    for line in commands:
        assert "--host" not in line or "--host 127.0.0.1" in line, line
    assert "0.0.0.0" not in readme
    for path in (REPO / "ckd_tune").rglob("*.py"):
        assert "0.0.0.0" not in path.read_text(), path
    # the final table's pointer: `mlflow ui` as above, with no --host
    pointer = mlflow_pointer("e", "1", "r", "sqlite:///mlflow.db")
    assert pointer.endswith("view with: mlflow ui --backend-store-uri sqlite:///mlflow.db")
