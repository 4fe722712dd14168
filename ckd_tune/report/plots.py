"""Plots (from data; matplotlib Agg, no pyplot state): the report's PNGs, their file names
(``PLOTS``) and the colour of each method."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PLOTS = {
    "val_curves": "val_curves.png",
    "schedules": "schedules.png",
    "search": "search_efficiency.png",
    "test_scores": "test_scores.png",
    "learned_schedules": "learned_schedules.png",
}
_COLORS = {"none": "#7f7f7f", "kd": "#1f77b4", "annealing_kd": "#ff7f0e", "ckd": "#2ca02c"}
_EXTRA_COLORS = ["#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]


def _figure(width: float = 7.0, height: float = 4.5) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _color(method: str, order: Sequence[str]) -> str:
    if method in _COLORS:
        return _COLORS[method]
    extras = [m for m in order if m not in _COLORS]
    return _EXTRA_COLORS[extras.index(method) % len(_EXTRA_COLORS)] if method in extras else "k"


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_val_curves(
    curves: Mapping[str, Sequence[Sequence[float]]],
    path: Path,
    *,
    metric: str = "score",
    teacher: float | None = None,
) -> Path:
    """Validation score per epoch, mean ± std over seeds, one line per method.

    ``curves[method]`` holds one list of per-epoch scores per seed (lists may differ in length).
    """
    fig = _figure()
    ax = fig.subplots()
    order = list(curves)
    drawn = False
    for method, seeds in curves.items():
        seeds = [s for s in seeds if len(s)]
        if not seeds:
            continue
        length = max(len(s) for s in seeds)
        epochs = np.arange(1, length + 1)
        mean = np.array([np.mean([s[e] for s in seeds if len(s) > e]) for e in range(length)])
        std = np.array(
            [
                np.std([s[e] for s in seeds if len(s) > e], ddof=1)
                if sum(len(s) > e for s in seeds) > 1
                else 0.0
                for e in range(length)
            ]
        )
        color = _color(method, order)
        ax.plot(epochs, mean, marker="o", color=color, label=f"{method} (n={len(seeds)})")
        ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2)
        drawn = True
    if not drawn:
        _empty(ax, "no re-run histories")
    else:
        if teacher is not None:
            ax.axhline(teacher, color="k", linestyle="--", linewidth=1, label="teacher")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"validation {metric}")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend()
    ax.set_title("Best configurations: validation curves (mean ± std over seeds)")
    fig.savefig(path, dpi=110)
    return path


def plot_schedules(curves: Mapping[str, Mapping[str, Sequence[float]]], path: Path) -> Path:
    """psi, phi and T of each method's best config over training progress (from :func:`schedule_curves`)."""
    keys = [k for k in ("psi", "phi", "T") if any(k in c for c in curves.values())]
    keys += sorted({k for c in curves.values() for k in c} - {"progress", *keys})
    fig = _figure(4.0 * max(1, len(keys)), 3.8)
    axes = fig.subplots(1, max(1, len(keys)), squeeze=False)[0]
    if not keys:
        _empty(axes[0], "no method in this sweep has a schedule")
    order = list(curves)
    for ax, key in zip(axes, keys, strict=False):
        for method, c in curves.items():
            if key in c:
                ax.plot(c["progress"], c[key], color=_color(method, order), label=method)
        ax.set_title(key)
        ax.set_xlabel("training progress")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Schedules of the best configurations")
    fig.savefig(path, dpi=110)
    return path


LEARNED_KEYS = ("T", "psi", "margin")


def plot_learned_schedules(
    learned: Mapping[str, Sequence[Mapping[str, Any]]],
    hand: Mapping[str, Mapping[str, Sequence[float]]],
    path: Path,
) -> Path:
    """T, psi and margin over training: the schedules a search learned (``ckd:pbt``) beside the
    hand-designed ones of its base method's best config.

    ``learned[variant]``: its members, best first, each ``{"trial_id", "best_val_score",
    "schedule"}`` (per-epoch entries ``{"epoch", "T", "psi", "margin", ...}``): the best drawn
    bold, the others thin. ``hand[method]``: :func:`schedule_curves` of the base methods (drawn
    dashed); only the bases of the variants in ``learned`` are drawn.
    """
    fig = _figure(4.0 * len(LEARNED_KEYS), 3.8)
    axes = fig.subplots(1, len(LEARNED_KEYS), squeeze=False)[0]
    learned = {m: members for m, members in learned.items() if members}
    if not learned:
        _empty(axes[0], "no learned schedule in this sweep")
        for ax in axes[1:]:
            ax.set_axis_off()
    order = [*learned, *(m.partition(":")[0] for m in learned)]
    for ax, key in zip(axes, LEARNED_KEYS if learned else (), strict=False):
        for variant, members in learned.items():
            color = _color(variant, order)
            for rank, member in enumerate(members):
                entries = sorted(member["schedule"], key=lambda e: e["epoch"])
                if not entries or key not in entries[0]:
                    continue
                epochs = entries[-1]["epoch"]
                x = [(e["epoch"] - 1) / epochs for e in entries] + [1.0]
                y = [e[key] for e in entries] + [entries[-1][key]]
                score = member.get("best_val_score")
                label = f"{variant} {'best' if rank == 0 else f'#{rank + 1}'}" + (
                    f" (val {score:.3f})" if score is not None else ""
                )
                ax.step(x, y, where="post", color=color, label=label,
                        linewidth=2.2 if rank == 0 else 1.0, alpha=1.0 if rank == 0 else 0.45)  # fmt: skip
            base = variant.partition(":")[0]
            curve = hand.get(base, {})
            if key in curve:
                ax.plot(curve["progress"], curve[key], color=_color(base, order), linestyle="--",
                        label=f"{base} (hand-designed)")  # fmt: skip
        ax.set_title(key)
        ax.set_xlabel("training progress")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Learned schedules (top members) vs the hand-designed schedule")
    fig.savefig(path, dpi=110)
    return path


