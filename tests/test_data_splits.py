"""Tests for ckd_tune.data.splits: source groups and the student / val / teacher carving."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from ckd_tune.data.splits import (
    CarvedSplits,
    carve_splits,
    fit_sizes,
    source_groups,
    split_task,
    subsample,
)
from ckd_tune.errors import UserInputError

# --------------------------------------------------------------------------------------------
# source_groups

ROWS = [
    "a great film",  # 0: a sub-span of the longer sentence 5, which comes later
    "the film is good and the actors are fine",  # 1: root
    "the film is good",  # 2: phrase of 1
    "  actors   are fine ",  # 3: phrase of 1 (whitespace normalised)
    "the good",  # 4: not contiguous in 1: its own root
    "it is a great film and the music is great too",  # 5: the longest row: root
    "music is great",  # 6: phrase of 5
    "fil",  # 7: part of a word only: its own root
    "the film is good",  # 8: duplicate of 2: phrase of 1
    "is",  # 9: in 1 and 5: joins 5, the longer root visited first
    "the good",  # 10: duplicate of root 4: joins it
    "",  # 11: empty: its own root
    "",  # 12: empty duplicate: joins 11
    "the film is good and the actors are fine .",  # 13: 1 plus "." -> 1 is a span of 13
]


def test_source_groups_join_phrases_to_their_sentence() -> None:
    groups = source_groups(ROWS)
    assert groups.dtype == np.int64 and groups.shape == (len(ROWS),)
    expected = [5, 13, 13, 13, 4, 5, 5, 7, 13, 5, 4, 11, 11, 13]
    assert groups.tolist() == expected
    roots = np.flatnonzero(groups == np.arange(len(ROWS)))
    assert roots.tolist() == [4, 5, 7, 11, 13]
    assert (groups[groups] == groups).all()  # every group id is a root


def test_source_groups_ties_and_determinism() -> None:
    # Two 3-word roots share the phrase "b c": the lower row index wins the tie.
    rows = ["x b c", "b c", "b c y", "c"]
    assert source_groups(rows).tolist() == [0, 0, 2, 0]
    assert source_groups(rows[::-1]).tolist() == [1, 1, 1, 3]  # now "b c y" (row 1) wins
    assert np.array_equal(source_groups(ROWS), source_groups(list(ROWS)))
    # ROWS has no ties between roots: any order of its rows gives the same partition.
    a = source_groups(ROWS)
    for seed in range(3):
        perm = np.random.default_rng(seed).permutation(len(ROWS))
        b = source_groups([ROWS[i] for i in perm])
        assert _same_partition(a[perm], b)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_source_groups_empty_input() -> None:
    assert source_groups([]).tolist() == []


# --------------------------------------------------------------------------------------------
# carve_splits on a synthetic phrase-structured set


def _phrase_set(n_sentences: int = 300, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Sentences of 8-20 words, each followed by 0-9 of its phrases; labels 70% class 1."""
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    labels: list[int] = []
    for s in range(n_sentences):
        words = [f"w{s}_{i}" for i in range(rng.integers(8, 21))]
        label = int(rng.random() < 0.7)
        texts.append(" ".join(words))
        labels.append(label)
        for _ in range(rng.integers(0, 10)):
            a = int(rng.integers(0, len(words) - 1))
            b = int(rng.integers(a + 1, len(words)))
            texts.append(" ".join(words[a:b]))
            labels.append(label if rng.random() < 0.8 else 1 - label)
    order = rng.permutation(len(texts))  # sentences and phrases mixed, as in SST-2
    return [texts[i] for i in order], np.asarray(labels)[order]


@pytest.fixture(scope="module")
def phrases() -> tuple[list[str], np.ndarray, np.ndarray]:
    texts, labels = _phrase_set()
    return texts, labels, source_groups(texts)


