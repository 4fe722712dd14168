"""Loss terms: hand-computed values on tiny tensors, gradients, reductions.

Expected values are computed with plain ``math`` on Python lists, never with torch's own
loss functions, so that a wrong reduction or a swapped KL direction shows up.
"""

from __future__ import annotations

import math

import pytest
import torch

from ckd_tune.losses import (
    annealing_mse,
    dist_loss,
    dkd_loss,
    hard_label_loss,
    hinge_mse,
    soft_target_loss,
    standardize_logits,
)
from tests.method_support import Z_S, Z_T, Y, ce, close, kl, softmax, t64, y64

# --- hard_label_loss ----------------------------------------------------------------------------


def test_hard_label_cross_entropy_by_hand() -> None:
    # row 0: -log softmax([1,2,3])[2] = log(1 + e^-1 + e^-2); row 1: log(e + 2) - 1
    expected = (math.log(1 + math.exp(-1) + math.exp(-2)) + math.log(math.e + 2) - 1) / 2
    assert expected == pytest.approx(ce(Z_S, Y))
    loss = hard_label_loss(t64(Z_S), y64(Y))
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_hard_label_regression_mse_by_hand() -> None:
    # one logit: MSE to the float target, batch mean: ((0.5-1)^2 + (2-1)^2) / 2 = 0.625
    loss = hard_label_loss(t64([[0.5], [2.0]]), t64([1.0, 1.0]))
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(0.625, rel=1e-12)
    # integer targets are cast to the logits' dtype, not broadcast to (B, B)
    loss_int = hard_label_loss(t64([[0.5], [2.0], [4.0]]), torch.tensor([1, 1, 1]))
    assert loss_int.item() == pytest.approx((0.25 + 1 + 9) / 3, rel=1e-12)


# --- soft targets (vanilla KD's distillation term) -----------------------------------------------


def _soft_expected(temp: float) -> float:
    mean_kl = sum(kl(softmax(t, temp), softmax(s, temp)) for s, t in zip(Z_S, Z_T, strict=True)) / 2
    return temp**2 * mean_kl


@pytest.mark.parametrize("temp", [1.0, 2.0, 4.0])
def test_soft_target_loss_by_hand(temp: float) -> None:
    loss = soft_target_loss(t64(Z_S), t64(Z_T), temp)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(_soft_expected(temp), rel=1e-10)


def test_soft_target_direction_is_teacher_to_student() -> None:
    # KL(p_t || p_s) and KL(p_s || p_t) differ on these tensors: the loss must match the former.
    forward = sum(kl(softmax(t, 2), softmax(s, 2)) for s, t in zip(Z_S, Z_T, strict=True))
    reverse = sum(kl(softmax(s, 2), softmax(t, 2)) for s, t in zip(Z_S, Z_T, strict=True))
    assert abs(forward - reverse) > 1e-3
    loss = soft_target_loss(t64(Z_S), t64(Z_T), 2.0).item()
    assert loss == pytest.approx(4.0 * forward / 2, rel=1e-10)
    assert loss != pytest.approx(4.0 * reverse / 2, rel=1e-3)


def test_soft_target_same_logits_is_zero() -> None:
    assert soft_target_loss(t64(Z_S), t64(Z_S), 3.0).item() == pytest.approx(0.0, abs=1e-12)


def test_soft_target_regression_is_mse_to_teacher() -> None:
    soft = ((1 - 2) ** 2 + (3 - 2) ** 2) / 2  # 1.0, no T^2 factor for regression
    loss = soft_target_loss(t64([[1.0], [3.0]]), t64([[2.0], [2.0]]), 5.0)
    assert loss.item() == pytest.approx(soft, rel=1e-12)


# --- Annealing-KD's regression on phi-scaled logits ---------------------------------------------


def test_annealing_mse_by_hand() -> None:
    # phi * z_t = 1 everywhere; squared errors 0, 1, 4, 9 -> mean over elements 3.5
    loss = annealing_mse(t64([[1.0, 2.0], [3.0, 4.0]]), t64([[2.0, 2.0], [2.0, 2.0]]), 0.5)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(3.5, rel=1e-12)


def test_annealing_mse_2x3_by_hand() -> None:
    phi = 0.3
    pairs = [(s, t) for rs, rt in zip(Z_S, Z_T, strict=True) for s, t in zip(rs, rt, strict=True)]
    sq = [(s - phi * t) ** 2 for s, t in pairs]
    assert annealing_mse(t64(Z_S), t64(Z_T), phi).item() == pytest.approx(sum(sq) / 6, rel=1e-12)


# --- Continuation-KD's hinged squared error -----------------------------------------------------


def _hinge_expected(z_s, z_t, phi: float, margin: float, reduction: str) -> float:
    terms = []
    for rs, rt in zip(z_s, z_t, strict=True):
        sq = sum((s - phi * t) ** 2 for s, t in zip(rs, rt, strict=True))
        if reduction == "mean":
            sq /= len(rs)
        terms.append(max(0.0, sq - margin * phi))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("margin", [0.0, 1.5])
