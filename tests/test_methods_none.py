"""Fine-tuning (method "none"): the labels only, nothing scheduled, no teacher."""

from __future__ import annotations

from ckd_tune import losses
from tests.method_support import close, logits, method


def test_none_is_cross_entropy_without_a_teacher() -> None:
    z_s, _, y = logits()
    m = method("none")
    assert m.schedule(0.3) == {}
    assert m.phase2_epoch() is None
    terms = m.loss_terms(z_s, None, y, {})
    assert list(terms) == ["ce"]
    assert terms["ce"].weight == 1.0
    close(terms["ce"].value, losses.hard_label_loss(z_s, y))
