"""Shared fixtures: a tiny synthetic task for loop tests, and the data directories.

``glue_dir`` and ``cifar_dir`` are generated (:mod:`tests.fake_data`), so every test runs on
any clone. Tests of the real staged data in ``../shared/data`` are marked
``@pytest.mark.real_data("<folder>")``: they run where that folder exists and are deselected
(not skipped) elsewhere; the suite's coverage never depends on them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score
from torch import nn
from torch.utils.data import Dataset

from ckd_tune.data import TaskData
from tests.fake_data import FakeGlue, freeze, write_glue, write_imagefolder

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "real_data(folder): a check of the staged real data in ../shared/data/<folder>; "
        "deselected where that folder is absent",
    )


def _real_data_folder(item: pytest.Item) -> Path | None:
    marker = item.get_closest_marker("real_data")
    return None if marker is None else REAL_DATA / marker.args[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the ``real_data`` checks whose folder is absent."""
    folders = {item: _real_data_folder(item) for item in items}
    absent = [item for item, folder in folders.items() if folder and not folder.is_dir()]
    if absent:
        config.hook.pytest_deselected(items=absent)
        items[:] = [item for item in items if item not in absent]


def pytest_report_header(config: pytest.Config) -> str:
    state = "present" if REAL_DATA.is_dir() else "absent: real_data checks deselected"
    return f"real data {REAL_DATA}: {state}; the suite runs on generated data"


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
def fake_glue(tmp_path_factory: pytest.TempPathFactory) -> FakeGlue:
    """The generated GLUE directory (read-only, as the staged one) and the rows it holds."""
    glue = write_glue(tmp_path_factory.mktemp("glue"))
    freeze(glue.root)
    return glue


@pytest.fixture(scope="session")
def glue_dir(fake_glue: FakeGlue) -> Path:
    """A GLUE directory in the official TSV layout: SST-2, CoLA, MRPC, RTE, STS-B, QNLI (dev)."""
    return fake_glue.root


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only CIFAR-10 ImageFolder tree of JPEGs (36 train, 8 test images per class)."""
    root = tmp_path_factory.mktemp("cifar10")
    write_imagefolder(root)
    return freeze(root)


@pytest.fixture
def real_data_dir(request: pytest.FixtureRequest) -> Path:
    """The staged folder named by the test's ``real_data`` marker."""
    folder = _real_data_folder(request.node)
    assert folder is not None, "real_data_dir needs @pytest.mark.real_data(<folder>)"
    return folder
