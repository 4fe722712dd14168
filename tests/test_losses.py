"""Distillation losses: hand-computed values on tiny tensors, gradients, reductions, bad input.

Expected values are computed with plain ``math`` on Python lists, never with torch's own
loss functions, so that a wrong reduction or a swapped KL direction shows up.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ckd_tune.losses import (
    annealing_kd_loss,
    continuation_kd_loss,
    hard_label_loss,
    vanilla_kd_loss,
)


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """``torch.testing.assert_close`` without its slow first import: same shape, same values."""
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, rtol=1e-9, atol=1e-12), (actual, expected)


Z_S = [[1.0, 2.0, 3.0], [1.0, 0.0, 0.0]]
Z_T = [[0.5, 2.5, 1.0], [3.0, -1.0, 0.0]]
Y = [2, 0]


def _t(rows: list, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64, requires_grad=requires_grad)


def _y(labels: list[int]) -> torch.Tensor:
    return torch.tensor(labels, dtype=torch.long)


def _softmax(row: list[float], temp: float = 1.0) -> list[float]:
    exps = [math.exp(v / temp) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def _ce(rows: list[list[float]], labels: list[int]) -> float:
    return sum(-math.log(_softmax(r)[y]) for r, y in zip(rows, labels, strict=True)) / len(rows)


def _kl(p: list[float], q: list[float]) -> float:
    """KL(p || q) = sum_k p_k log(p_k / q_k)."""
    return sum(pk * math.log(pk / qk) for pk, qk in zip(p, q, strict=True))


# --- hard_label_loss ----------------------------------------------------------------------------


def test_hard_label_cross_entropy_by_hand() -> None:
    # row 0: -log softmax([1,2,3])[2] = log(1 + e^-1 + e^-2); row 1: log(e + 2) - 1
    expected = (math.log(1 + math.exp(-1) + math.exp(-2)) + math.log(math.e + 2) - 1) / 2
    assert expected == pytest.approx(_ce(Z_S, Y))
    loss = hard_label_loss(_t(Z_S), _y(Y))
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_hard_label_regression_mse_by_hand() -> None:
    # one logit: MSE to the float target, batch mean: ((0.5-1)^2 + (2-1)^2) / 2 = 0.625
    loss = hard_label_loss(_t([[0.5], [2.0]]), _t([1.0, 1.0]))
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(0.625, rel=1e-12)
    # integer targets are cast to the logits' dtype, not broadcast to (B, B)
    loss_int = hard_label_loss(_t([[0.5], [2.0], [4.0]]), torch.tensor([1, 1, 1]))
    assert loss_int.item() == pytest.approx((0.25 + 1 + 9) / 3, rel=1e-12)


# --- vanilla KD ---------------------------------------------------------------------------------


def _vanilla_expected(alpha: float, temp: float) -> float:
    kl = sum(_kl(_softmax(t, temp), _softmax(s, temp)) for s, t in zip(Z_S, Z_T, strict=True)) / 2
    return alpha * _ce(Z_S, Y) + (1 - alpha) * temp**2 * kl


@pytest.mark.parametrize(("alpha", "temp"), [(0.3, 2.0), (0.5, 4.0), (0.0, 1.0), (1.0, 3.0)])
def test_vanilla_kd_by_hand(alpha: float, temp: float) -> None:
    loss = vanilla_kd_loss(_t(Z_S), _t(Z_T), _y(Y), alpha=alpha, temperature=temp)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(_vanilla_expected(alpha, temp), rel=1e-10)


def test_vanilla_kd_direction_is_teacher_to_student() -> None:
    # KL(p_t || p_s) and KL(p_s || p_t) differ on these tensors: the loss must match the former.
    forward = sum(_kl(_softmax(t, 2), _softmax(s, 2)) for s, t in zip(Z_S, Z_T, strict=True))
    reverse = sum(_kl(_softmax(s, 2), _softmax(t, 2)) for s, t in zip(Z_S, Z_T, strict=True))
    assert abs(forward - reverse) > 1e-3
    loss = vanilla_kd_loss(_t(Z_S), _t(Z_T), _y(Y), alpha=0.0, temperature=2.0).item()
    assert loss == pytest.approx(4.0 * forward / 2, rel=1e-10)
    assert loss != pytest.approx(4.0 * reverse / 2, rel=1e-3)


def test_vanilla_kd_same_logits_leaves_only_ce() -> None:
    loss = vanilla_kd_loss(_t(Z_S), _t(Z_S), _y(Y), alpha=0.25, temperature=3.0)
    assert loss.item() == pytest.approx(0.25 * _ce(Z_S, Y), rel=1e-10, abs=1e-12)


def test_vanilla_kd_regression_uses_mse_to_teacher() -> None:
    z_s, z_t, y = [[1.0], [3.0]], [[2.0], [2.0]], [1.5, 2.0]
    hard = ((1 - 1.5) ** 2 + (3 - 2) ** 2) / 2  # 0.625
    soft = ((1 - 2) ** 2 + (3 - 2) ** 2) / 2  # 1.0, no T^2 factor for regression
    loss = vanilla_kd_loss(_t(z_s), _t(z_t), _t(y), alpha=0.4, temperature=5.0)
    assert loss.item() == pytest.approx(0.4 * hard + 0.6 * soft, rel=1e-12)


# --- Annealing-KD -------------------------------------------------------------------------------


def test_annealing_kd_by_hand() -> None:
    # phi * z_t = 1 everywhere; squared errors 0, 1, 4, 9 -> mean over elements 3.5
    loss = annealing_kd_loss(_t([[1.0, 2.0], [3.0, 4.0]]), _t([[2.0, 2.0], [2.0, 2.0]]), phi=0.5)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(3.5, rel=1e-12)


def test_annealing_kd_2x3_by_hand() -> None:
    phi = 0.3
    pairs = [(s, t) for rs, rt in zip(Z_S, Z_T, strict=True) for s, t in zip(rs, rt, strict=True)]
    sq = [(s - phi * t) ** 2 for s, t in pairs]
    loss = annealing_kd_loss(_t(Z_S), _t(Z_T), phi=phi)
    assert loss.item() == pytest.approx(sum(sq) / 6, rel=1e-12)


# --- Continuation-KD ----------------------------------------------------------------------------


def _ckd_kd_term(z_s, z_t, phi: float, margin: float, reduction: str) -> float:
    terms = []
    for rs, rt in zip(z_s, z_t, strict=True):
        sq = sum((s - phi * t) ** 2 for s, t in zip(rs, rt, strict=True))
        if reduction == "mean":
            sq /= len(rs)
        terms.append(max(0.0, sq - margin * phi))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("psi", [0.0, 0.25, 0.7, 1.0])
@pytest.mark.parametrize("margin", [0.0, 1.5])
def test_ckd_by_hand(reduction: str, psi: float, margin: float) -> None:
    phi = 0.4
    expected = psi * _ce(Z_S, Y) + (1 - psi) * _ckd_kd_term(Z_S, Z_T, phi, margin, reduction)
    loss = continuation_kd_loss(
        _t(Z_S), _t(Z_T), _y(Y), phi=phi, psi=psi, margin=margin, mse_reduction=reduction
    )
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_ckd_sum_vs_mean_reduction() -> None:
    # row 0: phi z_t = [1, 0, 1] vs z_s = [2, 2, 1] -> squared norm 1 + 4 + 0 = 5
    # row 1: phi z_t = [0, 2, 0] vs z_s = [1, 2, 2] -> squared norm 1 + 0 + 4 = 5
    z_s, z_t = _t([[2.0, 2.0, 1.0], [1.0, 2.0, 2.0]]), _t([[2.0, 0.0, 2.0], [0.0, 4.0, 0.0]])
    kw = {"phi": 0.5, "psi": 0.0, "margin": 0.0}
    total = continuation_kd_loss(z_s, z_t, _y([0, 0]), mse_reduction="sum", **kw)
    mean = continuation_kd_loss(z_s, z_t, _y([0, 0]), mse_reduction="mean", **kw)
    assert total.item() == pytest.approx(5.0, rel=1e-12)
    assert mean.item() == pytest.approx(5.0 / 3, rel=1e-12)
    default = continuation_kd_loss(z_s, z_t, _y([0, 0]), **kw)
    assert default.item() == total.item()  # "sum" is the default (the paper's squared norm)


def test_ckd_hinge_is_per_example() -> None:
    # margin * phi = 2 * 0.5 = 1. Row 0: squared norm 0.5 (under the margin -> 0);
    # row 1: squared norm 5 (over -> 4). Per-example hinge: (0 + 4) / 2 = 2.
    # A hinge on the batch mean would give max(0, 2.75 - 1) = 1.75 instead.
    z_s = _t([[1.5, 0.5], [2.0, 2.0]], requires_grad=True)
    z_t = _t([[2.0, 2.0], [2.0, 0.0]])  # phi z_t = [[1, 1], [1, 0]]
    loss = continuation_kd_loss(z_s, z_t, _y([0, 1]), phi=0.5, psi=0.0, margin=2.0)
    assert loss.item() == pytest.approx(2.0, rel=1e-12)
    loss.backward()
    assert z_s.grad is not None
    assert torch.equal(z_s.grad[0], torch.zeros(2, dtype=torch.float64))  # inside the margin
    # d/dz of (1/2) * ||z - phi z_t||^2 = (z - phi z_t) for the over-margin row
    _close(z_s.grad[1], torch.tensor([1.0, 2.0], dtype=torch.float64))


def test_ckd_all_under_margin_is_zero() -> None:
    loss = continuation_kd_loss(_t(Z_S), _t(Z_T), _y(Y), phi=0.5, psi=0.0, margin=1e6)
    assert loss.item() == 0.0


def test_ckd_regression_one_logit() -> None:
    # margin * phi = 0.5; squared errors 1 and 1 -> hinge 0.5 each; MSE to labels 0.25
    z_s, z_t, y = _t([[1.0], [3.0]]), _t([[2.0], [2.0]]), _t([1.5, 2.5])
    for reduction in ("sum", "mean"):  # identical with a single logit
        loss = continuation_kd_loss(
            z_s, z_t, y, phi=1.0, psi=0.5, margin=0.5, mse_reduction=reduction
        )
        assert loss.ndim == 0
        assert loss.item() == pytest.approx(0.5 * 0.25 + 0.5 * 0.5, rel=1e-12)
    pure_ce = continuation_kd_loss(z_s, z_t, y, phi=1.0, psi=1.0, margin=0.5)
    assert pure_ce.item() == pytest.approx(0.25, rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 2**31 - 1),
    st.integers(1, 5),
    st.integers(1, 6),
    st.floats(1e-3, 1.0),
)
def test_ckd_reduces_to_annealing_kd_and_ce(seed: int, batch: int, logits: int, phi: float):
    gen = torch.Generator().manual_seed(seed)
    z_s = torch.randn(batch, logits, generator=gen, dtype=torch.float64)
    z_t = 3 * torch.randn(batch, logits, generator=gen, dtype=torch.float64)
    y = (
        torch.randn(batch, generator=gen, dtype=torch.float64)
        if logits == 1
        else torch.randint(0, logits, (batch,), generator=gen)
    )
    ckd0 = continuation_kd_loss(z_s, z_t, y, phi=phi, psi=0.0, margin=0.0, mse_reduction="mean")
    _close(ckd0, annealing_kd_loss(z_s, z_t, phi=phi))
    ckd_sum = continuation_kd_loss(z_s, z_t, y, phi=phi, psi=0.0, margin=0.0, mse_reduction="sum")
    _close(ckd_sum, logits * annealing_kd_loss(z_s, z_t, phi=phi))
    ckd1 = continuation_kd_loss(z_s, z_t, y, phi=phi, psi=1.0, margin=0.7)
    _close(ckd1, hard_label_loss(z_s, y))


# --- gradients reach the student only -----------------------------------------------------------

KD_LOSSES = {
    "vanilla_ce": lambda s, t: vanilla_kd_loss(s, t, _y(Y), alpha=0.5, temperature=2.0),
    "vanilla_soft_only": lambda s, t: vanilla_kd_loss(s, t, _y(Y), alpha=0.0, temperature=2.0),
    "annealing": lambda s, t: annealing_kd_loss(s, t, phi=0.3),
    "ckd_psi0_sum": lambda s, t: continuation_kd_loss(s, t, _y(Y), phi=0.3, psi=0.0, margin=0.1),
    "ckd_psi_mid": lambda s, t: continuation_kd_loss(
        s, t, _y(Y), phi=0.3, psi=0.5, margin=0.0, mse_reduction="mean"
    ),
    "ckd_psi1": lambda s, t: continuation_kd_loss(s, t, _y(Y), phi=0.3, psi=1.0, margin=0.0),
}


@pytest.mark.parametrize("name", sorted(KD_LOSSES))
def test_gradient_reaches_student_not_teacher(name: str) -> None:
    student = _t(Z_S, requires_grad=True)
    teacher = _t(Z_T, requires_grad=True)
    loss = KD_LOSSES[name](student, teacher)
    assert loss.ndim == 0
    assert loss.requires_grad
    loss.backward()
    assert teacher.grad is None
    assert student.grad is not None
    assert student.grad.abs().sum().item() > 0


@pytest.mark.parametrize(
    "loss_fn",
    [
        lambda s, t, y: vanilla_kd_loss(s, t, y, alpha=0.5, temperature=2.0),
        lambda s, t, y: continuation_kd_loss(s, t, y, phi=0.5, psi=0.5, margin=0.0),
    ],
)
def test_gradient_reaches_student_not_teacher_regression(loss_fn) -> None:
    student = _t([[1.0], [3.0]], requires_grad=True)
    teacher = _t([[2.0], [0.0]], requires_grad=True)
    loss_fn(student, teacher, _t([0.0, 1.0])).backward()
    assert teacher.grad is None
    assert student.grad is not None
    assert student.grad.abs().sum().item() > 0


def test_teacher_output_of_a_module_gets_no_grad() -> None:
    # teacher logits that come out of a trainable module: its weights must stay untouched
    teacher = torch.nn.Linear(3, 3).double()
    student = torch.nn.Linear(3, 3).double()
    x = _t([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    loss = continuation_kd_loss(student(x), teacher(x), _y(Y), phi=0.5, psi=0.3, margin=0.0)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())


# --- bad input ----------------------------------------------------------------------------------


def _ckd(**kw):
    args = {"phi": 0.5, "psi": 0.5, "margin": 0.0, "mse_reduction": "sum", **kw}
    return continuation_kd_loss(_t(Z_S), _t(Z_T), _y(Y), **args)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: _ckd(psi=-0.1), "psi"),
        (lambda: _ckd(psi=1.5), "psi"),
        (lambda: _ckd(psi=float("nan")), "psi"),
        (lambda: _ckd(margin=-1.0), "margin"),
        (lambda: _ckd(margin=float("inf")), "margin"),
        (lambda: _ckd(margin=float("nan")), "margin"),
        (lambda: _ckd(phi=0.0), "phi"),
        (lambda: _ckd(phi=1.5), "phi"),
        (lambda: _ckd(phi=float("nan")), "phi"),
        (lambda: _ckd(mse_reduction="max"), "mse_reduction"),
        (lambda: annealing_kd_loss(_t(Z_S), _t(Z_T), phi=0.0), "phi"),
        (lambda: annealing_kd_loss(_t(Z_S), _t(Z_T), phi=-0.5), "phi"),
        (lambda: vanilla_kd_loss(_t(Z_S), _t(Z_T), _y(Y), alpha=1.5, temperature=2.0), "alpha"),
        (lambda: vanilla_kd_loss(_t(Z_S), _t(Z_T), _y(Y), alpha=-0.1, temperature=2.0), "alpha"),
        (lambda: vanilla_kd_loss(_t(Z_S), _t(Z_T), _y(Y), alpha=0.5, temperature=0.0), "temper"),
        (lambda: vanilla_kd_loss(_t(Z_S), _t(Z_T), _y(Y), alpha=0.5, temperature=-1), "temper"),
        (
            lambda: vanilla_kd_loss(_t(Z_S), _t(Z_T), _y(Y), alpha=0.5, temperature=float("inf")),
            "temperature",
        ),
    ],
)
def test_bad_parameters_raise_value_error_naming_them(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_boundary_parameters_are_accepted() -> None:
    for psi in (0.0, 1.0):
        assert math.isfinite(_ckd(psi=psi).item())
    assert math.isfinite(_ckd(phi=1.0, margin=0.0).item())
    assert math.isfinite(annealing_kd_loss(_t(Z_S), _t(Z_T), phi=1.0).item())
