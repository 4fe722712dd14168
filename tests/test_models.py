"""Model builders: resolving names, truncated students, CIFAR networks by name, save/load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ckd_tune.errors import UserInputError
from ckd_tune.models import (
    BUNDLED_ENCODER,
    TextModelSpec,
    VisionModelSpec,
    load_vision_model,
    resolve_model,
    save_vision_model,
)


def test_the_bundled_encoder_resolves_to_its_package_directory() -> None:
    path = Path(resolve_model(BUNDLED_ENCODER))
    assert (path / "config.json").is_file()


def test_a_hub_id_passes_through_and_bad_paths_are_refused(tmp_path: Path) -> None:
    assert resolve_model("roberta-large") == "roberta-large"
    with pytest.raises(UserInputError, match="does not exist"):
        resolve_model(str(tmp_path / "missing" / "model"))
    with pytest.raises(UserInputError, match=r"no config\.json"):
        resolve_model(str(tmp_path))


def test_a_student_keeps_the_first_layers_and_a_seeded_head() -> None:
    spec = TextModelSpec(BUNDLED_ENCODER, num_labels=3, num_layers=2)
    a, b, c = spec.build(seed=1), spec.build(seed=1), spec.build(seed=2)
    assert a.config.num_hidden_layers == 2
    assert a.config.num_labels == 3
    head = next(n for n, _ in a.named_parameters() if "classifier" in n and n.endswith("weight"))
    weights = {m: dict(m.named_parameters())[head] for m in (a, b, c)}
    assert torch.equal(weights[a], weights[b])
    assert not torch.equal(weights[a], weights[c])
    with torch.no_grad():
        out = a(input_ids=torch.tensor([[101, 2023, 102]]), attention_mask=torch.ones(1, 3))
    assert out.logits.shape == (1, 3)


def test_a_relative_model_path_still_builds_from_another_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ray trial builds its student in a working directory of its own, on any node."""
    TextModelSpec(BUNDLED_ENCODER, num_labels=2, num_layers=1).build().save_pretrained(
        tmp_path / "student"
    )
    monkeypatch.chdir(tmp_path)
    spec = TextModelSpec("student", num_labels=2)
    assert spec.name_or_path == str(tmp_path.resolve() / "student")
    (tmp_path / "trial").mkdir()
    monkeypatch.chdir(tmp_path / "trial")
    assert spec.build().config.num_hidden_layers == 1
    assert spec.fingerprint() == TextModelSpec(str(tmp_path / "student"), 2).fingerprint()


def test_too_many_layers_is_a_clear_error() -> None:
    with pytest.raises(UserInputError, match=r"student layers: must be in \[1, 6\]"):
        TextModelSpec(BUNDLED_ENCODER, num_labels=2, num_layers=7).build()


def test_text_fingerprint_names_the_weights_labels_and_layers() -> None:
    base = TextModelSpec(BUNDLED_ENCODER, num_labels=2, num_layers=2).fingerprint()
    assert base == TextModelSpec(BUNDLED_ENCODER, num_labels=2, num_layers=2).fingerprint()
    assert base != TextModelSpec(BUNDLED_ENCODER, num_labels=3, num_layers=2).fingerprint()
    assert base != TextModelSpec(BUNDLED_ENCODER, num_labels=2, num_layers=3).fingerprint()
    assert base != TextModelSpec("roberta-large", num_labels=2, num_layers=2).fingerprint()


@pytest.mark.parametrize(("arch", "classes"), [("resnet8", 10), ("wrn-16-2", 100)])
def test_vision_networks_by_name(arch: str, classes: int) -> None:
    model = VisionModelSpec(arch, classes).build(seed=0)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, classes)


@pytest.mark.parametrize("arch", ["resnet9", "vgg16", "wrn-16", "resnetX"])
def test_unknown_vision_networks_are_refused_early(arch: str) -> None:
    with pytest.raises(UserInputError, match=arch):
        VisionModelSpec(arch, 10)


def test_a_saved_vision_network_loads_back_identically(tmp_path: Path) -> None:
    spec = VisionModelSpec("resnet8", 10)
    model = spec.build(seed=3)
    save_vision_model(model, spec, tmp_path / "teacher")
    loaded, loaded_spec = load_vision_model(tmp_path / "teacher")
    assert loaded_spec == spec
    for (name, a), (_, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    with pytest.raises(UserInputError, match=r"spec\.json and model\.pt"):
        load_vision_model(tmp_path)
