"""GLUE text-classification tasks: the task registry, TSV and hub readers, metrics and splits.

Data comes from one of two sources:

* a local directory in the official GLUE TSV layout (``DIR/SST-2/train.tsv``, ``DIR/CoLA/dev.tsv``,
  ``DIR/MNLI/dev_matched.tsv``, ...), given as ``data_dir`` (the CLI's ``--data-dir`` or the
  ``CKD_TUNE_DATA`` environment variable, see :func:`default_glue_dir`);
* the Hugging Face hub dataset ``nyu-mll/glue`` when no directory is given (needs network access).

:func:`load_glue` turns a task into a :class:`~ckd_tune.data.TaskData` with three splits:
``train`` and ``val`` are carved from the official training set (seeded, stratified for
classification, see :mod:`ckd_tune.data.splits`), ``test`` is the official dev set, which the
search never selects on. With ``teacher_size`` a fourth split, ``teacher_train``, is carved from
the official training set too, disjoint from ``train`` and ``val``: the teacher's own training
examples, so its logits on the student's examples are not memorised labels.

SST-2's training file mixes full review sentences with their parse-tree phrases (each phrase a
contiguous run of a sentence's words: about 6,900 sentences and 60,000 phrases). Its rows are
grouped by source sentence (:func:`~ckd_tune.data.splits.source_groups`); ``val`` is drawn from
full sentences only, like the dev set (mean 19.4 words, dev 19.5; random rows 9.4), and
``train``, ``val`` and ``teacher_train`` never share a source sentence. Other tasks have no
such structure: each row is its own group.

Labels are class indices in the order of :attr:`GlueTask.labels`, which is the order the hub
dataset uses (e.g. RTE: 0 = entailment, 1 = not_entailment; MNLI: 0 = entailment, 1 = neutral,
2 = contradiction), or floats for the STS-B regression task.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from torch import Tensor
from torch.utils.data import Dataset
from transformers import DataCollatorWithPadding

from ckd_tune.data import Metric, TaskData
from ckd_tune.data.splits import check_split_settings, fit_sizes, source_groups, split_task
from ckd_tune.data.tasks import DATA_ENV_VAR, GlueTask, glue_task
from ckd_tune.errors import DataNotFoundError, UserInputError
from ckd_tune.fingerprint import bytes_sha256, fingerprint

log = logging.getLogger(__name__)

HUB_DATASET = "nyu-mll/glue"
LABELLED_SPLITS = ("train", "dev")
# Bump when the reading, splitting or tokenising logic changes what the splits contain.
_FINGERPRINT_VERSION = "glue-v2"


Label = int | float


# --------------------------------------------------------------------------------------------
# Reading


@dataclass
class _RawSplit:
    """One labelled split as read, plus a digest of its source."""

    texts: list[tuple[str, ...]]
    labels: list[Label]
    digest: str


def _check_split(split: str) -> None:
    if split not in LABELLED_SPLITS:
        raise UserInputError(f"GLUE split must be one of {LABELLED_SPLITS}, got {split!r}")


def _missing(spec: GlueTask, split: str, path: Path) -> DataNotFoundError:
    return DataNotFoundError(
        f"glue/{spec.name}: no {split} split at {path}; to provide it, pass --data-dir DIR "
        f"(or set {DATA_ENV_VAR}=DIR) pointing at a GLUE directory in the official TSV layout "
        f"(DIR/{spec.dir_name}/{spec.file_name(split)}), or run online without --data-dir to "
        f"download {HUB_DATASET} from the Hugging Face hub"
    )


def _parse_label(spec: GlueTask, value: str, where: str) -> Label:
    value = value.strip()
    if spec.labels is None:
        try:
            score = float(value)
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            raise UserInputError(f"{where}: score {value!r} is not a finite number")
        return score
    try:
        return spec.labels.index(value)
    except ValueError:
        raise UserInputError(
            f"{where}: label {value!r} is not one of {list(spec.labels)}"
        ) from None


def _parse_tsv(spec: GlueTask, path: Path, data: bytes) -> tuple[list[tuple[str, ...]], list]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserInputError(f"{path}: not valid UTF-8 ({err})") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    if spec.headerless_columns is not None:
        header: Sequence[str] = spec.headerless_columns
    else:
        first = next(reader, None)
        if first is None:
            raise UserInputError(f"{path}: empty file, expected a header row")
        header = [name.strip() for name in first]
    wanted = (*spec.text_columns, spec.label_column)
    absent = [name for name in wanted if name not in header]
    if absent:
        raise UserInputError(
            f"{path} line 1: header {list(header)} lacks column(s) {absent} "
            f"of GLUE task {spec.name}"
        )
    text_pos = [header.index(name) for name in spec.text_columns]
    label_pos = header.index(spec.label_column)
    texts: list[tuple[str, ...]] = []
    labels: list[Label] = []
    try:
        for row in reader:
            if not row:
                continue  # blank line
            where = f"{path} line {reader.line_num}"
            if len(row) != len(header):
                raise UserInputError(
                    f"{where}: expected {len(header)} tab-separated columns, got {len(row)}"
                )
            texts.append(tuple(row[i] for i in text_pos))
            labels.append(_parse_label(spec, row[label_pos], where))
    except csv.Error as err:
        raise UserInputError(f"{path} line {reader.line_num}: {err}") from None
    return texts, labels


def _read_local(task: str, split: str, data_dir: Path) -> _RawSplit:
    spec = glue_task(task)
    _check_split(split)
    path = Path(data_dir) / spec.dir_name / spec.file_name(split)
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise _missing(spec, split, path) from None
    texts, labels = _parse_tsv(spec, path, data)
    return _RawSplit(texts, labels, bytes_sha256(data))


def read_glue_tsv(task: str, split: str, data_dir: Path) -> tuple[list[tuple[str, ...]], list]:
    """Texts and labels of one labelled split ("train" or "dev") of a local GLUE directory.

    Each text is a tuple of one sentence or a sentence pair. Labels are class indices (in
    :attr:`GlueTask.labels` order) or float scores for STS-B. Raises :class:`DataNotFoundError`
    if the file is missing, :class:`UserInputError` for an unknown task or split, or for a
    broken row (named by file and line number).
    """
    raw = _read_local(task, split, data_dir)
    return raw.texts, raw.labels


def _hub_split(task: str, split: str) -> _RawSplit:
    spec = glue_task(task)
    _check_split(split)
    import datasets  # heavy; only online users need it

    hub_split = "train" if split == "train" else spec.hub_dev_split
    try:
        ds = datasets.load_dataset(HUB_DATASET, spec.name, split=hub_split)
    except ConnectionError as err:
        raise DataNotFoundError(
            f"glue/{spec.name}: cannot download the {split} split ({HUB_DATASET}, split "
            f"{hub_split}) from the Hugging Face hub ({err}); pass --data-dir DIR (or set "
            f"{DATA_ENV_VAR}=DIR) pointing at a GLUE directory in the official TSV layout"
        ) from None
    columns = [ds[name] for name in spec.hub_text_columns]
    texts = [tuple(str(t) for t in row) for row in zip(*columns, strict=True)]
    raw_labels = ds[spec.hub_label_column]
    labels: list[Label]
    if spec.is_regression:
        labels = [float(x) for x in raw_labels]
    else:
        labels = [int(x) for x in raw_labels]
        bad = sorted({x for x in labels if not 0 <= x < spec.num_labels})
        if bad:
            raise UserInputError(
                f"glue/{spec.name}: hub split {hub_split} has labels {bad} outside "
                f"0..{spec.num_labels - 1}"
            )
    return _RawSplit(texts, labels, fingerprint(texts, labels))


def load_hub_split(task: str, split: str) -> tuple[list[tuple[str, ...]], list]:
    """Texts and labels of one labelled split ("train" or "dev") of ``nyu-mll/glue`` on the hub.

    Same return shape as :func:`read_glue_tsv`; "dev" is the hub's ``validation`` split
    (``validation_matched`` for MNLI). Needs network access (or a warm ``datasets`` cache);
    raises :class:`DataNotFoundError` if the hub cannot be reached.
    """
    raw = _hub_split(task, split)
    return raw.texts, raw.labels


# --------------------------------------------------------------------------------------------
# Metrics


def _finite(value: float) -> float:
    value = float(value)
    return value if math.isfinite(value) else 0.0


def glue_metric(task: str) -> Metric:
    """The GLUE metric of ``task`` as a function ``(logits, labels) -> {name: value}``.

    Classification logits of shape ``(n, num_labels)`` are scored by their argmax; regression
    outputs of shape ``(n, 1)`` or ``(n,)`` directly. Keys: "accuracy" (SST-2, RTE, QNLI, MNLI),
    "f1" of class 1 and "accuracy" (MRPC, QQP), "mcc" (Matthews correlation, CoLA), "pearson"
    and "spearman" (STS-B). Values are Python floats; where a statistic is undefined (constant
    predictions or labels, fewer than two examples, no positive example for F1) it is 0.0, not
    NaN.
    """
    spec = glue_task(task)
    return _RegressionMetric() if spec.is_regression else _ClassificationMetric(spec.name)


@dataclass(frozen=True)
class _ClassificationMetric:
    task: str

    def __call__(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        logits = np.asarray(logits)
        preds = logits.argmax(axis=-1) if logits.ndim > 1 else logits
        labels = np.asarray(labels).reshape(-1)
        if self.task == "cola":
            return {"mcc": _finite(matthews_corrcoef(labels, preds))}
        result = {"accuracy": _finite(accuracy_score(labels, preds))}
        if self.task in ("mrpc", "qqp"):
            f1 = f1_score(labels, preds, pos_label=1, average="binary", zero_division=0.0)
            result = {"f1": _finite(f1), **result}
        return result


@dataclass(frozen=True)
class _RegressionMetric:
    def __call__(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        preds = np.asarray(logits, dtype=np.float64).reshape(-1)
        labels = np.asarray(labels, dtype=np.float64).reshape(-1)
        if preds.shape != labels.shape:
            raise ValueError(f"{preds.shape[0]} predictions for {labels.shape[0]} labels")
        if preds.size < 2:
            return {"pearson": 0.0, "spearman": 0.0}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant input: NaN, reported as 0.0
            pearson = stats.pearsonr(preds, labels)[0]
            spearman = stats.spearmanr(preds, labels)[0]
        return {"pearson": _finite(pearson), "spearman": _finite(spearman)}


# --------------------------------------------------------------------------------------------
# Splits and tokenisation


class TokenizedSplit(Dataset):
    """One tokenised split: items are dicts of ``input_ids``, ``attention_mask`` (and
    ``token_type_ids`` where the tokenizer gives them) as lists, ``labels`` and ``index``.

    ``labels`` is also available as a numpy array (int64, or float32 for regression) for metrics,
    ``rows`` gives each item's row position in the official file it was drawn from,
    ``lengths`` each item's number of tokens (the training loop batches similar lengths) and
    ``words`` each item's number of whitespace words in its raw text(s), a pair's summed (or
    ``None`` when not given).
    """

    def __init__(
        self,
        items: list[dict[str, Any]],
        rows: np.ndarray,
        regression: bool,
        words: Sequence[int] | None = None,
    ) -> None:
        if words is not None and len(words) != len(items):
            raise ValueError(f"TokenizedSplit: {len(words)} word counts for {len(items)} items")
        self.items = items
        self.rows = rows  # each item's row position in the official split it was drawn from
        dtype = np.float32 if regression else np.int64
        self.labels: np.ndarray = np.array([item["labels"] for item in items], dtype=dtype)
        self.lengths: list[int] = [len(item["input_ids"]) for item in items]
        self.words: list[int] | None = None if words is None else [int(w) for w in words]
        self._digest: str | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return dict(self.items[i])

    def digest(self) -> str:
        """A fingerprint of the examples as the model sees them (token ids and labels)."""
        if self._digest is None:
            self._digest = fingerprint(self.items)
        return self._digest


class PadCollate:
    """Batches items padded to the longest in the batch; returns a plain dict of tensors.

    ``labels`` come out as int64 class indices (float32 for regression) and ``index`` as int64.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.pad = DataCollatorWithPadding(tokenizer, padding="longest", return_tensors="pt")

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Tensor]:
        return dict(self.pad(items))


