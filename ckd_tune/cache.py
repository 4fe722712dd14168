"""The on-disk cache: where it lives, atomic writes, checksums and locks.

Everything the suite builds once and reuses (fine-tuned teachers, teacher logits) goes
through here, so a truncated or stale file is detected and rebuilt rather than used, and two
sweeps sharing a cache directory never see each other's half-written files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from ckd_tune.fingerprint import file_sha256

if TYPE_CHECKING:
    from torch import Tensor

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$CKD_TUNE_CACHE``, else ``$XDG_CACHE_HOME/ckd_tune``, else ``~/.cache/ckd_tune``."""
    if env := os.environ.get("CKD_TUNE_CACHE"):
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "ckd_tune"


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an inter-process lock named after ``path`` (``<path>.lock``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        yield


def write_json(data: Any, path: Path) -> None:
    """Write JSON atomically (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
    os.replace(f.name, path)


def leftover_prefix(path: Path) -> str:
    """The name prefix of the temporary files and directories that writers of ``path`` use."""
    return f".{path.name}-"


def remove_leftovers(path: Path) -> int:
    """Delete what an interrupted writer of ``path`` left behind (``.<name>-*``); returns how many.

    Call it holding :func:`locked` ``(path)``: every writer of ``path`` holds that lock while its
    temporary file or directory exists, so any such entry seen under the lock is a dead
    writer's (a process killed mid-write), never a live one's.
    """
    stale = sorted(path.parent.glob(leftover_prefix(path) + "*"))
    for entry in stale:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    if stale:
        log.warning(
            "removed %d half-written entries of an interrupted build of %s", len(stale), path
        )
    return len(stale)


def save_tensors(tensors: dict[str, Tensor], path: Path) -> None:
    """Save tensors atomically, with a ``.sha256`` sidecar that :func:`load_tensors` checks."""
    import torch  # here, not at the top: the CLI's input checks import this module

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=leftover_prefix(path), suffix=".tmp", delete=False
    ) as f:
        torch.save(tensors, f)
    digest = file_sha256(Path(f.name))
    os.replace(f.name, path)
    Path(str(path) + ".sha256").write_text(digest)


def load_tensors(path: Path) -> dict[str, Tensor] | None:
    """Tensors saved by :func:`save_tensors`, or ``None`` if missing, truncated or altered.

    A damaged file is removed so the caller rebuilds it. Loads with ``weights_only=True``.
    """
    sidecar = Path(str(path) + ".sha256")
    if not path.is_file() or not sidecar.is_file():
        return None
    if file_sha256(path) != sidecar.read_text().strip():
        log.warning("cache file %s fails its checksum; rebuilding it", path)
        path.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
        return None
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def checked_dir(path: Path, files: list[str]) -> bool:
    """True when ``path/meta.json`` records sha256 digests matching each of ``files``."""
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        return False
    try:
        digests = json.loads(meta_path.read_text())["sha256"]
        ok = all(file_sha256(path / name) == digests[name] for name in files)
    except (OSError, KeyError, ValueError):
        ok = False
    if not ok:
        log.warning("cached directory %s is incomplete or damaged; rebuilding it", path)
    return ok


def publish_dir(tmp: Path, final: Path, files: list[str], meta: dict[str, Any]) -> None:
    """Record checksums of ``files`` in ``tmp/meta.json`` and move ``tmp`` to ``final``."""
    meta = {**meta, "sha256": {name: file_sha256(tmp / name) for name in files}}
    write_json(meta, tmp / "meta.json")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def read_json(path: Path) -> Any:
    """Parse a JSON file."""
    return json.loads(path.read_text())
