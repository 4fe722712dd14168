"""How long a task's sweep will take on this machine, said before it starts.

:func:`probe_glue` loads a GLUE task's splits as the sweep will (sizes fitted to the task) and
times a few real training steps of the profile's student and teacher (one thread, as a trial
runs; the teacher's time is then divided among the cores it trains on) and the student's
evaluation, on the task's own batches. :func:`estimate` multiplies those speeds by the sweep's work (search trials and
re-runs, epochs, examples) at the sweep's concurrency. It leaves out Ray's and MLflow's
overheads, so a study rescales the tasks still to come by how the finished ones compared
(:func:`calibrated`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ckd_tune.benches import GLUE_PROFILES, BenchRequest, Profile, load_glue_task

PROBE_STEPS = 3  # timed training steps per model (after one untimed warm-up step)


@dataclass(frozen=True)
class Speed:
    """A task's split sizes and the measured seconds per example on this machine."""

    task: str
    sizes: Mapping[str, int]  # split -> examples (train, val, test, teacher_train)
    student_train: float  # seconds per training example of one student trial (one thread)
    student_eval: float  # seconds per evaluated example of a student (one thread)
    teacher_train: float  # seconds per training example of the teacher on every core


def probe_glue(request: BenchRequest) -> Speed:
    """Load ``request.task`` as the sweep will and time its student's and teacher's steps."""
    import torch

    from ckd_tune.config import TrainConfig
    from ckd_tune.models import TextModelSpec
    from ckd_tune.train import predict, train_loader

    profile = GLUE_PROFILES[request.profile]
    student_name = request.student or profile.student
    data = load_glue_task(request)
    config = TrainConfig(epochs=1, batch_size=profile.batch_size)
    batches = []
    for batch in train_loader(config, data, 0):
        batches.append(batch)
        if len(batches) == PROBE_STEPS + 1:
            break
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(max(1, request.num_threads))
        layers = None if request.student else profile.student_layers
        student = TextModelSpec(student_name, data.num_labels, layers).build()
        student_train = _train_seconds(student, batches)
        n_eval = min(len(data.val), 4 * config.batch_size)
        t0 = time.perf_counter()
        predict(student, torch.utils.data.Subset(data.val, range(n_eval)), data.collate)
        student_eval = (time.perf_counter() - t0) / n_eval
        teacher_train = 0.0
        if not request.teacher:  # timed on one thread too, then shared by every core
            teacher = TextModelSpec(profile.teacher, data.num_labels).build()
            teacher_train = _train_seconds(teacher, batches[:2]) / (os.cpu_count() or 1)
    finally:
        torch.set_num_threads(threads)
    sizes = {split: len(data.split(split)) for split in ("train", "val", "test")}
    if data.teacher_train is not None:
        sizes["teacher_train"] = len(data.teacher_train)
    return Speed(data.name.split("/")[-1], sizes, student_train, student_eval, teacher_train)


def _train_seconds(model: object, batches: Sequence[Mapping]) -> float:
    """Seconds per example of a training step of ``model`` (forward, backward, AdamW) on
    ``batches``, the first of which only warms up."""
    import torch
    import torch.nn.functional as F

    from ckd_tune.train import logits_of, model_inputs

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    seconds, examples = 0.0, 0
    for i, batch in enumerate(batches):
        t0 = time.perf_counter()
        loss = F.cross_entropy(logits_of(model(**model_inputs(batch))).float(), batch["labels"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i:
            seconds += time.perf_counter() - t0
            examples += batch["labels"].shape[0]
    return seconds / max(1, examples)


@dataclass(frozen=True)
class Estimate:
    """Seconds each part of a task's sweep should take on this machine."""

    teacher: float  # 0 when the teacher is given (--teacher)
    search: float
    reruns: float

    @property
    def total(self) -> float:
        """The three parts together."""
        return self.teacher + self.search + self.reruns


def estimate(
    speed: Speed,
    profile: Profile,
    *,
    trials: Sequence[int],
    reruns: int,
    epochs: int,
    concurrent: int,
) -> Estimate:
    """The sweep's time: each method's search trials (``trials``, one method after the other)
    and ``reruns`` seed re-runs, all of ``epochs`` epochs and ``concurrent`` at once, plus the
    teacher's training and its logits."""
    sizes = speed.sizes
    per_epoch = sizes["train"] * speed.student_train + sizes["val"] * speed.student_eval
    waves = sum(math.ceil(n / concurrent) for n in trials)
    search = waves * epochs * per_epoch
    rerun = epochs * per_epoch + sizes["test"] * speed.student_eval
    teacher_rows = sizes.get("teacher_train", sizes["train"])
    # the teacher's forward for its logits costs about a third of a training step per example
    scored = sum(sizes.values())
    teacher = speed.teacher_train * (profile.teacher_epochs * teacher_rows + scored / 3)
    return Estimate(teacher, search, math.ceil(reruns / concurrent) * rerun)


def calibrated(
    estimates: Mapping[str, float], measured: Mapping[str, float]
) -> tuple[float, dict[str, float]]:
    """The ratio measured/estimated over the finished tasks and every task's estimate scaled by
    it (1.0 and the estimates as they are before any task has finished)."""
    done = [t for t in measured if estimates.get(t)]
    ratio = sum(measured[t] for t in done) / sum(estimates[t] for t in done) if done else 1.0
    return ratio, {t: e * ratio for t, e in estimates.items()}
