"""Saving and loading the best students (:mod:`ckd_tune.report.students`)."""

from __future__ import annotations

import json

import torch

from ckd_tune.report import (
    load_student,
    save_student,
)

# ------------------------------------------------------------------ saving other students


def test_cifar_resnet_and_wrn_round_trip(tmp_path):
    from ckd_tune.resnet import cifar_resnet, wide_resnet

    x = torch.randn(2, 3, 32, 32)
    for name, model in {"resnet": cifar_resnet(8, 10), "wrn": wide_resnet(10, 1, 5, 0.1)}.items():
        save_student(model.eval(), tmp_path / name, info={"seed": 3})
        loaded = load_student(tmp_path / name)
        assert type(loaded) is type(model)
        assert torch.allclose(loaded(pixel_values=x), model(pixel_values=x))
        assert "rebuild_error" not in json.loads((tmp_path / name / "student.json").read_text())


def test_hf_student_round_trip_with_tokenizer(tmp_path):
    from ckd_tune.models import BUNDLED_ENCODER, TextModelSpec

    spec = TextModelSpec(BUNDLED_ENCODER, num_labels=2, num_layers=1)
    model = spec(0).eval()
    save_student(model, tmp_path / "student", spec, {"method": "ckd"})
    meta = json.loads((tmp_path / "student" / "student.json").read_text())
    assert meta["format"] == "transformers" and meta["tokenizer"]
    loaded = load_student(tmp_path / "student")
    assert loaded.config.num_hidden_layers == 1
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "student")
    batch = tokenizer(["a fine film", "dull"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(loaded(**batch).logits, model(**batch).logits, atol=1e-6)
