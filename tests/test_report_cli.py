"""The report CLI, ``python -m ckd_tune.report`` (:mod:`ckd_tune.report.cli`): bad input, the
sweep's summary run found in MLflow, the bench rebuilt from what the search recorded."""

from __future__ import annotations

import json
from argparse import Namespace
from types import SimpleNamespace

from ckd_tune import report
from ckd_tune.benches import BENCHES, Bench
from ckd_tune.report import (
    load_student,
)
from ckd_tune.report.cli import _find_summary_run as find_summary_run
from ckd_tune.search.summary import write_summary
from ckd_tune.tracking import sweep_run
from tests.conftest import TinyNet
from tests.report_support import (
    METHODS,
    built_fixture,  # noqa: F401  (the built fixture)
    make_summaries,
)
from tests.synthetic_bench import PROFILE, make_prepared

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
            data_dir=None,
            teacher=None,
            student=None,
            assistant="resnet20",
            cache_dir=built.tmp / "cache",
        ),
        args=SimpleNamespace(searcher="random", scheduler="fifo", seed=5, profile="smoke"),
    )
    summary_run = sweep_run(client, experiment_id, plan.sweep, {"seed": "5"}, "sweep points smoke")
    write_summary(plan, prepared, make_summaries(), client, experiment_id, summary_run)
    params = client.get_run(summary_run).data.params
    assert params["bench"] == "points" and params["seed"] == "5" and params["epochs"] == "3"
    rc = report.main(["--experiment", "cli-experiment", "--tracking-uri", built.uri, "--no-ray"])
    assert rc == 0, capsys.readouterr().err
    assert len(seen) == 1 and seen[0].cache_dir == built.tmp / "cache"
    assert seen[0].bench == "points" and seen[0].profile == "smoke" and seen[0].data_dir is None
    # the assistant as the sweep had it, prepared for the methods the sweep searched
    assert seen[0].assistant == "resnet20" and seen[0].methods == tuple(METHODS)
    results = json.loads((sweep_dir / "report" / "results.json").read_text())
    assert results["setup"]["seeds"] == [6, 7]  # the profile's 2 seeds, after the sweep's seed
    assert results["setup"]["searcher"] == "random" and results["setup"]["scheduler"] == "fifo"
    assert results["methods"]["annealing_kd"]["status"] == "failed"
    assert all(len(results["methods"][m]["seeds"]) == 2 for m in ("ckd", "kd", "none"))
    assert isinstance(load_student(sweep_dir / "report" / "models" / "kd"), TinyNet)
    runs = client.search_runs([experiment_id], "tags.role = 'rerun'")
    assert len(runs) == 8 and {r.data.tags["seed"] for r in runs} == {"6", "7"}  # + control
    artifacts = {a.path for a in client.list_artifacts(summary_run, "report")}
    assert "report/report.md" in artifacts
