"""Decoupled KD: its terms by name, the warm-up schedule, the loss by hand, parameter checks."""

from __future__ import annotations

import math

import pytest

from ckd_tune.config import TrainConfig
from ckd_tune.errors import UserInputError
from ckd_tune.methods import METHODS
from tests.method_support import Z_S, Z_T, Y, ce, kl, loss, method, softmax, t64, y64, zscore


def _dkd(z_s, z_t, labels, alpha: float, beta: float, temp: float) -> float:
    """``T^2 (alpha TCKD + beta NCKD)``, batch mean, with plain ``math``."""
    total = 0.0
    for s, t, y in zip(z_s, z_t, labels, strict=True):
        ps, pt = softmax(s, temp), softmax(t, temp)
        tckd = kl([pt[y], 1 - pt[y]], [ps[y], 1 - ps[y]])
        rest_s = [v for k, v in enumerate(s) if k != y]
        rest_t = [v for k, v in enumerate(t) if k != y]
        nckd = kl(softmax(rest_t, temp), softmax(rest_s, temp)) if len(rest_s) > 1 else 0.0
        total += temp**2 * (alpha * tckd + beta * nckd)
    return total / len(labels)


def test_defaults_are_the_papers_cifar_setting() -> None:
    params = TrainConfig(method="dkd").params
    assert (params.alpha, params.beta, params.temperature) == (1.0, 8.0, 4.0)
    assert params.warmup == pytest.approx(20 / 240)
    assert params.standardize is False
    assert METHODS["dkd"].annealing_fields == ("warmup",)


@pytest.mark.parametrize(("alpha", "beta", "temp"), [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0)])
def test_loss_by_hand(alpha: float, beta: float, temp: float) -> None:
    # L = CE + w T^2 (alpha TCKD + beta NCKD); 4 epochs, warm-up half of them: w = 1/2 in epoch 1
    m = method("dkd", epochs=4, alpha=alpha, beta=beta, temperature=temp, warmup=0.5)
    values = m.schedule(0.0)
    assert values == {"T": temp, "kd_warmup": 0.5}
    terms = m.loss_terms(t64(Z_S), t64(Z_T), y64(Y), values)
    assert {name: t.weight for name, t in terms.items()} == {"ce": 1.0, "dkd": 0.5}
    assert terms["ce"].value.item() == pytest.approx(ce(Z_S, Y), rel=1e-12)
    expected_dkd = _dkd(Z_S, Z_T, Y, alpha, beta, temp)
    assert terms["dkd"].value.item() == pytest.approx(expected_dkd, rel=1e-10)
    expected = ce(Z_S, Y) + 0.5 * expected_dkd
    assert loss(m, t64(Z_S), t64(Z_T), y64(Y), 0.0).item() == pytest.approx(expected, rel=1e-10)
    after = ce(Z_S, Y) + expected_dkd  # past the warm-up: weight 1
    assert loss(m, t64(Z_S), t64(Z_T), y64(Y), 0.75).item() == pytest.approx(after, rel=1e-10)


def test_warmup_follows_the_papers_epochs() -> None:
    # the paper: min(epoch / 20, 1) with epochs counted from 1, over 240 epochs
    schedule = method("dkd", epochs=240, warmup=20 / 240).schedule
    for epoch in (0, 1, 9, 18, 19, 20, 100, 239):
        expected = min((epoch + 1) / 20, 1.0)
        assert schedule(epoch / 240)["kd_warmup"] == pytest.approx(expected, rel=1e-12)
    assert schedule(19 / 240)["kd_warmup"] == 1.0  # reached at the start of epoch 20


def test_warmup_between_epochs_and_edges() -> None:
    # 4 epochs, warm-up 1/2 (2 epochs): epoch values 1/2, 1, 1, 1; linear in between (step unit)
    schedule = method("dkd", epochs=4, warmup=0.5).schedule
    assert [schedule(p)["kd_warmup"] for p in (0.0, 0.25, 0.5, 1.0)] == [0.5, 1.0, 1.0, 1.0]
    assert schedule(0.125)["kd_warmup"] == pytest.approx(0.75)
    # no warm-up, and one shorter than an epoch (3 epochs, 1/12): the weight is 1 throughout
    assert method("dkd", epochs=4, warmup=0.0).schedule(0.0)["kd_warmup"] == 1.0
    assert method("dkd", epochs=3, warmup=1 / 12).schedule(0.0)["kd_warmup"] == 1.0
    # the whole run: 10 epochs, warm-up 1 -> 1/10, 2/10, ..., 1
    full = method("dkd", epochs=10, warmup=1.0).schedule
    assert [full(e / 10)["kd_warmup"] for e in range(10)] == pytest.approx(
        [(e + 1) / 10 for e in range(10)]
    )


def test_binary_task_has_no_nckd() -> None:
    # one non-target class: NCKD = 0, so beta does nothing and dkd = alpha x Hinton's KD term
    z_s, z_t, y = [[0.3, -1.0], [2.0, 0.5]], [[1.0, 0.0], [-2.0, 3.0]], [0, 1]
    kd = sum(kl(softmax(t, 4.0), softmax(s, 4.0)) for s, t in zip(z_s, z_t, strict=True)) / 2
    for beta in (0.0, 8.0):
        m = method("dkd", alpha=0.7, beta=beta, warmup=0.0)
        terms = m.loss_terms(t64(z_s), t64(z_t), y64(y), m.schedule(0.0))
        assert terms["dkd"].value.item() == pytest.approx(0.7 * 16.0 * kd, rel=1e-12)


def test_regression_falls_back_to_kds_mse() -> None:
    # one logit: no classes to decouple; the teacher term is kd's MSE(z_s, z_t), named "kd"
    z_s, z_t, y = t64([[1.0], [3.0]]), t64([[2.0], [2.0]]), t64([1.5, 2.0])
    m = method("dkd", epochs=4, warmup=0.5, standardize=True)  # standardize: nothing to do
    terms = m.loss_terms(z_s, z_t, y, m.schedule(0.0))
    assert {name: t.weight for name, t in terms.items()} == {"ce": 1.0, "kd": 0.5}
    assert terms["ce"].value.item() == pytest.approx(((1 - 1.5) ** 2 + (3 - 2) ** 2) / 2)
    assert terms["kd"].value.item() == pytest.approx(((1 - 2) ** 2 + (3 - 2) ** 2) / 2)


def test_standardize_is_dkd_on_standardized_logits() -> None:
    m = method("dkd", alpha=1.0, beta=8.0, temperature=2.0, warmup=0.0, standardize=True)
    terms = m.loss_terms(t64(Z_S), t64(Z_T), y64(Y), m.schedule(0.0))
    expected = _dkd(zscore(Z_S), zscore(Z_T), Y, 1.0, 8.0, 2.0)
    assert terms["dkd"].value.item() == pytest.approx(expected, rel=1e-10)
    assert terms["ce"].value.item() == pytest.approx(ce(Z_S, Y), rel=1e-12)  # raw logits


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": math.nan}, "alpha"),
        ({"beta": -1.0}, "beta"),
        ({"beta": math.inf}, "beta"),
        ({"temperature": 0.0}, "temperature"),
        ({"warmup": 1.5}, "warmup"),
        ({"warmup": -0.1}, "warmup"),
        ({"standardize": "no"}, "standardize"),
        ({"margin": 0.5}, "margin: .*method 'dkd'"),
    ],
)
def test_bad_parameters_are_refused_naming_them(params: dict, match: str) -> None:
    with pytest.raises(UserInputError, match=match):
        TrainConfig.from_flat({"method": "dkd", **params})
