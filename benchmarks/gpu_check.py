"""``python -m benchmarks.gpu_check``: the GPU path, checked on a real GPU in about 3 minutes.

What CPU hosts cannot show (their GPUs in tests are Ray's logical ones):

1. ``loop``: the training loop on CUDA next to CPU (GLUE SST-2 ``smoke`` profile, vanilla KD,
   same seed): bfloat16 autocast where the GPU computes it natively (its matmuls give bfloat16),
   pinned training batches, a finite loss, and the time per epoch on each device.
2. ``packed``: the search CLI with ``--gpus-per-trial 0.25`` on a fresh local Ray (it sees the
   GPU): 4 trials, no ``--max-concurrent`` (the default counts GPUs). All 4 ran at once (each
   trial's MLflow run started before any ended), none says it fell back to CPU, and
   ``nvidia-smi`` (polled) shows how many trial processes held the GPU at once (information
   only: inside a container it may list none).

Writes ``gpu_check.json`` (``--out``) with every measurement and each check's verdict; exits 1
if a check failed, 2 without a CUDA device. Run from the repository root, on a machine with one
GPU and the package installed::

    python -m benchmarks.gpu_check --data-dir ../shared/data/glue
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import machine_info, write_json

LOGICAL_GPU = "but CUDA is not available in this worker; training on CPU"  # ckd_tune.trainable
TRIALS = 4


def loop_check(data_dir: Path | None, cache_dir: Path) -> dict[str, Any]:
    """Train one kd student on CUDA and on CPU; autocast dtype, pinned batches, epoch times."""
    import torch

    from ckd_tune.benches import BenchRequest, get_bench
    from ckd_tune.train import autocast, train, train_loader, uses_bf16

    cuda = torch.device("cuda")
    request = BenchRequest(
        bench="glue", profile="smoke", data_dir=data_dir, cache_dir=cache_dir, device="cuda"
    )
    prepared = get_bench("glue").prepare(request)
    config = prepared.base_config.replace(method="kd", epochs=2, seed=1)
    layer = torch.nn.Linear(8, 8).to(cuda)
    with autocast(cuda):
        dtype = layer(torch.ones(2, 8, device=cuda)).dtype
    batch = next(iter(train_loader(config, prepared.data, 0, pin_memory=True)))
    result: dict[str, Any] = {
        "bf16_native": uses_bf16(cuda),
        "autocast_dtype": str(dtype),
        "batches_pinned": all(t.is_pinned() for t in batch.values()),
    }
    for device in ("cuda", "cpu"):
        t0 = time.perf_counter()
        run = train(
            config,
            prepared.data,
            prepared.build_student(config.seed),
            prepared.teacher_signal,
            device=device,
        )
        result[device] = {
            "seconds_per_epoch": (time.perf_counter() - t0) / config.epochs,
            "train_loss": run.history[-1]["train_loss"],
            "best_val_score": run.best_score,
        }
    want = torch.bfloat16 if result["bf16_native"] else torch.float32
    result["checks"] = {
        "autocast": dtype == want,
        "pinned": result["batches_pinned"],
        "finite_loss": all(math.isfinite(result[d]["train_loss"]) for d in ("cuda", "cpu")),
    }
    return result


def gpu_pids() -> set[int]:
    """Processes holding a CUDA context on any GPU (``nvidia-smi``; none without it)."""
    if shutil.which("nvidia-smi") is None:
        return set()
    out = subprocess.run(
        ["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return {int(line) for line in out.split() if line.strip().isdigit()}


def packed_check(data_dir: Path | None, cache_dir: Path, work: Path) -> dict[str, Any]:
    """The CLI with ``--gpus-per-trial 0.25``: how many trial processes held the GPU at once."""
    args = [sys.executable, "-m", "ckd_tune.search", "--bench", "glue", "--profile", "smoke"]
    args += ["--methods", "kd", "--num-samples", str(TRIALS), "--max-epochs", "2"]
    args += ["--gpus-per-trial", "0.25", "--no-report", "--verbose", "--sweep", "gpu"]
    args += ["--output", str(work / "runs"), "--cache-dir", str(cache_dir)]
    args += ["--tracking-uri", f"sqlite:///{work / 'mlflow.db'}"]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    env = {**os.environ, "RAY_DEDUP_LOGS": "0"}
    env.pop("RAY_ADDRESS", None)
    seen: list[set[int]] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def poll() -> None:
        while proc.poll() is None:
            seen.append(gpu_pids() - {proc.pid})  # the driver holds the GPU while preparing
            time.sleep(0.5)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    stdout, stderr = proc.communicate()
    poller.join()
    fallbacks = sum(LOGICAL_GPU in line for line in (stdout + stderr).splitlines())
    most = max((len(pids) for pids in seen), default=0)
    runs = trial_runs(f"sqlite:///{work / 'mlflow.db'}") if proc.returncode == 0 else []
    return {
        "status": proc.returncode,
        "seconds": time.perf_counter() - t0,
        "max_trial_processes_on_gpu": most,
        "cpu_fallback_lines": fallbacks,
        "stderr_tail": stderr[-3000:] if proc.returncode else "",
        "checks": {
            "sweep_ok": proc.returncode == 0,
            "packed": len(runs) == TRIALS
            and max(r.info.start_time for r in runs) < min(r.info.end_time for r in runs),
            "on_cuda": fallbacks == 0,
        },
    }


def trial_runs(uri: str) -> list[Any]:
    """The sweep's trial runs in MLflow (start and end times: when Ray started and ended each)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("ckd_tune/glue/sst2")
    return client.search_runs([experiment.experiment_id], "tags.role = 'trial'")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__)
    p.add_argument("--data-dir", type=Path, help="GLUE TSV directory (default: the CLI's)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_check.json"))
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a GPU machine", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    try:
        result = {
            "machine": machine_info(),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
            "loop": loop_check(args.data_dir, work / "cache"),
            "packed": packed_check(args.data_dir, work / "cache", work),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    checks = {
        f"{part}.{name}": ok
        for part in ("loop", "packed")
        for name, ok in result[part]["checks"].items()
    }
    result["passed"] = all(checks.values())
    write_json(result, args.out)
    print(json.dumps(checks, indent=2), f"\nwritten: {args.out}", sep="")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
