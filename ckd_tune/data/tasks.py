"""The benches' task tables and where their data is found: light, so the CLI checks a task
name, and reports a bad one, without loading PyTorch or a dataset.

GLUE: each task's files, columns, labels and metrics (:data:`GLUE_TASKS`); CIFAR: the two
datasets and their class counts. :func:`default_glue_dir` and :func:`default_cifar_dir` say
where data is read from when no ``--data-dir`` is given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ckd_tune.errors import UserInputError

DATA_ENV_VAR = "CKD_TUNE_DATA"
CIFAR_DATA_ENV_VAR = "CKD_TUNE_CIFAR_DATA"
CIFAR_NUM_CLASSES = {"cifar10": 10, "cifar100": 100}


@dataclass(frozen=True)
class GlueTask:
    """Where one GLUE task's texts and labels live, locally and on the hub, and how it is scored."""

    name: str  # Hugging Face ``glue`` config name, e.g. "sst2"
    dir_name: str  # local directory under the GLUE root, e.g. "SST-2"
    text_columns: tuple[str, ...]  # TSV column(s) holding the text (one sentence or a pair)
    label_column: str  # TSV column holding the label
    hub_text_columns: tuple[str, ...]  # the same texts' columns in the hub dataset
    labels: tuple[str, ...] | None  # TSV label strings in class-index order; None: regression
    metric_names: tuple[str, ...]  # keys of :func:`glue_metric`'s result
    main_metric: str  # the metric selection maximises
    headerless_columns: tuple[str, ...] | None = None  # column names of a TSV with no header
    dev_file: str = "dev.tsv"
    hub_dev_split: str = "validation"
    train_file: str = "train.tsv"
    hub_label_column: str = "label"
    phrase_groups: bool = False  # train rows include phrases of other rows (SST-2)

    @property
    def has_header(self) -> bool:
        """Whether the task's TSV files start with a header row."""
        return self.headerless_columns is None

    @property
    def is_regression(self) -> bool:
        """Whether the task is a regression (STS-B) rather than a classification."""
        return self.labels is None

    @property
    def num_labels(self) -> int:
        """Number of model outputs: the number of classes, or 1 for regression."""
        return 1 if self.labels is None else len(self.labels)

    def file_name(self, split: str) -> str:
        """The TSV file name of a labelled split ("train" or "dev")."""
        return self.train_file if split == "train" else self.dev_file


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")

GLUE_TASKS: Mapping[str, GlueTask] = MappingProxyType(
    {
        "sst2": GlueTask(
            name="sst2",
            dir_name="SST-2",
            text_columns=("sentence",),
            label_column="label",
            hub_text_columns=("sentence",),
            labels=_BINARY,
            metric_names=("accuracy",),
            main_metric="accuracy",
            phrase_groups=True,
        ),
        "cola": GlueTask(
            name="cola",
            dir_name="CoLA",
            text_columns=("sentence",),
            label_column="label",
            hub_text_columns=("sentence",),
            labels=_BINARY,
            metric_names=("mcc",),
            main_metric="mcc",
            headerless_columns=("source", "label", "original_mark", "sentence"),
        ),
        "mrpc": GlueTask(
            name="mrpc",
            dir_name="MRPC",
            text_columns=("#1 String", "#2 String"),
            label_column="Quality",
            hub_text_columns=("sentence1", "sentence2"),
            labels=_BINARY,
            metric_names=("f1", "accuracy"),
            main_metric="f1",
        ),
        "rte": GlueTask(
            name="rte",
            dir_name="RTE",
            text_columns=("sentence1", "sentence2"),
            label_column="label",
            hub_text_columns=("sentence1", "sentence2"),
            labels=_NLI2,
            metric_names=("accuracy",),
            main_metric="accuracy",
        ),
        "stsb": GlueTask(
            name="stsb",
            dir_name="STS-B",
            text_columns=("sentence1", "sentence2"),
            label_column="score",
            hub_text_columns=("sentence1", "sentence2"),
            labels=None,
            metric_names=("pearson", "spearman"),
            main_metric="pearson",
        ),
        "qnli": GlueTask(
            name="qnli",
            dir_name="QNLI",
            text_columns=("question", "sentence"),
            label_column="label",
            hub_text_columns=("question", "sentence"),
            labels=_NLI2,
            metric_names=("accuracy",),
            main_metric="accuracy",
        ),
        "qqp": GlueTask(
            name="qqp",
            dir_name="QQP",
            text_columns=("question1", "question2"),
            label_column="is_duplicate",
            hub_text_columns=("question1", "question2"),
            labels=_BINARY,
            metric_names=("f1", "accuracy"),
            main_metric="f1",
        ),
        "mnli": GlueTask(
            name="mnli",
            dir_name="MNLI",
            text_columns=("sentence1", "sentence2"),
            label_column="gold_label",
            hub_text_columns=("premise", "hypothesis"),
            labels=("entailment", "neutral", "contradiction"),
            metric_names=("accuracy",),
            main_metric="accuracy",
            dev_file="dev_matched.tsv",
            hub_dev_split="validation_matched",
        ),
    }
)

MAIN_METRIC: Mapping[str, str] = MappingProxyType(
    {name: spec.main_metric for name, spec in GLUE_TASKS.items()}
)


def glue_task(task: str) -> GlueTask:
    """The registry entry of ``task``; :class:`UserInputError` listing the valid ids if unknown."""
    try:
        return GLUE_TASKS[task]
    except (KeyError, TypeError):
        valid = ", ".join(GLUE_TASKS)
        raise UserInputError(f"unknown GLUE task {task!r}; valid tasks: {valid}") from None


def glue_task_present(data_dir: Path, task: str) -> bool:
    """Whether ``data_dir`` holds ``task``'s training and dev files (the official TSV layout)."""
    spec = glue_task(task)
    folder = Path(data_dir) / spec.dir_name
    return (folder / spec.train_file).is_file() and (folder / spec.dev_file).is_file()


def default_glue_dir() -> Path | None:
    """The GLUE directory to read when none is given explicitly.

    The value of the ``CKD_TUNE_DATA`` environment variable if it is set and non-empty (used as
    is, even if it does not exist, so a wrong setting is reported rather than ignored); else
    ``../shared/data/glue`` relative to the current working directory if that directory exists;
    else ``None``, meaning the data should come from the Hugging Face hub.
    """
    env = os.environ.get(DATA_ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    candidate = Path.cwd() / ".." / "shared" / "data" / "glue"
    if candidate.is_dir():
        return candidate.resolve()
    return None


def default_cifar_dir(name: str) -> Path | None:
    """Where ``name``'s data is looked for when the user gave no ``--data-dir``.

    ``$CKD_TUNE_CIFAR_DATA`` if set (non-empty); else, for ``cifar10`` only,
    ``../shared/data/cifar10-jpeg`` relative to the working directory if that folder exists;
    else ``None`` (meaning: download with torchvision).
    """
    check_cifar_name(name)
    env = os.environ.get(CIFAR_DATA_ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    if name == "cifar10":
        staged = Path.cwd().parent / "shared" / "data" / "cifar10-jpeg"
        if staged.is_dir():
            return staged.resolve()
    return None


def check_cifar_name(name: str) -> None:
    """UserInputError unless ``name`` is ``cifar10`` or ``cifar100``."""
    if name not in CIFAR_NUM_CLASSES:
        raise UserInputError(
            f"CIFAR task: name must be one of {sorted(CIFAR_NUM_CLASSES)}, got {name!r}"
        )
