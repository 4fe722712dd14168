"""Continuation-KD (Jafari et al., arXiv 2212.05998).

A smoothed objective first, made harder as training proceeds: the student regresses the
teacher's logits scaled by ``phi(T)`` (``T`` annealing ``t_max -> 1``) under a margin hinge,
while ``psi`` moves the weight from that term to the labels (``psi = 1`` from
``psi_end_fraction`` of training on).

``standardize`` (logit standardization, Sun et al., CVPR 2024) z-scores both models' logits
before the ``phi`` scaling and the hinge. A standardized row has mean 0 and squared norm
``K - 1`` (``K`` logits), so with the sum reduction the squared error becomes
``(K - 1) (1 + phi^2 - 2 phi r)``, ``r`` the Pearson correlation of the two raw rows: a
correlation loss. The student cannot shrink its standardized logits towards ``phi z_t``, so
``phi`` no longer softens the target; it weighs the correlation (``-2 phi (K - 1) r``) and sets
a floor ``(K - 1) (1 - phi)^2`` that the margin is compared with. The continuation is then in
the weight of the term rather than in its target: a different method, searchable but not the
paper's.

``schedule_file`` replays a per-epoch schedule instead of the shapes: a JSON list of
``{"epoch": e, "T": ..., "psi": ..., "margin": ...}`` (``e`` from 1; ``phi`` too, else
``phi(T, t_max)``), as the ``ckd:pbt`` search exports its best member's learned schedule
(:func:`ckd_tune.methods.ckd.learned_schedule`). Epoch ``e``'s values hold for all of its steps.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ckd_tune.errors import UserInputError
from ckd_tune.methods.base import (
    Method,
    Term,
    register,
    require,
    require_finite,
    require_fraction,
    require_shape,
)
from ckd_tune.methods.standardize import distillation_logits, require_switch
from ckd_tune.methods.temperature import AnnealedTemperature
from ckd_tune.schedules import SCHEDULES, phi, shape_value

SCHEDULE_KEYS = ("T", "phi", "psi", "margin")
"""The per-epoch values of a learned (or replayed) Continuation-KD schedule."""

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class CKDParams(AnnealedTemperature):
    """The annealed temperature, ``psi``'s shape and end, the margin, the error's reduction and
    the standardization switch."""

    shape_fields: ClassVar[dict[str, str]] = {
        **AnnealedTemperature.shape_fields,
        "psi_params": "psi_shape",
    }
    shape_choices: ClassVar[dict[str, frozenset[str]]] = {
        **AnnealedTemperature.shape_choices,
        "psi_shape": frozenset(SCHEDULES),
    }

    psi_shape: str = "linear"
    psi_params: dict[str, float] = field(default_factory=dict)
    psi_end_fraction: float = 0.5  # fraction of training at which psi reaches 1
    margin: float = 0.0
    mse_reduction: str = "sum"  # "sum" | "mean" of the squared error over the logits
    standardize: bool = False  # z-score both models' logits before phi and the hinge
    schedule_file: str = ""  # a per-epoch schedule (JSON) to replay instead of the shapes

    def __post_init__(self) -> None:
        super().__post_init__()
        require_shape(
            self.psi_shape, frozenset(SCHEDULES), self.psi_params, "psi_shape", "psi_params"
        )
        require_fraction(self.psi_end_fraction, "psi_end_fraction", open_low=True)
        require_finite(self.margin, "margin", 0)
        require(self.mse_reduction in ("sum", "mean"), "mse_reduction", "must be 'sum' or 'mean'")
        require_switch(self.standardize, "standardize")
        require(isinstance(self.schedule_file, str), "schedule_file", "must be a path")
        if self.schedule_file:
            read_schedule(self.schedule_file)


@register
class ContinuationKD(Method):
    """``L = psi CE(z_s, y) + (1 - psi) mean_i max(0, ||z_s_i - phi z_t_i||^2 - margin phi)``."""

    name = "ckd"
    params_type = CKDParams
    annealing_fields = ("anneal_fraction", "psi_end_fraction")
    params: CKDParams

    def schedule(self, progress: float) -> dict[str, float]:
        p = self.params
        if p.schedule_file:
            return self.replayed(progress)
        psi = shape_value(p.psi_shape, progress / p.psi_end_fraction, **p.psi_params)
        return {**p.temperature_at(progress), "psi": psi, "margin": p.margin}

    def replayed(self, progress: float) -> dict[str, float]:
        """Epoch ``floor(progress * epochs) + 1``'s values of ``schedule_file`` (its last entry
        past the file's end)."""
        entries = read_schedule(self.params.schedule_file)
        epoch = min(math.floor(progress * self.epochs + 1e-9), self.epochs - 1) + 1
        entry = entries.get(epoch) or entries[max(entries)]
        values = {k: entry[k] for k in SCHEDULE_KEYS if k in entry}
        values.setdefault("phi", phi(values["T"], self.params.t_max))
        return {k: values[k] for k in SCHEDULE_KEYS}

    def loss_terms(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor | None,
        labels: Tensor,
        values: dict[str, float],
    ) -> dict[str, Term]:
        from ckd_tune import losses

        assert teacher_logits is not None
        psi, p = values["psi"], self.params
        z_s, z_t = distillation_logits(student_logits, teacher_logits, p.standardize)
        return {
            "ce": Term(psi, losses.hard_label_loss(student_logits, labels)),
            "hinge_mse": Term(
                1.0 - psi,
                losses.hinge_mse(
                    z_s,
                    z_t,
                    phi=values["phi"],
                    margin=values.get("margin", p.margin),  # scheduled (ckd:pbt, replay)
                    reduction=p.mse_reduction,
                ),
            ),
        }


@functools.cache
def read_schedule(path: str) -> dict[int, dict[str, float]]:
    """A per-epoch schedule file: ``{epoch: {"T", "psi", "margin"[, "phi"]}}``; UserInputError
    (one line) when it cannot be read or an entry lacks a value."""
    try:
        raw = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserInputError(f"schedule_file: cannot read {path}: {err}") from None
    entries = raw.get("schedule") if isinstance(raw, dict) else raw
    out: dict[int, dict[str, float]] = {}
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        needed = ("epoch", "T", "psi", "margin")
        if not isinstance(entry, dict) or any(
            not isinstance(entry.get(k), (int, float)) for k in needed
        ):
            raise UserInputError(f"schedule_file: {path}: entry {i} needs numbers {needed}")
        out[int(entry["epoch"])] = {k: float(v) for k, v in entry.items() if k != "epoch"}
    if not out:
        raise UserInputError(f"schedule_file: {path}: no per-epoch entries")
    return out


def learned_schedule(history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """The per-epoch values a run used, from its history: what ``schedule_file`` replays."""
    return [
        {"epoch": int(h["epoch"]), **{k: float(h[k]) for k in SCHEDULE_KEYS if k in h}}
        for h in history
    ]
