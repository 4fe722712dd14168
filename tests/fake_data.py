"""Small seeded stand-ins for the staged data sets, written in their layouts.

The suite runs on these, so it needs nothing outside the repository (the real data in
``../shared/data`` serves the README's main command and the benchmarks):

* :func:`write_glue`: a GLUE directory in the official TSV layout, with the format quirks the
  staged files have (CoLA without a header and without a final newline, MRPC with a UTF-8 BOM
  and quotes inside fields, an RTE field opening with an unbalanced quote), for SST-2, CoLA,
  MRPC, RTE, STS-B (train and dev) and QNLI (dev only, as staged). Its SST-2 is built like the
  real one: full review sentences (10-30 words, as the dev sentences) mixed with their
  parse-tree-like phrases (contiguous spans of 1-9 words), shuffled; dev holds full sentences
  only. Texts draw on sentiment words of their label, so the tasks can be learned a little.
* :func:`write_imagefolder`: a CIFAR-like ImageFolder tree ``train/<class>/*`` and
  ``test/<class>/*`` of 32x32 images, each a per-class colour plus noise.

Both are deterministic in their seed and take well under a second at the sizes below, which
fit the benches' ``smoke`` profiles (SST-2: 32 val sentences, 64 train, 64 teacher, 64 test
rows; CIFAR-10: 64 val, 160 train, 96 teacher, 64 test images) with room to spare, and leave
more than 300 rows in SST-2's ``train.tsv``.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR_TEST_PER_CLASS",
    "CIFAR_TRAIN_PER_CLASS",
    "GLUE_PAIR_ROWS",
    "SST2_DEV_SENTENCES",
    "SST2_SENTENCES",
    "FakeGlue",
    "freeze",
    "write_glue",
    "write_imagefolder",
]

SST2_SENTENCES = 240  # source sentences of SST-2/train.tsv (1,650 rows with their phrases)
SST2_DEV_SENTENCES = 120
GLUE_PAIR_ROWS = {"train": 400, "dev": 60}  # CoLA, MRPC, RTE, STS-B (and QNLI dev)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR_TRAIN_PER_CLASS = 36
CIFAR_TEST_PER_CLASS = 8

_POSITIVE = (
    "good", "great", "charming", "moving", "funny", "brilliant", "warm", "clever", "lovely",
    "fresh", "gripping", "touching", "smart", "beautiful", "honest", "delightful",
)  # fmt: skip
_NEGATIVE = (
    "bad", "dull", "boring", "flat", "awful", "tedious", "clumsy", "stale", "weak", "messy",
    "silly", "lifeless", "predictable", "tiresome", "shallow", "ugly",
)  # fmt: skip
_NEUTRAL = (
    "the", "a", "an", "this", "that", "film", "movie", "story", "plot", "script", "cast",
    "director", "actor", "actress", "scene", "scenes", "ending", "music", "camera", "screen",
    "audience", "character", "characters", "dialogue", "drama", "comedy", "thriller", "picture",
    "performance", "is", "was", "are", "its", "it", "his", "her", "their", "and", "but", "with",
    "of", "in", "on", "about", "for", "as", "by", "from", "at", "to", ",", ".", "'s", "n't", "--",
    "than", "more", "most", "also", "just", "even", "still",
)  # fmt: skip

Texts = list[tuple[str, ...]]
Labels = list[int] | list[float]


@dataclass(frozen=True)
class FakeGlue:
    """A generated GLUE directory and what it holds.

    ``rows[(task, split)]`` is ``(texts, labels)`` exactly as
    :func:`ckd_tune.data.glue.read_glue_tsv` should return them: tuples of one text or a pair,
    and class indices in the task's label order (floats for STS-B).
    """

    root: Path
    rows: dict[tuple[str, str], tuple[Texts, Labels]]


def _words(rng: np.random.Generator, n: int, label: int, sentiment: int) -> list[str]:
    """``n`` neutral words with ``sentiment`` of them replaced by words of ``label``'s polarity."""
    words = [str(w) for w in rng.choice(_NEUTRAL, n)]
    pool = _POSITIVE if label else _NEGATIVE
    for slot in rng.choice(n, size=min(sentiment, n), replace=False):
        words[slot] = str(rng.choice(pool))
    return words


def _sentence(rng: np.random.Generator, label: int) -> list[str]:
    """A review sentence of 10-30 words with 2-4 words of its label's polarity."""
    return _words(rng, int(rng.integers(10, 31)), label, int(rng.integers(2, 5)))


