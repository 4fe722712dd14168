"""CTKD: the learned temperature T(theta), the cosine lambda curriculum, the gradient-reversal
layer, the loss by hand, parameter checks and what the schedules plot shows."""

from __future__ import annotations

import math

import pytest
import torch

from ckd_tune.config import TrainConfig
from ckd_tune.errors import UserInputError
from ckd_tune.learned_temperature import GlobalTemperature, reverse_gradient
from ckd_tune.methods import METHODS, total
from ckd_tune.report.results import schedule_curves
from tests.method_support import Z_S, Z_T, Y, ce, kl, loss, method, softmax, t64, y64


def _t(theta: float, t_start: float = 1.0, t_range: float = 20.0) -> float:
    return t_start + t_range / (1.0 + math.exp(-theta))


# --- the learned temperature --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("theta", "t_start", "t_range", "expected"),
    [
        (1.0, 1.0, 20.0, 15.621171572600098),  # the official start: 1 + 20 sigmoid(1)
        (0.0, 1.0, 20.0, 11.0),  # the middle of the range
        (-2.0, 1.0, 20.0, 3.384058440442351),  # 1 + 20 / (1 + e^2)
        (0.0, 2.0, 4.0, 4.0),
    ],
)
def test_temperature_of_theta_by_hand(theta, t_start, t_range, expected) -> None:
    temperature = GlobalTemperature(t_start, t_range)
    assert temperature.theta.item() == 1.0  # the official Global_T's start
    with torch.no_grad():
        temperature.theta.fill_(theta)
    assert temperature.value() == pytest.approx(expected, rel=1e-6)
    assert temperature(0.5).item() == pytest.approx(expected, rel=1e-6)  # GRL: identity forward
    assert _t(theta, t_start, t_range) == pytest.approx(expected, rel=1e-12)


# --- the gradient-reversal layer ----------------------------------------------------------------


def test_gradient_reversal_is_identity_forward_and_minus_lambda_backward() -> None:
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    y = reverse_gradient(x, 0.5)
    assert torch.equal(y, x) and y is not x
    (y**2).sum().backward()  # d/dx sum(x^2) = 2x, reversed and halved: -x
    assert torch.equal(x.grad, torch.tensor([-1.0, 2.0]))


@pytest.mark.parametrize(("strength", "expected"), [(0.0, 0.0), (1.0, -3.0), (2.5, -7.5)])
def test_gradient_reversal_scales_by_strength(strength: float, expected: float) -> None:
    x = torch.tensor(4.0, requires_grad=True)
    (3.0 * reverse_gradient(x, strength)).backward()
    assert x.grad.item() == expected


# --- the lambda curriculum ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        (0.0, 0.2),
        (0.125, 0.2 + (1 - math.cos(math.pi / 4)) / 2),  # a quarter of the way: 0.3464...
        (0.25, 0.7),  # half way: the mean of the ends
        (0.375, 0.2 + (1 - math.cos(3 * math.pi / 4)) / 2),  # 1.0535...
        (0.5, 1.2),  # the curriculum's end ...
        (0.9, 1.2),  # ... then held
    ],
)
def test_cosine_curriculum_by_hand(progress: float, expected: float) -> None:
    m = method("ctkd", lambda_min=0.2, lambda_max=1.2, curriculum_fraction=0.5)
    assert m.schedule(progress) == {"lambda": pytest.approx(expected, rel=1e-12)}


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [(0, 0.0), (1, 0.024471741852423234), (5, 0.5), (10, 1.0), (239, 1.0)],
)
def test_paper_curriculum_over_240_epochs(epoch: int, expected: float) -> None:
    # the paper: lambda_n = (1 + cos((1 + n / 10) pi)) / 2 for n < 10 epochs, then 1
    m = method("ctkd", epochs=240)
    assert m.params.curriculum_fraction == 10 / 240
    paper = 0.5 * (1 + math.cos((1 + min(epoch, 10) / 10) * math.pi))
    assert paper == pytest.approx(expected, abs=1e-15)
    assert m.schedule(epoch / 240)["lambda"] == pytest.approx(expected, abs=1e-12)


# --- the loss -----------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.1, 0.5, 1.0])
def test_ctkd_loss_by_hand_at_the_learned_temperature(alpha: float) -> None:
    temp = _t(1.0)  # theta's start
    mean_kl = sum(kl(softmax(t, temp), softmax(s, temp)) for s, t in zip(Z_S, Z_T, strict=True)) / 2
    expected = alpha * ce(Z_S, Y) + (1 - alpha) * temp**2 * mean_kl
    m = method("ctkd", alpha=alpha)
    assert m.learned() == {"T": pytest.approx(temp, rel=1e-6)}
    assert m.phase2_epoch() is None
    value = loss(m, t64(Z_S), t64(Z_T), y64(Y), 0.5).item()
    assert value == pytest.approx(expected, rel=1e-6)  # theta is float32
    terms = m.loss_terms(t64(Z_S), t64(Z_T), y64(Y), {"lambda": 1.0})
    assert {name: t.weight for name, t in terms.items()} == {"ce": alpha, "kd": 1 - alpha}


