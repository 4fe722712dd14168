"""TAKD: vanilla KD's loss and parameters, on the teacher assistant's logits."""

from __future__ import annotations

import pytest
import torch

from ckd_tune.config import TrainConfig
from ckd_tune.methods import METHODS
from ckd_tune.methods.kd import KDParams
from ckd_tune.train import train
from tests.method_support import Z_S, Z_T, Y, method, t64, y64
from tests.synthetic_bench import make_prepared


def test_takd_distils_from_the_assistant_with_kds_parameters() -> None:
    assert METHODS["takd"].signal == "assistant" and METHODS["takd"].needs_teacher
    assert {m.signal for name, m in METHODS.items() if name != "takd"} == {"teacher"}
    assert METHODS["takd"].params_type is KDParams
    assert TrainConfig.from_flat({"method": "takd", "alpha": 0.3}).params == KDParams(alpha=0.3)


@pytest.mark.parametrize(("alpha", "temp"), [(0.3, 2.0), (0.5, 4.0), (1.0, 7.0)])
def test_takd_loss_is_kds_on_the_same_logits(alpha: float, temp: float) -> None:
    z_s, z_a, y = t64(Z_S), t64(Z_T), y64(Y)
    takd = method("takd", alpha=alpha, temperature=temp)
    kd = method("kd", alpha=alpha, temperature=temp)
    assert takd.schedule(0.4) == kd.schedule(0.4) == {"T": temp}
    ours = takd.loss_terms(z_s, z_a, y, {"T": temp})
    theirs = kd.loss_terms(z_s, z_a, y, {"T": temp})
    assert ours.keys() == theirs.keys() == {"ce", "kd"}
    for name in ours:
        assert ours[name].weight == theirs[name].weight
        assert torch.equal(ours[name].value, theirs[name].value)


def test_a_prepared_bench_gives_takd_the_assistants_logits() -> None:
    prepared = make_prepared(assistant=True)
    assert prepared.signal_for("takd") is prepared.assistant_signal
    for name in ("kd", "ckd", "annealing_kd", "none"):
        assert prepared.signal_for(name) is prepared.teacher_signal
    batch = {"index": torch.tensor([3, 0, 7]), "labels": torch.zeros(3, dtype=torch.long)}
    assistant, teacher = prepared.assistant.logits["train"], prepared.teacher.logits["train"]
    assert torch.equal(prepared.signal_for("takd")(batch), assistant[[3, 0, 7]])
    assert not torch.equal(assistant, teacher)
    # trained end to end: takd is kd on the assistant's logits, not kd on the teacher's
    config = prepared.base_config.replace(method="kd", alpha=0.4, temperature=3.0, epochs=2)
    runs = {
        signal: train(config, prepared.data, prepared.build_student(0), fn).history
        for signal, fn in (
            ("assistant", prepared.assistant_signal),
            ("teacher", prepared.teacher_signal),
        )
    }
    takd = config.replace(method="takd", alpha=0.4, temperature=3.0)
    ours = train(takd, prepared.data, prepared.build_student(0), prepared.signal_for("takd"))

    def losses(history: list[dict]) -> list[float]:
        return [h["train_loss"] for h in history]

    assert losses(ours.history) == losses(runs["assistant"])
    assert losses(ours.history) != losses(runs["teacher"])


def test_a_bench_without_an_assistant_refuses_takd() -> None:
    prepared = make_prepared()
    assert prepared.assistant is None
    with pytest.raises(ValueError, match="prepared without one"):
        prepared.signal_for("takd")