def _phrase_label(words: Sequence[str], sentence_label: int, rng: np.random.Generator) -> int:
    """The polarity most of the span's sentiment words have; else mostly the sentence's."""
    score = sum(w in _POSITIVE for w in words) - sum(w in _NEGATIVE for w in words)
    if score:
        return int(score > 0)
    return sentence_label if rng.random() < 0.7 else 1 - sentence_label


def _sst2(rng: np.random.Generator) -> dict[str, tuple[Texts, list[int]]]:
    """SST-2's train (sentences and their phrases, shuffled) and dev (sentences only) rows."""
    seen: set[str] = set()

    def new_sentence() -> tuple[list[str], int]:
        while True:
            label = int(rng.random() < 0.55)
            words = _sentence(rng, label)
            if " ".join(words) not in seen:
                seen.add(" ".join(words))
                return words, label

    train: list[tuple[str, int]] = []
    for _ in range(SST2_SENTENCES):
        words, label = new_sentence()
        train.append((" ".join(words) + " ", label))  # the real file's trailing space
        for _ in range(int(rng.integers(3, 11))):
            size = int(rng.integers(1, 10))
            start = int(rng.integers(0, len(words) - size + 1))
            span = words[start : start + size]
            if " ".join(span) not in seen:
                seen.add(" ".join(span))
                train.append((" ".join(span) + " ", _phrase_label(span, label, rng)))
    train = [train[i] for i in rng.permutation(len(train))]
    dev = [new_sentence() for _ in range(SST2_DEV_SENTENCES)]
    return {
        "train": ([(text,) for text, _ in train], [label for _, label in train]),
        "dev": ([(" ".join(w) + " ",) for w, _ in dev], [label for _, label in dev]),
    }


def _pairs(rng: np.random.Generator, n: int) -> tuple[list[tuple[str, str]], list[int]]:
    """``n`` (premise, hypothesis) pairs: label 1 when the hypothesis is a span of the premise."""
    texts, labels = [], []
    for _ in range(n):
        label = int(rng.random() < 0.5)
        premise = _words(rng, int(rng.integers(20, 41)), label, 2)
        size = int(rng.integers(5, 13))
        if label:
            start = int(rng.integers(0, len(premise) - size + 1))
            hypothesis = premise[start : start + size]
        else:
            hypothesis = _words(rng, size, 1 - label, 1)
        texts.append((" ".join(premise).capitalize(), " ".join(hypothesis).capitalize()))
        labels.append(label)
    return texts, labels


def _tsv(
    path: Path,
    header: str | None,
    lines: Sequence[str],
    *,
    bom: bool = False,
    final_newline: bool = True,
) -> None:
    """Write ``header`` (if any) and ``lines`` as one UTF-8 TSV file."""
    text = "\n".join(([header] if header is not None else []) + list(lines))
    data = (text + ("\n" if final_newline else "")).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(codecs.BOM_UTF8 + data if bom else data)


def _write_sst2(root: Path, rng: np.random.Generator, rows: dict) -> None:
    for split, (texts, labels) in _sst2(rng).items():
        lines = [f"{text}\t{label}" for (text,), label in zip(texts, labels, strict=True)]
        _tsv(root / "SST-2" / f"{split}.tsv", "sentence\tlabel", lines)
        rows["sst2", split] = (texts, labels)


def _write_cola(root: Path, rng: np.random.Generator, rows: dict) -> None:
    for split, n in GLUE_PAIR_ROWS.items():
        labels = [int(rng.random() < 0.7) for _ in range(n)]
        texts = [(" ".join(_sentence(rng, y)[:12]).capitalize() + ".",) for y in labels]
        lines = [
            f"gj04\t{y}\t{'' if y else '*'}\t{t}" for (t,), y in zip(texts, labels, strict=True)
        ]
        # no header, and dev.tsv ends without a newline, as the staged files
        _tsv(root / "CoLA" / f"{split}.tsv", None, lines, final_newline=split == "train")
        rows["cola", split] = (texts, labels)


def _write_mrpc(root: Path, rng: np.random.Generator, rows: dict) -> None:
    for split, n in GLUE_PAIR_ROWS.items():
        texts, labels = _pairs(rng, n)
        for i in range(0, n, 7):  # quotes inside a field, kept verbatim (QUOTE_NONE)
            first, rest = texts[i][0].split(" ", 1)
            texts[i] = (f'{first} "{rest}"', texts[i][1])
        ids = rng.integers(10_000, 4_000_000, size=(n, 2))
        lines = [
            f"{y}\t{i}\t{j}\t{a}\t{b}" for (a, b), y, (i, j) in zip(texts, labels, ids, strict=True)
        ]
        header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
        _tsv(root / "MRPC" / f"{split}.tsv", header, lines, bom=True)
        rows["mrpc", split] = (texts, labels)