def _check_disjoint(carved: CarvedSplits, groups: np.ndarray) -> None:
    parts = [carved.train, carved.val]
    if carved.teacher_train is not None:
        parts.append(carved.teacher_train)
    for part in parts:
        assert np.array_equal(part, np.unique(part))  # sorted, no repeats
    for i, a in enumerate(parts):
        for b in parts[i + 1 :]:
            assert not set(a.tolist()) & set(b.tolist())
            assert not set(groups[a].tolist()) & set(groups[b].tolist())
    assert (groups[carved.val] == carved.val).all()  # val rows are roots


def test_carve_with_groups_and_teacher(phrases) -> None:
    texts, labels, groups = phrases
    n = len(texts)
    carved = carve_splits(
        n, val_size=40, train_size=300, teacher_size=600, seed=0, stratify=labels, groups=groups
    )
    assert (len(carved.train), len(carved.val), len(carved.teacher_train)) == (300, 40, 600)
    _check_disjoint(carved, groups)
    # Val is full sentences: as long as the roots on average, longer than the rest.
    words = np.array([len(t.split()) for t in texts])
    roots = np.flatnonzero(groups == np.arange(n))
    assert abs(words[carved.val].mean() - words[roots].mean()) < 2.0
    assert words[carved.val].mean() > words[carved.train].mean() + 3
    # Stratified: val keeps the roots' class balance, train and teacher the rows'.
    assert abs(labels[carved.val].mean() - labels[roots].mean()) < 0.03
    assert abs(labels[carved.train].mean() - labels.mean()) < 0.05
    assert abs(labels[carved.teacher_train].mean() - labels.mean()) < 0.05
    again = carve_splits(
        n, val_size=40, train_size=300, teacher_size=600, seed=0, stratify=labels, groups=groups
    )
    assert all(
        np.array_equal(getattr(carved, k), getattr(again, k))
        for k in ("train", "val", "teacher_train")
    )
    other = carve_splits(
        n, val_size=40, train_size=300, teacher_size=600, seed=1, stratify=labels, groups=groups
    )
    assert not np.array_equal(other.val, carved.val)
    assert not np.array_equal(other.teacher_train, carved.teacher_train)


def test_carve_groups_without_teacher_or_sizes(phrases) -> None:
    texts, labels, groups = phrases
    n = len(texts)
    carved = carve_splits(n, val_size=0.1, seed=3, stratify=labels, groups=groups)
    assert carved.teacher_train is None
    roots = np.flatnonzero(groups == np.arange(n))
    assert len(carved.val) == int(np.ceil(0.1 * len(roots)))
    _check_disjoint(carved, groups)
    # train is every row outside the val groups.
    outside = np.flatnonzero(~np.isin(groups, carved.val))
    assert np.array_equal(carved.train, outside)
    # Teacher pool takes just enough groups for teacher_size; the student gets the rest.
    with_teacher = carve_splits(
        n, val_size=0.1, teacher_size=500, seed=3, stratify=labels, groups=groups
    )
    assert np.array_equal(with_teacher.val, carved.val)
    assert len(with_teacher.teacher_train) == 500
    _check_disjoint(with_teacher, groups)
    student = len(with_teacher.train)
    assert len(outside) - 500 - 30 < student <= len(outside) - 500  # groups hold < 31 rows
    # Regression: no stratification.
    reg = carve_splits(n, val_size=20, train_size=100, teacher_size=100, groups=groups)
    assert (len(reg.val), len(reg.train), len(reg.teacher_train)) == (20, 100, 100)
    _check_disjoint(reg, groups)


def test_pools_follow_the_requested_proportions(phrases) -> None:
    texts, labels, groups = phrases
    n = len(texts)
    # train_size : teacher_size = 1 : 3, so the student pool holds about a quarter of the rows.
    carved = carve_splits(
        n, val_size=30, train_size=200, teacher_size=600, seed=0, stratify=labels, groups=groups
    )
    left = np.flatnonzero(~np.isin(groups, carved.val))
    student_groups = set(groups[carved.train].tolist())
    pool = np.isin(groups[left], list(student_groups))
    # Every student group is in the student pool; its pool is about a quarter of what is left.
    assert 0.15 < pool.sum() / len(left) < 0.35


