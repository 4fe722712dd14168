"""A real ``mlflow server`` for tests, and a small REST client for it (stdlib only).

:func:`mlflow_server` runs the tracking server (UI + REST API) of the installed MLflow on
127.0.0.1 over a sqlite database, with proxied artifacts, in a process group of its own::

    with mlflow_server(tmp_path) as url:  # "http://127.0.0.1:<port>"
        MlflowClient(url).create_experiment("e")
        rest(url, "experiments/search", {"max_results": 10})

Notes on MLflow 3.x servers:

* The security middleware (on by default) accepts requests whose ``Host`` is localhost or a
  private IP and cross-origin requests from localhost origins only. A browser opening the
  yielded ``http://127.0.0.1:<port>`` URL and urllib/``MlflowClient`` both pass with the
  defaults; any other host name (``--host-resolver-rules``, a proxy) would need
  ``--allowed-hosts`` and ``--cors-allowed-origins``
  (``MLFLOW_SERVER_ALLOWED_HOSTS`` / ``MLFLOW_SERVER_CORS_ALLOWED_ORIGINS``).
* By default the server also starts a job runner with seven Huey consumer processes (GenAI
  jobs: judges, issue detection), about 240 MB of memory each. Nothing here needs them, so
  ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION`` is ``false`` unless the caller's environment says
  otherwise: a server is then two processes (the CLI and uvicorn) and answers in about 7 s on
  2 cores (10-20 s with the job runner).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

START_TIMEOUT = 90.0
"""Seconds :func:`mlflow_server` waits for ``GET /health`` to answer 200."""

STOP_TIMEOUT = 15.0
"""Seconds the server gets to exit after SIGTERM before its process group is killed."""


class RestError(RuntimeError):
    """An HTTP error answer of the MLflow REST API (``status`` and the response ``body``)."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        super().__init__(f"{method} {url}: HTTP {status}: {body}")
        self.status, self.body = status, body


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mlflow_command() -> list[str]:
    """The ``mlflow`` CLI of this interpreter's environment."""
    script = Path(sys.executable).parent / "mlflow"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mlflow"]


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return text[-chars:] if text.strip() else "(the server wrote nothing)"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (OSError, ValueError):  # URLError and HTTPError are OSErrors
        return False


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in process group ``pgid``."""
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():  # not Linux: zombies count too
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    for stat in proc_dir.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (the CLI, uvicorn and any job workers); SIGKILL
    to what is left of it after STOP_TIMEOUT seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while proc.poll() is None or _group_alive(proc.pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    proc.wait()


@contextlib.contextmanager
def mlflow_server(
    root: Path,
    *,
    backend_store_uri: str | None = None,
    default_artifact_root: Path | None = None,
    timeout: float = START_TIMEOUT,
) -> Iterator[str]:
    """Run ``mlflow server`` on 127.0.0.1 (a free port, one worker) while the block runs.

    Backend ``backend_store_uri`` (default ``sqlite:///<root>/mlflow.db``); artifacts served by
    the server (``--serve-artifacts``) from ``<root>/mlartifacts``, or, with
    ``default_artifact_root``, kept in that directory (for clients that also reach the
    backend store directly, which cannot write served artifacts); the server's output goes to
    ``<root>/mlflow-server.log`` and its working directory is ``root``. Yields the base URL
    ``http://127.0.0.1:<port>`` once ``GET /health`` answers 200; raises RuntimeError with
    the tail of the server's log if the server exits first or does not answer within
    ``timeout`` seconds. The whole process group is terminated on exit.
    """
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [*mlflow_command(), "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--backend-store-uri", backend_store_uri or f"sqlite:///{root / 'mlflow.db'}"]
    if default_artifact_root is None:
        cmd += ["--serve-artifacts", "--artifacts-destination", str(root / "mlartifacts")]
    else:  # new experiments keep their artifacts in this directory, not behind the server
        cmd += ["--default-artifact-root", str(default_artifact_root)]
    cmd += ["--workers", "1"]
    env = dict(os.environ)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    log_path = root / "mlflow-server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(url):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited with status {proc.returncode} before answering "
                    f"{url}/health; {' '.join(cmd)}\n--- {log_path} (tail) ---\n{_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server did not answer {url}/health within {timeout:.0f} s; "
                    f"{' '.join(cmd)}\n--- {log_path} (tail) ---\n{_tail(log_path)}"
                )
            time.sleep(0.25)
        yield url
    finally:
        _stop(proc)


def rest(url: str, endpoint: str, payload: dict | None = None, *, timeout: float = 30) -> dict:
    """Call ``<url>/api/2.0/mlflow/<endpoint>``: GET when ``payload`` is None (put query
    parameters in ``endpoint``: ``"experiments/get?experiment_id=1"``), else POST ``payload``
    as JSON. Returns the decoded JSON answer; raises :class:`RestError` (with the response
    body) on an HTTP error."""
    full = f"{url.rstrip('/')}/api/2.0/mlflow/{endpoint.lstrip('/')}"
    headers = {"Accept": "application/json"}
    data = None
    if payload is not None:
        data = json.dumps(payload).encode()
        headers["Content-Type"] = "application/json"
    method = "GET" if data is None else "POST"
    request = urllib.request.Request(full, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        text = error.read().decode(errors="replace")
        raise RestError(method, full, error.code, text) from None
    return json.loads(body) if body.strip() else {}
