"""The report's plots (:mod:`ckd_tune.report.plots`): each ``plot_*`` writes a PNG of the data
it is given; the figure itself is captured to check what was drawn, including the edge cases
(methods without data or without a schedule, nothing to draw at all)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from ckd_tune.report import plots
from ckd_tune.report.plots import (
    PLOTS,
    plot_learned_schedules,
    plot_schedules,
    plot_search,
    plot_test_scores,
    plot_val_curves,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(name="figures")
def figures_fixture(monkeypatch) -> list:
    """The figures the plot functions make, in order (``_figure`` wrapped to record them)."""
    made = []
    real = plots._figure

    def recording(*args, **kwargs):
        fig = real(*args, **kwargs)
        made.append(fig)
        return fig

    monkeypatch.setattr(plots, "_figure", recording)
    return made


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height of a valid PNG at ``path`` (asserts the signature and a real body)."""
    data = path.read_bytes()
    assert data[:8] == PNG and data[12:16] == b"IHDR"
    assert len(data) > 5000  # a rendered figure, not an empty file or header
    return struct.unpack(">II", data[16:24])


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def _legend(ax) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def test_plot_file_names():
    assert PLOTS == {
        "val_curves": "val_curves.png",
        "schedules": "schedules.png",
        "search": "search_efficiency.png",
        "test_scores": "test_scores.png",
        "learned_schedules": "learned_schedules.png",
    }


def test_colors_fixed_for_known_methods_and_by_order_for_others():
    order = ["ckd", "mine", "kd", "theirs"]
    assert plots._color("ckd", order) == "#2ca02c" and plots._color("none", []) == "#7f7f7f"
    assert plots._color("mine", order) == plots._EXTRA_COLORS[0]
    assert plots._color("theirs", order) == plots._EXTRA_COLORS[1]
    assert plots._color("stranger", order) == "k"
    many = [f"m{i}" for i in range(8)]
    assert plots._color("m7", many) == plots._EXTRA_COLORS[1]  # the palette wraps around


# ------------------------------------------------------------------ validation curves


def test_val_curves_mean_and_std_over_seeds_of_unequal_length(tmp_path, figures):
    curves = {"kd": [[0.5, 0.6, 0.7], [0.7, 0.8]], "ckd": [[0.6, 0.9]], "none": [[], []]}
    out = plot_val_curves(curves, tmp_path / "v.png", metric="accuracy", teacher=0.95)
    assert out == tmp_path / "v.png"
    assert _png_size(out) == (770, 495)  # 7 x 4.5 inches at 110 dpi
    (ax,) = figures[0].axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"kd (n=2)", "ckd (n=1)", "teacher"}  # none has no history: no line
    kd = lines["kd (n=2)"]
    assert list(kd.get_xdata()) == [1, 2, 3]
    np.testing.assert_allclose(kd.get_ydata(), [0.6, 0.7, 0.7])  # epoch 3: one seed only
    assert kd.get_color() == "#1f77b4"
    np.testing.assert_allclose(lines["ckd (n=1)"].get_ydata(), [0.6, 0.9])
    assert list(lines["teacher"].get_ydata()) == [0.95, 0.95]
    # the band: ± the sample std where two seeds reach the epoch, 0 where one does
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    sd = np.std([0.5, 0.7], ddof=1)
    assert band.min() == pytest.approx(0.6 - sd) and band.max() == pytest.approx(0.7 + sd)
    assert ax.get_ylabel() == "validation accuracy" and ax.get_xlabel() == "epoch"
    assert _legend(ax) == ["kd (n=2)", "ckd (n=1)", "teacher"]


def test_val_curves_without_histories_says_so(tmp_path, figures):
    path = plot_val_curves({"kd": [[]], "ckd": []}, tmp_path / "v.png", teacher=0.9)
    assert _png_size(path) == (770, 495)
    (ax,) = figures[0].axes
    assert _texts(ax) == ["no re-run histories"]
    assert len(ax.get_lines()) == 0 and ax.get_legend() is None  # not even the teacher's line


# ------------------------------------------------------------------ schedules