# --------------------------------------------------------------------------------------------
# carve_splits without groups (every row its own group)


def test_no_groups_no_teacher_is_the_old_split() -> None:
    labels = np.repeat(np.arange(4), 50)
    carved = carve_splits(200, val_size=40, train_size=60, seed=7, stratify=labels)
    rest, val = train_test_split(np.arange(200), test_size=40, random_state=7, stratify=labels)
    _, train = train_test_split(
        np.sort(rest), test_size=60, random_state=7, stratify=labels[np.sort(rest)]
    )
    assert np.array_equal(carved.val, np.sort(val))
    assert np.array_equal(carved.train, np.sort(train))
    assert carved.teacher_train is None
    whole = carve_splits(200, val_size=40, seed=7, stratify=labels)
    assert np.array_equal(whole.train, np.sort(rest))


def test_no_groups_teacher_split_is_stratified_and_disjoint() -> None:
    labels = np.repeat(np.arange(10), 12)  # 120 rows, 12 per class
    carved = carve_splits(120, val_size=20, train_size=40, teacher_size=30, seed=3, stratify=labels)
    _check_disjoint(carved, np.arange(120))
    assert np.bincount(labels[carved.val], minlength=10).tolist() == [2] * 10
    assert np.bincount(labels[carved.train], minlength=10).tolist() == [4] * 10
    assert np.bincount(labels[carved.teacher_train], minlength=10).tolist() == [3] * 10
    # Nearly everything: fewer rows than classes left out of a pool, so those go unstratified.
    most = carve_splits(120, val_size=20, train_size=55, teacher_size=40, seed=3, stratify=labels)
    _check_disjoint(most, np.arange(120))
    assert (len(most.train), len(most.teacher_train)) == (55, 40)
    # Everything left after val, split between the two.
    full = carve_splits(120, val_size=20, teacher_size=30, seed=3, stratify=labels)
    assert (len(full.train), len(full.teacher_train)) == (70, 30)
    assert np.bincount(labels[full.teacher_train], minlength=10).tolist() == [3] * 10
    assert sorted([*full.train, *full.val, *full.teacher_train]) == list(range(120))
    exact = carve_splits(120, val_size=20, train_size=60, teacher_size=40, stratify=labels)
    assert sorted([*exact.train, *exact.val, *exact.teacher_train]) == list(range(120))


def test_clip_train() -> None:
    carved = carve_splits(50, val_size=10, train_size=1000, clip_train=True)
    assert len(carved.train) == 40
    with pytest.raises(UserInputError, match="train_size=1000"):
        carve_splits(50, val_size=10, train_size=1000)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"val_size": 0}, "val_size"),
        ({"val_size": 1.0}, "val_size"),
        ({"val_size": True}, "val_size"),
        ({"val_size": None}, "val_size"),
        ({"val_size": 120}, "val_size"),
        ({"val_size": 5}, "val_size"),  # fewer than the 10 classes: cannot stratify
        ({"val_size": 20, "train_size": 0}, "train_size"),
        ({"val_size": 20, "teacher_size": 2.5}, "teacher_size"),
        ({"val_size": 20, "train_size": 60, "teacher_size": 41}, "teacher_size=41"),
        ({"val_size": 20, "teacher_size": 100}, "teacher_size=100"),  # no student row left
        ({"val_size": 20, "train_size": 5}, "train_size=5"),  # fewer than the 10 classes
    ],
)
def test_impossible_sizes_are_user_errors(kwargs: dict, match: str) -> None:
    labels = np.repeat(np.arange(10), 12)
    with pytest.raises(UserInputError, match=match) as err:
        carve_splits(120, seed=0, stratify=labels, **kwargs)
    assert "\n" not in str(err.value)


