"""DIST: its terms by name, the loss by hand, the binary and regression cases, parameter checks."""

from __future__ import annotations

import math

import pytest

from ckd_tune.config import TrainConfig
from ckd_tune.errors import UserInputError
from ckd_tune.methods import METHODS
from tests.method_support import Z_S, Z_T, Y, ce, loss, method, softmax, t64, y64, zscore


def _pearson(a: list[float], b: list[float]) -> float:
    """Cosine similarity of the mean-centred vectors, ``+ 1e-8`` in the denominator."""
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    ca, cb = [x - ma for x in a], [x - mb for x in b]
    dot = sum(x * y for x, y in zip(ca, cb, strict=True))
    return dot / (math.sqrt(sum(x * x for x in ca)) * math.sqrt(sum(x * x for x in cb)) + 1e-8)


def _dist(z_s, z_t, beta: float, gamma: float, temp: float) -> float:
    """``T^2 (beta inter + gamma intra)`` with plain ``math``."""
    p_s = [softmax(r, temp) for r in z_s]
    p_t = [softmax(r, temp) for r in z_t]
    inter = 1 - sum(_pearson(s, t) for s, t in zip(p_s, p_t, strict=True)) / len(p_s)
    cols_s, cols_t = list(zip(*p_s, strict=True)), list(zip(*p_t, strict=True))
    pairs = zip(cols_s, cols_t, strict=True)
    intra = 1 - sum(_pearson(list(s), list(t)) for s, t in pairs) / len(cols_s)
    return temp**2 * (beta * inter + gamma * intra)


def test_defaults_are_the_papers_imagenet_setting() -> None:
    params = TrainConfig(method="dist").params
    assert (params.beta, params.gamma, params.temperature) == (1.0, 1.0, 1.0)
    assert params.standardize is False
    assert METHODS["dist"].annealing_fields == ()


@pytest.mark.parametrize(("beta", "gamma", "temp"), [(1.0, 1.0, 1.0), (2.0, 0.5, 4.0)])
def test_loss_by_hand(beta: float, gamma: float, temp: float) -> None:
    # L = CE + T^2 (beta inter + gamma intra); nothing is scheduled but the (constant) T
    m = method("dist", beta=beta, gamma=gamma, temperature=temp)
    assert m.schedule(0.0) == m.schedule(0.9) == {"T": temp}
    terms = m.loss_terms(t64(Z_S), t64(Z_T), y64(Y), m.schedule(0.3))
    assert {name: t.weight for name, t in terms.items()} == {"ce": 1.0, "dist": 1.0}
    expected_dist = _dist(Z_S, Z_T, beta, gamma, temp)
    assert terms["dist"].value.item() == pytest.approx(expected_dist, rel=1e-10)
    expected = ce(Z_S, Y) + expected_dist
    assert loss(m, t64(Z_S), t64(Z_T), y64(Y), 0.3).item() == pytest.approx(expected, rel=1e-10)


def test_weights_split_the_two_relations() -> None:
    inter = method("dist", beta=1.0, gamma=0.0, temperature=2.0)
    intra = method("dist", beta=0.0, gamma=1.0, temperature=2.0)
    both = method("dist", beta=3.0, gamma=2.0, temperature=2.0)
    values = {"T": 2.0}

    def dist_term(m) -> float:
        return m.loss_terms(t64(Z_S), t64(Z_T), y64(Y), values)["dist"].value.item()

    assert dist_term(inter) == pytest.approx(_dist(Z_S, Z_T, 1.0, 0.0, 2.0), rel=1e-10)
    assert dist_term(both) == pytest.approx(3 * dist_term(inter) + 2 * dist_term(intra), rel=1e-10)


def test_binary_inter_term_only_sees_agreement() -> None:
    # two classes: centred rows are (d, -d), so the per-example correlation is +-1 (up to eps)
    z_s, z_t, y = [[0.3, -1.0], [2.0, 0.5]], [[1.0, 0.0], [-2.0, 3.0]], [0, 1]
    m = method("dist", beta=1.0, gamma=0.0, temperature=1.0)
    term = m.loss_terms(t64(z_s), t64(z_t), y64(y), {"T": 1.0})["dist"].value.item()
    assert term == pytest.approx(1 - (1 + -1) / 2, abs=1e-6)  # row 0 agrees (+1), row 1 not (-1)


def test_regression_falls_back_to_kds_mse() -> None:
    z_s, z_t, y = t64([[1.0], [3.0]]), t64([[2.0], [2.0]]), t64([1.5, 2.0])
    m = method("dist", standardize=True)  # one logit: nothing to standardize
    terms = m.loss_terms(z_s, z_t, y, m.schedule(0.0))
    assert {name: t.weight for name, t in terms.items()} == {"ce": 1.0, "kd": 1.0}
    assert terms["kd"].value.item() == pytest.approx(((1 - 2) ** 2 + (3 - 2) ** 2) / 2)


def test_standardize_is_dist_on_standardized_logits() -> None:
    m = method("dist", beta=1.0, gamma=2.0, temperature=2.0, standardize=True)
    terms = m.loss_terms(t64(Z_S), t64(Z_T), y64(Y), m.schedule(0.0))
    expected = _dist(zscore(Z_S), zscore(Z_T), 1.0, 2.0, 2.0)
    assert terms["dist"].value.item() == pytest.approx(expected, rel=1e-10)
    assert terms["ce"].value.item() == pytest.approx(ce(Z_S, Y), rel=1e-12)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"beta": -0.5}, "beta"),
        ({"beta": math.nan}, "beta"),
        ({"gamma": -1.0}, "gamma"),
        ({"gamma": math.inf}, "gamma"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -2.0}, "temperature"),
        ({"standardize": 0}, "standardize"),
        ({"alpha": 0.5}, "alpha: .*method 'dist'"),
    ],
)
def test_bad_parameters_are_refused_naming_them(params: dict, match: str) -> None:
    with pytest.raises(UserInputError, match=match):
        TrainConfig.from_flat({"method": "dist", **params})