def _schedule(n: int = 5, **values: float) -> dict[str, list[float]]:
    progress = list(np.linspace(0, 1, n))
    return {"progress": progress, **{k: [v * p for p in progress] for k, v in values.items()}}


def test_schedules_one_panel_per_quantity(tmp_path, figures):
    curves = {
        "ckd": _schedule(psi=1.0, phi=0.5, T=4.0),
        "annealing_kd": _schedule(psi=1.0, alpha=0.3),
        "kd": {"progress": [0.0, 1.0]},  # a method without a schedule: on no panel
    }
    path = plot_schedules(curves, tmp_path / "s.png")
    assert _png_size(path) == (4 * 4 * 110, 418)  # four panels of 4 x 3.8 inches
    axes = figures[0].axes
    # psi, phi, T first, then the other quantities by name
    assert [ax.get_title() for ax in axes] == ["psi", "phi", "T", "alpha"]
    drawn = {ax.get_title(): [line.get_label() for line in ax.get_lines()] for ax in axes}
    assert drawn == {
        "psi": ["ckd", "annealing_kd"],
        "phi": ["ckd"],
        "T": ["ckd"],
        "alpha": ["annealing_kd"],
    }
    psi = axes[0].get_lines()
    assert [line.get_color() for line in psi] == ["#2ca02c", "#ff7f0e"]
    np.testing.assert_allclose(axes[2].get_lines()[0].get_ydata(), [0, 1, 2, 3, 4])
    np.testing.assert_allclose(axes[2].get_lines()[0].get_xdata(), [0, 0.25, 0.5, 0.75, 1])


@pytest.mark.parametrize("curves", [{}, {"kd": {"progress": [0.0, 1.0]}}])
def test_schedules_when_no_method_has_one(tmp_path, figures, curves):
    path = plot_schedules(curves, tmp_path / "s.png")
    assert _png_size(path) == (440, 418)  # one panel
    (ax,) = figures[0].axes
    assert _texts(ax) == ["no method in this sweep has a schedule"] and len(ax.get_lines()) == 0


# ------------------------------------------------------------------ learned schedules


def _member(score: float, margins: list[float]) -> dict:
    schedule = [
        {"epoch": e, "T": 4.0 - e, "phi": 0.5, "psi": 0.25 * e, "margin": m}
        for e, m in enumerate(margins, start=1)
    ]
    return {"trial_id": f"t{score}", "best_val_score": score, "schedule": schedule}


