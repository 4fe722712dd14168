"""The comparison report: statistics on known numbers, verdicts, a report built end to end from a
tiny synthetic bench (re-runs, MLflow, plots, markdown, results.json), saved students, the CLI."""

from __future__ import annotations

import json
import math
import os
from argparse import Namespace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from scipy import stats
from torch.nn import functional as F

from ckd_tune import report
from ckd_tune.benches import BENCHES, Bench, PreparedBench, Profile
from ckd_tune.config import TrainConfig
from ckd_tune.errors import NonFiniteLossError
from ckd_tune.report import (
    ReportSetup,
    analyse,
    compare,
    describe,
    load_student,
    make_report,
    overall_verdict,
    render_markdown,
    save_student,
    schedule_curves,
    search_trace,
    verdict,
)
from ckd_tune.report.cli import _find_summary_run as find_summary_run
from ckd_tune.report.reruns import RerunJob
from ckd_tune.search import MethodSummary, write_summary
from ckd_tune.teacher import CachedTeacher, Teacher
from ckd_tune.train import evaluate
from tests.conftest import TinyNet, make_points_task

PNG = b"\x89PNG\r\n\x1a\n"
METHODS = ("ckd", "kd", "annealing_kd", "none")
PROFILE = Profile(
    "smoke", train_size=64, val_size=16, test_size=16, epochs=3, teacher_epochs=1,
    num_samples=3, seeds=2, batch_size=16,
)  # fmt: skip
SECTIONS = (
    "## Setup",
    "## Results",
    "## Statistical comparison vs vanilla KD (kd)",
    "## Search budget",
    "## Plots",
    "## Best models",
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
    assert report.short_verdict(c) == "no significant difference"


def test_verdict_with_fewer_than_two_seeds_says_the_test_cannot_be_done():
    c = compare({0: 0.9}, {0: 0.8}, name="ckd")
    assert not c["testable"] and c["p_paired"] is None and c["p_welch"] is None
    assert c["mean_diff"] == pytest.approx(0.1)
    assert "the test cannot be done with 1 paired seed(s)" in verdict(c)
    assert report.short_verdict(c) == "not testable (n < 2)"


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


# ------------------------------------------------------------------ curves


def test_search_trace_interleaves_concurrent_trials_by_time():
    trial_a = [(100, 1, 0.5), (300, 2, 0.6), (500, 3, 0.6)]
    trial_b = [(200, 1, 0.7), (400, 2, 0.65), (400, 2, 0.65)]  # a replayed epoch counts once
    assert search_trace([trial_a, trial_b]) == [
        [1, 0.5], [2, 0.7], [3, 0.7], [4, 0.7], [5, 0.7],
    ]  # fmt: skip
    assert search_trace([]) == []


def test_schedule_curves_cover_scheduled_methods_only():
    base = TrainConfig(epochs=4, t_max=5.0)
    curves = schedule_curves(
        {
            "ckd": base.replace(method="ckd").to_flat(),
            "annealing_kd": base.replace(method="annealing_kd").to_flat(),
            "kd": base.replace(method="kd").to_flat(),
            "none": base.replace(method="none").to_flat(),
        },
        points=11,
    )
    assert set(curves) == {"ckd", "annealing_kd"}
    ckd = curves["ckd"]
    assert set(ckd) == {"progress", "T", "phi", "psi"} and len(ckd["T"]) == 11
    assert ckd["T"][0] == 5.0 and ckd["T"][-1] == 1.0 and ckd["psi"][0] == 0.0
    assert curves["annealing_kd"]["psi"][-1] == 1.0


# ------------------------------------------------------------------ a synthetic bench


def build_tiny(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet()


def make_prepared() -> PreparedBench:
    data = make_points_task()
    g = torch.Generator().manual_seed(7)
    logits = {}
    for split in ("train", "val", "test"):
        labels = torch.as_tensor(data.split(split).labels)
        noise = torch.randn(len(labels), 3, generator=g)
        logits[split] = F.one_hot(labels, 3).float() * 4 + noise
    metrics = {s: data.metric(logits[s].numpy(), data.split(s).labels) for s in ("val", "test")}
    teacher = Teacher("synthetic teacher", "fp-test", metrics, logits)
    return PreparedBench(
        bench="points",
        task="points",
        profile=PROFILE,
        data=data,
        teacher=teacher,
        teacher_signal=CachedTeacher(logits["train"]),
        build_student=build_tiny,
        base_config=TrainConfig(epochs=3, batch_size=16, lr=1e-2),
    )


def make_summaries() -> list[MethodSummary]:
    base = TrainConfig(epochs=3, batch_size=16, lr=1e-2)
    configs = {
        "ckd": base.replace(method="ckd", lr=2e-2, t_max=4.0, margin=0.1, psi_shape="cosine"),
        "kd": base.replace(method="kd", kd_alpha=0.7),
        "none": base.replace(method="none"),
    }
    out = []
    for i, method in enumerate(METHODS):
        if method == "annealing_kd":
            out.append(MethodSummary(method, "failed", None, {}, None, None, 3, 3, 2, 4.0))
        else:
            config = configs[method].to_flat()
            out.append(
                MethodSummary(method, "ok", 0.7 + 0.01 * i, config, f"t{i}", None, 3, 0, 7, 12.5)
            )
    return out


def add_trial_runs(client: MlflowClient, experiment_id: str, sweep: str) -> None:
    """Three fake trial runs per method, two epochs each, overlapping in time."""
    t0 = 1_700_000_000_000
    for m, method in enumerate(METHODS):
        for i in range(3):
            start = t0 + 1000 * i
            tags = {"sweep": sweep, "role": "trial", "method": method, "ray_trial_id": f"{m}{i}"}
            run = client.create_run(experiment_id, start_time=start, tags=tags)
            metrics = [
                Metric("best_val_score", 0.5 + 0.1 * i + 0.01 * e + 0.02 * m, start + 1500 * e, e)
                for e in (1, 2)
            ]
            client.log_batch(run.info.run_id, metrics=metrics)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A report over the synthetic bench, re-runs in this process, MLflow in sqlite.

    Three seeds; the re-run of ``none`` with seed 2 hits a non-finite loss.
    """
    tmp = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(
        "ckd_tune/points/points", artifact_location=(tmp / "mlartifacts").as_uri()
    )
    sweep = "points-points-smoke-test"
    add_trial_runs(client, experiment_id, sweep)
    summary_run = client.create_run(
        experiment_id, tags={"sweep": sweep, "role": "summary"}
    ).info.run_id
    prepared = make_prepared()
    setup = ReportSetup(
        sweep=sweep,
        report_dir=tmp / sweep / "report",
        seed=0,
        seeds=3,
        epochs=3,
        profile="smoke",
        num_samples=3,
        searcher="tpe",
        scheduler="asha",
        experiment_id=experiment_id,
        summary_run=summary_run,
        tracking_uri=uri,
    )
    import ckd_tune.train

    real_train = ckd_tune.train.train

    def flaky(config, *args, **kwargs):
        if config.method == "none" and config.seed == 2:
            raise NonFiniteLossError("loss became nan at epoch 1, step 3")
        return real_train(config, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ckd_tune.train, "train", flaky)
        results = make_report(setup, prepared, make_summaries(), client)
    return SimpleNamespace(
        results=results,
        dir=setup.report_dir,
        client=client,
        experiment_id=experiment_id,
        summary_run=summary_run,
        prepared=prepared,
        sweep=sweep,
        uri=uri,
        tmp=tmp,
    )


def test_report_files_sections_and_methods(built):
    files = ["report.md", "results.json", *report.PLOTS.values()]
    for name in files:
        assert (built.dir / name).is_file(), name
    for name in report.PLOTS.values():
        assert (built.dir / name).read_bytes()[:8] == PNG
    md = (built.dir / "report.md").read_text()
    for heading in SECTIONS:
        assert heading in md
    for method in METHODS:
        assert f"| {method} |" in md
    for name in report.PLOTS.values():
        assert f"]({name})" in md
    assert "| annealing_kd | **FAILED**" in md
    assert "none: seeds 2" in md  # the failed re-run is reported, not hidden
    assert "| teacher |" in md and "synthetic teacher" in md
    assert "load_student(" in md and "**Verdict:**" in md
    assert "no significant difference" in md or "significantly" in md


def test_results_json_is_complete(built):
    results = json.loads((built.dir / "results.json").read_text())
    methods = results["methods"]
    assert list(methods) == list(METHODS)
    assert methods["annealing_kd"]["status"] == "failed"
    assert methods["annealing_kd"]["seeds"] == [] and methods["annealing_kd"]["model"] is None
    for name in ("ckd", "kd", "none"):
        m = methods[name]
        assert m["status"] == "ok"
        assert [r["seed"] for r in m["seeds"]] == [1, 2, 3]  # the same seeds for every method
        assert m["test"]["n"] == (2 if name == "none" else 3) and m["test"]["ci_low"] is not None
        assert all(len(r["history"]) == 3 for r in m["seeds"] if r["status"] == "ok")
        assert 0.0 <= m["test"]["mean"] <= 1.0
        assert m["search"]["trials"] == 3 and m["search"]["trial_epochs"] == 7
    assert methods["ckd"]["config_changes"]["psi_shape"] == "cosine"
    assert set(results["comparisons"]["kd"]) == {"ckd", "none"}
    assert set(results["comparisons"]["none"]) == {"ckd", "kd"}
    assert all("verdict" in c for c in results["comparisons"]["kd"].values())
    assert results["teacher"]["test"] == built.prepared.teacher.metrics["test"]["accuracy"]
    assert (
        methods["none"]["failed_seeds"] == [2] and methods["none"]["seeds"][1]["status"] == "failed"
    )
    assert results["comparisons"]["kd"]["none"]["n_paired"] == 2  # paired over the common seeds
    assert results["setup"]["search_seed"] == 0  # the re-runs never replay the search's seed
    assert results["setup"]["seeds"] == [1, 2, 3] and results["setup"]["student"].startswith(
        "TinyNet"
    )
    assert set(results["schedules"]) == {"ckd"}
    traces = results["search_traces"]
    assert set(traces) == set(METHODS)
    for m, method in enumerate(METHODS):
        trace = traces[method]
        assert [p[0] for p in trace] == list(range(1, 7))  # 3 trials x 2 epochs
        ys = [p[1] for p in trace]
        assert ys == sorted(ys) and ys[-1] == pytest.approx(0.72 + 0.02 * m)


def test_reruns_and_artifacts_are_in_mlflow(built):
    runs = built.client.search_runs(
        [built.experiment_id], f"tags.role = 'rerun' and tags.sweep = '{built.sweep}'"
    )
    assert len(runs) == 12  # 3 methods x 3 seeds + the positive control's 3
    assert {(r.data.tags["arm"], r.data.tags["seed"]) for r in runs} == {
        (m, s) for m in ("ckd", "kd", "none", report.CONTROL) for s in ("1", "2", "3")
    }
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert [(r.data.tags["arm"], r.data.tags["seed"]) for r in failed] == [("none", "2")]
    assert "nan" in failed[0].data.tags["failure_reason"]
    for r in runs:
        if r in failed:
            continue
        assert r.info.status == "FINISHED"
        assert r.data.tags["bench"] == "points" and r.data.tags["task"] == "points"
        assert {"test_accuracy", "test_score", "val_score"} <= set(r.data.metrics)
        history = built.client.get_metric_history(r.info.run_id, "val_score")
        assert sorted(m.step for m in history) == [1, 2, 3]
    artifacts = {a.path for a in built.client.list_artifacts(built.summary_run, "report")}
    assert {
        f"report/{n}" for n in ["report.md", "results.json", *report.PLOTS.values()]
    } <= artifacts
    summary = built.client.get_run(built.summary_run).data.metrics
    assert summary["ckd.test_mean"] == built.results["methods"]["ckd"]["test"]["mean"]
    assert summary["none.test_seeds"] == 2 and "annealing_kd.test_mean" not in summary
    assert "ckd.vs_kd.p_paired" in summary


def test_saved_students_load_with_one_call(built):
    data = built.prepared.data
    for method in ("ckd", "kd", "none"):
        info = built.results["methods"][method]["model"]
        seeds = built.results["methods"][method]["seeds"]
        assert info["val_score"] == max(r.get("val_score", 0) for r in seeds)  # by validation
        path = Path(info["path"])
        assert path == built.dir / "models" / method
        model = load_student(path)
        assert isinstance(model, TinyNet) and not model.training
        saved = torch.load(path / "model.pt", weights_only=True)
        for key, value in model.state_dict().items():
            assert torch.equal(value, saved[key])
        assert evaluate(model, data, "test")["accuracy"] == info["test_score"]
        meta = json.loads((path / "student.json").read_text())
        assert meta["format"] == "torch" and meta["method"] == method


# ------------------------------------------------------------------ failures


def test_failed_rerun_is_recorded_per_seed(monkeypatch):
    import ckd_tune.train

    real_train = ckd_tune.train.train

    def flaky(config, *args, **kwargs):
        if config.method == "kd" and config.seed == 1:
            raise NonFiniteLossError("loss became nan at epoch 1, step 2")
        return real_train(config, *args, **kwargs)

    monkeypatch.setattr(ckd_tune.train, "train", flaky)
    prepared = make_prepared()
    kd = make_summaries()[1]
    records = [report.rerun(prepared, RerunJob("kd", "kd", kd.best_config, seed)) for seed in (0, 1)]
    assert records[0]["status"] == "ok" and "state" in records[0]
    assert records[1]["status"] == "failed" and "nan" in records[1]["error"]
    records[0].pop("state")
    results = analyse(
        [asdict_summary(s) for s in make_summaries()],
        {"kd": records, "ckd": [{**records[0], "method": "ckd"}]},
        metric="accuracy",
    )
    kd_result = results["methods"]["kd"]
    assert kd_result["status"] == "ok" and kd_result["failed_seeds"] == [1]
    assert kd_result["test"]["n"] == 1
    assert results["methods"]["none"]["status"] == "reruns_failed"
    assert "cannot be done" in results["comparisons"]["kd"]["ckd"]["verdict"]
    results.update(sweep="s", setup=_setup(), plots={})
    md = render_markdown(results)
    assert "kd: seeds 1" in md and "**all re-runs failed**" in md and "**FAILED**" in md


def asdict_summary(s: MethodSummary) -> dict:
    from dataclasses import asdict

    return asdict(s)


def _setup() -> dict:
    return {"bench": "points", "task": "points", "profile": "smoke", "seeds": [0, 1], "epochs": 3}


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


# ------------------------------------------------------------------ the CLI


def test_cli_bad_input_exits_2_with_one_line(built, tmp_path, capsys):
    missing_db = f"sqlite:///{tmp_path / 'none.db'}"
    assert report.main(["--experiment", "x", "--tracking-uri", missing_db]) == 2
    assert report.main(["--experiment", "nope", "--tracking-uri", built.uri]) == 2
    built.client.create_experiment("empty")
    assert report.main(["--experiment", "empty", "--tracking-uri", built.uri]) == 2
    args = ["--experiment", "ckd_tune/points/points", "--tracking-uri", built.uri]
    assert report.main([*args, "--sweep", "other"]) == 2
    assert report.main([*args, "--seeds", "0"]) == 2
    assert report.main(args) == 2  # the latest summary run has no summary.json
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 6 and all(line.startswith("ckd_tune.report: error: ") for line in err)
    assert "no MLflow experiment named 'nope'" in err[1]
    assert "no summary run" in err[2]
    assert "has no summary.json" in err[5]


def test_latest_summary_run_is_chosen(built):
    exp = built.client.create_experiment("two-sweeps")
    for i, sweep in enumerate(("old", "new")):
        built.client.create_run(exp, start_time=1_000 + i, tags={"sweep": sweep, "role": "summary"})
    args = Namespace(experiment="two-sweeps", tracking_uri=built.uri, sweep=None, seeds=None)
    assert find_summary_run(args)[2].data.tags["sweep"] == "new"
    args.sweep = "old"
    assert find_summary_run(args)[2].data.tags["sweep"] == "old"


def test_cli_rebuilds_the_sweep_from_mlflow(built, monkeypatch, capsys):
    """write_summary records the bench request; the CLI re-prepares the bench from it."""
    seen = []

    def prepare(request):
        seen.append(request)
        return make_prepared()

    bench = Bench(
        "points", ("points",), "points", {"smoke": PROFILE}, prepare, lambda: None, "glue"
    )
    monkeypatch.setitem(BENCHES, "points", bench)
    client, prepared = built.client, make_prepared()
    experiment_id = client.create_experiment("cli-experiment")
    sweep_dir = built.tmp / "runs" / "cli-sweep"
    plan = SimpleNamespace(
        sweep="cli-sweep",
        sweep_dir=sweep_dir,
        num_samples=3,
        epochs=3,
        methods=list(METHODS),
        request=SimpleNamespace(
            data_dir=None, teacher=None, student=None, cache_dir=built.tmp / "cache"
        ),
        args=SimpleNamespace(searcher="random", scheduler="fifo", seed=5, profile="smoke"),
    )
    summary_run = write_summary(plan, prepared, make_summaries(), client, experiment_id)
    params = client.get_run(summary_run).data.params
    assert params["bench"] == "points" and params["seed"] == "5" and params["epochs"] == "3"
    rc = report.main(["--experiment", "cli-experiment", "--tracking-uri", built.uri, "--no-ray"])
    assert rc == 0, capsys.readouterr().err
    assert len(seen) == 1 and seen[0].cache_dir == built.tmp / "cache"
    assert seen[0].bench == "points" and seen[0].profile == "smoke" and seen[0].data_dir is None
    results = json.loads((sweep_dir / "report" / "results.json").read_text())
    assert results["setup"]["seeds"] == [6, 7]  # the profile's 2 seeds, after the sweep's seed
    assert results["setup"]["searcher"] == "random" and results["setup"]["scheduler"] == "fifo"
    assert results["methods"]["annealing_kd"]["status"] == "failed"
    assert all(len(results["methods"][m]["seeds"]) == 2 for m in ("ckd", "kd", "none"))
    assert load_student(sweep_dir / "report" / "models" / "kd") is not None
    runs = client.search_runs([experiment_id], "tags.role = 'rerun'")
    assert len(runs) == 8 and {r.data.tags["seed"] for r in runs} == {"6", "7"}  # + control
    artifacts = {a.path for a in client.list_artifacts(summary_run, "report")}
    assert "report/report.md" in artifacts


@pytest.mark.slow  # ~15 s: starts a local Ray and its workers
def test_reruns_run_as_ray_tasks(monkeypatch):
    """With Ray up, re-runs are Ray tasks (bench put once); a crashed task is a failed seed."""
    import ray

    here = Path(__file__).resolve().parent  # Ray's workers must import this module and conftest
    paths = [str(here), str(here.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    prepared = make_prepared()
    kd = make_summaries()[1].best_config
    bad = {**kd, "psi_shape": "no-such-shape"}  # TrainConfig raises inside the task
    records = []
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        jobs = [RerunJob("kd", "kd", kd, 0), RerunJob("kd", "kd", kd, 1), RerunJob("kd", "kd", bad, 2)]
        report.run_reruns(prepared, jobs, records.append)
        info = report.machine_info()
    finally:
        ray.shutdown()
    by_seed = {r["seed"]: r for r in records}
    assert by_seed[0]["status"] == by_seed[1]["status"] == "ok"
    assert by_seed[2]["status"] == "failed" and "psi_shape" in by_seed[2]["error"]
    local = report.rerun(prepared, RerunJob("kd", "kd", kd, 1))
    assert by_seed[1]["test_score"] == local["test_score"]  # same seed, same numbers
    assert all(torch.equal(by_seed[1]["state"][k], v) for k, v in local["state"].items())
    assert info["ray"]["CPU"] == 1


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
    assert ckd["mde_seed_only"] is not None
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
    reruns = {"kd": _records("kd", labels, 0.7), report.CONTROL: _records(report.CONTROL, labels, 0.7)}
    results = analyse([_summary("kd")], reruns, metric="accuracy", task="sst2", labels=labels)
    control = results["positive_control"]
    assert not control["passed"] and "FAILED" in control["verdict"]
    results.update(sweep="s", setup=_setup(), plots={})
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
    results.update(sweep="s", setup=_setup(), plots={})
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


def test_reports_name_no_path_of_the_machine(tmp_path, monkeypatch):
    from ckd_tune.report.formatting import redact_uri, shown_path

    monkeypatch.chdir(tmp_path)
    assert shown_path(tmp_path / "ckd_runs" / "s" / "report") == "ckd_runs/s/report"
    assert redact_uri(f"sqlite:///{tmp_path}/mlflow.db") == "sqlite:///mlflow.db"
    assert redact_uri("http://user:secret@host:5000") == "http://***@host:5000"
