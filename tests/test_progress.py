"""The progress line: counts include the trial whose end it announces."""

from __future__ import annotations

import io
from types import SimpleNamespace

from ray.tune.experiment import Trial

from ckd_tune.progress import ProgressPrinter


def _trial(trial_id: str, status: str, score: float | None = None, epoch: int = 0, **kw):
    result = {} if score is None else {"best_val_score": score, "epoch": epoch}
    return SimpleNamespace(trial_id=trial_id, status=status, last_result=result, **kw)


def test_finished_trial_is_counted_as_ended():
    out = io.StringIO()
    a, b = _trial("a", Trial.TERMINATED, 0.7, 2), _trial("b", Trial.RUNNING, 0.8, 1)
    c, d = _trial("c", Trial.RUNNING, 0.6, 1), _trial("d", Trial.PENDING)
    ProgressPrinter("ckd", 4, stream=out).on_trial_complete(0, [a, b, c, d], b)
    line = out.getvalue().strip()
    assert line.endswith(
        "ckd: 2/4 trials ended (0 failed), 1 running, best val 0.8000 | b finished: 0.8000 after 1 epoch"
    ), line


def test_failed_trial_is_counted_as_failed(tmp_path):
    error = tmp_path / "error.txt"
    error.write_text("Traceback ...\nValueError: boom\n")
    out = io.StringIO()
    a = _trial("a", Trial.RUNNING, 0.5, 3, error_file=str(error))
    b = _trial("b", Trial.RUNNING)
    ProgressPrinter("kd", 2, stream=out).on_trial_error(0, [a, b], a)
    line = out.getvalue().strip()
    assert (
        "kd: 1/2 trials ended (1 failed), 1 running, best val 0.5000 | a FAILED: ValueError: boom"
        in line
    )


def test_periodic_line_waits_for_the_interval():
    out = io.StringIO()
    printer = ProgressPrinter("none", 2, interval=3600, stream=out)
    trials = [_trial("a", Trial.RUNNING, 0.5, 1), _trial("b", Trial.PENDING)]
    printer.on_trial_result(0, trials, trials[0], {})
    printer.on_trial_result(1, trials, trials[0], {})
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "0/2 trials ended (0 failed), 1 running, best val 0.5000" in lines[0]
