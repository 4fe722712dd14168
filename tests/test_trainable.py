"""The Ray Tune trainable (:mod:`ckd_tune.trainable`) on the synthetic bench, with Ray Tune's
session faked: every epoch's checkpoint loads with ``torch.load(weights_only=True)``, and a trial
restarted from a checkpoint continues from it to the same result as an uninterrupted one."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from ray.tune import Checkpoint

from ckd_tune import trainable
from ckd_tune.trainable import STATE_FILE, run_trial
from tests.synthetic_bench import make_prepared


class Crash(Exception):
    """What the fake session raises to kill a trial after a number of epochs."""


class FakeTune:
    """The part of ``ray.tune`` the trainable uses: its trial directory, the checkpoint to resume
    from, and ``report``, which keeps a copy of every checkpoint (Ray's would upload it)."""

    def __init__(self, trial_dir: Path, resume_from: Path | None = None, crash_after: int = 0):
        self.trial_dir, self.resume_from, self.crash_after = trial_dir, resume_from, crash_after
        self.reported: list[dict] = []
        self.checkpoints: list[Path] = []
        trial_dir.mkdir(parents=True, exist_ok=True)

    def get_context(self) -> SimpleNamespace:
        return SimpleNamespace(get_trial_dir=lambda: str(self.trial_dir))

    def get_checkpoint(self) -> Checkpoint | None:
        return None if self.resume_from is None else Checkpoint.from_directory(self.resume_from)

    def report(self, metrics: dict, checkpoint: Checkpoint) -> None:
        kept = self.trial_dir / f"checkpoint_{len(self.reported)}"
        shutil.copytree(checkpoint.path, kept)
        self.reported.append(dict(metrics))
        self.checkpoints.append(kept)
        if self.crash_after and len(self.reported) == self.crash_after:
            raise Crash


def run(monkeypatch: pytest.MonkeyPatch, fake: FakeTune, config: dict | None = None) -> FakeTune:
    """``run_trial`` of ``config`` on the synthetic bench under ``fake``, crashing where it says."""
    monkeypatch.setattr(trainable, "tune", fake)
    if fake.crash_after:
        with pytest.raises(Crash):
            run_trial(config or {}, make_prepared())
    else:
        run_trial(config or {}, make_prepared())
    return fake


def test_checkpoints_load_with_weights_only_and_a_resume_continues(tmp_path, monkeypatch):
    full = run(monkeypatch, FakeTune(tmp_path / "full"))
    assert [m["epoch"] for m in full.reported] == [1, 2, 3]

    crashed = run(monkeypatch, FakeTune(tmp_path / "crashed", crash_after=1))
    assert [m["epoch"] for m in crashed.reported] == [1]
    (checkpoint,) = crashed.checkpoints
    state = torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=True)
    assert state["epoch"] == 1

    resumed = run(monkeypatch, FakeTune(tmp_path / "resumed", resume_from=checkpoint))
    assert [m["epoch"] for m in resumed.reported] == [2, 3]  # not from the start again
    # seeded per epoch: the resumed trial ends where the uninterrupted one did
    assert resumed.reported[-1]["val_score"] == full.reported[-1]["val_score"]
    assert resumed.reported[-1]["best_val_score"] == full.reported[-1]["best_val_score"]
    final = torch.load(resumed.checkpoints[-1] / STATE_FILE, weights_only=True)
    expected = torch.load(full.checkpoints[-1] / STATE_FILE, weights_only=True)
    for name, weights in expected["model"].items():
        torch.testing.assert_close(final["model"][name], weights)


def test_a_learned_temperature_survives_a_trial_restart(tmp_path, monkeypatch):
    # CTKD's temperature is the method's own state: checkpointed beside the student's weights
    config = {"method": "ctkd", "curriculum_fraction": 0.4}  # lambda 0, 0.93, 1 over 3 epochs
    full = run(monkeypatch, FakeTune(tmp_path / "full"), config)
    crashed = run(monkeypatch, FakeTune(tmp_path / "crashed", crash_after=2), config)
    state = torch.load(crashed.checkpoints[-1] / STATE_FILE, weights_only=True)
    assert set(state["method"]) == {"theta"}
    resumed = run(monkeypatch, FakeTune(tmp_path / "resumed", resume_from=crashed.checkpoints[-1]),
                  config)  # fmt: skip
    assert [m["epoch"] for m in resumed.reported] == [3]
    assert len({m["T"] for m in full.reported}) == 3  # learned: a new T every epoch
    for key in ("T", "lambda", "train_loss", "val_score"):
        assert resumed.reported[-1][key] == full.reported[-1][key], key
    final = torch.load(resumed.checkpoints[-1] / STATE_FILE, weights_only=True)
    expected = torch.load(full.checkpoints[-1] / STATE_FILE, weights_only=True)
    assert torch.equal(final["method"]["theta"], expected["method"]["theta"])


def test_a_takd_trial_distils_from_the_assistant(tmp_path, monkeypatch):
    """The trial's signal is the one its method names: takd's search trains on the assistant's
    logits (as its re-runs do), kd's on the teacher's."""
    prepared = make_prepared(assistant=True)
    seen = []

    def spy(config, data, student, signal, **kwargs):
        seen.append((config.method, signal))
        return None

    monkeypatch.setattr(trainable, "train", spy)
    for method in ("takd", "kd"):
        monkeypatch.setattr(trainable, "tune", FakeTune(tmp_path / method))
        run_trial({"method": method}, prepared)
    assert seen == [("takd", prepared.assistant_signal), ("kd", prepared.teacher_signal)]
    assert prepared.assistant_signal is not prepared.teacher_signal


def test_a_trial_uses_cuda_only_for_a_gpu_ray_gave_it(monkeypatch, caplog):
    """A logical GPU (``--num-gpus`` on a host without CUDA): CPU, and one line that says so.
    (The real thing, on a Ray node with a logical GPU: test_cluster.py.)"""
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [])
    assert trainable.trial_device() == "cpu"  # no GPU asked for: none taken
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [0])
    assert trainable.trial_device() == "cuda"
    assert not caplog.messages
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level("WARNING", logger="ckd_tune.trainable"):
        assert trainable.trial_device() == "cpu"
    assert caplog.messages == [
        "Ray assigned GPU ids [0] but CUDA is not available in this worker; training on CPU"
    ]
