"""Vanilla KD: hand-computed loss, its terms by name, parameter checks."""

from __future__ import annotations

import math

import pytest

from ckd_tune.config import TrainConfig
from ckd_tune.errors import UserInputError
from tests.method_support import Z_S, Z_T, Y, ce, kl, loss, method, softmax, t64, y64


@pytest.mark.parametrize(("alpha", "temp"), [(0.3, 2.0), (0.5, 4.0), (0.0, 1.0), (1.0, 3.0)])
def test_kd_loss_by_hand(alpha: float, temp: float) -> None:
    mean_kl = sum(kl(softmax(t, temp), softmax(s, temp)) for s, t in zip(Z_S, Z_T, strict=True)) / 2
    expected = alpha * ce(Z_S, Y) + (1 - alpha) * temp**2 * mean_kl
    m = method("kd", alpha=alpha, temperature=temp)
    assert m.schedule(0.7) == {"T": temp}  # constant, logged
    assert m.phase2_epoch() is None
    assert loss(m, t64(Z_S), t64(Z_T), y64(Y), 0.7).item() == pytest.approx(expected, rel=1e-10)


def test_kd_terms_are_named_and_weighted_by_alpha() -> None:
    terms = method("kd", alpha=0.2).loss_terms(t64(Z_S), t64(Z_T), y64(Y), {"T": 4.0})
    assert {name: t.weight for name, t in terms.items()} == {"ce": 0.2, "kd": 0.8}


def test_kd_regression_uses_mse_to_teacher() -> None:
    hard = ((1 - 1.5) ** 2 + (3 - 2) ** 2) / 2  # 0.625
    soft = ((1 - 2) ** 2 + (3 - 2) ** 2) / 2  # 1.0, no T^2 factor for regression
    m = method("kd", alpha=0.4, temperature=5.0)
    value = loss(m, t64([[1.0], [3.0]]), t64([[2.0], [2.0]]), t64([1.5, 2.0]), 0.0).item()
    assert value == pytest.approx(0.4 * hard + 0.6 * soft, rel=1e-12)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": math.nan}, "alpha"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": math.inf}, "temperature"),
    ],
)
def test_bad_parameters_are_refused_naming_them(params: dict, match: str) -> None:
    with pytest.raises(UserInputError, match=match):
        TrainConfig.from_flat({"method": "kd", **params})


def test_boundary_parameters_are_accepted() -> None:
    for alpha in (0.0, 1.0):
        assert TrainConfig.from_flat({"method": "kd", "alpha": alpha}).params.alpha == alpha
