"""Distillation methods: teacher needs, schedules, phase 2, the CKD -> Annealing-KD reduction."""

from __future__ import annotations

import dataclasses
import math
from itertools import pairwise

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ckd_tune import losses
from ckd_tune.config import TrainConfig
from ckd_tune.errors import UserInputError
from ckd_tune.methods import METHODS, Method, get_method
from ckd_tune.methods import progress as schedule_progress
from ckd_tune.schedules import SCHEDULES, phi, temperature


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """``torch.testing.assert_close`` without its slow first import: same shape, same values."""
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, rtol=1e-9, atol=1e-12), (actual, expected)


ALL_METHODS = sorted(METHODS)
RISING_SHAPES = sorted(set(SCHEDULES) - {"constant"})


def _logits(seed: int = 0, batch: int = 4, num_logits: int = 3):
    gen = torch.Generator().manual_seed(seed)
    z_s = torch.randn(batch, num_logits, generator=gen, dtype=torch.float64, requires_grad=True)
    z_t = 2 * torch.randn(batch, num_logits, generator=gen, dtype=torch.float64)
    z_t.requires_grad_(True)
    if num_logits == 1:
        y = torch.randn(batch, generator=gen, dtype=torch.float64)
    else:
        y = torch.randint(0, num_logits, (batch,), generator=gen)
    return z_s, z_t, y


# --- registry -----------------------------------------------------------------------------------


def test_registry() -> None:
    assert set(METHODS) == {"none", "kd", "annealing_kd", "ckd"}
    for name, method in METHODS.items():
        assert isinstance(method, Method)
        assert method.name == name
        assert get_method(name) is method


@pytest.mark.parametrize(
    ("name", "needs_teacher"),
    [("none", False), ("kd", True), ("annealing_kd", True), ("ckd", True)],
)
def test_needs_teacher(name: str, needs_teacher: bool) -> None:
    assert METHODS[name].needs_teacher is needs_teacher


@pytest.mark.parametrize("name", ["bogus", "", "CKD", "annealing"])
def test_get_method_unknown(name: str) -> None:
    with pytest.raises(ValueError, match="method") as info:
        get_method(name)
    assert isinstance(info.value, UserInputError)
    assert "annealing_kd" in str(info.value)  # the choices are listed


def test_method_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        METHODS["kd"].needs_teacher = False  # type: ignore[misc]


# --- "none" and "kd" ----------------------------------------------------------------------------


def test_none_needs_no_teacher() -> None:
    z_s, _, y = _logits()
    config = TrainConfig(method="none")
    method = METHODS["none"]
    assert method.schedule(config, 0.3) == {}
    assert method.phase2_epoch(config) is None
    loss = method.loss(z_s, None, y, config, {})
    _close(loss, losses.hard_label_loss(z_s, y))


def test_kd_is_vanilla_kd_with_config_values() -> None:
    z_s, z_t, y = _logits()
    config = TrainConfig(method="kd", kd_alpha=0.2, kd_temperature=3.0)
    method = METHODS["kd"]
    assert method.schedule(config, 0.7) == {}
    assert method.phase2_epoch(config) is None
    loss = method.loss(z_s, z_t, y, config, {})
    expected = losses.vanilla_kd_loss(z_s, z_t, y, alpha=0.2, temperature=3.0)
    _close(loss, expected)


@pytest.mark.parametrize("name", ["kd", "annealing_kd", "ckd"])
def test_teacher_methods_fail_without_teacher(name: str) -> None:
    z_s, _, y = _logits()
    config = TrainConfig(method=name)
    values = METHODS[name].schedule(config, 0.1)
    with pytest.raises((AssertionError, AttributeError, TypeError)):
        METHODS[name].loss(z_s, None, y, config, values)


