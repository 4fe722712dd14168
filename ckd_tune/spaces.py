"""YAML search spaces -> validated Optuna define-by-run functions.

One YAML file per distillation method (``search_spaces/<method>.yaml``) names the shared
settings and method parameters a search varies; ``search_spaces/README.md`` describes the
format. Validation is strict and happens at load time: every problem raises
:class:`~ckd_tune.errors.UserInputError` with one line naming the file and the parameter.

Ray Tune use: ``OptunaSearch(space=space.define_by_run, metric=..., mode=...)``. Ray merges the
sampled values with the dict ``define_by_run`` returns (``{"method": ..., **fixed}``), and keeps
dotted keys flat (its ``unflatten_dict`` splits on ``/``), so a trial config goes straight into
``TrainConfig.from_flat`` (after the bench's defaults).

Where the files are: :func:`default_space_path` resolves ``<repo>/search_spaces/<method>.yaml``
next to the package (an editable / source-tree install); a CLI should let the user pass another
directory (``space_dir``) for a non-editable install or for variant spaces.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import random
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import optuna
import yaml

from ckd_tune.config import RENAMED, SHARED_FIELDS, TrainConfig
from ckd_tune.errors import UserInputError
from ckd_tune.methods import METHODS, MethodParams, get_method
from ckd_tune.schedules import PAPER_STEPS, SCHEDULES, check_shape_params

__all__ = [
    "PARAM_TYPES",
    "PBTSettings",
    "ParamSpec",
    "SearchSpace",
    "default_space_path",
    "load_space",
    "space_from_dict",
]

SPACE_DIR = Path(__file__).resolve().parents[1] / "search_spaces"
PARAM_TYPES = ("uniform", "loguniform", "int", "categorical")

_TOP_KEYS = ("method", "fixed", "params", "bench_overrides", "pbt")
_OVERRIDE_KEYS = ("fixed", "params")
_SPEC_KEYS: dict[str, frozenset[str]] = {
    "uniform": frozenset({"type", "low", "high", "when"}),
    "loguniform": frozenset({"type", "low", "high", "when"}),
    "int": frozenset({"type", "low", "high", "step", "log", "when"}),
    "categorical": frozenset({"type", "choices", "when"}),
}
_SHARED_TYPES: dict[str, Any] = {
    k: v for k, v in typing.get_type_hints(TrainConfig).items() if k in SHARED_FIELDS
}
_N_RANDOM_CHECKS = 32
_MISSING = object()


@dataclass(frozen=True)
class ParamSpec:
    """One searched parameter: its distribution and the condition under which it exists."""

    name: str
    type: str  # one of PARAM_TYPES
    low: float | None = None
    high: float | None = None
    step: int | None = None  # "int" only
    log: bool = False  # True for "loguniform" and for "int" with ``log: true``
    choices: tuple[Any, ...] = ()  # "categorical" only
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # ((earlier param, allowed values), ...)

    def active(self, values: Mapping[str, Any]) -> bool:
        """Whether this parameter exists given the values sampled so far."""
        return all(values.get(name, _MISSING) in allowed for name, allowed in self.when)

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        """Ask an Optuna trial (or Ray's wrapper of one) for a value."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=self.step or 1, log=self.log
            )
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)

    def sample(self, rng: random.Random) -> Any:
        """A value drawn from the same distribution with Python's ``random`` (no Optuna)."""
        if self.type == "categorical":
            return rng.choice(self.choices)
        assert self.low is not None and self.high is not None
        if self.type == "int":
            low, high, step = int(self.low), int(self.high), self.step or 1
            if self.log:
                value = round(math.exp(rng.uniform(math.log(low), math.log(high))))
                return min(high, max(low, value))
            return low + step * rng.randint(0, (high - low) // step)
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)

    def extremes(self) -> tuple[Any, ...]:
        """The values worth checking against ``TrainConfig``: the bounds, or every choice."""
        if self.type == "categorical":
            return self.choices
        return (self.low, self.high)


