"""Test-only fault injection that runs inside Ray Tune's trial processes.

Ray unpickles a bench's ``build_student`` in every trial process and so imports this module by
name there: tests using it put this directory on ``PYTHONPATH`` before Ray starts (worker
processes inherit the driver's environment).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ray import tune
from torch import nn

CALLS_FILE = "calls.txt"


@dataclass(frozen=True)
class FaultyStudent:
    """Wraps a student builder; logs every call and crashes the first ``fail_trials`` trials.

    Each call appends ``<method> <trial_id>`` to ``<state_dir>/calls.txt`` (so a test can count
    how often a trial built its student, i.e. ran). The first ``fail_trials`` trials of a method
    in ``methods`` to build a student claim a slot and raise on every attempt (retries too); all
    other trials get the real student.
    """

    inner: Callable[[int], nn.Module]
    state_dir: str
    methods: tuple[str, ...] = ()
    fail_trials: int = 1

    def __call__(self, seed: int) -> nn.Module:
        context = tune.get_context()
        method, trial_id = context.get_experiment_name(), context.get_trial_id()  # method = name
        state = Path(self.state_dir)
        with open(state / CALLS_FILE, "a") as f:
            f.write(f"{method} {trial_id}\n")
        if method in self.methods and self._doomed(state, method, trial_id):
            raise RuntimeError(f"injected failure in trial {trial_id}")
        return self.inner(seed)

    def _doomed(self, state: Path, method: str, trial_id: str) -> bool:
        for slot in range(self.fail_trials):
            path = state / f"fail-{method}-{slot}"
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if path.read_text() == trial_id:
                    return True
                continue
            with os.fdopen(fd, "w") as f:
                f.write(trial_id)
            return True
        return False


def calls(state_dir: Path) -> list[tuple[str, str]]:
    """``(method, trial_id)`` of every student build, in order."""
    path = Path(state_dir) / CALLS_FILE
    if not path.is_file():
        return []
    return [tuple(line.split()) for line in path.read_text().splitlines() if line.strip()]
