"""A synthetic bench for fast tests of what runs on a prepared bench (the trainable, the report):
the points task of ``conftest.py``, a tiny MLP student and a cached teacher whose logits are the
labels plus noise (optionally a teacher assistant too, its logits the labels plus other noise)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ckd_tune.benches import PreparedBench, Profile
from ckd_tune.config import TrainConfig
from ckd_tune.data import TaskData
from ckd_tune.teacher import CachedTeacher, Teacher
from tests.conftest import TinyNet, make_points_task

PROFILE = Profile(
    "smoke", train_size=64, val_size=16, test_size=16, epochs=3, teacher_epochs=1,
    num_samples=3, seeds=2, batch_size=16,
)  # fmt: skip


def build_tiny(seed: int = 0) -> TinyNet:
    """The student of the synthetic bench, initialised from ``seed``."""
    torch.manual_seed(seed)
    return TinyNet()


def _noisy_teacher(data: TaskData, name: str, seed: int, scale: float) -> Teacher:
    """A cached teacher whose logits are ``scale`` x the one-hot labels plus seeded noise."""
    g = torch.Generator().manual_seed(seed)
    logits = {}
    for split in ("train", "val", "test"):
        labels = torch.as_tensor(data.split(split).labels)
        noise = torch.randn(len(labels), 3, generator=g)
        logits[split] = F.one_hot(labels, 3).float() * scale + noise
    metrics = {s: data.metric(logits[s].numpy(), data.split(s).labels) for s in logits}
    return Teacher(name, f"fp-{name.replace(' ', '-')}", metrics, logits)


def make_prepared(assistant: bool = False) -> PreparedBench:
    """The synthetic bench, prepared: 3 epochs of batch 16 at lr 0.01 by default; with
    ``assistant``, a teacher assistant too (trained in 2.5 s, fresh)."""
    data = make_points_task()
    teacher = _noisy_teacher(data, "synthetic teacher", 7, 4.0)
    helper = None
    if assistant:
        helper = _noisy_teacher(data, "synthetic assistant", 8, 2.0)
        helper.train_seconds = 2.5
    return PreparedBench(
        bench="points",
        task="points",
        profile=PROFILE,
        data=data,
        teacher=teacher,
        teacher_signal=CachedTeacher(teacher.logits["train"]),
        build_student=build_tiny,
        base_config=TrainConfig(epochs=3, batch_size=16, lr=1e-2),
        assistant=helper,
        assistant_signal=None if helper is None else CachedTeacher(helper.logits["train"]),
    )
