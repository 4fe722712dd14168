"""The report's markdown (:mod:`ckd_tune.report.markdown`): :func:`render_markdown` on small
results dicts built by hand, one feature at a time."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ckd_tune.report.markdown import render_markdown

VERDICT = "ckd is significantly better than vanilla KD (kd) on this synthetic check."


def _method(
    mean: float | None = 0.8,
    std: float | None = 0.01,
    ci: tuple[float, float] | None = (0.78, 0.82),
    seeds: tuple[int, ...] = (1, 2, 3),
    failed_seeds: tuple[int, ...] = (),
    status: str = "ok",
    **extra: Any,
) -> dict[str, Any]:
    n = len(seeds) - len(failed_seeds)
    return {
        "status": status,
        "search": {
            "best_val_score": 0.75,
            "trials": 4,
            "errored": 1,
            "trial_epochs": 9,
            "wall_seconds": 45.4,
        },
        "config_changes": {},
        "seeds": [{"seed": s} for s in seeds],
        "failed_seeds": list(failed_seeds),
        "test": {
            "mean": mean,
            "std": std,
            "n": n,
            "ci_low": None if ci is None else ci[0],
            "ci_high": None if ci is None else ci[1],
        },
        "rerun_seconds": 150.0,
        "model": None,
        **extra,
    }


def _comparison(
    name: str, ref: str, diff: float, significant: bool = False, **extra: Any
) -> dict[str, Any]:
    return {
        "method": name,
        "baseline": ref,
        "mean_diff": diff,
        "significant": significant,
        "direction": "better" if diff > 0 else "worse",
        "n_paired": 3,
        "n": 3,
        "n_baseline": 3,
        "bootstrap": None,
        "p_holm": None,
        "p_paired": 0.2,
        "mde": 0.025,
        "paper": None,
        "verdict": f"VERDICT[{name} vs {ref}]",
        "sensitivity": f"SENSITIVITY[{name} vs {ref}]",
        **extra,
    }


def _results(**overrides: Any) -> dict[str, Any]:
    """A complete results dict: ckd, kd and none re-run on seeds 1-3, no extras."""
    results: dict[str, Any] = {
        "sweep": "points-smoke",
        "metric": "accuracy",
        "baseline": "kd",
        "finetune": "none",
        "setup": {
            "bench": "points",
            "task": "points",
            "profile": "smoke",
            "seeds": [1, 2, 3],
            "epochs": 3,
        },
        "teacher": {},
        "methods": {
            "ckd": _method(mean=0.83, std=0.012, ci=(0.8, 0.86)),
            "kd": _method(mean=0.8),
            "none": _method(mean=0.77, std=0.02, ci=(0.72, 0.82)),
        },
        "comparisons": {
            "kd": {
                "ckd": _comparison("ckd", "kd", 0.03, significant=True),
                "none": _comparison("none", "kd", -0.03),
            },
            "none": {
                "ckd": _comparison("ckd", "none", 0.06, significant=True),
                "kd": _comparison("kd", "none", 0.03),
            },
        },
        "positive_control": None,
        "verdict": VERDICT,
        "plots": {},
    }
    results.update(overrides)
    return results


def _row(md: str, first_cell: str, after: str | None = None) -> str:
    """The first table row of ``md`` (after the line starting with ``after``) whose first cell is
    ``first_cell``."""
    lines = md.splitlines()
    start = 0 if after is None else next(i for i, x in enumerate(lines) if x.startswith(after))
    return next(x for x in lines[start:] if x.startswith(f"| {first_cell} |"))


def _section(md: str, heading: str) -> str:
    """The text of ``## heading`` up to the next ``## `` heading."""
    start = md.index(f"## {heading}\n")
    end = md.find("\n## ", start + 1)
    return md[start : end if end >= 0 else len(md)]


# ------------------------------------------------------------------ headline


