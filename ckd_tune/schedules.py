"""Schedule shapes: training progress ``p in [0, 1]`` -> a value in ``[0, 1]``.

Every shape except ``constant`` rises monotonically from ``f(0) = 0`` to ``f(1) = 1``;
:func:`schedule_value` maps a shape onto ``start -> end``. A new shape is one function
plus an entry in :data:`SCHEDULES` (and a test).

The temperature path of Annealing-KD / Continuation-KD (Jafari et al., EACL 2021;
arXiv 2212.05998) is built on top: :func:`temperature` gives ``T`` (``T_max -> 1``) and
:func:`phi` the annealing factor ``phi(T) = 1 - (T - 1) / T_max``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

ShapeFn = Callable[..., float]


def constant(p: float, value: float = 1.0) -> float:
    """``f(p) = value`` for every ``p`` (a fixed mix, e.g. psi held at 0.5)."""
    return value


def linear(p: float) -> float:
    """``f(p) = p``."""
    return p


def cosine(p: float) -> float:
    """Half-cosine ramp ``f(p) = (1 - cos(pi p)) / 2``: slow start, slow finish."""
    return 0.5 * (1.0 - math.cos(math.pi * p))


def exponential(p: float, rate: float = 5.0) -> float:
    """``f(p) = (exp(rate p) - 1) / (exp(rate) - 1)``: late rise for rate > 0, early for < 0."""
    if abs(rate) < 1e-8:
        return p
    if rate > 0:
        # Same curve as 1 - f_{-rate}(1 - p), written so that exp never overflows for large rate.
        return 1.0 - math.expm1(-rate * (1.0 - p)) / math.expm1(-rate)
    return math.expm1(rate * p) / math.expm1(rate)


def sigmoid(p: float, steepness: float = 10.0, midpoint: float = 0.5) -> float:
    """Logistic ``s(p) = 1 / (1 + exp(-steepness (p - midpoint)))`` rescaled to hit 0 and 1."""

    # s(x) = (1 + tanh(steepness (x - midpoint) / 2)) / 2; the affine part cancels in the
    # rescaling, and tanh (unlike exp) cannot overflow for a steep curve or an extreme midpoint.
    def s(x: float) -> float:
        return math.tanh(0.5 * steepness * (x - midpoint))

    lo, hi = s(0.0), s(1.0)
    return (s(p) - lo) / (hi - lo)


def step(p: float, n_steps: int = 1) -> float:
    """Staircase ``f(p) = floor(p n_steps) / n_steps``: ``n_steps`` equal jumps, the last at p=1."""
    return math.floor(p * n_steps + 1e-9) / n_steps


def ramp(p: float, level: float = 0.25, ramp_end: float = 1.0) -> float:
    """The papers' psi: ``level * min(p / ramp_end, 1)`` before the end, then 1 at ``p = 1``.

    A linear ramp from 0 to ``level`` over the first ``ramp_end`` of the window, a plateau at
    ``level``, and a jump to 1 when the window ends (Continuation-KD's ``psi = i / 40`` per
    epoch up to a plateau, then 1: ``level = plateau``, evaluated per epoch).
    """
    if p >= 1.0 - 1e-9:
        return 1.0
    return level * min(p / ramp_end, 1.0)


SCHEDULES: dict[str, ShapeFn] = {
    "constant": constant,
    "linear": linear,
    "cosine": cosine,
    "exponential": exponential,
    "sigmoid": sigmoid,
    "step": step,
    "ramp": ramp,
}

# Valid ranges of shape parameters: name -> (low, high), inclusive; ``None`` = unbounded.
_PARAM_RANGES: dict[str, tuple[float | None, float | None]] = {
    "value": (0.0, 1.0),
    "rate": (None, None),
    "steepness": (1e-6, None),
    "midpoint": (0.0, 1.0),
    "n_steps": (1, None),
    "level": (0.0, 1.0),
    "ramp_end": (1e-6, 1.0),
}

PAPER_STEPS = "steps"
TEMPERATURE_PATHS: frozenset[str] = frozenset({PAPER_STEPS, *SCHEDULES})


def check_shape_params(shape: str, params: dict[str, float], where: str = "params") -> None:
    """Raise ``ValueError`` naming ``where`` if ``params`` do not fit ``shape``."""
    if shape not in SCHEDULES:
        raise ValueError(
            f"shape: unknown schedule shape {shape!r}; choose from {sorted(SCHEDULES)}"
        )
    accepted = list(inspect.signature(SCHEDULES[shape]).parameters)[1:]
    for name, value in params.items():
        if name not in accepted:
            raise ValueError(
                f"{where}: shape {shape!r} takes {accepted or 'no parameters'}, not {name!r}"
            )
        lo, hi = _PARAM_RANGES[name]
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{where}.{name}: must be a finite number, got {value!r}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(f"{where}.{name}: must be in [{lo}, {hi}], got {value}")
        if name == "n_steps" and int(value) != value:
            raise ValueError(f"{where}.n_steps: must be an integer, got {value}")


def shape_value(shape: str, p: float, **params: float) -> float:
    """Evaluate shape ``shape`` at progress ``p`` (clipped to [0, 1])."""
    check_shape_params(shape, params)
    if not math.isfinite(p):
        raise ValueError(f"p: progress must be finite, got {p}")
    return SCHEDULES[shape](min(1.0, max(0.0, p)), **params)


def schedule_value(shape: str, p: float, start: float, end: float, **params: float) -> float:
    """``start + (end - start) * f(p)`` for shape ``f``.

    Exactly ``end`` where ``f(p) = 1`` and never outside ``[start, end]`` (the plain formula
    can miss ``end`` by a rounding error, e.g. a temperature just below 1).
    """
    f = shape_value(shape, p, **params)
    if f == 1.0:
        return end
    value = start + (end - start) * f
    return min(max(value, min(start, end)), max(start, end))


def per_epoch(shape: str, epochs: int, start: float, end: float, **params: float) -> list[float]:
    """One value per epoch; epoch ``e`` (0-based) sits at progress ``e / (epochs - 1)``."""
    if epochs < 1:
        raise ValueError(f"epochs: must be >= 1, got {epochs}")
    denom = max(1, epochs - 1)
    return [schedule_value(shape, e / denom, start, end, **params) for e in range(epochs)]


def per_step(shape: str, steps: int, start: float, end: float, **params: float) -> list[float]:
    """One value per optimizer step; step ``s`` sits at progress ``s / steps``."""
    if steps < 1:
        raise ValueError(f"steps: must be >= 1, got {steps}")
    return [schedule_value(shape, s / steps, start, end, **params) for s in range(steps)]


def temperature(p: float, t_max: float, path: str = PAPER_STEPS, **params: float) -> float:
    """Teacher temperature at progress ``p`` of the annealing window, from ``t_max`` down to 1.

    ``path="steps"`` is the papers' integer schedule: ``ceil(t_max)`` equal stretches at
    ``T = t_max, t_max - 1, ..., 1``. Any schedule shape gives the continuous
    ``T = t_max + (1 - t_max) f(p)``.
    """
    _check_t_max(t_max)
    if path == PAPER_STEPS:
        if not math.isfinite(p):
            raise ValueError(f"p: progress must be finite, got {p}")
        p = min(1.0, max(0.0, p))
        return max(1.0, t_max - math.floor(p * math.ceil(t_max) + 1e-9))
    if path not in SCHEDULES:
        raise ValueError(
            f"temperature_path: unknown path {path!r}; choose from {sorted(TEMPERATURE_PATHS)}"
        )
    return schedule_value(path, p, t_max, 1.0, **params)


def phi(t: float, t_max: float) -> float:
    """Annealing factor ``phi(T) = 1 - (T - 1) / T_max``: ``1/T_max`` at ``T_max``, 1 at ``T = 1``.

    Both ends are exact (the plain formula gives 0.09999999999999998 for ``T = T_max = 10``).
    """
    _check_t_max(t_max)
    if not 1 <= t <= t_max:
        raise ValueError(f"T: temperature must be in [1, t_max={t_max}], got {t}")
    if t == t_max:
        return 1.0 / t_max
    return max(1.0 / t_max, 1.0 - (t - 1.0) / t_max)


def _check_t_max(t_max: float) -> None:
    if not (math.isfinite(t_max) and t_max >= 1):
        raise ValueError(f"t_max: must be a finite number >= 1, got {t_max}")
