"""CIFAR-10 / CIFAR-100 as :class:`~ckd_tune.data.TaskData` with honest train / val / test splits.

Sources, tried in this order by :func:`load_cifar`:

* ``data_dir`` holding the torchvision layout (``cifar-10-batches-py/`` or ``cifar-100-python/``,
  or ``data_dir`` being that folder): the official pickled batches are read directly (the format
  torchvision reads; no MD5 check, so trimmed copies work). Nothing is downloaded.
* ``data_dir`` holding an ImageFolder tree ``train/<class>/*.{jpg,png,...}`` and
  ``test/<class>/*``: classes are the sorted folder names and files are taken in sorted order,
  exactly as ``torchvision.datasets.ImageFolder`` orders them (the tree is scanned with
  ``os.scandir``, which is ~20x faster than ``ImageFolder``'s own scan on 60k files).
* ``data_dir=None``: ``torchvision.datasets.CIFAR10/CIFAR100(download=True)`` into
  ``<cache>/torchvision`` (cache: ``$CKD_TUNE_CACHE``, default ``~/.cache/ckd_tune``), which needs
  network access the first time.

Splits (:mod:`ckd_tune.data.splits`): ``val`` is carved from the official training split (seeded,
stratified), ``train`` is the rest, optionally subsampled to ``train_size`` (seeded, stratified);
``test`` is the official test split, optionally subsampled to ``test_size`` (stratified). With
``teacher_size``, ``teacher_train`` (the teacher's own training images, augmented like
``train``) is carved from the official training split too, disjoint from ``train`` and ``val``:
what val leaves is split between student and teacher in proportion to ``train_size :
teacher_size`` (stratified), then each share is subsampled. Indices inside each split keep the
source order. Only the chosen images are decoded, once, into an in-memory uint8 tensor
(N x 3 x 32 x 32, 3 KB per image); transforms then run on tensors per item. Measured on the
staged CIFAR-10 JPEGs (2 busy CPU cores): indexing the 60,000 files 0.4-0.7 s, decoding 5,000
images 0.4-0.8 s, a 4,000 / 1,000 / 1,000 train / val / test load 1.1-1.3 s, all 60,000 about 8 s.
The train transform costs about 0.25 ms per item (about 10 s per 45,000-image epoch).

Transforms (torchvision.transforms.v2): train = RandomCrop(32, padding=4) +
RandomHorizontalFlip + ToDtype(float32, scale) + Normalize(CIFAR mean/std); val and test =
ToDtype + Normalize only. The random transforms draw from torch's global RNG, so seeding torch
reproduces the augmentation (with ``num_workers=0``).
"""

from __future__ import annotations

import logging
import os
import pickle
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
import torchvision.io
from sklearn.metrics import accuracy_score
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ckd_tune.data import TaskData
from ckd_tune.data.splits import check_split_settings, split_task
from ckd_tune.data.tasks import CIFAR_NUM_CLASSES, check_cifar_name
from ckd_tune.errors import DataNotFoundError, UserInputError
from ckd_tune.fingerprint import bytes_sha256, fingerprint

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "ENV_CACHE_DIR",
    "CifarSplit",
    "cifar_accuracy",
    "cifar_collate",
    "cifar_transform",
    "load_cifar",
]

log = logging.getLogger(__name__)

# Fast JPEG decoding; deprecated since torchvision 0.29 and due to be removed: PIL is the fallback.
_tv_io: ModuleType | None = (
    torchvision.io
    if all(hasattr(torchvision.io, f) for f in ("decode_image", "decode_jpeg", "read_file"))
    else None
)

