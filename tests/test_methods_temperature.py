"""The annealed teacher temperature shared by Annealing-KD and Continuation-KD."""

from __future__ import annotations

import pytest

from ckd_tune.errors import UserInputError
from ckd_tune.methods.temperature import AnnealedTemperature


def test_papers_integer_steps_over_the_window() -> None:
    params = AnnealedTemperature(t_max=4.0, anneal_fraction=0.5)
    # the window [0, 0.5) in ceil(4) = 4 stretches: T = 4, 3, 2, 1; then 1 to the end
    temps = [params.temperature_at(p)["T"] for p in (0.0, 0.13, 0.26, 0.38, 0.5, 0.9)]
    assert temps == [4.0, 3.0, 2.0, 1.0, 1.0, 1.0]


def test_phi_scales_the_teacher_by_one_minus_t_minus_one_over_t_max() -> None:
    params = AnnealedTemperature(t_max=10.0, anneal_fraction=1.0)
    assert params.temperature_at(0.0) == {"T": 10.0, "phi": pytest.approx(0.1)}
    v = params.temperature_at(0.35)  # the 4th of 10 stretches: T = 7
    assert v["T"] == 7.0
    assert v["phi"] == pytest.approx(1 - 6 / 10)
    assert params.temperature_at(0.999) == {"T": 1.0, "phi": 1.0}


def test_a_shape_gives_a_continuous_path() -> None:
    params = AnnealedTemperature(t_max=5.0, temperature_path="linear", anneal_fraction=0.5)
    assert params.temperature_at(0.25)["T"] == pytest.approx(3.0)  # halfway: 5 + (1 - 5) / 2
    exp = AnnealedTemperature(
        t_max=5.0, temperature_path="exponential", temperature_params={"rate": 3.0}
    )
    assert exp.temperature_at(0.25)["T"] > 3.0  # a late fall stays hot longer


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"t_max": 0.99}, "t_max"),
        ({"anneal_fraction": 0.0}, "anneal_fraction"),
        ({"temperature_path": "spiral"}, "temperature_path"),
        ({"temperature_params": {"rate": 1.0}}, "temperature_params"),  # steps take none
        ({"temperature_path": "sigmoid", "temperature_params": {"rate": 1.0}}, "rate"),
    ],
)
def test_bad_values_are_refused_naming_them(kwargs: dict, match: str) -> None:
    with pytest.raises(UserInputError, match=match):
        AnnealedTemperature(**kwargs)
