"""From re-run records to the results dict (:mod:`ckd_tune.report.results`): search traces,
schedule curves, the positive control, Holm, power, sensitivity and range flags."""

from __future__ import annotations

import numpy as np
import pytest

from ckd_tune import report
from ckd_tune.config import TrainConfig
from ckd_tune.report import (
    analyse,
    render_markdown,
    schedule_curves,
    search_trace,
)
from ckd_tune.report.formatting import signed
from tests.report_support import (
    report_setup_dict,
)

# ------------------------------------------------------------------ curves


def test_search_trace_interleaves_concurrent_trials_by_time():
    trial_a = [(100, 1, 0.5), (300, 2, 0.6), (500, 3, 0.6)]
    trial_b = [(200, 1, 0.7), (400, 2, 0.65), (400, 2, 0.65)]  # a replayed epoch counts once
    assert search_trace([trial_a, trial_b]) == [
        [1, 0.5], [2, 0.7], [3, 0.7], [4, 0.7], [5, 0.7],
    ]  # fmt: skip
    assert search_trace([]) == []


def test_schedule_curves_cover_scheduled_methods_only():
    methods = ("ckd", "annealing_kd", "kd", "none")  # each with its default parameters
    curves = schedule_curves(
        {m: TrainConfig.from_flat({"method": m, "epochs": 4}).to_flat() for m in methods},
        points=11,
    )
    assert set(curves) == {"ckd", "annealing_kd", "kd"}
    assert set(curves["kd"]["T"]) == {4.0} and set(curves["kd"]) == {"progress", "T"}  # constant
    ckd = curves["ckd"]
    assert set(ckd) == {"progress", "T", "phi", "psi", "margin"} and len(ckd["T"]) == 11
    assert ckd["T"][0] > ckd["T"][-1] == 1.0 and ckd["psi"][0] == 0.0  # annealed down to T = 1
    assert curves["annealing_kd"]["psi"][-1] == 1.0


# ------------------------------------------------------------------ protocol: tests, control, power


def _records(arm: str, labels: np.ndarray, right: float, seeds=(1, 2, 3, 4, 5)) -> list[dict]:
    """Re-run records whose predictions are right on a ``right`` fraction of the test examples."""
    out = []
    for seed in seeds:
        rng = np.random.default_rng(seed * 7 + len(arm))
        correct = rng.random(len(labels)) < right
        preds = np.where(correct, labels, 1 - labels)
        score = float((preds == labels).mean())
        out.append({"arm": arm, "method": arm.split("_")[0], "seed": seed, "status": "ok",
                    "test_score": score, "val_score": score, "test_predictions": preds.tolist()})  # fmt: skip
    return out


def _summary(method: str, config: dict | None = None) -> dict:
    return {"method": method, "status": "ok", "best_val_score": 0.8, "best_config": config or {}}


def test_analysis_runs_the_positive_control_bootstrap_holm_and_power():
    labels = np.random.default_rng(0).integers(0, 2, 872)
    reruns = {
        "kd": _records("kd", labels, 0.80),
        "ckd": _records("ckd", labels, 0.80),
        "none": _records("none", labels, 0.79),
        report.CONTROL: _records(report.CONTROL, labels, 0.60),
    }
    results = analyse(
        [_summary(m) for m in ("ckd", "kd", "none")], reruns, metric="accuracy",
        task="sst2", labels=labels,
    )  # fmt: skip
    control = results["positive_control"]
    assert control["passed"] and control["versus"] == report.CONTROL and control["method"] == "kd"
    assert control["difference"] == pytest.approx(0.2, abs=0.03) and control["ci"][0] > 0.1
    assert control["p"] < 0.01 and control["verdict"].startswith("Positive control passed")
    ckd = results["comparisons"]["kd"]["ckd"]
    assert ckd["bootstrap"]["n_seeds"] == 5 and ckd["bootstrap"]["n_examples"] == 872
    # the bootstrap counts the test set's sampling: its MDE is larger than the seed-only one
    # would be for independent predictions, and about 2.8 x its standard error
    assert ckd["mde"] == pytest.approx(2.8016 * ckd["bootstrap"]["se"], rel=1e-3)
    assert 0 < ckd["mde_seed_only"] < ckd["mde"]
    family = [c for ref in results["comparisons"].values() for c in ref.values()]
    assert len(family) == 4  # ckd, none vs kd; ckd, kd vs none: one Holm family
    assert all(c["p_holm"] >= c["bootstrap"]["p"] for c in family)
    assert not ckd["significant"]
    # the paper's +1.04 / +1.45 points on SST-2 are below this budget's detectable difference
    assert ckd["paper"]["at_stake"] == pytest.approx(0.0104)
    assert ckd["mde"] > 0.0104
    assert "cannot resolve the paper's +1.04 points" in ckd["sensitivity"]
    assert results["comparisons"]["kd"]["none"]["paper"] is None  # the paper has no none - kd
    assert "test_predictions" not in results["methods"]["kd"]["seeds"][0]


def test_positive_control_fails_when_the_bench_cannot_tell_it_apart():
    labels = np.random.default_rng(1).integers(0, 2, 200)
    reruns = {
        "kd": _records("kd", labels, 0.7),
        report.CONTROL: _records(report.CONTROL, labels, 0.7),
    }
    results = analyse([_summary("kd")], reruns, metric="accuracy", task="sst2", labels=labels)
    control = results["positive_control"]
    assert not control["passed"] and "FAILED" in control["verdict"]
    results.update(sweep="s", setup=report_setup_dict(), plots={})
    md = render_markdown(results)
    assert md.index("**Positive control:** Positive control FAILED") < md.index("**Verdict:**")


