"""The cross-task report of a multi-task study: the paper-style table and a verdict across tasks.

Reads every task's report (``<study>/<task>/report/results.json`` and the re-runs' test
predictions beside it) and writes ``<study>/report/``: ``report.md``, ``results.json`` (``tasks``:
each task's results as its own report has them; ``aggregate``: per method the mean over tasks
with its CI, per comparison the difference averaged over tasks with its hierarchical bootstrap,
the Wilcoxon test over tasks, the Holm-adjusted p and the verdict) and ``forest.png``.

Scores are averaged over tasks as the paper's "Avg" column averages them: each task's own metric
(accuracy, F1, Matthews correlation, Pearson), in points. Run on its own (no training)::

    python -m ckd_tune.report.study ckd_runs/glue-study-quick-<timestamp>
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ckd_tune.data.tasks import GLUE_TASKS
from ckd_tune.errors import UserInputError
from ckd_tune.report.formatting import shown_path
from ckd_tune.report.paper import PAPER_EFFECTS
from ckd_tune.report.reruns import CONTROL
from ckd_tune.report.stats import (
    ALPHA,
    BASELINE,
    CONFIDENCE,
    FINETUNE,
    TaskPredictions,
    format_p,
    holm,
    mde,
    study_bootstrap,
)

FOREST = "forest.png"
PAPER_STUDENT = "DistilRoBERTa"
METRIC_NAMES = {"accuracy": "acc", "f1": "F1", "mcc": "MCC", "pearson": "Pearson"}


def load_task(report_dir: Path) -> tuple[dict[str, Any], Any, dict[str, dict[int, Any]]]:
    """A task's results, test labels and ``{arm: {seed: predictions}}`` from its report dir."""
    from ckd_tune.report.build import PREDICTIONS, load_predictions

    results_path, preds_path = report_dir / "results.json", report_dir / PREDICTIONS
    for path in (results_path, preds_path):
        if not path.is_file():
            raise UserInputError(f"{report_dir}: no {path.name}; finish the task's sweep first")
    labels, preds = load_predictions(preds_path)
    return json.loads(results_path.read_text()), labels, preds


def analyse_study(
    tasks: Mapping[str, tuple[Mapping[str, Any], Any, Mapping[str, Mapping[int, Any]]]],
    *,
    n_boot: int = 2000,
) -> dict[str, Any]:
    """The ``aggregate`` of a study from each task's (results, labels, predictions).

    Methods are those with test scores on every task (the others are listed in ``incomplete``
    with the tasks they lack); comparisons are each against vanilla KD and
    against plain fine-tuning, Holm-adjusted together on the hierarchical bootstrap's p; the
    positive control (kd vs kd on shuffled teacher logits) is averaged the same way.
    """
    names = list(tasks)
    ok = [
        m
        for m in next(iter(tasks.values()))[0]["methods"]
        if all(t[0]["methods"].get(m, {}).get("status") == "ok" for t in tasks.values())
    ]
    incomplete = {
        m: [t for t, r in tasks.items() if r[0]["methods"].get(m, {}).get("status") != "ok"]
        for m in dict.fromkeys(m for r in tasks.values() for m in r[0]["methods"])
        if m not in ok
    }
    methods = {m: _method_aggregate(m, tasks) for m in ok}
    comparisons: dict[str, dict[str, Any]] = {}
    for ref in dict.fromkeys((BASELINE, FINETUNE)):
        if ref not in ok:
            continue
        comparisons[ref] = {m: _comparison(m, ref, tasks, n_boot) for m in ok if m != ref}
    family = [c for by_ref in comparisons.values() for c in by_ref.values()]
    adjusted = holm({str(i): c["p"] for i, c in enumerate(family)})
    for i, c in enumerate(family):
        c["p_holm"] = adjusted[str(i)]
        excludes_zero = c["ci_low"] > 0 or c["ci_high"] < 0
        c["significant"] = bool(c["p_holm"] is not None and c["p_holm"] <= ALPHA and excludes_zero)
        c["verdict"] = _verdict(c, len(names))
    control = None
    if BASELINE in ok and all(CONTROL in t[2] for t in tasks.values()):
        control = _comparison(BASELINE, CONTROL, tasks, n_boot)
        control["passed"] = bool(control["ci_low"] > 0 and control["p"] <= ALPHA)
        control["per_task_passed"] = {
            t: bool((r[0].get("positive_control") or {}).get("passed")) for t, r in tasks.items()
        }
    return {
        "tasks": names,
        "methods": methods,
        "incomplete": incomplete,
        "comparisons": comparisons,
        "positive_control": control,
        "teacher": {t: (r[0].get("teacher") or {}).get("test") for t, r in tasks.items()},
        "verdict": _overall(comparisons.get(BASELINE, {}), len(names)),
    }


