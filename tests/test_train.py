"""The training loop without Ray: determinism, resume, NaN handling, phases, every method."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from ckd_tune.config import TrainConfig
from ckd_tune.data import SPLITS
from ckd_tune.errors import NonFiniteLossError
from ckd_tune.methods import METHODS
from ckd_tune.teacher import CachedTeacher
from ckd_tune.train import (
    evaluate,
    predict,
    sparse_embedding_grads,
    train,
    uses_bf16,
)
from tests.conftest import TinyNet, make_points_task


def _teacher(task) -> CachedTeacher:
    torch.manual_seed(123)
    return CachedTeacher(torch.randn(len(task.train), task.num_labels) * 3)


def _student(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet()


_METHOD_PARAMS = {
    "ckd": {"t_max": 4.0, "margin": 0.1},
    "annealing_kd": {"t_max": 4.0},
    "ctkd": {"curriculum_fraction": 0.5},  # lambda 0, 0.5, 1, 1 over 4 epochs
    "dkd": {"warmup": 0.75},  # 3 of the 4 epochs
}


def _config(method: str = "ckd", **kw) -> TrainConfig:
    shared = {"lr": 1e-2, "batch_size": 16, "epochs": 4, "seed": 3}
    params = _METHOD_PARAMS.get(method, {})
    return TrainConfig.from_flat({"method": method, **shared, **params, **kw})


def _with_lengths(task):
    """``task`` whose splits record a length per item, as tokenised text splits do."""
    rng = np.random.default_rng(0)
    for split in SPLITS:
        task.split(split).lengths = rng.integers(1, 64, len(task.split(split))).tolist()
    return task


@pytest.fixture
def lengths_task():
    return _with_lengths(make_points_task(n=1200))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_and_reports(points_task, method):
    config = _config(method=method)
    seen = []
    result = train(
        config,
        points_task,
        _student(),
        _teacher(points_task),
        on_epoch=lambda e, m, s: seen.append((e, m)),
    )
    assert [e for e, _ in seen] == [1, 2, 3, 4]
    assert len(result.history) == 4
    assert all(math.isfinite(m["train_loss"]) for _, m in seen)
    assert result.best_score == max(m["val_score"] for _, m in seen)
    assert result.history[result.best_epoch - 1]["val_score"] == result.best_score
    assert result.last_metrics["epoch"] == 4
    assert {"val_accuracy", "best_val_score", "examples_per_s"} <= set(result.last_metrics)
    if method in ("ckd", "annealing_kd"):
        assert {"T", "phi", "psi"} <= set(result.last_metrics)
    if method == "ctkd":
        assert {"T", "lambda"} <= set(result.last_metrics)
    if method == "dkd":  # the warm-up factor is logged with T
        assert [m["kd_warmup"] for _, m in seen] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    terms = {
        "none": {"ce"},
        "kd": {"ce", "kd"},
        "annealing_kd": {"ce", "mse"},
        "ckd": {"ce", "hinge_mse"},
        "ctkd": {"ce", "kd"},
        "takd": {"ce", "kd"},  # kd on the assistant's logits (here: the test's teacher)
        "dkd": {"ce", "dkd"},
        "dist": {"ce", "dist"},
    }
    for _, m in seen:  # every loss term, unweighted, per epoch
        assert {k for k in m if k.startswith("loss_")} == {f"loss_{t}" for t in terms[method]}
    if method in (
        "kd",
        "takd",
        "ctkd",
        "none",
    ):  # constant weights: the epoch's loss is their weighted sum
        alpha = 1.0 if method == "none" else config.params.alpha
        for _, m in seen:
            mix = alpha * m["loss_ce"] + (1 - alpha) * m.get("loss_kd", 0.0)
            assert m["train_loss"] == pytest.approx(mix, rel=1e-5)


class _IndexEcho(torch.nn.Module):
    """A student whose logits are its input's first ``classes`` features (plus a trainable 0)."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.classes = classes
        self.zero = torch.nn.Parameter(torch.zeros(1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features[:, : self.classes] + 0.0 * self.zero


@pytest.mark.parametrize("method", [m for m in sorted(METHODS) if METHODS[m].needs_teacher])
@pytest.mark.parametrize("lengths", [False, True])
def test_every_teacher_row_matches_its_example_over_shuffled_epochs(method, lengths, monkeypatch):
    # each example's features and its teacher logits both encode its index: any misalignment
    # (a teacher signal ignoring batch["index"], a shuffled loader read in another order, a
    # length-grouped sampler) puts another example's teacher row next to a student row
    task = make_points_task(n=150)
    if lengths:
        task = _with_lengths(task)
    for split in SPLITS:
        data = task.split(split)
        data.x = data.x.clone()
        data.x[:, 0] = torch.arange(len(data)).float()
    n = len(task.train)
    teacher_logits = torch.zeros(n, task.num_labels)
    teacher_logits[:, 0] = torch.arange(n).float()
    seen: list[torch.Tensor] = []
    method_cls = METHODS[method]
    real_terms = method_cls.loss_terms

    def spy(self, z_s, z_t, labels, values):
        assert torch.equal(z_t[:, 0], z_s[:, 0].detach())
        seen.append(z_s[:, 0].detach().long())
        return real_terms(self, z_s, z_t, labels, values)

    monkeypatch.setattr(method_cls, "loss_terms", spy)
    epochs = 3
    train(
        _config(method, epochs=epochs, lr=1e-3), task, _IndexEcho(), CachedTeacher(teacher_logits)
    )
    order = torch.cat(seen)
    assert len(order) == epochs * n
    per_epoch = order.view(epochs, n)
    for epoch in per_epoch:  # every example once per epoch
        assert torch.equal(epoch.sort().values, torch.arange(n))
    assert not torch.equal(per_epoch[0], per_epoch[1])  # and shuffled between epochs
    assert not torch.equal(per_epoch[0], torch.arange(n))


def test_learns_from_labels(points_task):
    result = train(_config(method="none", epochs=8, lr=5e-2), points_task, _student())
    assert result.best_score > 0.6


def test_same_seed_same_numbers(points_task):
    a = train(_config(), points_task, _student(), _teacher(points_task))
    b = train(_config(), points_task, _student(), _teacher(points_task))
    assert [m["train_loss"] for m in a.history] == [m["train_loss"] for m in b.history]
    c = train(_config(seed=4), points_task, _student(), _teacher(points_task))
    assert [m["train_loss"] for m in a.history] != [m["train_loss"] for m in c.history]


@pytest.mark.parametrize(
    "method, lengths, stop",
    [("ckd", False, 2), ("annealing_kd", False, 2), ("annealing_kd", False, 3), ("ckd", True, 2)],
)
def test_resume_matches_uninterrupted_run(points_task, method, lengths, stop):
    if lengths:
        points_task = _with_lengths(points_task)  # length-grouped batches resume exactly too
    config = _config(method=method)  # annealing_kd: phase 2 from epoch 3 (stop 3: inside it)
    full = train(config, points_task, _student(), _teacher(points_task))
    saved = {}

    def stop_after_two(epoch, metrics, state):
        if epoch == stop:
            saved.update(state())
            return True
        return None

    partial = train(config, points_task, _student(), _teacher(points_task), on_epoch=stop_after_two)
    assert partial.stopped_early and len(partial.history) == stop
    resumed = train(config, points_task, _student(seed=99), _teacher(points_task), resume=saved)
    assert [m["train_loss"] for m in resumed.history] == [m["train_loss"] for m in full.history]
    assert resumed.best_score == full.best_score and resumed.best_epoch == full.best_epoch
    for k, v in full.best_state.items():
        assert torch.equal(v, resumed.best_state[k])


def _saved(state: dict) -> dict:
    """``state`` through ``torch.save`` and ``torch.load(weights_only=True)``, as a checkpoint."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _timeless(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in m.items() if k != "examples_per_s"} for m in history]


def test_ctkd_learns_its_temperature_and_logs_it_per_epoch(points_task):
    thetas = []
    result = train(_config("ctkd"), points_task, _student(), _teacher(points_task),
                   on_epoch=lambda e, m, s: thetas.append(s()["method"]["theta"].clone()))  # fmt: skip
    assert [m["lambda"] for m in result.history] == pytest.approx([0.0, 0.5, 1.0, 1.0])
    temps = [m["T"] for m in result.history]
    start = 1.0 + 20.0 * torch.sigmoid(torch.tensor(1.0)).item()  # theta starts at 1
    assert len({start, *temps}) == 5  # T moves every epoch ...
    # ... in epoch 1 (lambda 0) by weight decay alone; with lambda > 0 by the reversed gradient
    assert abs(temps[1] - temps[0]) > 10 * abs(temps[0] - start)
    for m, theta in zip(result.history, thetas, strict=True):  # the logged T is the saved theta's
        assert m["T"] == float(1.0 + 20.0 * torch.sigmoid(theta))


@pytest.mark.parametrize("stop", [1, 2, 3])
def test_ctkd_resume_reproduces_the_learned_temperature_exactly(points_task, stop):
    config = _config("ctkd")
    ends: dict[str, dict] = {}

    def keep_last(name):
        return lambda epoch, metrics, state: ends.__setitem__(name, _saved(state()))

    full = train(config, points_task, _student(), _teacher(points_task), on_epoch=keep_last("full"))
    saved = {}

    def stop_there(epoch, metrics, state):
        if epoch == stop:
            saved.update(_saved(state()))
            return True
        return None

    train(config, points_task, _student(), _teacher(points_task), on_epoch=stop_there)
    assert saved["history"][-1]["T"] == full.history[stop - 1]["T"]
    resumed = train(config, points_task, _student(seed=99), _teacher(points_task),
                    resume=saved, on_epoch=keep_last("resumed"))  # fmt: skip
    assert _timeless(resumed.history) == _timeless(full.history)  # T and lambda included
    assert torch.equal(ends["resumed"]["method"]["theta"], ends["full"]["method"]["theta"])
    theta = len(list(_student().parameters()))  # the optimizer's index of theta: after the student
    for key, value in ends["full"]["optimizer"]["state"][theta].items():  # its Adam moments
        assert torch.equal(ends["resumed"]["optimizer"]["state"][theta][key], value)
    # without the saved temperature the resumed run is another run
    fresh = {**saved, "method": {"theta": torch.ones(())}}
    other = train(config, points_task, _student(), _teacher(points_task), resume=fresh)
    assert other.history[stop]["T"] != full.history[stop]["T"]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_only_a_method_that_learns_adds_to_the_optimizer_and_checkpoint(points_task, method):
    states = []
    train(_config(method, epochs=1), points_task, _student(), _teacher(points_task),
          on_epoch=lambda e, m, s: states.append(s()))  # fmt: skip
    (state,) = states
    keys = {"epoch", "model", "optimizer", "scheduler", "history", "best_score", "best_epoch",
            "best_metrics", "best_model"}  # fmt: skip
    student_params = len(list(_student().parameters()))
    (group,) = state["optimizer"]["param_groups"]
    if method == "ctkd":  # its temperature: one more parameter, saved under "method"
        assert set(state) == keys | {"method"} and set(state["method"]) == {"theta"}
        assert len(group["params"]) == student_params + 1
    else:
        assert set(state) == keys
        assert len(group["params"]) == student_params


@pytest.mark.parametrize("group", [True, False])
def test_group_by_length_batches_similar_lengths(lengths_task, group):
    lengths = np.asarray(lengths_task.train.lengths)
    batches: list[list[int]] = []
    collate = lengths_task.collate

    def spy(items):
        batches.append([it["index"] for it in items])
        return collate(items)

    lengths_task.collate = spy
    config = _config(method="none", epochs=2, group_by_length=group)
    train(config, lengths_task, _student())
    per_epoch = -(-len(lengths) // config.batch_size)  # then the validation batches
    val_batches = -(-len(lengths_task.val) // (2 * config.batch_size))
    train_batches = batches[:per_epoch] + batches[per_epoch + val_batches :][:per_epoch]
    for epoch in range(2):  # every example exactly once per epoch
        epoch_batches = train_batches[epoch * per_epoch : (epoch + 1) * per_epoch]
        assert sorted(i for b in epoch_batches for i in b) == list(range(len(lengths)))
    spread = np.mean([np.ptp(lengths[b]) for b in train_batches])
    assert (spread < 10) if group else (spread > 40)  # lengths 1..63, batches of 16


def test_predict_keeps_dataset_order_when_batching_by_length(points_task):
    model = _student(seed=5)
    plain_logits, plain_labels = predict(model, points_task.val, points_task.collate, batch_size=4)
    _with_lengths(points_task)
    logits, labels = predict(model, points_task.val, points_task.collate, batch_size=4)
    assert np.array_equal(labels, plain_labels) and np.array_equal(labels, points_task.val.labels)
    assert np.allclose(logits, plain_logits, atol=1e-6)


def test_nan_loss_stops_with_reason(points_task):
    bad = CachedTeacher(torch.full((len(points_task.train), 3), float("nan")))
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch 1, step 1") as info:
        train(_config(method="kd"), points_task, _student(), bad)
    assert info.value.result.history == []


def test_annealing_phase2_starts_from_exactly_the_best_phase1_weights(points_task, monkeypatch):
    # phase 1 = epochs 1-3 (anneal_fraction 0.75 of 4); validation is scripted so that the best
    # phase-1 epoch is epoch 1, not the last one before phase 2
    import ckd_tune.train as loop

    scores = iter([0.9, 0.5, 0.4, 0.95])
    monkeypatch.setattr(loop, "evaluate", lambda *a, **k: {"accuracy": next(scores)})
    states: dict[int, dict[str, torch.Tensor]] = {}
    at_phase2: list[dict[str, torch.Tensor]] = []
    student = _student()
    method_cls = METHODS["annealing_kd"]
    real_terms = method_cls.loss_terms

    def spy(self, z_s, z_t, labels, values):
        if values["psi"] == 1.0 and not at_phase2:  # the first phase-2 batch, before its step
            at_phase2.append({k: v.clone() for k, v in student.state_dict().items()})
        return real_terms(self, z_s, z_t, labels, values)

    monkeypatch.setattr(method_cls, "loss_terms", spy)
    config = _config("annealing_kd", epochs=4, anneal_fraction=0.75)
    assert config.build_method().phase2_epoch() == 3
    result = train(
        config,
        points_task,
        student,
        _teacher(points_task),
        on_epoch=lambda e, m, s: states.__setitem__(
            e, {k: v.clone() for k, v in s()["model"].items()}
        ),
    )
    assert [m["psi"] for m in result.history] == [0.0, 0.0, 0.0, 1.0]
    assert result.best_epoch == 4
    best_phase1, last_phase1 = states[1], states[3]
    assert any(not torch.equal(best_phase1[k], last_phase1[k]) for k in best_phase1)
    assert at_phase2 and all(torch.equal(at_phase2[0][k], best_phase1[k]) for k in best_phase1)


def test_annealing_phase2_gets_a_fresh_optimizer_and_schedule(points_task, monkeypatch):
    import ckd_tune.train as loop

    made = []
    real = loop._optimizer

    def spy(config, model, total_steps, device):
        optimizer, scheduler = real(config, model, total_steps, device)
        made.append((total_steps, optimizer))
        return optimizer, scheduler

    monkeypatch.setattr(loop, "_optimizer", spy)
    seen = []
    config = _config(method="annealing_kd", epochs=4, anneal_fraction=0.5)
    train(config, points_task, _student(), _teacher(points_task),
          on_epoch=lambda e, m, s: seen.append(s()["optimizer"]["state"][0]["step"].item()))  # fmt: skip
    steps = math.ceil(len(points_task.train) / config.batch_size)
    assert [t for t, _ in made] == [4 * steps, 2 * steps]  # phase 2: its own lr schedule
    assert made[0][1] is not made[1][1]
    # the new optimizer's moments start from zero: its step count restarts at phase 2
    assert seen == [steps, 2 * steps, steps, 2 * steps]
    # other methods keep one optimizer
    made.clear()
    train(_config(method="ckd"), points_task, _student(), _teacher(points_task))
    assert len(made) == 1


def test_schedules_change_at_epoch_starts_by_default(points_task):
    history = []
    config = _config(method="ckd", t_max=4.0, anneal_fraction=1.0, psi_end_fraction=1.0)
    assert config.schedule_unit == "epoch"
    train(config, points_task, _student(), _teacher(points_task),
          on_epoch=lambda e, m, s: history.append(m))  # fmt: skip
    assert [m["T"] for m in history] == [4.0, 3.0, 2.0, 1.0]  # the papers' integer steps
    assert [m["psi"] for m in history] == [0.0, 0.25, 0.5, 0.75]
    per_step = []
    train(config.replace(schedule_unit="step"), points_task, _student(), _teacher(points_task),
          on_epoch=lambda e, m, s: per_step.append(m))  # fmt: skip
    assert per_step[0]["psi"] > 0.0  # the last step of epoch 1 has moved on


def test_teacher_required_for_kd(points_task):
    with pytest.raises(ValueError, match="needs a teacher"):
        train(_config(method="kd"), points_task, _student(), None)


def test_evaluate_reports_task_metric(points_task):
    metrics = evaluate(_student(), points_task, "test")
    assert set(metrics) == {"accuracy"} and 0 <= metrics["accuracy"] <= 1


def test_sparse_embedding_grad_step_matches_dense() -> None:
    import torch
    from torch import nn

    def grads(sparse: bool, set_to_none: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Embedding(50, 4, padding_idx=0), nn.Linear(4, 1))
        undo = sparse_embedding_grads(model) if sparse else (lambda: None)
        opt = torch.optim.AdamW(model.parameters(), lr=0.1, fused=True)
        seen = []
        for ids in ([[1, 2, 2, 0]], [[3, 4, 0, 0]], [[5, 1, 1, 1]]):
            opt.zero_grad(set_to_none=set_to_none)
            model(torch.tensor(ids)).sum().backward()
            model(torch.tensor(ids)).sum().backward()  # accumulated: the buffer is reused
            assert not model[0].weight.grad.is_sparse
            seen.append(model[0].weight.grad.clone())
            opt.step()
        undo()
        assert not model[0].sparse
        return [*seen, model[0].weight.detach()]

    for set_to_none in (True, False):
        for a, b in zip(grads(False, set_to_none), grads(True, set_to_none), strict=True):
            torch.testing.assert_close(a, b)


def test_bf16_autocast_only_on_a_gpu_that_computes_it_natively(monkeypatch):
    """Emulated bfloat16 (before Ampere) is slower than float32: no autocast there, nor on CPU."""
    seen = []

    def native(including_emulation: bool = True) -> bool:
        seen.append(including_emulation)
        return support

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", native)
    for support in (True, False):
        assert uses_bf16(torch.device("cuda")) is support
        assert uses_bf16(torch.device("cpu")) is False
    assert seen == [False, False]
