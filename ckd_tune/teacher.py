"""Teachers: fine-tuned once per (base model, data, settings) and cached; logits cached likewise.

Trials never run the teacher on text benches: its logits for every split are computed once
per (teacher fingerprint, data fingerprint) and read from the cache, checksummed. A teacher
assistant (TAKD) is a smaller teacher distilled from the teacher, cached the same way.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ckd_tune import cache
from ckd_tune.config import TrainConfig
from ckd_tune.data import SPLITS, TaskData
from ckd_tune.fingerprint import fingerprint
from ckd_tune.train import TeacherFn, autocast, logits_of, model_inputs, predict, train

log = logging.getLogger(__name__)


@dataclass
class Teacher:
    """A ready teacher: its identity, validation/test metrics and (text benches) cached logits."""

    name: str
    fingerprint: str
    metrics: dict[str, dict[str, float]]  # split -> metrics
    logits: dict[str, Tensor] = field(default_factory=dict, repr=False)  # split -> (n, num_logits)
    train_seconds: float = 0.0
    reused: bool = False


def teacher_fingerprint(
    weights: str, data: str | None = None, config: TrainConfig | None = None
) -> str:
    """The identity of a teacher: what its cache entries (weights, logits) are named after.

    ``weights``: the fingerprint of the weights it is (a ready teacher) or starts from (one
    trained here), e.g. a model spec's, which covers the files of a local model directory.
    For a teacher trained here also ``data`` (the fingerprint of the examples it is trained
    and selected on) and ``config`` (its training settings, as :func:`fine_tune_teacher`
    uses them). Settings that change how fast it trains but not what it learns
    (``num_threads``) are left out, so a different ``--cpus-per-trial`` or machine reuses it.
    """
    settings = None
    if config is not None:
        settings = config.replace(method="none", num_threads=1).to_flat()
    return fingerprint("teacher", weights, data, settings)


def assistant_fingerprint(teacher: str, weights: str, data: str, config: TrainConfig) -> str:
    """The identity of a teacher assistant: the teacher it is distilled from (its fingerprint),
    the weights it starts from, the data it is trained and selected on, and its training
    settings (its distillation method's parameters included; ``num_threads`` left out)."""
    settings = config.replace(num_threads=1).to_flat()
    return fingerprint("assistant", teacher, weights, data, settings)


def cached_teacher(
    cache_dir: Path,
    key: str,
    build: Callable[[Path], dict[str, Any]],
    files: list[str],
) -> tuple[Path, dict[str, Any], bool]:
    """The cached teacher directory ``cache_dir/teachers/<key>``; ``build(tmp_dir)`` fills it if absent.

    ``build`` saves the model files named in ``files`` into the directory and returns metadata
    to keep. Returns ``(directory, metadata, reused)``. Safe against concurrent builders.
    """
    final = cache_dir / "teachers" / key
    with cache.locked(final):
        cache.remove_leftovers(final)  # a build killed mid-way (its half-written temp dir)
        if cache.checked_dir(final, files):
            return final, cache.read_json(final / "meta.json"), True
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=cache.leftover_prefix(final)))
        try:
            meta = build(tmp)
            cache.publish_dir(tmp, final, files, meta)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final, cache.read_json(final / "meta.json"), False


def fine_tune_teacher(
    data: TaskData,
    build_model: Callable[[int], nn.Module],
    config: TrainConfig,
    *,
    teacher: TeacherFn | None = None,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, dict[str, float]], float]:
    """Fine-tune a teacher on ``data.train`` (hard labels), keep its best validation epoch.

    With ``teacher`` (the signal of a trained teacher) the model is a teacher assistant instead:
    distilled from it by ``config.method``. Returns the model (best weights), its metrics per
    split and the training time in seconds.
    """
    model = build_model(config.seed)
    role = "teacher" if teacher is None else "assistant"
    t0 = time.perf_counter()

    def progress(epoch: int, metrics: dict[str, float], state: Callable[[], dict]) -> None:
        log.info("%s epoch %d/%d: val_score %.4f", role, epoch, config.epochs, metrics["val_score"])

    if teacher is None:
        config = config.replace(method="none")
    result = train(config, data, model, teacher, on_epoch=progress, device=device)
    seconds = time.perf_counter() - t0
    model.load_state_dict(result.best_state)
    return model, {"val": result.best_metrics}, seconds


def teacher_logits(
    model: nn.Module,
    data: TaskData,
    cache_dir: Path,
    teacher_fp: str,
    *,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
) -> dict[str, Tensor]:
    """The teacher's logits on every split, read from the cache or computed once and cached."""
    path = cache_dir / "logits" / f"{teacher_fp}-{data.fingerprint}.pt"
    with cache.locked(path):
        cache.remove_leftovers(path)
        cached = cache.load_tensors(path)
        if cached is not None and all(len(cached[s]) == len(data.split(s)) for s in SPLITS):
            return cached
        logits = {
            split: torch.from_numpy(
                predict(
                    model, data.split(split), data.collate, batch_size=batch_size, device=device
                )[0]
            )
            for split in SPLITS
        }
        cache.save_tensors(logits, path)
        return logits


class CachedTeacher:
    """Teacher signal from precomputed logits, looked up by the batch's ``index``."""

    def __init__(self, logits: Tensor) -> None:
        self.logits = logits

    def __call__(self, batch: dict[str, Tensor]) -> Tensor:
        return self.logits[batch["index"].cpu()].to(batch["labels"].device)


class LiveTeacher:
    """Teacher signal from a forward pass of ``model`` on the batch, without gradients."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()

    def __call__(self, batch: dict[str, Tensor]) -> Tensor:
        device = batch["labels"].device
        if next(self.model.parameters()).device != device:
            self.model.to(device)  # once per process: follow the student onto its device
        with torch.inference_mode(), autocast(device):
            return logits_of(self.model(**model_inputs(batch))).float()


class ShuffledTeacher:
    """A positive control: ``signal``'s logits given to the wrong examples.

    Cached logits are permuted once across the training examples (a fixed, seeded derangement:
    every example consistently gets another example's logits for the whole run); a live teacher
    (augmented images, no fixed example) gives each example its batch neighbour's logits (a roll
    by one). The teacher's knowledge is kept but no longer matches the inputs: vanilla KD from
    these logits is the control a bench must be able to tell apart from vanilla KD.
    """

    def __init__(self, signal: TeacherFn, seed: int = 0) -> None:
        self.signal = signal
        self.cached = None
        if isinstance(signal, CachedTeacher):
            n = len(signal.logits)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
            derangement = perm[(torch.argsort(perm) + 1) % n]  # the next one in a random cycle
            self.cached = CachedTeacher(signal.logits[derangement])

    def __call__(self, batch: dict[str, Tensor]) -> Tensor:
        if self.cached is not None:
            return self.cached(batch)
        return self.signal(batch).roll(1, dims=0)