@dataclass(frozen=True)
class PBTSettings:
    """The ``pbt:`` section of a space: how the ``<method>:pbt`` search (Population Based
    Training) changes its members' parameters between epochs.

    The space's ``params`` are the initial distribution of the population; ``mutate`` (default:
    every numeric searched parameter) are the ones PBT perturbs (x0.8 / x1.2, or resampled with
    ``resample_probability``, clipped to the space's range) when a member in the bottom
    ``quantile_fraction`` copies a member of the top one. No member is judged before
    ``burn_in_fraction`` of training, and then at most every ``interval_fraction`` of it (both
    fractions of the run's epochs, rounded up to whole epochs, at least 1: :meth:`epochs`).
    """

    burn_in_fraction: float = 0.3
    interval_fraction: float = 0.1
    quantile_fraction: float = 0.25
    resample_probability: float = 0.25
    mutate: tuple[str, ...] = ()

    def epochs(self, epochs: int) -> tuple[int, int]:
        """``(burn_in, perturbation_interval)`` in whole epochs of a run of ``epochs``."""

        def whole(fraction: float) -> int:
            return max(1, math.ceil(fraction * epochs - 1e-9))

        return whole(self.burn_in_fraction), whole(self.interval_fraction)


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space for one method (built by :func:`load_space`).

    ``params`` are searched in order (conditionals after the parameters they depend on);
    ``fixed`` holds constants for every trial (dotted keys for dict fields, like ``params``).
    Picklable, so ``define_by_run`` can be handed to Ray Tune.
    """

    method: str
    params: tuple[ParamSpec, ...]
    fixed: dict[str, Any] = field(default_factory=dict)
    source: Path | str = "<dict>"
    bench: str | None = None  # the bench whose overrides were applied, if any
    pbt: PBTSettings | None = None  # the ``pbt:`` section, if the file has one

    def pb2_bounds(self) -> dict[str, list[float]]:
        """PB2's ``hyperparam_bounds``: each numeric ``pbt.mutate`` parameter's range (PB2
        models them on a linear scale; a log-scale range is searched linearly)."""
        mutate = self.pbt.mutate if self.pbt is not None else ()
        return {
            p.name: [float(p.low), float(p.high)]
            for p in self.params
            if p.name in mutate and p.type != "categorical"
        }

    def tune_domains(self) -> dict[str, Any]:
        """The searched parameters as Ray Tune domains (PBT's initial distribution and its
        resampling); conditional parameters have none (``pbt:`` refuses them)."""
        from ray import tune

        out: dict[str, Any] = {}
        for spec in self.params:
            if spec.type == "categorical":
                out[spec.name] = tune.choice(list(spec.choices))
            elif spec.type == "int":
                low, high = int(spec.low or 0), int(spec.high or 0)
                if spec.log:
                    out[spec.name] = tune.lograndint(low, high + 1)
                else:
                    out[spec.name] = tune.qrandint(low, high, spec.step or 1)
            elif spec.log:
                out[spec.name] = tune.loguniform(spec.low, spec.high)
            else:
                out[spec.name] = tune.uniform(spec.low, spec.high)
        return out

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of the searched parameters, in definition order."""
        return tuple(p.name for p in self.params)

    def constants(self) -> dict[str, Any]:
        """What every trial config holds besides the sampled values: the method and ``fixed``."""
        return {"method": self.method, **self.fixed}

    def define_by_run(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Optuna define-by-run function: suggest the active parameters, return the constants.

        For Ray's ``OptunaSearch(space=space.define_by_run, ...)``: Ray records every
        ``trial.suggest_*`` value and merges in the returned dict, so the trial config is the
        flat ``{**sampled, "method": ..., **fixed}``. With plain Optuna, the sampled values
        are ``trial.params``; :meth:`suggest_config` returns the merged dict directly.
        """
        self._suggest(trial)
        return self.constants()

    def suggest_config(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """The full flat config of one trial (sampled values + constants), for plain Optuna."""
        return {**self._suggest(trial), **self.constants()}

    def sample_random(self, rng: random.Random) -> dict[str, Any]:
        """A full flat config sampled with Python's ``random`` (used by the load-time checks)."""
        values: dict[str, Any] = {}
        for spec in self.params:
            if spec.active(values):
                values[spec.name] = spec.sample(rng)
        return {**values, **self.constants()}

    def _suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for spec in self.params:
            if spec.active(values):
                values[spec.name] = spec.suggest(trial)
        return values


def default_space_path(method: str, space_dir: Path | str | None = None) -> Path:
    """``<space_dir>/<method>.yaml``; ``space_dir`` defaults to the repository's ``search_spaces``.

    The default resolves next to the package (``<repo>/search_spaces``), which exists for a
    source checkout / editable install; a non-editable install should pass ``space_dir``.
    """
    _check_method_name(method, "method")
    return Path(space_dir if space_dir is not None else SPACE_DIR) / f"{method}.yaml"


def load_space(path: Path | str, bench: str | None = None) -> SearchSpace:
    """Read, validate and return the search space in the YAML file ``path``.

    ``bench`` selects ``bench_overrides.<bench>`` if the file has one (else the base space).
    Raises :class:`UserInputError` (one line naming the file and the parameter) on any problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UserInputError(f"{path}: cannot read search space: {err.strerror or err}") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a yaml.SafeLoader that rejects duplicates
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = " ".join(str(p) for p in (err.context, err.problem) if p)
        raise UserInputError(f"{where}: invalid YAML: {_one_line(problem)}") from None
    except yaml.YAMLError as err:
        raise UserInputError(f"{path}: invalid YAML: {_one_line(str(err))}") from None
    method = data.get("method") if isinstance(data, Mapping) else None
    if isinstance(method, str) and method != path.stem:
        raise UserInputError(
            f"{path}: method: {method!r} does not match the file name "
            f"(expected method: {path.stem})"
        )
    return space_from_dict(data, source=path, bench=bench)


def space_from_dict(
    data: Any, source: Path | str = "<dict>", bench: str | None = None
) -> SearchSpace:
    """Validate an already parsed space (same format as the YAML file); see :func:`load_space`."""
    ctx = _Context(source)
    if data is None:
        ctx.fail("top level", "the file is empty; expected a mapping with 'method' and 'params'")
    if not isinstance(data, Mapping):
        ctx.fail("top level", f"expected a mapping, got {_kind(data)}")
    for key in data:
        if key not in _TOP_KEYS:
            ctx.fail(str(key), f"unknown top-level key; allowed: {', '.join(_TOP_KEYS)}")
    if "method" not in data:
        ctx.fail("method", "missing (the method this space is for)")
    method = data["method"]
    _check_method_name(method, f"{ctx.source}: method")
    ctx = dataclasses.replace(ctx, method=method)
    if "params" not in data:
        ctx.fail("params", "missing (a mapping of parameter name -> spec)")
    base_params = _mapping(ctx, data["params"], "params")
    base_fixed = _mapping(ctx, data.get("fixed"), "fixed")
    overrides = _mapping(ctx, data.get("bench_overrides"), "bench_overrides")

    params = {name: (f"params.{name}", spec) for name, spec in base_params.items()}
    fixed = {name: (f"fixed.{name}", value) for name, value in base_fixed.items()}
    for name in params:
        if name in fixed:
            ctx.fail(f"params.{name}", "also set in 'fixed'; keep one of the two")
    chosen = _build(ctx, method, params, fixed, None)

    for bench_name, override in overrides.items():
        where = f"bench_overrides.{bench_name}"
        if not isinstance(bench_name, str):
            ctx.fail(where, "bench names must be strings")
        override_map = _mapping(ctx, override, where)
        for key in override_map:
            if key not in _OVERRIDE_KEYS:
                ctx.fail(f"{where}.{key}", f"unknown key; allowed: {', '.join(_OVERRIDE_KEYS)}")
        new_params = _mapping(ctx, override_map.get("params"), f"{where}.params")
        new_fixed = _mapping(ctx, override_map.get("fixed"), f"{where}.fixed")
        merged_params, merged_fixed = dict(params), dict(fixed)
        for name, spec in new_params.items():
            merged_fixed.pop(name, None)
            if spec is None:
                merged_params.pop(name, None)
            else:
                merged_params[name] = (f"{where}.params.{name}", spec)
        for name, value in new_fixed.items():
            if value is None:
                merged_fixed.pop(name, None)
                continue
            if new_params.get(name) is not None:
                ctx.fail(f"{where}.fixed.{name}", f"also set in {where}.params; keep one")
            merged_params.pop(name, None)
            merged_fixed[name] = (f"{where}.fixed.{name}", value)
        variant = _build(ctx, method, merged_params, merged_fixed, bench_name)
        if bench_name == bench:
            chosen = variant
    if data.get("pbt") is not None:
        chosen = dataclasses.replace(chosen, pbt=_parse_pbt(ctx, data["pbt"], chosen))
    return chosen


def _parse_pbt(ctx: _Context, raw: Any, space: SearchSpace) -> PBTSettings:
    """The ``pbt:`` section, checked against the (bench's) searched parameters."""
    section = _mapping(ctx, raw, "pbt")
    names = {f.name for f in dataclasses.fields(PBTSettings)}
    for key in section:
        if key not in names:
            ctx.fail(f"pbt.{key}", f"unknown key; allowed: {', '.join(sorted(names))}")
    values: dict[str, Any] = {}
    for key in ("burn_in_fraction", "interval_fraction", "quantile_fraction"):
        if key in section:
            values[key] = float(_number(ctx, section[key], f"pbt.{key}"))
    if "resample_probability" in section:
        values["resample_probability"] = float(
            _number(ctx, section["resample_probability"], "pbt.resample_probability")
        )
    settings = PBTSettings(**values)
    for key in ("burn_in_fraction", "interval_fraction"):
        if not 0 < getattr(settings, key) <= 1:
            ctx.fail(f"pbt.{key}", "must be in (0, 1] (a fraction of training; >= 1 epoch)")
    if not 0 < settings.quantile_fraction <= 0.5:
        ctx.fail("pbt.quantile_fraction", "must be in (0, 0.5]")
    if not 0 <= settings.resample_probability <= 1:
        ctx.fail("pbt.resample_probability", "must be in [0, 1]")
    specs = {p.name: p for p in space.params}
    for spec in space.params:
        if spec.when:
            ctx.fail(f"params.{spec.name}", "conditional ('when') parameters do not go with pbt")
    mutate = section.get("mutate")
    if mutate is None:
        chosen = tuple(n for n, p in specs.items() if p.type != "categorical")
    elif isinstance(mutate, list) and all(isinstance(m, str) for m in mutate):
        chosen = tuple(mutate)
    else:
        ctx.fail("pbt.mutate", "must be a list of searched parameter names")
    for name in chosen:
        if name not in specs:
            ctx.fail("pbt.mutate", f"{name!r} is not a searched parameter ({', '.join(specs)})")
    if not chosen:
        ctx.fail("pbt.mutate", "no parameter to change between epochs")
    return dataclasses.replace(settings, mutate=chosen)


# --------------------------------------------------------------------------- validation


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects duplicate mapping keys instead of keeping the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


@dataclass(frozen=True)
class _Context:
    source: Path | str
    bench: str | None = None  # set while checking the variant of one bench
    method: str = "none"  # the space's method, once checked

    @property
    def params_type(self) -> type[MethodParams]:
        return get_method(self.method).params_type

    @property
    def field_types(self) -> dict[str, Any]:
        """Type of every name a space for this method may set: shared settings, then the
        method's own parameters."""
        return _field_types(self.method)

    def fail(self, where: str, problem: str) -> NoReturn:
        if self.bench is not None and not where.startswith("bench_overrides."):
            where = f"{where} (with bench_overrides.{self.bench})"
        raise UserInputError(f"{self.source}: {where}: {_one_line(problem)}")


@functools.cache
def _field_types(method: str) -> dict[str, Any]:
    """The types :attr:`_Context.field_types` gives, computed once per method."""
    params_type = get_method(method).params_type
    hints = typing.get_type_hints(params_type)
    own = {f.name: hints[f.name] for f in dataclasses.fields(params_type)}
    return {**_SHARED_TYPES, **own}


def _build(
    ctx: _Context,
    method: str,
    raw_params: dict[str, tuple[str, Any]],
    raw_fixed: dict[str, tuple[str, Any]],
    bench: str | None,
) -> SearchSpace:
    """Parse and check one variant (base or one bench) of a space."""
    fixed: dict[str, Any] = {}
    for name, (where, value) in raw_fixed.items():
        _check_name(ctx, name, where)
        _check_fixed_type(ctx, name, value, where)
        fixed[name] = value
    ctx = dataclasses.replace(ctx, bench=bench)
    _check_config(ctx, "fixed", {**fixed, "method": method})

    specs: dict[str, ParamSpec] = {}
    for name, (where, raw) in raw_params.items():
        _check_name(ctx, name, where)
        specs[name] = _parse_spec(ctx, name, raw, where, specs)
    wheres = {name: where for name, (where, _) in raw_params.items()}
    for name, spec in specs.items():
        _check_field_compat(ctx, spec, wheres[name])
    for name, spec in specs.items():
        if "." in name:
            _check_dotted(ctx, spec, wheres[name], specs, fixed)
    for name, spec in specs.items():
        if "." in name:
            continue
        for value in spec.extremes():
            _check_config(
                ctx, wheres[name], {**fixed, "method": method, name: value}, f"value {value!r}: "
            )

    space = SearchSpace(
        method=method, params=tuple(specs.values()), fixed=fixed, source=ctx.source, bench=bench
    )
    _check_joint_samples(ctx, space)
    return space


def _parse_spec(
    ctx: _Context, name: str, raw: Any, where: str, earlier: Mapping[str, ParamSpec]
) -> ParamSpec:
    if not isinstance(raw, Mapping):
        ctx.fail(
            where,
            f"expected a mapping like {{type: uniform, low: ..., high: ...}}, got {_kind(raw)}",
        )
    kind = raw.get("type")
    if kind is None:
        ctx.fail(where, f"missing 'type' (one of {', '.join(PARAM_TYPES)})")
    if kind not in PARAM_TYPES:
        ctx.fail(where, f"unknown type {kind!r}; choose from {', '.join(PARAM_TYPES)}")
    for key in raw:
        if key not in _SPEC_KEYS[kind]:
            ctx.fail(
                f"{where}.{key}",
                f"unknown key for type {kind}; allowed: {', '.join(sorted(_SPEC_KEYS[kind]))}",
            )
    when = _parse_when(ctx, raw.get("when"), f"{where}.when", earlier)

    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list):
            ctx.fail(f"{where}.choices", f"expected a non-empty list, got {_kind(choices)}")
        if not choices:
            ctx.fail(f"{where}.choices", "must not be empty")
        for choice in choices:
            if not isinstance(choice, (str, int, float)):  # bool is an int: true/false pass
                ctx.fail(
                    f"{where}.choices",
                    f"choices must be strings, numbers or true/false, got {_kind(choice)}",
                )
        if len({(type(c), c) for c in choices}) != len(choices):
            ctx.fail(f"{where}.choices", f"duplicate choices in {choices}")
        return ParamSpec(name=name, type=kind, choices=tuple(choices), when=when)

    integer = kind == "int"
    for key in ("low", "high"):
        if key not in raw:
            ctx.fail(f"{where}.{key}", "missing")
    low = _number(ctx, raw["low"], f"{where}.low", integer)
    high = _number(ctx, raw["high"], f"{where}.high", integer)
    if low > high:
        ctx.fail(where, f"low ({low}) must be <= high ({high})")
    log = kind == "loguniform"
    step: int | None = None
    if integer:
        log_raw = raw.get("log", False)
        if not isinstance(log_raw, bool):
            ctx.fail(f"{where}.log", f"expected true or false, got {log_raw!r}")
        log = log_raw
        if "step" in raw:
            step_raw = _number(ctx, raw["step"], f"{where}.step", integer=True)
            if step_raw < 1:
                ctx.fail(f"{where}.step", f"must be >= 1, got {step_raw}")
            if log and step_raw != 1:
                ctx.fail(f"{where}.step", "cannot be combined with log: true (Optuna forbids it)")
            if (high - low) % step_raw:
                ctx.fail(
                    f"{where}.step", f"high - low ({high - low}) is not a multiple of {step_raw}"
                )
            step = int(step_raw)
    if log and low <= 0:
        ctx.fail(f"{where}.low", f"must be > 0 for a log scale, got {low}")
    return ParamSpec(name=name, type=kind, low=low, high=high, step=step, log=log, when=when)


def _parse_when(
    ctx: _Context, raw: Any, where: str, earlier: Mapping[str, ParamSpec]
) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping) or not raw:
        ctx.fail(
            where, f"expected a mapping {{earlier_param: value or [values]}}, got {_kind(raw)}"
        )
    conditions = []
    for ref, allowed in raw.items():
        if ref not in earlier:
            ctx.fail(
                f"{where}.{ref}",
                "refers to a parameter not defined earlier in 'params' "
                "(conditions may only use categorical parameters listed before this one)",
            )
        parent = earlier[ref]
        if parent.type != "categorical":
            ctx.fail(
                f"{where}.{ref}", f"refers to a {parent.type} parameter; only categorical ones work"
            )
        values = allowed if isinstance(allowed, list) else [allowed]
        if not values:
            ctx.fail(f"{where}.{ref}", "empty list of values")
        for value in values:
            if value not in parent.choices:
                ctx.fail(
                    f"{where}.{ref}", f"{value!r} is not one of its choices {list(parent.choices)}"
                )
        conditions.append((ref, tuple(values)))
    return tuple(conditions)