def _write_rte(root: Path, rng: np.random.Generator, rows: dict) -> None:
    names = ("entailment", "not_entailment")
    for split, n in GLUE_PAIR_ROWS.items():
        texts, entailed = _pairs(rng, n)
        if split == "train":  # a field opening with a quote that never closes
            texts[5] = ('"' + texts[5][0], texts[5][1])
        labels = [1 - e for e in entailed]  # class 0 = entailment
        lines = [
            f"{k}\t{a}\t{b}\t{names[y]}"
            for k, ((a, b), y) in enumerate(zip(texts, labels, strict=True))
        ]
        _tsv(root / "RTE" / f"{split}.tsv", "index\tsentence1\tsentence2\tlabel", lines)
        rows["rte", split] = (texts, labels)


def _write_stsb(root: Path, rng: np.random.Generator, rows: dict) -> None:
    header = (
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    )
    for split, n in GLUE_PAIR_ROWS.items():
        texts, similar = _pairs(rng, n)
        scores = [
            float(f"{rng.uniform(2.5, 5.0) if s else rng.uniform(0.0, 2.5):.3f}") for s in similar
        ]
        lines = [
            f"{k}\tmain-captions\tMSRvid\t2012test\t{k:04d}\tnone\tnone\t{a}\t{b}\t{y:.3f}"
            for k, ((a, b), y) in enumerate(zip(texts, scores, strict=True))
        ]
        _tsv(root / "STS-B" / f"{split}.tsv", header, lines)
        rows["stsb", split] = (texts, scores)


def _write_qnli(root: Path, rng: np.random.Generator, rows: dict) -> None:
    names = ("entailment", "not_entailment")
    texts, answered = _pairs(rng, GLUE_PAIR_ROWS["dev"])
    texts = [(f"What is {b.lower()}?", a) for a, b in texts]
    labels = [1 - a for a in answered]
    lines = [
        f"{k}\t{q}\t{s}\t{names[y]}"
        for k, ((q, s), y) in enumerate(zip(texts, labels, strict=True))
    ]
    _tsv(root / "QNLI" / "dev.tsv", "index\tquestion\tsentence\tlabel", lines)
    rows["qnli", "dev"] = (texts, labels)


_WRITERS: tuple[Callable[[Path, np.random.Generator, dict], None], ...] = (
    _write_sst2,
    _write_cola,
    _write_mrpc,
    _write_rte,
    _write_stsb,
    _write_qnli,
)


def write_glue(root: Path, seed: int = 0) -> FakeGlue:
    """Write the GLUE stand-in under ``root`` (see the module docstring); returns its rows."""
    rows: dict[tuple[str, str], tuple[Texts, Labels]] = {}
    for k, writer in enumerate(_WRITERS):
        writer(root, np.random.default_rng([seed, k]), rows)
    return FakeGlue(root, rows)


def write_imagefolder(
    root: Path,
    classes: Sequence[str] = CIFAR10_CLASSES,
    n_train: int = CIFAR_TRAIN_PER_CLASS,
    n_test: int = CIFAR_TEST_PER_CLASS,
    ext: str = "jpg",
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """An ImageFolder tree of 32x32 RGB images: ``n_train`` / ``n_test`` per class.

    Files are ``root/{train,test}/<class>/NNN.<ext>``; each image is its class's colour plus
    noise. Returns ``{split: uint8 N x 3 x 32 x 32}``, the pixels written, in ImageFolder order
    (classes sorted, files sorted): exactly what is read back for a lossless ``ext`` (png).
    """
    rng = np.random.default_rng(seed)
    colours = rng.integers(40, 216, size=(len(classes), 3))
    arrays: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for split, n in (("train", n_train), ("test", n_test)):
        for c in np.argsort(classes):
            folder = root / split / classes[c]
            folder.mkdir(parents=True)
            for i in range(n):
                noise = rng.normal(0.0, 40.0, size=(32, 32, 3))
                image = np.clip(colours[c] + noise, 0, 255).astype(np.uint8)
                Image.fromarray(image).save(folder / f"{i:03d}.{ext}")
                arrays[split].append(image.transpose(2, 0, 1))
    return {split: np.stack(images) for split, images in arrays.items()}


def freeze(root: Path) -> Path:
    """Make everything under ``root`` read-only, as the staged data is; returns ``root``."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            os.chmod(os.path.join(folder, name), 0o444)
        os.chmod(folder, 0o555)
    return root
