"""DKD, DIST and logit standardization: golden values, a numpy reimplementation, gradients.

Expected values come from plain ``math`` (closed forms on logits chosen as logs of simple
probabilities) or from numpy written from the papers' formulas, never from the functions
under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ckd_tune.losses import dist_loss, dkd_loss, soft_target_loss, standardize_logits
from tests.method_support import Z_S, Z_T, Y, kl, softmax, t64, y64

LN2, LN3 = math.log(2.0), math.log(3.0)


# --- numpy, from the papers' formulas -----------------------------------------------------------


def np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) per row."""
    return (p * np.log(p / q)).sum(axis=-1)


def np_dkd(z_s, z_t, y, alpha, beta, temp) -> float:
    tckd, nckd = [], []
    for zs, zt, yi in zip(z_s / temp, z_t / temp, y, strict=True):
        ps, pt = np_softmax(zs), np_softmax(zt)
        bs, bt = np.array([ps[yi], 1 - ps[yi]]), np.array([pt[yi], 1 - pt[yi]])
        rest = np.arange(len(zs)) != yi
        tckd.append(np_kl(bt, bs))
        nckd.append(np_kl(np_softmax(zt[rest]), np_softmax(zs[rest])))
    return temp**2 * (alpha * np.mean(tckd) + beta * np.mean(nckd))


