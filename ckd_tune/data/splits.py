"""Seeded carving of an official training set into student-train, val and teacher-train rows.

Used by every task loader (GLUE and CIFAR), so all benches split the same way:

* :func:`source_groups` groups rows that share a source sentence. SST-2's training file holds
  each review sentence together with its parse-tree phrases (contiguous runs of its words);
  a phrase joins the group of the longest sentence it is a span of, and that sentence is the
  group's *root*.
* :func:`carve_splits` draws ``val`` from root rows only (full sentences, like the official
  dev/test split), drops every other row of the val groups, then gives each remaining group to
  the student pool or to the teacher pool, so no source sentence is shared between
  student-train, val and teacher-train; finally it subsamples each pool. Every draw is seeded
  and stratified by label where labels are given (classification).
* :func:`subsample` draws a seeded, stratified subset (used for the official test split).
* :func:`split_task` does both for a task: carves its official training rows and subsamples
  its official test rows.
* :func:`check_split_settings` validates the size and seed settings (loaders call it before
  reading any data).

Tasks without phrase structure pass ``groups=None``: every row is then its own group and its
own root, and without a teacher split the draws are exactly those of the loaders before this
module existed (``sklearn.model_selection.train_test_split`` with ``random_state=seed``).
Pure numpy / scikit-learn; no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from ckd_tune.errors import UserInputError

__all__ = [
    "CarvedSplits",
    "TaskSplits",
    "carve_splits",
    "check_split_settings",
    "fit_sizes",
    "source_groups",
    "split_task",
    "subsample",
]


def source_groups(texts: Sequence[str]) -> np.ndarray:
    """Group id of each row: the row index of its root (the longest text it is a span of).

    Rows are visited longest first (by whitespace-token count; ties by row index, so the result
    is deterministic). A row whose whitespace-normalised tokens form a contiguous token span of
    an earlier root (exact duplicates included) joins that root's group; otherwise it becomes a
    root (group id = its own index) and all its contiguous token spans are indexed. A span of
    several roots belongs to the first root visited. Returns an int64 array of ``len(texts)``.
    On SST-2's 67,349 training rows: 6,885 roots, about 3.5 s.
    """
    tokens = [text.split() for text in texts]
    order = sorted(range(len(tokens)), key=lambda i: (-len(tokens[i]), i))
    owner: dict[str, int] = {}  # span (tokens joined by one space) -> root row
    groups = np.empty(len(tokens), dtype=np.int64)
    for row in order:
        words = tokens[row]
        root = owner.get(" ".join(words))
        if root is not None:
            groups[row] = root
            continue
        groups[row] = row
        if not words:  # an empty row: later empty rows join it
            owner.setdefault("", row)
        for start in range(len(words)):
            span = words[start]
            owner.setdefault(span, row)
            for word in words[start + 1 :]:
                span = f"{span} {word}"
                owner.setdefault(span, row)
    return groups


@dataclass(frozen=True)
class CarvedSplits:
    """Sorted row indices of the three splits carved from one official training set."""

    train: np.ndarray  # the student's training rows
    val: np.ndarray  # root rows only
    teacher_train: np.ndarray | None  # None: no teacher split (the teacher trains on ``train``)


def _draw(
    rows: np.ndarray, size: int | float, seed: int, stratify: np.ndarray | None, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """(rest, drawn), both sorted: ``size`` of ``rows`` (a count or a fraction), seeded."""
    try:
        rest, drawn = train_test_split(
            rows,
            test_size=size,
            random_state=seed,
            stratify=None if stratify is None else stratify[rows],
        )
    except ValueError as err:
        reason = " ".join(str(err).split())
        raise UserInputError(f"cannot draw {what}: {reason}") from None
    return np.sort(rest), np.sort(drawn)


def subsample(
    rows: np.ndarray,
    size: int | None,
    *,
    seed: int,
    stratify: np.ndarray | None = None,
    what: str = "a subsample",
    clip: bool = True,
) -> np.ndarray:
    """``size`` of ``rows`` drawn seeded (stratified by ``stratify[rows]`` if given), sorted.

    ``size`` None or equal to ``len(rows)`` keeps every row; a larger ``size`` keeps every row
    if ``clip``, else raises :class:`UserInputError`. ``what`` names the draw in errors
    (e.g. "test_size=500"). When fewer rows than classes would be left out (a stratified
    split needs every class on both sides), the few rows left out are picked unstratified.
    """
    rows = np.asarray(rows)
    if size is None or size == len(rows):
        return np.sort(rows)
    if size > len(rows):
        if clip:
            return np.sort(rows)
        raise UserInputError(f"cannot draw {what}: only {len(rows)} rows are available")
    left_out = len(rows) - size
    if stratify is not None and left_out < len(np.unique(stratify[rows])):
        dropped = np.random.RandomState(seed).choice(len(rows), size=left_out, replace=False)
        return np.sort(np.delete(rows, dropped))
    return _draw(rows, size, seed, stratify, what)[1]


def _interleaved_order(
    units: np.ndarray, labels: np.ndarray | None, rng: np.random.Generator
) -> np.ndarray:
    """``units`` shuffled so that every prefix holds each label in about its overall share."""
    shuffled = rng.permutation(units)
    if labels is None:
        return shuffled
    unit_labels = labels[shuffled]
    _, inverse, counts = np.unique(unit_labels, return_inverse=True, return_counts=True)
    rank = np.empty(len(shuffled), dtype=np.float64)
    for label in range(len(counts)):
        members = np.flatnonzero(inverse == label)
        rank[members] = (np.arange(len(members)) + 0.5) / counts[label]
    tie_break = rng.random(len(shuffled))
    return shuffled[np.lexsort((tie_break, rank))]


def _check_size(name: str, value: object, *, fraction: bool = False) -> None:
    if value is None and not fraction:  # only val_size (the one fraction) is required
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserInputError(f"{name} must be a number, got {value!r}")
    if isinstance(value, float):
        if not fraction or not 0.0 < value < 1.0:
            kind = "a fraction in (0, 1) or a count" if fraction else "a count"
            raise UserInputError(f"{name} must be {kind}, got {value!r}")
    elif value < 1:
        raise UserInputError(f"{name} must be at least 1, got {value}")


def check_split_settings(
    *,
    val_size: int | float,
    train_size: int | None = None,
    teacher_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
) -> None:
    """Raise :class:`UserInputError` (one line) for a malformed split setting.

    ``val_size``: a count >= 1 or a fraction in (0, 1); ``train_size``, ``teacher_size``,
    ``test_size``: None or a count >= 1; ``seed``: an integer. Loaders call it before reading
    any data; whether the sizes fit the data is checked when the splits are drawn.
    """
    _check_size("val_size", val_size, fraction=True)
    _check_size("train_size", train_size)
    _check_size("teacher_size", teacher_size)
    _check_size("test_size", test_size)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UserInputError(f"seed must be an integer, got {seed!r}")


def carve_splits(
    n_rows: int,
    *,
    val_size: int | float,
    train_size: int | None = None,
    teacher_size: int | None = None,
    seed: int = 0,
    stratify: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    clip_train: bool = False,
) -> CarvedSplits:
    """Carve ``n_rows`` training rows into student-train, val and (optionally) teacher-train.

    1. ``val``: ``val_size`` root rows (a count, or a fraction of the roots), drawn seeded and
       stratified by the roots' labels; every other row of the val groups is then left out.
    2. With ``teacher_size``: the remaining groups are split between a student pool and a
       teacher pool, whole groups only, in proportion to ``train_size : teacher_size`` (with
       ``train_size`` None, the teacher pool gets just enough groups for ``teacher_size`` rows
       and the student pool the rest). Groups are taken in a seeded order that keeps each
       pool's share of every root label about even.
    3. ``train_size`` rows are drawn from the student pool and ``teacher_size`` from the
       teacher pool (seeded, stratified by row label; None = the whole pool).

    ``stratify``: each row's label, or None (regression): no stratification. ``groups``: each
    row's group id, the row index of its root (see :func:`source_groups`), or None: every row
    is its own group. ``teacher_size`` None: no teacher split (``teacher_train`` is None) and
    ``train_size`` larger than what is left after val keeps everything if ``clip_train``, else
    raises. Raises :class:`UserInputError` (one line) when a size cannot be satisfied.
    """
    check_split_settings(
        val_size=val_size, train_size=train_size, teacher_size=teacher_size, seed=seed
    )
    labels = None if stratify is None else np.asarray(stratify)
    if labels is not None and len(labels) != n_rows:
        raise ValueError(f"stratify has {len(labels)} labels for {n_rows} rows")
    if groups is None:
        group_of = np.arange(n_rows)
    else:
        group_of = np.asarray(groups, dtype=np.int64)
        if group_of.shape != (n_rows,):
            raise ValueError(f"groups has shape {group_of.shape} for {n_rows} rows")
        if n_rows and (group_of.min() < 0 or group_of.max() >= n_rows):
            raise ValueError("groups must hold row indices of roots")
    roots = np.unique(group_of)
    if groups is not None and not np.array_equal(group_of[roots], roots):
        raise ValueError("groups: every root must be in its own group")
    if isinstance(val_size, int) and val_size >= len(roots):
        unit = "rows" if groups is None else "source sentences (roots)"
        raise UserInputError(f"val_size={val_size} must be below the {len(roots)} training {unit}")

    # 1. val: root rows only; the rest of their groups goes nowhere.
    rest_roots, val = _draw(roots, val_size, seed, labels, f"val_size={val_size}")
    rest_rows = np.flatnonzero(np.isin(group_of, rest_roots))  # sorted; rest_roots if no groups

    if teacher_size is None:
        what = f"train_size={train_size} from what val_size={val_size} leaves"
        train = subsample(
            rest_rows, train_size, seed=seed, stratify=labels, what=what, clip=clip_train
        )
        if len(train) == 0:
            raise UserInputError(f"val_size={val_size} leaves no training rows")
        return CarvedSplits(train=train, val=val, teacher_train=None)

    # 2. student and teacher pools, whole groups each.
    available = len(rest_rows)
    wanted = teacher_size + (train_size if train_size is not None else 1)
    if wanted > available:
        student = "at least 1" if train_size is None else f"train_size={train_size}"
        raise UserInputError(
            f"{student} + teacher_size={teacher_size} training rows requested but only "
            f"{available} are left after val_size={val_size}"
        )
    rng = np.random.default_rng(seed)
    order = _interleaved_order(rest_roots, labels, rng)
    group_rows = np.bincount(group_of, minlength=n_rows)[order]
    taken = np.concatenate([[0], np.cumsum(group_rows)])  # teacher rows after k groups
    min_student = 1 if train_size is None else train_size
    feasible = np.flatnonzero((taken >= teacher_size) & (taken <= available - min_student))
    if len(feasible) == 0:
        raise UserInputError(
            f"cannot split the {available} rows left after val_size={val_size} into whole "
            f"source groups of at least {min_student} student and {teacher_size} teacher rows"
        )
    if train_size is None:
        cut = int(feasible[0])
    else:
        target = available * teacher_size / (train_size + teacher_size)
        cut = int(feasible[np.argmin(np.abs(taken[feasible] - target))])
    teacher_roots = order[:cut]
    if groups is None:
        teacher_pool = np.sort(teacher_roots)
        student_pool = np.setdiff1d(rest_rows, teacher_pool, assume_unique=True)
    else:
        in_teacher = np.isin(group_of[rest_rows], teacher_roots)
        teacher_pool, student_pool = rest_rows[in_teacher], rest_rows[~in_teacher]

    # 3. subsample each pool.
    train = subsample(
        student_pool, train_size, seed=seed, stratify=labels,
        what=f"train_size={train_size}", clip=False,
    )  # fmt: skip
    teacher = subsample(
        teacher_pool, teacher_size, seed=seed, stratify=labels,
        what=f"teacher_size={teacher_size}", clip=False,
    )  # fmt: skip
    return CarvedSplits(train=train, val=val, teacher_train=teacher)


def fit_sizes(
    n_train: int,
    n_test: int,
    *,
    val_size: int | float,
    train_size: int | None,
    teacher_size: int | None,
    test_size: int | None = None,
) -> tuple[int | float, int | None, int | None]:
    """A profile's ``(val_size, train_size, teacher_size)`` shrunk to fit a small task.

    One profile serves every task of a bench, but GLUE's training sets range from 2,490 rows
    (RTE) to 393k (MNLI). Two rules, which leave sizes that fit unchanged:

    * a ``val_size`` count is capped at the size of the test split (``test_size`` of the
      ``n_test`` official test rows): validation as large as the dev set it stands in for;
    * when ``train_size + teacher_size`` exceed the rows that validation leaves, the student
      gets ``min(train_size, half of them)`` and the teacher the rest: a teacher that never saw
      the student's examples, trained on as many examples as the student at least.

    Whole source groups (SST-2) can still make a fitted split infeasible:
    :func:`carve_splits` then raises as before.
    """
    if isinstance(val_size, int):
        val_size = min(val_size, min(test_size or n_test, n_test))
    if teacher_size is not None and train_size is not None:
        left = n_train - (val_size if isinstance(val_size, int) else round(val_size * n_train))
        if train_size + teacher_size > left:
            train_size = min(train_size, left // 2)
            teacher_size = left - train_size
    return val_size, train_size, teacher_size


@dataclass(frozen=True)
class TaskSplits(CarvedSplits):
    """:class:`CarvedSplits` plus the sorted rows drawn from the official test split."""

    test: np.ndarray


def split_task(
    n_train: int,
    n_test: int,
    *,
    val_size: int | float,
    train_size: int | None = None,
    teacher_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    train_labels: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    clip: bool = False,
) -> TaskSplits:
    """Every split of a task, as every loader draws them.

    ``train``, ``val`` and ``teacher_train``: :func:`carve_splits` of the ``n_train`` official
    training rows (stratified by ``train_labels``, grouped by ``groups``); ``test``:
    ``test_size`` of the ``n_test`` official test rows (:func:`subsample`, stratified by
    ``test_labels``). Labels None: no stratification (regression). ``clip``: a ``train_size``
    (without a teacher split) or ``test_size`` larger than what is available keeps
    everything instead of raising :class:`UserInputError`.
    """
    carved = carve_splits(
        n_train,
        val_size=val_size,
        train_size=train_size,
        teacher_size=teacher_size,
        seed=seed,
        stratify=train_labels,
        groups=groups,
        clip_train=clip,
    )
    test = subsample(
        np.arange(n_test), test_size, seed=seed, stratify=test_labels,
        what=f"test_size={test_size}", clip=clip,
    )  # fmt: skip
    return TaskSplits(
        train=carved.train, val=carved.val, teacher_train=carved.teacher_train, test=test
    )
