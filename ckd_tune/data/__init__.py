"""Task data shared by every bench: three honest splits, a collate function and the metric.

``train`` and ``val`` are carved from the official training data (seeded; ``val`` is what the
search selects on); ``test`` is the official held-out split (GLUE dev, CIFAR test) that only the
report evaluates on. Optionally ``teacher_train``, also carved from the official training data,
holds the teacher's own training examples, disjoint from ``train`` and ``val`` (and sharing no
source sentence with them, see :mod:`ckd_tune.data.splits`), so the teacher's logits on the
student's training examples are not memorised labels; when it is ``None`` the teacher trains on
``train``. Items are dicts with the model inputs, ``labels`` and ``index`` (the item's position
in its split, used to look up cached teacher logits). Text splits also carry ``lengths`` (tokens
per item), which the training loop uses to batch similar lengths together, and ``words``
(whitespace words of the item's raw text(s)), which :meth:`TaskData.describe_splits` reports.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor
    from torch.utils.data import Dataset

Metric = Callable[[np.ndarray, np.ndarray], dict[str, float]]
SPLITS = ("train", "val", "test")
TEACHER_SPLIT = "teacher_train"
CONTEXTS = {"train": "training", "val": "validation", "test": "test", TEACHER_SPLIT: "training"}
"""What each split is used for, in MLflow's dataset-context words."""


@dataclass(frozen=True)
class DatasetInput:
    """One split as a run's input: ``name`` (``"glue/sst2/train"``), ``digest`` of the examples
    actually used, ``source`` (a local directory, or a hub id such as ``hf://datasets/...``),
    ``context`` (``training``, ``validation``, ``test``) and ``size`` (examples)."""

    name: str
    digest: str
    source: str
    context: str
    size: int


@dataclass
class TaskData:
    """One task, ready for the training loop."""

    name: str  # e.g. "glue/sst2"
    num_labels: int  # 1 for regression
    train: Dataset
    val: Dataset
    test: Dataset
    collate: Callable[[list[dict]], dict[str, Tensor]]
    metric: Metric  # (logits, labels) -> {"accuracy": ..., ...}
    main_metric: str  # the key of ``metric``'s result that selection maximises
    fingerprint: str  # changes whenever the examples or the split settings change
    # The teacher's own training examples (disjoint from train and val); None: it trains on train.
    teacher_train: Dataset | None = None
    source: str = ""  # where the examples came from: a local directory or a hub id

    def dataset_inputs(self, splits: Sequence[str]) -> list[DatasetInput]:
        """``splits`` described as run inputs (each split's ``digest()`` names its examples)."""
        return [
            DatasetInput(
                name=f"{self.name}/{name}",
                digest=split_digest(getattr(self, name)),
                source=self.source,
                context=CONTEXTS[name],
                size=len(getattr(self, name)),
            )
            for name in splits
        ]

    def split(self, name: str) -> Dataset:
        """The split called ``name`` (one of :data:`SPLITS`)."""
        if name not in SPLITS:
            raise ValueError(f"split: must be one of {SPLITS}, got {name!r}")
        return getattr(self, name)

    def describe_splits(self) -> dict[str, dict]:
        """``{split: {"size": n, "mean_words": w}}`` for train, val, test (and teacher_train).

        ``mean_words``: the mean whitespace word count of the items' raw text (a pair's texts
        summed), from the split's ``words``; ``None`` for splits without text (images) or
        without items.
        """
        names = [*SPLITS, TEACHER_SPLIT] if self.teacher_train is not None else list(SPLITS)
        result: dict[str, dict] = {}
        for name in names:
            dataset = getattr(self, name)
            words = item_words(dataset)
            mean = float(np.mean(words)) if words is not None and len(words) > 0 else None
            result[name] = {"size": len(dataset), "mean_words": mean}
        return result


def split_digest(dataset: Dataset) -> str:
    """A fingerprint of a split's examples: its own ``digest()`` when it has one (the GLUE and
    CIFAR splits), else a sha256 over every item's fields as arrays (deterministic items)."""
    own = getattr(dataset, "digest", None)
    if callable(own):
        return own()
    digest = hashlib.sha256()
    for i in range(len(dataset)):
        for key, value in sorted(dataset[i].items()):
            array = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
            digest.update(f"{key}:{array.dtype}:{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def item_lengths(dataset: Dataset) -> Sequence[int] | None:
    """Each item's length in tokens when ``dataset`` records it (text splits), else ``None``."""
    return getattr(dataset, "lengths", None)


def item_words(dataset: Dataset) -> Sequence[int] | None:
    """Each item's raw-text word count when ``dataset`` records it (text splits), else ``None``."""
    return getattr(dataset, "words", None)
