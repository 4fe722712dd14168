"""Schedule shapes, the temperature path and phi(T): hand values, properties and bad input."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckd_tune import schedules
from ckd_tune.schedules import (
    PAPER_STEPS,
    SCHEDULES,
    TEMPERATURE_PATHS,
    check_shape_params,
    per_epoch,
    per_step,
    phi,
    ramp,
    schedule_value,
    shape_value,
    temperature,
)

RISING_SHAPES = sorted(set(SCHEDULES) - {"constant"})
CONTINUOUS_PATHS = RISING_SHAPES  # every rising shape is a valid continuous temperature path
EPS = 1e-12  # slack for monotonicity between rounded float evaluations

progress = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def _params(shape: str) -> st.SearchStrategy[dict[str, float]]:
    """Random valid parameters for ``shape`` (subsets included: every parameter has a default)."""
    fields: dict[str, st.SearchStrategy[float]] = {
        "exponential": {"rate": st.floats(-1e4, 1e4, allow_nan=False)},
        "sigmoid": {
            "steepness": st.floats(1e-6, 1e4, allow_nan=False),
            "midpoint": st.floats(0.0, 1.0, allow_nan=False),
        },
        "step": {"n_steps": st.integers(1, 10_000)},
    }.get(shape, {})
    return st.fixed_dictionaries({}, optional=fields)


shape_and_params = st.sampled_from(RISING_SHAPES).flatmap(
    lambda shape: st.tuples(st.just(shape), _params(shape))
)


# --- registry -----------------------------------------------------------------------------------


def test_registry_names() -> None:
    assert set(SCHEDULES) == {
        "constant",
        "linear",
        "cosine",
        "exponential",
        "sigmoid",
        "step",
        "ramp",
    }
    assert set(TEMPERATURE_PATHS) == {PAPER_STEPS, *SCHEDULES}
    assert PAPER_STEPS == "steps"


# --- hand-computed values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "p", "params", "expected"),
    [
        ("linear", 0.3, {}, 0.3),
        ("linear", 0.75, {}, 0.75),
        ("cosine", 0.5, {}, 0.5),
        ("cosine", 0.25, {}, (1 - math.cos(math.pi / 4)) / 2),
        ("exponential", 0.5, {"rate": 2.0}, (math.e - 1) / (math.e**2 - 1)),
        ("exponential", 0.5, {"rate": -2.0}, (math.exp(-1) - 1) / (math.exp(-2) - 1)),
        ("exponential", 0.5, {}, (math.exp(2.5) - 1) / (math.exp(5) - 1)),  # default rate 5
        ("exponential", 0.37, {"rate": 0.0}, 0.37),  # rate 0 is the linear limit
        ("exponential", 0.37, {"rate": 1e-9}, 0.37),
        ("sigmoid", 0.5, {}, 0.5),  # symmetric around the default midpoint 0.5
        ("sigmoid", 0.5, {"steepness": 3.0}, 0.5),
        (
            "sigmoid",
            0.25,
            {"steepness": 4.0, "midpoint": 0.5},
            (1 / (1 + math.exp(1)) - 1 / (1 + math.exp(2)))
            / (1 / (1 + math.exp(-2)) - 1 / (1 + math.exp(2))),
        ),
        ("step", 0.49, {"n_steps": 2}, 0.0),
        ("step", 0.5, {"n_steps": 2}, 0.5),
        ("step", 0.99, {"n_steps": 2}, 0.5),
        ("step", 1.0, {"n_steps": 2}, 1.0),
        ("step", 0.999, {}, 0.0),  # default n_steps=1: one jump, at p=1
        ("step", 0.29, {"n_steps": 100}, 0.29),  # 0.29 * 100 = 28.999999999999996 in floats
        ("constant", 0.3, {"value": 0.25}, 0.25),
        ("constant", 0.0, {}, 1.0),
    ],
)
def test_shape_hand_values(shape: str, p: float, params: dict, expected: float) -> None:
    assert shape_value(shape, p, **params) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert SCHEDULES[shape](p, **params) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_exponential_rate_sign_sets_early_or_late_rise() -> None:
    late = shape_value("exponential", 0.5, rate=5.0)
    early = shape_value("exponential", 0.5, rate=-5.0)
    assert late < 0.5 < early


@pytest.mark.parametrize(
    ("shape", "params"),
    [
        ("sigmoid", {"steepness": 1e4, "midpoint": 1.0}),
        ("sigmoid", {"steepness": 1e4, "midpoint": 0.0}),
        ("sigmoid", {"steepness": 1e6, "midpoint": 0.5}),
        ("exponential", {"rate": 1e4}),
        ("exponential", {"rate": -1e4}),
        ("exponential", {"rate": 1e300}),
    ],
)
def test_extreme_params_do_not_overflow(shape: str, params: dict) -> None:
    values = [shape_value(shape, i / 20, **params) for i in range(21)]
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values)
    assert values[0] == 0.0
    assert values[-1] == 1.0
    assert values == sorted(values)


# --- properties of every rising shape -----------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(shape_and_params, progress, progress)
def test_rising_shape_properties(sp: tuple[str, dict], p1: float, p2: float) -> None:
    shape, params = sp
    lo_p, hi_p = sorted((p1, p2))
    assert shape_value(shape, 0.0, **params) == 0.0
    assert shape_value(shape, 1.0, **params) == 1.0
    f_lo, f_hi = shape_value(shape, lo_p, **params), shape_value(shape, hi_p, **params)
    assert 0.0 <= f_lo <= 1.0
    assert 0.0 <= f_hi <= 1.0
    assert f_lo <= f_hi + EPS


@settings(max_examples=30, deadline=None)
@given(shape_and_params)
def test_rising_shape_monotone_on_grid(sp: tuple[str, dict]) -> None:
    shape, params = sp
    values = [shape_value(shape, i / 200, **params) for i in range(201)]
    assert all(b >= a - EPS for a, b in pairwise(values))
    assert values[0] == 0.0
    assert values[-1] == 1.0


@settings(max_examples=50, deadline=None)
@given(st.floats(0.0, 1.0), progress)
def test_constant_returns_its_value(value: float, p: float) -> None:
    assert shape_value("constant", p, value=value) == value
    assert schedules.constant(p, value) == value


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(sorted(SCHEDULES)), st.floats(-1e6, -1e-9) | st.floats(1 + 1e-9, 1e6))
def test_progress_is_clipped(shape: str, p: float) -> None:
    expected = shape_value(shape, 0.0 if p < 0 else 1.0)
    assert shape_value(shape, p) == expected


# --- schedule_value / per_epoch / per_step ------------------------------------------------------

ends = st.floats(-100.0, 100.0, allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(shape_and_params, ends, ends, progress)
def test_schedule_value_endpoints_and_range(
    sp: tuple[str, dict], start: float, end: float, p: float
) -> None:
    shape, params = sp
    assert schedule_value(shape, 0.0, start, end, **params) == start
    assert schedule_value(shape, 1.0, start, end, **params) == end
    v = schedule_value(shape, p, start, end, **params)
    assert min(start, end) <= v <= max(start, end)


def test_schedule_value_hits_end_exactly_despite_rounding() -> None:
    # -3.0 + (-0.9 - -3.0) * 1.0 == -0.8999999999999999 in floats; the end must be exact.
    assert schedule_value("linear", 1.0, -3.0, -0.9) == -0.9
    assert schedule_value("linear", 0.5, 2.0, 4.0) == 3.0
    assert schedule_value("constant", 0.9, 2.0, 4.0, value=0.25) == 2.5


def test_per_epoch_hand_values() -> None:
    assert per_epoch("linear", 5, 0.0, 1.0) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert per_epoch("step", 4, 10.0, 20.0, n_steps=1) == [10.0, 10.0, 10.0, 20.0]
    assert per_epoch("cosine", 1, 3.0, 7.0) == [3.0]  # a single epoch sits at progress 0


@settings(max_examples=60, deadline=None)
@given(shape_and_params, st.integers(2, 60), ends, ends)
def test_per_epoch_length_and_endpoints(sp: tuple[str, dict], epochs: int, start, end) -> None:
    shape, params = sp
    values = per_epoch(shape, epochs, start, end, **params)
    assert len(values) == epochs
    assert values[0] == start
    assert values[-1] == end
    assert values[1] == schedule_value(shape, 1 / (epochs - 1), start, end, **params)


def test_per_step_hand_values() -> None:
    assert per_step("linear", 4, 0.0, 1.0) == [0.0, 0.25, 0.5, 0.75]
    assert per_step("linear", 1, 2.0, 5.0) == [2.0]


@settings(max_examples=60, deadline=None)
@given(shape_and_params, st.integers(1, 100), ends, ends)
def test_per_step_length_and_endpoints(sp: tuple[str, dict], steps: int, start, end) -> None:
    shape, params = sp
    values = per_step(shape, steps, start, end, **params)
    assert len(values) == steps
    assert values[0] == start
    # step s sits at progress s / steps: the last one is one step short of the end
    assert values[-1] == schedule_value(shape, (steps - 1) / steps, start, end, **params)


# --- temperature --------------------------------------------------------------------------------


def test_paper_steps_t_max_10() -> None:
    # Each integer 10, 9, ..., 1 holds over exactly one tenth of the window.
    for k in range(10):
        for p in (k / 10, k / 10 + 0.05, (k + 1) / 10 - 1e-6):
            assert temperature(p, 10.0) == 10 - k, p
    assert temperature(1.0, 10.0) == 1.0
    grid = [temperature(i / 1000, 10.0) for i in range(1000)]
    assert sorted(set(grid)) == [float(t) for t in range(1, 11)]
    assert all(grid.count(float(t)) == 100 for t in range(1, 11))
    assert all(float(t).is_integer() for t in grid)
    assert grid == sorted(grid, reverse=True)


def test_paper_steps_default_path_and_edges() -> None:
    assert temperature(0.0, 10.0) == temperature(0.0, 10.0, path="steps") == 10.0
    assert temperature(-0.5, 10.0) == 10.0  # clipped to the window
    assert temperature(1.5, 10.0) == 1.0
    assert [temperature(p, 1.0) for p in (0.0, 0.5, 1.0)] == [1.0, 1.0, 1.0]
    # non-integer t_max: ceil(t_max) stretches at t_max, t_max - 1, ..., floored at 1
    assert [temperature(p, 2.5) for p in (0.0, 0.4, 0.7, 1.0)] == [2.5, 1.5, 1.0, 1.0]


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(CONTINUOUS_PATHS),
    st.floats(1.0, 100.0, allow_nan=False),
    progress,
    progress,
)
def test_continuous_temperature_paths(path: str, t_max: float, p1: float, p2: float) -> None:
    assert temperature(0.0, t_max, path) == t_max
    assert temperature(1.0, t_max, path) == 1.0
    lo_p, hi_p = sorted((p1, p2))
    t_lo, t_hi = temperature(lo_p, t_max, path), temperature(hi_p, t_max, path)
    assert 1.0 <= t_hi <= t_lo + 1e-9 <= t_max + 1e-9
    phi(t_lo, t_max)  # always a valid temperature for phi (no ValueError)
    phi(t_hi, t_max)


@settings(max_examples=60, deadline=None)
@given(st.floats(1.0, 100.0, allow_nan=False), progress, progress)
def test_paper_steps_monotone_and_in_range(t_max: float, p1: float, p2: float) -> None:
    lo_p, hi_p = sorted((p1, p2))
    t_lo, t_hi = temperature(lo_p, t_max), temperature(hi_p, t_max)
    assert 1.0 <= t_hi <= t_lo <= t_max
    assert temperature(1.0, t_max) == 1.0
    assert temperature(0.0, t_max) == t_max


def test_temperature_path_params_are_passed_on() -> None:
    late = temperature(0.5, 11.0, "exponential", rate=5.0)
    early = temperature(0.5, 11.0, "exponential", rate=-5.0)
    assert early < 6.0 < late  # 6 is the linear midpoint of 11 -> 1
    assert temperature(0.5, 11.0, "linear") == 6.0


# --- phi ----------------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.floats(1.0, 1e6, allow_nan=False))
def test_phi_endpoints(t_max: float) -> None:
    assert phi(t_max, t_max) == 1 / t_max
    assert phi(1.0, t_max) == 1.0


def test_phi_hand_values() -> None:
    assert phi(10.0, 10.0) == 0.1
    assert phi(5.0, 10.0) == pytest.approx(0.6)
    assert phi(3.0, 4.0) == pytest.approx(0.5)
    assert phi(1.0, 1.0) == 1.0


@settings(max_examples=50, deadline=None)
@given(st.floats(1.0, 100.0, allow_nan=False), progress, progress)
def test_phi_decreases_with_temperature(t_max: float, a: float, b: float) -> None:
    t1, t2 = sorted((1 + a * (t_max - 1), 1 + b * (t_max - 1)))
    t1, t2 = min(t1, t_max), min(t2, t_max)
    assert 1 / t_max <= phi(t2, t_max) <= phi(t1, t_max) <= 1.0


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: temperature(0.5, 0.5), "t_max"),
        (lambda: temperature(0.5, 0.0), "t_max"),
        (lambda: temperature(0.5, float("nan")), "t_max"),
        (lambda: temperature(0.5, float("inf")), "t_max"),
        (lambda: temperature(0.5, 0.5, "linear"), "t_max"),
        (lambda: temperature(float("nan"), 10.0), "progress"),
        (lambda: temperature(float("nan"), 10.0, "linear"), "progress"),
        (lambda: temperature(0.5, 10.0, "bogus"), "temperature_path"),
        (lambda: temperature(0.5, 10.0, "sigmoid", steepness=-1.0), "steepness"),
        (lambda: phi(1.0, 0.5), "t_max"),
        (lambda: phi(1.0, float("inf")), "t_max"),
        (lambda: phi(11.0, 10.0), "T"),
        (lambda: phi(0.5, 10.0), "T"),
        (lambda: shape_value("bogus", 0.5), "shape"),
        (lambda: schedule_value("bogus", 0.5, 0.0, 1.0), "shape"),
        (lambda: per_epoch("bogus", 3, 0.0, 1.0), "shape"),
        (lambda: per_step("bogus", 3, 0.0, 1.0), "shape"),
        (lambda: shape_value("linear", float("nan")), "progress"),
        (lambda: shape_value("sigmoid", 0.5, steepness=-1.0), "steepness"),
        (lambda: shape_value("sigmoid", 0.5, steepness=0.0), "steepness"),
        (lambda: shape_value("sigmoid", 0.5, midpoint=1.5), "midpoint"),
        (lambda: shape_value("step", 0.5, n_steps=0), "n_steps"),
        (lambda: shape_value("step", 0.5, n_steps=1.5), "n_steps"),
        (lambda: shape_value("constant", 0.5, value=1.5), "value"),
        (lambda: shape_value("constant", 0.5, value=-0.1), "value"),
        (lambda: shape_value("exponential", 0.5, rate=float("inf")), "rate"),
        (lambda: shape_value("exponential", 0.5, rate=float("nan")), "rate"),
        (lambda: shape_value("exponential", 0.5, rate="fast"), "rate"),
        (lambda: shape_value("linear", 0.5, rate=1.0), "rate"),  # linear takes no parameters
        (lambda: shape_value("cosine", 0.5, steepness=1.0), "steepness"),
        (lambda: shape_value("sigmoid", 0.5, rate=1.0), "rate"),
        (lambda: per_epoch("linear", 0, 0.0, 1.0), "epochs"),
        (lambda: per_step("linear", 0, 0.0, 1.0), "steps"),
    ],
)
def test_bad_input_raises_value_error_naming_it(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    ("shape", "params", "match"),
    [
        ("sigmoid", {"steepness": -1}, r"psi_params\.steepness"),
        ("linear", {"steepness": 1.0}, r"psi_params: shape 'linear' takes no parameters"),
        ("step", {"rate": 1.0}, r"psi_params: shape 'step' takes \['n_steps'\], not 'rate'"),
        ("bogus", {}, "unknown schedule shape 'bogus'"),
    ],
)
def test_check_shape_params_names_where(shape: str, params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_shape_params(shape, params, "psi_params")


@pytest.mark.parametrize(
    ("shape", "params"),
    [
        ("constant", {"value": 0.0}),
        ("constant", {"value": 1.0}),
        ("exponential", {"rate": -50.0}),
        ("sigmoid", {"steepness": 1e-6, "midpoint": 0.0}),
        ("step", {"n_steps": 3.0}),  # an integral float is fine
        ("linear", {}),
    ],
)
def test_check_shape_params_accepts_valid(shape: str, params: dict) -> None:
    check_shape_params(shape, params)
    assert 0.0 <= shape_value(shape, 0.4, **params) <= 1.0


def test_ramp_is_the_papers_psi_per_epoch() -> None:
    # psi = i / 40 per epoch up to a plateau of 0.25 (after 10 of 20 epochs), then 1 at the end
    values = [ramp(i / 20, level=0.25, ramp_end=0.5) for i in range(21)]
    assert values[:11] == pytest.approx([i / 40 for i in range(11)])
    assert values[11:20] == pytest.approx([0.25] * 9)
    assert values[20] == 1.0
    assert shape_value("ramp", 0.5) == pytest.approx(0.125)  # defaults: level 0.25, no plateau
    with pytest.raises(ValueError, match="level"):
        check_shape_params("ramp", {"level": 1.5})