def _tokenize(
    tokenizer: Any,
    texts: Sequence[tuple[str, ...]],
    labels: Sequence[Label],
    rows: np.ndarray,
    max_seq_length: int,
    regression: bool,
) -> TokenizedSplit:
    picked = [texts[r] for r in rows]
    words = [sum(len(t.split()) for t in text) for text in picked]
    columns = list(zip(*picked, strict=True)) if picked else []
    if not columns:
        return TokenizedSplit([], rows, regression, words)
    second = list(columns[1]) if len(columns) > 1 else None
    enc = tokenizer(list(columns[0]), second, truncation=True, max_length=max_seq_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    items = []
    for i, r in enumerate(rows):
        item: dict[str, Any] = {k: list(enc[k][i]) for k in keys}
        label = labels[r]
        item["labels"] = float(label) if regression else int(label)
        item["index"] = i
        items.append(item)
    return TokenizedSplit(items, rows, regression, words)


def _tokenizer_id(tokenizer: Any) -> dict[str, Any]:
    vocab = sorted(tokenizer.get_vocab().items())
    return {
        "class": type(tokenizer).__name__,
        "vocab_size": len(tokenizer),
        "vocab": fingerprint(vocab),
        "lowercase": bool(getattr(tokenizer, "do_lower_case", False)),
    }


_GROUPS_CACHE: dict[str, np.ndarray] = {}  # train data digest -> source_groups (a few s each)


def _phrase_groups(raw: _RawSplit) -> np.ndarray:
    """:func:`source_groups` of the first text column, cached per process by data digest."""
    groups = _GROUPS_CACHE.get(raw.digest)
    if groups is None:
        groups = source_groups([text[0] for text in raw.texts])
        groups.setflags(write=False)
        if len(_GROUPS_CACHE) >= 4:
            _GROUPS_CACHE.pop(next(iter(_GROUPS_CACHE)))
        _GROUPS_CACHE[raw.digest] = groups
    return groups


def load_glue(
    task: str,
    tokenizer: Any,
    *,
    data_dir: Path | None,
    max_seq_length: int = 128,
    val_size: int | float = 0.1,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    teacher_size: int | None = None,
    fit: bool = False,
) -> TaskData:
    """GLUE ``task`` tokenised into train / val / test (/ teacher_train) splits for training.

    ``val`` (``val_size`` examples, or that fraction) is carved from the official training set,
    from full sentences only for SST-2 (see the module docstring); ``train`` is the rest,
    optionally subsampled to ``train_size`` examples; ``test`` is the official dev set,
    optionally subsampled to ``test_size``. ``teacher_size``: also carve ``teacher_train``,
    that many examples for the teacher alone: the rows left after val are split between the
    student and the teacher by source group, in proportion to ``train_size : teacher_size``
    (all but the teacher's share when ``train_size`` is None), and each is subsampled from
    its share; ``train_size + teacher_size`` must then fit in what val leaves. ``None``: no
    teacher split (the teacher trains on ``train``). All draws are seeded by ``seed`` and
    stratified by label for classification; without a teacher split, a ``train_size`` or
    ``test_size`` at or above what is available keeps everything. ``fit``: sizes made for a
    large task shrink to fit a small one (:func:`~ckd_tune.data.splits.fit_sizes`: val no
    larger than the dev set, the rest halved between student and teacher when both do not
    fit), logged when they do; else sizes that do not fit raise. The fingerprint holds the sizes
    used, so sizes that fit as given keep their cache. Data is read from
    ``data_dir`` (official GLUE TSV layout) if given, else from the Hugging Face hub. The
    fingerprint changes with the data, the tokenizer's vocabulary and every argument here.
    """
    spec = glue_task(task)
    if isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int):
        raise UserInputError(f"max_seq_length must be an integer, got {max_seq_length!r}")
    if max_seq_length < 8:
        raise UserInputError(f"max_seq_length must be at least 8, got {max_seq_length}")
    check_split_settings(
        val_size=val_size,
        train_size=train_size,
        teacher_size=teacher_size,
        test_size=test_size,
        seed=seed,
    )

    if data_dir is not None:
        train_raw = _read_local(task, "train", Path(data_dir))
        dev_raw = _read_local(task, "dev", Path(data_dir))
    else:
        train_raw = _hub_split(task, "train")
        dev_raw = _hub_split(task, "dev")
    reg = spec.is_regression
    if fit:
        val_size, train_size, teacher_size = _fitted(
            spec.name, len(train_raw.labels), len(dev_raw.labels), val_size, train_size,
            teacher_size, test_size,
        )  # fmt: skip
    splits = split_task(
        len(train_raw.labels),
        len(dev_raw.labels),
        val_size=val_size,
        train_size=train_size,
        teacher_size=teacher_size,
        test_size=test_size,
        seed=seed,
        train_labels=None if reg else np.asarray(train_raw.labels),
        test_labels=None if reg else np.asarray(dev_raw.labels),
        groups=_phrase_groups(train_raw) if spec.phrase_groups else None,
        clip=True,
    )

    def tokenize(raw: _RawSplit, rows: np.ndarray) -> TokenizedSplit:
        return _tokenize(tokenizer, raw.texts, raw.labels, rows, max_seq_length, reg)

    train = tokenize(train_raw, splits.train)
    val = tokenize(train_raw, splits.val)
    test = tokenize(dev_raw, splits.test)
    teacher_train = None
    if splits.teacher_train is not None:
        teacher_train = tokenize(train_raw, splits.teacher_train)

    settings = {
        "version": _FINGERPRINT_VERSION,
        "task": spec.name,
        "train_data": train_raw.digest,
        "dev_data": dev_raw.digest,
        "tokenizer": _tokenizer_id(tokenizer),
        "max_seq_length": max_seq_length,
        "val_size": val_size,
        "train_size": train_size,
        "test_size": test_size,
        "teacher_size": teacher_size,
        "phrase_groups": spec.phrase_groups,
        "seed": seed,
    }
    return TaskData(
        name=f"glue/{spec.name}",
        num_labels=spec.num_labels,
        train=train,
        val=val,
        test=test,
        collate=PadCollate(tokenizer),
        metric=glue_metric(spec.name),
        main_metric=spec.main_metric,
        fingerprint=fingerprint(settings),
        teacher_train=teacher_train,
        source=(
            str((Path(data_dir) / spec.dir_name).resolve())
            if data_dir is not None
            else f"hf://datasets/{HUB_DATASET}/{spec.name}"
        ),
    )


def _fitted(
    task: str,
    n_train: int,
    n_test: int,
    val_size: int | float,
    train_size: int | None,
    teacher_size: int | None,
    test_size: int | None,
) -> tuple[int | float, int | None, int | None]:
    """:func:`~ckd_tune.data.splits.fit_sizes`, with one log line when it changes the sizes."""
    asked = (val_size, train_size, teacher_size)
    fitted = fit_sizes(
        n_train, n_test, val_size=val_size, train_size=train_size,
        teacher_size=teacher_size, test_size=test_size,
    )  # fmt: skip
    if fitted != asked:
        log.info(
            "%s: the profile's val %s, train %s, teacher %s do not fit its %d training and %d "
            "dev rows: val %s (at most the dev set), train %s, teacher %s",
            task, *asked, n_train, n_test, *fitted,
        )  # fmt: skip
    return fitted


__all__ = [
    "HUB_DATASET",
    "PadCollate",
    "TokenizedSplit",
    "glue_metric",
    "load_glue",
    "load_hub_split",
    "read_glue_tsv",
]
