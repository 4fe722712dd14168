"""The one configuration object that travels from the CLI to the training loop.

:class:`TrainConfig` holds the training settings every method shares (optimiser, batches,
epochs, seed, ...) and the chosen method's own parameters (``params``, the method's typed
:class:`~ckd_tune.methods.MethodParams`). Its flat form (:meth:`TrainConfig.to_flat`), used by
search spaces, Ray Tune, MLflow and ``results.json``, puts both side by side: ``{"method": "kd",
"lr": ..., "alpha": ..., "temperature": ...}``; dict parameters become dotted keys such as
``psi_params.level``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ckd_tune.errors import UserInputError
from ckd_tune.methods import Method, MethodParams, get_method
from ckd_tune.methods.base import require

RENAMED = {"kd_alpha": ("kd", "alpha"), "kd_temperature": ("kd", "temperature")}
"""Flat keys of the single-bag config (before methods had their own parameters) -> their names
now: a space or config using them is refused with the new name, never silently reinterpreted."""


@dataclass
class TrainConfig:
    """Everything one training run needs: the shared settings and the method's parameters."""

    method: str = "kd"
    params: MethodParams | None = None  # None: the method's defaults
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
    # when scheduled values (T, psi) change: "epoch" (the papers: at epoch starts, progress =
    # epoch / epochs) or "step" (every optimizer step, progress = steps done / all steps)
    schedule_unit: str = "epoch"

    def __post_init__(self) -> None:
        method = get_method(self.method)
        self.method = method.name  # a search variant ("ckd:pbt") trains its base method
        if self.params is None:
            self.params = method.params_type()
        require(
            type(self.params) is method.params_type,
            "params",
            f"method {self.method!r} takes {method.params_type.__name__}, "
            f"got {type(self.params).__name__}",
        )
        shadowed = _param_names(method) & SHARED_FIELDS
        require(not shadowed, "params", f"method {self.method!r} shadows settings {shadowed}")
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        require(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        require(self.optimizer in ("adamw", "sgd"), "optimizer", "must be 'adamw' or 'sgd'")
        require(self.lr_schedule in ("linear", "step"), "lr_schedule", "must be 'linear' or 'step'")
        require(self.num_threads >= 1, "num_threads", "must be >= 1")
        require(isinstance(self.group_by_length, bool), "group_by_length", "must be true or false")
        require(
            self.schedule_unit in ("epoch", "step"), "schedule_unit", "must be 'epoch' or 'step'"
        )

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]) -> TrainConfig:
        """Build a config from its flat form; unknown (or renamed) keys raise ``UserInputError``."""
        method = get_method(flat.get("method", cls.method))
        shared: dict[str, Any] = {}
        params: dict[str, Any] = {}
        dotted: dict[str, dict[str, Any]] = {}
        names = _param_names(method)
        dict_names = {
            f.name for f in dataclasses.fields(method.params_type) if f.default_factory is dict
        }
        for key, value in flat.items():
            head, _, sub = key.partition(".")
            if key in SHARED_FIELDS:
                shared[key] = value
            elif key in RENAMED:
                owner, new = RENAMED[key]
                raise UserInputError(
                    f"{key}: renamed to {new!r} (a parameter of method {owner!r}); "
                    "see search_spaces/README.md"
                )
            elif head not in names:
                raise UserInputError(
                    f"{key}: not a shared setting nor a parameter of method {method.name!r} "
                    f"(its parameters: {', '.join(sorted(names)) or 'none'})"
                )
            elif sub:
                if head not in dict_names:
                    raise UserInputError(
                        f"{key}: {head!r} is not a dict parameter; dotted keys are for "
                        f"{sorted(dict_names)}"
                    )
                dotted.setdefault(head, {})[sub] = value
            elif head in dict_names:
                if not isinstance(value, Mapping):
                    raise UserInputError(f"{head}: must be a mapping, got {value!r}")
                params[head] = dict(value)  # a copy: the caller's dict is never changed
            else:
                params[head] = value
        for head, entries in dotted.items():
            params[head] = {**params.get(head, {}), **entries}
        try:
            method_params = method.params_type(**params)
        except TypeError as err:  # e.g. a value of the wrong kind reaching a comparison
            raise UserInputError(f"method {method.name!r}: {err}") from None
        return cls(params=method_params, **shared)

    def to_flat(self) -> dict[str, Any]:
        """The inverse of :meth:`from_flat`: shared settings, then the method's parameters."""
        flat = {f: getattr(self, f) for f in SHARED_FIELDS_ORDERED}
        for key, value in dataclasses.asdict(self.params).items():
            if isinstance(value, dict):
                flat.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                flat[key] = value
        return flat

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with flat ``changes`` applied and validated (settings or method parameters).

        Changing ``method`` starts from the new method's default parameters.
        """
        flat = self.to_flat()
        if changes.get("method", self.method) != self.method:
            flat = {k: v for k, v in flat.items() if k in SHARED_FIELDS}
        return TrainConfig.from_flat({**flat, **changes})

    def build_method(self) -> Method:
        """The method object for one training run with this config."""
        assert self.params is not None
        return get_method(self.method)(self.params, self.epochs)

    def progress(self, done: float) -> float:
        """The schedule's progress when the fraction ``done`` of all optimizer steps is done.

        ``schedule_unit="epoch"``: the start of the current epoch, ``floor(done * epochs) /
        epochs`` (values change at epoch boundaries, as in the papers); ``"step"``: ``done``.
        """
        if self.schedule_unit == "step":
            return done
        return min(math.floor(done * self.epochs + 1e-9), self.epochs - 1) / self.epochs


SHARED_FIELDS_ORDERED = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "params")
SHARED_FIELDS = frozenset(SHARED_FIELDS_ORDERED)
"""The flat names of the settings every method shares (``method`` included)."""


def _param_names(method: type[Method]) -> set[str]:
    return {f.name for f in dataclasses.fields(method.params_type)}
