"""The Ray Tune function trainable: one trial = one :func:`ckd_tune.train.train` run.

It reports every epoch with a checkpoint, resumes from the latest checkpoint when Ray
restarts it, and reads the shared bench (tokenised data, teacher logits) from the object
store through :func:`make_trainable`'s ``tune.with_parameters``: nothing a trial reads is a
path of the driver's machine or working directory, so a trial runs (and resumes) on any node.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from ray import tune
from ray.tune import Checkpoint

from ckd_tune.benches import PreparedBench
from ckd_tune.errors import NonFiniteLossError
from ckd_tune.train import train

STATE_FILE = "state.pt"
FAILURE_FILE = "nonfinite_loss.txt"

log = logging.getLogger(__name__)


def trial_device() -> str:
    """The device of this Ray trial (or task): ``"cuda"`` when Ray assigned it a GPU that CUDA
    sees (Ray exposes only the assigned ones), else ``"cpu"``. A GPU that is only logical (a node
    started with ``--num-gpus`` on a host or image without CUDA) gets one warning line and CPU."""
    import ray

    gpu_ids = ray.get_gpu_ids() if ray.is_initialized() else []  # (it would start a Ray)
    if not gpu_ids:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    log.warning(
        "Ray assigned GPU ids %s but CUDA is not available in this worker; training on CPU",
        gpu_ids,
    )
    return "cpu"


def run_trial(config: dict[str, Any], prepared: PreparedBench) -> None:
    """Ray Tune function trainable (use :func:`make_trainable` to bind ``prepared``)."""
    train_config = prepared.base_config.replace(**config)  # the bench's settings + the sample
    device = trial_device()
    marker = Path(tune.get_context().get_trial_dir()) / FAILURE_FILE
    if marker.exists():  # a retry of a deterministic NaN would only fail again
        raise NonFiniteLossError(marker.read_text())

    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            resume = torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=True)

    def on_epoch(epoch: int, metrics: dict[str, float], state: Callable[[], dict]) -> None:
        with tempfile.TemporaryDirectory() as directory:
            torch.save(state(), Path(directory) / STATE_FILE)
            tune.report(metrics, checkpoint=Checkpoint.from_directory(directory))

    student = prepared.build_student(train_config.seed)
    try:
        train(
            train_config,
            prepared.data,
            student,
            prepared.signal_for(train_config.method),
            on_epoch=on_epoch,
            resume=resume,
            device=device,
        )
    except NonFiniteLossError as err:
        marker.write_text(str(err))
        raise


def make_trainable(prepared: PreparedBench, cpus: float, gpus: float) -> Any:
    """``run_trial`` with ``prepared`` in the object store and per-trial resources attached."""
    return tune.with_resources(
        tune.with_parameters(run_trial, prepared=prepared), {"cpu": cpus, "gpu": gpus}
    )
