"""Running the real search CLI as a subprocess and reading back what its trials reported.

Every sweep runs ``python -m ckd_tune.search`` (through :mod:`benchmarks.search_entry`, which
registers the benchmarks' profile) with its own ``--output`` and a shared throw-away MLflow
database under the runner's work directory. Trial histories come from Ray's per-trial
``result.json`` files (one JSON line per reported epoch).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import Context
from benchmarks.memwatch import TreeSampler
from benchmarks.search_entry import PROFILE_ENV, RUSAGE_ENV

REPO_ROOT = Path(__file__).resolve().parents[1]


class SweepFailed(RuntimeError):
    """The search CLI exited non-zero; the message ends with the tail of its log."""


@dataclass
class EpochEvent:
    """One reported epoch of one trial."""

    trial_id: str
    epoch: int
    val_score: float
    best_val_score: float
    timestamp: float  # when the result was reported (Unix seconds; Ray rounds to 1 s)
    time_total_s: float  # seconds since the trial started
    examples_per_s: float | None


@dataclass
class SweepRun:
    """One finished sweep: timings, trial histories, and memory when it was sampled."""

    name: str
    args: list[str]
    wall_s: float  # the whole subprocess: imports, Ray start, data + teacher from cache, search
    search_wall_s: float | None  # the method's search alone (``<method>.summary.json``)
    events: list[EpochEvent]
    method_summary: dict[str, Any]
    memory: dict[str, Any] | None = None
    driver_peak_rss_mb: float | None = None
    log: str = ""
    failed_attempts: list[str] = field(default_factory=list)

    @property
    def trial_epochs(self) -> int:
        """Epochs run by all trials together."""
        return len(self.events)

    @property
    def trials(self) -> int:
        """Trials that reported at least one epoch."""
        return len({e.trial_id for e in self.events})

    def to_json(self, with_events: bool = True) -> dict[str, Any]:
        """A JSON-ready dict (events optional: they can be long)."""
        data = {
            "name": self.name,
            "args": self.args,
            "wall_s": round(self.wall_s, 2),
            "search_wall_s": None if self.search_wall_s is None else round(self.search_wall_s, 2),
            "trials": self.trials,
            "trial_epochs": self.trial_epochs,
            "best_val_score": max((e.best_val_score for e in self.events), default=None),
            "method_summary": self.method_summary,
            "memory": self.memory,
            "driver_peak_rss_mb": self.driver_peak_rss_mb,
            "log": self.log,
            "failed_attempts": self.failed_attempts,
        }
        if with_events:
            data["events"] = [dataclasses.asdict(e) for e in self.events]
        return data


@dataclass
class SweepSpec:
    """What to run: CLI flags beyond the shared ones, and whether to sample memory."""

    name: str
    args: list[str] = field(default_factory=list)
    sample_memory: bool = False
    timeout_s: float = 3600.0
    retries: int = 1  # fresh re-runs after a crash (e.g. Ray's raylet killed on a busy machine)


def run_sweep(ctx: Context, spec: SweepSpec) -> SweepRun:
    """Run one sweep to completion, re-running it afresh up to ``spec.retries`` times if it crashes.

    The failed attempts' errors are kept in :attr:`SweepRun.failed_attempts`.
    """
    failures: list[str] = []
    for attempt in range(spec.retries + 1):
        name = spec.name if attempt == 0 else f"{spec.name}-retry{attempt}"
        try:
            run = _run_once(ctx, dataclasses.replace(spec, name=name))
        except SweepFailed as err:
            failures.append(str(err)[-1500:])
            print(
                f"   sweep {name} failed; "
                + ("retrying" if attempt < spec.retries else "giving up"),
                flush=True,
            )
            continue
        run.failed_attempts = failures
        return run
    raise SweepFailed(failures[-1])


def _run_once(ctx: Context, spec: SweepSpec) -> SweepRun:
    """Run one sweep of the search CLI to completion and collect its trial histories."""
    output = ctx.work_dir / "runs"
    log_path = ctx.work_dir / "logs" / f"{spec.name}.log"
    rusage_path = ctx.work_dir / "logs" / f"{spec.name}.rusage.json"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    args = [
        *ctx.search_args(),
        "--output",
        str(output),
        "--sweep",
        spec.name,
        "--tracking-uri",
        f"sqlite:///{ctx.work_dir / 'mlflow.db'}",
        *spec.args,
    ]
    env = {
        **os.environ,
        PROFILE_ENV: json.dumps(dataclasses.asdict(ctx.settings.profile())),
        RUSAGE_ENV: str(rusage_path),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "benchmarks.search_entry", *args]
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        sampler = None
        if spec.sample_memory:
            sampler = TreeSampler(proc.pid, interval=ctx.settings.poll_interval_s).start()
        try:
            status = proc.wait(timeout=spec.timeout_s)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=60)
            status = -1
        finally:
            if sampler is not None:
                sampler.stop()
    wall = time.perf_counter() - t0
    if status != 0:
        tail = log_path.read_text()[-3000:]
        raise SweepFailed(f"sweep {spec.name} exited with {status}; log {log_path}:\n{tail}")
    sweep_dir = output / spec.name
    method_summary = _method_summary(sweep_dir)
    driver_mb = None
    if rusage_path.is_file():
        driver_mb = json.loads(rusage_path.read_text())["driver_peak_rss_mb"]
    return SweepRun(
        name=spec.name,
        args=args,
        wall_s=wall,
        search_wall_s=method_summary.get("wall_seconds"),
        events=read_events(sweep_dir),
        method_summary=method_summary,
        memory=sampler.summary() if sampler else None,
        driver_peak_rss_mb=driver_mb,
        log=str(log_path),
    )


def _method_summary(sweep_dir: Path) -> dict[str, Any]:
    """The (single) ``<method>.summary.json`` the CLI writes per searched method, or {}."""
    found = sorted(sweep_dir.glob("*.summary.json"))
    return json.loads(found[0].read_text()) if found else {}


def read_events(sweep_dir: Path) -> list[EpochEvent]:
    """Every epoch reported by every trial under ``sweep_dir``, in reporting order."""
    events = []
    for path in sweep_dir.rglob("result.json"):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            if "best_val_score" not in r:
                continue
            events.append(
                EpochEvent(
                    trial_id=str(r.get("trial_id", path.parent.name)),
                    epoch=int(r.get("epoch", r.get("training_iteration", 0))),
                    val_score=float(r.get("val_score", r["best_val_score"])),
                    best_val_score=float(r["best_val_score"]),
                    timestamp=float(r.get("timestamp", 0.0)),
                    time_total_s=float(r.get("time_total_s", 0.0)),
                    examples_per_s=r.get("examples_per_s"),
                )
            )
    if not events:
        raise SweepFailed(f"no trial results (result.json) under {sweep_dir}")
    # ties within Ray's 1 s timestamps: lower scores first, so progress is never overstated
    events.sort(key=lambda e: (e.timestamp, e.best_val_score, e.trial_id, e.epoch))
    return events


def sweep_start(events: list[EpochEvent]) -> float:
    """When the first trial started (Unix seconds): min over trials of report time - run time."""
    return min(e.timestamp - e.time_total_s for e in events)