def np_pearson(a: np.ndarray, b: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Per row: cosine similarity of the mean-centred rows."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return (a * b).sum(axis=-1) / (norms + eps)


def np_dist(z_s, z_t, beta, gamma, temp) -> float:
    ps, pt = np_softmax(z_s / temp), np_softmax(z_t / temp)
    inter = 1 - np_pearson(ps, pt).mean()
    intra = 1 - np_pearson(ps.T, pt.T).mean()
    return temp**2 * (beta * inter + gamma * intra)


def random_logits(seed: int, batch: int, classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z_s = rng.normal(size=(batch, classes))
    z_t = 3 * rng.normal(size=(batch, classes))
    return z_s, z_t, rng.integers(0, classes, size=batch)


# --- DKD ----------------------------------------------------------------------------------------


def test_dkd_golden_values() -> None:
    # student [0, 0, 0] (T = 1, target 0): p_s = 1/3 each, b_s = [1/3, 2/3], q_s = [1/2, 1/2].
    # Row 0, teacher [ln 2, ln 3, 0]: p_t = [2, 3, 1] / 6 -> b_t = b_s, TCKD = 0;
    #   q_t = [3/4, 1/4] -> NCKD = 3/4 ln(3/2) + 1/4 ln(1/2).
    # Row 1, teacher [ln 3, 0, 0]: p_t = [3, 1, 1] / 5 -> TCKD = 3/5 ln(9/5) + 2/5 ln(3/5);
    #   q_t = [1/2, 1/2] = q_s -> NCKD = 0.
    nckd = (0.75 * math.log(1.5) + 0.25 * math.log(0.5)) / 2
    tckd = (0.6 * math.log(1.8) + 0.4 * math.log(0.6)) / 2
    z_s, z_t = t64([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), t64([[LN2, LN3, 0.0], [LN3, 0.0, 0.0]])
    y = y64([0, 0])
    assert dkd_loss(z_s, z_t, y, alpha=1.0, beta=0.0, temperature=1.0).item() == pytest.approx(
        tckd, rel=1e-12
    )
    assert dkd_loss(z_s, z_t, y, alpha=0.0, beta=1.0, temperature=1.0).item() == pytest.approx(
        nckd, rel=1e-12
    )
    loss = dkd_loss(z_s, z_t, y, alpha=1.5, beta=8.0, temperature=1.0)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(1.5 * tckd + 8.0 * nckd, rel=1e-12)


@pytest.mark.parametrize(("alpha", "beta", "temp"), [(1.0, 8.0, 4.0), (0.5, 0.5, 1.0)])
def test_dkd_by_hand_on_the_shared_logits(alpha: float, beta: float, temp: float) -> None:
    tckd, nckd = [], []
    for s, t, y in zip(Z_S, Z_T, Y, strict=True):
        ps, pt = softmax(s, temp), softmax(t, temp)
        tckd.append(kl([pt[y], 1 - pt[y]], [ps[y], 1 - ps[y]]))
        rest_s = [v for k, v in enumerate(s) if k != y]
        rest_t = [v for k, v in enumerate(t) if k != y]
        nckd.append(kl(softmax(rest_t, temp), softmax(rest_s, temp)))
    expected = temp**2 * (alpha * sum(tckd) / 2 + beta * sum(nckd) / 2)
    loss = dkd_loss(t64(Z_S), t64(Z_T), y64(Y), alpha=alpha, beta=beta, temperature=temp)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("classes", [3, 4, 10])
def test_dkd_matches_numpy(seed: int, classes: int) -> None:
    z_s, z_t, y = random_logits(seed, batch=5, classes=classes)
    temp, alpha, beta = 1.0 + seed, 0.5 + seed / 4, 8.0 / (1 + seed)
    loss = dkd_loss(
        t64(z_s.tolist()), t64(z_t.tolist()), y64(y.tolist()),
        alpha=alpha, beta=beta, temperature=temp,
    )  # fmt: skip
    assert loss.item() == pytest.approx(np_dkd(z_s, z_t, y, alpha, beta, temp), rel=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_dkd_decomposes_kd(seed: int) -> None:
    # the paper's eq. 5: KD = TCKD + (1 - p_t,y) NCKD, per example (here one example at a time)
    z_s, z_t, y = random_logits(seed, batch=3, classes=5)
    temp = 2.0
    for zs, zt, yi in zip(z_s, z_t, y, strict=True):
        s, t, label = t64([zs.tolist()]), t64([zt.tolist()]), y64([int(yi)])
        weight = 1 - np_softmax(zt / temp)[yi]
        tckd = dkd_loss(s, t, label, alpha=1.0, beta=0.0, temperature=temp)
        nckd = dkd_loss(s, t, label, alpha=0.0, beta=1.0, temperature=temp)
        kd = soft_target_loss(s, t, temp)
        assert (tckd + weight * nckd).item() == pytest.approx(kd.item(), rel=1e-10)


def test_dkd_binary_has_no_nckd() -> None:
    # two classes: one non-target class, q = [1] for both models -> NCKD = 0 exactly
    z_s, z_t, y = t64([[0.3, -1.0], [2.0, 0.5]]), t64([[1.0, 0.0], [-2.0, 3.0]]), y64([0, 1])
    assert dkd_loss(z_s, z_t, y, alpha=0.0, beta=8.0, temperature=2.0).item() == 0.0
    # TCKD is then the whole KL: alpha times Hinton's term
    kd = sum(
        kl(softmax(t, 2.0), softmax(s, 2.0))
        for s, t in zip(z_s.tolist(), z_t.tolist(), strict=True)
    )  # fmt: skip
    loss = dkd_loss(z_s, z_t, y, alpha=0.7, beta=8.0, temperature=2.0)
    assert loss.item() == pytest.approx(0.7 * 4.0 * kd / 2, rel=1e-12)


def test_dkd_is_finite_for_a_confident_teacher() -> None:
    # p_t,y = 1 - 2e-22: 1 - p_y would round to 0 in float64; the log-sum-exp form does not
    z_s = t64([[1.0, 0.0, -1.0]], requires_grad=True)
    z_t = t64([[50.0, 0.0, 0.0]])
    loss = dkd_loss(z_s, z_t, y64([0]), alpha=1.0, beta=8.0, temperature=1.0)
    loss.backward()
    assert math.isfinite(loss.item()) and loss.item() > 0
    assert z_s.grad is not None and torch.isfinite(z_s.grad).all()
    rest = np.exp([0.0, -1.0]) / np.exp([0.0, -1.0]).sum()  # q_s; q_t = [1/2, 1/2]
    nckd = 0.5 * math.log(0.5 / rest[0]) + 0.5 * math.log(0.5 / rest[1])
    p_y = math.exp(1.0) / (math.exp(1.0) + 1 + math.exp(-1.0))
    tckd = -math.log(p_y) + 2 * math.exp(-50.0) * (math.log(2 * math.exp(-50.0) / (1 - p_y)))
    assert loss.item() == pytest.approx(tckd + 8.0 * nckd, rel=1e-12)


def test_dkd_of_identical_logits_is_zero() -> None:
    loss = dkd_loss(t64(Z_S), t64(Z_S), y64(Y), alpha=1.0, beta=8.0, temperature=4.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-14)


# --- DIST ---------------------------------------------------------------------------------------


def _pearson_by_hand(a: list[float], b: list[float], eps: float = 1e-8) -> float:
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    ca, cb = [x - ma for x in a], [x - mb for x in b]
    dot = sum(x * y for x, y in zip(ca, cb, strict=True))
    return dot / (math.sqrt(sum(x * x for x in ca)) * math.sqrt(sum(x * x for x in cb)) + eps)


def test_dist_golden_values() -> None:
    # logits = log-probabilities, T = 1. Students p_s = [1/2, 1/4, 1/4], [1/4, 1/2, 1/4];
    # teachers p_t = [1/2, 1/4, 1/4], [1/4, 1/4, 1/2]. Rows centred: equal (r = 1) and
    # [-1, 2, -1] / 12 vs [-1, -1, 2] / 12 (r = -1/2): inter = 1 - (1 - 1/2) / 2 = 3/4.
    # Columns: [1/2, 1/4] twice (r = 1), then a constant teacher and a constant student column
    # (centred to 0, r = 0): intra = 1 - 1/3 = 2/3. The 1e-8 in the denominators moves these by
    # about 1e-7, so the exact values with it are computed alongside.
    p_s = [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25]]
    p_t = [[0.5, 0.25, 0.25], [0.25, 0.25, 0.5]]
    inter = 1 - sum(_pearson_by_hand(s, t) for s, t in zip(p_s, p_t, strict=True)) / 2
    cols_s, cols_t = list(zip(*p_s, strict=True)), list(zip(*p_t, strict=True))
    intra = 1 - sum(_pearson_by_hand(s, t) for s, t in zip(cols_s, cols_t, strict=True)) / 3
    assert inter == pytest.approx(0.75, abs=1e-6)
    assert intra == pytest.approx(2 / 3, abs=1e-6)
    z_s = t64([[math.log(p) for p in row] for row in p_s])
    z_t = t64([[math.log(p) for p in row] for row in p_t])
    loss = dist_loss(z_s, z_t, beta=2.0, gamma=0.5, temperature=1.0)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(2.0 * inter + 0.5 * intra, rel=1e-12)


@pytest.mark.parametrize("temp", [1.0, 4.0])
def test_dist_by_hand_on_the_shared_logits(temp: float) -> None:
    p_s = [softmax(r, temp) for r in Z_S]
    p_t = [softmax(r, temp) for r in Z_T]
    inter = 1 - sum(_pearson_by_hand(s, t) for s, t in zip(p_s, p_t, strict=True)) / 2
    cols = zip(zip(*p_s, strict=True), zip(*p_t, strict=True), strict=True)
    intra = 1 - sum(_pearson_by_hand(list(s), list(t)) for s, t in cols) / 3
    loss = dist_loss(t64(Z_S), t64(Z_T), beta=1.0, gamma=2.0, temperature=temp)
    assert loss.item() == pytest.approx(temp**2 * (inter + 2.0 * intra), rel=1e-10)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("batch", "classes"), [(5, 3), (8, 4), (6, 10)])
def test_dist_matches_numpy(seed: int, batch: int, classes: int) -> None:
    z_s, z_t, _ = random_logits(seed, batch=batch, classes=classes)
    beta, gamma, temp = 1.0 + seed / 2, 2.0 - seed / 3, 1.0 + seed
    loss = dist_loss(t64(z_s.tolist()), t64(z_t.tolist()), beta=beta, gamma=gamma, temperature=temp)
    assert loss.item() == pytest.approx(np_dist(z_s, z_t, beta, gamma, temp), rel=1e-10)


def test_dist_of_identical_logits_is_zero() -> None:
    # r = |a|^2 / (|a|^2 + 1e-8): zero up to the epsilon (relative to a column's small spread)
    loss = dist_loss(t64(Z_S), t64(Z_S), beta=1.0, gamma=1.0, temperature=1.0).item()
    assert 0 < loss < 1e-5


def test_dist_single_example_batch() -> None:
    # one example: each class column, centred, is 0 -> r = 0, intra = 1, and no gradient from it
    z_s, z_t = t64([Z_S[0]], requires_grad=True), t64([Z_T[0]])
    intra_only = dist_loss(z_s, z_t, beta=0.0, gamma=1.0, temperature=1.0)
    assert intra_only.item() == 1.0
    intra_only.backward()
    assert z_s.grad is not None and torch.equal(z_s.grad, torch.zeros_like(z_s))


# --- logit standardization ----------------------------------------------------------------------


@pytest.mark.parametrize(("batch", "classes"), [(2, 3), (4, 10), (3, 2)])
def test_standardize_matches_numpy_with_ddof_1(batch: int, classes: int) -> None:
    z, _, _ = random_logits(batch * classes, batch=batch, classes=classes)
    expected = (z - z.mean(axis=-1, keepdims=True)) / (z.std(axis=-1, ddof=1, keepdims=True) + 1e-7)
    out = standardize_logits(t64(z.tolist()))
    assert out.shape == (batch, classes)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-14)


def test_standardize_by_hand() -> None:
    # [1, 2, 3]: mean 2, unbiased std 1 -> [-1, 0, 1] / (1 + 1e-7)
    # [1, 0, 0]: mean 1/3, unbiased std sqrt(((2/3)^2 + 2 (1/3)^2) / 2) = 1/sqrt(3)
    out = standardize_logits(t64(Z_S)).tolist()
    assert out[0] == pytest.approx([-1 / (1 + 1e-7), 0.0, 1 / (1 + 1e-7)], rel=1e-12)
    s = 1 / math.sqrt(3) + 1e-7
    assert out[1] == pytest.approx([(2 / 3) / s, (-1 / 3) / s, (-1 / 3) / s], rel=1e-12)


def test_standardized_rows_have_mean_0_and_squared_norm_k_minus_1() -> None:
    z, _, _ = random_logits(7, batch=4, classes=6)
    out = standardize_logits(t64(z.tolist()))
    assert torch.allclose(out.mean(dim=-1), torch.zeros(4, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(out.pow(2).sum(dim=-1), torch.full((4,), 5.0, dtype=torch.float64))
    # invariant to a shift and a positive scale of each row (up to the 1e-7)
    shifted = standardize_logits(3.0 * t64(z.tolist()) - 7.0)
    assert torch.allclose(shifted, out, rtol=1e-6)


def test_standardize_binary_keeps_only_the_sign() -> None:
    out = standardize_logits(t64([[0.3, 0.1], [-5.0, 4.0]]))
    r = 1 / math.sqrt(2)
    assert out.tolist()[0] == pytest.approx([r, -r], rel=1e-6)
    assert out.tolist()[1] == pytest.approx([-r, r], rel=1e-6)


# --- one logit, gradients -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "term",
    [
        lambda s, t: dkd_loss(s, t, t64([0.5, 1.0]), alpha=1.0, beta=1.0, temperature=1.0),
        lambda s, t: dist_loss(s, t, beta=1.0, gamma=1.0, temperature=1.0),
        lambda s, t: standardize_logits(s),
    ],
    ids=["dkd", "dist", "standardize"],
)
def test_one_logit_is_refused(term) -> None:
    with pytest.raises(ValueError, match="two or more logits"):
        term(t64([[1.0], [2.0]]), t64([[0.0], [1.0]]))


def test_teacher_module_gets_no_grad() -> None:
    teacher = torch.nn.Linear(3, 3).double()
    student = torch.nn.Linear(3, 3).double()
    x = t64([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    (
        dkd_loss(student(x), teacher(x), y64(Y), alpha=1.0, beta=8.0, temperature=4.0)
        + dist_loss(student(x), teacher(x), beta=1.0, gamma=1.0, temperature=1.0)
    ).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())
