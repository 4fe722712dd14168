"""The paper's reported effects (:mod:`ckd_tune.report.paper`): :func:`paper_effect` for known and
unknown (task, method, reference) triples, and the effect at stake it derives."""

from __future__ import annotations

import pytest

from ckd_tune.report import paper
from ckd_tune.report.paper import PAPER_EFFECTS, paper_effect


@pytest.mark.parametrize(
    ("task", "method", "reference", "points", "at_stake"),
    [
        ("sst2", "ckd", "kd", {"DistilRoBERTa": 1.04, "BERT-Small": 1.45}, 0.0104),
        ("mrpc", "ckd", "kd", {"DistilRoBERTa": 1.73, "BERT-Small": 3.44}, 0.0173),
        ("rte", "ckd", "kd", {"DistilRoBERTa": 6.5, "BERT-Small": 0.3}, 0.003),
        ("sst2", "kd", "none", {"DistilRoBERTa": 0.04, "BERT-Small": 0.46}, 0.0004),
        ("cifar10", "ckd", "kd", {"ResNet-8": 1.76}, 0.0176),
        ("cifar10", "kd", "none", {"ResNet-8": 0.01}, 0.0001),
    ],
)
def test_known_pairs_give_the_papers_points_and_the_smallest_gain(
    task, method, reference, points, at_stake
):
    effect = paper_effect(task, method, reference)
    assert set(effect) == {"points", "at_stake"}
    assert list(effect["points"]) == list(points)  # students in the table's order
    assert effect["points"] == pytest.approx(points)
    assert effect["at_stake"] == pytest.approx(at_stake)


def test_a_loss_for_one_student_is_not_the_effect_at_stake():
    effect = paper_effect("cola", "ckd", "kd")
    assert effect["points"] == {"DistilRoBERTa": 2.8, "BERT-Small": -0.4}
    assert effect["at_stake"] == pytest.approx(0.028)  # the smallest *positive* difference


def test_no_gain_reported_means_nothing_at_stake(monkeypatch):
    monkeypatch.setitem(paper.PAPER_EFFECTS, ("sst2", "ckd", "none"), {"A": -0.5, "B": 0.0})
    assert paper_effect("sst2", "ckd", "none") == {
        "points": {"A": -0.5, "B": 0.0},
        "at_stake": None,
    }


def test_glue_prefix_is_ignored():
    assert paper_effect("glue/mrpc", "ckd", "kd") == paper_effect("mrpc", "ckd", "kd")
    assert paper_effect("glue/mrpc", "ckd", "kd")["points"]["BERT-Small"] == 3.44


@pytest.mark.parametrize(
    ("task", "method", "reference"),
    [
        ("points", "ckd", "kd"),  # a task the paper has no table for
        ("sst2", "annealing_kd", "kd"),  # a method it does not compare
        ("sst2", "kd", "ckd"),  # the pair the other way round
        ("sst2", "none", "kd"),
        ("cola", "kd", "none"),  # a known task without this pair
        ("SST2", "ckd", "kd"),  # task names are matched exactly
        ("cifar/cifar10", "ckd", "kd"),  # only the glue/ prefix is dropped
    ],
)
def test_unknown_triples_give_none(task, method, reference):
    assert paper_effect(task, method, reference) is None


def test_the_result_is_a_copy():
    effect = paper_effect("sst2", "ckd", "kd")
    effect["points"]["DistilRoBERTa"] = 99.0
    assert PAPER_EFFECTS[("sst2", "ckd", "kd")]["DistilRoBERTa"] == 1.04
    assert paper_effect("sst2", "ckd", "kd")["points"]["DistilRoBERTa"] == 1.04
