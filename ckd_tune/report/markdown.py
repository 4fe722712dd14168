"""Markdown (pure): :func:`render_markdown` turns a results dict into ``report.md``, with the
number and cell formatting helpers that only the report's tables use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ckd_tune.report.formatting import fmt_value, seed_list, signed
from ckd_tune.report.stats import format_p, short_verdict
from ckd_tune.report.students import STUDENT_JSON, WEIGHTS_FILE


def render_markdown(results: Mapping[str, Any]) -> str:
    """The report as markdown, from a results dict (as written to ``results.json``)."""
    setup = results["setup"]
    metric = results["metric"]
    methods = results["methods"]
    teacher = results.get("teacher") or {}
    assistant = results.get("assistant") or {}
    baseline, finetune = results["baseline"], results["finetune"]
    vs_base = results["comparisons"].get(baseline, {})
    vs_ft = results["comparisons"].get(finetune, {})
    machine = setup.get("machine", {})
    lines: list[str] = [f"# KD comparison report: {results['sweep']}", ""]
    control = results.get("positive_control")
    lines += [
        "**Positive control:** "
        + (
            control["verdict"]
            if control
            else "not run (it needs vanilla KD, `kd`, among the methods): nothing shows that "
            "this bench can separate methods."
        ),
        "",
        f"**Verdict:** {results['verdict']}",
        "",
    ]

    lines += ["## Setup", ""]
    gpus = ", ".join(machine.get("gpus") or []) or "none"
    ray_info = machine.get("ray")
    lines += [
        f"- **Bench / task:** {setup['bench']} / {setup['task']} (profile `{setup['profile']}`); "
        f"test metric: **{metric}** on the held-out test split (never used for selection)",
        f"- **Teacher:** {teacher.get('name', 'n/a')}; trained on "
        + (
            "its own examples, disjoint from the student's train and validation examples"
            if setup.get("teacher_data") == "disjoint"
            else "the student's training examples (its logits on them are memorised)"
        )
        + f". {metric}: on the student's training examples {_num(teacher.get('train'))}, "
        f"validation {_num(teacher.get('val'))}, test {_num(teacher.get('test'))}",
        *_assistant_setup(assistant, metric, setup.get("teacher_data") == "disjoint"),
        f"- **Student:** {setup.get('student', 'n/a')}",
        f"- **Search budget per method:** {setup.get('num_samples') or 'n/a'} trials "
        f"(searcher {setup.get('searcher') or 'n/a'}, scheduler {setup.get('scheduler') or 'n/a'}), "
        f"up to {setup.get('epochs')} epochs each; best configuration chosen by validation "
        f"{metric}",
        f"- **Seeds:** the search trained every trial with seed {setup.get('search_seed', 'n/a')}; "
        f"the re-runs use {len(setup['seeds'])} other seeds ({seed_list(setup['seeds'])}, the same "
        "for every method, paired by seed), full epochs, best-validation-epoch weights scored on "
        "the test split",
        f"- **Machine:** {machine.get('platform', 'n/a')}; {machine.get('cpus', 'n/a')} CPUs; "
        f"GPUs: {gpus}; torch {machine.get('torch', 'n/a')}"
        + (
            f"; Ray cluster: {ray_info.get('nodes')} node(s), {ray_info.get('CPU')} CPUs, "
            f"{ray_info.get('GPU') or 0} GPUs"
            if ray_info
            else ""
        ),
        (
            f"- **MLflow:** experiment id {setup['experiment_id']}, summary run "
            f"{setup.get('summary_run') or 'n/a'} (re-runs are tagged `role=rerun`)"
            if setup.get("experiment_id")
            else "- **MLflow:** not used"
        ),
        "",
    ]
    splits = setup.get("splits") or {}
    if splits:
        lines += ["| split | examples | mean words per example |", "|---|---|---|"]
        for name, info in splits.items():
            words = info.get("mean_words")
            lines.append(
                f"| {name} | {info['size']} | {'-' if words is None else f'{words:.1f}'} |"
            )
        lines.append("")

    lines += ["## Results", ""]
    lines += [
        f"Test {metric} over the re-run seeds: mean ± sample std, Student-t 95% CI of the mean; "
        f"Δ = mean paired difference to {finetune} (plain fine-tuning, the gain from distillation) "
        f"and to {baseline} (vanilla KD); * marks a significant difference (see below).",
        "",
        f"| method | status | best val {metric} (search) | test {metric} mean ± std | 95% CI | "
        f"seeds ok / run | Δ vs {finetune} | Δ vs {baseline} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if control:
        c = control["control"]
        lines.append(
            f"| {control['versus']} (positive control) | - | - | {_num(c['mean'])} ± "
            f"{_num(c['std'])} | - | {c['n']} / {len(control['seeds'])} | - | "
            f"{signed(-control['difference']) if control['difference'] is not None else '-'} |"
        )
    if teacher:
        lines.append(
            f"| teacher | - | {_num(teacher.get('val'))} | {_num(teacher.get('test'))} | - | - | "
            f"{_delta_teacher(teacher.get('test'), methods.get(finetune))} | - |"
        )
    if assistant:
        scores = assistant["scores"]
        lines.append(
            f"| assistant | - | {_num(scores['val'])} | {_num(scores['test'])} | - | - | "
            f"{_delta_teacher(scores['test'], methods.get(finetune))} | - |"
        )
    for name, m in methods.items():
        test = m["test"]
        run = len(m["seeds"])
        if m["status"] == "failed":
            lines.append(
                f"| {name} | **FAILED** (every search trial failed) | - | FAILED | - | 0 / 0 | - | - |"
            )
            continue
        status = "ok" if m["status"] == "ok" else "**all re-runs failed**"
        mean_std = (
            "-"
            if test["mean"] is None
            else f"{_num(test['mean'])} ± {_num(test['std'])}"
            if test["std"] is not None
            else f"{_num(test['mean'])} (1 seed)"
        )
        ci = (
            f"[{_num(test['ci_low'])}, {_num(test['ci_high'])}]"
            if test["ci_low"] is not None
            else "n/a (n < 2)"
        )
        lines.append(
            f"| {name} | {status} | {_num(m['search']['best_val_score'])} | {mean_std} | {ci} | "
            f"{test['n']} / {run} | {_delta(vs_ft.get(name), name == finetune)} | "
            f"{_delta(vs_base.get(name), name == baseline)} |"
        )
    lines.append("")
    failed_seeds = {n: m["failed_seeds"] for n, m in methods.items() if m["failed_seeds"]}
    if failed_seeds:
        lines += [
            "Failed re-runs (non-finite loss or a crash; excluded from the statistics): "
            + "; ".join(f"{n}: seeds {seed_list(s)}" for n, s in failed_seeds.items()),
            "",
        ]
    lines += ["### Best configurations (changes from the bench defaults)", ""]
    for name, m in methods.items():
        if m["status"] == "failed":
            lines.append(f"- **{name}**: FAILED, no configuration")
        else:
            changes = ", ".join(f"`{k}={fmt_value(v)}`" for k, v in m["config_changes"].items())
            lines.append(f"- **{name}**: {changes or 'the defaults'}")
    lines.append("")

    lines += [f"## Statistical comparison vs vanilla KD ({baseline})", ""]
    lines += [
        f"Difference = method − {baseline} in test {metric}, paired by seed. The verdict's test "
        "is a paired bootstrap over seeds × test examples (it counts the test set's own sampling "
        "noise as well as the seeds'), Holm-adjusted over all of this report's comparisons; a "
        "difference is significant when the adjusted p ≤ 0.05 and the bootstrap 95% CI excludes "
        "0. The seed-only paired t-test (what papers report; conditional on this test set) is "
        "shown beside it. MDE = the minimum detectable difference (80% power, α 0.05) of the "
        "verdict's test; *paper* = the gain the Continuation-KD paper reports for this pair "
        "(points). See docs/protocol.md.",
        "",
    ]
    for ref, title in (
        (vs_base, None),
        (vs_ft, f"Gain from distillation (vs {finetune}, plain fine-tuning)"),
    ):
        if not ref:
            continue
        if title:
            lines += [f"{title}:", ""]
        lines += [
            "| method | difference | bootstrap 95% CI | bootstrap p | Holm p | t-test p (seeds "
            "only) | MDE | paper | verdict |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, c in ref.items():
            boot = c.get("bootstrap")
            ci = f"[{signed(boot['ci_low'])}, {signed(boot['ci_high'])}]" if boot else "n/a"
            paper = c.get("paper")
            lines.append(
                f"| {name} | {signed(c['mean_diff'])} | {ci} | "
                f"{format_p(boot['p'] if boot else None)} | {format_p(c.get('p_holm'))} | "
                f"{format_p(c['p_paired'])} | {_num(c.get('mde'))} | "
                f"{_paper(paper)} | {short_verdict(c)} |"
            )
        lines.append("")
        lines += [f"- {c['verdict']} {c.get('sensitivity', '')}".rstrip() for c in ref.values()]
        lines.append("")
    learned = [
        c
        for by_method in results["comparisons"].values()
        for c in by_method.values()
        if c.get("learned_verdict")
    ]
    if learned:
        lines += ["### Learned vs hand-designed schedule", ""]
        lines += [
            "Each search variant against its base method, by the same test (in the same Holm "
            "family):",
            "",
        ]
        lines += [f"- {c['learned_verdict']} {c.get('sensitivity', '')}".rstrip() for c in learned]
        lines.append("")
    lines += [f"**Verdict:** {results['verdict']}", ""]
    flags = {n: m.get("range_flags") for n, m in methods.items() if m.get("range_flags")}
    if flags:
        lines += ["### Search ranges to widen", ""]
        lines += [
            f"- **{n}**: `{f['param']}` = {fmt_value(f['value'])} lies within 5% of the {f['bound']} "
            f"bound of its range [{fmt_value(f['low'])}, {fmt_value(f['high'])}]: widen the range."
            for n, fs in flags.items()
            for f in fs
        ]
        lines.append("")

    lines += ["## Search budget", ""]
    lines += [
        "| method | trials | failed trials | trial-epochs | search wall time | re-run time |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in methods.items():
        s = m["search"]
        lines.append(
            f"| {name} | {s.get('trials', '-')} | {s.get('errored', '-')} | "
            f"{s.get('trial_epochs', '-')} | {_duration(s.get('wall_seconds'))} | "
            f"{_duration(m['rerun_seconds']) if m['seeds'] else '-'} |"
        )
    lines.append("")
    costs = [
        _one_time_cost(role, model)
        for role, model in (("teacher", teacher), ("assistant", assistant))
        if model.get("train_seconds") is not None
    ]
    if costs:
        lines += [
            "One-time costs, outside every method's search budget (trained once, then cached): "
            + "; ".join(costs)
            + ".",
            "",
        ]

    plots = results.get("plots", {})
    captions = {
        "val_curves": f"Validation {metric} per epoch of the best configurations (mean ± std over seeds)",
        "schedules": "Schedules of the best configurations over training (psi, phi, T)",
        "search": f"Search efficiency: best validation {metric} so far vs cumulative trial-epochs",
        "test_scores": f"Test {metric} per seed (box + points); the dashed line is the teacher",
        "learned_schedules": "Schedules learned by the search (T, psi, margin per epoch of the "
        "population's top members, the best bold) beside the hand-designed schedule of the base "
        "method's best configuration (dashed)",
    }
    learned = any(m.get("schedule") for m in methods.values())
    lines += ["## Plots", ""]
    for key, caption in captions.items():
        if key == "learned_schedules" and not learned:
            continue  # no search variant learned a schedule in this sweep
        if key in plots:
            lines += [f"### {caption}", "", f"![{caption}]({plots[key]})", ""]

    lines += ["## Best models", ""]
    saved = {n: m["model"] for n, m in methods.items() if m.get("model")}
    if saved:
        lines += [
            "For each method, the student of the seed with the best **validation** score (not "
            "test, so the choice stays honest), at its best validation epoch; `path` is relative "
            "to this report's directory, `MLflow model` is the same student logged to its "
            "re-run's MLflow run:",
            "",
            f"| method | seed | val {metric} | test {metric} | path | MLflow model |",
            "|---|---|---|---|---|---|",
        ]
        for name, info in saved.items():
            uri = f"`{info['mlflow_uri']}`" if info.get("mlflow_uri") else "—"
            lines.append(
                f"| {name} | {info['seed']} | {_num(info['val_score'])} | "
                f"{_num(info['test_score'])} | `{info['path']}` | {uri} |"
            )
        registered = results.get("registered_model")
        if registered:
            lines += [
                "",
                f"Registered in the MLflow Model Registry: {registered['method']}'s student as "
                f"`{registered['uri']}`.",
            ]
        first = next(iter(saved.values()))
        lines += [
            "",
            "Load one with a single call from this directory (returns a `torch.nn.Module` in "
            "eval mode):",
            "",
            "```python",
            "from ckd_tune.report import load_student",
            f'model = load_student("{first["path"]}")',
            "```",
            "",
        ]
        if first.get("mlflow_uri"):
            lines += [
                "or as an MLflow model from anywhere the tracking server is reachable (text in, "
                "label and score out for text students; normalised images in, logits out for "
                "vision students):",
                "",
                "```python",
                "import mlflow",
                f'model = mlflow.pyfunc.load_model("{first["mlflow_uri"]}")',
                "```",
                "",
            ]
        if first.get("format") == "transformers":
            lines += [
                "The directory is also a plain Hugging Face model with its tokenizer "
                "(`AutoModelForSequenceClassification.from_pretrained(path)`, "
                "`AutoTokenizer.from_pretrained(path)`).",
                "",
            ]
        else:
            lines += [
                f"The directory holds the state dict (`{WEIGHTS_FILE}`, load with "
                f"`weights_only=True`) and `{STUDENT_JSON}`, which names the builder and its "
                "arguments.",
                "",
            ]
    else:
        lines += ["No model was saved (no method has a successful re-run).", ""]
    files = ", ".join(f"`{v}`" for v in plots.values())
    lines += [
        f"Machine-readable results: `results.json`; plots: {files}. The same files are "
        "artifacts of the sweep's MLflow summary run (folder `report`).",
        "",
    ]
    return "\n".join(lines)


def _assistant_setup(assistant: Mapping[str, Any], metric: str, disjoint: bool) -> list[str]:
    """The setup's line on the teacher assistant (none without one)."""
    if not assistant:
        return []
    scores = assistant["scores"]
    examples = (
        "the teacher's own examples (disjoint from the student's)"
        if disjoint
        else "the student's training examples, as the teacher"
    )
    return [
        f"- **Teacher assistant** (what {', '.join(assistant['used_by'])} distils from): "
        f"{assistant['name']}; trained on {examples}, never on validation or test labels (its "
        "best epoch chosen on validation, as the teacher's). "
        f"{metric}: on the student's training examples {_num(scores['train'])}, validation "
        f"{_num(scores['val'])}, test {_num(scores['test'])}"
    ]