def _check_name(ctx: _Context, name: Any, where: str) -> None:
    """``name`` is a shared setting, a parameter of the space's method or ``<dict param>.<entry>``;
    ``method`` is reserved."""
    if not isinstance(name, str):
        ctx.fail(where, f"parameter names must be strings, got {_kind(name)}")
    head, dot, sub = name.partition(".")
    if head == "method":
        ctx.fail(where, "'method' is set by the top-level 'method' key only")
    types = ctx.field_types
    if head in RENAMED:
        owner, new = RENAMED[head]
        ctx.fail(
            where,
            f"renamed to {new!r} (a parameter of method {owner!r}); see search_spaces/README.md",
        )
    if head not in types:
        own = [f.name for f in dataclasses.fields(ctx.params_type)]
        ctx.fail(
            where,
            f"{head!r} is neither a shared setting nor a parameter of method {ctx.method!r}; "
            f"its parameters: {', '.join(own) or 'none'}; "
            f"shared settings: {', '.join(sorted(SHARED_FIELDS - {'method'}))}",
        )
    is_dict = typing.get_origin(types[head]) is dict
    if is_dict and not (dot and sub):
        ctx.fail(where, f"{head} is a dict field; name one entry as {head}.<name>")
    if dot and not is_dict:
        ctx.fail(where, f"{head} is not a dict field, so {name!r} cannot have a '.' part")
    if dot and (not sub or "." in sub):
        ctx.fail(where, f"expected {head}.<name>, got {name!r}")
    if is_dict:
        accepted = {p for shape in SCHEDULES for p in _shape_params(shape)}
        if sub not in accepted:
            ctx.fail(
                where,
                f"{sub!r} is not a parameter of any schedule shape; "
                f"known: {', '.join(sorted(accepted))}",
            )


