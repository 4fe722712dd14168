"""The statistics of :mod:`ckd_tune.report.stats`: describe / compare / verdicts on known
numbers, and the test-set-aware part: weighted metrics, the paired bootstrap over seeds x test
examples, Holm's correction and minimum detectable differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from ckd_tune.report.stats import (
    TaskPredictions,
    compare,
    describe,
    holm,
    mde,
    metric_scores,
    overall_verdict,
    paired_bootstrap,
    seed_mde,
    seeds_needed,
    short_verdict,
    study_bootstrap,
    verdict,
)

# ------------------------------------------------------------------ statistics on known inputs


def test_describe_matches_the_t_interval_by_hand():
    d = describe([1.0, 2.0, 3.0])
    assert d["n"] == 3 and d["mean"] == pytest.approx(2.0) and d["std"] == pytest.approx(1.0)
    half = 4.303 * 1.0 / math.sqrt(3)  # t_{0.975, 2} = 4.303 (printed tables)
    assert d["ci_low"] == pytest.approx(2.0 - half, abs=1e-3)
    assert d["ci_high"] == pytest.approx(2.0 + half, abs=1e-3)
    five = describe([0.5, 0.7, 0.6, 0.8, 0.4])  # t_{0.975, 4} = 2.776, std = sqrt(0.025)
    assert five["ci_high"] - five["mean"] == pytest.approx(2.776 * math.sqrt(0.025 / 5), abs=1e-3)


def test_describe_small_and_constant_samples():
    one = describe([0.7])
    assert one["mean"] == 0.7 and one["std"] is None and one["ci_low"] is None
    assert describe([])["mean"] is None
    flat = describe([0.5, 0.5, 0.5])
    assert flat["std"] == 0.0 and flat["ci_low"] == flat["ci_high"] == 0.5


def test_compare_paired_and_welch_match_hand_computations():
    a = {0: 0.80, 1: 0.82, 2: 0.84}
    b = {0: 0.78, 1: 0.79, 2: 0.80}
    c = compare(a, b, name="ckd")
    # paired: differences 0.02, 0.03, 0.04 -> mean 0.03, sd 0.01, t = 0.03 / (0.01 / sqrt 3)
    t = 0.03 / (0.01 / math.sqrt(3))
    assert c["t_paired"] == pytest.approx(t)
    # two-sided p for df = 2 in closed form: p = 1 - t / sqrt(2 + t^2)
    assert c["p_paired"] == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-6)
    assert c["p_paired"] == pytest.approx(0.0351, abs=1e-4)
    assert c["mean_diff"] == pytest.approx(0.03)
    assert c["ci_low"] == pytest.approx(0.03 - 4.303 * 0.01 / math.sqrt(3), abs=1e-4)
    assert c["ci_high"] == pytest.approx(0.03 + 4.303 * 0.01 / math.sqrt(3), abs=1e-4)
    # Welch: variances 4e-4 and 1e-4, Welch-Satterthwaite df
    va, vb, n = 4e-4 / 3, 1e-4 / 3, 3
    tw = 0.03 / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (n - 1) + vb**2 / (n - 1))
    assert df == pytest.approx(2.941, abs=1e-3)
    assert c["t_welch"] == pytest.approx(tw)
    assert c["p_welch"] == pytest.approx(2 * stats.t.sf(tw, df), rel=1e-6)
    # paired p < 0.05 but Welch p = 0.104: the report must not call this a win
    assert c["testable"] and not c["significant"]
    text = verdict(c, "accuracy")
    assert text.startswith("no significant difference between ckd and kd")
    assert "Welch's test does not confirm it" in text
    assert "significantly better" not in text


def test_verdict_clear_win_and_clear_loss():
    good = {s: v for s, v in enumerate([0.90, 0.91, 0.92, 0.905, 0.915])}
    base = {s: v for s, v in enumerate([0.80, 0.805, 0.81, 0.79, 0.80])}
    win = compare(good, base, name="ckd")
    assert win["significant"] and win["direction"] == "better"
    assert win["p_paired"] < 0.001 and win["p_welch"] < 0.001 and win["ci_low"] > 0
    assert verdict(win, "accuracy").startswith("ckd is significantly better than kd: +0.1")
    loss = compare(base, good, name="none")
    assert loss["significant"] and loss["direction"] == "worse"
    text = verdict(loss, "accuracy")
    assert text.startswith("none is significantly worse than kd: -0.1") and "better" not in text


@pytest.mark.parametrize(
    "a, b",
    [
        ([0.80, 0.85, 0.78], [0.81, 0.79, 0.83]),  # overlapping, CI spans 0
        ([0.81, 0.80, 0.83], [0.80, 0.81, 0.80]),  # a small loss on one seed, small wins elsewhere
    ],
)
def test_verdict_overlapping_scores_is_no_significant_difference(a, b):
    c = compare(dict(enumerate(a)), dict(enumerate(b)), name="ckd")
    assert not c["significant"] and c["ci_low"] < 0 < c["ci_high"]
    text = verdict(c, "accuracy")
    assert text.startswith("no significant difference between ckd and kd")
    assert "does not separate" in text
    assert short_verdict(c) == "no significant difference"


def test_verdict_with_fewer_than_two_seeds_says_the_test_cannot_be_done():
    c = compare({0: 0.9}, {0: 0.8}, name="ckd")
    assert not c["testable"] and c["p_paired"] is None and c["p_welch"] is None
    assert c["mean_diff"] == pytest.approx(0.1)
    assert "the test cannot be done with 1 paired seed(s)" in verdict(c)
    assert short_verdict(c) == "not testable (n < 2)"


def test_identical_scores_are_no_significant_difference():
    c = compare({0: 0.8, 1: 0.8}, {0: 0.8, 1: 0.8}, name="ckd")
    assert not c["significant"]
    assert verdict(c).startswith("no significant difference")


def test_overall_verdict_names_the_winner_only_when_significant():
    win = compare(dict(enumerate([0.9, 0.91, 0.92])), dict(enumerate([0.8, 0.8, 0.81])), name="ckd")
    tie = compare(dict(enumerate([0.8, 0.85, 0.78])), dict(enumerate([0.81, 0.79, 0.83])))
    statuses = {"ckd": "ok", "kd": "ok", "none": "ok", "annealing_kd": "failed"}
    text = overall_verdict({"ckd": win, "none": tie}, statuses)
    assert text.startswith("ckd is significantly better than vanilla KD (kd)")
    assert "For none: no significant difference." in text
    assert "annealing_kd failed" in text
    text = overall_verdict({"ckd": tie, "none": tie}, statuses)
    assert text.startswith("No method is significantly better than vanilla KD (kd)")
    one = compare({0: 0.9}, {0: 0.8}, name="ckd")
    text = overall_verdict({"ckd": one}, {"ckd": "ok", "kd": "ok"})
    assert text.startswith("The comparison with vanilla KD (kd) cannot be tested")
    assert "(kd) failed in the search" in overall_verdict({}, {**statuses, "kd": "failed"})
    assert "(kd) has no successful re-run" in overall_verdict({}, {"kd": "reruns_failed"})
    assert "not part of this sweep" in overall_verdict({}, {"ckd": "ok"})


# --------------------------------------------------------------------------------------------
# metric_scores against sklearn / scipy on the data expanded by the weights


def _reference(metric: str, preds: np.ndarray, labels: np.ndarray) -> float:
    if labels.size == 0:  # sklearn refuses empty input; we call it undefined: 0.0
        return 0.0
    if metric == "accuracy":
        value = accuracy_score(labels, preds)
    elif metric == "f1":
        value = f1_score(labels, preds, pos_label=1, zero_division=0)
    elif metric == "mcc":
        value = matthews_corrcoef(labels, preds)
    else:
        if labels.size < 2 or np.all(preds == preds[0]) or np.all(labels == labels[0]):
            return 0.0
        fn = stats.pearsonr if metric == "pearson" else stats.spearmanr
        value = fn(preds, labels)[0]
    value = float(value)
    return value if math.isfinite(value) else 0.0


def _data(metric: str, rng: np.random.Generator, n: int, classes: int = 2):
    if metric in ("pearson", "spearman"):
        labels = rng.normal(size=n)
        preds = labels + rng.normal(size=n)
        if metric == "spearman":  # ties, as in STS-B's 0-5 scores
            labels, preds = np.round(labels, 1), np.round(preds, 1)
        return preds, labels
    labels = rng.integers(0, classes, size=n)
    preds = np.where(rng.random(n) < 0.7, labels, rng.integers(0, classes, size=n))
    return preds, labels


@pytest.mark.parametrize("metric", ["accuracy", "f1", "mcc", "pearson", "spearman"])
def test_metric_scores_match_sklearn_scipy_under_count_weights(metric):
    rng = np.random.default_rng(1)
    n = 40
    preds, labels = _data(metric, rng, n)
    weights = rng.poisson(1.0, size=(30, n))
    weights[0] = 0  # an empty replicate: 0.0
    weights[1] = 0
    weights[1, 3] = 5  # one example drawn five times: undefined correlations -> 0.0
    got = metric_scores(preds, labels, metric, weights)
    assert got.shape == (30,)
    want = [_reference(metric, np.repeat(preds, w), np.repeat(labels, w)) for w in weights]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    plain = metric_scores(preds, labels, metric)
    assert isinstance(plain, float)
    assert plain == pytest.approx(_reference(metric, preds, labels), rel=1e-12, abs=1e-12)


def test_multiclass_mcc_matches_sklearn():
    rng = np.random.default_rng(2)
    preds, labels = _data("mcc", rng, 60, classes=4)
    weights = rng.integers(0, 3, size=(20, 60))
    got = metric_scores(preds, labels, "mcc", weights)
    want = [matthews_corrcoef(np.repeat(labels, w), np.repeat(preds, w)) for w in weights]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.filterwarnings("ignore:A single label was found")
@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 12).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 1), min_size=n, max_size=n),
            st.lists(st.integers(0, 1), min_size=n, max_size=n),
            st.lists(st.lists(st.integers(0, 3), min_size=n, max_size=n), min_size=1, max_size=4),
        )
    ),
    st.sampled_from(["accuracy", "f1", "mcc"]),
)
def test_binary_metrics_match_sklearn_on_edge_cases(data, metric):
    preds, labels, weights = (np.asarray(x) for x in data)
    got = metric_scores(preds, labels, metric, weights)
    want = [_reference(metric, np.repeat(preds, w), np.repeat(labels, w)) for w in weights]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert not np.any(np.isnan(got))


def test_undefined_metrics_are_zero_not_nan():
    labels = np.array([0, 1, 0, 1])
    assert metric_scores(np.zeros(4, int), labels, "mcc") == 0.0
    assert metric_scores(np.zeros(4, int), np.zeros(4, int), "f1") == 0.0
    assert metric_scores(np.ones(4), labels.astype(float), "pearson") == 0.0
    assert metric_scores(np.ones(4), labels.astype(float), "spearman") == 0.0
    assert metric_scores(np.array([1.0]), np.array([2.0]), "pearson") == 0.0


def test_metric_scores_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown metric"):
        metric_scores(np.zeros(3), np.zeros(3), "auc")
    with pytest.raises(ValueError, match="predictions for"):
        metric_scores(np.zeros(3), np.zeros(4), "accuracy")
    with pytest.raises(ValueError, match="shape"):
        metric_scores(np.zeros(3), np.zeros(3), "accuracy", np.ones(3))
    with pytest.raises(ValueError, match="counts"):
        metric_scores(np.zeros(3), np.zeros(3), "accuracy", -np.ones((2, 3)))


# --------------------------------------------------------------------------------------------
# paired_bootstrap


def _runs(rng: np.random.Generator, labels: np.ndarray, acc: float, seeds=range(5)):
    """Per seed, predictions right on a fraction ``acc`` of the (binary) examples."""
    out = {}
    for s in seeds:
        right = rng.random(labels.size) < acc
        out[s] = np.where(right, labels, 1 - labels)
    return out


def _sst2(n: int = 872, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng, rng.integers(0, 2, size=n)


def test_bootstrap_is_deterministic_and_reports_its_keys():
    rng, labels = _sst2(300)
    a, b = _runs(rng, labels, 0.8), _runs(rng, labels, 0.78)
    first = paired_bootstrap(a, b, labels, "accuracy", n_boot=300, seed=3)
    again = paired_bootstrap(a, b, labels, "accuracy", n_boot=300, seed=3)
    other = paired_bootstrap(a, b, labels, "accuracy", n_boot=300, seed=4)
    assert first == again
    assert other["ci_low"] != first["ci_low"]
    assert set(first) == {
        "diff", "ci_low", "ci_high", "p", "se", "se_seed", "se_test",
        "n_seeds", "n_examples", "n_boot", "confidence", "metric", "method",
    }  # fmt: skip
    assert first["method"] == "paired bootstrap over seeds x test examples"
    assert (first["n_seeds"], first["n_examples"], first["n_boot"]) == (5, 300, 300)
    observed = np.mean([accuracy_score(labels, a[s]) - accuracy_score(labels, b[s]) for s in a])
    assert first["diff"] == pytest.approx(observed)


def test_large_real_effect_is_tiny_p_and_ci_around_the_difference():
    rng, labels = _sst2()
    good, bad = _runs(rng, labels, 0.9), _runs(rng, labels, 0.6)
    for metric in ("accuracy", "f1", "mcc"):
        res = paired_bootstrap(good, bad, labels, metric, n_boot=500, seed=0)
        assert res["ci_low"] < res["diff"] < res["ci_high"]
        assert res["ci_low"] > 0
        assert res["p"] == pytest.approx(1 / 501)  # floored, never 0
    worse = paired_bootstrap(bad, good, labels, "accuracy", n_boot=500)
    assert worse["ci_high"] < 0 and worse["p"] == pytest.approx(1 / 501)


@pytest.mark.parametrize("metric", ["accuracy", "f1", "mcc", "pearson", "spearman"])
def test_identical_predictions_give_zero_difference_and_p_one(metric):
    rng = np.random.default_rng(5)
    preds = {}
    for s in range(3):
        preds[s], labels = _data(metric, np.random.default_rng(s), 100)
    labels = _data(metric, rng, 100)[1]
    res = paired_bootstrap(preds, dict(preds), labels, metric, n_boot=200)
    assert res["diff"] == 0.0 and res["ci_low"] == 0.0 and res["ci_high"] == 0.0
    assert res["p"] == 1.0
    assert res["se"] == 0.0 and res["se_seed"] == 0.0 and res["se_test"] == 0.0


def test_only_common_seeds_are_used():
    rng, labels = _sst2(200)
    a, b = _runs(rng, labels, 0.8, seeds=range(4)), _runs(rng, labels, 0.7, seeds=range(1, 6))
    both = paired_bootstrap(a, b, labels, "accuracy", n_boot=200)
    trimmed = paired_bootstrap(
        {s: a[s] for s in (1, 2, 3)}, {s: b[s] for s in (1, 2, 3)}, labels, "accuracy", n_boot=200
    )
    assert both == trimmed and both["n_seeds"] == 3


def test_resampling_is_paired_over_seeds_and_examples():
    # Per seed the method fixes a few of the reference's errors and breaks nothing, while the
    # seeds differ wildly in quality: with the same seeds and the same examples for both
    # methods in every replicate, no replicate can show the method worse.
    rng, labels = _sst2(400)
    ref = {0: _runs(rng, labels, 0.5, [0])[0], 1: _runs(rng, labels, 0.95, [0])[0]}
    ref[2] = _runs(rng, labels, 0.7, [0])[0]
    method = {}
    for s, p in ref.items():
        fixed = p.copy()
        wrong = np.flatnonzero(p != labels)
        fixed[wrong[:10]] = labels[wrong[:10]]
        method[s] = fixed
    for metric in ("accuracy", "mcc"):
        res = paired_bootstrap(method, ref, labels, metric, n_boot=500)
        assert res["ci_low"] >= 0


def test_se_test_matches_the_analytic_disagreement_formula():
    # With seeds fixed, the accuracy difference is the mean over examples of d_i (the per-seed
    # average of correct(method) - correct(ref)), whose bootstrap sd is sqrt(var(d) / n).
    rng, labels = _sst2()
    a, b = _runs(rng, labels, 0.85), _runs(rng, labels, 0.83)
    d = np.mean([(a[s] == labels).astype(float) - (b[s] == labels) for s in a], axis=0)
    analytic = math.sqrt(d.var() / labels.size)
    res = paired_bootstrap(a, b, labels, "accuracy", n_boot=2000, seed=1)
    assert res["se_test"] == pytest.approx(analytic, rel=0.06)
    # one seed: sqrt((disagreement - diff^2) / n)
    one = paired_bootstrap({0: a[0]}, {0: b[0]}, labels, "accuracy", n_boot=2000, seed=1)
    ca, cb = a[0] == labels, b[0] == labels
    disagree, diff = np.mean(ca != cb), np.mean(ca) - np.mean(cb)
    assert one["se_test"] == pytest.approx(math.sqrt((disagree - diff**2) / 872), rel=0.06)
    assert one["se_seed"] is None and one["n_seeds"] == 1


def test_se_seed_matches_the_sd_of_the_seed_mean():
    rng, labels = _sst2(500)
    a = {s: _runs(rng, labels, acc, [0])[0] for s, acc in enumerate([0.6, 0.7, 0.8, 0.9, 0.75])}
    b = _runs(rng, labels, 0.7)
    per_seed = [accuracy_score(labels, a[s]) - accuracy_score(labels, b[s]) for s in a]
    res = paired_bootstrap(a, b, labels, "accuracy", n_boot=2000)
    # the bootstrap sd of a mean of k values is their population sd / sqrt(k)
    assert res["se_seed"] == pytest.approx(np.std(per_seed) / math.sqrt(5), rel=0.08)
    assert res["se"] >= 0.95 * max(res["se_seed"], res["se_test"])


def test_bootstrap_rejects_bad_input():
    labels = np.zeros(5, int)
    with pytest.raises(ValueError, match="no seed in common"):
        paired_bootstrap({0: labels}, {1: labels}, labels, "accuracy")
    with pytest.raises(ValueError, match="predictions for"):
        paired_bootstrap({0: labels[:4]}, {0: labels}, labels, "accuracy")


# --------------------------------------------------------------------------------------------
# holm, mde, seeds_needed, seed_mde


def test_holm_worked_example():
    # m = 4 (None does not count); sorted: d .005, a .01, c .03, b .04
    # -> d 4*.005 = .02; a max(.02, 3*.01) = .03; c max(.03, 2*.03) = .06; b max(.06, .04) = .06
    got = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005, "e": None})
    assert got.keys() == {"a", "b", "c", "d", "e"}
    assert got["e"] is None
    for name, want in {"a": 0.03, "b": 0.06, "c": 0.06, "d": 0.02}.items():
        assert got[name] == pytest.approx(want)
    assert holm({"x": 0.5, "y": 0.6}) == {"x": 1.0, "y": 1.0}  # capped at 1
    assert holm({"x": 0.04}) == {"x": 0.04}
    assert holm({}) == {} and holm({"x": None}) == {"x": None}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=8))
def test_holm_is_monotone_capped_and_not_below_raw(ps):
    got = holm({str(i): p for i, p in enumerate(ps)})
    pairs = sorted((p, got[str(i)]) for i, p in enumerate(ps))
    adjusted = [q for _, q in pairs]
    assert adjusted == sorted(adjusted)
    assert all(p <= q <= 1 for p, q in pairs)


def test_mde_numbers():
    assert mde(1.0) == pytest.approx(1.959964 + 0.841621, abs=1e-5)  # 2.8016
    assert mde(1.0) == pytest.approx(2.8016, abs=1e-4)
    assert mde(0.5, alpha=0.01, power=0.9) == pytest.approx(0.5 * (2.575829 + 1.281552), abs=1e-5)
    assert mde(1.0, df=4) == pytest.approx(2.776445 + 0.940965, abs=1e-5)
    assert mde(None) is None and mde(float("nan")) is None and mde(float("inf")) is None
    assert mde(1.0, df=0) is None
    assert mde(0.0) == 0.0


def test_seeds_needed_against_direct_search():
    z = 1.959964 + 0.841621
    for target, sd_seed, se_test in [(2.0, 2.0, 0.5), (3.0, 4.0, 0.8), (1.5, 1.0, 0.3)]:
        direct = next(
            n for n in range(1, 10_000) if z * math.sqrt(sd_seed**2 / n + se_test**2) <= target
        )
        assert seeds_needed(target, sd_seed, se_test) == direct
    assert seeds_needed(2.0, 2.0, 0.5) == 16  # 4 / ((2 / 2.8016)^2 - 0.25) = 15.4
    assert seeds_needed(2.0, 2.0, 0.5, max_seeds=15) is None
    assert seeds_needed(2.0, 2.0, 1.0) is None  # 2.8016 * 1.0 > 2 already from the test set
    assert seeds_needed(10.0, 2.0, 0.5) == 1
    assert seeds_needed(2.0, None, 0.5) is None and seeds_needed(2.0, 1.0, None) is None


def test_seed_mde_recovers_the_paired_t_test_se():
    method = {0: 91.0, 1: 90.2, 2: 92.1, 3: 90.9, 4: 91.5}
    ref = {0: 90.1, 1: 90.0, 2: 90.7, 3: 90.6, 4: 89.8}
    d = np.array([method[s] - ref[s] for s in method])
    se = d.std(ddof=1) / math.sqrt(5)
    want = (stats.t.ppf(0.975, 4) + stats.t.ppf(0.8, 4)) * se
    assert seed_mde(compare(method, ref)) == pytest.approx(want, rel=1e-9)
    assert seed_mde(compare({0: 1.0}, {0: 0.5})) is None


# ------------------------------------------------------------------ across the tasks of a study


def _task(name: str, n: int, better: float, worse: float, seed: int, metric: str = "accuracy"):
    """A task on which the method is right on a ``better`` share of examples, the reference on
    ``worse`` (5 seeds each)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    draw = lambda share: {s: np.where(rng.random(n) < share, y, 1 - y) for s in range(1, 6)}  # noqa: E731
    return TaskPredictions(name, metric, y, draw(better), draw(worse))


