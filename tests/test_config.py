"""TrainConfig: shared settings + the method's parameters, the flat form, replace, progress."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckd_tune.config import RENAMED, SHARED_FIELDS, TrainConfig
from ckd_tune.errors import UserInputError
from ckd_tune.methods import METHODS
from ckd_tune.methods.ckd import CKDParams
from ckd_tune.methods.kd import KDParams


def test_defaults_are_valid_and_hold_the_methods_defaults() -> None:
    config = TrainConfig()
    assert config.method == "kd"
    assert config.params == KDParams()
    ckd = TrainConfig(method="ckd")
    assert ckd.params == CKDParams()
    assert ckd.params.psi_params == {}


def test_dict_defaults_are_not_shared() -> None:
    a, b = TrainConfig(method="ckd"), TrainConfig(method="ckd")
    a.params.psi_params["value"] = 0.5
    assert b.params.psi_params == {}


def test_parameters_of_another_method_are_refused() -> None:
    with pytest.raises(UserInputError, match="CKDParams"):
        TrainConfig(method="kd", params=CKDParams())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": 0.0}, "lr"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"batch_size": 0}, "batch_size"),
        ({"epochs": 0}, "epochs"),
        ({"warmup_ratio": 1.0}, "warmup_ratio"),
        ({"optimizer": "adam"}, "optimizer"),
        ({"lr_schedule": "cosine"}, "lr_schedule"),
        ({"num_threads": 0}, "num_threads"),
        ({"group_by_length": "yes"}, "group_by_length"),
        ({"schedule_unit": "batch"}, "schedule_unit"),
        ({"method": "bogus"}, "method"),
    ],
)
def test_bad_settings_raise_naming_the_field(kwargs: dict, match: str) -> None:
    with pytest.raises(UserInputError, match=match):
        TrainConfig(**kwargs)


def test_no_method_parameter_shadows_a_shared_setting() -> None:
    for method in METHODS.values():
        own = {f.name for f in dataclasses.fields(method.params_type)}
        assert not own & SHARED_FIELDS, method.name


# --- the flat form ------------------------------------------------------------------------------

FLAT = {
    "method": "ckd",
    "lr": 3e-4,
    "psi_shape": "sigmoid",
    "psi_params.steepness": 5.0,
    "psi_params.midpoint": 0.3,
    "t_max": 4.0,
    "margin": 0.25,
}


def test_from_flat_splits_settings_and_parameters() -> None:
    config = TrainConfig.from_flat(FLAT)
    assert (config.method, config.lr) == ("ckd", 3e-4)
    assert isinstance(config.params, CKDParams)
    assert config.params.psi_params == {"steepness": 5.0, "midpoint": 0.3}
    assert (config.params.t_max, config.params.margin) == (4.0, 0.25)
    assert config.params.anneal_fraction == CKDParams().anneal_fraction  # defaults otherwise
    assert config.epochs == TrainConfig().epochs


def test_to_flat_puts_settings_then_parameters_with_dotted_dicts() -> None:
    flat = TrainConfig.from_flat(FLAT).to_flat()
    assert flat["psi_params.steepness"] == 5.0
    assert flat["psi_params.midpoint"] == 0.3
    assert "psi_params" not in flat and "params" not in flat
    assert "temperature_params" not in flat  # an empty dict has no entries
    shared = [k for k in flat if k in SHARED_FIELDS]
    assert list(flat)[: len(shared)] == shared
    assert set(shared) == SHARED_FIELDS
    assert "alpha" not in flat  # only the chosen method's parameters


@pytest.mark.parametrize("name", sorted(METHODS))
def test_round_trip_of_every_method(name: str) -> None:
    config = TrainConfig(method=name, lr=1e-3, epochs=5)
    assert TrainConfig.from_flat(config.to_flat()) == config


@settings(max_examples=40, deadline=None)
@given(
    st.floats(1.0, 50.0),
    st.floats(0.0, 5.0),
    st.sampled_from(
        [("linear", {}), ("exponential", {"rate": -3.0}), ("sigmoid", {"steepness": 8.0})]
    ),
    st.sampled_from(["steps", "linear", "cosine"]),
)
def test_round_trip_property(t_max, margin, psi, path) -> None:
    shape, params = psi
    config = TrainConfig(
        method="ckd",
        params=CKDParams(
            t_max=t_max, margin=margin, psi_shape=shape, psi_params=params, temperature_path=path
        ),
    )
    flat = config.to_flat()
    assert all(f"psi_params.{k}" in flat for k in params)
    assert TrainConfig.from_flat(flat) == config


@pytest.mark.parametrize("key", ["foo", "foo.bar", "psi_param.steepness", "learning_rate"])
def test_from_flat_unknown_key_names_the_methods_parameters(key: str) -> None:
    with pytest.raises(UserInputError, match="its parameters: alpha, standardize, temperature"):
        TrainConfig.from_flat({"method": "kd", key: 1.0})


def test_another_methods_parameter_is_refused_not_ignored() -> None:
    with pytest.raises(UserInputError, match=r"margin: .*method 'kd'"):
        TrainConfig.from_flat({"method": "kd", "margin": 0.5})


@pytest.mark.parametrize("old", sorted(RENAMED))
def test_renamed_keys_are_refused_with_their_new_name(old: str) -> None:
    owner, new = RENAMED[old]
    with pytest.raises(UserInputError, match=f"{old}: renamed to '{new}'.*'{owner}'"):
        TrainConfig.from_flat({"method": owner, old: 0.5})


@pytest.mark.parametrize("key", ["lr.x", "method.name", "t_max.x"])
def test_from_flat_dotted_key_on_a_plain_field(key: str) -> None:
    with pytest.raises(UserInputError, match=key.split(".")[0]):
        TrainConfig.from_flat({"method": "ckd", key: 1.0})


def test_from_flat_validates() -> None:
    with pytest.raises(UserInputError, match="t_max"):
        TrainConfig.from_flat({"method": "ckd", "t_max": 0.5})
    with pytest.raises(UserInputError, match=r"psi_params\.steepness"):
        TrainConfig.from_flat(
            {"method": "ckd", "psi_shape": "sigmoid", "psi_params.steepness": -1.0}
        )
    with pytest.raises(UserInputError, match="psi_params"):
        TrainConfig.from_flat({"method": "ckd", "psi_params.rate": 2.0})  # linear takes none
    with pytest.raises(UserInputError, match="lr"):
        TrainConfig.from_flat({"method": "ckd", "lr": -1.0})


def test_from_flat_merges_whole_dict_and_dotted_keys_without_mutating_input() -> None:
    whole = {"steepness": 5.0}
    for flat in (
        {"method": "ckd", "psi_shape": "sigmoid", "psi_params": whole, "psi_params.midpoint": 0.2},
        {"method": "ckd", "psi_shape": "sigmoid", "psi_params.midpoint": 0.2, "psi_params": whole},
    ):
        config = TrainConfig.from_flat(flat)
        assert config.params.psi_params == {"steepness": 5.0, "midpoint": 0.2}
        assert whole == {"steepness": 5.0}
        assert config.params.psi_params is not whole


def test_from_flat_whole_dict_field_must_be_a_mapping() -> None:
    with pytest.raises(UserInputError, match="psi_params"):
        TrainConfig.from_flat({"method": "ckd", "psi_params": 3.0})


# --- replace ------------------------------------------------------------------------------------


def test_replace_returns_a_validated_copy() -> None:
    config = TrainConfig(method="ckd")
    changed = config.replace(t_max=4.0, psi_shape="cosine", lr=1e-3)
    assert (changed.params.t_max, changed.params.psi_shape) == (4.0, "cosine")
    assert (changed.method, changed.lr) == ("ckd", 1e-3)
    assert (config.params.t_max, config.params.psi_shape, config.lr) == (10.0, "linear", 5e-5)
    with pytest.raises(UserInputError, match="t_max"):
        config.replace(t_max=0.5)
    with pytest.raises(UserInputError, match="psi_params"):
        # the shape changes under parameters it does not take
        TrainConfig.from_flat(
            {"method": "ckd", "psi_shape": "sigmoid", "psi_params.steepness": 3.0}
        ).replace(psi_shape="linear")


def test_replace_with_another_method_starts_from_its_defaults() -> None:
    config = TrainConfig(method="kd", lr=1e-3, epochs=7).replace(alpha=0.9)
    ckd = config.replace(method="ckd", margin=0.2)
    assert (ckd.lr, ckd.epochs) == (1e-3, 7)  # the shared settings stay
    assert ckd.params == CKDParams(margin=0.2)
    assert config.replace(method="none").params == METHODS["none"].params_type()


# --- progress -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "unit, done, expected",
    [("epoch", 0.0, 0.0), ("epoch", 0.24, 0.0), ("epoch", 0.25, 0.25), ("epoch", 0.99, 0.75),
     ("epoch", 1.0, 0.75), ("step", 0.3, 0.3)],
)  # fmt: skip
def test_progress_at_epoch_starts_or_per_step(unit: str, done: float, expected: float) -> None:
    config = TrainConfig(epochs=4, schedule_unit=unit)
    assert config.progress(done) == pytest.approx(expected)


def test_build_method_gets_the_parameters_and_epochs() -> None:
    config = TrainConfig.from_flat({"method": "annealing_kd", "epochs": 6, "anneal_fraction": 0.5})
    method = config.build_method()
    assert method.params is config.params
    assert method.phase2_epoch() == 3
