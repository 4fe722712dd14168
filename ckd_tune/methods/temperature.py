"""The annealed teacher temperature shared by Annealing-KD and Continuation-KD.

``T`` falls from ``t_max`` to 1 over the first ``anneal_fraction`` of training, along the papers'
integer steps (``temperature_path: steps``) or any schedule shape; the teacher's logits are
scaled by ``phi(T) = 1 - (T - 1) / t_max``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ckd_tune.methods.base import MethodParams, require_finite, require_fraction, require_shape
from ckd_tune.schedules import PAPER_STEPS, TEMPERATURE_PATHS, phi, temperature


@dataclass(frozen=True)
class AnnealedTemperature(MethodParams):
    """``t_max``, the temperature path (and its shape's parameters) and the annealing window."""

    shape_fields: ClassVar[dict[str, str]] = {"temperature_params": "temperature_path"}
    shape_choices: ClassVar[dict[str, frozenset[str]]] = {"temperature_path": TEMPERATURE_PATHS}

    t_max: float = 10.0
    temperature_path: str = PAPER_STEPS  # "steps" (paper: integer T) or any schedule shape name
    temperature_params: dict[str, float] = field(default_factory=dict)
    anneal_fraction: float = 0.5  # fraction of training over which T reaches 1

    def __post_init__(self) -> None:
        require_finite(self.t_max, "t_max", 1)
        require_shape(
            self.temperature_path,
            TEMPERATURE_PATHS,
            self.temperature_params,
            "temperature_path",
            "temperature_params",
        )
        require_fraction(self.anneal_fraction, "anneal_fraction", open_low=True)

    def temperature_at(self, progress: float) -> dict[str, float]:
        """``T`` and ``phi(T)`` at ``progress`` of training (``T = 1`` past the window)."""
        t = temperature(
            progress / self.anneal_fraction,
            self.t_max,
            self.temperature_path,
            **self.temperature_params,
        )
        return {"T": t, "phi": phi(t, self.t_max)}
