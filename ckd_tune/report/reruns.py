"""Re-runs: :func:`rerun` trains one best configuration with one seed and scores its
best-validation weights on the test split; :func:`run_reruns` runs many, as Ray tasks when Ray is
up, and :func:`_log_rerun` records each as one MLflow run.

A :class:`RerunJob` names its row of the report (``arm``): a method's own name, or the positive
control (:data:`CONTROL`: vanilla KD's best config trained on teacher logits shuffled across
examples)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ckd_tune.config import TrainConfig
from ckd_tune.errors import NonFiniteLossError

if TYPE_CHECKING:
    from ckd_tune.benches import PreparedBench
    from ckd_tune.data import DatasetInput

CONTROL = "kd_shuffled_teacher"  # the positive control's row: kd from mismatched teacher logits


@dataclass(frozen=True)
class RerunJob:
    """One re-run: the report row (``arm``), the method and config it trains, and the seed."""

    arm: str
    method: str
    config: Mapping[str, Any] = field(hash=False)
    seed: int
    shuffled_teacher: bool = False


def rerun(
    prepared: PreparedBench,
    job: RerunJob,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Train ``job``'s config with its seed for all epochs; score the best-val weights on test.

    Returns a record with ``status`` ``"ok"`` (history, best epoch, val and test metrics, the
    test predictions, ``state``: the best weights on the CPU) or ``"failed"`` (non-finite loss;
    partial history).
    """
    from ckd_tune.teacher import ShuffledTeacher
    from ckd_tune.train import predict, train

    config = TrainConfig.from_flat({**job.config, "method": job.method, "seed": job.seed})
    metric = prepared.data.main_metric
    record: dict[str, Any] = {
        "arm": job.arm,
        "method": job.method,
        "seed": job.seed,
        "status": "ok",
        "error": None,
    }
    t0 = time.perf_counter()

    def failed(error: str, history: list[dict[str, float]]) -> dict[str, Any]:
        record.update(status="failed", error=error, history=list(history),
                      seconds=time.perf_counter() - t0)  # fmt: skip
        return record

    student = prepared.build_student(job.seed)
    teacher = prepared.signal_for(job.method)
    if job.shuffled_teacher:
        teacher = ShuffledTeacher(teacher)
    try:
        result = train(config, prepared.data, student, teacher, device=device)
    except NonFiniteLossError as err:
        partial = getattr(err, "result", None)
        return failed(str(err), partial.history if partial is not None else [])
    if result.best_state is None:  # e.g. a correlation metric of constant predictions (NaN)
        return failed(f"the validation {metric} was never a number", result.history)
    student.load_state_dict(result.best_state)
    data = prepared.data
    logits, labels = predict(
        student, data.test, data.collate, batch_size=2 * config.batch_size, device=device
    )
    test = data.metric(logits, labels)
    if not _is_number(test.get(metric)):
        return failed(
            f"the test {metric} is not a number ({test.get(metric)}; constant predictions?)",
            result.history,
        )
    record.update(
        best_epoch=result.best_epoch,
        val_score=float(result.best_score),
        val={k: float(v) for k, v in result.best_metrics.items()},
        test={k: float(v) for k, v in test.items()},
        test_score=float(test[metric]),
        # what the bootstrap over test examples resamples: class indices, or values (regression)
        test_predictions=(logits.argmax(-1) if logits.shape[-1] > 1 else logits[:, 0]).tolist(),
        history=list(result.history),
        seconds=time.perf_counter() - t0,
        state={k: v.detach().cpu() for k, v in result.best_state.items()},
    )
    return record


def _rerun_task(prepared: PreparedBench, job: RerunJob) -> dict[str, Any]:
    """:func:`rerun` inside a Ray task, on the device a trial would use (:func:`trial_device`:
    the GPU Ray assigned it, else CPU, with a warning when that GPU is only logical)."""
    from ckd_tune.trainable import trial_device

    return rerun(prepared, job, trial_device())


def run_reruns(
    prepared: PreparedBench,
    jobs: Sequence[RerunJob],
    on_result: Callable[[dict[str, Any]], None],
    *,
    device: str = "cpu",
    cpus: float = 1.0,
    gpus: float = 0.0,
) -> None:
    """Run the jobs; ``on_result(record)`` in this process as each ends.

    In parallel as Ray tasks (``num_cpus=cpus, num_gpus=gpus``, the bench put in the object store
    once) when Ray is initialised, else one after another here. A task that crashes is recorded
    as a failed seed.
    """
    if not jobs:
        return
    import ray

    if not ray.is_initialized():
        for job in jobs:
            on_result(rerun(prepared, job, device))
        return
    bench_ref = ray.put(prepared)
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_rerun_task)
    pending = {task.remote(bench_ref, job): job for job in jobs}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(done[0])
        try:
            record = ray.get(done[0])
        except ray.exceptions.RayError as err:
            lines = [line for line in str(err).splitlines() if line.strip()]
            record = {
                "arm": job.arm,
                "method": job.method,
                "seed": job.seed,
                "status": "failed",
                "error": lines[-1] if lines else type(err).__name__,
                "history": [],
                "seconds": 0.0,
            }
        on_result(record)


def _log_rerun(
    client: Any,
    experiment_id: str,
    tags: Mapping[str, str],
    record: Mapping[str, Any],
    flat_config: Mapping[str, Any],
    inputs: Sequence[DatasetInput] = (),
) -> str:
    """One MLflow run for one re-run (named ``kd-seed2``): config params, the datasets it used,
    per-epoch metrics, test metrics, status."""
    from mlflow.entities import Metric, Param, RunTag

    from ckd_tune.tracking import log_datasets

    run_tags = {
        **tags,
        "method": record["method"],
        "arm": record["arm"],
        "seed": str(record["seed"]),
        "mlflow.runName": f"{record['arm']}-seed{record['seed']}",
    }
    now = int(time.time() * 1000)  # the run is logged when the re-run has ended
    start = now - int(1000 * float(record.get("seconds") or 0.0))
    run_id = client.create_run(experiment_id, start_time=start, tags=run_tags).info.run_id
    log_datasets(client, run_id, inputs)
    config = {**flat_config, "method": record["method"], "seed": record["seed"]}
    params = [Param(k, str(v)) for k, v in sorted(config.items())]
    metrics = [
        Metric(k, float(v), now, int(h.get("epoch", i + 1)))
        for i, h in enumerate(record.get("history", []))
        for k, v in h.items()
        if _is_number(v)
    ]
    if record["status"] == "ok":
        last = int(record["history"][-1]["epoch"]) if record.get("history") else 0
        metrics += [
            Metric(f"test_{k}", v, now, last) for k, v in record["test"].items() if _is_number(v)
        ]
        metrics += [Metric("test_score", record["test_score"], now, last)]
        metrics += [Metric("rerun_best_epoch", record["best_epoch"], now, last)]
    for i in range(0, len(params), 100):  # MLflow's batch limits: 100 params, 1000 metrics
        client.log_batch(run_id, params=params[i : i + 100])
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i : i + 1000])
    if record["status"] == "ok":
        client.set_terminated(run_id, status="FINISHED", end_time=now)
    else:
        client.log_batch(run_id, tags=[RunTag("failure_reason", str(record.get("error"))[:5000])])
        client.set_terminated(run_id, status="FAILED", end_time=now)
    return run_id


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
