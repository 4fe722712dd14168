"""Distillation methods: per batch, which loss with which scheduled values.

A method turns ``(config, progress)`` into the loss of a batch, where ``progress in [0, 1]``
is the fraction of training done (:func:`progress`: at epoch starts with
``schedule_unit="epoch"``, the papers' choice, or per optimizer step). It also tells the loop what it needs: teacher
logits or not, and (Annealing-KD) the epoch at which phase 2 starts from the best phase-1
weights. A new method is one :class:`Method` in :data:`METHODS` plus a YAML space and a test.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from ckd_tune import losses
from ckd_tune.config import TrainConfig
from ckd_tune.errors import UserInputError
from ckd_tune.schedules import phi, shape_value, temperature

Schedule = Callable[[TrainConfig, float], dict[str, float]]
LossFn = Callable[[Tensor, "Tensor | None", Tensor, TrainConfig, dict[str, float]], Tensor]


@dataclass(frozen=True)
class Method:
    """One distillation method.

    ``schedule(config, progress)`` gives the scheduled values (``T``, ``phi``, ``psi``, ...)
    that ``loss(student_logits, teacher_logits, labels, config, values)`` uses; the loop logs
    them. ``phase2_epoch(config)`` is the epoch at which the loop reloads the best weights so
    far and starts a fresh optimizer and lr schedule, or ``None``. ``annealing_fields`` name the
    config fields (fractions of training) before whose end the method is still annealing: early
    stopping must not judge a trial before then.
    """

    name: str
    needs_teacher: bool
    schedule: Schedule
    loss: LossFn
    phase2_epoch: Callable[[TrainConfig], int | None] = lambda config: None
    annealing_fields: tuple[str, ...] = ()


def progress(config: TrainConfig, done: float) -> float:
    """The schedule's progress when the fraction ``done`` of all optimizer steps is done.

    ``schedule_unit="epoch"``: the start of the current epoch, ``floor(done * epochs) / epochs``
    (values change at epoch boundaries, as in the papers); ``"step"``: ``done`` itself.
    """
    if config.schedule_unit == "step":
        return done
    return min(math.floor(done * config.epochs + 1e-9), config.epochs - 1) / config.epochs


def _no_schedule(config: TrainConfig, progress: float) -> dict[str, float]:
    return {}


def _annealing_boundary(config: TrainConfig) -> int:
    """Phase 1 of Annealing-KD: ``round(anneal_fraction * epochs)`` epochs, at least one."""
    return max(1, round(config.anneal_fraction * config.epochs))


def _annealing_schedule(config: TrainConfig, progress: float) -> dict[str, float]:
    boundary = _annealing_boundary(config) / config.epochs
    if progress >= boundary:
        return {"T": 1.0, "phi": 1.0, "psi": 1.0}
    t = temperature(
        progress / boundary, config.t_max, config.temperature_path, **config.temperature_params
    )
    return {"T": t, "phi": phi(t, config.t_max), "psi": 0.0}


def _annealing_loss(
    z_s: Tensor, z_t: Tensor | None, y: Tensor, config: TrainConfig, v: dict[str, float]
) -> Tensor:
    if v["psi"] == 1.0:
        return losses.hard_label_loss(z_s, y)
    assert z_t is not None
    return losses.annealing_kd_loss(z_s, z_t, phi=v["phi"])


def _annealing_phase2(config: TrainConfig) -> int | None:
    boundary = _annealing_boundary(config)
    return boundary if boundary < config.epochs else None


def _ckd_schedule(config: TrainConfig, progress: float) -> dict[str, float]:
    t = temperature(
        progress / config.anneal_fraction,
        config.t_max,
        config.temperature_path,
        **config.temperature_params,
    )
    psi = shape_value(config.psi_shape, progress / config.psi_end_fraction, **config.psi_params)
    return {"T": t, "phi": phi(t, config.t_max), "psi": psi}


def _ckd_loss(
    z_s: Tensor, z_t: Tensor | None, y: Tensor, config: TrainConfig, v: dict[str, float]
) -> Tensor:
    assert z_t is not None
    return losses.continuation_kd_loss(
        z_s,
        z_t,
        y,
        phi=v["phi"],
        psi=v["psi"],
        margin=config.margin,
        mse_reduction=config.mse_reduction,
    )


METHODS: dict[str, Method] = {
    "none": Method(
        name="none",
        needs_teacher=False,
        schedule=_no_schedule,
        loss=lambda z_s, z_t, y, config, v: losses.hard_label_loss(z_s, y),
    ),
    "kd": Method(
        name="kd",
        needs_teacher=True,
        schedule=_no_schedule,
        loss=lambda z_s, z_t, y, config, v: losses.vanilla_kd_loss(
            z_s, z_t, y, alpha=config.kd_alpha, temperature=config.kd_temperature
        ),
    ),
    "annealing_kd": Method(
        name="annealing_kd",
        needs_teacher=True,
        schedule=_annealing_schedule,
        loss=_annealing_loss,
        phase2_epoch=_annealing_phase2,
        annealing_fields=("anneal_fraction",),
    ),
    "ckd": Method(
        name="ckd",
        needs_teacher=True,
        schedule=_ckd_schedule,
        loss=_ckd_loss,
        annealing_fields=("anneal_fraction", "psi_end_fraction"),
    ),
}


def get_method(name: str) -> Method:
    """The registered method ``name``; ``UserInputError`` naming the choices otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise UserInputError(
            f"method: unknown method {name!r}; choose from {sorted(METHODS)}"
        ) from None