# --- Annealing-KD -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("anneal_fraction", "epochs", "expected"),
    [
        (0.5, 4, 2),
        (0.5, 10, 5),
        (0.25, 8, 2),
        (0.6, 5, 3),
        (0.1, 3, 1),  # round(0.3) = 0 -> at least one epoch of phase 1
        (0.5, 1, None),  # max(1, round(0.5)) = 1 = epochs: no phase 2
        (0.9, 3, None),  # round(2.7) = 3 = epochs
        (1.0, 3, None),
    ],
)
def test_annealing_phase2_epoch(anneal_fraction: float, epochs: int, expected) -> None:
    config = TrainConfig(method="annealing_kd", anneal_fraction=anneal_fraction, epochs=epochs)
    assert METHODS["annealing_kd"].phase2_epoch(config) == expected


@settings(max_examples=50, deadline=None)
@given(st.floats(1e-3, 1.0), st.integers(1, 200))
def test_annealing_phase2_epoch_is_rounded_fraction(anneal_fraction: float, epochs: int) -> None:
    config = TrainConfig(anneal_fraction=anneal_fraction, epochs=epochs)
    boundary = max(1, round(anneal_fraction * epochs))
    expected = None if boundary == epochs else boundary
    assert METHODS["annealing_kd"].phase2_epoch(config) == expected


def test_annealing_schedule_phases() -> None:
    config = TrainConfig(method="annealing_kd", epochs=4, anneal_fraction=0.5, t_max=10.0)
    schedule = METHODS["annealing_kd"].schedule
    assert schedule(config, 0.0) == {"T": 10.0, "phi": 0.1, "psi": 0.0}
    # phase 1 covers progress [0, 0.5): T steps down through 10..1, one per 1/20 of training
    assert schedule(config, 0.05)["T"] == 9.0
    assert schedule(config, 0.26) == {"T": 5.0, "phi": phi(5.0, 10.0), "psi": 0.0}
    assert schedule(config, 0.47) == {"T": 1.0, "phi": 1.0, "psi": 0.0}
    for p in (0.5, 0.75, 1.0):  # phase 2: plain CE
        assert schedule(config, p) == {"T": 1.0, "phi": 1.0, "psi": 1.0}


def test_annealing_boundary_sits_on_an_epoch() -> None:
    # anneal_fraction 0.5 of 3 epochs rounds to 2 epochs: phase 1 runs to progress 2/3
    config = TrainConfig(method="annealing_kd", epochs=3, anneal_fraction=0.5)
    schedule = METHODS["annealing_kd"].schedule
    assert schedule(config, 0.6)["psi"] == 0.0
    assert schedule(config, 2 / 3)["psi"] == 1.0
    assert schedule(config, 0.6)["T"] == temperature(0.6 / (2 / 3), config.t_max)


def test_annealing_loss_by_phase() -> None:
    z_s, z_t, y = _logits(seed=3)
    config = TrainConfig(method="annealing_kd", epochs=4, anneal_fraction=0.5, t_max=4.0)
    method = METHODS["annealing_kd"]
    v1 = method.schedule(config, 0.1)
    assert v1["psi"] == 0.0
    _close(method.loss(z_s, z_t, y, config, v1), losses.annealing_kd_loss(z_s, z_t, phi=v1["phi"]))
    v2 = method.schedule(config, 0.9)
    _close(method.loss(z_s, z_t, y, config, v2), losses.hard_label_loss(z_s, y))
    # phase 2 is plain CE: no teacher needed there
    _close(method.loss(z_s, None, y, config, v2), losses.hard_label_loss(z_s, y))


@pytest.mark.parametrize("path", ["steps", "linear", "cosine", "exponential", "sigmoid"])
def test_annealing_temperature_reaches_one_before_phase2(path: str) -> None:
    config = TrainConfig(
        method="annealing_kd", epochs=10, anneal_fraction=0.5, t_max=7.3, temperature_path=path
    )
    schedule = METHODS["annealing_kd"].schedule
    values = [schedule(config, i / 1000) for i in range(500)]
    temps = [v["T"] for v in values]
    assert temps[0] == 7.3
    assert temps == sorted(temps, reverse=True)
    assert all(1.0 <= t <= 7.3 for t in temps)
    assert all(v["phi"] == phi(v["T"], 7.3) for v in values)