@pytest.mark.parametrize("phi", [0.4, 1.0])
def test_hinge_mse_by_hand(reduction: str, margin: float, phi: float) -> None:
    loss = hinge_mse(t64(Z_S), t64(Z_T), phi=phi, margin=margin, reduction=reduction)
    assert loss.ndim == 0
    expected = _hinge_expected(Z_S, Z_T, phi, margin, reduction)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_hinge_mse_sum_vs_mean_reduction() -> None:
    # row 0: phi z_t = [1, 0, 1] vs z_s = [2, 2, 1] -> squared norm 1 + 4 + 0 = 5
    # row 1: phi z_t = [0, 2, 0] vs z_s = [1, 2, 2] -> squared norm 1 + 0 + 4 = 5
    z_s, z_t = t64([[2.0, 2.0, 1.0], [1.0, 2.0, 2.0]]), t64([[2.0, 0.0, 2.0], [0.0, 4.0, 0.0]])
    total = hinge_mse(z_s, z_t, phi=0.5, margin=0.0, reduction="sum")
    mean = hinge_mse(z_s, z_t, phi=0.5, margin=0.0, reduction="mean")
    assert total.item() == pytest.approx(5.0, rel=1e-12)
    assert mean.item() == pytest.approx(5.0 / 3, rel=1e-12)
    default = hinge_mse(z_s, z_t, phi=0.5, margin=0.0)
    assert default.item() == total.item()  # "sum" is the default (the paper's squared norm)


def test_hinge_is_per_example() -> None:
    # margin * phi = 2 * 0.5 = 1. Row 0: squared norm 0.5 (under the margin -> 0);
    # row 1: squared norm 5 (over -> 4). Per-example hinge: (0 + 4) / 2 = 2.
    # A hinge on the batch mean would give max(0, 2.75 - 1) = 1.75 instead.
    z_s = t64([[1.5, 0.5], [2.0, 2.0]], requires_grad=True)
    z_t = t64([[2.0, 2.0], [2.0, 0.0]])  # phi z_t = [[1, 1], [1, 0]]
    loss = hinge_mse(z_s, z_t, phi=0.5, margin=2.0)
    assert loss.item() == pytest.approx(2.0, rel=1e-12)
    loss.backward()
    assert z_s.grad is not None
    assert torch.equal(z_s.grad[0], torch.zeros(2, dtype=torch.float64))  # inside the margin
    # d/dz of (1/2) * ||z - phi z_t||^2 = (z - phi z_t) for the over-margin row
    close(z_s.grad[1], torch.tensor([1.0, 2.0], dtype=torch.float64))


def test_hinge_all_under_margin_is_zero() -> None:
    assert hinge_mse(t64(Z_S), t64(Z_T), phi=0.5, margin=1e6).item() == 0.0


def test_hinge_regression_one_logit() -> None:
    # margin * phi = 0.5; squared errors 1 and 1 -> hinge 0.5 each
    z_s, z_t = t64([[1.0], [3.0]]), t64([[2.0], [2.0]])
    for reduction in ("sum", "mean"):  # identical with a single logit
        loss = hinge_mse(z_s, z_t, phi=1.0, margin=0.5, reduction=reduction)
        assert loss.item() == pytest.approx(0.5, rel=1e-12)


def test_hinge_without_margin_is_annealing_mse_times_logits() -> None:
    for reduction, scale in (("mean", 1), ("sum", 3)):
        hinge = hinge_mse(t64(Z_S), t64(Z_T), phi=0.3, margin=0.0, reduction=reduction)
        close(hinge, scale * annealing_mse(t64(Z_S), t64(Z_T), 0.3))


# --- gradients reach the student only -----------------------------------------------------------

TERMS = {
    "hard": lambda s, t: hard_label_loss(s, y64(Y)),
    "soft": lambda s, t: soft_target_loss(s, t, 2.0),
    "annealing": lambda s, t: annealing_mse(s, t, 0.3),
    "hinge_sum": lambda s, t: hinge_mse(s, t, phi=0.3, margin=0.1),
    "hinge_mean": lambda s, t: hinge_mse(s, t, phi=0.3, margin=0.0, reduction="mean"),
    "dkd": lambda s, t: dkd_loss(s, t, y64(Y), alpha=1.0, beta=8.0, temperature=4.0),
    "dkd_binary": lambda s, t: dkd_loss(
        s[:, :2], t[:, :2], y64([1, 0]), alpha=1.0, beta=8.0, temperature=2.0
    ),
    "dist": lambda s, t: dist_loss(s, t, beta=1.0, gamma=1.0, temperature=2.0),
    "standardized_kd": lambda s, t: soft_target_loss(
        standardize_logits(s), standardize_logits(t), 2.0
    ),
}


@pytest.mark.parametrize("name", sorted(TERMS))
def test_gradient_reaches_student_not_teacher(name: str) -> None:
    student = t64(Z_S, requires_grad=True)
    teacher = t64(Z_T, requires_grad=True)
    loss = TERMS[name](student, teacher)
    assert loss.ndim == 0
    loss.backward()
    assert teacher.grad is None
    assert student.grad is not None
    assert torch.isfinite(student.grad).all()
    assert student.grad.abs().sum().item() > 0


@pytest.mark.parametrize(
    "term",
    [
        lambda s, t: soft_target_loss(s, t, 2.0),
        lambda s, t: hinge_mse(s, t, phi=0.5, margin=0.0),
        lambda s, t: annealing_mse(s, t, 0.5),
    ],
)
def test_gradient_reaches_student_not_teacher_regression(term) -> None:
    student = t64([[1.0], [3.0]], requires_grad=True)
    teacher = t64([[2.0], [0.0]], requires_grad=True)
    term(student, teacher).backward()
    assert teacher.grad is None
    assert student.grad is not None
    assert student.grad.abs().sum().item() > 0


def test_teacher_output_of_a_module_gets_no_grad() -> None:
    # teacher logits that come out of a trainable module: its weights must stay untouched
    teacher = torch.nn.Linear(3, 3).double()
    student = torch.nn.Linear(3, 3).double()
    x = t64([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    (
        hinge_mse(student(x), teacher(x), phi=0.5, margin=0.0)
        + soft_target_loss(student(x), teacher(x), 2.0)
    ).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())