def _check_fixed_type(ctx: _Context, name: str, value: Any, where: str) -> None:
    head, _, sub = name.partition(".")
    want = ctx.field_types[head]
    if sub:
        want = (
            int
            if any(_param_is_int(s, sub) for s in SCHEDULES if sub in _shape_params(s))
            else float
        )
    if want is str and not isinstance(value, str):
        ctx.fail(where, f"expected a string, got {_kind(value)}")
    if want is bool and not isinstance(value, bool):
        ctx.fail(where, f"expected true or false, got {_kind(value)}")
    if want in (int, float):
        _number(ctx, value, where, integer=want is int)


def _check_field_compat(ctx: _Context, spec: ParamSpec, where: str) -> None:
    """The spec's values have the field's type (int fields: int; str fields: string choices;
    bool fields: true/false choices, and only they take true/false)."""
    head = spec.name.partition(".")[0]
    want = ctx.field_types[head]
    shape_choices = ctx.params_type.shape_choices
    if spec.type == "categorical":
        for choice in spec.choices:
            if (want is bool) != isinstance(choice, bool):
                takes = "true or false" if want is bool else "no true/false"
                ctx.fail(f"{where}.choices", f"{spec.name} takes {takes}, got {_kind(choice)}")
            if want is str and not isinstance(choice, str):
                ctx.fail(f"{where}.choices", f"{spec.name} takes strings, got {_kind(choice)}")
            if want is not str and isinstance(choice, str):
                ctx.fail(f"{where}.choices", f"{spec.name} takes numbers, got string {choice!r}")
            if want is int and not isinstance(choice, int):
                ctx.fail(f"{where}.choices", f"{spec.name} takes integers, got {choice!r}")
        if spec.name in shape_choices:
            known = shape_choices[spec.name]
            for choice in spec.choices:
                if choice not in known:
                    ctx.fail(
                        f"{where}.choices",
                        f"unknown {spec.name} {choice!r}; choose from {', '.join(sorted(known))}",
                    )
        return
    if want is str:
        ctx.fail(where, f"{spec.name} takes strings; use type: categorical")
    if want is bool:
        ctx.fail(where, f"{spec.name} takes true or false; use type: categorical")
    if want is int and spec.type != "int":
        ctx.fail(where, f"{spec.name} is an integer field; use type: int or categorical")


