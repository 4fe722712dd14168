"""The cross-task report of a multi-task study (:mod:`ckd_tune.report.study`), over two tasks'
reports made by :func:`ckd_tune.report.make_report` on the synthetic bench."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from ckd_tune.report import ReportSetup, make_report
from ckd_tune.report.build import PREDICTIONS, load_predictions
from ckd_tune.report.study import main, make_study_report, render_study
from tests.report_support import METHODS, PNG, make_summaries
from tests.synthetic_bench import make_prepared

TASKS = ("sst2", "rte")
OK = ("ckd", "kd", "none")  # annealing_kd's search failed (make_summaries)


@pytest.fixture(scope="module", name="study")
def study_fixture(tmp_path_factory):
    """A study directory of two tasks (each the synthetic bench, 3 seeds), then its report
    logged to an MLflow run."""
    root = tmp_path_factory.mktemp("study") / "glue-study-smoke-x"
    root.mkdir()
    meta = {"bench": "glue", "tasks": list(TASKS), "profile": "smoke", "methods": list(METHODS)}
    (root / "study.json").write_text(json.dumps(meta))
    for task in TASKS:
        setup = ReportSetup(sweep=f"x/{task}", report_dir=root / task / "report", seed=0,
                            seeds=3, epochs=2, profile="smoke", num_samples=3)  # fmt: skip
        prepared = make_prepared()
        prepared.base_config = prepared.base_config.replace(epochs=2)
        make_report(setup, prepared, make_summaries())
    client = MlflowClient(f"sqlite:///{root.parent / 'mlflow.db'}")
    experiment = client.create_experiment("s", (root.parent / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    results = make_study_report(root, client=client, run_id=run_id, n_boot=300)
    return SimpleNamespace(root=root, results=results, client=client, run_id=run_id)


def test_each_report_keeps_its_reruns_test_predictions(study):
    labels, arms = load_predictions(study.root / "sst2" / "report" / PREDICTIONS)
    per_task = json.loads((study.root / "sst2" / "report" / "results.json").read_text())
    assert set(arms) == {*OK, "kd_shuffled_teacher"}
    assert sorted(arms["kd"]) == [1, 2, 3] and all(
        len(p) == len(labels) for p in arms["kd"].values()
    )
    scores = {s["seed"]: s["test_score"] for s in per_task["methods"]["kd"]["seeds"]}
    assert scores[2] == pytest.approx(float((arms["kd"][2] == labels).mean()))


def test_results_hold_every_task_and_the_aggregate(study):
    r = json.loads((study.root / "report" / "results.json").read_text())
    assert set(r["tasks"]) == set(TASKS) and r["tasks"]["rte"]["setup"]["task"] == "points"
    agg = r["aggregate"]
    assert agg["tasks"] == list(TASKS) and set(agg["methods"]) == set(OK)
    assert agg["incomplete"] == {"annealing_kd": list(TASKS)}
    for m, a in agg["methods"].items():
        means = [r["tasks"][t]["methods"][m]["test"]["mean"] for t in TASKS]
        assert a["mean"] == pytest.approx(sum(means) / 2)
        assert a["ci_low"] <= a["mean"] <= a["ci_high"]
    assert set(agg["comparisons"]) == {"kd", "none"}
    ckd = agg["comparisons"]["kd"]["ckd"]
    per_task = [r["tasks"][t]["comparisons"]["kd"]["ckd"]["bootstrap"]["diff"] for t in TASKS]
    assert ckd["diff"] == pytest.approx(sum(per_task) / 2)
    assert (ckd["method"], ckd["baseline"], ckd["n_tasks"]) == ("ckd", "kd", 2)
    assert ckd["test"].startswith("hierarchical bootstrap")
    family = [c for by in agg["comparisons"].values() for c in by.values()]
    assert len(family) == 2 + 2  # vs kd: ckd, none; vs none: ckd, kd (as in each task)
    assert all(c["p_holm"] >= c["p"] for c in family)
    control = agg["positive_control"]
    assert control["method"] == "kd" and control["baseline"] == "kd_shuffled_teacher"
    assert set(control["per_task_passed"]) == set(TASKS)
    assert agg["teacher"] == {t: r["tasks"][t]["teacher"]["test"] for t in TASKS}
    assert agg["verdict"].startswith("Across 2 tasks")


def test_report_md_is_the_papers_table_with_a_verdict(study):
    md = (study.root / "report" / "report.md").read_text()
    assert md == render_study(study.results)
    assert "| method | SST-2 (acc) | RTE (acc) | Avg |" in md
    assert "| teacher |" in md and "| kd_shuffled_teacher (positive control) |" in md
    assert "](forest.png)" in md and "[RTE](../rte/report/report.md)" in md
    assert "## Difference to vanilla KD (kd)" in md
    assert "## Difference to plain fine-tuning (none)" in md
    assert "annealing_kd is left out: it has no test score on SST-2, RTE" in md
    passed = study.results["aggregate"]["positive_control"]["per_task_passed"]
    assert ("Where it failed" in md) == (not all(passed.values()))
    assert f"**Verdict:** {study.results['aggregate']['verdict']}" in md
    assert str(study.root) not in md  # no path of this machine
    assert (study.root / "report" / "forest.png").read_bytes().startswith(PNG)


def test_the_study_run_gets_the_report(study):
    run = study.client.get_run(study.run_id)
    assert run.data.tags["verdict"] == study.results["aggregate"]["verdict"]
    assert set(run.data.metrics) == {f"{m}.mean_test_score" for m in OK}
    logged = {f.path for f in study.client.list_artifacts(study.run_id, "report")}
    assert {"report/report.md", "report/results.json", "report/forest.png"} <= logged


def test_the_cli_rewrites_the_report_and_answers_bad_input_in_one_line(study, tmp_path, capsys):
    before = (study.root / "report" / "results.json").stat().st_mtime_ns
    assert main([str(study.root), "--n-boot", "100"]) == 0
    assert (study.root / "report" / "results.json").stat().st_mtime_ns > before
    assert main([str(tmp_path)]) == 2
    assert ": not a study (no study.json)" in capsys.readouterr().err
    (tmp_path / "study.json").write_text(json.dumps({"tasks": ["sst2"]}))
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no results.json; finish the task's sweep first" in err and err.count("\n") == 1
    assert main([str(study.root), "--n-boot", "1"]) == 2
