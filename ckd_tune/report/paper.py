"""The effects the Continuation-KD paper reports, to set each comparison's sensitivity against.

Jafari et al., arXiv 2212.05998, dev-set tables: differences in points (x 100 of the metric) of
a method over a reference, per task and student. A comparison whose minimum detectable
difference is larger than the effect at stake cannot confirm or refute the paper on this bench.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# (task, method, reference) -> {student: method - reference, in points}
PAPER_EFFECTS: Mapping[tuple[str, str, str], Mapping[str, float]] = {
    ("sst2", "ckd", "kd"): {"DistilRoBERTa": 1.04, "BERT-Small": 1.45},
    ("mrpc", "ckd", "kd"): {"DistilRoBERTa": 1.73, "BERT-Small": 3.44},
    ("rte", "ckd", "kd"): {"DistilRoBERTa": 6.5, "BERT-Small": 0.3},
    ("cola", "ckd", "kd"): {"DistilRoBERTa": 2.8, "BERT-Small": -0.4},
    ("sst2", "kd", "none"): {"DistilRoBERTa": 0.04, "BERT-Small": 0.46},
    ("cifar10", "ckd", "kd"): {"ResNet-8": 90.21 - 88.45},
    ("cifar10", "kd", "none"): {"ResNet-8": 0.01},
}


def paper_effect(task: str, method: str, reference: str) -> dict[str, Any] | None:
    """What the paper reports for ``method`` over ``reference`` on ``task``, or ``None``.

    ``task`` is the bench's task name (``sst2``, ``cifar10``; a ``glue/`` prefix is ignored).
    Returns ``{"points": {student: diff}, "at_stake": d}`` where ``at_stake`` is the smallest
    positive difference reported, as a fraction of the metric (the effect a bench must be able
    to see to confirm the paper), or ``None`` when the paper reports no gain.
    """
    key = (task.removeprefix("glue/"), method, reference)
    if key not in PAPER_EFFECTS:
        return None
    points = dict(PAPER_EFFECTS[key])
    gains = [v for v in points.values() if v > 0]
    return {"points": points, "at_stake": min(gains) / 100 if gains else None}