#: Per-channel mean / std of the official training images (pixel values scaled to [0, 1]).
CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
CIFAR_STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}
ENV_CACHE_DIR = "CKD_TUNE_CACHE"
IMAGE_SIZE = 32
# Bump when the transforms or the split procedure change: part of the fingerprint.
_PIPELINE_VERSION = "cifar-v2"
_IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# The official pickled-batch layout, as torchvision.datasets.CIFAR10/CIFAR100 expect it.
_BATCHES = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": ("batches.meta", "label_names"),
        "labels": "labels",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": ("meta", "fine_label_names"),
        "labels": "fine_labels",
    },
}


# ----------------------------------------------------------------------------------------------
# Public helpers


def cifar_transform(name: str, *, train: bool, augment: bool = True) -> v2.Compose:
    """The uint8 (3 x 32 x 32) -> normalised float32 transform for ``name``'s split.

    ``train and augment`` adds RandomCrop(32, padding=4) and RandomHorizontalFlip in front.
    """
    check_cifar_name(name)
    steps: list[Any] = []
    if train and augment:
        steps += [v2.RandomCrop(IMAGE_SIZE, padding=4), v2.RandomHorizontalFlip()]
    steps += [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(CIFAR_MEAN[name]), list(CIFAR_STD[name])),
    ]
    return v2.Compose(steps)


def cifar_collate(batch: list[dict]) -> dict[str, Tensor]:
    """Stack items into ``{"pixel_values": N x 3 x 32 x 32, "labels": N, "index": N}``."""
    if not batch:
        raise ValueError("cifar_collate: empty batch")
    return {
        "pixel_values": torch.stack([item["pixel_values"] for item in batch]),
        "labels": torch.tensor([item["labels"] for item in batch], dtype=torch.long),
        "index": torch.tensor([item["index"] for item in batch], dtype=torch.long),
    }


