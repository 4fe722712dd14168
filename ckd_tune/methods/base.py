"""The interface every distillation method implements, and the registry it joins.

A method is a :class:`Method` subclass in its own module under ``ckd_tune/methods/``, decorated
with :func:`register`; the package imports every module in it, so nothing else lists methods.
The subclass names its parameters (a frozen :class:`MethodParams` dataclass that validates
itself), turns training progress into scheduled values (``T``, ``phi``, ``psi`` ...) and returns
the loss of a batch as named, weighted :class:`Term` s; the loop sums them and logs each. A method
may also learn parameters of its own (CTKD's temperature): :meth:`Method.trainable` gives them to
the loop, which trains, checkpoints and restores them with the student.

Method modules import PyTorch code (``ckd_tune.losses``) inside the functions that run during
training, so that parameters, configs and search spaces load without torch (the CLI checks its
input in well under a second).
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeVar

from ckd_tune.errors import UserInputError
from ckd_tune.schedules import SCHEDULES, check_shape_params

if TYPE_CHECKING:
    from torch import Tensor, nn


@dataclass(frozen=True)
class MethodParams:
    """A method's own parameters; subclasses are frozen dataclasses validating in ``__post_init__``.

    ``shape_fields`` maps each dict field holding a schedule's parameters to the field naming
    that schedule (e.g. ``psi_params -> psi_shape``); ``shape_choices`` gives the names each such
    schedule field accepts. Search spaces use both to check dotted names like ``psi_params.level``.
    """

    shape_fields: ClassVar[dict[str, str]] = {}
    shape_choices: ClassVar[dict[str, frozenset[str]]] = {}


class Term(NamedTuple):
    """One named part of a batch's loss: ``weight * value`` (``value`` a scalar tensor)."""

    weight: float
    value: Tensor


def total(terms: Mapping[str, Term]) -> Tensor:
    """``sum(weight * value)`` over the terms with a non-zero weight (a zero-weight term's value is
    logged but never enters the loss, so it adds no gradient, NaN or work to the backward pass)."""
    active = [t.weight * t.value for t in terms.values() if t.weight != 0]
    if not active:
        raise ValueError(f"every loss term has weight 0: {sorted(terms)}")
    return active[0] if len(active) == 1 else sum(active[1:], active[0])


class Method(ABC):
    """One distillation method, built per training run from its parameters and the epoch count.

    Subclasses set ``name``, ``params_type`` (their :class:`MethodParams`), ``needs_teacher``
    and ``annealing_fields`` (the parameters, fractions of training, before whose end the method
    is still annealing: early stopping must not judge a trial before then), and implement
    :meth:`loss_terms`; :meth:`schedule`, :meth:`phase2_epoch`, :meth:`trainable` and
    :meth:`learned` default to "nothing scheduled, nothing learned".
    """

    name: ClassVar[str]
    params_type: ClassVar[type[MethodParams]] = MethodParams
    needs_teacher: ClassVar[bool] = True
    signal: ClassVar[str] = "teacher"  # whose logits it distils: "teacher" or "assistant" (TAKD)
    annealing_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: MethodParams, epochs: int) -> None:
        if not isinstance(params, self.params_type):
            raise TypeError(
                f"method {self.name!r} takes {self.params_type.__name__}, "
                f"got {type(params).__name__}"
            )
        self.params = params
        self.epochs = epochs

    def schedule(self, progress: float) -> dict[str, float]:
        """The scheduled values at ``progress`` in [0, 1] (fraction of training done); logged."""
        return {}

    @abstractmethod
    def loss_terms(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor | None,
        labels: Tensor,
        values: dict[str, float],
    ) -> dict[str, Term]:
        """The batch's loss as named terms, given :meth:`schedule`'s ``values``."""

    def phase2_epoch(self) -> int | None:
        """The epoch at which the loop reloads the best weights so far and starts a fresh
        optimizer and lr schedule (Annealing-KD's phase 2), or ``None``."""
        return None

    def trainable(self) -> nn.Module | None:
        """The method's own learned parameters for this run (the same module on every call), or
        ``None``.

        The loop moves the module to the training device and updates its parameters in the
        student's optimizer (after the student's: the same lr, weight decay and lr schedule), saves
        its ``state_dict`` in every checkpoint (key ``"method"``) and loads it back on resume.
        The student's best weights never include it.
        """
        return None

    def learned(self) -> dict[str, float]:
        """The learned values to log after each epoch's last step (CTKD: its ``T``), beside
        :meth:`schedule`'s values."""
        return {}