def _check_dotted(
    ctx: _Context,
    spec: ParamSpec,
    where: str,
    specs: Mapping[str, ParamSpec],
    fixed: Mapping[str, Any],
) -> None:
    """``psi_params.x`` fits every psi_shape it can meet, with values in the shape's range."""
    head, _, sub = spec.name.partition(".")
    shape_field = ctx.params_type.shape_fields[head]
    default_shape = getattr(ctx.params_type(), shape_field)
    conditions = dict(spec.when)
    if shape_field in conditions:
        shapes = set(conditions[shape_field])
    elif shape_field in fixed:
        shapes = {fixed[shape_field]}
    elif shape_field in specs:
        parent = specs[shape_field]
        shapes = set(parent.choices)
        if parent.when:
            shapes.add(default_shape)
    else:
        shapes = {default_shape}
    hint = f"add when: {{{shape_field}: [...]}} listing only shapes that take {sub!r}"
    for shape in sorted(shapes):
        if shape == PAPER_STEPS or sub not in _shape_params(shape):
            takes = (
                "no parameters" if shape == PAPER_STEPS else _shape_params(shape) or "no parameters"
            )
            ctx.fail(where, f"{shape_field} {shape!r} takes {takes}, not {sub!r}; {hint}")
        integer_spec = spec.type == "int" or (
            spec.type == "categorical" and all(isinstance(c, int) for c in spec.choices)
        )
        if _param_is_int(shape, sub) and not integer_spec:
            ctx.fail(where, f"{sub} of shape {shape!r} is an integer; use type: int")
        for value in spec.extremes():
            if isinstance(value, str):
                ctx.fail(f"{where}", f"{spec.name} takes numbers, got string {value!r}")
            try:
                check_shape_params(shape, {sub: value}, head)
            except ValueError as err:
                ctx.fail(where, f"value {value!r} is out of range for shape {shape!r}: {err}")


