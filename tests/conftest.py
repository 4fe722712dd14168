"""Shared fixtures: a tiny synthetic task for loop tests, and the staged data directories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score
from torch import nn
from torch.utils.data import Dataset

from ckd_tune.data import TaskData

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


class _Points(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y
        self.labels = y.numpy()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {"features": self.x[i], "labels": self.y[i], "index": i}


def _collate(items: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "features": torch.stack([it["features"] for it in items]),
        "labels": torch.stack([it["labels"] for it in items]),
        "index": torch.tensor([it["index"] for it in items]),
    }


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"accuracy": float(accuracy_score(labels, logits.argmax(-1)))}


class TinyNet(nn.Module):
    """A two-layer MLP taking ``features=`` (with dropout, so seeding matters)."""

    def __init__(self, dim: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, classes)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


def make_points_task(n: int = 96, dim: int = 8, classes: int = 3, seed: int = 0) -> TaskData:
    """A linearly separable 3-class problem split 64/16/16."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, classes, generator=g)
    x = torch.randn(n, dim, generator=g)
    y = (x @ w).argmax(-1)
    a, b = int(n * 2 / 3), int(n * 5 / 6)
    return TaskData(
        name="synthetic/points",
        num_labels=classes,
        train=_Points(x[:a], y[:a]),
        val=_Points(x[a:b], y[a:b]),
        test=_Points(x[b:], y[b:]),
        collate=_collate,
        metric=_accuracy,
        main_metric="accuracy",
        fingerprint=f"points-{seed}",
    )


@pytest.fixture
def points_task() -> TaskData:
    return make_points_task()


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    path = SHARED / "glue"
    if not path.is_dir():
        pytest.skip("staged GLUE data not found at ../shared/data/glue")
    return path
