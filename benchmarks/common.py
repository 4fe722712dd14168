"""What every benchmark shares: run sizes, the prepared GLUE bench, results and machine facts.

A benchmark is a function ``run(ctx: Context) -> BenchResult``. The runner adds the machine
description and timing and writes the result as ``<out>/<name>.json``.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

BENCH_PROFILE = "bench"
"""Name under which the benchmarks' GLUE profile is registered in ``GLUE_PROFILES``."""


@dataclass(frozen=True)
class Settings:
    """Run sizes for one mode (``quick`` or ``full``); recorded in every result file."""

    mode: str
    train_size: int
    val_size: int
    test_size: int | None  # None: the whole official dev split (teacher metrics only)
    epochs: int  # student epochs in trainable_overhead / logit_cache
    teacher_epochs: int
    repeats: int  # repetitions of each timed pair
    search_seeds: tuple[int, ...]
    search_samples: int  # trials per search run
    search_epochs: int  # max epochs per trial in a search run
    scaling_samples: int  # trials per scaling / memory sweep
    scaling_epochs: int
    task: str = "sst2"
    method: str = "kd"  # trainable_overhead / logit_cache
    search_method: str = "ckd"  # search_efficiency / scaling / memory
    batch_size: int = 32
    max_seq_length: int = 64
    poll_interval_s: float = 0.5  # memory sampling period during sweeps

    def profile(self) -> Any:
        """The GLUE :class:`~ckd_tune.benches.Profile` these sizes describe."""
        from ckd_tune.benches import Profile

        return Profile(
            BENCH_PROFILE,
            train_size=self.train_size,
            val_size=self.val_size,
            test_size=self.test_size,
            epochs=self.epochs,
            teacher_epochs=self.teacher_epochs,
            num_samples=self.search_samples,
            seeds=1,
            batch_size=self.batch_size,
            max_seq_length=self.max_seq_length,
        )


MODES = {
    # about 10 minutes on 2 quiet CPU cores (plus about a minute to fine-tune the teacher on a
    # first run): indicative numbers and a plumbing check of every benchmark
    "quick": Settings(
        mode="quick",
        train_size=500,
        val_size=200,
        test_size=200,
        epochs=2,
        teacher_epochs=2,
        repeats=2,
        search_seeds=(0, 1),
        search_samples=4,
        search_epochs=2,
        scaling_samples=4,
        scaling_epochs=1,
    ),
    # the GLUE `quick` profile's data and teacher (2,000 training, 500 validation examples,
    # 3 teacher epochs; the CLI's cached teacher is reused), three search seeds of 12 trials
    # of up to 4 epochs: the numbers to quote (about 80 minutes on 2 quiet CPU cores)
    "full": Settings(
        mode="full",
        train_size=2000,
        val_size=500,
        test_size=None,
        epochs=3,
        teacher_epochs=3,
        repeats=3,
        search_seeds=(0, 1, 2),
        search_samples=12,
        search_epochs=4,
        scaling_samples=4,
        scaling_epochs=2,
        poll_interval_s=1.0,
    ),
}


def register_profile(settings: Settings) -> None:
    """Insert the benchmarks' profile into ``ckd_tune.benches.GLUE_PROFILES`` (this process)."""
    from ckd_tune.benches import GLUE_PROFILES

    GLUE_PROFILES[BENCH_PROFILE] = settings.profile()


@dataclass
class Target:
    """A benchmark's pass criterion: ``value`` compared with ``threshold``."""

    description: str
    value: float | None
    threshold: float
    higher_is_better: bool = True

    @property
    def met(self) -> bool:
        """Whether the measured value satisfies the target (False when nothing was measured)."""
        if self.value is None:
            return False
        return (
            self.value >= self.threshold if self.higher_is_better else self.value <= self.threshold
        )


