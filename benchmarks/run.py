"""``python -m benchmarks``: run the performance benchmarks and write one JSON result each.

Examples::

    python -m benchmarks --quick                       # all of them, about 10 minutes on 2 cores
    python -m benchmarks --only logit_cache,memory     # a selection, full sizes
    python -m benchmarks --list
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import (
    bench_batching,
    bench_logit_cache,
    bench_scaling,
    bench_search,
    bench_step,
    bench_trainable,
)
from benchmarks.common import (
    MODES,
    NICENESS_ENV,
    BenchResult,
    Context,
    load_average,
    machine_info,
    with_overrides,
    write_json,
)

BENCHMARKS: dict[str, Callable[[Context], BenchResult]] = {
    bench_trainable.NAME: bench_trainable.run,
    bench_logit_cache.NAME: bench_logit_cache.run,
    bench_search.NAME: bench_search.run,
    bench_scaling.SCALING: bench_scaling.run_scaling,
    bench_scaling.MEMORY: bench_scaling.run_memory,
    bench_batching.NAME: bench_batching.run,
    bench_step.NAME: bench_step.run,
}
"""Name -> benchmark, in the order they run."""

SUMMARIES = {
    bench_trainable.NAME: "student examples/s in the Ray trainable vs train() (target >= 95%)",
    bench_logit_cache.NAME: "KD trial time, cached teacher logits vs live teacher (>= 1.5x)",
    bench_search.NAME: "trial-epochs to near-best, TPE+ASHA vs random+FIFO (<= 0.5x)",
    bench_scaling.SCALING: "sweep wall time, 1 vs 2 concurrent trials (>= 1.5x)",
    bench_scaling.MEMORY: "peak RSS of driver and trials, 1 vs 2 concurrent (growth <= 1.10x)",
    bench_batching.NAME: "examples/s and test accuracy, length-grouped vs shuffled batches (>= 1.5x)",
    bench_step.NAME: "student training step vs FLOP + optimizer-bandwidth estimate (<= 1.5x)",
}

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def build_parser() -> argparse.ArgumentParser:
    """The runner's argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Performance benchmarks of ckd_tune: trainable overhead, teacher-logit cache, "
        "search efficiency (TPE+ASHA vs random+FIFO), concurrency scaling, memory, length-grouped "
        "batching and the training step against a compute estimate. Each writes "
        "<out>/<name>.json; a table is printed at the end.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, about 10 minutes on 2 CPU cores (default: full sizes, about 80 minutes)",
    )
    p.add_argument(
        "--only",
        type=_names,
        default=list(BENCHMARKS),
        help=f"comma-separated benchmarks to run, from {', '.join(BENCHMARKS)}",
    )
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where <name>.json results go")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="GLUE data in the TSV layout (default: $CKD_TUNE_DATA, else ../shared/data/glue "
        "relative to the current directory)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="teacher + logit cache, shared with the CLI so the teacher is trained once "
        "(default: $CKD_TUNE_CACHE, else ~/.cache/ckd_tune)",
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where sweeps, Ray results and the throw-away MLflow database go "
        "(default: a temporary directory, removed at the end unless --keep-work)",
    )
    p.add_argument("--keep-work", action="store_true", help="keep the work directory")
    p.add_argument("--repeats", type=int, help="override the mode's repetitions per timed pair")
    p.add_argument(
        "--ray-worker-niceness",
        type=int,
        default=None,
        help="niceness of Ray's trial processes (sets $RAY_worker_niceness; Ray's default 15 "
        "deprioritises trials against the bare loop when other load shares the cores)",
    )
    return p


def _names(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(BENCHMARKS)}"
        )
    return [n for n in BENCHMARKS if n in names]  # run in the registry's order


def make_context(args: argparse.Namespace, work_dir: Path) -> Context:
    """The context of this invocation: settings of the mode, resolved paths."""
    from ckd_tune import cache
    from ckd_tune.data.tasks import default_glue_dir

    settings = with_overrides(MODES["quick" if args.quick else "full"], repeats=args.repeats)
    data_dir = args.data_dir or default_glue_dir()
    return Context(
        settings=settings,
        data_dir=data_dir.resolve() if data_dir else None,
        cache_dir=(args.cache_dir or cache.default_cache_dir()).expanduser().resolve(),
        out_dir=args.out.resolve(),
        work_dir=work_dir.resolve(),
    )


def run_one(name: str, ctx: Context, machine: dict[str, Any]) -> dict[str, Any]:
    """Run benchmark ``name``, write its JSON, return the written record (or the error's)."""
    print(f"== {name} ({ctx.settings.mode})", flush=True)
    load_before = load_average()
    t0 = time.perf_counter()
    try:
        record = BENCHMARKS[name](ctx).to_json()
    except Exception as err:
        record = {
            "name": name,
            "error": f"{type(err).__name__}: {err}",
            "traceback": traceback.format_exc(),
            "headline": f"ERROR: {type(err).__name__}: {str(err).splitlines()[0][:80]}",
            "target": {"met": False},
        }
        print(record["traceback"], file=sys.stderr, flush=True)
    seconds = time.perf_counter() - t0
    record = {
        **record,
        "mode": ctx.settings.mode,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "seconds": round(seconds, 1),
        "machine": {
            **machine,
            "load_average_before": load_before,
            "load_average_after": load_average(),
        },
    }
    write_json(record, ctx.out_dir / f"{name}.json")
    print(f"   {record['headline']}  [{seconds:.0f} s]", flush=True)
    return record


def print_table(records: list[dict[str, Any]]) -> None:
    """One row per benchmark: headline, target met, seconds."""
    rows = [("benchmark", "met", "time", "result")]
    for r in records:
        met = "ERROR" if "error" in r else ("yes" if r["target"]["met"] else "NO")
        rows.append((r["name"], met, f"{r['seconds']:.0f} s", r["headline"]))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    print()
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3])


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks; 0 when all ran (targets met or not), 1 when one crashed."""
    args = build_parser().parse_args(argv)
    if args.list:
        for name in BENCHMARKS:
            print(f"{name:20s} {SUMMARIES[name]}")
        return 0
    if args.repeats is not None and args.repeats < 1:
        print("python -m benchmarks: error: --repeats must be >= 1", file=sys.stderr)
        return 2
    if args.ray_worker_niceness is not None:  # inherited by every Ray started from here on
        os.environ[NICENESS_ENV] = str(args.ray_worker_niceness)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="ckd_bench-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    ctx = make_context(args, work_dir)
    if ctx.data_dir is None:
        print(
            "python -m benchmarks: note: no local GLUE data (--data-dir / $CKD_TUNE_DATA); "
            "the hub will be used",
            file=sys.stderr,
        )
    machine = machine_info()
    print(
        f"benchmarks ({ctx.settings.mode}): {', '.join(args.only)}; results -> {ctx.out_dir}; "
        f"work dir {work_dir}; {machine['cpu_count']} CPUs, load {machine['load_average']}",
        flush=True,
    )
    try:
        records = [run_one(name, ctx, machine) for name in args.only]
    finally:
        if not args.keep_work and args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    print_table(records)
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