def test_the_verdict_given_is_the_verdict_shown_top_and_bottom():
    md = render_markdown(_results())
    assert md.startswith("# KD comparison report: points-smoke\n")
    assert md.count(f"**Verdict:** {VERDICT}") == 2
    other = render_markdown(_results(verdict="Nothing to compare."))
    assert md.count("**Verdict:** ") == 2 and VERDICT not in other
    assert other.count("**Verdict:** Nothing to compare.") == 2


def test_positive_control_verdict_and_row_come_first():
    control = {
        "versus": "kd_shuffled",
        "verdict": "CONTROL VERDICT sentence.",
        "difference": 0.2,
        "control": {"mean": 0.6, "std": 0.01, "n": 2},
        "seeds": [{"seed": 1}, {"seed": 2}, {"seed": 3}],
    }
    teacher = {"name": "tiny teacher", "val": 0.81, "test": 0.82}
    md = render_markdown(_results(positive_control=control, teacher=teacher))
    assert "**Positive control:** CONTROL VERDICT sentence." in md
    assert md.index("**Positive control:**") < md.index("**Verdict:**")
    row = _row(md, "kd_shuffled (positive control)")
    # its Δ vs kd is kd's gain over it, turned into the control's difference to kd
    assert (
        row
        == "| kd_shuffled (positive control) | - | - | 0.6000 ± 0.0100 | - | 2 / 3 | - | -0.2000 |"
    )
    lines = md.splitlines()
    order = [
        lines.index(_row(md, n))
        for n in ("kd_shuffled (positive control)", "teacher", "ckd", "kd", "none")
    ]
    assert order == sorted(order)
    unknown = render_markdown(_results(positive_control={**control, "difference": None}))
    assert _row(unknown, "kd_shuffled (positive control)").endswith("| - | - |")


def test_without_a_positive_control_the_report_says_it_was_not_run():
    md = render_markdown(_results())
    assert "**Positive control:** not run (it needs vanilla KD, `kd`" in md
    assert "(positive control)" not in md


# ------------------------------------------------------------------ setup


def test_setup_lines_follow_the_setup_given():
    setup = {
        "bench": "glue",
        "task": "sst2",
        "profile": "quick",
        "seeds": [4, 5],
        "epochs": 2,
        "student": "BERT-Small",
        "num_samples": 8,
        "searcher": "tpe",
        "scheduler": "asha",
        "search_seed": 3,
        "teacher_data": "disjoint",
        "experiment_id": "17",
        "summary_run": "abc",
        "machine": {
            "platform": "Linux",
            "cpus": 2,
            "gpus": ["H200", "H200"],
            "torch": "2.5",
            "ray": {"nodes": 1, "CPU": 2, "GPU": None},
        },
        "splits": {"train": {"size": 64, "mean_words": 12.345}, "test": {"size": 16}},
    }
    teacher = {"name": "RoBERTa", "train": 0.99, "val": 0.9, "test": 0.91}
    md = render_markdown(_results(setup=setup, teacher=teacher))
    assert "- **Bench / task:** glue / sst2 (profile `quick`); test metric: **accuracy**" in md
    assert "its own examples, disjoint from the student's" in md
    assert "on the student's training examples 0.9900, validation 0.9000, test 0.9100" in md
    assert "- **Student:** BERT-Small" in md
    assert "- **Search budget per method:** 8 trials (searcher tpe, scheduler asha), up to 2 " in md
    assert "trial with seed 3; the re-runs use 2 other seeds (4, 5, the same" in md
    assert "GPUs: H200, H200; torch 2.5; Ray cluster: 1 node(s), 2 CPUs, 0 GPUs" in md
    assert "- **MLflow:** experiment id 17, summary run abc" in md
    assert "| train | 64 | 12.3 |" in md and "| test | 16 | - |" in md

    bare = render_markdown(_results())
    assert "- **Teacher:** n/a; trained on the student's training examples" in bare
    assert "GPUs: none; torch n/a\n" in bare  # no Ray line without Ray
    assert "- **MLflow:** not used" in bare
    assert "- **Student:** n/a" in bare and "(searcher n/a, scheduler n/a)" in bare
    assert "| split | examples |" not in bare


# ------------------------------------------------------------------ results table


