"""The task tables and default data locations: GLUE's tasks, CIFAR's names, where data is read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ckd_tune.data.glue import glue_metric
from ckd_tune.data.tasks import (
    CIFAR_DATA_ENV_VAR,
    GLUE_TASKS,
    MAIN_METRIC,
    check_cifar_name,
    default_cifar_dir,
    default_glue_dir,
    glue_task,
)
from ckd_tune.errors import UserInputError


def test_registry_covers_the_hub_configs() -> None:
    assert set(GLUE_TASKS) == {"sst2", "cola", "mrpc", "rte", "stsb", "qnli", "qqp", "mnli"}
    assert {t: s.num_labels for t, s in GLUE_TASKS.items()} == {
        "sst2": 2, "cola": 2, "mrpc": 2, "rte": 2, "stsb": 1, "qnli": 2, "qqp": 2, "mnli": 3,
    }  # fmt: skip
    assert [t for t, s in GLUE_TASKS.items() if not s.has_header] == ["cola"]
    assert GLUE_TASKS["mnli"].dev_file == "dev_matched.tsv"
    assert GLUE_TASKS["mnli"].hub_dev_split == "validation_matched"
    assert GLUE_TASKS["stsb"].is_regression
    assert MAIN_METRIC == {
        "sst2": "accuracy", "rte": "accuracy", "qnli": "accuracy", "mnli": "accuracy",
        "mrpc": "f1", "qqp": "f1", "cola": "mcc", "stsb": "pearson",
    }  # fmt: skip
    for task, spec in GLUE_TASKS.items():
        assert spec.main_metric in spec.metric_names
        with pytest.raises(AttributeError):
            spec.dir_name = "x"  # type: ignore[misc]
        n = 6
        logits = np.random.default_rng(0).normal(size=(n, spec.num_labels))
        labels = np.linspace(0, 5, n) if spec.is_regression else np.arange(n) % spec.num_labels
        assert set(glue_metric(task)(logits, labels)) == set(spec.metric_names)


def test_unknown_glue_task_lists_the_valid_ones() -> None:
    assert glue_task("rte") is GLUE_TASKS["rte"]
    with pytest.raises(UserInputError, match="sst3") as err:
        glue_task("sst3")
    assert all(task in str(err.value) for task in GLUE_TASKS)


def test_cifar_names() -> None:
    check_cifar_name("cifar100")
    with pytest.raises(UserInputError, match="svhn"):
        check_cifar_name("svhn")


def test_default_glue_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CKD_TUNE_DATA", str(tmp_path / "mine"))
    assert default_glue_dir() == tmp_path / "mine"
    monkeypatch.delenv("CKD_TUNE_DATA")
    work = tmp_path / "work" / "main"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    assert default_glue_dir() is None
    (tmp_path / "work" / "shared" / "data" / "glue").mkdir(parents=True)
    assert default_glue_dir() == (tmp_path / "work" / "shared" / "data" / "glue").resolve()


def test_default_cifar_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CIFAR_DATA_ENV_VAR, raising=False)
    work = tmp_path / "main"
    work.mkdir()
    monkeypatch.chdir(work)
    assert default_cifar_dir("cifar10") is None
    staged = tmp_path / "shared" / "data" / "cifar10-jpeg"
    staged.mkdir(parents=True)
    assert default_cifar_dir("cifar10") == staged.resolve()
    assert default_cifar_dir("cifar100") is None
    monkeypatch.setenv(CIFAR_DATA_ENV_VAR, str(tmp_path / "mine"))
    assert default_cifar_dir("cifar100") == tmp_path / "mine"
    monkeypatch.setenv(CIFAR_DATA_ENV_VAR, "")
    assert default_cifar_dir("cifar10") == staged.resolve()
    with pytest.raises(UserInputError):
        default_cifar_dir("svhn")
