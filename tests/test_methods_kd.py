"""Vanilla KD: hand-computed loss, its terms by name, parameter checks."""

from __future__ import annotations

import math

import pytest

from ckd_tune.config import TrainConfig
from ckd_tune.errors import UserInputError
from tests.method_support import Z_S, Z_T, Y, ce, kl, loss, method, softmax, t64, y64, zscore


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


@pytest.mark.parametrize(("alpha", "temp"), [(0.3, 2.0), (0.0, 4.0)])
def test_kd_standardize_is_kd_on_standardized_logits(alpha: float, temp: float) -> None:
    # the KL term sees both rows z-scored (Sun et al., CVPR 2024); the CE keeps the raw logits
    s_std, t_std = zscore(Z_S), zscore(Z_T)
    mean_kl = sum(kl(softmax(t, temp), softmax(s, temp)) for s, t in zip(s_std, t_std, strict=True))
    expected = alpha * ce(Z_S, Y) + (1 - alpha) * temp**2 * mean_kl / 2
    m = method("kd", alpha=alpha, temperature=temp, standardize=True)
    assert m.schedule(0.0) == {"T": temp}
    assert loss(m, t64(Z_S), t64(Z_T), y64(Y), 0.0).item() == pytest.approx(expected, rel=1e-10)
    plain = loss(method("kd", alpha=alpha, temperature=temp), t64(Z_S), t64(Z_T), y64(Y), 0.0)
    assert plain.item() != pytest.approx(expected, rel=1e-3)  # the switch changes the loss


def test_kd_standardize_leaves_regression_alone() -> None:
    z_s, z_t, y = t64([[1.0], [3.0]]), t64([[2.0], [2.0]]), t64([1.5, 2.0])
    on = loss(method("kd", standardize=True), z_s, z_t, y, 0.0)
    assert on.item() == loss(method("kd"), z_s, z_t, y, 0.0).item()  # one logit: nothing to scale


def test_kd_standardize_is_flat_on_binary_tasks() -> None:
    # two logits z-score to +-(1, -1)/sqrt(2): only their order survives, so the KL term has
    # (up to the 1e-7 in the denominator) no gradient
    z_s = t64([[0.3, -0.2], [1.0, 2.5]], requires_grad=True)
    terms = method("kd", standardize=True).loss_terms(
        z_s, t64([[2.0, 0.0], [0.0, 1.0]]), y64([0, 1]), {"T": 2.0}
    )
    terms["kd"].value.backward()
    assert z_s.grad is not None and z_s.grad.abs().max().item() < 1e-5


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": math.nan}, "alpha"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": math.inf}, "temperature"),
        ({"standardize": "yes"}, "standardize: must be true or false"),
        ({"standardize": 1}, "standardize"),
    ],
)
def test_bad_parameters_are_refused_naming_them(params: dict, match: str) -> None:
    with pytest.raises(UserInputError, match=match):
        TrainConfig.from_flat({"method": "kd", **params})


def test_boundary_parameters_are_accepted() -> None:
    for alpha in (0.0, 1.0):
        assert TrainConfig.from_flat({"method": "kd", "alpha": alpha}).params.alpha == alpha