def test_study_bootstrap_averages_the_tasks_paired_differences():
    tasks = [_task("a", 400, 0.8, 0.7, 1), _task("b", 300, 0.75, 0.7, 2, "f1")]
    r = study_bootstrap(tasks, n_boot=500)
    for t in tasks:  # each task's difference is its paired bootstrap's observed one
        assert r["per_task"][t.task] == pytest.approx(
            paired_bootstrap(t.preds, t.ref_preds, t.labels, t.metric, n_boot=10)["diff"]
        )
    assert r["diff"] == pytest.approx(sum(r["per_task"].values()) / 2)
    assert r["ci_low"] <= r["diff"] <= r["ci_high"]
    assert r["fixed_tasks"]["ci_low"] <= r["diff"] <= r["fixed_tasks"]["ci_high"]
    assert (r["n_tasks"], r["n_boot"]) == (2, 500)
    assert r == study_bootstrap(tasks, n_boot=500)  # deterministic
    # both tasks clearly favour the method: the fixed-task interval excludes 0
    assert r["fixed_tasks"]["ci_low"] > 0 and r["fixed_tasks"]["p"] < 0.01


def test_identical_predictions_differ_by_exactly_zero():
    t = _task("a", 100, 0.8, 0.8, 3)
    same = TaskPredictions("a", "accuracy", t.labels, t.preds, t.preds)
    r = study_bootstrap([same, same], n_boot=200)
    assert r["diff"] == 0 and r["ci_low"] == 0 and r["ci_high"] == 0 and r["p"] == 1.0
    assert r["wilcoxon"] == {"positive": 0, "negative": 0, "p": None, "min_p": None}


