"""Benches end to end without Ray: data + cached teacher (and assistant) + student, every
method trains."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from ckd_tune import benches, cache, teacher
from ckd_tune.benches import BenchRequest, get_bench
from ckd_tune.data import SPLITS
from ckd_tune.errors import DataNotFoundError, UserInputError
from ckd_tune.methods import METHODS
from ckd_tune.models import BUNDLED_ENCODER, TextModelSpec
from ckd_tune.teacher import CachedTeacher, LiveTeacher
from ckd_tune.train import predict, train


@pytest.fixture(scope="module")
def glue_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def glue_smoke(glue_dir, glue_cache):
    request = BenchRequest(
        bench="glue", task="sst2", profile="smoke", data_dir=glue_dir, cache_dir=glue_cache
    )
    return get_bench("glue").prepare(request), request


def test_glue_smoke_bench_is_ready(glue_smoke):
    prepared, _ = glue_smoke
    assert prepared.task == "sst2" and prepared.data.num_labels == 2
    assert not prepared.teacher.reused
    assert isinstance(prepared.teacher_signal, CachedTeacher)
    for split in ("train", "val", "test"):
        assert prepared.teacher.logits[split].shape == (len(prepared.data.split(split)), 2)
    # the teacher's score on the student's training examples shows whether it memorised them
    assert set(prepared.teacher.metrics) == {"train", "val", "test"}
    assert 0.0 <= prepared.teacher.metrics["test"]["accuracy"] <= 1.0
    student = prepared.build_student(0)
    assert student.config.num_hidden_layers == 2


def test_teacher_trains_on_its_own_examples_not_the_students(glue_dir, tmp_path, monkeypatch):
    seen = []
    real = teacher.fine_tune_teacher
    monkeypatch.setattr(
        teacher, "fine_tune_teacher", lambda data, *a, **k: seen.append(data) or real(data, *a, **k)
    )
    request = BenchRequest(
        bench="glue", task="sst2", profile="smoke", data_dir=glue_dir, cache_dir=tmp_path
    )
    prepared = get_bench("glue").prepare(request)
    data = prepared.data
    assert len(seen) == 1 and seen[0].train is data.teacher_train
    assert len(data.teacher_train) == benches.GLUE_PROFILES["smoke"].teacher_size
    student_rows = set(data.train.rows) | set(data.val.rows)
    assert not student_rows & set(data.teacher_train.rows)  # never saw the student's examples
    assert seen[0].val is data.val  # the teacher selects its epoch on the same validation split


def test_teacher_is_reused_not_retrained(glue_smoke, monkeypatch):
    _, request = glue_smoke

    def fail(*args, **kwargs):
        raise AssertionError("the cached teacher should have been reused")

    monkeypatch.setattr(teacher, "fine_tune_teacher", fail)
    monkeypatch.setattr(teacher, "predict", fail)  # logits come from the cache too
    again = get_bench("glue").prepare(request)
    assert again.teacher.reused
    assert again.teacher.fingerprint == glue_smoke[0].teacher.fingerprint
    assert torch.equal(again.teacher.logits["train"], glue_smoke[0].teacher.logits["train"])


def test_changed_settings_change_the_teacher_fingerprint(glue_smoke, monkeypatch):
    prepared, request = glue_smoke
    smoke = benches.GLUE_PROFILES["smoke"]
    monkeypatch.setitem(
        benches.GLUE_PROFILES, "smoke", smoke.__class__(**{**smoke.__dict__, "teacher_lr": 3e-4})
    )
    trained = []
    real = teacher.fine_tune_teacher
    monkeypatch.setattr(
        teacher, "fine_tune_teacher", lambda *a, **k: trained.append(1) or real(*a, **k)
    )
    other = get_bench("glue").prepare(request)
    assert trained == [1]
    assert other.teacher.fingerprint != prepared.teacher.fingerprint


def test_teacher_is_reused_when_only_the_run_around_it_changes(glue_smoke, monkeypatch):
    prepared, request = glue_smoke
    smoke = benches.GLUE_PROFILES["smoke"]
    student_side = {"epochs": 5, "num_samples": 9, "seeds": 7, "student_layers": 1,
                    "base": {"lr": 1e-3, "seed": 4}}  # fmt: skip
    monkeypatch.setitem(
        benches.GLUE_PROFILES, "smoke", smoke.__class__(**{**smoke.__dict__, **student_side})
    )
    monkeypatch.setattr(teacher, "fine_tune_teacher", lambda *a, **k: pytest.fail("retrained"))
    monkeypatch.setattr(teacher, "predict", lambda *a, **k: pytest.fail("logits recomputed"))
    more_threads = BenchRequest(**{**request.__dict__, "num_threads": 64})  # --cpus-per-trial
    again = get_bench("glue").prepare(more_threads)
    assert again.teacher.reused and again.teacher.fingerprint == prepared.teacher.fingerprint
    assert again.base_config.epochs == 5 and again.base_config.num_threads == 64


@pytest.mark.parametrize("damage", ["flipped-byte", "truncated"])
def test_corrupt_logit_cache_is_rebuilt_by_prepare(glue_smoke, monkeypatch, damage):
    prepared, request = glue_smoke
    fp = prepared.teacher.fingerprint
    path = request.cache_dir / "logits" / f"{fp}-{prepared.data.fingerprint}.pt"
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        del data[len(data) // 2 :]
    else:  # a byte of the stored test logits: the file still loads, with a wrong number
        at = data.find(prepared.teacher.logits["test"].numpy().tobytes())
        assert at >= 0
        data[at + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    predicted = []
    monkeypatch.setattr(teacher, "predict", lambda *a, **k: predicted.append(1) or predict(*a, **k))
    again = get_bench("glue").prepare(request)
    assert again.teacher.reused and len(predicted) == 3  # the logits (only) were rebuilt
    model = TextModelSpec(str(request.cache_dir / "teachers" / fp), 2, pretrained_head=True)()
    data = prepared.data
    for split in ("train", "val", "test"):
        fresh = predict(model, data.split(split), data.collate, batch_size=128)[0]
        assert torch.allclose(again.teacher.logits[split], torch.from_numpy(fresh), atol=1e-6)
    assert cache.load_tensors(path) is not None  # the rebuilt file passes its checksum


def test_damaged_teacher_checkpoint_is_retrained(glue_smoke, monkeypatch):
    prepared, request = glue_smoke
    weights = request.cache_dir / "teachers" / prepared.teacher.fingerprint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    again = get_bench("glue").prepare(request)
    assert not again.teacher.reused


# --------------------------------------------------------------------------------------------
# The teacher assistant (takd): distilled from the teacher once, cached like it


@pytest.fixture(scope="module")
def glue_takd(glue_smoke):
    """The GLUE smoke bench prepared for every method (so with the assistant), in glue_smoke's
    cache; ``calls`` records the arguments of each model training it ran."""
    _, request = glue_smoke
    request = dataclasses.replace(request, methods=tuple(sorted(METHODS)))
    calls = []
    real = teacher.fine_tune_teacher

    def spy(data, build, config, **kwargs):
        calls.append({"data": data, "config": config, "teacher": kwargs.get("teacher")})
        return real(data, build, config, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(teacher, "fine_tune_teacher", spy)
        prepared = get_bench("glue").prepare(request)
    return prepared, request, calls


def test_the_assistant_is_prepared_only_for_a_method_that_uses_it(glue_smoke):
    prepared, request = glue_smoke
    assert not request.needs_assistant and prepared.assistant is None
    assert prepared.signal_for("kd") is prepared.teacher_signal
    with pytest.raises(ValueError, match="'takd' distils from the teacher assistant"):
        prepared.signal_for("takd")
    assert BenchRequest("glue", methods=("kd", "takd")).needs_assistant
    assert not BenchRequest("glue", methods=("kd", "ckd", "none")).needs_assistant


def test_glue_assistant_is_distilled_from_the_teacher_on_the_teachers_examples(glue_takd):
    prepared, request, calls = glue_takd
    assistant, data = prepared.assistant, prepared.data
    assert assistant is not None and not assistant.reused and assistant.train_seconds > 0
    assert assistant.fingerprint != prepared.teacher.fingerprint
    assert assistant.name.startswith(f"{BUNDLED_ENCODER}, first 4 layers, distilled from the")
    (call,) = [c for c in calls if c["teacher"] is not None]
    assert isinstance(call["teacher"], LiveTeacher)  # the teacher, run on the assistant's batches
    # the teacher's own examples, selected on validation: never the test split, never val labels
    assert call["data"].train is data.teacher_train and call["data"].val is data.val
    config, smoke = call["config"], benches.GLUE_PROFILES["smoke"]
    assert (config.method, config.params.alpha, config.params.temperature) == ("kd", 0.5, 4.0)
    assert (config.lr, config.epochs) == (smoke.teacher_lr, smoke.teacher_epochs)
    weights = request.cache_dir / "teachers" / assistant.fingerprint
    assert TextModelSpec(str(weights), 2, pretrained_head=True)().config.num_hidden_layers == 4
    for split in SPLITS:
        assert assistant.logits[split].shape == (len(data.split(split)), 2)
        assert 0.0 <= assistant.metrics[split]["accuracy"] <= 1.0
    # takd's signal: the assistant's cached logits, by example, not the teacher's
    assert prepared.signal_for("takd") is prepared.assistant_signal
    batch = data.collate([data.train[i] for i in (5, 1)])
    assert torch.equal(prepared.signal_for("takd")(batch), assistant.logits["train"][[5, 1]])
    assert not torch.equal(prepared.signal_for("takd")(batch), prepared.signal_for("kd")(batch))


def test_assistant_is_reused_not_retrained(glue_takd, monkeypatch):
    prepared, request, _ = glue_takd

    def fail(*args, **kwargs):
        raise AssertionError("the cached teacher and assistant should have been reused")

    monkeypatch.setattr(teacher, "fine_tune_teacher", fail)
    monkeypatch.setattr(teacher, "predict", fail)  # both models' logits come from the cache too
    again = get_bench("glue").prepare(request)
    assert again.assistant.reused and again.assistant.fingerprint == prepared.assistant.fingerprint
    assert again.assistant.train_seconds == prepared.assistant.train_seconds  # what it cost once
    assert torch.equal(again.assistant.logits["train"], prepared.assistant.logits["train"])


def test_changed_assistant_settings_change_its_fingerprint(glue_takd, monkeypatch):
    prepared, request, _ = glue_takd
    monkeypatch.setattr(benches, "ASSISTANT_KD", {"alpha": 0.3, "temperature": 4.0})
    trained = []
    real = teacher.fine_tune_teacher
    monkeypatch.setattr(
        teacher,
        "fine_tune_teacher",
        lambda *a, **k: trained.append(k["teacher"] is not None) or real(*a, **k),
    )
    other = get_bench("glue").prepare(request)
    assert trained == [True]  # the assistant only: the teacher is reused
    assert other.teacher.reused and not other.assistant.reused
    assert other.assistant.fingerprint != prepared.assistant.fingerprint
    assert "alpha 0.3" in other.assistant.name


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_on_glue_smoke(glue_takd, method):
    prepared, _, _ = glue_takd
    config = prepared.base_config.replace(method=method, epochs=1)
    signal = prepared.signal_for(method)
    result = train(config, prepared.data, prepared.build_student(0), signal)
    assert len(result.history) == 1
    assert np.isfinite(result.history[0]["train_loss"])
    assert 0.0 <= result.best_score <= 1.0


def test_unknown_bench_and_missing_glue_data(tmp_path):
    with pytest.raises(UserInputError, match="--bench"):
        get_bench("imagenet")
    request = BenchRequest(
        bench="glue", task="sst2", profile="smoke", data_dir=tmp_path, cache_dir=tmp_path
    )
    with pytest.raises(DataNotFoundError, match="sst2"):
        get_bench("glue").prepare(request)


@pytest.fixture(scope="module")
def cifar_smoke(cifar_dir, tmp_path_factory):
    request = BenchRequest(bench="cifar10", profile="smoke", data_dir=cifar_dir,
                           cache_dir=tmp_path_factory.mktemp("cache"))  # fmt: skip
    return get_bench("cifar10").prepare(request), request


def test_cifar_smoke_bench_and_teacher_cache(cifar_smoke, monkeypatch):
    prepared, request = cifar_smoke
    assert isinstance(prepared.teacher_signal, LiveTeacher)  # augmentation: no logit cache
    assert not prepared.teacher.reused
    monkeypatch.setattr(teacher, "fine_tune_teacher", lambda *a, **k: pytest.fail("retrained"))
    assert get_bench("cifar10").prepare(request).teacher.reused


@pytest.fixture(scope="module")
def cifar_takd(cifar_smoke):
    """The CIFAR smoke bench prepared for every method (so with the assistant), same cache."""
    _, request = cifar_smoke
    request = dataclasses.replace(request, methods=tuple(sorted(METHODS)))
    return get_bench("cifar10").prepare(request), request


def test_cifar_assistant_runs_live_and_is_cached(cifar_takd, monkeypatch):
    prepared, request = cifar_takd
    assistant = prepared.assistant
    assert prepared.teacher.reused and not assistant.reused  # distilled from the cached teacher
    assert assistant.name.startswith("resnet8, distilled from the teacher by kd")
    assert assistant.fingerprint != prepared.teacher.fingerprint
    assert set(assistant.metrics) == set(SPLITS)
    assert isinstance(prepared.assistant_signal, LiveTeacher)  # augmentation: no logit cache
    assert prepared.signal_for("takd") is prepared.assistant_signal
    assert prepared.assistant_signal.model is not prepared.teacher_signal.model
    monkeypatch.setattr(teacher, "fine_tune_teacher", lambda *a, **k: pytest.fail("retrained"))
    again = get_bench("cifar10").prepare(request)
    assert again.assistant.reused and again.assistant.fingerprint == assistant.fingerprint


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_on_cifar_smoke(cifar_takd, method):
    prepared, _ = cifar_takd
    config = prepared.base_config.replace(method=method, epochs=1)
    signal = prepared.signal_for(method)
    result = train(config, prepared.data, prepared.build_student(0), signal)
    assert np.isfinite(result.history[0]["train_loss"])


def test_cifar_teacher_from_saved_checkpoint(cifar_smoke, tmp_path):
    from ckd_tune.models import VisionModelSpec, save_vision_model

    _, request = cifar_smoke
    spec = VisionModelSpec("resnet14", 10)
    save_vision_model(spec.build(1), spec, tmp_path / "t")
    request = BenchRequest(**{**request.__dict__, "teacher": str(tmp_path / "t")})
    loaded = get_bench("cifar10").prepare(request)
    assert loaded.teacher.name == str(tmp_path / "t")
    with pytest.raises(UserInputError, match="unknown CIFAR network"):
        get_bench("cifar10").prepare(BenchRequest(**{**request.__dict__, "teacher": "vgg11"}))


def test_missing_cifar_data(tmp_path):
    request = BenchRequest(
        bench="cifar10", profile="smoke", data_dir=tmp_path / "nope", cache_dir=tmp_path
    )
    with pytest.raises(DataNotFoundError):
        get_bench("cifar10").prepare(request)


@pytest.mark.slow
def test_cifar_smoke_sweep_of_every_method_end_to_end(cifar_dir, tmp_path):
    """``python -m ckd_tune.search --bench cifar10`` on a synthetic ImageFolder, all methods, report."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "ckd_tune.search", "--bench", "cifar10", "--profile", "smoke",
           "--data-dir", str(cifar_dir), "--cache-dir", str(tmp_path / "cache"),
           "--output", str(tmp_path / "runs"), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
           "--methods", ",".join(METHODS), "--max-epochs", "1", "--seeds", "2", "--num-samples", "1",
           "--quiet"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    for method in METHODS:
        assert any(line.startswith(method) for line in done.stdout.splitlines())
    (report,) = (tmp_path / "runs").glob("cifar10-cifar10-smoke-*/report/report.md")
    text = report.read_text()
    assert all(method in text for method in METHODS)