def _one_time_cost(role: str, model: Mapping[str, Any]) -> str:
    """What training the teacher (or assistant) cost, and whether this sweep paid it."""
    used_by = f" (used by {', '.join(model['used_by'])} only)" if model.get("used_by") else ""
    if model["reused"] and not model["train_seconds"]:
        return f"{role}{used_by}: a ready model, not trained here"
    paid = "reused from the cache, paid by an earlier sweep" if model["reused"] else "this sweep"
    return f"{role}{used_by}: {_duration(model['train_seconds'])} of training ({paid})"


def _paper(paper: Mapping[str, Any] | None) -> str:
    if not paper:
        return "-"
    return " / ".join(f"{v:+.2f}" for v in paper["points"].values())


def _num(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _delta(c: Mapping[str, Any] | None, is_ref: bool) -> str:
    if is_ref:
        return "(reference)"
    if c is None or c["mean_diff"] is None:
        return "-"
    mark = " *" if c["significant"] else ""
    return f"{signed(c['mean_diff'])}{mark}"


def _delta_teacher(teacher_test: float | None, finetune: Mapping[str, Any] | None) -> str:
    if teacher_test is None or not finetune or finetune["test"]["mean"] is None:
        return "-"
    return signed(teacher_test - finetune["test"]["mean"])


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
