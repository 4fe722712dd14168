"""Task data shared by every bench: three honest splits, a collate function and the metric.

``train`` and ``val`` are carved from the official training data (seeded; ``val`` is what the
search selects on); ``test`` is the official held-out split (GLUE dev, CIFAR test) that only the
report evaluates on. Items are dicts with the model inputs, ``labels`` and ``index`` (the item's
position in its split, used to look up cached teacher logits). Text splits also carry
``lengths`` (tokens per item), which the training loop uses to batch similar lengths together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

Metric = Callable[[np.ndarray, np.ndarray], dict[str, float]]
SPLITS = ("train", "val", "test")


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

    def split(self, name: str) -> Dataset:
        """The split called ``name`` (one of :data:`SPLITS`)."""
        if name not in SPLITS:
            raise ValueError(f"split: must be one of {SPLITS}, got {name!r}")
        return getattr(self, name)


def item_lengths(dataset: Dataset) -> Sequence[int] | None:
    """Each item's length in tokens when ``dataset`` records it (text splits), else ``None``."""
    return getattr(dataset, "lengths", None)