METHODS: dict[str, type[Method]] = {}
"""Every registered method by name (filled by :func:`register` as the plug-ins are imported)."""

M = TypeVar("M", bound=type[Method])


def register(cls: M) -> M:
    """Class decorator: add a :class:`Method` subclass to :data:`METHODS` under ``cls.name``."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__qualname__}: set the class attribute `name`")
    if name in METHODS and METHODS[name] is not cls:
        raise ValueError(f"method {name!r} is registered twice ({METHODS[name].__qualname__})")
    fields = {f.name for f in dataclasses.fields(cls.params_type)}
    unknown = [f for f in cls.annealing_fields if f not in fields]
    if unknown:
        raise TypeError(f"{cls.__qualname__}.annealing_fields: {unknown} are not parameters")
    METHODS[name] = cls
    return cls


VARIANTS: dict[str, str] = {
    "pbt": "Population Based Training changes the space's parameters between epochs",
    "pb2": "Population Based Bandits (PB2): a Gaussian-process bandit picks them between epochs",
}
"""Search variants a method name may carry after a colon (``ckd:pbt``): the same method trained
by a different search, its own row in every table and plot (see :func:`split_method`)."""


def split_method(name: str) -> tuple[str, str | None]:
    """``"ckd:pbt" -> ("ckd", "pbt")``, ``"kd" -> ("kd", None)``; ``UserInputError`` (one line)
    for an unknown variant or an empty part."""
    if not isinstance(name, str) or ":" not in name:
        return name, None
    base, _, variant = name.partition(":")
    if not base or variant not in VARIANTS:
        raise UserInputError(
            f"method: unknown variant {variant!r} in {name!r}; "
            f"known variants: {', '.join(f'<method>:{v}' for v in VARIANTS)}"
        )
    return base, variant


def get_method(name: str) -> type[Method]:
    """The registered method ``name`` (a variant ``name:pbt`` gives its base method's class);
    ``UserInputError`` naming the choices otherwise."""
    base, _ = split_method(name)
    try:
        return METHODS[base]
    except (KeyError, TypeError):
        raise UserInputError(
            f"method: unknown method {base!r}; choose from {', '.join(sorted(METHODS))}"
        ) from None


def require(ok: bool, name: str, message: str) -> None:
    """Raise ``UserInputError("<name>: <message>")`` unless ``ok``: the one form of range check."""
    if not ok:
        raise UserInputError(f"{name}: {message}")


def require_finite(value: float, name: str, low: float, *, strict: bool = False) -> None:
    """``value`` is a finite number ``>= low`` (``> low`` with ``strict``)."""
    above = value > low if strict else value >= low
    require(
        isinstance(value, (int, float)) and math.isfinite(value) and above,
        name,
        f"must be a finite number {'>' if strict else '>='} {low:g}, got {value!r}",
    )


def require_fraction(value: float, name: str, *, open_low: bool = False) -> None:
    """``value`` in [0, 1] (``(0, 1]`` with ``open_low``)."""
    low_ok = value > 0 if open_low else value >= 0
    require(
        isinstance(value, (int, float)) and low_ok and value <= 1,
        name,
        f"must be in {'(' if open_low else '['}0, 1], got {value!r}",
    )


def require_shape(
    shape: str, choices: frozenset[str], params: dict[str, Any], shape_name: str, where: str
) -> None:
    """``shape`` is one of ``choices`` and ``params`` are valid parameters of it."""
    require(
        shape in choices,
        shape_name,
        f"unknown shape {shape!r}; choose from {', '.join(sorted(choices))}",
    )
    if shape not in SCHEDULES:  # the papers' integer temperature steps take no parameters
        require(not params, where, f"{shape_name} {shape!r} takes no parameters, got {params}")
        return
    try:
        check_shape_params(shape, params, where)
    except ValueError as err:
        raise UserInputError(str(err)) from None