@pytest.mark.parametrize("strength", [0.0, 0.5, 1.0])
def test_theta_gets_the_reversed_gradient_of_the_kd_term(strength: float) -> None:
    # d/dtheta of (1 - alpha) T(theta)^2 KL_T by central differences in plain math, reversed
    alpha = 0.1

    def kd_term(theta: float) -> float:
        temp = _t(theta)
        pairs = zip(Z_S, Z_T, strict=True)
        return (
            (1 - alpha)
            * temp**2
            * sum(kl(softmax(t, temp), softmax(s, temp)) for s, t in pairs)
            / 2
        )

    h = 1e-5
    slope = (kd_term(1.0 + h) - kd_term(1.0 - h)) / (2 * h)
    m = method("ctkd", alpha=alpha)
    z_s = t64(Z_S, requires_grad=True)
    total(m.loss_terms(z_s, t64(Z_T), y64(Y), {"lambda": strength})).backward()
    assert slope != 0
    assert m.temperature.theta.grad.item() == pytest.approx(-strength * slope, rel=1e-4, abs=1e-9)
    assert z_s.grad is not None  # the student's gradient is not reversed: it lowers the loss


def test_ctkd_regression_uses_mse_to_teacher_and_leaves_t_alone() -> None:
    hard = ((1 - 1.5) ** 2 + (3 - 2) ** 2) / 2  # 0.625
    soft = ((1 - 2) ** 2 + (3 - 2) ** 2) / 2  # 1.0, no T at all for regression
    m = method("ctkd", alpha=0.4)
    z_s = t64([[1.0], [3.0]], requires_grad=True)
    value = loss(m, z_s, t64([[2.0], [2.0]]), t64([1.5, 2.0]), 1.0)
    assert value.item() == pytest.approx(0.4 * hard + 0.6 * soft, rel=1e-12)
    value.backward()
    assert m.temperature.theta.grad is None


# --- the interface ------------------------------------------------------------------------------


def test_ctkd_owns_one_module_with_its_temperature() -> None:
    m = method("ctkd", t_start=2.0, t_range=8.0)
    module = m.trainable()
    assert module is m.trainable() is m.temperature  # the same module on every call
    assert [name for name, _ in module.named_parameters()] == ["theta"]
    assert m.learned() == {"T": pytest.approx(2.0 + 8.0 / (1 + math.exp(-1.0)), rel=1e-6)}
    assert method("ctkd").trainable() is not module  # a new run, a new temperature
    assert METHODS["ctkd"].annealing_fields == ("curriculum_fraction",)


@pytest.mark.parametrize("name", ["none", "kd", "annealing_kd", "ckd"])
def test_other_methods_learn_nothing(name: str) -> None:
    m = method(name)
    assert m.trainable() is None and m.learned() == {}


def test_schedules_plot_only_lambda_for_ctkd() -> None:
    # T is learned, known only from a run's history: the schedules show the curriculum
    curves = schedule_curves({"ctkd": {"epochs": 4, "curriculum_fraction": 0.5}}, points=5)
    assert set(curves["ctkd"]) == {"progress", "lambda"}
    # at the epoch starts 0, 1/4, 1/2, 3/4 (and 3/4 again at the end)
    assert curves["ctkd"]["lambda"] == pytest.approx([0.0, 0.5, 1.0, 1.0, 1.0], rel=1e-12)


# --- parameters ---------------------------------------------------------------------------------


def test_defaults_are_the_papers() -> None:
    p = TrainConfig.from_flat({"method": "ctkd"}).params
    assert (p.alpha, p.t_start, p.t_range) == (0.1, 1.0, 20.0)
    assert (p.lambda_min, p.lambda_max, p.curriculum_fraction) == (0.0, 1.0, 10 / 240)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": math.nan}, "alpha"),
        ({"t_start": 0.0}, "t_start"),
        ({"t_start": -1.0}, "t_start"),
        ({"t_range": 0.0}, "t_range"),
        ({"t_range": math.inf}, "t_range"),
        ({"lambda_min": -0.1}, "lambda_min"),
        ({"lambda_max": math.nan}, "lambda_max"),
        ({"lambda_min": 0.8, "lambda_max": 0.5}, "lambda_min: must be <= lambda_max"),
        ({"curriculum_fraction": 0.0}, "curriculum_fraction"),
        ({"curriculum_fraction": 1.5}, "curriculum_fraction"),
        ({"temperature": 4.0}, "not a shared setting nor a parameter of method 'ctkd'"),
    ],
)
def test_bad_parameters_are_refused_naming_them(params: dict, match: str) -> None:
    with pytest.raises(UserInputError, match=match):
        TrainConfig.from_flat({"method": "ctkd", **params})


def test_boundary_parameters_are_accepted() -> None:
    flat = {"alpha": 1.0, "lambda_min": 0.5, "lambda_max": 0.5, "curriculum_fraction": 1.0}
    config = TrainConfig.from_flat({"method": "ctkd", **flat})
    assert config.build_method().schedule(0.3) == {"lambda": 0.5}


def test_a_live_teachers_inference_logits_train_the_temperature() -> None:
    """A live teacher computes its logits under ``torch.inference_mode``; the learned T's
    backward needs them saved, so CTKD takes a normal copy (CIFAR's augmented batches)."""
    m = method("ctkd")
    with torch.inference_mode():
        teacher = t64(Z_T)
    student = t64(Z_S).requires_grad_(True)
    terms = m.loss_terms(student, teacher, y64(Y), m.schedule(0.5))
    total(terms).backward()
    (theta,) = m.trainable().parameters()
    assert theta.grad is not None and torch.isfinite(theta.grad).all()