def test_results_table_one_row_per_method_in_order_with_formatted_numbers():
    md = render_markdown(_results())
    rows = [x for x in _section(md, "Results").splitlines() if x.startswith("| ")]
    header, table = rows[0], rows[1:]
    assert [r.split(" | ")[0] for r in table] == ["| ckd", "| kd", "| none"]
    assert table[0] == (
        "| ckd | ok | 0.7500 | 0.8300 ± 0.0120 | [0.8000, 0.8600] | 3 / 3 | +0.0600 * | +0.0300 * |"
    )
    # each reference shows as such in its own column; a non-significant Δ has no star
    assert table[1].endswith("| +0.0300 | (reference) |")
    assert table[2].endswith("| (reference) | -0.0300 |")
    assert header.endswith("| Δ vs none | Δ vs kd |")


def test_results_rows_for_one_seed_failed_and_rerun_failed_methods():
    methods = {
        "ckd": _method(mean=0.81, std=None, ci=None, seeds=(1, 2), failed_seeds=(2,)),
        "kd": _method(),
        "annealing_kd": _method(status="failed", seeds=()),
        "none": _method(
            status="reruns_failed", mean=None, std=None, ci=None, failed_seeds=(1, 2, 3)
        ),
    }
    comparisons = {"kd": {"ckd": _comparison("ckd", "kd", 0.01)}}
    md = render_markdown(_results(methods=methods, comparisons=comparisons))
    assert (
        _row(md, "ckd")
        == "| ckd | ok | 0.7500 | 0.8100 (1 seed) | n/a (n < 2) | 1 / 2 | - | +0.0100 |"
    )
    assert _row(md, "annealing_kd") == (
        "| annealing_kd | **FAILED** (every search trial failed) | - | FAILED | - | 0 / 0 | - | - |"
    )
    assert _row(md, "none").startswith(
        "| none | **all re-runs failed** | 0.7500 | - | n/a (n < 2) | 0 / 3 |"
    )
    assert "excluded from the statistics): ckd: seeds 2; none: seeds 1, 2, 3\n" in md
    assert "- **annealing_kd**: FAILED, no configuration" in md
    # no comparison against a reference that has no successful re-run
    assert "Gain from distillation" not in md


def test_no_failed_rerun_line_when_every_rerun_succeeded():
    assert "Failed re-runs" not in render_markdown(_results())


def test_teacher_row_and_its_gap_to_fine_tuning():
    teacher = {"name": "T", "val": 0.9, "test": 0.85}
    md = render_markdown(_results(teacher=teacher))
    assert _row(md, "teacher") == "| teacher | - | 0.9000 | 0.8500 | - | - | +0.0800 | - |"
    methods = _results()["methods"]
    methods["none"]["test"]["mean"] = None
    assert _row(render_markdown(_results(teacher=teacher, methods=methods)), "teacher").endswith(
        "| - | - | - | - |"
    )
    assert "| teacher |" not in render_markdown(_results())


ASSISTANT = {
    "name": "A",
    "scores": {"train": 0.95, "val": 0.88, "test": 0.84},
    "train_seconds": 150.0,
    "reused": False,
    "used_by": ["takd"],
}


def test_assistant_setup_line_row_beside_the_teachers_and_one_time_costs():
    teacher = {"name": "T", "val": 0.9, "test": 0.85, "train_seconds": 30.0, "reused": True}
    setup = {**_results()["setup"], "teacher_data": "disjoint"}
    md = render_markdown(_results(teacher=teacher, assistant=ASSISTANT, setup=setup))
    assert (
        "- **Teacher assistant** (what takd distils from): A; trained on the teacher's own "
        "examples (disjoint from the student's), never on validation or test labels" in md
    )
    assert "on the student's training examples 0.9500, validation 0.8800, test 0.8400" in md
    rows = [x for x in _section(md, "Results").splitlines() if x.startswith("| ")]
    assert rows[1:3] == [
        "| teacher | - | 0.9000 | 0.8500 | - | - | +0.0800 | - |",
        "| assistant | - | 0.8800 | 0.8400 | - | - | +0.0700 | - |",
    ]
    assert (
        "One-time costs, outside every method's search budget (trained once, then cached): "
        "teacher: 30 s of training (reused from the cache, paid by an earlier sweep); "
        "assistant (used by takd only): 2.5 min of training (this sweep)."
    ) in _section(md, "Search budget")
    ready = {**teacher, "train_seconds": 0.0}
    shared = render_markdown(_results(teacher=ready, assistant=ASSISTANT))
    assert "trained on the student's training examples, as the teacher, never on" in shared
    assert "teacher: a ready model, not trained here; assistant" in shared
    bare = render_markdown(_results())
    assert "Teacher assistant" not in bare and "| assistant |" not in bare
    assert "One-time costs" not in bare


