"""Subprocess entry: ``python -m benchmarks.search_entry ARGS`` runs ``python -m ckd_tune.search ARGS``.

Two additions, both without touching the package: the benchmarks' GLUE profile (read as JSON
from ``$CKD_BENCH_PROFILE``) is registered as ``--profile bench``, and on exit the driver's peak
resident memory (``VmHWM``) is written to ``$CKD_BENCH_RUSAGE`` when that is set.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

PROFILE_ENV = "CKD_BENCH_PROFILE"
RUSAGE_ENV = "CKD_BENCH_RUSAGE"


def _register(profile_json: str) -> None:
    from ckd_tune.benches import GLUE_PROFILES, Profile

    profile = Profile(**json.loads(profile_json))
    GLUE_PROFILES[profile.name] = profile  # the CLI offers every registered profile


def main(argv: list[str] | None = None) -> int:
    """Run the search CLI with the benchmark profile registered; returns its exit status."""
    from ckd_tune.search.cli import main as search_main

    if profile_json := os.environ.get(PROFILE_ENV):
        _register(profile_json)
    status = search_main(argv)
    if path := os.environ.get(RUSAGE_ENV):
        Path(path).write_text(json.dumps({"driver_peak_rss_mb": peak_rss_mb()}))
    return status


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    ``VmHWM`` from ``/proc/self/status`` where there is one: unlike ``ru_maxrss``, which Linux
    carries over ``fork`` + ``exec`` (a child of a big parent starts at the parent's peak), it
    belongs to this process's own address space.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # macOS: bytes; Linux: kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


if __name__ == "__main__":
    sys.exit(main())
