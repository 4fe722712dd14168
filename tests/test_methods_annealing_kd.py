"""Annealing-KD: the phase boundary, the temperature path, the loss of each phase."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckd_tune import losses
from ckd_tune.config import TrainConfig
from ckd_tune.errors import UserInputError
from ckd_tune.schedules import phi, temperature
from tests.method_support import close, logits, loss, method


@pytest.mark.parametrize(
    ("anneal_fraction", "epochs", "expected"),
    [
        (0.5, 4, 2),
        (0.5, 10, 5),
        (0.25, 8, 2),
        (0.6, 5, 3),
        (0.1, 3, 1),  # round(0.3) = 0 -> at least one epoch of phase 1
        (0.5, 1, None),  # max(1, round(0.5)) = 1 = epochs: no phase 2
        (0.9, 3, None),  # round(2.7) = 3 = epochs
        (1.0, 3, None),
    ],
)
def test_phase2_epoch(anneal_fraction: float, epochs: int, expected) -> None:
    m = method("annealing_kd", epochs=epochs, anneal_fraction=anneal_fraction)
    assert m.phase2_epoch() == expected


@settings(max_examples=50, deadline=None)
@given(st.floats(1e-3, 1.0), st.integers(1, 200))
def test_phase2_epoch_is_the_rounded_fraction(anneal_fraction: float, epochs: int) -> None:
    boundary = max(1, round(anneal_fraction * epochs))
    expected = None if boundary == epochs else boundary
    m = method("annealing_kd", epochs=epochs, anneal_fraction=anneal_fraction)
    assert m.phase2_epoch() == expected


def test_schedule_phases() -> None:
    schedule = method("annealing_kd", epochs=4, anneal_fraction=0.5, t_max=10.0).schedule
    assert schedule(0.0) == {"T": 10.0, "phi": 0.1, "psi": 0.0}
    # phase 1 covers progress [0, 0.5): T steps down through 10..1, one per 1/20 of training
    assert schedule(0.05)["T"] == 9.0
    assert schedule(0.26) == {"T": 5.0, "phi": phi(5.0, 10.0), "psi": 0.0}
    assert schedule(0.47) == {"T": 1.0, "phi": 1.0, "psi": 0.0}
    for p in (0.5, 0.75, 1.0):  # phase 2: the labels only
        assert schedule(p) == {"T": 1.0, "phi": 1.0, "psi": 1.0}


def test_boundary_sits_on_an_epoch() -> None:
    # anneal_fraction 0.5 of 3 epochs rounds to 2 epochs: phase 1 runs to progress 2/3
    schedule = method("annealing_kd", epochs=3, anneal_fraction=0.5).schedule
    assert schedule(0.6)["psi"] == 0.0
    assert schedule(2 / 3)["psi"] == 1.0
    assert schedule(0.6)["T"] == temperature(0.6 / (2 / 3), 10.0)


def test_loss_by_phase() -> None:
    z_s, z_t, y = logits(seed=3)
    m = method("annealing_kd", epochs=4, anneal_fraction=0.5, t_max=4.0)
    v1 = m.schedule(0.1)
    terms = m.loss_terms(z_s, z_t, y, v1)
    assert {name: t.weight for name, t in terms.items()} == {"ce": 0.0, "mse": 1.0}
    close(loss(m, z_s, z_t, y, 0.1), losses.annealing_mse(z_s, z_t, v1["phi"]))
    terms = m.loss_terms(z_s, z_t, y, m.schedule(0.9))
    assert {name: t.weight for name, t in terms.items()} == {"ce": 1.0, "mse": 0.0}
    close(loss(m, z_s, z_t, y, 0.9), losses.hard_label_loss(z_s, y))


@pytest.mark.parametrize("path", ["steps", "linear", "cosine", "exponential", "sigmoid"])
def test_temperature_reaches_one_before_phase2(path: str) -> None:
    m = method("annealing_kd", epochs=10, anneal_fraction=0.5, t_max=7.3, temperature_path=path)
    values = [m.schedule(i / 1000) for i in range(500)]
    temps = [v["T"] for v in values]
    assert temps[0] == 7.3
    assert temps == sorted(temps, reverse=True)
    assert all(1.0 <= t <= 7.3 for t in temps)
    assert all(v["phi"] == phi(v["T"], 7.3) for v in values)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"t_max": 0.5}, "t_max"),
        ({"t_max": float("inf")}, "t_max"),
        ({"anneal_fraction": 0.0}, "anneal_fraction"),
        ({"anneal_fraction": 1.2}, "anneal_fraction"),
        ({"temperature_path": "zigzag"}, "temperature_path"),
        ({"temperature_params.rate": 2.0}, "temperature_params"),  # "steps" takes none
        ({"temperature_path": "exponential", "temperature_params.speed": 2.0}, "speed"),
    ],
)
def test_bad_parameters_are_refused_naming_them(params: dict, match: str) -> None:
    with pytest.raises(UserInputError, match=match):
        TrainConfig.from_flat({"method": "annealing_kd", **params})
