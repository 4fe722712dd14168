"""What a method's search produced (:mod:`ckd_tune.search.summary`): the best trial is the best
*finished* one, and the counts of trials, failures and trial-epochs."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from ckd_tune.config import TrainConfig
from ckd_tune.search.summary import METRIC, MethodSummary, summarise


@dataclass
class FakeTrial:
    """What :func:`summarise` reads of a Ray ``Trial``."""

    trial_id: str
    status: str
    last_result: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)


def result(score: float, epoch: int) -> dict:
    return {METRIC: score, "epoch": epoch}


@pytest.fixture
def prepared() -> SimpleNamespace:
    """The one thing summarise reads of a bench: its base config."""
    return SimpleNamespace(base_config=TrainConfig())


def test_the_best_finished_trial_wins_over_higher_errored_and_unfinished_ones(prepared):
    trials = [
        FakeTrial("fin_low", "TERMINATED", result(0.61, 3), {"seed": 1}),
        FakeTrial("fin_best", "TERMINATED", result(0.74, 3), {"seed": 2}),
        FakeTrial("stopped", "TERMINATED", result(0.70, 1), {"seed": 3}),  # ASHA stopped it
        FakeTrial("errored", "ERROR", result(0.95, 2), {"seed": 4}),
        FakeTrial("running", "RUNNING", result(0.99, 2), {"seed": 5}),
        FakeTrial("pending", "PENDING", result(0.97, 1), {"seed": 6}),
        FakeTrial("never", "PENDING"),
    ]
    s = summarise("m", trials, prepared, wall=12.5)
    assert (s.status, s.best_trial, s.best_val_score) == ("ok", "fin_best", 0.74)
    assert s.best_config["seed"] == 2  # the best trial's config on the bench's base config
    assert s.best_config == TrainConfig().replace(seed=2).to_flat()
    assert (s.trials, s.errored, s.trial_epochs, s.wall_seconds) == (7, 1, 12, 12.5)
    assert s.best_run_id is None  # write_summary finds it in MLflow


def test_a_search_without_a_finished_trial_failed(prepared):
    trials = [
        FakeTrial("a", "ERROR", result(0.9, 1)),
        FakeTrial("b", "ERROR"),
        FakeTrial("c", "TERMINATED"),  # ended without reporting a score
    ]
    assert summarise("kd", trials, prepared, wall=3.0) == MethodSummary(
        "kd", "failed", None, {}, None, None, 3, 2, 1, 3.0
    )
