"""YAML search spaces: the shipped files, sampling through Optuna / Ray, and strict validation."""

from __future__ import annotations

import math
import pickle
import random
import textwrap
from pathlib import Path

import optuna
import pytest

from ckd_tune.config import TrainConfig
from ckd_tune.errors import UserInputError
from ckd_tune.methods import METHODS
from ckd_tune.spaces import SPACE_DIR, SearchSpace, default_space_path, load_space, space_from_dict

optuna.logging.set_verbosity(optuna.logging.WARNING)

WIDE = SPACE_DIR / "wide"  # the variant that also tunes each method's optimiser settings
SHIPPED = {  # the defaults: only each method's own parameters, the papers' schedules fixed
    "none": ({}, set()),
    "kd": ({}, {"alpha", "temperature"}),
    "takd": ({}, {"alpha", "temperature"}),
    "annealing_kd": ({"temperature_path": "steps"}, {"t_max", "anneal_fraction"}),
    "ckd": (
        {"temperature_path": "steps", "psi_shape": "ramp", "mse_reduction": "sum"},
        {"t_max", "anneal_fraction", "psi_end_fraction", "psi_params.level", "margin"},
    ),
    "ctkd": ({}, {"alpha", "t_range", "lambda_max", "curriculum_fraction"}),
    "dkd": ({"temperature": 4.0, "warmup": 20 / 240}, {"alpha", "beta"}),
    "dist": ({}, {"beta", "gamma", "temperature"}),
}
CIFAR_SHIPPED = {  # the papers' CIFAR-100 settings where they differ: (fixed added, params left)
    "ckd": ({"mse_reduction": "mean"}, SHIPPED["ckd"][1]),
    "dkd": ({"alpha": 1.0}, {"beta"}),
    "dist": ({"temperature": 4.0}, {"beta", "gamma"}),
}
BASE = {"lr", "weight_decay", "batch_size"}
EXPECTED_PARAMS = {
    "none": BASE,
    "kd": BASE | {"alpha", "temperature", "standardize"},
    "takd": BASE | {"alpha", "temperature", "standardize"},
    "annealing_kd": BASE
    | {"t_max", "temperature_path", "temperature_params.rate", "anneal_fraction"},
    "ckd": BASE
    | {
        "t_max",
        "margin",
        "mse_reduction",
        "standardize",
        "psi_end_fraction",
        "psi_shape",
        "psi_params.rate",
        "psi_params.steepness",
        "psi_params.midpoint",
        "psi_params.n_steps",
        "temperature_path",
        "temperature_params.rate",
        "anneal_fraction",
    },
    "ctkd": BASE | {"alpha", "t_start", "t_range", "lambda_max", "curriculum_fraction"},
    "dkd": BASE | {"alpha", "beta", "temperature", "warmup", "standardize"},
    "dist": BASE | {"beta", "gamma", "temperature", "standardize"},
}
# conditional parameter -> (the categorical it depends on, the values that make it exist)
CONDITIONS = {
    "psi_params.rate": ("psi_shape", {"exponential"}),
    "psi_params.steepness": ("psi_shape", {"sigmoid"}),
    "psi_params.midpoint": ("psi_shape", {"sigmoid"}),
    "psi_params.n_steps": ("psi_shape", {"step"}),
    "temperature_params.rate": ("temperature_path", {"exponential"}),
}


def _fake_score(config: dict) -> float:
    """A smooth objective so TPE has something to model (best lr near 1e-4)."""
    return -abs(math.log10(config["lr"]) + 4.0) + 0.01 * config["batch_size"]


def _tpe_configs(space: SearchSpace, seed: int, n: int = 30) -> list[dict]:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    configs = []
    for _ in range(n):
        trial = study.ask()
        config = space.suggest_config(trial)
        study.tell(trial, _fake_score(config))
        configs.append(config)
    return configs


def test_every_method_ships_a_space() -> None:
    assert set(METHODS) == set(EXPECTED_PARAMS)
    for method in METHODS:
        assert default_space_path(method).is_file()


