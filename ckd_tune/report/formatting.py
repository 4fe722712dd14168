"""Small text helpers that several report modules share: a signed number, a seed list, a
tracking URI without credentials. The helpers that only one module needs live next to it."""

from __future__ import annotations

from collections.abc import Sequence


def signed(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:+.{digits}f}"


def seed_list(seeds: Sequence[int]) -> str:
    return ", ".join(str(s) for s in seeds) or "none"


def redact_uri(uri: str | None) -> str | None:
    if uri is None:
        return None
    from ckd_tune.tracking import redact

    return redact(uri)