def test_a_real_gap_survives_holm_and_a_big_mde_says_how_many_seeds():
    labels = np.random.default_rng(2).integers(0, 2, 872)
    reruns = {"kd": _records("kd", labels, 0.75), "ckd": _records("ckd", labels, 0.85)}
    results = analyse([_summary("ckd"), _summary("kd")], reruns, metric="accuracy",
                      task="sst2", labels=labels)  # fmt: skip
    ckd = results["comparisons"]["kd"]["ckd"]
    assert ckd["significant"] and ckd["direction"] == "better" and ckd["p_holm"] < 0.05
    assert "significantly better" in results["verdict"]
    assert results["positive_control"] is None  # not run: the report says so
    results.update(sweep="s", setup=report_setup_dict(), plots={})
    assert "**Positive control:** not run" in render_markdown(results)


def test_sensitivity_sentences():
    from ckd_tune.report.results import sensitivity

    c = {"method": "ckd", "baseline": "kd", "mde": 0.03, "seeds_needed": None,
         "paper": {"points": {"DistilRoBERTa": 1.04, "BERT-Small": 1.45}, "at_stake": 0.0104}}  # fmt: skip
    text = sensitivity(c)
    assert "below 3.0 points" in text and "+1.04 (DistilRoBERTa) / +1.45 (BERT-Small)" in text
    assert "no number of seeds can" in text
    assert "about 12 seeds" in sensitivity({**c, "seeds_needed": 12})
    assert "can resolve" in sensitivity({**c, "mde": 0.009})
    assert "no number for this pair" in sensitivity({**c, "paper": None})


def test_range_flags_on_linear_and_log_scales():
    from ckd_tune.report.results import range_flags

    params = [
        {"name": "lr", "low": 1e-5, "high": 3e-4, "log": True},
        {"name": "kd_alpha", "low": 0.1, "high": 0.9, "log": False},
        {"name": "t_max", "low": 2, "high": 10, "log": False},
    ]
    flags = range_flags({"lr": 2.9e-4, "kd_alpha": 0.5, "t_max": 2}, params)
    assert [(f["param"], f["bound"]) for f in flags] == [("lr", "high"), ("t_max", "low")]
    # 2e-4 is 88% of the way on a log scale (but 66% linearly): not flagged
    assert range_flags({"lr": 2e-4}, params) == []
    results = analyse(
        [_summary("kd", {"kd_alpha": 0.89})], {"kd": []}, metric="accuracy",
        spaces={"kd": params},
    )  # fmt: skip
    assert results["methods"]["kd"]["range_flags"][0]["param"] == "kd_alpha"


def test_a_pbt_row_is_compared_with_its_base_method_in_the_same_holm_family():
    labels = np.random.default_rng(3).integers(0, 2, 872)
    reruns = {
        "kd": _records("kd", labels, 0.78),
        "ckd": _records("ckd", labels, 0.76),
        "ckd:pbt": _records("ckd:pbt", labels, 0.86),
        "none": _records("none", labels, 0.77),
    }
    methods = ("ckd", "ckd:pbt", "kd", "none")
    results = analyse([_summary(m) for m in methods], reruns, metric="accuracy",
                      task="sst2", labels=labels)  # fmt: skip
    comparisons = results["comparisons"]
    assert set(comparisons) == {"kd", "none", "ckd"}
    assert set(comparisons["ckd"]) == {"ckd:pbt"}  # only the variant against its base
    learned = comparisons["ckd"]["ckd:pbt"]
    assert set(learned) >= set(comparisons["kd"]["ckd"])  # the same shape as the others
    assert (learned["method"], learned["baseline"]) == ("ckd:pbt", "ckd")
    assert learned["bootstrap"]["n_seeds"] == 5 and learned["mde"] > 0
    assert learned["significant"] and learned["direction"] == "better"
    assert learned["mean_diff"] == pytest.approx(0.10, abs=0.03)
    # one Holm family: 3 vs kd, 3 vs none, 1 variant vs its base
    family = [c for ref in comparisons.values() for c in ref.values()]
    assert len(family) == 7
    assert learned["bootstrap"]["p"] <= learned["p_holm"] <= 7 * learned["bootstrap"]["p"]
    assert "learned schedule beats the hand-designed one" in learned["learned_verdict"]
    assert "learned_verdict" not in comparisons["kd"]["ckd"]
    # the headline is still against vanilla KD; ckd:pbt is one of its rows
    assert "ckd:pbt" in comparisons["kd"]
    results.update(sweep="s", setup=report_setup_dict(), plots={})
    md = render_markdown(results)
    section = md[md.index("### Learned vs hand-designed schedule") :]
    assert section.index("ckd:pbt (schedule learned by the search) vs ckd") < section.index(
        "**Verdict:**"
    )
    assert f"{signed(learned['mean_diff'])} accuracy (bootstrap 95% CI [" in section


def test_no_variant_comparison_without_its_base_or_when_the_baseline_already_has_it():
    labels = np.random.default_rng(4).integers(0, 2, 300)
    reruns = {m: _records(m, labels, 0.8) for m in ("kd", "ckd:pbt", "kd:pbt")}
    results = analyse([_summary(m) for m in ("ckd:pbt", "kd", "kd:pbt")], reruns,
                      metric="accuracy", labels=labels)  # fmt: skip
    assert set(results["comparisons"]) == {"kd"}  # no ckd row: ckd:pbt only vs kd
    assert set(results["comparisons"]["kd"]) == {"ckd:pbt", "kd:pbt"}
    # kd:pbt vs kd is the baseline comparison itself, counted once, with its learned verdict
    assert "learned_verdict" in results["comparisons"]["kd"]["kd:pbt"]
    assert "learned_verdict" not in results["comparisons"]["kd"]["ckd:pbt"]
