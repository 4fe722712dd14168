"""The sweep's final console table (:mod:`ckd_tune.search.table`)."""

from __future__ import annotations

from ckd_tune.search.summary import MethodSummary
from ckd_tune.search.table import format_table, mlflow_pointer


def test_table_rows_align_and_show_the_searched_parameters_only():
    summaries = [
        MethodSummary("kd", "ok", 0.91234, {"lr": 3.14159e-5, "seed": 0, "w": 0.5}, "t1", None,
                      8, 1, 24, 90.0),
        MethodSummary("annealing_kd", "failed", None, {}, None, None, 8, 8, 5, 30.0),
    ]  # fmt: skip
    header, kd, annealing = format_table(summaries, {"kd": ["lr", "w"], "annealing_kd": ["lr"]})
    assert header.startswith(
        "method" + " " * (len("annealing_kd") - len("method") + 2) + "best val"
    )
    assert kd.split() == ["kd", "0.9123", "8", "(1)", "24", "1.5", "min", "lr=3.14e-05,", "w=0.5"]
    assert annealing.split()[:5] == ["annealing_kd", "FAILED", "8", "(8)", "5"]
    # the best-config column starts at the same place on every line
    assert len({line.index(c) for line, c in ((header, "best config"), (kd, "lr="))}) == 1


def test_pointer_names_the_run_and_hides_credentials():
    line = mlflow_pointer("ckd_tune/glue/sst2", "3", "abc", "http://user:secret@host:5000")
    assert "secret" not in line and "sweep run abc" in line
    assert line.endswith("on http://***@host:5000")  # a server: its own UI, no `mlflow ui`
    local = mlflow_pointer("ckd_tune/glue/sst2", "3", "abc", "sqlite:///mlflow.db")
    assert local.endswith("view with: mlflow ui --backend-store-uri sqlite:///mlflow.db")
