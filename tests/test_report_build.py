"""The report built end to end over the synthetic bench (:func:`ckd_tune.report.build.make_report`):
its files and sections, results.json, the re-runs and artifacts in MLflow, the saved students."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ckd_tune import report
from ckd_tune.report import (
    load_student,
)
from ckd_tune.train import evaluate
from tests.conftest import TinyNet
from tests.report_support import (
    METHODS,
    PNG,
    SECTIONS,
    built_fixture,  # noqa: F401  (the built fixture)
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
    learned = report.PLOTS["learned_schedules"]  # written, shown only when a search learned one
    for name in report.PLOTS.values():
        assert (f"]({name})" in md) == (name != learned)
    assert "| annealing_kd | **FAILED**" in md
    assert "none: seeds 2" in md  # the failed re-run is reported, not hidden
    assert "| teacher |" in md and "synthetic teacher" in md
    assert "load_student(" in md and "**Verdict:**" in md
    assert f"**Verdict:** {built.results['verdict']}" in md  # the analysis's, not a stock phrase


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
        assert m["test"]["n"] == (2 if name == "none" else 3)
        assert m["test"]["ci_low"] < m["test"]["mean"] < m["test"]["ci_high"]
        assert all(len(r["history"]) == 3 for r in m["seeds"] if r["status"] == "ok")
        assert 0.0 <= m["test"]["mean"] <= 1.0
        assert m["search"]["trials"] == 3 and m["search"]["trial_epochs"] == 7
    assert methods["ckd"]["config_changes"]["lr"] == 2e-2  # against the bench's base config
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
    assert set(results["schedules"]) == {"ckd", "kd"}  # kd: its constant T
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
        assert info["path"] == f"models/{method}"  # relative to the report directory
        path = built.dir / info["path"]
        model = load_student(path)
        assert isinstance(model, TinyNet) and not model.training
        saved = torch.load(path / "model.pt", weights_only=True)
        for key, value in model.state_dict().items():
            assert torch.equal(value, saved[key])
        assert evaluate(model, data, "test")["accuracy"] == info["test_score"]
        meta = json.loads((path / "student.json").read_text())
        assert meta["format"] == "torch" and meta["method"] == method


def test_best_students_are_mlflow_models_and_the_best_is_registered(built, monkeypatch):
    """Each method's best student is an MLflow model of its re-run's run, predicting what the
    saved student predicts; the one with the best validation score is registered."""
    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", built.uri)  # what runs:/ URIs resolve against

    features = np.stack([built.prepared.data.test[i]["features"].numpy() for i in range(16)])
    methods = built.results["methods"]
    for method in ("ckd", "kd", "none"):
        info = methods[method]["model"]
        run_id = info["mlflow_uri"].split("/")[1]
        run = built.client.get_run(run_id)
        assert info["mlflow_uri"] == f"runs:/{run_id}/model"
        assert run.data.tags["arm"] == method and run.data.tags["seed"] == str(info["seed"])
        logged = mlflow.pyfunc.load_model(info["mlflow_uri"]).predict(features)
        with torch.no_grad():
            own = load_student(built.dir / info["path"])(torch.from_numpy(features)).numpy()
        np.testing.assert_allclose(logged, own, rtol=1e-5, atol=1e-6)
    registered = built.results["registered_model"]
    best = max(("ckd", "kd", "none"), key=lambda m: methods[m]["model"]["val_score"])
    assert registered == {
        "name": "points-student",
        "version": "1",
        "method": best,
        "uri": "models:/points-student/1",
    }
    (version,) = built.client.search_model_versions("name = 'points-student'")
    assert version.run_id == methods[best]["model"]["mlflow_uri"].split("/")[1]


def test_a_report_with_takd_reruns_it_on_the_assistant_and_shows_the_assistant(
    tmp_path, monkeypatch
):
    """Without MLflow: takd's re-runs distil from the assistant's logits, kd's from the
    teacher's; results.json and report.md carry the assistant's scores and one-time cost."""
    import ckd_tune.train
    from ckd_tune.config import TrainConfig
    from ckd_tune.search.summary import MethodSummary
    from tests.synthetic_bench import make_prepared

    prepared = make_prepared(assistant=True)
    shared = {"epochs": 2, "batch_size": 16, "lr": 1e-2}

    def summary(method: str) -> MethodSummary:
        config = TrainConfig.from_flat({**shared, "method": method}).to_flat()
        return MethodSummary(method, "ok", 0.7, config, "t1", None, 2, 0, 4, 3.0)

    summaries = [summary("kd"), summary("takd")]
    signals = []
    real_train = ckd_tune.train.train

    def spy(config, data, student, signal=None, **kwargs):
        signals.append((config.method, signal))
        return real_train(config, data, student, signal, **kwargs)

    monkeypatch.setattr(ckd_tune.train, "train", spy)
    setup = report.ReportSetup(sweep="points-takd", report_dir=tmp_path / "report", seed=0,
                               seeds=2, epochs=2, positive_control=False)  # fmt: skip
    report.make_report(setup, prepared, summaries)
    assert sorted(m for m, s in signals if s is prepared.assistant_signal) == ["takd", "takd"]
    assert sorted(m for m, s in signals if s is prepared.teacher_signal) == ["kd", "kd"]
    results = json.loads((setup.report_dir / "results.json").read_text())
    metrics = prepared.assistant.metrics
    assert results["assistant"] == {
        "name": "synthetic assistant",
        "scores": {s: metrics[s]["accuracy"] for s in ("train", "val", "test")},
        "train_seconds": 2.5,
        "reused": False,
        "used_by": ["takd"],
    }
    assert results["teacher"]["reused"] is False and results["teacher"]["train_seconds"] == 0.0
    md = (setup.report_dir / "report.md").read_text()
    assert "- **Teacher assistant** (what takd distils from): synthetic assistant;" in md
    assert f"| assistant | - | {metrics['val']['accuracy']:.4f} |" in md
    assert "assistant (used by takd only): 2 s of training (this sweep)." in md
