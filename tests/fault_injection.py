"""Test-only fault injection that runs inside Ray Tune's trial processes.

Ray unpickles a bench's ``build_student`` in every trial process and so imports this module by
name there: tests using it put this directory on ``PYTHONPATH`` before Ray starts (worker
processes inherit the driver's environment).

``python -m fault_injection [--oom M,..] [--hang M,..] STATE_DIR -- SEARCH ARGS`` is the search
CLI with the bench's student builder wrapped in :class:`TrainingFaults` (for tests that need a
real driver process to kill or to read the stdout/stderr of).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import ray
import torch
from ray import tune
from torch import nn

CALLS_FILE = "calls.txt"
HANG_SECONDS = 120  # a hung trial's wait for the test to kill it, at most


def _trial() -> tuple[str | None, str | None]:
    """``(method, trial_id)`` of the Ray Tune trial running here, ``(None, None)`` elsewhere
    (e.g. a report re-run in a Ray task, or the driver saving the best student)."""
    with warnings.catch_warnings():  # Ray warns outside a trial, then returns None
        warnings.simplefilter("ignore")
        context = tune.get_context()
        return context.get_experiment_name(), context.get_trial_id()  # method = experiment name


@dataclass(frozen=True)
class FaultyStudent:
    """Wraps a student builder; logs every call and crashes the first ``fail_trials`` trials.

    Each call appends ``<method> <trial_id> <node_id> <epoch>`` to ``<state_dir>/calls.txt``: a
    test counts how often a trial built its student, i.e. ran (:func:`calls`), and sees on which
    Ray node and from which checkpoint epoch each attempt started (:func:`placements`). The first ``fail_trials`` trials of a method
    in ``methods`` to build a student claim a slot and raise on every attempt (retries too); all
    other trials get the real student.
    """

    inner: Callable[[int], nn.Module]
    state_dir: str
    methods: tuple[str, ...] = ()
    fail_trials: int = 1

    def __call__(self, seed: int) -> nn.Module:
        method, trial_id = _trial()
        if trial_id is None:
            return self.inner(seed)
        state = Path(self.state_dir)
        node = ray.get_runtime_context().get_node_id()
        with open(state / CALLS_FILE, "a") as f:
            f.write(f"{method} {trial_id} {node} {_checkpoint_epoch()}\n")
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


class Placement(NamedTuple):
    """One attempt of a trial: its method, trial id, Ray node id, and the epoch of the
    checkpoint it started from (0: from scratch)."""

    method: str
    trial_id: str
    node_id: str
    epoch: int


def placements(state_dir: Path) -> list[Placement]:
    """Every student build in a trial, in order."""
    path = Path(state_dir) / CALLS_FILE
    if not path.is_file():
        return []
    rows = (line.split() for line in path.read_text().splitlines() if line.strip())
    return [Placement(m, t, node, int(epoch)) for m, t, node, epoch in rows]


def calls(state_dir: Path) -> list[tuple[str, str]]:
    """``(method, trial_id)`` of every student build, in order."""
    return [(p.method, p.trial_id) for p in placements(state_dir)]


@dataclass(frozen=True)
class TrainingFaults:
    """Wraps a student builder with faults that strike inside training, at epoch ``epoch``.

    - ``oom``: every trial of these methods raises ``torch.OutOfMemoryError`` at the first
      training step of epoch ``epoch`` (also when resumed from a checkpoint of an earlier epoch:
      epochs count from the checkpoint's).
    - ``hang``: the first trial of these methods to reach epoch ``epoch`` writes its process id
      to ``<state_dir>/hang-<method>`` (``pid trial_id``) and sleeps, for a test to kill it;
      retries and later trials run normally.

    Outside a Ray Tune trial (report re-runs) the student is the plain one.
    """

    inner: Callable[[int], nn.Module]
    state_dir: str
    oom: tuple[str, ...] = ()
    hang: tuple[str, ...] = ()
    epoch: int = 2

    def __call__(self, seed: int) -> nn.Module:
        model = self.inner(seed)
        method, trial_id = _trial()
        if trial_id is None or method not in (*self.oom, *self.hang):
            return model
        seen = {"epoch": _checkpoint_epoch(), "training": False}

        def before_forward(module: nn.Module, args: tuple) -> None:
            if module.training and not seen["training"]:  # train() again: a new epoch
                seen["epoch"] += 1
            seen["training"] = module.training
            if not module.training or seen["epoch"] < self.epoch:
                return
            if method in self.oom:
                raise torch.OutOfMemoryError(
                    f"CUDA out of memory. Tried to allocate 2.00 GiB (injected in trial "
                    f"{trial_id} at epoch {seen['epoch']})"
                )
            if method in self.hang and self._claim(f"hang-{method}", f"{os.getpid()} {trial_id}"):
                time.sleep(HANG_SECONDS)

        model.register_forward_pre_hook(before_forward)
        return model

    def _claim(self, name: str, text: str) -> bool:
        try:
            fd = os.open(Path(self.state_dir) / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return True


def _checkpoint_epoch() -> int:
    """The epoch of the checkpoint this trial resumes from (0 when it starts afresh)."""
    from ckd_tune.trainable import STATE_FILE

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as directory:
        state = torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=True)
    return int(state["epoch"])


def main(argv: list[str] | None = None) -> int:
    """The search CLI with every bench's student builder wrapped (see the module docstring)."""
    from ckd_tune.benches import BENCHES
    from ckd_tune.search.cli import main as search_main

    p = argparse.ArgumentParser(prog="python -m fault_injection")
    p.add_argument("state_dir", type=Path)
    p.add_argument(
        "--oom", default="", help="comma-separated methods whose trials run out of memory"
    )
    p.add_argument("--hang", default="", help="comma-separated methods with one hanging trial")
    p.add_argument("--epoch", type=int, default=2)
    p.add_argument("search_args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    state = str(args.state_dir.resolve())
    faults = {
        "oom": tuple(filter(None, args.oom.split(","))),
        "hang": tuple(filter(None, args.hang.split(","))),
        "epoch": args.epoch,
    }
    for name, bench in list(BENCHES.items()):

        def prepare(request, bench=bench):
            prepared = bench.prepare(request)
            recorded = FaultyStudent(prepared.build_student, state)  # records every build
            prepared.build_student = TrainingFaults(recorded, state, **faults)
            return prepared

        BENCHES[name] = replace(bench, prepare=prepare)
    search_args = args.search_args[1:] if args.search_args[:1] == ["--"] else args.search_args
    return search_main(search_args)


if __name__ == "__main__":
    # import ourselves by name, so that what Ray pickles is fault_injection.X, not __main__.X
    from fault_injection import main as _main

    sys.exit(_main())
