"""Subprocess: the memory of training one student *without* Ray, as a baseline for a trial's.

``python -m benchmarks.memory_probe PREPARED.pkl EPOCHS METHOD`` records the peak resident
memory (``VmHWM``, see :func:`benchmarks.search_entry.peak_rss_mb`) after importing the
training stack, after unpickling the prepared bench (what a trial gets from the object store)
and after training one student for ``EPOCHS`` epochs, and prints them as one JSON line.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Measure and print ``{"import_mb", "prepared_mb", "train_mb"}`` (peaks so far, MB)."""
    path, epochs, method = (argv or sys.argv[1:])[:3]
    import torch  # noqa: F401

    from benchmarks.search_entry import peak_rss_mb
    from ckd_tune.train import train

    out = {"import_mb": peak_rss_mb()}
    prepared = pickle.loads(Path(path).read_bytes())
    out["prepared_mb"] = peak_rss_mb()
    config = prepared.base_config.replace(method=method, epochs=int(epochs))
    student = prepared.build_student(config.seed)
    train(config, prepared.data, student, prepared.teacher_signal)
    out["train_mb"] = peak_rss_mb()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