def plot_search(
    traces: Mapping[str, Sequence[Sequence[float]]], path: Path, *, metric: str = "score"
) -> Path:
    """Best-so-far validation score vs cumulative trial-epochs, one step line per method."""
    fig = _figure()
    ax = fig.subplots()
    order = list(traces)
    drawn = False
    for method, trace in traces.items():
        if not trace:
            continue
        x = [p[0] for p in trace]
        y = [p[1] for p in trace]
        ax.step(x, y, where="post", color=_color(method, order), label=method)
        ax.plot(x[-1:], y[-1:], "o", color=_color(method, order))
        drawn = True
    if drawn:
        ax.set_xlabel("cumulative trial-epochs")
        ax.set_ylabel(f"best validation {metric} so far")
        ax.grid(alpha=0.3)
        ax.legend()
    else:
        _empty(ax, "no trial runs with best_val_score found in MLflow")
    ax.set_title("Search efficiency")
    fig.savefig(path, dpi=110)
    return path


def plot_test_scores(
    scores: Mapping[str, Sequence[float]],
    path: Path,
    *,
    metric: str = "score",
    teacher: float | None = None,
    failed: Iterable[str] = (),
) -> Path:
    """Box + strip plot of per-seed test scores per method; the teacher as a horizontal line."""
    fig = _figure()
    ax = fig.subplots()
    names = list(scores)
    failed = set(failed)
    rng = np.random.default_rng(0)
    with_data = [i for i, n in enumerate(names) if len(scores[n])]
    if with_data:
        ax.boxplot(
            [scores[names[i]] for i in with_data],
            positions=[i + 1 for i in with_data],
            widths=0.5,
            showfliers=False,
        )
    for i, name in enumerate(names, start=1):
        values = list(scores[name])
        if values:
            x = i + rng.uniform(-0.12, 0.12, size=len(values))
            ax.scatter(x, values, color=_color(name, names), zorder=3, s=22)
        else:
            label = "FAILED" if name in failed else "no runs"
            ax.text(i, 0.5, label, ha="center", va="center", color="#d62728",
                    transform=ax.get_xaxis_transform())  # fmt: skip
    if teacher is not None:
        ax.axhline(
            teacher, color="k", linestyle="--", linewidth=1, label=f"teacher ({teacher:.4f})"
        )
        ax.legend()
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.set_xlim(0.4, len(names) + 0.6)
    ax.set_ylabel(f"test {metric}")
    ax.grid(alpha=0.3, axis="y")
    ax.set_title("Test scores of the best configurations, one point per seed")
    fig.savefig(path, dpi=110)
    return path


def plot_forest(
    rows: Mapping[str, Sequence[tuple[str, float, float, float]]],
    path: Path,
    *,
    reference: str = "kd",
) -> Path:
    """A forest plot: per method, its difference to ``reference`` (points) with the 95% CI on
    each row (``rows[method]``: (label, difference, CI low, CI high), fractions of the metric;
    the last row, the average, drawn as a diamond)."""
    labels = list(dict.fromkeys(label for r in rows.values() for label, *_ in r))
    fig = _figure(7.0, 1.2 + 0.45 * len(labels) * max(1, len(rows)) ** 0.5)
    ax = fig.subplots()
    if not rows:
        _empty(ax, f"no method to compare with {reference}")
        fig.savefig(path, dpi=120)
        return path
    order = list(rows)
    step = 0.7 / max(1, len(order))
    for k, (method, entries) in enumerate(rows.items()):
        offset = (k - (len(order) - 1) / 2) * step
        for label, diff, low, high in entries:
            y = labels.index(label) + offset
            average = label == labels[-1]
            ax.errorbar(
                100 * diff,
                y,
                xerr=[[100 * (diff - low)], [100 * (high - diff)]],
                fmt="D" if average else "o",
                markersize=8 if average else 5,
                color=_color(method, order),
                capsize=3,
                label=method if label == entries[0][0] else None,
            )
    ax.axvline(0.0, color="0.3", lw=1)
    ax.axhline(len(labels) - 1.5, color="0.8", lw=1, ls="--")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(f"difference to {reference} (points, 95% CI)")
    ax.set_title(f"each method minus {reference}: per task and averaged over tasks")
    ax.legend(loc="best", fontsize=8)
    fig.savefig(path, dpi=120)
    return path
