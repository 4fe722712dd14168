"""Continuation-KD: psi and T schedules, the loss by hand, its reduction to Annealing-KD."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ckd_tune import losses
from ckd_tune.config import TrainConfig
from ckd_tune.errors import UserInputError
from ckd_tune.methods import Method
from ckd_tune.schedules import SCHEDULES
from tests.method_support import (
    Z_S,
    Z_T,
    Y,
    ce,
    close,
    logits,
    loss,
    method,
    t64,
    y64,
    zscore,
)

RISING_SHAPES = sorted(set(SCHEDULES) - {"constant"})


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(RISING_SHAPES), st.floats(0.05, 1.0), st.floats(0.0, 1.0))
def test_psi_reaches_one_at_end_fraction_and_stays(shape: str, end: float, after: float):
    schedule = method("ckd", psi_shape=shape, psi_end_fraction=end).schedule
    assert schedule(0.0)["psi"] == 0.0
    assert schedule(end)["psi"] == 1.0
    assert schedule(end + after * (1.0 - end))["psi"] == 1.0  # anywhere in [end, 1]
    psis = [schedule(i / 100 * end)["psi"] for i in range(101)]
    assert all(0.0 <= v <= 1.0 for v in psis)
    assert all(b >= a - 1e-12 for a, b in pairwise(psis))


def test_schedule_hand_values() -> None:
    schedule = method(
        "ckd", t_max=5.0, anneal_fraction=0.8, psi_shape="linear", psi_end_fraction=0.4
    ).schedule
    # the margin is a scheduled value too (constant here; per epoch under ckd:pbt): logged
    assert schedule(0.0) == {"T": 5.0, "phi": 0.2, "psi": 0.0, "margin": 0.0}
    v = schedule(0.2)  # T: 0.2 / 0.8 = 1/4 of the window -> second stretch, T = 4
    assert v["T"] == 4.0
    assert v["phi"] == pytest.approx(0.4)
    assert v["psi"] == pytest.approx(0.5)
    assert schedule(0.8) == {"T": 1.0, "phi": 1.0, "psi": 1.0, "margin": 0.0}
    assert schedule(1.0) == {"T": 1.0, "phi": 1.0, "psi": 1.0, "margin": 0.0}


def test_constant_psi_and_shape_params() -> None:
    held = method("ckd", psi_shape="constant", **{"psi_params.value": 0.3}).schedule
    assert {held(p)["psi"] for p in (0.0, 0.4, 1.0)} == {0.3}
    steep = method("ckd", psi_shape="sigmoid", **{"psi_params.steepness": 50.0}).schedule
    assert steep(0.1)["psi"] < 0.01
    assert steep(0.25)["psi"] == pytest.approx(0.5)


def _hinge(phi: float, margin: float, reduction: str, z_s=Z_S, z_t=Z_T) -> float:
    rows = []
    for rs, rt in zip(z_s, z_t, strict=True):
        sq = sum((s - phi * t) ** 2 for s, t in zip(rs, rt, strict=True))
        rows.append(max(0.0, (sq / len(rs) if reduction == "mean" else sq) - margin * phi))
    return sum(rows) / len(rows)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("psi", [0.0, 0.25, 0.7, 1.0])
@pytest.mark.parametrize("margin", [0.0, 1.5])
def test_loss_by_hand(reduction: str, psi: float, margin: float) -> None:
    # L = psi CE + (1 - psi) mean_i max(0, ||z_s_i - phi z_t_i||^2 - margin phi)
    m = method("ckd", margin=margin, mse_reduction=reduction)
    values = {"T": 7.0, "phi": 0.4, "psi": psi}
    terms = m.loss_terms(t64(Z_S), t64(Z_T), y64(Y), values)
    assert {name: t.weight for name, t in terms.items()} == {"ce": psi, "hinge_mse": 1 - psi}
    total = sum(t.weight * t.value.item() for t in terms.values())
    expected = psi * ce(Z_S, Y) + (1 - psi) * _hinge(0.4, margin, reduction)
    assert total == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize(("psi", "phi", "margin"), [(0.25, 0.4, 0.0), (0.0, 1.0, 1.5)])
def test_standardize_is_the_loss_on_standardized_logits(
    reduction: str, psi: float, phi: float, margin: float
) -> None:
    # both rows z-scored before phi and the hinge; the CE keeps the raw logits
    m = method("ckd", margin=margin, mse_reduction=reduction, standardize=True)
    terms = m.loss_terms(t64(Z_S), t64(Z_T), y64(Y), {"T": 3.0, "phi": phi, "psi": psi})
    assert {name: t.weight for name, t in terms.items()} == {"ce": psi, "hinge_mse": 1 - psi}
    hinge = _hinge(phi, margin, reduction, zscore(Z_S), zscore(Z_T))
    assert terms["hinge_mse"].value.item() == pytest.approx(hinge, rel=1e-10)
    assert terms["ce"].value.item() == pytest.approx(ce(Z_S, Y), rel=1e-12)


def test_standardized_error_is_a_correlation_loss() -> None:
    # standardized rows have squared norm K - 1, so ||z_s - phi z_t||^2 = (K-1)(1 + phi^2 - 2 phi r)
    # with r the Pearson correlation of the raw rows (ckd's docstring); the 1e-7 moves it ~1e-7
    z_s, z_t, y = logits(seed=5, batch=3, num_logits=6)
    phi, k = 0.6, 6
    expected = 0.0
    for rs, rt in zip(z_s.tolist(), z_t.tolist(), strict=True):
        ms, mt = sum(rs) / k, sum(rt) / k
        cov = sum((a - ms) * (b - mt) for a, b in zip(rs, rt, strict=True))
        r = cov / (sum((a - ms) ** 2 for a in rs) * sum((b - mt) ** 2 for b in rt)) ** 0.5
        expected += (k - 1) * (1 + phi**2 - 2 * phi * r) / 3
    m = method("ckd", standardize=True)
    terms = m.loss_terms(z_s, z_t, y, {"T": 2.0, "phi": phi, "psi": 0.0})
    assert terms["hinge_mse"].value.item() == pytest.approx(expected, rel=1e-6)


def test_standardize_leaves_regression_alone() -> None:
    z_s, z_t, y = t64([[1.0], [3.0]]), t64([[2.0], [2.0]]), t64([1.5, 2.5])
    values = {"T": 1.0, "phi": 0.5, "psi": 0.5}
    on = method("ckd", standardize=True).loss_terms(z_s, z_t, y, values)
    off = method("ckd").loss_terms(z_s, z_t, y, values)
    assert on["hinge_mse"].value.item() == off["hinge_mse"].value.item()


def test_regression_one_logit() -> None:
    # margin * phi = 0.5; squared errors 1 and 1 -> hinge 0.5 each; MSE to labels 0.25
    z_s, z_t, y = t64([[1.0], [3.0]]), t64([[2.0], [2.0]]), t64([1.5, 2.5])
    m = method("ckd", margin=0.5)
    terms = m.loss_terms(z_s, z_t, y, {"T": 1.0, "phi": 1.0, "psi": 0.5})
    assert terms["ce"].value.item() == pytest.approx(0.25, rel=1e-12)
    assert terms["hinge_mse"].value.item() == pytest.approx(0.5, rel=1e-12)


# --- CKD reduces to Annealing-KD ----------------------------------------------------------------


def _reduction_pair(t_max: float = 10.0, path: str = "steps") -> tuple[Method, Method]:
    common = {"epochs": 4, "anneal_fraction": 0.5, "t_max": t_max, "temperature_path": path}
    ckd = method(
        "ckd",
        psi_shape="step",
        psi_end_fraction=0.5,
        margin=0.0,
        mse_reduction="mean",
        **{"psi_params.n_steps": 1},
        **common,
    )
    return ckd, method("annealing_kd", **common)


@settings(max_examples=60, deadline=None)
def _sched(m, progress: float) -> dict[str, float]:
    """``m``'s schedule without CKD's (constant, here 0) margin, which Annealing-KD lacks."""
    return {k: v for k, v in m.schedule(progress).items() if k != "margin"}


@given(
    st.floats(0.0, 1.0, exclude_max=True),
    st.integers(0, 1000),
    st.sampled_from([1.0, 2.0, 4.5, 10.0, 20.0]),
    st.sampled_from(["steps", "linear", "cosine"]),
    st.sampled_from([1, 3]),
)
def test_ckd_equals_annealing_kd(progress: float, seed: int, t_max: float, path: str, k: int):
    # The step shape counts p within 1e-9 of a jump as past it (for float-rounded progress),
    # Annealing-KD compares exactly; they may differ only in that sliver before the boundary.
    assume(not 0.5 - 1e-9 < progress < 0.5)
    ckd, annealing = _reduction_pair(t_max, path)
    assert _sched(ckd, progress) == annealing.schedule(progress)
    z_s, z_t, y = logits(seed=seed, num_logits=k)
    close(loss(ckd, z_s, z_t, y, progress), loss(annealing, z_s, z_t, y, progress))


@pytest.mark.parametrize("progress", [0.5, 0.5 + 1e-12, 0.75, 1.0])
def test_ckd_and_annealing_kd_switch_to_ce_at_the_boundary(progress: float) -> None:
    z_s, z_t, y = logits(seed=11)
    for m in _reduction_pair():
        assert _sched(m, progress) == {"T": 1.0, "phi": 1.0, "psi": 1.0}
        close(loss(m, z_s, z_t, y, progress), losses.hard_label_loss(z_s, y))


def test_ckd_and_annealing_kd_just_before_the_boundary() -> None:
    ckd, annealing = _reduction_pair()
    for progress in (0.5 - 1e-6, 0.499, 0.45):
        assert _sched(ckd, progress) == annealing.schedule(progress)
        assert _sched(ckd, progress) == {"T": 1.0, "phi": 1.0, "psi": 0.0}  # last stretch


def test_sum_reduction_is_num_logits_times_annealing_kd() -> None:
    # the reduction needs mse_reduction="mean"; with "sum" the KD term is num_logits times larger
    _, annealing = _reduction_pair()
    ckd = method("ckd", epochs=4, anneal_fraction=0.5, psi_end_fraction=0.5, mse_reduction="sum")
    z_s, z_t, y = logits(seed=2, num_logits=3)
    close(loss(ckd, z_s, z_t, y, 0.0), 3 * loss(annealing, z_s, z_t, y, 0.0))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"margin": -1.0}, "margin"),
        ({"margin": float("inf")}, "margin"),
        ({"margin": float("nan")}, "margin"),
        ({"mse_reduction": "max"}, "mse_reduction"),
        ({"psi_end_fraction": 0.0}, "psi_end_fraction"),
        ({"psi_shape": "zigzag"}, "psi_shape"),
        ({"psi_shape": "linear", "psi_params.rate": 1.0}, "psi_params"),
        ({"t_max": 0.9}, "t_max"),
        ({"standardize": "true"}, "standardize: must be true or false"),
    ],
)
def test_bad_parameters_are_refused_naming_them(params: dict, match: str) -> None:
    with pytest.raises(UserInputError, match=match):
        TrainConfig.from_flat({"method": "ckd", **params})