@pytest.mark.parametrize("method", sorted(SHIPPED))
def test_shipped_space_loads(method: str) -> None:
    space = load_space(default_space_path(method))
    fixed, params = SHIPPED[method]
    assert space.method == method
    assert set(space.param_names) == params
    assert space.fixed == fixed
    assert space.bench is None
    assert Path(space.source).name == f"{method}.yaml"
    # optimiser settings are shared by every method (the bench profile's), on every bench
    assert not BASE & set(space.param_names) and not BASE & set(space.fixed)
    assert "standardize" not in space.param_names  # a commented option in the default spaces
    cifar = load_space(default_space_path(method), bench="cifar")
    if method in CIFAR_SHIPPED:
        added, searched = CIFAR_SHIPPED[method]
        assert cifar.fixed == {**fixed, **added}
        assert set(cifar.param_names) == searched
    else:
        assert cifar.fixed == space.fixed and cifar.params == space.params
    if method == "ckd":  # SGD at the profile's lr: the per-logit mean error, a margin to match
        assert {p.name: p.high for p in cifar.params}["margin"] == 0.1
    if method == "dkd":  # the paper's CIFAR-100 beta (8) is the range's top
        assert {p.name: p.high for p in cifar.params}["beta"] == 8.0


@pytest.mark.parametrize("method", sorted(EXPECTED_PARAMS))
def test_wide_space_loads(method: str) -> None:
    space = load_space(default_space_path(method, WIDE))
    assert space.method == method
    assert set(space.param_names) == EXPECTED_PARAMS[method]
    assert space.fixed == {}


@pytest.mark.parametrize("method", sorted(EXPECTED_PARAMS))
def test_cifar_override_replaces_lr_range_in_place(method: str) -> None:
    base = load_space(default_space_path(method, WIDE))
    cifar = load_space(default_space_path(method, WIDE), bench="cifar")
    assert cifar.bench == "cifar"
    # replaced in place, order kept (ckd: its mse_reduction becomes fixed, see ckd.yaml)
    assert cifar.param_names == tuple(n for n in base.param_names if n not in cifar.fixed)
    lr = {p.name: p for p in cifar.params}["lr"]
    assert lr.low is not None and lr.low >= 1e-3
    extra = {"mse_reduction": "mean"} if method == "ckd" else {}
    assert cifar.fixed == {"optimizer": "sgd", **extra}
    assert cifar.constants() == {"method": method, "optimizer": "sgd", **extra}
    # a bench without an entry gets the base space
    assert load_space(default_space_path(method, WIDE), bench="glue/sst2") == base


@pytest.mark.parametrize("method", sorted(EXPECTED_PARAMS))
def test_tpe_samples_are_valid_configs_with_exact_conditionals(method: str) -> None:
    space = load_space(default_space_path(method, WIDE))
    configs = _tpe_configs(space, seed=0)
    for config in configs:
        built = TrainConfig.from_flat(config)
        assert built.method == method
        for name in space.param_names:
            if name in CONDITIONS:
                parent, values = CONDITIONS[name]
                assert (name in config) == (config.get(parent) in values), (name, config)
            else:
                assert name in config, (name, config)
        assert set(config) <= set(space.param_names) | {"method"}
    if method == "ckd":  # 30 trials visit every psi shape, so every conditional shows up
        seen = {name for config in configs for name in config}
        assert seen == EXPECTED_PARAMS["ckd"] | {"method"}


@pytest.mark.parametrize("method", ["kd", "ckd"])
def test_same_seed_same_sequence(method: str) -> None:
    space = load_space(default_space_path(method, WIDE))
    first, again = _tpe_configs(space, seed=3, n=15), _tpe_configs(space, seed=3, n=15)
    assert first == again
    assert _tpe_configs(space, seed=4, n=15) != first


