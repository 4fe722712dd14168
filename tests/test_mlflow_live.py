"""A sweep as MLflow users see it, through a real ``mlflow server`` (served artifacts) on
127.0.0.1: its REST API and, when Chromium is installed, its UI in a headless browser.

One smoke sweep (kd and ckd, with the report and ``--register-model``) logs to the server; the
tests read back the experiment's kind, the run names and their nesting, the datasets each run
used, the per-term loss metrics, the best students as MLflow models that load and predict, and
the registered model.

What MLflow 3.17's UI does with nested runs (found by rendering): the link the sweep prints
(``#/experiments/<id>?workflowType=machine_learning``) opens the model-training runs table
sorted by creation time, the sweep's run *collapsed* (its children are not in the DOM until
expanded; the footer counts them). Sorted by anything else (the second link the sweep prints,
``#/experiments/<id>/runs?...&orderByKey=metrics.`best_val_score`&orderByAsc=false``) it lists
every run flat, children included. Without ``workflowType=machine_learning`` a fresh browser
opens the GenAI overview, whatever the experiment's kind tag.

Set ``CKD_TUNE_SCREENSHOT=<path.png>`` to also write the screenshot there (how the README's
screenshot is made); otherwise the test writes only under pytest's tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser_support import dom_texts, dom_titles, find_browser, render_dom, screenshot
from tests.mlflow_server import mlflow_server, rest
from tests.search_support import (
    EXPERIMENT,
    cache_dir_fixture,  # noqa: F401  (the cache_dir fixture)
    cli,
    ok,
)

pytestmark = pytest.mark.slow

METHODS = ("kd", "ckd")
SEEDS = (1, 2)  # the smoke profile's 2 re-run seeds after the search's seed 0
REGISTERED = "sst2-student"
SIZES = {"train": 64, "val": 32, "test": 64}  # the smoke profile's GLUE splits
PNG = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Served:
    url: str
    stdout: str
    experiment: dict[str, Any]
    runs: list[dict[str, Any]]
    results: dict[str, Any]
    report_dir: Path
    root: Path
    glue_dir: Path

    @property
    def experiment_id(self) -> str:
        return self.experiment["experiment_id"]

    def by_name(self) -> dict[str, dict[str, Any]]:
        return {tags(r)["mlflow.runName"]: r for r in self.runs}


def tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def metrics(run: dict[str, Any]) -> dict[str, float]:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


@pytest.fixture(scope="module")
def served(tmp_path_factory, cache_dir, glue_dir) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("live")
    (root / "work").mkdir()
    with mlflow_server(root / "server") as url:
        args = ["--bench", "glue", "--profile", "smoke", "--data-dir", str(glue_dir)]
        args += ["--methods", ",".join(METHODS), "--sweep", "live", "--output", str(root / "runs")]
        args += ["--cache-dir", str(cache_dir), "--tracking-uri", url]
        args += ["--register-model", REGISTERED]
        proc = cli(args, cwd=root / "work")
        ok(proc)
        experiment = rest(url, f"experiments/get-by-name?experiment_name={EXPERIMENT}")
        experiment = experiment["experiment"]
        found = rest(
            url,
            "runs/search",
            {"experiment_ids": [experiment["experiment_id"]], "max_results": 500},
        )["runs"]
        report_dir = root / "runs" / "live" / "report"
        results = json.loads((report_dir / "results.json").read_text())
        yield Served(url, proc.stdout, experiment, found, results, report_dir, root, glue_dir)


def test_experiment_is_a_model_training_one_with_served_artifacts(served: Served) -> None:
    kind = {t["key"]: t["value"] for t in served.experiment["tags"]}["mlflow.experimentKind"]
    assert kind == "custom_model_development"
    # the server stores the artifacts (served), not a local path of the driver
    assert served.experiment["artifact_location"].startswith("mlflow-artifacts:")
    assert list((served.root / "server" / "mlartifacts").rglob("MLmodel"))
    link = f"{served.url}/#/experiments/{served.experiment_id}?workflowType=machine_learning"
    assert f"runs table: {link}" in served.stdout


def test_runs_are_named_for_people_and_nested_under_the_sweep(served: Served) -> None:
    runs = served.by_name()
    parent = runs.pop("sweep glue/sst2 smoke")
    parent_id = parent["info"]["run_id"]
    assert tags(parent)["role"] == "summary" and parent["info"]["status"] == "FINISHED"
    trials = {f"{m}-t{i:02d}" for m in METHODS for i in (1, 2)}
    reruns = {f"{arm}-seed{s}" for arm in (*METHODS, "kd_shuffled_teacher") for s in SEEDS}
    assert set(runs) == trials | reruns
    for name, run in runs.items():
        run_tags = tags(run)
        assert run_tags["mlflow.parentRunId"] == parent_id, name
        assert run_tags["method"] == name.split("-")[0].replace("_shuffled_teacher", "")
        assert run_tags["role"] == ("trial" if name in trials else "rerun")
        assert {"bench", "task", "sweep", "seed"} <= set(run_tags), name
        assert run["info"]["status"] == "FINISHED", name


def test_each_run_lists_the_datasets_it_used(served: Served) -> None:
    source = str((served.glue_dir / "SST-2").resolve())
    digests: dict[str, set[str]] = {}
    for name, run in served.by_name().items():
        if name.startswith("sweep "):
            continue
        inputs = run["inputs"]["dataset_inputs"]
        seen = {}
        for item in inputs:
            dataset = item["dataset"]
            context = {t["key"]: t["value"] for t in item["tags"]}["mlflow.data.context"]
            seen[dataset["name"]] = context
            assert dataset["source_type"] == "local"
            assert json.loads(dataset["source"]) == {"uri": source}
            split = dataset["name"].rsplit("/", 1)[1]
            assert json.loads(dataset["profile"]) == {"num_rows": SIZES[split]}
            digests.setdefault(dataset["name"], set()).add(dataset["digest"])
        expected = {"glue/sst2/train": "training", "glue/sst2/val": "validation"}
        if tags(run)["role"] == "rerun":
            expected["glue/sst2/test"] = "test"
        assert seen == expected, name
    # one digest per split, three different splits
    assert all(len(d) == 1 for d in digests.values()), digests
    assert len({next(iter(d)) for d in digests.values()}) == 3


def test_loss_terms_and_schedules_are_logged_per_epoch(served: Served) -> None:
    runs = served.by_name()
    terms = {"kd": {"loss_ce", "loss_kd", "T"}, "ckd": {"loss_ce", "loss_hinge_mse", "T", "psi"}}
    for method, expected in terms.items():
        run = runs[f"{method}-t01"]
        logged = metrics(run)
        assert expected <= set(logged), (method, sorted(logged))
        assert not {k for k in logged if k.startswith("train_loss_")}
        run_id = run["info"]["run_id"]
        history = rest(served.url, f"metrics/get-history?run_id={run_id}&metric_key=loss_ce")
        assert [m["step"] for m in history["metrics"]] == [1, 2]  # step = epoch
    assert "loss_hinge_mse" not in metrics(runs["kd-t01"])  # a name means one thing


def test_best_students_are_mlflow_models_that_load_and_predict(served: Served, monkeypatch) -> None:
    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", served.url)
    runs = {r["info"]["run_id"]: tags(r) for r in served.runs}
    texts = ["a gripping , funny film .", "dull and lifeless ."]
    for method in METHODS:
        model = served.results["methods"][method]["model"]
        uri = model["mlflow_uri"]
        run_id = uri.split("/")[1]
        assert runs[run_id]["mlflow.runName"] == f"{method}-seed{model['seed']}"
        predictions = mlflow.pyfunc.load_model(uri).predict(texts)
        assert len(predictions) == 2 and set(predictions.columns) >= {"label", "score"}
        assert ((predictions["score"] > 0) & (predictions["score"] <= 1)).all()
    registered = rest(served.url, f"registered-models/get?name={REGISTERED}")["registered_model"]
    (version,) = registered["latest_versions"]
    best = max(METHODS, key=lambda m: served.results["methods"][m]["model"]["val_score"])
    assert served.results["registered_model"]["method"] == best
    assert version["run_id"] == served.results["methods"][best]["model"]["mlflow_uri"].split("/")[1]
    loaded = mlflow.pyfunc.load_model(f"models:/{REGISTERED}/{version['version']}")
    assert len(loaded.predict(texts)) == 2


def test_report_names_no_path_of_this_machine(served: Served) -> None:
    report = (served.report_dir / "report.md").read_text()
    assert str(served.root) not in report and not re.search(r"`/(tmp|home|root)/", report)
    assert "| `models/kd` |" in report or "`models/kd`" in report
    assert 'load_student("models/' in report


# ------------------------------------------------------------------------------ in a browser


@pytest.fixture(scope="module")
def browser() -> str:
    path = find_browser()
    if path is None:
        pytest.skip("no Chromium/Chrome on PATH: apt-get install chromium")
    return path


def runs_table(dom: str, experiment_id: str) -> list[str]:
    """The page's texts, after checking it is the model-training runs table (not the GenAI
    overview, nor the app's empty shell)."""
    texts = dom_texts(dom)
    titles = dom_titles(dom)
    assert f"Runs - Experiment {experiment_id} - MLflow" in titles, (titles, texts[:40])
    assert not any(t.startswith("Overview") for t in titles), titles
    assert "Run Name" in texts, texts[:60]  # the table's first column
    assert 'role="grid"' in dom  # the runs table (ag-grid) itself
    return texts


def printed_link(served: Served, label: str) -> str:
    (line,) = [x for x in served.stdout.splitlines() if x.startswith(f"{label}: ")]
    return line.removeprefix(f"{label}: ")


def test_printed_link_opens_the_runs_table_with_the_sweep(served: Served, browser: str) -> None:
    texts = runs_table(render_dom(printed_link(served, "runs table")), served.experiment_id)
    assert "sweep glue/sst2 smoke" in texts
    assert f"{len(served.runs)} matching runs" in " ".join(texts)  # children collapsed, counted


def test_ranked_link_lists_every_trial_and_rerun(
    served: Served, browser: str, tmp_path: Path
) -> None:
    link = printed_link(served, "every run, best first")
    texts = runs_table(render_dom(link), served.experiment_id)
    assert {"kd-t01", "ckd-t02", "kd-seed1", "kd_shuffled_teacher-seed2"} <= set(texts), texts[:80]
    png = screenshot(link, tmp_path / "runs.png", size=(1400, 900))
    data = png.read_bytes()
    assert data.startswith(PNG) and len(data) > 30_000  # a blank page of this size is ~6 KB
    if target := os.environ.get("CKD_TUNE_SCREENSHOT"):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, target)
