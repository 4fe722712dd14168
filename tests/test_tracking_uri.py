"""Tracking URIs (:mod:`ckd_tune.tracking_uri`): printable, credentials moved out, checked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ckd_tune.errors import UserInputError
from ckd_tune.tracking_uri import (
    check_tracking_uri,
    default_tracking_uri,
    is_server,
    redact,
    ui_link,
)


def test_redact_hides_user_and_password_only():
    assert redact("http://ckd:s3cret@127.0.0.1:5000/x") == "http://***@127.0.0.1:5000/x"
    assert redact("https://host/x") == "https://host/x"
    assert redact("sqlite:////tmp/m.db") == "sqlite:////tmp/m.db"


@pytest.mark.parametrize(
    ("uri", "base"),
    [
        ("sqlite:///mlflow.db", "http://127.0.0.1:5000"),  # where `mlflow ui` serves
        ("file:///tmp/mlruns", "http://127.0.0.1:5000"),
        ("http://ckd:s3cret@10.0.0.5:5001", "http://10.0.0.5:5001"),  # the server, no secret
        ("https://mlflow.example.org/team/", "https://mlflow.example.org/team"),
        ("http://[::1]:5000", "http://[::1]:5000"),
    ],
)
def test_ui_link_opens_the_experiment_on_its_runs_table(uri, base):
    link = ui_link(uri, "7")
    assert link == f"{base}/#/experiments/7?workflowType=machine_learning"
    ranked = ui_link(uri, "7", order_by="best_val_score")
    assert ranked == (
        f"{base}/#/experiments/7/runs?workflowType=machine_learning"
        "&orderByKey=metrics.%60best_val_score%60&orderByAsc=false"
    )


def test_default_is_a_sqlite_file_in_the_directory(tmp_path):
    assert default_tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def test_usable_uris_pass(tmp_path):
    check_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}")
    check_tracking_uri(f"file://{tmp_path / 'mlruns'}")


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("sqlite:////nonexistent/dir/m.db", ["cannot write", "/nonexistent/dir/m.db"]),
        ("ftp://user:pw@host/x", ["unsupported scheme", "ftp://***@host/x"]),
        ("http://ckd:s3cret@127.0.0.1:9", ["http://***@127.0.0.1:9", "does not answer"]),
    ],
)
def test_unusable_uris_say_why_without_the_password(uri, words, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    with pytest.raises(UserInputError) as error:
        check_tracking_uri(uri)
    message = str(error.value)
    assert message.startswith("--tracking-uri: ")
    for word in words:
        assert word in message
    assert "s3cret" not in message and ":pw@" not in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_directory_is_refused(tmp_path: Path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(UserInputError, match="cannot write"):
            check_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}")
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.parametrize(
    ("uri", "server"),
    [
        ("http://127.0.0.1:5000", True),
        ("https://user:pw@mlflow.example.com/", True),
        ("databricks", False),  # a profile name, no scheme
        ("databricks://profile", True),
        ("sqlite:////tmp/mlflow.db", False),
        ("file:///tmp/mlruns", False),
        ("postgresql://db/mlflow", False),
    ],
)
def test_is_server_tells_servers_from_local_stores(uri, server):
    assert is_server(uri) is server