def _check_config(ctx: _Context, where: str, flat: dict[str, Any], prefix: str = "") -> None:
    try:
        TrainConfig.from_flat(flat)
    except (UserInputError, TypeError, ValueError) as err:
        ctx.fail(where, f"{prefix}TrainConfig rejects it: {err}")


def _check_joint_samples(ctx: _Context, space: SearchSpace) -> None:
    """Build TrainConfig for corner combinations and seeded random joint samples."""
    samples: list[dict[str, Any]] = []
    rounds = max([2, *(len(p.choices) for p in space.params)])
    for k in range(rounds):  # every choice at least once, bounds alternating low/high
        values: dict[str, Any] = {}
        for spec in space.params:
            if spec.active(values):
                values[spec.name] = (
                    spec.choices[k % len(spec.choices)] if spec.choices else spec.extremes()[k % 2]
                )
        samples.append({**values, **space.constants()})
    rng = random.Random(0)
    samples += [space.sample_random(rng) for _ in range(_N_RANDOM_CHECKS)]
    for flat in samples:
        sampled = {k: v for k, v in flat.items() if k in space.param_names}
        _check_config(ctx, "params", flat, f"the sample {sampled} is invalid, ")


def _check_method_name(method: Any, prefix: str) -> None:
    if not isinstance(method, str) or method not in METHODS:
        raise UserInputError(
            f"{prefix}: unknown method {method!r}; choose from {', '.join(sorted(METHODS))}"
        )


