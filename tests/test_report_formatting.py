"""Text helpers of the report (:mod:`ckd_tune.report.formatting`)."""

from __future__ import annotations


def test_reports_name_no_path_of_the_machine(tmp_path, monkeypatch):
    from ckd_tune.report.formatting import redact_uri, shown_path

    monkeypatch.chdir(tmp_path)
    assert shown_path(tmp_path / "ckd_runs" / "s" / "report") == "ckd_runs/s/report"
    assert redact_uri(f"sqlite:///{tmp_path}/mlflow.db") == "sqlite:///mlflow.db"
    assert redact_uri("http://user:secret@host:5000") == "http://***@host:5000"


def test_config_values_show_three_significant_digits():
    from ckd_tune.report.formatting import fmt_value

    assert fmt_value(3.14159e-5) == "3.14e-05"
    assert fmt_value(0.5) == "0.5" and fmt_value(2.0) == "2"
    assert fmt_value(float("nan")) == "nan" and fmt_value(float("-inf")) == "-inf"
    assert fmt_value(16) == "16" and fmt_value("cosine") == "cosine" and fmt_value(True) == "True"