@dataclass
class BenchResult:
    """What one benchmark measured; the runner adds the machine and writes it as JSON."""

    name: str
    description: str
    settings: dict[str, Any]
    measurements: dict[str, Any]
    summary: dict[str, Any]
    target: Target
    headline: str  # one line for the final table
    notes: list[str] = field(default_factory=list)
    note: str | None = None  # a longer remark of the benchmark (e.g. how it scales on a cluster)

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON-serialisable dict, with ``target.met`` filled in."""
        data = asdict(self)
        data["target"]["met"] = self.target.met
        return data


@dataclass
class Context:
    """Paths and settings of one runner invocation; builds the shared GLUE bench lazily."""

    settings: Settings
    data_dir: Path | None
    cache_dir: Path
    out_dir: Path
    work_dir: Path
    shared: dict[str, Any] = field(default_factory=dict)  # results reused across benchmarks

    def request(self, num_threads: int = 1) -> Any:
        """The ``BenchRequest`` for the benchmarks' profile (CPU, ``num_threads`` threads)."""
        from ckd_tune.benches import BenchRequest

        register_profile(self.settings)
        return BenchRequest(
            bench="glue",
            task=self.settings.task,
            profile=BENCH_PROFILE,
            data_dir=self.data_dir,
            cache_dir=self.cache_dir,
            device="cpu",
            num_threads=num_threads,
        )

    @cached_property
    def prepared(self) -> Any:
        """The prepared GLUE bench (data, cached teacher + logits, student builder)."""
        from ckd_tune.benches import get_bench

        t0 = time.perf_counter()
        prepared = get_bench("glue").prepare(self.request())
        self.shared["prepare_seconds"] = time.perf_counter() - t0
        return prepared

    def teacher_info(self) -> dict[str, Any]:
        """How the teacher was obtained (for the result's settings)."""
        t = self.prepared.teacher
        return {
            "name": t.name,
            "fingerprint": t.fingerprint,
            "reused_from_cache": t.reused,
            "train_seconds": t.train_seconds,
            "val": t.metrics.get("val"),
        }

    def search_args(self) -> list[str]:
        """CLI flags every benchmark sweep shares (data, cache, no report)."""
        args = ["--bench", "glue", "--task", self.settings.task, "--profile", BENCH_PROFILE]
        if self.data_dir is not None:
            args += ["--data-dir", str(self.data_dir)]
        return [*args, "--cache-dir", str(self.cache_dir), "--no-report", "--quiet"]

    def settings_dict(self, **extra: Any) -> dict[str, Any]:
        """The run settings plus benchmark-specific ``extra`` entries."""
        return {
            **asdict(self.settings),
            "data_dir": str(self.data_dir) if self.data_dir else None,
            "cache_dir": str(self.cache_dir),
            "ray_worker_niceness": ray_worker_niceness(),
            **extra,
        }


NICENESS_ENV = "RAY_worker_niceness"
"""Ray starts worker processes (trials) at this niceness; Ray's default is 15."""


def ray_worker_niceness() -> int:
    """The niceness Ray gives trial processes here (``$RAY_worker_niceness``, else Ray's 15)."""
    return int(os.environ.get(NICENESS_ENV, "15"))


def with_overrides(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with some fields replaced (e.g. from command-line overrides)."""
    return replace(settings, **{k: v for k, v in changes.items() if v is not None})


def machine_info() -> dict[str, Any]:
    """CPU count, platform, library versions, CUDA availability and current load."""
    import mlflow
    import optuna
    import ray
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__,
        "torch_threads_default": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "ray": ray.__version__,
        "optuna": optuna.__version__,
        "mlflow": mlflow.__version__,
        "load_average": load_average(),
    }
    try:
        info["memory_total_gb"] = round(psutil().virtual_memory().total / 2**30, 2)
    except Exception:  # no psutil anywhere: not worth failing for
        info["memory_total_gb"] = None
    return info


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages (a loaded machine makes timings noisy)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def psutil() -> Any:
    """The ``psutil`` module: installed, or the copy Ray vendors (``ray/thirdparty_files``)."""
    try:
        return importlib.import_module("psutil")
    except ImportError:
        importlib.import_module("ray")  # puts ray/thirdparty_files on sys.path
        return importlib.import_module("psutil")


def write_json(data: Any, path: Path) -> None:
    """Write ``data`` as indented JSON (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    tmp.replace(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | set):
        return list(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    return str(value)


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def mean(values: Sequence[float]) -> float | None:
    """The arithmetic mean, or None for no values."""
    return statistics.fmean(values) if values else None


def fmt_number(value: float | None, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals for a headline, or ``n/a`` when it is missing."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing or ``b`` is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b
