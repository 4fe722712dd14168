"""MLflow tracking URIs without MLflow: the default, credentials out of the URI, a printable form
and a check that the URI can be used. Light on purpose: the search CLI checks its flags with it
before MLflow, Ray or torch are imported."""

from __future__ import annotations

import base64
import os
import urllib.request
from pathlib import Path
from urllib.parse import SplitResult, quote, unquote, urlencode, urlsplit, urlunsplit

from ckd_tune.errors import UserInputError


def redact(uri: str) -> str:
    """``uri`` with any user/password removed, safe to print."""
    parts = urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


MLFLOW_UI = "http://127.0.0.1:5000"
"""Where ``mlflow ui`` serves by default."""


def ui_link(uri: str, experiment_id: str, order_by: str | None = None) -> str:
    """The experiment's page in the MLflow UI, opened on its runs table.

    MLflow 3's UI opens an experiment in GenAI mode (traces) unless the link asks for
    ``workflowType=machine_learning``. For a tracking server the link is on that server (without
    credentials); for a local store, on the ``mlflow ui`` the sweep tells the user to start.
    The table shows the sweep's run with its trials and re-runs collapsed under it; with
    ``order_by`` (a metric, best first) it lists every run flat, children included (MLflow 3
    nests runs only when they are sorted by creation time).
    """
    parts = urlsplit(uri)
    base = MLFLOW_UI
    if parts.scheme in ("http", "https") and parts.hostname:
        base = f"{parts.scheme}://{_host_port(parts)}{parts.path.rstrip('/')}"
    if order_by is None:
        return f"{base}/#/experiments/{experiment_id}?workflowType=machine_learning"
    query = urlencode(
        {
            "workflowType": "machine_learning",
            "orderByKey": f"metrics.`{order_by}`",
            "orderByAsc": "false",
        },
        quote_via=quote,
    )
    return f"{base}/#/experiments/{experiment_id}/runs?{query}"


def is_server(uri: str) -> bool:
    """Whether ``uri`` is a tracking server (which then decides where artifacts are stored)."""
    return urlsplit(uri).scheme in ("http", "https", "databricks")


def credentials_to_env(uri: str) -> str:
    """``uri`` without its ``user:password@``, which goes to MLflow's own environment variables.

    MLflow reads ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` for HTTP basic auth,
    so the secret then lives only in this process's environment: not in the URI that is printed,
    pickled into Ray's experiment state (the trial callback), written to sweep files or quoted
    by MLflow's error messages. Other URIs are returned unchanged.
    """
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not (parts.username or parts.password):
        return uri
    if parts.username:
        os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(parts.username)
    if parts.password:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(parts.password)
    return urlunsplit(parts._replace(netloc=_host_port(parts)))


def default_tracking_uri(directory: Path) -> str:
    """A local sqlite database ``<directory>/mlflow.db``."""
    return f"sqlite:///{directory.resolve() / 'mlflow.db'}"


def check_tracking_uri(uri: str) -> None:
    """Raise UserInputError if the MLflow tracking URI cannot be used.

    An http(s) server must answer its ``/health`` within 5 s (with the credentials that
    :func:`credentials_to_env` moved to the environment); a sqlite database's directory must be
    writable.
    """
    scheme = uri.split(":", 1)[0]
    if scheme in ("http", "https"):
        request = urllib.request.Request(credentials_to_env(uri).rstrip("/") + "/health")
        user, password = (os.environ.get(f"MLFLOW_TRACKING_{k}") for k in ("USERNAME", "PASSWORD"))
        if user and password:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()
        except OSError as err:
            raise UserInputError(
                f"--tracking-uri: MLflow server {redact(uri)} does not answer ({err})"
            ) from None
    elif scheme == "sqlite":
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
            raise UserInputError(f"--tracking-uri: cannot write the sqlite database {path}")
    elif scheme not in ("file", "databricks", "postgresql", "mysql", "mssql"):
        raise UserInputError(f"--tracking-uri: unsupported scheme in {redact(uri)}")


def _host_port(parts: SplitResult) -> str:
    """``host[:port]`` of a split URI without its credentials (an IPv6 host in brackets)."""
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return host + (f":{parts.port}" if parts.port else "")