# --- Continuation-KD ----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(RISING_SHAPES),
    st.floats(0.05, 1.0),
    st.floats(0.0, 1.0),
)
def test_ckd_psi_reaches_one_at_end_fraction_and_stays(shape: str, end: float, after: float):
    config = TrainConfig(method="ckd", psi_shape=shape, psi_end_fraction=end)
    schedule = METHODS["ckd"].schedule
    assert schedule(config, 0.0)["psi"] == 0.0
    assert schedule(config, end)["psi"] == 1.0
    p = end + after * (1.0 - end)  # anywhere in [end, 1]
    assert schedule(config, p)["psi"] == 1.0
    psis = [schedule(config, i / 100 * end)["psi"] for i in range(101)]
    assert all(0.0 <= v <= 1.0 for v in psis)
    assert all(b >= a - 1e-12 for a, b in pairwise(psis))


def test_ckd_schedule_hand_values() -> None:
    config = TrainConfig(
        method="ckd", t_max=5.0, anneal_fraction=0.8, psi_shape="linear", psi_end_fraction=0.4
    )
    schedule = METHODS["ckd"].schedule
    assert schedule(config, 0.0) == {"T": 5.0, "phi": 0.2, "psi": 0.0}
    v = schedule(config, 0.2)  # T: 0.2 / 0.8 = 1/4 of the window -> second stretch, T = 4
    assert v["T"] == 4.0
    assert v["phi"] == pytest.approx(0.4)
    assert v["psi"] == pytest.approx(0.5)
    assert schedule(config, 0.8) == {"T": 1.0, "phi": 1.0, "psi": 1.0}
    assert schedule(config, 1.0) == {"T": 1.0, "phi": 1.0, "psi": 1.0}


def test_ckd_constant_psi_and_shape_params() -> None:
    schedule = METHODS["ckd"].schedule
    held = TrainConfig(method="ckd", psi_shape="constant", psi_params={"value": 0.3})
    assert {schedule(held, p)["psi"] for p in (0.0, 0.4, 1.0)} == {0.3}
    steep = TrainConfig(method="ckd", psi_shape="sigmoid", psi_params={"steepness": 50.0})
    assert schedule(steep, 0.1)["psi"] < 0.01
    assert schedule(steep, 0.25)["psi"] == pytest.approx(0.5)


def test_ckd_loss_uses_config_margin_and_reduction() -> None:
    z_s, z_t, y = _logits(seed=5)
    config = TrainConfig(method="ckd", margin=0.3, mse_reduction="mean")
    method = METHODS["ckd"]
    v = method.schedule(config, 0.2)
    expected = losses.continuation_kd_loss(
        z_s, z_t, y, phi=v["phi"], psi=v["psi"], margin=0.3, mse_reduction="mean"
    )
    _close(method.loss(z_s, z_t, y, config, v), expected)


# --- CKD reduces to Annealing-KD ----------------------------------------------------------------


def _reduction_configs(t_max: float = 10.0, path: str = "steps") -> tuple[TrainConfig, TrainConfig]:
    common = {"epochs": 4, "anneal_fraction": 0.5, "t_max": t_max, "temperature_path": path}
    ckd = TrainConfig(
        method="ckd",
        psi_shape="step",
        psi_params={"n_steps": 1},
        psi_end_fraction=0.5,
        margin=0.0,
        mse_reduction="mean",
        **common,
    )
    return ckd, TrainConfig(method="annealing_kd", **common)


@settings(max_examples=60, deadline=None)
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
    ckd_config, ann_config = _reduction_configs(t_max, path)
    ckd_values = METHODS["ckd"].schedule(ckd_config, progress)
    ann_values = METHODS["annealing_kd"].schedule(ann_config, progress)
    assert ckd_values == ann_values
    z_s, z_t, y = _logits(seed=seed, num_logits=k)
    ckd_loss = METHODS["ckd"].loss(z_s, z_t, y, ckd_config, ckd_values)
    ann_loss = METHODS["annealing_kd"].loss(z_s, z_t, y, ann_config, ann_values)
    _close(ckd_loss, ann_loss)


