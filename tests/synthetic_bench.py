"""A synthetic bench for fast tests of what runs on a prepared bench (the trainable, the report):
the points task of ``conftest.py``, a tiny MLP student and a cached teacher whose logits are the
labels plus noise."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ckd_tune.benches import PreparedBench, Profile
from ckd_tune.config import TrainConfig
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


def make_prepared() -> PreparedBench:
    """The synthetic bench, prepared: 3 epochs of batch 16 at lr 0.01 by default."""
    data = make_points_task()
    g = torch.Generator().manual_seed(7)
    logits = {}
    for split in ("train", "val", "test"):
        labels = torch.as_tensor(data.split(split).labels)
        noise = torch.randn(len(labels), 3, generator=g)
        logits[split] = F.one_hot(labels, 3).float() * 4 + noise
    metrics = {s: data.metric(logits[s].numpy(), data.split(s).labels) for s in ("val", "test")}
    teacher = Teacher("synthetic teacher", "fp-test", metrics, logits)
    return PreparedBench(
        bench="points",
        task="points",
        profile=PROFILE,
        data=data,
        teacher=teacher,
        teacher_signal=CachedTeacher(logits["train"]),
        build_student=build_tiny,
        base_config=TrainConfig(epochs=3, batch_size=16, lr=1e-2),
    )
