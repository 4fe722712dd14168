"""The one configuration object that travels from the CLI to the training loop."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ckd_tune.errors import UserInputError
from ckd_tune.schedules import SCHEDULES, TEMPERATURE_PATHS, check_shape_params


@dataclass
class TrainConfig:
    """Everything one training run needs; YAML search spaces name these fields.

    Schedule parameters (``psi_params``, ``temperature_params``) are dicts; in a flat
    Ray Tune / Optuna config they appear as dotted keys such as ``psi_params.steepness``.
    """

    method: str = "kd"
    # optimisation
    lr: float = 5e-5
    weight_decay: float = 0.01
    batch_size: int = 32
    epochs: int = 3
    warmup_ratio: float = 0.1
    optimizer: str = "adamw"  # "adamw" | "sgd"
    momentum: float = 0.9
    lr_schedule: str = "linear"  # "linear" (warmup + decay) | "step" (x0.1 at 50% and 75%)
    seed: int = 0
    num_threads: int = 1
    # batch examples of similar length (text data: much less padding); False: plain shuffling
    group_by_length: bool = True
    # vanilla KD (Hinton et al.)
    kd_alpha: float = 0.5
    kd_temperature: float = 4.0
    # Annealing-KD / Continuation-KD: teacher temperature path T_max -> 1, phi(T) = 1 - (T-1)/T_max
    t_max: float = 10.0
    temperature_path: str = "steps"  # "steps" (paper: integer T) or any schedule shape name
    temperature_params: dict[str, float] = field(default_factory=dict)
    # when scheduled values (T, psi) change: "epoch" (the papers: at epoch starts, progress =
    # epoch / epochs) or "step" (every optimizer step, progress = steps done / all steps)
    schedule_unit: str = "epoch"
    # fraction of training over which T reaches 1 (Annealing-KD: phase 1)
    anneal_fraction: float = 0.5
    # Continuation-KD: psi grows 0 -> 1 and reaches 1 at psi_end_fraction of training
    psi_shape: str = "linear"
    psi_params: dict[str, float] = field(default_factory=dict)
    psi_end_fraction: float = 0.5
    margin: float = 0.0
    mse_reduction: str = "sum"  # "sum" | "mean" over the logit dimension

    def __post_init__(self) -> None:
        _require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        _require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        _require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        _require(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        _require(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        _require(self.optimizer in ("adamw", "sgd"), "optimizer", "must be 'adamw' or 'sgd'")
        _require(
            self.lr_schedule in ("linear", "step"), "lr_schedule", "must be 'linear' or 'step'"
        )
        _require(self.num_threads >= 1, "num_threads", "must be >= 1")
        _require(isinstance(self.group_by_length, bool), "group_by_length", "must be true or false")
        _require(0 <= self.kd_alpha <= 1, "kd_alpha", f"must be in [0, 1], got {self.kd_alpha}")
        _require(
            math.isfinite(self.kd_temperature) and self.kd_temperature > 0,
            "kd_temperature",
            f"must be a finite number > 0, got {self.kd_temperature}",
        )
        _require(
            math.isfinite(self.t_max) and self.t_max >= 1,
            "t_max",
            f"must be a finite number >= 1, got {self.t_max}",
        )
        _require(
            self.temperature_path in TEMPERATURE_PATHS,
            "temperature_path",
            f"unknown path {self.temperature_path!r}; choose from {sorted(TEMPERATURE_PATHS)}",
        )
        if self.temperature_path in SCHEDULES:
            _check_shape(self.temperature_path, self.temperature_params, "temperature_params")
        _require(
            self.schedule_unit in ("epoch", "step"), "schedule_unit", "must be 'epoch' or 'step'"
        )
        _require(0 < self.anneal_fraction <= 1, "anneal_fraction", "must be in (0, 1]")
        _require(
            self.psi_shape in SCHEDULES,
            "psi_shape",
            f"unknown shape {self.psi_shape!r}; choose from {sorted(SCHEDULES)}",
        )
        _check_shape(self.psi_shape, self.psi_params, "psi_params")
        _require(0 < self.psi_end_fraction <= 1, "psi_end_fraction", "must be in (0, 1]")
        _require(
            math.isfinite(self.margin) and self.margin >= 0,
            "margin",
            f"must be a finite number >= 0, got {self.margin}",
        )
        _require(self.mse_reduction in ("sum", "mean"), "mse_reduction", "must be 'sum' or 'mean'")

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> TrainConfig:
        """Build a config from a flat dict; ``a.b`` keys fill dict fields; unknown keys raise."""
        fields = dataclasses.fields(cls)
        names = {f.name for f in fields}
        dict_fields = {f.name for f in fields if f.default_factory is dict}
        kwargs: dict[str, Any] = {}
        dotted: dict[str, dict[str, Any]] = {}
        for key, value in flat.items():
            head, _, sub = key.partition(".")
            if head not in names:
                raise UserInputError(f"unknown config field {key!r}; known fields: {sorted(names)}")
            if sub:
                if head not in dict_fields:
                    raise UserInputError(
                        f"{key}: {head!r} is not a dict field; dotted keys are for "
                        f"{sorted(dict_fields)}"
                    )
                dotted.setdefault(head, {})[sub] = value
            elif head in dict_fields:
                if not isinstance(value, dict):
                    raise UserInputError(f"{head}: must be a dict, got {value!r}")
                kwargs[head] = dict(value)  # a copy: the caller's dict is never changed
            else:
                kwargs[head] = value
        for head, sub_values in dotted.items():
            kwargs[head] = {**kwargs.get(head, {}), **sub_values}
        return cls(**kwargs)

    def to_flat(self) -> dict[str, Any]:
        """The inverse of :meth:`from_flat` (dict fields become dotted keys)."""
        flat: dict[str, Any] = {}
        for key, value in dataclasses.asdict(self).items():
            if isinstance(value, dict):
                flat.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                flat[key] = value
        return flat

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise UserInputError(f"{name}: {message}")


def _check_shape(shape: str, params: dict[str, float], where: str) -> None:
    try:
        check_shape_params(shape, params, where)
    except ValueError as err:
        raise UserInputError(str(err)) from None