@pytest.mark.parametrize("progress", [0.5, 0.5 + 1e-12, 0.75, 1.0])
def test_ckd_and_annealing_kd_switch_to_ce_at_the_boundary(progress: float) -> None:
    ckd_config, ann_config = _reduction_configs()
    expected = {"T": 1.0, "phi": 1.0, "psi": 1.0}
    assert METHODS["ckd"].schedule(ckd_config, progress) == expected
    assert METHODS["annealing_kd"].schedule(ann_config, progress) == expected
    z_s, z_t, y = _logits(seed=11)
    ce = losses.hard_label_loss(z_s, y)
    for name, config in (("ckd", ckd_config), ("annealing_kd", ann_config)):
        values = METHODS[name].schedule(config, progress)
        _close(METHODS[name].loss(z_s, z_t, y, config, values), ce)


def test_ckd_and_annealing_kd_just_before_the_boundary() -> None:
    ckd_config, ann_config = _reduction_configs()
    for progress in (0.5 - 1e-6, 0.499, 0.45):
        ckd_values = METHODS["ckd"].schedule(ckd_config, progress)
        assert ckd_values == METHODS["annealing_kd"].schedule(ann_config, progress)
        assert ckd_values == {"T": 1.0, "phi": 1.0, "psi": 0.0}  # last stretch: T = 1, pure KD


def test_ckd_sum_reduction_differs_from_annealing_kd() -> None:
    # the reduction needs mse_reduction="mean"; with "sum" the KD term is num_logits times larger
    ckd_config, ann_config = _reduction_configs()
    ckd_config = ckd_config.replace(mse_reduction="sum")
    z_s, z_t, y = _logits(seed=2, num_logits=3)
    v = METHODS["ckd"].schedule(ckd_config, 0.1)
    ckd_loss = METHODS["ckd"].loss(z_s, z_t, y, ckd_config, v)
    ann_loss = METHODS["annealing_kd"].loss(z_s, z_t, y, ann_config, v)
    _close(ckd_loss, 3 * ann_loss)


# --- every method gives a finite scalar loss with a gradient ------------------------------------


@pytest.mark.parametrize("name", ALL_METHODS)
@pytest.mark.parametrize("num_logits", [1, 3])
def test_losses_are_finite_scalars_with_grad(name: str, num_logits: int) -> None:
    method = METHODS[name]
    config = TrainConfig(method=name, epochs=4, margin=0.1)
    for progress in (0.0, 0.1, 0.3, 0.5, 0.9, 1.0):
        z_s, z_t, y = _logits(seed=int(progress * 10), num_logits=num_logits)
        values = method.schedule(config, progress)
        assert all(math.isfinite(v) for v in values.values())
        loss = method.loss(z_s, z_t if method.needs_teacher else None, y, config, values)
        assert loss.ndim == 0
        assert torch.isfinite(loss)
        assert loss.requires_grad
        loss.backward()
        assert z_s.grad is not None
        assert torch.isfinite(z_s.grad).all()
        assert z_t.grad is None


@pytest.mark.parametrize(
    "unit, done, expected",
    [("epoch", 0.0, 0.0), ("epoch", 0.24, 0.0), ("epoch", 0.25, 0.25), ("epoch", 0.99, 0.75),
     ("epoch", 1.0, 0.75), ("step", 0.3, 0.3)],
)  # fmt: skip
def test_progress_at_epoch_starts_or_per_step(unit: str, done: float, expected: float) -> None:
    config = TrainConfig(epochs=4, schedule_unit=unit)
    assert schedule_progress(config, done) == pytest.approx(expected)


def test_annealing_fields_name_the_window_early_stopping_must_wait_for() -> None:
    assert METHODS["ckd"].annealing_fields == ("anneal_fraction", "psi_end_fraction")
    assert METHODS["annealing_kd"].annealing_fields == ("anneal_fraction",)
    assert METHODS["kd"].annealing_fields == METHODS["none"].annealing_fields == ()