def test_resampling_tasks_widens_the_interval_when_tasks_disagree():
    # +10 points on one task, -10 on the other: sure per task, unsure across tasks
    tasks = [_task("up", 2000, 0.8, 0.7, 4), _task("down", 2000, 0.7, 0.8, 5)]
    r = study_bootstrap(tasks, n_boot=1000)
    width = r["ci_high"] - r["ci_low"]
    fixed = r["fixed_tasks"]["ci_high"] - r["fixed_tasks"]["ci_low"]
    assert width > 3 * fixed
    assert r["ci_low"] < -0.05 and r["ci_high"] > 0.05  # task draws {up, up} and {down, down}


def test_wilcoxon_over_tasks_by_hand():
    tasks = [_task(str(i), 300, 0.8, 0.7, 10 + i) for i in range(3)]
    w = study_bootstrap(tasks, n_boot=50)["wilcoxon"]
    # three positive differences: the exact two-sided signed-rank p is 2 / 2^3 = 0.25, which
    # is also the smallest p three tasks can give
    assert w == {"positive": 3, "negative": 0, "p": pytest.approx(0.25), "min_p": 0.25}
    one = study_bootstrap(tasks[:1], n_boot=50)["wilcoxon"]
    assert one["p"] is None and one["positive"] == 1


def test_study_bootstrap_rejects_no_tasks_and_no_common_seed():
    with pytest.raises(ValueError, match="no tasks"):
        study_bootstrap([])
    t = _task("a", 50, 0.8, 0.7, 6)
    apart = TaskPredictions("a", "accuracy", t.labels, {1: t.preds[1]}, {2: t.ref_preds[2]})
    with pytest.raises(ValueError, match="a: the two methods have no seed in common"):
        study_bootstrap([apart])
