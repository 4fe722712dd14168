"""Headless Chromium/Chrome for tests: the DOM of a page after its scripts ran, screenshots.

The MLflow UI is a React app: the HTML the server sends is an empty shell, and the runs table
appears only after the app has fetched the runs. ``--dump-dom`` alone dumps the page at its
load event (the shell: "You need to enable JavaScript"); ``--virtual-time-budget=<ms>`` makes
headless Chrome wait until the page has run that much (virtual) time, which fast-forwards
timers and waits for pending network fetches, so the app has rendered by the time the DOM is
dumped or the screenshot taken. A 15 s budget takes about 3-5 s of real time on a local
MLflow server.

Each call gets a fresh, temporary profile (``--user-data-dir``): no local storage (where the
MLflow UI keeps per-experiment view state: expanded runs, columns, the GenAI/model-training
switch) carries over from one render to the next or from the user's browser.
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import shutil
import signal
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """The path of the first of :data:`BROWSERS` on PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _flags(profile: str, size: tuple[int, int], wait_ms: int) -> list[str]:
    flags = [
        "--headless",
        "--disable-gpu",
        "--disable-dev-shm-usage",  # containers: a small /dev/shm crashes renderers
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--mute-audio",
        "--hide-scrollbars",
        "--run-all-compositor-stages-before-draw",
        f"--window-size={size[0]},{size[1]}",
        f"--virtual-time-budget={int(wait_ms)}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags.append("--no-sandbox")  # Chrome refuses to run as root with its sandbox
    return flags


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    """Run the browser in a process group of its own: on timeout the whole group (renderer,
    GPU and zygote processes included) is killed."""
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise RuntimeError(
            f"{args[0]} did not finish within {timeout:.0f} s: {' '.join(args)}\n"
            f"--- stderr (tail) ---\n{err.decode(errors='replace')[-3000:]}"
        ) from None
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _browse(
    url: str, action: list[str], size: tuple[int, int], wait_ms: int, timeout: float | None
) -> subprocess.CompletedProcess[bytes]:
    browser = find_browser()
    if browser is None:
        raise RuntimeError(f"no browser on PATH (looked for {', '.join(BROWSERS)})")
    limit = timeout if timeout is not None else wait_ms / 1000 + 60
    with tempfile.TemporaryDirectory(prefix="ckd-chrome-", ignore_cleanup_errors=True) as prof:
        done = _run([browser, *_flags(prof, size, wait_ms), *action, url], limit)
    if done.returncode != 0:
        raise RuntimeError(
            f"{browser} exited with status {done.returncode} on {url}\n"
            f"--- stderr (tail) ---\n{done.stderr.decode(errors='replace')[-3000:]}"
        )
    return done


def render_dom(
    url: str,
    *,
    wait_ms: int = 15000,
    size: tuple[int, int] = (1400, 900),
    timeout: float | None = None,
) -> str:
    """The serialized DOM of ``url`` after ``wait_ms`` ms of (virtual) page time in headless
    Chrome. ``timeout`` (real seconds) defaults to ``wait_ms / 1000 + 60``."""
    done = _browse(url, ["--dump-dom"], size, wait_ms, timeout)
    return done.stdout.decode(errors="replace")


def screenshot(
    url: str,
    path: Path,
    *,
    size: tuple[int, int] = (1400, 900),
    wait_ms: int = 15000,
    timeout: float | None = None,
) -> Path:
    """Save a PNG screenshot (``size`` = window width, height) of ``url`` to ``path`` after
    ``wait_ms`` ms of (virtual) page time; returns ``path``."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    done = _browse(url, [f"--screenshot={path}"], size, wait_ms, timeout)
    if not path.is_file() or path.stat().st_size == 0:
        raise RuntimeError(
            f"no screenshot written to {path}\n"
            f"--- stderr (tail) ---\n{done.stderr.decode(errors='replace')[-3000:]}"
        )
    return path


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style", "noscript", "template"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "noscript", "template") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.parts.append(data.strip())


def dom_texts(dom: str) -> list[str]:
    """The text nodes of ``dom`` (stripped, non-empty), without scripts and styles."""
    parser = _Text()
    parser.feed(dom)
    parser.close()
    return parser.parts


def dom_titles(dom: str) -> list[str]:
    """The ``<title>`` texts of ``dom`` (an app may add one next to the shell's)."""
    found = re.findall(r"<title[^>]*>(.*?)</title>", dom, flags=re.S | re.I)
    return [html.unescape(t).strip() for t in found]