# --------------------------------------------------------------------------- small helpers


def _shape_params(shape: str) -> list[str]:
    if shape not in SCHEDULES:
        return []
    return list(_signature(shape).parameters)[1:]


def _param_is_int(shape: str, sub: str) -> bool:
    """Integer-valued shape parameter (its default is an int, e.g. ``step``'s ``n_steps``)."""
    default = _signature(shape).parameters[sub].default
    return isinstance(default, int) and not isinstance(default, bool)


def _signature(shape: str) -> inspect.Signature:
    return inspect.signature(SCHEDULES[shape])


def _mapping(ctx: _Context, raw: Any, where: str) -> dict[Any, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        ctx.fail(where, f"expected a mapping, got {_kind(raw)}")
    return dict(raw)


def _number(ctx: _Context, raw: Any, where: str, integer: bool = False) -> Any:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        hint = ""
        if isinstance(raw, str):
            try:
                float(raw)
                hint = " (PyYAML reads 1e-5 as a string; write 1.0e-5)"
            except ValueError:
                pass
        ctx.fail(
            where, f"expected {'an integer' if integer else 'a number'}, got {_kind(raw)}{hint}"
        )
    if not math.isfinite(raw):
        ctx.fail(where, f"must be finite, got {raw}")
    if integer and not isinstance(raw, int):
        ctx.fail(where, f"expected an integer, got {raw!r}")
    return raw


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"{type(value).__name__} {value!r}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