def test_learned_schedules_beside_the_hand_designed_one(tmp_path, figures):
    learned = {"ckd:pbt": [_member(0.81, [0.2, 0.2, 0.9, 0.9]), _member(0.78, [0.5] * 4)]}
    hand = {"ckd": _schedule(psi=1.0, phi=0.5, T=4.0, margin=0.3), "kd": _schedule(T=4.0)}
    path = plot_learned_schedules(learned, hand, tmp_path / "l.png")
    assert _png_size(path) == (3 * 4 * 110, 418)  # T, psi, margin
    axes = figures[0].axes
    assert [ax.get_title() for ax in axes] == ["T", "psi", "margin"]
    for ax in axes:  # the best member bold, the next one thin, ckd's own dashed; no kd
        labels = [line.get_label() for line in ax.get_lines()]
        assert labels == ["ckd:pbt best (val 0.810)", "ckd:pbt #2 (val 0.780)",
                          "ckd (hand-designed)"]  # fmt: skip
        best, second, hand_line = ax.get_lines()
        assert best.get_linewidth() > second.get_linewidth()
        assert hand_line.get_linestyle() == "--" and hand_line.get_color() == "#2ca02c"
    best = axes[2].get_lines()[0]  # margin: one value per epoch, held over the epoch
    np.testing.assert_allclose(best.get_xdata(), [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(best.get_ydata(), [0.2, 0.2, 0.9, 0.9, 0.9])
    assert best.get_drawstyle() == "steps-post"


def test_learned_schedules_without_any_says_so(tmp_path, figures):
    path = plot_learned_schedules({}, {"ckd": _schedule(T=4.0)}, tmp_path / "l.png")
    _png_size(path)
    ax = figures[0].axes[0]
    assert _texts(ax) == ["no learned schedule in this sweep"] and len(ax.get_lines()) == 0


# ------------------------------------------------------------------ search efficiency


def test_search_step_lines_end_in_a_marker(tmp_path, figures):
    traces = {"kd": [[1, 0.5], [2, 0.6], [4, 0.65]], "none": [], "ckd": [[2, 0.7]]}
    path = plot_search(traces, tmp_path / "e.png", metric="mcc")
    assert _png_size(path) == (770, 495)
    (ax,) = figures[0].axes
    lines = ax.get_lines()
    # per method with a trace: its step line, then a marker on its last point
    assert [line.get_label() for line in lines][::2] == ["kd", "ckd"]
    kd_step, kd_end = lines[0], lines[1]
    assert kd_step.get_drawstyle() == "steps-post"
    assert list(kd_step.get_xdata()) == [1, 2, 4] and list(kd_step.get_ydata()) == [0.5, 0.6, 0.65]
    assert list(kd_end.get_xdata()) == [4] and list(kd_end.get_ydata()) == [0.65]
    assert kd_end.get_marker() == "o"
    assert ax.get_ylabel() == "best validation mcc so far"
    assert _legend(ax) == ["kd", "ckd"]


def test_search_without_traces_says_so(tmp_path, figures):
    path = plot_search({"kd": [], "ckd": []}, tmp_path / "e.png")
    assert _png_size(path) == (770, 495)
    (ax,) = figures[0].axes
    assert _texts(ax) == ["no trial runs with best_val_score found in MLflow"]
    assert len(ax.get_lines()) == 0 and ax.get_legend() is None


# ------------------------------------------------------------------ test scores


def test_test_scores_points_per_seed_and_labels_for_methods_without_runs(tmp_path, figures):
    scores = {"ckd": [0.8, 0.82, 0.81], "annealing_kd": [], "kd": [0.78, 0.79], "none": []}
    path = plot_test_scores(
        scores, tmp_path / "t.png", metric="f1", teacher=0.9, failed=["annealing_kd"]
    )
    assert _png_size(path) == (770, 495)
    (ax,) = figures[0].axes
    assert [t.get_text() for t in ax.get_xticklabels()] == list(scores)
    assert ax.get_xlim() == pytest.approx((0.4, 4.6))
    # one point per seed, jittered around the method's position
    ckd, kd = ax.collections
    ckd_xy, kd_xy = ckd.get_offsets(), kd.get_offsets()
    assert sorted(ckd_xy[:, 1]) == [0.8, 0.81, 0.82] and sorted(kd_xy[:, 1]) == [0.78, 0.79]
    assert np.all(np.abs(ckd_xy[:, 0] - 1) <= 0.12) and np.all(np.abs(kd_xy[:, 0] - 3) <= 0.12)
    # a failed search and a method without runs are labelled at their own positions
    labels = {t.get_text(): t.get_position()[0] for t in ax.texts}
    assert labels == {"FAILED": 2, "no runs": 4}
    # the boxes sit only where there is data: medians (and caps) at positions 1 and 3
    flat = {
        (round(float(np.mean(line.get_xdata())), 6), round(float(line.get_ydata()[0]), 6))
        for line in ax.get_lines()
        if len(set(line.get_ydata())) == 1 and line.get_label() != "teacher (0.9000)"
    }
    assert {(1.0, 0.81), (3.0, 0.785)} <= flat and {x for x, _ in flat} == {1.0, 3.0}
    assert _legend(ax) == ["teacher (0.9000)"] and ax.get_ylabel() == "test f1"


def test_test_scores_without_any_data_or_teacher(tmp_path, figures):
    path = plot_test_scores({"kd": [], "ckd": []}, tmp_path / "t.png")
    assert _png_size(path) == (770, 495)
    (ax,) = figures[0].axes
    assert len(ax.collections) == 0 and len(ax.get_lines()) == 0  # no box, no point, no teacher
    assert _texts(ax) == ["no runs", "no runs"] and ax.get_legend() is None