def _method_aggregate(
    method: str, tasks: Mapping[str, tuple[Mapping[str, Any], Any, Any]]
) -> dict[str, Any]:
    """Mean over tasks of the method's mean test score, with a CI over seeds (test sets fixed)."""
    from scipy import stats

    per_task = {t: r[0]["methods"][method]["test"] for t, r in tasks.items()}
    means = [d["mean"] for d in per_task.values()]
    var = sum((d["std"] or 0.0) ** 2 / d["n"] for d in per_task.values() if d["n"])
    se = math.sqrt(var) / len(means)
    df = max(1, min(d["n"] for d in per_task.values()) - 1)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, df) * se
    mean = sum(means) / len(means)
    return {
        "mean": mean,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "per_task": {
            t: {"mean": d["mean"], "std": d["std"], "n": d["n"]} for t, d in per_task.items()
        },
    }


def _comparison(
    method: str,
    ref: str,
    tasks: Mapping[str, tuple[Mapping[str, Any], Any, Mapping[str, Mapping[int, Any]]]],
    n_boot: int,
) -> dict[str, Any]:
    """``method`` - ``ref`` averaged over tasks: :func:`study_bootstrap` plus MDE and paper."""
    boot = study_bootstrap(
        [
            TaskPredictions(task, r[0]["metric"], r[1], r[2][method], r[2][ref])
            for task, r in tasks.items()
        ],
        n_boot=n_boot,
    )
    paper = [PAPER_EFFECTS.get((t, method, ref), {}).get(PAPER_STUDENT) for t in tasks]
    return {
        **boot,
        "test": boot["method"],
        "method": method,
        "baseline": ref,
        "mde": mde(boot["se"]),
        "paper_mean": sum(paper) / len(paper) / 100 if paper and None not in paper else None,
    }


def _verdict(c: Mapping[str, Any], n_tasks: int) -> str:
    """One sentence: what the comparison averaged over the tasks shows."""
    w = c["wilcoxon"]
    diff = f"{100 * c['diff']:+.2f} points averaged over {n_tasks} tasks"
    ci = f"95% CI [{100 * c['ci_low']:+.2f}, {100 * c['ci_high']:+.2f}]"
    tests = f"bootstrap p = {format_p(c['p'])}, Holm p = {format_p(c['p_holm'])}"
    sign = f"better on {w['positive']} of {n_tasks} tasks"
    if w["p"] is not None:
        sign += f", Wilcoxon p = {format_p(w['p'])} (the smallest possible with {n_tasks}: "
        sign += f"{format_p(w['min_p'])})"
    body = f"{c['method']} - {c['baseline']}: {diff} ({ci}; {tests}; {sign})"
    if c["significant"]:
        side = "better" if c["diff"] > 0 else "worse"
        return f"{c['method']} is significantly {side} than {c['baseline']}: {body}."
    stake = c.get("paper_mean")
    reach = f" Differences below {100 * c['mde']:.1f} points are not detectable here"
    if stake:
        reach += f" (the paper's mean over these tasks: {100 * stake:+.2f})"
    return f"no significant difference: {body}.{reach}."


