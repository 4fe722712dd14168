"""Small text helpers that several modules share (the report's and the search's console table):
a config value, a signed number, a seed list, a tracking URI without credentials, a path as a
report shows it. The helpers that only one module needs live next to it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def fmt_value(value: Any) -> str:
    """A config value as tables show it: a finite float to 3 significant digits, else ``str``."""
    if isinstance(value, float):
        return f"{value:.3g}" if math.isfinite(value) else str(value)
    return str(value)


def signed(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:+.{digits}f}"


def seed_list(seeds: Sequence[int]) -> str:
    return ", ".join(str(s) for s in seeds) or "none"


def shown_path(path: Path | str) -> str:
    """``path`` relative to the working directory when below it: reports name no machine's paths."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def redact_uri(uri: str | None) -> str | None:
    """The tracking URI without credentials; a local sqlite file as :func:`shown_path` shows it."""
    if uri is None:
        return None
    from ckd_tune.tracking_uri import redact

    if uri.startswith("sqlite:///"):
        return "sqlite:///" + shown_path(uri.removeprefix("sqlite:///"))
    return redact(uri)