def test_groups_too_coarse_for_the_sizes() -> None:
    groups = np.repeat(np.arange(0, 100, 10), 10)  # 10 groups of 10 rows, roots 0, 10, ...
    carved = carve_splits(100, val_size=2, train_size=40, teacher_size=40, groups=groups)
    assert (len(carved.train), len(carved.teacher_train)) == (40, 40)
    _check_disjoint(carved, groups)
    with pytest.raises(UserInputError, match="whole source groups"):
        carve_splits(100, val_size=2, train_size=35, teacher_size=44, groups=groups)
    with pytest.raises(UserInputError, match="val_size=10"):
        carve_splits(100, val_size=10, groups=groups)  # only 10 roots


def test_subsample() -> None:
    rows = np.arange(10, 30)
    labels = np.repeat([0, 1], 20)
    drawn = subsample(rows, 10, seed=0, stratify=labels)
    assert len(drawn) == 10 and np.array_equal(drawn, np.sort(drawn))
    assert set(drawn.tolist()) <= set(rows.tolist())
    assert np.bincount(labels[drawn]).tolist() == [5, 5]
    assert np.array_equal(subsample(rows[::-1], None, seed=0), rows)
    assert np.array_equal(subsample(rows, 99, seed=0), rows)
    with pytest.raises(UserInputError, match="test_size=99"):
        subsample(rows, 99, seed=0, what="test_size=99", clip=False)


# --------------------------------------------------------------------------------------------
# One profile for tasks of every size: fit_sizes


@pytest.mark.parametrize(
    ("n_train", "n_test", "test_size", "asked", "fitted"),
    [
        # SST-2 in the quick profile: everything fits, nothing changes
        (67_349, 872, None, (872, 2000, 8000), (872, 2000, 8000)),
        # CoLA: val fits under the 1,043 dev rows; 8,551 - 872 = 7,679 left: the student keeps
        # its 2,000, the teacher gets the other 5,679
        (8551, 1043, None, (872, 2000, 8000), (872, 2000, 5679)),
        # MRPC: val capped at the 408 dev rows; 3,668 - 408 = 3,260 halved
        (3668, 408, None, (872, 2000, 8000), (408, 1630, 1630)),
        # RTE: 2,490 - 277 = 2,213: the student 1,106, the teacher the odd one more
        (2490, 277, None, (872, 2000, 8000), (277, 1106, 1107)),
        # a subsampled test split caps val as well
        (3668, 408, 100, (872, 2000, 8000), (100, 1784, 1784)),
        # a val fraction stays a fraction; 1000 - round(0.1 * 1000) = 900 left, halved
        (1000, 500, None, (0.1, 800, 800), (0.1, 450, 450)),
        # no teacher split: only val is capped
        (3668, 408, None, (872, 2000, None), (408, 2000, None)),
    ],
)
def test_fit_sizes(n_train, n_test, test_size, asked, fitted) -> None:
    val, train, teacher = asked
    got = fit_sizes(
        n_train, n_test, val_size=val, train_size=train, teacher_size=teacher, test_size=test_size
    )
    assert got == fitted


def test_fitted_sizes_carve_disjoint_splits() -> None:
    labels = np.arange(400) % 2
    kwargs = dict(val_size=100, train_size=200, teacher_size=200)
    with pytest.raises(UserInputError, match="only 300 are left"):
        split_task(400, 60, seed=0, train_labels=labels, **kwargs)
    val, train, teacher = fit_sizes(400, 60, **kwargs)
    assert (val, train, teacher) == (60, 170, 170)
    fitted = split_task(
        400, 60, val_size=val, train_size=train, teacher_size=teacher, seed=0,
        train_labels=labels,
    )  # fmt: skip
    assert (len(fitted.val), len(fitted.train), len(fitted.teacher_train)) == (60, 170, 170)
    rows = np.concatenate([fitted.val, fitted.train, fitted.teacher_train])
    assert len(np.unique(rows)) == len(rows)  # still disjoint
