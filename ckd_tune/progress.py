"""A compact progress line per method: trials done / running / failed and the best score so far."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

from ray.tune import Callback
from ray.tune.experiment import Trial

from ckd_tune.search.summary import METRIC


class ProgressPrinter(Callback):
    """Prints one line when a trial ends, and at most every ``interval`` seconds otherwise."""

    def __init__(
        self, method: str, num_samples: int, interval: float = 30.0, stream: TextIO | None = None
    ):
        self.method = method
        self.num_samples = num_samples
        self.interval = interval
        self._stream = stream  # None: sys.stdout as it is when printing
        self._last = -math.inf  # the first result prints (monotonic time may start near 0)

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stdout

    def __getstate__(self) -> dict[str, Any]:  # Ray pickles callbacks into its experiment state
        return {**self.__dict__, "_stream": None}  # a stream (pytest's capture, ...) may not pickle

    def _line(
        self, trials: list[Trial], event: str = "", ending: Trial | None = None, status: str = ""
    ) -> None:
        """Ray calls the end hooks before it updates the ending trial's status: ``status`` is it."""
        statuses = [status if t is ending else t.status for t in trials]
        done = statuses.count(Trial.TERMINATED)
        failed = statuses.count(Trial.ERROR)
        running = statuses.count(Trial.RUNNING)
        scores = [
            t.last_result.get(METRIC) for t in trials if t.last_result.get(METRIC) is not None
        ]
        best = f"{max(scores):.4f}" if scores else "-"
        print(
            f"[{time.strftime('%H:%M:%S')}] {self.method:>12}: {done + failed}/{self.num_samples} trials ended "
            f"({failed} failed), {running} running, best val {best}{event}",
            file=self.stream,
            flush=True,
        )
        self._last = time.monotonic()

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        if time.monotonic() - self._last >= self.interval:
            self._line(trials)

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        score = trial.last_result.get(METRIC)
        epochs = trial.last_result.get("epoch", 0)
        event = (
            f" | {trial.trial_id} finished: {score:.4f} after {epochs} epoch{'s' * (epochs != 1)}"
            if score is not None
            else ""
        )
        self._line(trials, event, ending=trial, status=Trial.TERMINATED)

    def on_trial_recover(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        from ckd_tune.tracking import trial_error

        self._line(
            trials,
            f" | {trial.trial_id} crashed ({trial_error(trial)[:120]}); retrying from its last "
            "checkpoint",
        )

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        from ckd_tune.tracking import trial_error

        event = f" | {trial.trial_id} FAILED: {trial_error(trial)[:120]}"
        self._line(trials, event, ending=trial, status=Trial.ERROR)
