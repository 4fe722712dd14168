"""The final console table of a sweep: best validation score, trials, budget and config per method."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ckd_tune.report.formatting import fmt_value
from ckd_tune.search.summary import MethodSummary
from ckd_tune.tracking_uri import is_server, redact

HEADER = ("method", "best val", "trials (failed)", "trial-epochs", "wall", "best config")


def format_table(
    summaries: Sequence[MethodSummary], searched: Mapping[str, Sequence[str]]
) -> list[str]:
    """One line per method under a header; ``searched[method]``: the parameters its space
    searches, the ones its best config shows. Columns are padded to their widest cell."""
    rows = [HEADER]
    for s in summaries:
        score = "FAILED" if s.best_val_score is None else f"{s.best_val_score:.4f}"
        config = ", ".join(
            f"{k}={fmt_value(s.best_config[k])}" for k in searched[s.method] if k in s.best_config
        )
        rows.append(
            (
                s.method,
                score,
                f"{s.trials} ({s.errored})",
                str(s.trial_epochs),
                f"{s.wall_seconds / 60:.1f} min",
                config,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5]
        for r in rows
    ]


def print_table(
    summaries: Sequence[MethodSummary],
    searched: Mapping[str, Sequence[str]],
    where: str,
    sweep_dir: Path,
) -> None:
    """Print :func:`format_table`, then ``where`` the MLflow runs are and the sweep's files."""
    print()
    for line in format_table(summaries, searched):
        print(line)
    print(f"\n{where}")
    print(f"sweep files: {sweep_dir}", flush=True)


def mlflow_pointer(experiment: str, experiment_id: str, summary_run: str, uri: str) -> str:
    """Where the sweep's runs are and how to view them (the tracking URI without credentials)."""
    where = f"MLflow experiment {experiment!r} (id {experiment_id}), sweep run {summary_run}"
    if is_server(uri):
        return f"{where} on {redact(uri)}"
    return f"{where}; view with: mlflow ui --backend-store-uri {redact(uri)}"
