"""The comparison report: re-train each method's best configuration over several seeds and compare.

After a sweep (automatically at the end of ``python -m ckd_tune.search``, or later with
``python -m ckd_tune.report --experiment NAME``), each method's best configuration *by validation
score* is trained again with seeds ``sweep_seed + 0 .. n-1`` (the same seeds for every method, so
scores pair by seed), and the best-validation-epoch weights are scored once on the held-out test
split (GLUE dev / CIFAR test), which the search never saw. The report then gives per method the
mean, sample std and Student-t 95% CI of the test score, the difference to vanilla KD (``kd``) with
a paired t-test and Welch's test, the gain over plain fine-tuning (``none``), the teacher's score,
each search's budget, four plots, and the best seed's student, saved so that one call loads it::

    from ckd_tune.report import load_student
    model = load_student("ckd_runs/<sweep>/report/models/ckd")

Standalone, over an existing sweep's MLflow runs (the bench is rebuilt from what the sweep's
summary run records; the teacher comes from the cache)::

    python -m ckd_tune.report --experiment ckd_tune/glue/sst2 [--sweep NAME] [--seeds N]
        [--tracking-uri URI] [--output DIR] [--data-dir DIR] [--cache-dir DIR] [--no-ray]

Layout, one job a module: pure functions in :mod:`~ckd_tune.report.stats` turn score lists into
statistics (:func:`describe`, :func:`compare`, :func:`verdict`), :mod:`~ckd_tune.report.results`
re-run records into the results dict (:func:`analyse`), :mod:`~ckd_tune.report.markdown` the
results dict into markdown (:func:`render_markdown`) and :mod:`~ckd_tune.report.plots` data into
plots (``plot_*``); :mod:`~ckd_tune.report.students` saves and loads students,
:mod:`~ckd_tune.report.reruns` trains the re-runs, :mod:`~ckd_tune.report.build`
(:func:`make_report`) does the orchestration (Ray tasks, MLflow runs, files) and
:mod:`~ckd_tune.report.cli` is the command line. :mod:`~ckd_tune.report.study` writes a
multi-task study's cross-task report from its tasks' reports. Every re-run is one MLflow run tagged
``role=rerun``; the re-runs of an earlier report of the same sweep are soft-deleted (``mlflow runs
restore`` brings them back) so each (sweep, method, seed) has exactly one.
"""

import importlib
from typing import Any

# name -> the module that defines it; loaded on first use, so that importing one report module
# (e.g. ``ckd_tune.report.formatting``) or ``--help`` does not load torch, matplotlib and MLflow
_EXPORTS = {
    "build": ("ReportSetup", "describe_student", "machine_info", "make_report", "write_plots"),
    "cli": ("build_parser", "main"),
    "markdown": ("render_markdown",),
    "plots": (
        "PLOTS",
        "plot_learned_schedules",
        "plot_schedules",
        "plot_search",
        "plot_test_scores",
        "plot_val_curves",
    ),
    "reruns": ("CONTROL", "RerunJob", "rerun", "run_reruns"),
    "results": ("analyse", "config_changes", "schedule_curves", "search_trace"),
    "stats": (
        "ALPHA",
        "BASELINE",
        "CONFIDENCE",
        "FINETUNE",
        "compare",
        "describe",
        "format_p",
        "overall_verdict",
        "short_verdict",
        "verdict",
    ),
    "students": ("STUDENT_JSON", "WEIGHTS_FILE", "load_student", "save_student", "student_spec"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    """``ckd_tune.report.NAME``: imports the module that defines ``NAME`` on first use."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