def test_best_configurations_use_fmt_value():
    methods = _results()["methods"]
    methods["ckd"]["config_changes"] = {
        "lr": 0.0123456,
        "t_max": 4,
        "schedule": "cosine",
        "phi": float("inf"),
    }
    md = render_markdown(_results(methods=methods))
    assert "- **ckd**: `lr=0.0123`, `t_max=4`, `schedule=cosine`, `phi=inf`" in md
    assert "- **kd**: the defaults" in md


# ------------------------------------------------------------------ comparisons


def test_comparison_table_rows_with_and_without_a_bootstrap():
    comparisons = copy.deepcopy(_results()["comparisons"])
    boot = {"ci_low": 0.01, "ci_high": 0.05, "p": 0.0004}
    comparisons["kd"]["ckd"].update(
        bootstrap=boot,
        p_holm=0.0123,
        p_paired=0.04567,
        mde=0.02,
        paper={"points": {"DistilRoBERTa": 1.04, "BERT-Small": 1.45}, "at_stake": 0.0104},
    )
    md = render_markdown(_results(comparisons=comparisons))
    stats = _section(md, "Statistical comparison vs vanilla KD (kd)")
    ckd = _row(stats, "ckd")
    assert ckd == (
        "| ckd | +0.0300 | [+0.0100, +0.0500] | < 0.001 | 0.012 | 0.046 | 0.0200 | "
        "+1.04 / +1.45 | significantly better |"
    )
    none = _row(stats, "none")
    assert (
        none
        == "| none | -0.0300 | n/a | n/a | n/a | 0.200 | 0.0250 | - | no significant difference |"
    )
    # each comparison's verdict and sensitivity follow its table, one bullet each
    assert "- VERDICT[ckd vs kd] SENSITIVITY[ckd vs kd]" in stats
    assert "- VERDICT[none vs kd] SENSITIVITY[none vs kd]" in stats
    # the second table, against plain fine-tuning, follows under its own title
    gain = stats.index("Gain from distillation (vs none, plain fine-tuning):")
    assert stats.index("- VERDICT[none vs kd]") < gain < stats.index("- VERDICT[kd vs none]")
    assert _row(stats, "kd", after="Gain from distillation").startswith("| kd | +0.0300 |")


def test_comparison_without_sensitivity_has_no_trailing_space():
    comparisons = copy.deepcopy(_results()["comparisons"])
    del comparisons["kd"]["ckd"]["sensitivity"]
    md = render_markdown(_results(comparisons=comparisons))
    assert "- VERDICT[ckd vs kd]\n" in md


def test_no_comparison_tables_without_comparisons():
    md = render_markdown(_results(comparisons={}))
    stats = _section(md, "Statistical comparison vs vanilla KD (kd)")
    assert "| method | difference |" not in stats and "Gain from distillation" not in stats
    assert f"**Verdict:** {VERDICT}" in stats


