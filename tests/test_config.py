"""TrainConfig: validation naming the bad field, flat (dotted-key) round trip, replace."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckd_tune.config import TrainConfig
from ckd_tune.errors import UserInputError
from ckd_tune.schedules import SCHEDULES


def test_defaults_are_valid() -> None:
    config = TrainConfig()
    assert config.method == "kd"
    assert config.t_max == 10.0
    assert config.temperature_path == "steps"
    assert config.psi_params == {}
    assert config.temperature_params == {}


def test_dict_defaults_are_not_shared() -> None:
    a, b = TrainConfig(), TrainConfig()
    a.psi_params["value"] = 0.5
    assert b.psi_params == {}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"t_max": 0.5}, "t_max"),
        ({"t_max": 0.0}, "t_max"),
        ({"t_max": float("inf")}, "t_max"),
        ({"t_max": float("nan")}, "t_max"),
        ({"margin": -1.0}, "margin"),
        ({"margin": float("inf")}, "margin"),
        ({"margin": float("nan")}, "margin"),
        ({"psi_shape": "bogus"}, "psi_shape"),
        ({"temperature_path": "bogus"}, "temperature_path"),
        ({"psi_shape": "sigmoid", "psi_params": {"steepness": -1}}, r"psi_params\.steepness"),
        ({"psi_shape": "sigmoid", "psi_params": {"midpoint": 2.0}}, r"psi_params\.midpoint"),
        ({"psi_shape": "linear", "psi_params": {"steepness": 5.0}}, "psi_params"),
        ({"psi_shape": "step", "psi_params": {"n_steps": 0}}, r"psi_params\.n_steps"),
        ({"psi_shape": "constant", "psi_params": {"value": 1.5}}, r"psi_params\.value"),
        ({"psi_params": {"rate": 1.0}}, "psi_params"),  # default psi_shape "linear"
        (
            {"temperature_path": "sigmoid", "temperature_params": {"steepness": -1}},
            r"temperature_params\.steepness",
        ),
        (
            {"temperature_path": "cosine", "temperature_params": {"rate": 2.0}},
            "temperature_params",
        ),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"batch_size": 0}, "batch_size"),
        ({"epochs": 0}, "epochs"),
        ({"warmup_ratio": 1.0}, "warmup_ratio"),
        ({"warmup_ratio": -0.1}, "warmup_ratio"),
        ({"optimizer": "adam"}, "optimizer"),
        ({"lr_schedule": "cosine"}, "lr_schedule"),
        ({"num_threads": 0}, "num_threads"),
        ({"group_by_length": "yes"}, "group_by_length"),
        ({"kd_alpha": 1.5}, "kd_alpha"),
        ({"kd_alpha": -0.5}, "kd_alpha"),
        ({"kd_temperature": 0.0}, "kd_temperature"),
        ({"kd_temperature": float("inf")}, "kd_temperature"),
        ({"anneal_fraction": 0.0}, "anneal_fraction"),
        ({"anneal_fraction": 1.5}, "anneal_fraction"),
        ({"psi_end_fraction": 0.0}, "psi_end_fraction"),
        ({"psi_end_fraction": 1.01}, "psi_end_fraction"),
        ({"mse_reduction": "max"}, "mse_reduction"),
    ],
)
def test_bad_values_raise_naming_the_field(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        TrainConfig(**kwargs)
    assert isinstance(info.value, UserInputError)
    # the message starts with the field name, so the CLI's one-line error points at it
    assert str(info.value).startswith(match.replace("\\", ""))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"t_max": 1.0},
        {"margin": 0.0},
        {"anneal_fraction": 1.0, "psi_end_fraction": 1.0},
        {"kd_alpha": 0.0},
        {"kd_alpha": 1.0},
        {"warmup_ratio": 0.0},
        {"optimizer": "sgd", "lr_schedule": "step"},
        {"mse_reduction": "mean"},
        {"psi_shape": "sigmoid", "psi_params": {"steepness": 20.0, "midpoint": 0.3}},
        {"psi_shape": "constant", "psi_params": {"value": 0.5}},
        {"temperature_path": "exponential", "temperature_params": {"rate": -3.0}},
        *({"temperature_path": path} for path in sorted(SCHEDULES)),
    ],
)
def test_boundary_and_valid_values_are_accepted(kwargs: dict) -> None:
    config = TrainConfig(**kwargs)
    for key, value in kwargs.items():
        assert getattr(config, key) == value


# --- flat configs -------------------------------------------------------------------------------

FLAT = {
    "method": "ckd",
    "lr": 3e-5,
    "epochs": 6,
    "psi_shape": "sigmoid",
    "psi_params.steepness": 5.0,
    "psi_params.midpoint": 0.3,
    "temperature_path": "exponential",
    "temperature_params.rate": -2.0,
    "margin": 0.25,
    "mse_reduction": "mean",
}


def test_from_flat_fills_dict_fields_from_dotted_keys() -> None:
    config = TrainConfig.from_flat(FLAT)
    assert config.method == "ckd"
    assert config.epochs == 6
    assert config.psi_params == {"steepness": 5.0, "midpoint": 0.3}
    assert config.temperature_params == {"rate": -2.0}
    assert config.margin == 0.25
    assert config.kd_alpha == TrainConfig().kd_alpha  # untouched fields keep their defaults


def test_to_flat_uses_dotted_keys() -> None:
    flat = TrainConfig.from_flat(FLAT).to_flat()
    assert flat["psi_params.steepness"] == 5.0
    assert flat["psi_params.midpoint"] == 0.3
    assert flat["temperature_params.rate"] == -2.0
    assert "psi_params" not in flat
    assert "temperature_params" not in flat
    assert all(not isinstance(v, dict) for v in flat.values())
    assert {k: flat[k] for k in FLAT} == FLAT
    # every field is present, so a flat config is a complete record of the run
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"psi_params", "temperature_params"}
    assert names <= set(flat)
    json.dumps(flat)  # loggable as-is (MLflow params, Ray Tune results)


def test_round_trip() -> None:
    config = TrainConfig.from_flat(FLAT)
    assert TrainConfig.from_flat(config.to_flat()) == config
    default = TrainConfig()
    assert TrainConfig.from_flat(default.to_flat()) == default


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(["none", "kd", "annealing_kd", "ckd"]),
    st.floats(1.0, 50.0),
    st.floats(0.0, 10.0),
    st.one_of(
        st.just(("linear", {})),
        st.builds(
            lambda k, m: ("sigmoid", {"steepness": k, "midpoint": m}),
            st.floats(1e-3, 100.0),
            st.floats(0.0, 1.0),
        ),
        st.builds(lambda n: ("step", {"n_steps": n}), st.integers(1, 20)),
        st.builds(lambda v: ("constant", {"value": v}), st.floats(0.0, 1.0)),
    ),
    st.sampled_from(["steps", "linear", "cosine"]),
)
def test_round_trip_property(method, t_max, margin, psi, path) -> None:
    shape, params = psi
    config = TrainConfig(
        method=method,
        t_max=t_max,
        margin=margin,
        psi_shape=shape,
        psi_params=params,
        temperature_path=path,
    )
    flat = config.to_flat()
    assert all(f"psi_params.{k}" in flat for k in params)
    assert TrainConfig.from_flat(flat) == config


@pytest.mark.parametrize("key", ["foo", "foo.bar", "psi_param.steepness", "learning_rate"])
def test_from_flat_unknown_key(key: str) -> None:
    with pytest.raises(UserInputError, match="unknown config field"):
        TrainConfig.from_flat({key: 1.0})


@pytest.mark.parametrize("key", ["lr.x", "method.name"])
def test_from_flat_dotted_key_on_a_plain_field(key: str) -> None:
    with pytest.raises(UserInputError, match=key.split(".")[0]):
        TrainConfig.from_flat({key: 1.0})


def test_from_flat_validates() -> None:
    with pytest.raises(UserInputError, match="t_max"):
        TrainConfig.from_flat({"t_max": 0.5})
    with pytest.raises(UserInputError, match=r"psi_params\.steepness"):
        TrainConfig.from_flat({"psi_shape": "sigmoid", "psi_params.steepness": -1.0})
    with pytest.raises(UserInputError, match="psi_params"):
        TrainConfig.from_flat({"psi_params.rate": 2.0})  # linear takes no parameters


def test_from_flat_merges_whole_dict_and_dotted_keys_without_mutating_input() -> None:
    whole = {"steepness": 5.0}
    for flat in (
        {"psi_shape": "sigmoid", "psi_params": whole, "psi_params.midpoint": 0.2},
        {"psi_shape": "sigmoid", "psi_params.midpoint": 0.2, "psi_params": whole},
    ):
        config = TrainConfig.from_flat(flat)
        assert config.psi_params == {"steepness": 5.0, "midpoint": 0.2}
        assert whole == {"steepness": 5.0}
        assert config.psi_params is not whole


def test_from_flat_whole_dict_field_must_be_a_dict() -> None:
    with pytest.raises(UserInputError, match="psi_params"):
        TrainConfig.from_flat({"psi_params": 3.0})


# --- replace ------------------------------------------------------------------------------------


def test_replace_returns_a_validated_copy() -> None:
    config = TrainConfig(method="ckd")
    changed = config.replace(t_max=4.0, psi_shape="cosine")
    assert (changed.t_max, changed.psi_shape, changed.method) == (4.0, "cosine", "ckd")
    assert (config.t_max, config.psi_shape) == (10.0, "linear")
    with pytest.raises(UserInputError, match="t_max"):
        config.replace(t_max=0.5)
    with pytest.raises(UserInputError, match="psi_params"):
        # the shape changes under parameters it does not take
        TrainConfig(psi_shape="sigmoid", psi_params={"steepness": 3.0}).replace(psi_shape="linear")
