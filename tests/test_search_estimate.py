"""The time a study prints before each task (:mod:`ckd_tune.search.estimate`)."""

from __future__ import annotations

import math

import pytest

from ckd_tune.benches import GLUE_PROFILES, BenchRequest
from ckd_tune.search.estimate import Speed, calibrated, estimate, probe_glue

SPEED = Speed(
    "t",
    {"train": 100, "val": 20, "test": 40, "teacher_train": 300},
    student_train=0.01,
    student_eval=0.002,
    teacher_train=0.03,
)


def test_estimate_adds_up_the_sweep_by_hand():
    profile = GLUE_PROFILES["quick"]  # teacher_epochs 2
    e = estimate(SPEED, profile, trials=[4, 4, 1], reruns=5, epochs=3, concurrent=2)
    per_epoch = 100 * 0.01 + 20 * 0.002  # a trial's epoch: train + validation = 1.04 s
    assert e.search == pytest.approx((2 + 2 + 1) * 3 * per_epoch)  # 5 waves of 2 trials
    rerun = 3 * per_epoch + 40 * 0.002  # + its test split
    assert e.reruns == pytest.approx(3 * rerun)  # 5 re-runs, 2 at a time: 3 waves
    # 2 epochs on its 300 examples, then its logits on all 460 examples at a third of a step
    assert e.teacher == pytest.approx(0.03 * (2 * 300 + 460 / 3))
    assert e.total == pytest.approx(e.search + e.reruns + e.teacher)


def test_calibration_rescales_by_the_finished_tasks():
    estimates = {"a": 100.0, "b": 50.0, "c": 200.0}
    assert calibrated(estimates, {}) == (1.0, estimates)
    ratio, scaled = calibrated(estimates, {"a": 150.0, "b": 75.0})
    assert ratio == pytest.approx(1.5)
    assert scaled["c"] == pytest.approx(300.0)


def test_probe_times_the_tasks_own_batches(glue_dir):
    speed = probe_glue(BenchRequest("glue", "rte", "smoke", glue_dir))
    assert speed.task == "rte"
    assert speed.sizes == {"train": 64, "val": 32, "test": 60, "teacher_train": 64}
    for seconds in (speed.student_train, speed.student_eval, speed.teacher_train):
        assert 0 < seconds < 5 and math.isfinite(seconds)
    given = probe_glue(BenchRequest("glue", "rte", "smoke", glue_dir, teacher="some/teacher"))
    assert given.teacher_train == 0.0  # a given teacher is not trained
