"""The method interface and registry: discovery, registration, term sums, common guarantees."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import pkgutil

import pytest
import torch

import ckd_tune.methods
from ckd_tune.config import TrainConfig
from ckd_tune.errors import UserInputError
from ckd_tune.methods import METHODS, Method, MethodParams, Term, get_method, register, total
from tests.method_support import logits, method


def test_every_module_in_the_package_is_discovered() -> None:
    # no central list: every module under ckd_tune/methods/ is imported, and every Method
    # subclass defined in one is registered under its name
    defined = {}
    for info in pkgutil.iter_modules(ckd_tune.methods.__path__):
        module = importlib.import_module(f"ckd_tune.methods.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Method) and cls is not Method and cls.__module__ == module.__name__:
                defined[cls.name] = cls
    assert defined == METHODS
    assert {"none", "kd", "annealing_kd", "ckd"} <= set(METHODS)


@pytest.mark.parametrize(
    ("name", "needs_teacher"),
    [
        ("none", False),
        ("kd", True),
        ("annealing_kd", True),
        ("ckd", True),
        ("dkd", True),
        ("dist", True),
    ],
)
def test_needs_teacher(name: str, needs_teacher: bool) -> None:
    assert METHODS[name].needs_teacher is needs_teacher


@pytest.mark.parametrize("name", ["bogus", "", "CKD", "annealing"])
def test_get_method_unknown(name: str) -> None:
    with pytest.raises(UserInputError, match="method") as info:
        get_method(name)
    assert "annealing_kd" in str(info.value)  # the choices are listed


def test_register_refuses_a_second_method_of_the_same_name() -> None:
    class Other(Method):
        name = "kd"

    with pytest.raises(ValueError, match="registered twice"):
        register(Other)
    assert METHODS["kd"] is not Other


def test_register_needs_a_name_and_known_annealing_fields() -> None:
    class Nameless(Method):
        pass

    with pytest.raises(TypeError, match="name"):
        register(Nameless)

    @dataclasses.dataclass(frozen=True)
    class P(MethodParams):
        window: float = 0.5

    class Typo(Method):
        name = "typo_test_method"
        params_type = P
        annealing_fields = ("windw",)

    with pytest.raises(TypeError, match="windw"):
        register(Typo)
    assert "typo_test_method" not in METHODS


def test_a_method_must_define_its_loss() -> None:
    class NoLoss(Method):
        name = "no_loss_test_method"

    with pytest.raises(TypeError, match="loss_terms"):
        NoLoss(MethodParams(), 3)


def test_a_method_refuses_another_methods_parameters() -> None:
    kd_params = TrainConfig(method="kd").params
    with pytest.raises(TypeError, match="CKDParams"):
        METHODS["ckd"](kd_params, 3)


def test_params_are_frozen() -> None:
    params = TrainConfig(method="kd").params
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.alpha = 0.9  # type: ignore[union-attr]


# --- the sum of terms ---------------------------------------------------------------------------


def test_total_is_the_weighted_sum() -> None:
    a, b = torch.tensor(2.0), torch.tensor(5.0)
    assert total({"a": Term(0.25, a), "b": Term(0.75, b)}).item() == pytest.approx(4.25)


def test_a_zero_weight_term_never_enters_the_loss() -> None:
    # 0 * nan is nan: a term that is off must not poison the loss or its gradient
    x = torch.tensor(3.0, requires_grad=True)
    loss = total({"on": Term(1.0, x * 2), "off": Term(0.0, x * float("nan"))})
    loss.backward()
    assert loss.item() == 6.0
    assert x.grad.item() == 2.0


def test_all_terms_off_is_an_error() -> None:
    with pytest.raises(ValueError, match="weight 0"):
        total({"a": Term(0.0, torch.tensor(1.0))})


# --- every method ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["kd", "annealing_kd", "ckd", "dkd", "dist"])
def test_teacher_methods_fail_without_teacher(name: str) -> None:
    z_s, _, y = logits()
    m = method(name)
    with pytest.raises(AssertionError):
        m.loss_terms(z_s, None, y, m.schedule(0.1))


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("num_logits", [1, 3])
def test_terms_are_finite_scalars_with_grad_to_the_student_only(name: str, num_logits: int):
    m = method(name, epochs=4, **({"margin": 0.1} if name == "ckd" else {}))
    for progress in (0.0, 0.1, 0.3, 0.5, 0.9, 1.0):
        z_s, z_t, y = logits(seed=int(progress * 10), num_logits=num_logits)
        values = m.schedule(progress)
        assert all(math.isfinite(v) for v in values.values())
        terms = m.loss_terms(z_s, z_t if m.needs_teacher else None, y, values)
        assert terms and all(t.value.ndim == 0 for t in terms.values())
        assert all(0.0 <= t.weight <= 1.0 for t in terms.values())
        loss = total(terms)
        assert torch.isfinite(loss)
        loss.backward()
        assert z_s.grad is not None and torch.isfinite(z_s.grad).all()
        assert z_s.grad.abs().sum() > 0
        assert z_t.grad is None


def test_annealing_fields_name_the_window_early_stopping_must_wait_for() -> None:
    assert METHODS["ckd"].annealing_fields == ("anneal_fraction", "psi_end_fraction")
    assert METHODS["annealing_kd"].annealing_fields == ("anneal_fraction",)
    assert METHODS["kd"].annealing_fields == METHODS["none"].annealing_fields == ()