def test_define_by_run_returns_only_constants() -> None:
    space = space_from_dict(
        {
            "method": "ckd",
            "fixed": {"mse_reduction": "mean", "psi_shape": "sigmoid"},
            "params": {
                "lr": {"type": "loguniform", "low": 1.0e-5, "high": 3.0e-4},
                "psi_params.steepness": {"type": "uniform", "low": 2.0, "high": 20.0},
            },
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    trial = study.ask()
    constants = space.define_by_run(trial)
    assert constants == {"method": "ckd", "mse_reduction": "mean", "psi_shape": "sigmoid"}
    assert set(trial.params) == {"lr", "psi_params.steepness"}
    config = {**trial.params, **constants}
    steepness = trial.params["psi_params.steepness"]
    assert TrainConfig.from_flat(config).params.psi_params == {"steepness": steepness}


def test_fixed_trial_replays_a_config() -> None:
    space = load_space(default_space_path("ckd", WIDE))
    wanted = {
        "lr": 1e-4, "weight_decay": 0.01, "batch_size": 32, "t_max": 5, "margin": 0.5,
        "mse_reduction": "sum", "standardize": True, "psi_end_fraction": 0.5, "psi_shape": "step",
        "psi_params.n_steps": 3, "temperature_path": "steps", "anneal_fraction": 0.6,
    }  # fmt: skip
    assert space.suggest_config(optuna.trial.FixedTrial(wanted)) == {**wanted, "method": "ckd"}


@pytest.mark.parametrize("method", sorted(EXPECTED_PARAMS))
def test_sample_random_is_seeded_and_valid(method: str) -> None:
    space = load_space(default_space_path(method, WIDE))
    a = [space.sample_random(random.Random(7)) for _ in range(3)]
    b = [space.sample_random(random.Random(7)) for _ in range(3)]
    assert a == b
    rng = random.Random(1)
    for _ in range(50):
        TrainConfig.from_flat(space.sample_random(rng))


def test_space_pickles_for_ray() -> None:
    space = load_space(default_space_path("ckd", WIDE), bench="cifar")
    assert pickle.loads(pickle.dumps(space)) == space
    assert pickle.loads(pickle.dumps(space.define_by_run)).__self__ == space


def test_ray_optuna_search_suggests_valid_configs() -> None:
    from ray.tune.search.optuna import OptunaSearch

    space = load_space(default_space_path("ckd", WIDE))
    searcher = OptunaSearch(
        space=space.define_by_run,
        metric="score",
        mode="max",
        sampler=optuna.samplers.TPESampler(seed=0),
    )
    configs = []
    for i in range(12):
        config = searcher.suggest(f"t{i}")
        assert config is not None
        assert "psi_params" not in config  # dotted keys stay flat (Ray unflattens on "/")
        built = TrainConfig.from_flat(config)
        assert built.method == "ckd"
        searcher.on_trial_complete(f"t{i}", {"score": _fake_score(config)})
        configs.append(config)
    assert len({c["lr"] for c in configs}) == len(configs)


def test_default_space_path(tmp_path: Path) -> None:
    assert default_space_path("kd").parent.name == "search_spaces"
    assert default_space_path("kd", tmp_path) == tmp_path / "kd.yaml"
    with pytest.raises(UserInputError, match="unknown method 'bogus'"):
        default_space_path("bogus")


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"nope\.yaml: cannot read"):
        load_space(tmp_path / "nope.yaml")


def test_bench_override_merge_rules(tmp_path: Path) -> None:
    path = tmp_path / "kd.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            method: kd
            fixed: {temperature: 4.0}
            params:
              lr: {type: loguniform, low: 1.0e-5, high: 3.0e-4}
              alpha: {type: uniform, low: 0.1, high: 0.9}
              batch_size: {type: categorical, choices: [16, 32]}
            bench_overrides:
              other:
                fixed: {alpha: 0.5, temperature: null}
                params:
                  batch_size: null
                  temperature: {type: uniform, low: 1.0, high: 10.0}
                  epochs: {type: int, low: 10, high: 40, step: 10}
            """
        )
    )
    base = load_space(path)
    assert base.param_names == ("lr", "alpha", "batch_size")
    other = load_space(path, bench="other")
    assert other.param_names == ("lr", "temperature", "epochs")
    assert other.fixed == {"alpha": 0.5}


def test_true_false_fields_take_true_false_choices() -> None:
    fixed = space_from_dict({"method": "kd", "fixed": {"group_by_length": False}, "params": {}})
    assert fixed.fixed == {"group_by_length": False}
    searched = space_from_dict(
        {
            "method": "kd",
            "params": {
                "lr": {"type": "loguniform", "low": 1.0e-5, "high": 3.0e-4},
                "batch_size": {"type": "categorical", "choices": [16, 32]},
                "group_by_length": {"type": "categorical", "choices": [False, True]},
            },
        }
    )
    configs = _tpe_configs(searched, seed=0, n=12)
    assert {c["group_by_length"] for c in configs} == {False, True}
    assert all(type(c["group_by_length"]) is bool for c in configs)
    assert {TrainConfig.from_flat(c).group_by_length for c in configs} == {False, True}


def _yaml(method: str, *params: str, fixed: str | None = None, tail: str = "") -> str:
    """A space file: ``method``, optional flow-style ``fixed``, one line per param, ``tail``."""
    lines = [f"method: {method}"]
    if fixed is not None:
        lines.append(f"fixed: {fixed}")
    lines.append("params:")
    lines += [f"  {line}" for line in params]
    return "\n".join(lines) + "\n" + tail


LR = "lr: {type: loguniform, low: 1.0e-5, high: 3.0e-4}"
PSI = "psi_shape: {type: categorical, choices: [linear, exponential]}"
RATE = "psi_params.rate: {type: uniform, low: 1.0, high: 2.0"  # close with "}" or ", when: ...}"
SIGMOID = "psi_shape: {type: categorical, choices: [sigmoid]}"
STEP = "psi_shape: {type: categorical, choices: [step]}"
CIFAR = "bench_overrides:\n  cifar10:\n"


def case(name: str, body: str, *expected: str, stem: str = "kd") -> object:
    """One broken file: its body, the substrings its one-line error must contain."""
    return pytest.param(stem, body, expected, id=name)


BROKEN = [
    # YAML syntax and shape of the file
    case("malformed", "method: kd\nparams:\n  lr: {type: uniform, low: [1,\n", "invalid YAML"),
    case("bad-indent", "method: kd\nparams:\n  lr: 1\n    bad: 2\n", "kd.yaml:4:", "invalid YAML"),
    case("duplicate-key", _yaml("kd", LR, LR), "kd.yaml:4:", "duplicate key 'lr'"),
    case("empty-file", "", "top level", "empty"),
    case("top-level-list", "- method: kd\n", "top level", "expected a mapping"),
    case(
        "unknown-top-key", _yaml("kd", LR).replace("params", "parms"), "parms", "unknown top-level"
    ),
    case("missing-params", "method: kd\n", "params", "missing"),
    case("missing-method", f"params:\n  {LR}\n", "method", "missing"),
    case("unknown-method", _yaml("bogus", LR), "method", "unknown method 'bogus'", stem="bogus"),
    case("method-vs-stem", _yaml("ckd", LR), "method", "does not match the file name"),
    case("params-not-mapping", "method: kd\nparams: [lr]\n", "params", "expected a mapping"),
    # parameter specs
    case("spec-not-mapping", _yaml("kd", "lr: 0.001"), "params.lr", "expected a mapping"),
    case("missing-type", _yaml("kd", "lr: {low: 0.1, high: 0.2}"), "params.lr", "missing 'type'"),
    case(
        "unknown-type",
        _yaml("kd", "lr: {type: normal, low: 0.1, high: 0.2}"),
        "params.lr",
        "unknown type 'normal'",
    ),
    case(
        "unknown-spec-key",
        _yaml("kd", "lr: {type: uniform, low: 0.1, hgih: 0.2}"),
        "params.lr.hgih",
        "unknown key",
    ),
    case("missing-high", _yaml("kd", "lr: {type: uniform, low: 0.1}"), "params.lr.high", "missing"),
    case(
        "low-above-high",
        _yaml("kd", "lr: {type: uniform, low: 0.2, high: 0.1}"),
        "params.lr",
        "low (0.2) must be <= high (0.1)",
    ),
    case(
        "loguniform-zero",
        _yaml("kd", "weight_decay: {type: loguniform, low: 0.0, high: 0.1}"),
        "params.weight_decay.low",
        "must be > 0",
    ),
    case(
        "string-number",
        _yaml("kd", "lr: {type: loguniform, low: 1e-5, high: 3.0e-4}"),
        "params.lr.low",
        "string '1e-5'",
        "write 1.0e-5",
    ),
    case(
        "word-number",
        _yaml("kd", "lr: {type: uniform, low: small, high: 0.1}"),
        "params.lr.low",
        "expected a number",
    ),
    case(
        "infinite",
        _yaml("kd", "temperature: {type: uniform, low: 1.0, high: .inf}"),
        "params.temperature.high",
        "finite",
    ),
    case(
        "int-float-bound",
        _yaml("kd", "epochs: {type: int, low: 1.5, high: 4}"),
        "params.epochs.low",
        "integer",
    ),
    case(
        "int-step-misfit",
        _yaml("kd", "epochs: {type: int, low: 1, high: 4, step: 2}"),
        "params.epochs.step",
        "multiple",
    ),
    case(
        "int-log-step",
        _yaml("kd", "epochs: {type: int, low: 1, high: 5, step: 2, log: true}"),
        "params.epochs.step",
        "log",
    ),
    case(
        "empty-choices",
        _yaml("kd", "batch_size: {type: categorical, choices: []}"),
        "params.batch_size.choices",
        "empty",
    ),
    case(
        "choices-not-list",
        _yaml("kd", "batch_size: {type: categorical, choices: 16}"),
        "params.batch_size.choices",
        "list",
    ),
    case(
        "duplicate-choices",
        _yaml("kd", "batch_size: {type: categorical, choices: [16, 16]}"),
        "params.batch_size.choices",
        "duplicate",
    ),
    # names
    case(
        "unknown-field",
        _yaml("kd", "learning_rate: {type: uniform, low: 0.1, high: 0.2}"),
        "params.learning_rate",
        "neither a shared setting nor a parameter of method 'kd'",
    ),
    case(
        "method-as-param",
        _yaml("kd", "method: {type: categorical, choices: [kd, ckd]}"),
        "params.method",
        "top-level",
    ),
    case(
        "dot-on-scalar",
        _yaml("kd", "lr.x: {type: uniform, low: 0.1, high: 0.2}"),
        "params.lr.x",
        "not a dict field",
    ),
    case(
        "dict-without-entry",
        _yaml("ckd", "psi_params: {type: uniform, low: 0.1, high: 0.2}"),
        "params.psi_params",
        "dict field",
        stem="ckd",
    ),
    case(
        "unknown-shape-param",
        _yaml("ckd", "psi_params.speed: {type: uniform, low: 0.1, high: 0.2}"),
        "params.psi_params.speed",
        "not a parameter of any schedule shape",
        stem="ckd",
    ),
    # schedule parameters must fit every shape they can meet
    case(
        "shape-param-default-shape",
        _yaml("ckd", RATE + "}"),
        "params.psi_params.rate",
        "psi_shape 'linear'",
        "when",
        stem="ckd",
    ),
    case(
        "shape-param-no-when",
        _yaml("ckd", PSI, RATE + "}"),
        "params.psi_params.rate",
        "psi_shape 'linear'",
        stem="ckd",
    ),
    case(
        "shape-param-wrong-when",
        _yaml("ckd", PSI, RATE + ", when: {psi_shape: [linear, exponential]}}"),
        "params.psi_params.rate",
        "'linear'",
        stem="ckd",
    ),
    case(
        "temperature-steps-param",
        _yaml(
            "ckd",
            "temperature_path: {type: categorical, choices: [steps, exponential]}",
            "temperature_params.rate: {type: uniform, low: 1.0, high: 2.0,"
            " when: {temperature_path: [steps, exponential]}}",
        ),
        "params.temperature_params.rate",
        "'steps' takes no parameters",
        stem="ckd",
    ),
    case(
        "shape-param-range",
        _yaml(
            "ckd",
            SIGMOID,
            "psi_params.midpoint: {type: uniform, low: 0.5, high: 1.5, when: {psi_shape: sigmoid}}",
        ),
        "params.psi_params.midpoint",
        "1.5",
        stem="ckd",
    ),
    case(
        "n-steps-float",
        _yaml(
            "ckd",
            STEP,
            "psi_params.n_steps: {type: uniform, low: 1.0, high: 4.0, when: {psi_shape: step}}",
        ),
        "params.psi_params.n_steps",
        "integer",
        stem="ckd",
    ),
    # conditions
    case(
        "when-unknown",
        _yaml("ckd", LR, "margin: {type: uniform, low: 0.0, high: 1.0, when: {shape: linear}}"),
        "params.margin.when.shape",
        "not defined earlier",
        stem="ckd",
    ),
    case(
        "when-later",
        _yaml("ckd", RATE + ", when: {psi_shape: exponential}}", PSI),
        "params.psi_params.rate.when.psi_shape",
        "not defined earlier",
        stem="ckd",
    ),
    case(
        "when-not-categorical",
        _yaml("ckd", LR, "margin: {type: uniform, low: 0.0, high: 1.0, when: {lr: 0.001}}"),
        "params.margin.when.lr",
        "categorical",
        stem="ckd",
    ),
    case(
        "when-bad-value",
        _yaml("ckd", PSI, RATE + ", when: {psi_shape: exponentail}}"),
        "params.psi_params.rate.when.psi_shape",
        "'exponentail' is not one of",
        stem="ckd",
    ),
    case(
        "when-not-mapping",
        _yaml("ckd", PSI, "margin: {type: uniform, low: 0.0, high: 1.0, when: psi_shape}"),
        "params.margin.when",
        "expected a mapping",
        stem="ckd",
    ),
    # values the config rejects
    case(
        "unknown-psi-shape",
        _yaml("ckd", "psi_shape: {type: categorical, choices: [linear, quadratic]}"),
        "params.psi_shape.choices",
        "'quadratic'",
        stem="ckd",
    ),
    case(
        "unknown-temperature-path",
        _yaml("ckd", "temperature_path: {type: categorical, choices: [steps, zigzag]}"),
        "params.temperature_path.choices",
        "'zigzag'",
        stem="ckd",
    ),
    case(
        "str-field-numbers",
        _yaml("ckd", "mse_reduction: {type: categorical, choices: [1, 2]}"),
        "params.mse_reduction.choices",
        "strings",
        stem="ckd",
    ),
    case(
        "str-field-uniform",
        _yaml("kd", "optimizer: {type: uniform, low: 0.0, high: 1.0}"),
        "params.optimizer",
        "categorical",
    ),
    case(
        "int-field-uniform",
        _yaml("kd", "batch_size: {type: uniform, low: 8.0, high: 64.0}"),
        "params.batch_size",
        "integer field",
    ),
    case(
        "int-field-float-choice",
        _yaml("kd", "batch_size: {type: categorical, choices: [16, 32.5]}"),
        "params.batch_size.choices",
        "integers",
    ),
    case(
        "bool-field-uniform",
        _yaml("kd", "group_by_length: {type: uniform, low: 0.0, high: 1.0}"),
        "params.group_by_length",
        "true or false; use type: categorical",
    ),
    case(
        "bool-field-number-choices",
        _yaml("kd", "group_by_length: {type: categorical, choices: [0, 1]}"),
        "params.group_by_length.choices",
        "takes true or false, got int 0",
    ),
    case(
        "bool-field-string-choices",
        _yaml("kd", "group_by_length: {type: categorical, choices: ['yes', 'no']}"),
        "params.group_by_length.choices",
        "takes true or false, got string 'yes'",
    ),
    case(
        "number-field-bool-choice",
        _yaml("kd", "batch_size: {type: categorical, choices: [16, true]}"),
        "params.batch_size.choices",
        "takes no true/false, got bool True",
    ),
    case(
        "choice-not-scalar",
        _yaml("kd", "batch_size: {type: categorical, choices: [16, [32]]}"),
        "params.batch_size.choices",
        "strings, numbers or true/false",
    ),
    case(
        "fixed-bool-field-number",
        _yaml("kd", LR, fixed="{group_by_length: 1}"),
        "fixed.group_by_length",
        "expected true or false, got int 1",
    ),
    case(
        "number-field-string-choice",
        _yaml("kd", "lr: {type: categorical, choices: [0.001, fast]}"),
        "params.lr.choices",
        "numbers",
    ),
    case(
        "range-rejected",
        _yaml("kd", "alpha: {type: uniform, low: 0.5, high: 1.5}"),
        "params.alpha",
        "alpha: must be in [0, 1]",
    ),
    case(
        "renamed-key",
        _yaml("kd", "kd_alpha: {type: uniform, low: 0.1, high: 0.9}"),
        "params.kd_alpha",
        "renamed to 'alpha'",
        "search_spaces/README.md",
    ),
    case(
        "other-methods-param",
        _yaml("kd", "margin: {type: uniform, low: 0.0, high: 1.0}"),
        "params.margin",
        "its parameters: alpha, temperature",
    ),
    case(
        "choice-rejected",
        _yaml("kd", "optimizer: {type: categorical, choices: [adamw, lamb]}"),
        "params.optimizer",
        "'lamb'",
    ),
    # fixed
    case("fixed-not-mapping", _yaml("kd", LR, fixed="[1]"), "fixed", "expected a mapping"),
    case(
        "fixed-unknown-field",
        _yaml("kd", LR, fixed="{temp: 3}"),
        "fixed.temp",
        "neither a shared setting nor a parameter of method 'kd'",
    ),
    case(
        "fixed-wrong-type",
        _yaml("kd", LR, fixed="{epochs: three}"),
        "fixed.epochs",
        "expected an integer",
    ),
    case("fixed-rejected", _yaml("kd", LR, fixed="{warmup_ratio: 1.5}"), "fixed", "warmup_ratio"),
    case(
        "fixed-and-param",
        _yaml("kd", LR, fixed="{lr: 0.001}"),
        "params.lr",
        "also set in 'fixed'",
    ),
    case(
        "fixed-shape-param-mismatch",
        _yaml("ckd", LR, fixed="{psi_params.rate: 2.0}"),
        "fixed",
        "psi_params",
        stem="ckd",
    ),
    # bench overrides (every variant is checked, whichever bench is loaded)
    case(
        "override-bad-spec",
        _yaml("kd", LR, tail=CIFAR + "    params: {lr: {type: loguniform, low: -1.0, high: 0.1}}"),
        "bench_overrides.cifar10.params.lr.low",
        "> 0",
    ),
    case(
        "override-unknown-key",
        _yaml("kd", LR, tail=CIFAR + "    parms: {}\n"),
        "bench_overrides.cifar10.parms",
        "unknown key",
    ),
    case(
        "override-bad-fixed",
        _yaml("kd", LR, tail=CIFAR + "    fixed: {optimizer: adam}\n"),
        "fixed (with bench_overrides.cifar10)",
        "optimizer",
    ),
    case(
        "override-fixed-and-param",
        _yaml("kd", LR, tail=CIFAR + f"    fixed: {{lr: 0.1}}\n    params: {{{LR}}}\n"),
        "bench_overrides.cifar10.fixed.lr",
        "also set",
    ),
    case(
        "override-breaks-when",
        _yaml("ckd", PSI, RATE + ", when: {psi_shape: exponential}}", tail=CIFAR)
        + "    params: {psi_shape: null}\n",
        "psi_params.rate.when.psi_shape (with bench_overrides.cifar10)",
        "not defined earlier",
        stem="ckd",
    ),
]


@pytest.mark.parametrize(("stem", "body", "expected"), BROKEN)
def test_broken_space_is_rejected_with_one_line(
    tmp_path: Path, stem: str, body: str, expected: tuple[str, ...]
) -> None:
    path = tmp_path / f"{stem}.yaml"
    path.write_text(body)
    with pytest.raises(UserInputError) as info:
        load_space(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path)), message
    for part in expected:
        assert part in message, message


@pytest.mark.parametrize("path", sorted(SPACE_DIR.rglob("*.yaml")), ids=lambda p: p.stem)
def test_every_space_points_to_the_format_once(path: Path) -> None:
    text = path.read_text()
    assert text.count("search_spaces/README.md") == 1
    assert "type: uniform|loguniform" not in text  # the format lives in the README only
    assert (SPACE_DIR / "README.md").is_file()