def _overall(vs_kd: Mapping[str, Mapping[str, Any]], n_tasks: int) -> str:
    """The study's headline: which methods beat (or lose to) vanilla KD across the tasks."""
    better = [m for m, c in vs_kd.items() if c["significant"] and c["diff"] > 0]
    worse = [m for m, c in vs_kd.items() if c["significant"] and c["diff"] < 0]
    if not vs_kd:
        return "No comparison with vanilla KD (kd did not finish on every task)."
    parts = []
    if better:
        parts.append(f"{', '.join(better)} significantly better than vanilla KD")
    if worse:
        parts.append(f"{', '.join(worse)} significantly worse")
    if not parts:
        return (
            f"Across {n_tasks} tasks no method is significantly better or worse than vanilla KD "
            "(kd)."
        )
    return f"Across {n_tasks} tasks: " + "; ".join(parts) + "."


def make_study_report(
    study_dir: Path, *, client: Any = None, run_id: str | None = None, n_boot: int = 2000
) -> dict[str, Any]:
    """Write ``<study_dir>/report/`` from every task's report; log it to the study's MLflow run
    ``run_id`` when a ``client`` is given. Returns the results."""
    study_dir = Path(study_dir)
    meta_path = study_dir / "study.json"
    if not meta_path.is_file():
        raise UserInputError(f"{study_dir}: not a study (no study.json)")
    meta = json.loads(meta_path.read_text())
    tasks = {t: load_task(study_dir / t / "report") for t in meta["tasks"]}
    aggregate = analyse_study(tasks, n_boot=n_boot)
    report_dir = study_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    results = {
        "study": study_dir.name,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "setup": {**meta, "report_dir": shown_path(report_dir)},
        "tasks": {t: r[0] for t, r in tasks.items()},
        "aggregate": aggregate,
        "plots": {"forest": FOREST},
    }
    from ckd_tune.report.plots import plot_forest

    plot_forest(forest_rows(results), report_dir / FOREST, reference=BASELINE)
    (report_dir / "report.md").write_text(render_study(results))
    (report_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    if client is not None and run_id is not None:
        client.log_artifacts(run_id, str(report_dir), "report")
        for m, a in aggregate["methods"].items():
            client.log_metric(run_id, f"{m}.mean_test_score", a["mean"])
        client.set_tag(run_id, "verdict", aggregate["verdict"][:5000])
    print(f"study: {aggregate['verdict']}", flush=True)
    print(f"study: {report_dir / 'report.md'}", flush=True)
    return results


def forest_rows(results: Mapping[str, Any]) -> dict[str, list[tuple[str, float, float, float]]]:
    """Per method compared with vanilla KD: (row label, difference, CI low, CI high), one row
    per task (its paired bootstrap) and a last one for the average (hierarchical bootstrap)."""
    agg = results["aggregate"]
    rows: dict[str, list[tuple[str, float, float, float]]] = {}
    for m, c in agg["comparisons"].get(BASELINE, {}).items():
        rows[m] = []
        for t in agg["tasks"]:
            boot = results["tasks"][t]["comparisons"][BASELINE][m].get("bootstrap") or {}
            if boot:
                rows[m].append((task_title(t), boot["diff"], boot["ci_low"], boot["ci_high"]))
        rows[m].append(("average", c["diff"], c["ci_low"], c["ci_high"]))
    return rows


def task_title(task: str) -> str:
    """``sst2`` -> ``SST-2``: a GLUE task's own name (its directory's, as the paper writes it)."""
    return GLUE_TASKS[task].dir_name if task in GLUE_TASKS else task


def _points(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _cell(d: Mapping[str, Any] | None) -> str:
    if not d or d.get("mean") is None:
        return "-"
    sd = d.get("std")
    return f"{100 * d['mean']:.2f} ± {100 * sd:.2f}" if sd is not None else _points(d["mean"])


def render_study(results: Mapping[str, Any]) -> str:
    """The study's ``report.md``."""
    agg, setup = results["aggregate"], results["setup"]
    tasks = agg["tasks"]
    metric = {t: results["tasks"][t]["metric"] for t in tasks}
    cols = [f"{task_title(t)} ({METRIC_NAMES.get(metric[t], metric[t])})" for t in tasks]
    out = [f"# Multi-task study: {results['study']}", ""]
    out += [f"**Verdict:** {agg['verdict']}", ""]
    control = agg["positive_control"]
    if control:
        passed = [t for t, ok in control["per_task_passed"].items() if ok]
        out += [
            f"**Positive control:** kd beats kd on shuffled teacher logits by "
            f"{100 * control['diff']:+.2f} points averaged over the tasks (95% CI "
            f"[{100 * control['ci_low']:+.2f}, {100 * control['ci_high']:+.2f}], p = "
            f"{format_p(control['p'])}): {'passed' if control['passed'] else 'NOT passed'}; "
            f"per task it passed on {', '.join(map(task_title, passed)) or 'none'} "
            f"({len(passed)} of {len(tasks)}).",
        ]
        failed = [task_title(t) for t, ok in control["per_task_passed"].items() if not ok]
        if failed:
            out[-1] += (
                f" Where it failed ({', '.join(failed)}) this profile's students cannot tell the "
                "teacher's logits from shuffled ones: no difference between methods could show "
                "there, and those tasks only add noise to the averages."
            )
        out.append("")
    first = results["tasks"][tasks[0]]["setup"]
    out += [
        "## Setup",
        "",
        f"- **Bench / tasks:** {setup['bench']} / {', '.join(map(task_title, tasks))} (profile "
        f"`{setup['profile']}`), each task the same sweep: methods {', '.join(setup['methods'])}; "
        f"{first['num_samples']} search trials per method ({first['searcher']}, "
        f"{first['scheduler']}), {first['epochs']} epochs; re-runs with seeds "
        f"{', '.join(map(str, first['seeds']))}, scored on each task's held-out test split",
        f"- **Student:** {first['student']}",
        "- **Teacher per task:** "
        + "; ".join(
            f"{task_title(t)}: {results['tasks'][t]['teacher'].get('name', '?')}" for t in tasks
        ),
        "- **Splits per task** (examples: train / val / test / teacher's own): "
        + "; ".join(
            f"{task_title(t)}: {_sizes(results['tasks'][t]['setup']['splits'])}" for t in tasks
        ),
        f"- **Machine:** {_machine(first.get('machine') or {})}",
        "",
        "## Results",
        "",
        "Test score per task in points (each task's GLUE metric x 100), mean ± sample std over the "
        "re-run seeds; *Avg* = the mean over tasks with its 95% CI over seeds (test sets fixed), as "
        "the paper's average column.",
        "",
        "| method | " + " | ".join(cols) + " | Avg |",
        "|---|" + "---|" * (len(cols) + 1),
    ]
    teacher = agg["teacher"]
    t_vals = [teacher.get(t) for t in tasks]
    t_avg = sum(t_vals) / len(t_vals) if None not in t_vals else None
    out.append("| teacher | " + " | ".join(_points(v) for v in t_vals) + f" | {_points(t_avg)} |")
    for m, a in agg["methods"].items():
        cells = [_cell(a["per_task"][t]) for t in tasks]
        avg = f"{100 * a['mean']:.2f} [{100 * a['ci_low']:.2f}, {100 * a['ci_high']:.2f}]"
        out.append(f"| {m} | " + " | ".join(cells) + f" | {avg} |")
    if control:
        cells = [
            _cell((results["tasks"][t].get("positive_control") or {}).get("control")) for t in tasks
        ]
        out.append(f"| {CONTROL} (positive control) | " + " | ".join(cells) + " | - |")
    for m, missing in agg["incomplete"].items():
        out.append(
            f"\n{m} is left out: it has no test score on {', '.join(map(task_title, missing))} "
            "(its search or every re-run failed there; see that task's report)."
        )
    out += ["", f"![difference to vanilla KD per task and averaged]({FOREST})", ""]
    for ref, title in ((BASELINE, "vanilla KD (kd)"), (FINETUNE, "plain fine-tuning (none)")):
        by = agg["comparisons"].get(ref)
        if not by:
            continue
        out += [
            f"## Difference to {title}",
            "",
            "Per task: the mean paired difference in points with its bootstrap 95% CI over seeds x "
            "test examples (the task's report). *Average*: the mean over tasks, hierarchical "
            "bootstrap (tasks, then seeds, then test examples resampled) and, beside it, the CI "
            "with the tasks fixed; Holm-adjusted over every comparison of this report; Wilcoxon: "
            "the exact signed-rank test over the per-task differences.",
            "",
            "| method | "
            + " | ".join(map(task_title, tasks))
            + " | average [CI] | CI, tasks fixed | Holm p | Wilcoxon p | MDE | paper | verdict |",
            "|---|" + "---|" * (len(tasks) + 7),
        ]
        for m, c in by.items():
            cells = []
            for t in tasks:
                boot = results["tasks"][t]["comparisons"].get(ref, {}).get(m, {}).get("bootstrap")
                cells.append(
                    f"{100 * boot['diff']:+.2f} [{100 * boot['ci_low']:+.2f}, "
                    f"{100 * boot['ci_high']:+.2f}]"
                    if boot
                    else "-"
                )
            fixed = c["fixed_tasks"]
            out.append(
                f"| {m} | "
                + " | ".join(cells)
                + f" | {100 * c['diff']:+.2f} [{100 * c['ci_low']:+.2f}, {100 * c['ci_high']:+.2f}]"
                + f" | [{100 * fixed['ci_low']:+.2f}, {100 * fixed['ci_high']:+.2f}]"
                + f" | {format_p(c['p_holm'])} | {format_p(c['wilcoxon']['p'])}"
                + f" | {100 * c['mde']:.1f} | "
                + (f"{100 * c['paper_mean']:+.2f}" if c["paper_mean"] is not None else "-")
                + f" | {'significant' if c['significant'] else 'n.s.'} |"
            )
        out += [""] + [f"- {c['verdict']}" for c in by.values()] + [""]
    out += [
        "## Per-task reports",
        "",
        *[f"- [{task_title(t)}](../{t}/report/report.md)" for t in tasks],
        "",
        "*paper* = the Continuation-KD paper's difference for the pair averaged over these tasks "
        f"({PAPER_STUDENT} student; Jafari et al., arXiv 2212.05998), where it reports every "
        "task. MDE = the smallest average difference the hierarchical bootstrap detects with "
        "80% power at alpha 0.05. See docs/protocol.md.",
        "",
    ]
    return "\n".join(out)


def _sizes(splits: Mapping[str, Any]) -> str:
    order = ("train", "val", "test", "teacher_train")
    return " / ".join(str(splits[s]["size"]) for s in order if s in splits)


def _machine(m: Mapping[str, Any]) -> str:
    gpus = ", ".join(m.get("gpus") or []) or "none"
    return f"{m.get('cpus', '?')} CPUs; GPUs: {gpus}; torch {m.get('torch', '?')}"


def build_parser() -> argparse.ArgumentParser:
    """The standalone CLI's parser."""
    p = argparse.ArgumentParser(
        prog="python -m ckd_tune.report.study",
        description="Write (again) a multi-task study's cross-task report from its tasks' reports.",
    )
    p.add_argument("study_dir", type=Path, help="the study's directory (holds study.json)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates (default 2000)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Rebuild the cross-task report; 2 with a one-line error for bad input."""
    args = build_parser().parse_args(argv)
    try:
        if args.n_boot < 2:
            raise UserInputError(f"--n-boot: must be >= 2, got {args.n_boot}")
        make_study_report(args.study_dir, n_boot=args.n_boot)
    except UserInputError as err:
        print(f"python -m ckd_tune.report.study: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
