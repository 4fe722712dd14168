"""Fingerprints: the one way the package names data, models, teachers and cache entries.

Standard library only (``hashlib``, ``json``), so every part of the package may import it,
the core data loaders included, without pulling in anything heavy.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["bytes_sha256", "file_sha256", "fingerprint"]


def fingerprint(*parts: Any) -> str:
    """A short stable hash (16 hex chars) of ``parts`` written as canonical JSON.

    Dict keys are sorted, so their order does not matter; values JSON cannot write
    (paths, numpy scalars, ...) are written as their ``str``.
    """
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def bytes_sha256(data: bytes) -> str:
    """The sha256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
