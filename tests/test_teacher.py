"""The teacher: its fingerprint, its cached weights and logits, its signals to the student."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from ckd_tune import teacher
from ckd_tune.config import TrainConfig
from ckd_tune.data import SPLITS
from ckd_tune.models import (
    TextModelSpec,
    VisionModelSpec,
    save_vision_model,
    saved_model_fingerprint,
)
from ckd_tune.teacher import (
    CachedTeacher,
    LiveTeacher,
    ShuffledTeacher,
    assistant_fingerprint,
    cached_teacher,
    fine_tune_teacher,
    teacher_fingerprint,
    teacher_logits,
)
from ckd_tune.train import evaluate
from tests.conftest import TinyNet


def _net(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet()


def test_shuffled_teacher_gives_each_example_another_ones_logits(points_task):
    logits = torch.arange(40.0).reshape(20, 2)
    shuffled = ShuffledTeacher(CachedTeacher(logits), seed=3)
    everyone = {"index": torch.arange(20), "labels": torch.zeros(20, dtype=torch.long)}
    out = shuffled(everyone)
    source = (out[:, 0] / 2).long()
    assert sorted(source.tolist()) == list(range(20))  # a permutation of the teacher's logits
    assert (source != torch.arange(20)).all()  # nobody keeps their own
    batch = {"index": torch.tensor([5, 2]), "labels": torch.zeros(2, dtype=torch.long)}
    assert torch.equal(shuffled(batch), out[[5, 2]])  # the same wrong logits all run long
    assert torch.equal(ShuffledTeacher(CachedTeacher(logits), seed=3)(everyone), out)
    # a live teacher has no fixed examples: each gets its batch neighbour's logits
    teacher = _net(seed=7)
    live = LiveTeacher(teacher)
    batch = points_task.collate([points_task.train[i] for i in range(4)])
    assert torch.equal(ShuffledTeacher(live)(batch), live(batch).roll(1, dims=0))


def test_live_teacher_matches_cached_logits(points_task):
    teacher_net = _net(seed=7).eval()
    batch = points_task.collate([points_task.train[i] for i in range(5)])
    with torch.no_grad():
        expected = teacher_net(batch["features"])
    assert torch.allclose(LiveTeacher(teacher_net)(batch), expected)
    assert torch.equal(
        CachedTeacher(expected.repeat(20, 1)[: len(points_task.train)])(batch)[:1], expected[:1]
    )


# --------------------------------------------------------------------------------------------
# The fingerprint: what the teacher is, not how or for whom it is run

_SETTINGS = dict(lr=1e-3, epochs=2, batch_size=16, seed=0, num_threads=1)


def _key(weights: str = "w", data: str = "d", **settings) -> str:
    return teacher_fingerprint(weights, data, TrainConfig(**{**_SETTINGS, **settings}))


def test_teacher_fingerprint_ignores_threads():
    assert _key(num_threads=16) == _key(num_threads=1) == _key()


@pytest.mark.parametrize(
    "change",
    [
        {"weights": "other base weights"},
        {"data": "other examples"},
        {"lr": 2e-3},
        {"epochs": 3},
        {"batch_size": 32},
        {"seed": 1},
        {"weight_decay": 0.0},
    ],
    ids=lambda change: next(iter(change)),
)
def test_teacher_fingerprint_follows_what_shapes_the_teacher(change):
    assert _key(**change) != _key()


def test_ready_teacher_is_named_by_its_weights_alone():
    assert teacher_fingerprint("w") == teacher_fingerprint("w")
    assert teacher_fingerprint("w") != teacher_fingerprint("v")
    assert teacher_fingerprint("w") != _key()


def _assistant_key(teacher_fp: str = "t", weights: str = "w", data: str = "d", **settings) -> str:
    config = TrainConfig.from_flat({**_SETTINGS, "method": "kd", **settings})
    return assistant_fingerprint(teacher_fp, weights, data, config)


@pytest.mark.parametrize(
    "change",
    [
        {"teacher_fp": "another teacher"},
        {"weights": "other start weights"},
        {"data": "other examples"},
        {"lr": 2e-3},
        {"epochs": 3},
        {"alpha": 0.3},
        {"temperature": 2.0},
        {"method": "none"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_assistant_fingerprint_follows_its_teacher_data_weights_and_settings(change):
    assert _assistant_key(**change) != _assistant_key()
    assert _assistant_key(num_threads=8) == _assistant_key()
    # never the name of a teacher trained from the same weights on the same data
    assert _assistant_key() != teacher_fingerprint("w", "d", TrainConfig(**_SETTINGS))


def _text_model_dir(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text('{"model_type": "bert"}')
    (root / "model.safetensors").write_bytes(bytes(range(256)) * 8)
    (root / "README.md").write_text("not part of the model")
    return root


def test_local_text_model_fingerprint_follows_its_weight_file(tmp_path):
    model_dir = _text_model_dir(tmp_path / "teacher")
    fp = TextModelSpec(str(model_dir), 2).fingerprint()
    shutil.copytree(model_dir, tmp_path / "moved")
    assert TextModelSpec(str(tmp_path / "moved"), 2).fingerprint() == fp  # content, not path
    (model_dir / "README.md").write_text("edited notes")
    assert TextModelSpec(str(model_dir), 2).fingerprint() == fp
    weights = bytearray((model_dir / "model.safetensors").read_bytes())
    weights[100] ^= 1
    (model_dir / "model.safetensors").write_bytes(bytes(weights))
    assert TextModelSpec(str(model_dir), 2).fingerprint() != fp
    assert teacher_fingerprint(TextModelSpec(str(model_dir), 2).fingerprint()) != (
        teacher_fingerprint(fp)
    )


def test_saved_vision_teacher_fingerprint_follows_its_weights(tmp_path):
    spec = VisionModelSpec("resnet8", 10)
    save_vision_model(spec.build(0), spec, tmp_path / "a")
    save_vision_model(spec.build(0), spec, tmp_path / "same")
    save_vision_model(spec.build(1), spec, tmp_path / "b")
    fp = saved_model_fingerprint(tmp_path / "a")
    assert saved_model_fingerprint(tmp_path / "same") == fp
    assert saved_model_fingerprint(tmp_path / "b") != fp


# --------------------------------------------------------------------------------------------
# The cached teacher directory and the cached logits


def _build(calls: list[int]):
    def build(tmp: Path) -> dict:
        calls.append(1)
        (tmp / "model.pt").write_bytes(b"weights")
        return {"train_seconds": 2.0}

    return build


def test_cached_teacher_is_built_once_and_rebuilt_when_damaged(tmp_path):
    calls: list[int] = []
    directory, meta, reused = cached_teacher(tmp_path, "key", _build(calls), ["model.pt"])
    assert (directory, meta["train_seconds"], reused) == (tmp_path / "teachers" / "key", 2.0, False)
    assert cached_teacher(tmp_path, "key", _build(calls), ["model.pt"])[2]
    assert calls == [1]
    (directory / "model.pt").write_bytes(b"weight")  # truncated
    (tmp_path / "teachers" / ".key-half-built").mkdir()  # a killed build's leftover
    assert not cached_teacher(tmp_path, "key", _build(calls), ["model.pt"])[2]
    assert calls == [1, 1]
    assert sorted(p.name for p in directory.parent.iterdir()) == ["key", "key.lock"]


def test_fine_tuned_teacher_keeps_its_best_epoch(points_task, monkeypatch):
    runs = []
    real_train = teacher.train
    monkeypatch.setattr(
        teacher, "train", lambda *a, **k: runs.append(real_train(*a, **k)) or runs[-1]
    )
    config = TrainConfig(**{**_SETTINGS, "lr": 1e-2, "epochs": 3})
    model, metrics, seconds = fine_tune_teacher(points_task, _net, config)
    (run,) = runs
    assert set(metrics) == {"val"} and metrics["val"] == run.best_metrics and seconds > 0
    state = model.state_dict()
    assert all(torch.equal(state[name], value) for name, value in run.best_state.items())
    assert metrics["val"] == evaluate(model, points_task, "val")


def test_an_assistant_is_distilled_from_the_teacher_signal_given(points_task, monkeypatch):
    seen = []
    real_train = teacher.train

    def spy(config, data, model, signal=None, **kwargs):
        seen.append((config.method, signal))
        return real_train(config, data, model, signal, **kwargs)

    monkeypatch.setattr(teacher, "train", spy)
    config = TrainConfig(**{**_SETTINGS, "method": "kd", "lr": 1e-2})
    signal = CachedTeacher(torch.randn(len(points_task.train), 3))
    model, metrics, _ = fine_tune_teacher(points_task, _net, config, teacher=signal)
    assert seen == [("kd", signal)]
    assert metrics["val"] == evaluate(model, points_task, "val")
    fine_tune_teacher(points_task, _net, config)  # no teacher: fine-tuned on the labels
    assert seen[1] == ("none", None)


def _fresh_logits(model, task) -> dict[str, torch.Tensor]:
    return {
        split: torch.from_numpy(teacher.predict(model, task.split(split), task.collate)[0])
        for split in SPLITS
    }


def _logits_file(cache_dir: Path, task) -> Path:
    return cache_dir / "logits" / f"t-{task.fingerprint}.pt"


def test_teacher_logits_are_computed_once(points_task, tmp_path, monkeypatch):
    model = _net(seed=7).eval()
    logits = teacher_logits(model, points_task, tmp_path, "t")
    assert all(torch.equal(logits[s], _fresh_logits(model, points_task)[s]) for s in SPLITS)
    assert _logits_file(tmp_path, points_task).is_file()
    monkeypatch.setattr(teacher, "predict", lambda *a, **k: pytest.fail("recomputed"))
    again = teacher_logits(model, points_task, tmp_path, "t")
    assert all(torch.equal(again[s], logits[s]) for s in SPLITS)


@pytest.mark.parametrize("damage", ["flipped-byte", "truncated"])
def test_corrupt_logits_file_is_rebuilt(points_task, tmp_path, damage):
    model = _net(seed=7).eval()
    fresh = _fresh_logits(model, points_task)
    teacher_logits(model, points_task, tmp_path, "t")
    path = _logits_file(tmp_path, points_task)
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        del data[len(data) // 2 :]
    else:  # a byte of the stored test logits: the file still loads, with a wrong number
        at = data.find(fresh["test"].numpy().tobytes())
        assert at >= 0
        data[at + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    rebuilt = teacher_logits(model, points_task, tmp_path, "t")
    assert all(torch.equal(rebuilt[s], fresh[s]) for s in SPLITS)
    assert torch.load(path, weights_only=True)["test"].equal(fresh["test"])  # the file too