def test_range_flags_section_only_when_a_method_has_flags():
    assert "### Search ranges to widen" not in render_markdown(_results())
    methods = _results()["methods"]
    methods["kd"]["range_flags"] = [
        {"param": "kd_alpha", "value": 0.8912, "bound": "high", "low": 0.1, "high": 0.9},
        {"param": "lr", "value": 1.01e-5, "bound": "low", "low": 1e-5, "high": 3e-4},
    ]
    methods["ckd"]["range_flags"] = []
    md = render_markdown(_results(methods=methods))
    assert "### Search ranges to widen" in md
    assert (
        "- **kd**: `kd_alpha` = 0.891 lies within 5% of the high bound of its range [0.1, 0.9]"
        in md
    )
    assert (
        "- **kd**: `lr` = 1.01e-05 lies within 5% of the low bound of its range [1e-05, 0.0003]"
        in md
    )
    assert "- **ckd**: `" not in _section(md, "Statistical comparison vs vanilla KD (kd)")


# ------------------------------------------------------------------ budget, plots, models


@pytest.mark.parametrize(
    ("wall", "shown"),
    [(45.4, "45 s"), (119.0, "119 s"), (120.0, "2.0 min"), (150.0, "2.5 min"), (None, "-")],
)
def test_search_budget_durations(wall, shown):
    methods = _results()["methods"]
    methods["kd"]["search"]["wall_seconds"] = wall
    budget = _section(render_markdown(_results(methods=methods)), "Search budget")
    assert _row(budget, "kd") == f"| kd | 4 | 1 | 9 | {shown} | 2.5 min |"


def test_search_budget_of_a_failed_search():
    methods = _results()["methods"]
    methods["ckd"] = _method(status="failed", seeds=())
    methods["ckd"]["search"] = {"trials": 3}
    budget = _section(render_markdown(_results(methods=methods)), "Search budget")
    assert _row(budget, "ckd") == "| ckd | 3 | - | - | - | - |"


def test_plots_section_lists_only_the_plots_given():
    plots = {"test_scores": "test_scores.png", "val_curves": "val_curves.png"}
    md = render_markdown(_results(plots=plots))
    section = _section(md, "Plots")
    images = [x for x in section.splitlines() if x.startswith("![")]
    assert [x.rsplit("(", 1)[1] for x in images] == ["val_curves.png)", "test_scores.png)"]
    assert "![Test accuracy per seed (box + points); the dashed line is the teacher]" in section
    assert "Schedules" not in section and "Search efficiency" not in section
    assert "plots: `test_scores.png`, `val_curves.png`." in md
    assert "![" not in render_markdown(_results())


def test_best_models_table_and_loading_snippet():
    methods = _results()["methods"]
    methods["ckd"]["model"] = {
        "seed": 2,
        "val_score": 0.84,
        "test_score": 0.83,
        "path": "models/ckd",
        "format": "torch",
        "mlflow_uri": "runs:/r1/model",
    }
    methods["kd"]["model"] = {
        "seed": 3,
        "val_score": 0.8,
        "test_score": 0.79,
        "path": "models/kd",
        "format": "torch",
    }
    md = render_markdown(_results(methods=methods))
    models = _section(md, "Best models")
    assert _row(models, "ckd") == "| ckd | 2 | 0.8400 | 0.8300 | `models/ckd` | `runs:/r1/model` |"
    assert _row(models, "kd") == "| kd | 3 | 0.8000 | 0.7900 | `models/kd` | — |"
    assert "| none |" not in models
    assert 'model = load_student("models/ckd")' in models  # the first saved one
    assert 'mlflow.pyfunc.load_model("runs:/r1/model")' in models
    assert "Model Registry" not in models
    assert "(`model.pt`, load with `weights_only=True`) and `student.json`" in models
    assert "AutoModelForSequenceClassification" not in models

    methods["ckd"]["model"]["format"] = "transformers"
    registered = {"name": "sst2", "version": "1", "method": "ckd", "uri": "models:/sst2/1"}
    hf = _section(
        render_markdown(_results(methods=methods, registered_model=registered)), "Best models"
    )
    assert "AutoModelForSequenceClassification" in hf and "`model.pt`" not in hf
    assert "Registered in the MLflow Model Registry: ckd's student as `models:/sst2/1`." in hf


def test_best_models_when_none_was_saved():
    models = _section(render_markdown(_results()), "Best models")
    assert "No model was saved (no method has a successful re-run)." in models
    assert "load_student" not in models