def cifar_accuracy(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``{"accuracy": fraction of argmax(logits) == labels}`` (sklearn ``accuracy_score``)."""
    preds = np.asarray(logits).argmax(axis=-1)
    return {"accuracy": float(accuracy_score(np.asarray(labels), preds))}


class CifarSplit(Dataset):
    """One split held in memory as uint8 images; items are transformed on access.

    Attributes: ``images`` (N x 3 x 32 x 32 uint8), ``labels`` (N int64 array), ``source_indices``
    (each item's position in the official train or test split), ``classes`` (label names),
    ``random_transform`` (True when items are randomly augmented, so the same index does not
    always give the same tensor: per-index caches of model outputs are then invalid).
    """

    def __init__(
        self,
        images: Tensor,
        labels: np.ndarray,
        source_indices: np.ndarray,
        classes: Sequence[str],
        transform: Callable[[Tensor], Tensor],
        random_transform: bool,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"CifarSplit: images must be N x 3 x H x W uint8, got {images.shape}")
        if len(labels) != len(images) or len(source_indices) != len(images):
            raise ValueError("CifarSplit: images, labels and source_indices differ in length")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.source_indices = np.asarray(source_indices, dtype=np.int64)
        self.classes = list(classes)
        self.transform = transform
        self.random_transform = random_transform
        self._digest: str | None = None

    def __len__(self) -> int:
        """Number of items."""
        return len(self.images)

    def digest(self) -> str:
        """A fingerprint of the examples: the decoded images and their labels."""
        if self._digest is None:
            self._digest = bytes_sha256(self.images.numpy().tobytes() + self.labels.tobytes())[:16]
        return self._digest

    def __getitem__(self, index: int) -> dict[str, Any]:
        """``{"pixel_values": float32 3 x 32 x 32, "labels": int, "index": int}``."""
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"CifarSplit: index {index} out of range for {len(self)} items")
        return {
            "pixel_values": self.transform(self.images[index]),
            "labels": int(self.labels[index]),
            "index": index,
        }


# ----------------------------------------------------------------------------------------------
# Loading


@dataclass
class _Source:
    """The official train and test splits of one source, images not yet decoded (ImageFolder)."""

    kind: str  # "imagefolder" | "torchvision-batches"
    path: Path
    classes: list[str]
    train_labels: np.ndarray
    test_labels: np.ndarray
    decode_train: Callable[[np.ndarray], Tensor]  # indices -> uint8 N x 3 x 32 x 32
    decode_test: Callable[[np.ndarray], Tensor]
    listing_digest: str  # fingerprint of the file names and sizes


def load_cifar(
    name: str,
    *,
    data_dir: Path | None,
    val_size: int | float = 5000,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    augment: bool = True,
    teacher_size: int | None = None,
) -> TaskData:
    """CIFAR-10 or CIFAR-100 (``name`` = ``"cifar10"`` | ``"cifar100"``) as :class:`TaskData`.

    ``data_dir``: an ImageFolder tree or a torchvision layout (see the module docstring), or
    ``None`` to download with torchvision. ``val_size``: images carved from the official training
    split (an int count, or a float fraction in (0, 1)). ``train_size`` / ``test_size``: optional
    stratified subsample sizes of the remaining training images / of the official test split.
    ``teacher_size``: also carve ``teacher_train``, that many training images for the teacher
    alone, disjoint from ``train`` and ``val`` (``train_size + teacher_size`` must fit in what
    val leaves); None: no teacher split (the teacher trains on ``train``). ``seed`` drives
    every split choice. ``augment``: random crop + flip on ``train`` and ``teacher_train`` only.

    Raises :class:`DataNotFoundError` when the data is missing (naming the path and the remedies)
    and :class:`UserInputError` for bad sizes, a class-count mismatch or unreadable files.
    """
    check_cifar_name(name)
    sizes = {
        "val_size": val_size,
        "train_size": train_size,
        "test_size": test_size,
        "teacher_size": teacher_size,
        "seed": seed,
    }
    check_split_settings(**sizes)
    start = time.perf_counter()
    source = _open_source(name, data_dir)
    splits = split_task(
        len(source.train_labels),
        len(source.test_labels),
        **sizes,
        train_labels=source.train_labels,
        test_labels=source.test_labels,
    )
    # Decode train, val (and teacher_train) together: one pass over the chosen training files.
    parts = [splits.train, splits.val]
    if splits.teacher_train is not None:
        parts.append(splits.teacher_train)
    fit_images = source.decode_train(np.concatenate(parts))
    test_images = source.decode_test(splits.test)
    bounds = np.cumsum([0, *(len(p) for p in parts)])

    def make(images: Tensor, labels: np.ndarray, idx: np.ndarray, train: bool) -> CifarSplit:
        transform = cifar_transform(name, train=train, augment=augment)
        return CifarSplit(images, labels[idx], idx, source.classes, transform, train and augment)

    def fit_split(part: int, train: bool) -> CifarSplit:
        images = fit_images[bounds[part] : bounds[part + 1]]
        return make(images, source.train_labels, parts[part], train)

    train = fit_split(0, True)
    val = fit_split(1, False)
    teacher_train = None if splits.teacher_train is None else fit_split(2, True)
    test = make(test_images, source.test_labels, splits.test, False)
    data_fp = fingerprint(
        {
            "name": name,
            "pipeline": _PIPELINE_VERSION,
            "source": {"kind": source.kind, "listing": source.listing_digest},
            **sizes,
            "augment": bool(augment),
            "mean": CIFAR_MEAN[name],
            "std": CIFAR_STD[name],
        }
    )
    log.info(
        "%s from %s (%s): train %d, val %d, test %d, teacher_train %s images in %.1fs",
        name, source.path, source.kind, len(train), len(val), len(test),
        "-" if teacher_train is None else len(teacher_train), time.perf_counter() - start,
    )  # fmt: skip
    return TaskData(
        name=name,
        num_labels=CIFAR_NUM_CLASSES[name],
        train=train,
        val=val,
        test=test,
        collate=cifar_collate,
        metric=cifar_accuracy,
        main_metric="accuracy",
        fingerprint=data_fp,
        teacher_train=teacher_train,
        source=str(source.path.resolve()),
    )


def _not_found(path: Path, what: str) -> DataNotFoundError:
    """The one-line error for missing CIFAR data at ``path``, with both remedies."""
    return DataNotFoundError(
        f"CIFAR data not found at {path}: {what}; pass --data-dir pointing at an ImageFolder tree "
        "(train/<class>/*.jpg and test/<class>/*.jpg) or a torchvision layout "
        "(cifar-10-batches-py/ or cifar-100-python/), or run online without --data-dir to "
        "download it with torchvision"
    )


def _open_source(name: str, data_dir: Path | None) -> _Source:
    """Find and index ``name``'s data (see the module docstring for the order)."""
    if data_dir is None:
        return _download(name)
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise _not_found(path, "no such directory")
    own = _BATCHES[name]["folder"]
    other_name = "cifar100" if name == "cifar10" else "cifar10"
    other = _BATCHES[other_name]["folder"]
    if (path / own).is_dir():
        return _open_batches(name, path / own)
    if path.name == own:
        return _open_batches(name, path)
    if (path / other).is_dir() or path.name == other:
        raise UserInputError(
            f"{path} holds the torchvision layout of {other_name} ({other}/), not of {name} "
            f"({own}/); pass the matching --data-dir or task"
        )
    return _open_imagefolder(name, path)


# ---- ImageFolder ------------------------------------------------------------------------------


def _scan_split(split_dir: Path) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    """Classes, image paths, labels and ``rel/path<TAB>size`` lines of one ImageFolder split.

    Same order as ``torchvision.datasets.ImageFolder``: sorted class folders, then the sorted
    walk of each (sub)folder.
    """
    with os.scandir(split_dir) as it:
        classes = sorted(entry.name for entry in it if entry.is_dir())
    files: list[str] = []
    labels: list[int] = []
    lines: list[str] = []
    base = len(str(split_dir.parent)) + 1
    for label, cls in enumerate(classes):
        class_dir = split_dir / cls
        before = len(files)
        for root, entries in _walk_sorted(str(class_dir)):
            rel_root = root[base:]
            for entry in entries:
                files.append(entry.path)
                labels.append(label)
                lines.append(f"{rel_root}/{entry.name}\t{entry.stat().st_size}")
        if len(files) == before:
            raise _not_found(class_dir, "class folder holds no images")
    return classes, files, np.asarray(labels, dtype=np.int64), lines


def _walk_sorted(top: str) -> list[tuple[str, list[os.DirEntry]]]:
    """(folder, sorted image-file entries) under ``top``, folders in ``sorted(os.walk(top))`` order.

    Symlinked folders are followed, as ``ImageFolder`` does.
    """
    found: list[tuple[str, list[os.DirEntry]]] = []
    pending = [top]
    while pending:
        folder = pending.pop()
        images, subdirs = [], []
        with os.scandir(folder) as it:
            for entry in it:
                if entry.is_dir():
                    subdirs.append(entry.path)
                elif entry.is_file() and entry.name.lower().endswith(_IMG_EXTENSIONS):
                    images.append(entry)
        found.append((folder, sorted(images, key=lambda e: e.name)))
        pending.extend(subdirs)
    return sorted(found, key=lambda item: item[0])


def _open_imagefolder(name: str, path: Path) -> _Source:
    """Index ``path/train`` and ``path/test`` (ImageFolder layout); decode nothing yet."""
    for split in ("train", "test"):
        if not (path / split).is_dir():
            raise _not_found(path / split, f"no {split}/ folder (and no torchvision layout)")
    scanned = {}
    for split in ("train", "test"):
        split_dir = path / split
        classes, files, labels, lines = _scan_split(split_dir)
        if not classes:
            raise _not_found(split_dir, f"{split}/ holds no class folders")
        expected = CIFAR_NUM_CLASSES[name]
        if len(classes) != expected:
            raise UserInputError(
                f"{split_dir}: found {len(classes)} class folders but {name} has {expected} "
                "classes; pass the matching --data-dir or task"
            )
        scanned[split] = (classes, files, labels, lines)
    if scanned["train"][0] != scanned["test"][0]:
        raise UserInputError(f"{path}: train/ and test/ have different class folders")
    train_files, test_files = scanned["train"][1], scanned["test"][1]
    return _Source(
        kind="imagefolder",
        path=path,
        classes=scanned["train"][0],
        train_labels=scanned["train"][2],
        test_labels=scanned["test"][2],
        decode_train=lambda idx: _decode_files([train_files[i] for i in idx]),
        decode_test=lambda idx: _decode_files([test_files[i] for i in idx]),
        listing_digest=fingerprint(scanned["train"][3], scanned["test"][3]),
    )


def _check_shape(file: str, image: Tensor) -> Tensor:
    """``image`` unchanged if it is 3 x 32 x 32; UserInputError naming ``file`` otherwise."""
    if tuple(image.shape) != (3, IMAGE_SIZE, IMAGE_SIZE):
        raise UserInputError(
            f"{file}: CIFAR images must be {IMAGE_SIZE}x{IMAGE_SIZE} RGB, got "
            f"{image.shape[-1]}x{image.shape[-2]}"
        )
    return image


def _decode_pil(file: str) -> Tensor:
    """One image file as a uint8 3 x H x W RGB tensor, decoded with PIL."""
    from PIL import Image

    try:
        with Image.open(file) as pil:
            array = np.array(pil.convert("RGB"), dtype=np.uint8)
    except OSError as exc:
        raise UserInputError(f"{file}: cannot decode image ({exc})") from exc
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _decode_one(file: str) -> Tensor:
    """One image file as a uint8 3 x 32 x 32 RGB tensor (torchvision.io, PIL as fallback)."""
    if _tv_io is None:
        return _check_shape(file, _decode_pil(file))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            image = _tv_io.decode_image(_tv_io.read_file(file), mode=_tv_io.ImageReadMode.RGB)
    except (RuntimeError, ValueError):  # a format torchvision.io cannot decode (bmp, tiff, ...)
        image = _decode_pil(file)
    return _check_shape(file, image)


def _decode_files(files: list[str], chunk: int = 2048) -> Tensor:
    """Decode ``files`` into one uint8 N x 3 x 32 x 32 tensor.

    JPEGs are decoded in batches with ``torchvision.io.decode_jpeg`` (about 3x faster than PIL
    one by one); other formats, any batch that fails, and everything when torchvision.io has no
    decoders (deprecated in torchvision 0.29, to be removed), one file at a time.
    """
    out = torch.empty((len(files), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    is_jpeg = [_tv_io is not None and f.lower().endswith((".jpg", ".jpeg")) for f in files]
    for i, file in enumerate(files):
        if not is_jpeg[i]:
            out[i] = _decode_one(file)
    jpeg = [i for i in range(len(files)) if is_jpeg[i]]
    for start in range(0, len(jpeg), chunk):
        idx = jpeg[start : start + chunk]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                data = [_tv_io.read_file(files[i]) for i in idx]
                images = _tv_io.decode_jpeg(data, mode=_tv_io.ImageReadMode.RGB)
        except (RuntimeError, ValueError):
            images = [_decode_one(files[i]) for i in idx]  # find (and name) the bad file
        for i, image in zip(idx, images, strict=True):
            out[i] = _check_shape(files[i], image)
    return out


# ---- torchvision layout -------------------------------------------------------------------------


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays only: a crafted file cannot run code."""

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name} (only arrays and plain data)"
            )
        return super().find_class(module, name)


def _load_pickle(file: Path) -> dict:
    """One official CIFAR pickle (``encoding="latin1"``, as torchvision reads it), restricted."""
    if not file.is_file():
        raise _not_found(file, "file missing from the torchvision layout")
    try:
        with open(file, "rb") as f:
            return _BatchUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError) as exc:
        raise UserInputError(f"{file}: not a readable CIFAR pickle ({exc})") from exc


def _read_batches(name: str, folder: Path, files: list[str]) -> tuple[Tensor, np.ndarray]:
    """Images (uint8 N x 3 x 32 x 32) and labels of the pickled batches ``files``."""
    spec = _BATCHES[name]
    images, labels = [], []
    for fname in files:
        entry = _load_pickle(folder / fname)
        if "data" not in entry or spec["labels"] not in entry:
            raise UserInputError(
                f"{folder / fname}: no 'data' / {spec['labels']!r} entries (not a {name} batch)"
            )
        data = np.asarray(entry["data"], dtype=np.uint8)
        batch_labels = np.asarray(entry[spec["labels"]], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * IMAGE_SIZE * IMAGE_SIZE:
            raise UserInputError(f"{folder / fname}: 'data' must be N x 3072, got {data.shape}")
        if len(batch_labels) != len(data):
            raise UserInputError(
                f"{folder / fname}: {len(data)} images but {len(batch_labels)} labels"
            )
        images.append(data)
        labels.append(batch_labels)
    array = np.concatenate(images).reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE)
    return torch.from_numpy(np.ascontiguousarray(array)), np.concatenate(labels)


def _open_batches(name: str, folder: Path) -> _Source:
    """Read the official pickled batches in ``folder`` (cifar-10-batches-py / cifar-100-python)."""
    spec = _BATCHES[name]
    meta_file, meta_key = spec["meta"]
    meta = _load_pickle(folder / meta_file)
    classes = [str(c) for c in meta.get(meta_key, [])]
    expected = CIFAR_NUM_CLASSES[name]
    if len(classes) != expected:
        raise UserInputError(
            f"{folder / meta_file}: {len(classes)} class names under {meta_key!r} but {name} has "
            f"{expected} classes"
        )
    train_images, train_labels = _read_batches(name, folder, spec["train"])
    test_images, test_labels = _read_batches(name, folder, spec["test"])
    for labels, split in ((train_labels, "train"), (test_labels, "test")):
        if len(labels) == 0:
            raise _not_found(folder, f"the {split} batches hold no images")
        if labels.min() < 0 or labels.max() >= expected:
            raise UserInputError(f"{folder}: {split} labels outside [0, {expected})")
    lines = [
        f"{fname}\t{(folder / fname).stat().st_size}"
        for fname in [*spec["train"], *spec["test"], meta_file]
    ]
    return _Source(
        kind="torchvision-batches",
        path=folder,
        classes=classes,
        train_labels=train_labels,
        test_labels=test_labels,
        decode_train=lambda idx: train_images[torch.as_tensor(idx, dtype=torch.long)].clone(),
        decode_test=lambda idx: test_images[torch.as_tensor(idx, dtype=torch.long)].clone(),
        listing_digest=fingerprint(lines),
    )


def _download_root() -> Path:
    """Where torchvision downloads CIFAR: ``<cache dir>/torchvision`` (see ``ckd_tune.cache``)."""
    from ckd_tune.cache import default_cache_dir

    return default_cache_dir() / "torchvision"


def _download(name: str) -> _Source:
    """Download (or reuse a verified earlier download) with torchvision, then read the batches."""
    import torchvision.datasets as tvd

    root = _download_root()
    dataset_cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    try:
        root.mkdir(parents=True, exist_ok=True)
        # train=True with download=True fetches and verifies the whole archive (both splits).
        dataset_cls(root=str(root), train=True, download=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        raise _not_found(
            root, f"torchvision download failed ({type(exc).__name__}: {exc})"
        ) from exc
    return _open_batches(name, root / _BATCHES[name]["folder"])
