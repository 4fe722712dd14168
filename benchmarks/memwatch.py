"""Resident-memory sampling of a sweep's process tree (driver, Ray services, trial workers).

The trainable cannot report its own memory without a package change, so a background thread
polls the driver subprocess and all its descendants. Ray names worker processes by what they
run (``ray::ImplicitFunc...`` for a function trainable's actor), which tells trials apart from
Ray's own services and idle workers.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any

from benchmarks.common import psutil

TRIAL_MARKERS = ("ImplicitFunc", "run_trial")
"""Substrings of a trial worker's process title / command line."""

MB = 2**20


@dataclass
class ProcessPeak:
    """The largest memory seen for one process."""

    pid: int
    role: str  # "driver" | "trial" | "ray" (Ray services and idle workers)
    title: str
    rss_mb: float = 0.0
    uss_mb: float | None = None  # memory unique to the process (shared object-store pages excluded)
    pss_mb: float | None = None
    samples: int = 0
    nice: int | None = None  # scheduling niceness (Ray starts workers at RAY_worker_niceness)


@dataclass
class TreeSampler:
    """Polls ``root_pid`` and its descendants every ``interval`` seconds in a daemon thread.

    RSS is read at every poll (cheap); USS/PSS (reads ``/proc/<pid>/smaps``) only every
    ``full_every`` polls and only for trial processes, to keep the sampler's own CPU use low.
    """

    root_pid: int
    interval: float = 0.5
    full_every: int = 4
    peaks: dict[int, ProcessPeak] = field(default_factory=dict)
    concurrent_trials_max: int = 0
    trial_rss_sum_max_mb: float = 0.0
    total_rss_max_mb: float = 0.0
    polls: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> TreeSampler:
        """Start polling in the background."""
        self._thread = threading.Thread(target=self._loop, name="memwatch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        ps = psutil()
        try:
            root = ps.Process(self.root_pid)
        except ps.Error:
            return
        while not self._stop.is_set():
            self.poll(ps, root)
            self._stop.wait(self.interval)

    def poll(self, ps: Any, root: Any) -> None:
        """Take one sample of the tree."""
        try:
            procs = [root, *root.children(recursive=True)]
        except ps.Error:
            return
        full = self.polls % self.full_every == 0
        self.polls += 1
        trials, trial_rss, total_rss = 0, 0.0, 0.0
        for proc in procs:
            try:
                title = " ".join(proc.cmdline())[:200]
                rss = proc.memory_info().rss / MB
            except ps.Error:
                continue
            role = _role(proc.pid, self.root_pid, title)
            peak = self.peaks.get(proc.pid)
            if peak is None or (
                peak.role != role and role == "trial"
            ):  # an idle worker got a trial
                peak = self.peaks[proc.pid] = ProcessPeak(proc.pid, role, title)
                with contextlib.suppress(ps.Error):
                    peak.nice = proc.nice()
            peak.samples += 1
            peak.rss_mb = max(peak.rss_mb, rss)
            total_rss += rss
            if role == "trial":
                trials += 1
                trial_rss += rss
                if full:
                    self._full(ps, proc, peak)
        self.concurrent_trials_max = max(self.concurrent_trials_max, trials)
        self.trial_rss_sum_max_mb = max(self.trial_rss_sum_max_mb, trial_rss)
        self.total_rss_max_mb = max(self.total_rss_max_mb, total_rss)

    @staticmethod
    def _full(ps: Any, proc: Any, peak: ProcessPeak) -> None:
        try:
            info = proc.memory_full_info()
        except (ps.Error, OSError):
            return
        peak.uss_mb = max(peak.uss_mb or 0.0, info.uss / MB)
        if hasattr(info, "pss"):
            peak.pss_mb = max(peak.pss_mb or 0.0, info.pss / MB)

    def summary(self) -> dict[str, Any]:
        """Peaks per role plus every process's peak (rounded, MB)."""
        trials = [p for p in self.peaks.values() if p.role == "trial"]
        driver = [p for p in self.peaks.values() if p.role == "driver"]
        ray_services = [p for p in self.peaks.values() if p.role == "ray"]

        def top(values: list[float | None]) -> float | None:
            present = [v for v in values if v is not None]
            return round(max(present), 1) if present else None

        return {
            "polls": self.polls,
            "interval_s": self.interval,
            "trial_processes": len(trials),
            "concurrent_trials_max": self.concurrent_trials_max,
            "trial_peak_rss_mb": top([p.rss_mb for p in trials]),
            "trial_peak_uss_mb": top([p.uss_mb for p in trials]),
            "trial_peak_pss_mb": top([p.pss_mb for p in trials]),
            "trial_rss_mb_each": sorted(round(p.rss_mb, 1) for p in trials),
            "trial_uss_mb_each": sorted(round(p.uss_mb, 1) for p in trials if p.uss_mb),
            "trials_rss_sum_max_mb": round(self.trial_rss_sum_max_mb, 1),
            "trial_niceness": sorted({p.nice for p in trials if p.nice is not None}),
            "driver_peak_rss_mb_sampled": top([p.rss_mb for p in driver]),
            "ray_services_peak_rss_mb_sum": round(sum(p.rss_mb for p in ray_services), 1),
            "tree_rss_max_mb": round(self.total_rss_max_mb, 1),
            "processes": [
                {
                    "pid": p.pid,
                    "role": p.role,
                    "title": p.title[:80],
                    "rss_mb": round(p.rss_mb, 1),
                    "uss_mb": None if p.uss_mb is None else round(p.uss_mb, 1),
                    "nice": p.nice,
                    "samples": p.samples,
                }
                for p in sorted(self.peaks.values(), key=lambda p: (p.role, p.pid))
            ],
        }


def _role(pid: int, root_pid: int, title: str) -> str:
    if pid == root_pid:
        return "driver"
    if any(marker in title for marker in TRIAL_MARKERS):
        return "trial"
    return "ray"
