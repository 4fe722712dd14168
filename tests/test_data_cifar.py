"""Tests for ckd_tune.data.cifar: sources, honest splits, transforms, fingerprint and errors."""

from __future__ import annotations

import os
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader

from ckd_tune.benches import CIFAR_PROFILES
from ckd_tune.data import TaskData
from ckd_tune.data import cifar as cifar_mod
from ckd_tune.data.cifar import CIFAR_MEAN, CIFAR_STD, cifar_accuracy, cifar_collate, load_cifar
from ckd_tune.errors import DataNotFoundError, UserInputError
from ckd_tune.resnet import cifar_resnet
from tests.fake_data import (
    CIFAR10_CLASSES,
    CIFAR_TEST_PER_CLASS,
    CIFAR_TRAIN_PER_CLASS,
    write_imagefolder,
)

CLASSES = [f"class{c:02d}" for c in range(10)]
N_TRAIN, N_TEST = 12, 4  # per class


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a busy 2-core machine, 2 threads make tiny convs ~50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _random_image(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    return rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """10 classes x (12 train + 4 test) 32x32 PNGs: a colour per class plus noise."""
    root = tmp_path_factory.mktemp("imagefolder")
    return root, write_imagefolder(root, CLASSES, N_TRAIN, N_TEST, ext="png")


def normalise(images: np.ndarray, name: str = "cifar10") -> torch.Tensor:
    x = torch.from_numpy(images).float() / 255.0
    mean = torch.tensor(CIFAR_MEAN[name]).view(-1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD[name]).view(-1, 3, 1, 1)
    return (x - mean) / std


# ---- ImageFolder source -----------------------------------------------------------------------


def test_imagefolder_sizes_items_and_taskdata(folder) -> None:
    root, _ = folder
    data = load_cifar("cifar10", data_dir=root, val_size=20)
    assert isinstance(data, TaskData)
    assert (data.name, data.num_labels, data.main_metric) == ("cifar10", 10, "accuracy")
    assert (len(data.train), len(data.val), len(data.test)) == (100, 20, 40)
    assert data.train.classes == CLASSES
    for split in ("train", "val", "test"):
        ds = data.split(split)
        item = ds[3]
        assert set(item) == {"pixel_values", "labels", "index"}
        assert item["pixel_values"].shape == (3, 32, 32)
        assert item["pixel_values"].dtype == torch.float32
        assert isinstance(item["labels"], int) and item["labels"] == ds.labels[3]
        assert item["index"] == 3
        assert ds[-1]["index"] == len(ds) - 1
        with pytest.raises(IndexError):
            ds[len(ds)]
    assert len(data.fingerprint) == 16
    int(data.fingerprint, 16)


def test_splits_are_disjoint_stratified_and_cover_train(folder) -> None:
    root, _ = folder
    data = load_cifar("cifar10", data_dir=root, val_size=20, train_size=50, test_size=20, seed=3)
    train, val, test = data.train.source_indices, data.val.source_indices, data.test.source_indices
    assert not set(train) & set(val)
    assert set(train) | set(val) <= set(range(10 * N_TRAIN))
    assert list(train) == sorted(train) and list(test) == sorted(test)  # source order kept
    assert np.bincount(data.train.labels, minlength=10).tolist() == [5] * 10
    assert np.bincount(data.val.labels, minlength=10).tolist() == [2] * 10
    assert np.bincount(data.test.labels, minlength=10).tolist() == [2] * 10
    # labels follow the ImageFolder class of each source file (12 per class, in order)
    assert (data.train.labels == train // N_TRAIN).all()
    assert (data.test.labels == test // N_TEST).all()
    full = load_cifar("cifar10", data_dir=root, val_size=0.25, seed=3)
    assert len(full.val) == 30 and len(full.train) == 90
    assert sorted([*full.train.source_indices, *full.val.source_indices]) == list(range(120))
    assert full.test.source_indices.tolist() == list(range(40))


def test_teacher_split_is_disjoint_stratified_and_augmented(folder) -> None:
    root, arrays = folder
    kw = {"val_size": 20, "train_size": 40, "test_size": 20, "seed": 3}
    data = load_cifar("cifar10", data_dir=root, teacher_size=30, **kw)
    teacher = data.teacher_train
    assert teacher is not None
    assert (len(data.train), len(data.val), len(teacher)) == (40, 20, 30)
    parts = [data.train.source_indices, data.val.source_indices, teacher.source_indices]
    for i, a in enumerate(parts):
        assert list(a) == sorted(set(a))
        for b in parts[i + 1 :]:
            assert not set(a) & set(b)
    assert np.bincount(data.train.labels, minlength=10).tolist() == [4] * 10
    assert np.bincount(data.val.labels, minlength=10).tolist() == [2] * 10
    assert np.bincount(teacher.labels, minlength=10).tolist() == [3] * 10
    assert (teacher.labels == teacher.source_indices // N_TRAIN).all()
    assert np.array_equal(teacher.images.numpy(), arrays["train"][teacher.source_indices])
    assert teacher.random_transform and teacher[4]["index"] == 4
    assert data.describe_splits() == {
        "train": {"size": 40, "mean_words": None},
        "val": {"size": 20, "mean_words": None},
        "test": {"size": 20, "mean_words": None},
        "teacher_train": {"size": 30, "mean_words": None},
    }
    # Without a teacher split: the same val and test, no teacher_train, another fingerprint.
    plain = load_cifar("cifar10", data_dir=root, **kw)
    assert plain.teacher_train is None and "teacher_train" not in plain.describe_splits()
    assert np.array_equal(plain.val.source_indices, data.val.source_indices)
    assert np.array_equal(plain.test.source_indices, data.test.source_indices)
    assert plain.fingerprint != data.fingerprint
    assert load_cifar("cifar10", data_dir=root, teacher_size=20, **kw).fingerprint not in (
        plain.fingerprint, data.fingerprint
    )  # fmt: skip
    # train_size None: the student gets all that val and the teacher leave.
    rest = load_cifar("cifar10", data_dir=root, val_size=20, teacher_size=50, seed=3)
    assert (len(rest.train), len(rest.teacher_train)) == (50, 50)
    assert np.bincount(rest.teacher_train.labels, minlength=10).tolist() == [5] * 10
    for kwargs in ({"teacher_size": 0}, {"teacher_size": 61}, {"teacher_size": 100}):
        with pytest.raises(UserInputError, match="teacher_size"):
            load_cifar("cifar10", data_dir=root, **{**kw, **kwargs})


def test_same_seed_same_splits_other_seed_other_splits(folder) -> None:
    root, _ = folder
    kw = {"val_size": 20, "train_size": 50, "test_size": 20}
    a = load_cifar("cifar10", data_dir=root, seed=0, **kw)
    b = load_cifar("cifar10", data_dir=root, seed=0, **kw)
    c = load_cifar("cifar10", data_dir=root, seed=1, **kw)
    for split in ("train", "val", "test"):
        assert np.array_equal(a.split(split).source_indices, b.split(split).source_indices)
        assert torch.equal(a.split(split).images, b.split(split).images)
    assert a.fingerprint == b.fingerprint
    assert not np.array_equal(a.val.source_indices, c.val.source_indices)
    assert a.fingerprint != c.fingerprint
    # the run inputs MLflow shows: a digest of the examples used, the same for the same examples
    inputs = a.dataset_inputs(["train", "val", "test"])
    assert [(i.name, i.context, i.size) for i in inputs] == [
        ("cifar10/train", "training", 50),
        ("cifar10/val", "validation", 20),
        ("cifar10/test", "test", 20),
    ]
    assert {i.source for i in inputs} == {str(root.resolve())}
    assert [i.digest for i in inputs] == [
        i.digest for i in b.dataset_inputs(["train", "val", "test"])
    ]
    assert len({i.digest for i in inputs}) == 3
    assert c.val.digest() != a.val.digest()


def test_fingerprint_tracks_settings_and_files(folder, tmp_path: Path) -> None:
    root, _ = folder
    base = load_cifar("cifar10", data_dir=root, val_size=20).fingerprint
    for kw in ({"val_size": 30}, {"train_size": 50}, {"test_size": 20}, {"augment": False},
               {"teacher_size": 30}):  # fmt: skip
        assert load_cifar("cifar10", data_dir=root, **{"val_size": 20, **kw}).fingerprint != base
    # the same files elsewhere: same fingerprint; one more file: a new one
    copy = tmp_path / "copy"
    write_imagefolder(copy, CLASSES, N_TRAIN, N_TEST, ext="png")
    assert load_cifar("cifar10", data_dir=copy, val_size=20).fingerprint == base
    Image.fromarray(_random_image(np.random.default_rng(9))).save(copy / "test/class00/zzz.png")
    assert load_cifar("cifar10", data_dir=copy, val_size=20).fingerprint != base


def test_pixels_are_the_files_normalised_and_eval_splits_not_augmented(folder) -> None:
    root, arrays = folder
    data = load_cifar("cifar10", data_dir=root, val_size=20, test_size=20)
    for split, source in (("val", "train"), ("test", "test")):
        ds = data.split(split)
        expected = normalise(arrays[source][ds.source_indices])
        got = torch.stack([ds[i]["pixel_values"] for i in range(len(ds))])
        assert torch.allclose(got, expected, atol=1e-5)
        assert not ds.random_transform
        torch.manual_seed(0)
        first = ds[5]["pixel_values"]
        torch.manual_seed(1)
        assert torch.equal(first, ds[5]["pixel_values"])
    assert np.array_equal(data.train.images.numpy(), arrays["train"][data.train.source_indices])


def test_train_augmentation_is_random_and_reproducible_from_torch_seed(folder) -> None:
    root, arrays = folder
    data = load_cifar("cifar10", data_dir=root, val_size=20)
    train = data.train
    assert train.random_transform
    plain = normalise(arrays["train"][train.source_indices[7 : 7 + 1]])[0]
    torch.manual_seed(123)
    a = [train[7]["pixel_values"] for _ in range(8)]
    torch.manual_seed(123)
    b = [train[7]["pixel_values"] for _ in range(8)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))  # reproducible
    assert any(not torch.equal(x, a[0]) for x in a)  # random
    assert any(not torch.allclose(x, plain) for x in a)  # not the plain image
    off = load_cifar("cifar10", data_dir=root, val_size=20, augment=False).train
    assert not off.random_transform
    unaugmented = off[7]["pixel_values"]
    assert torch.allclose(unaugmented, plain, atol=1e-5)
    # a padded crop (maybe flipped): every pixel is one of the image's own or the zero padding
    pad = normalise(np.zeros((1, 3, 1, 1), dtype=np.uint8))[0, :, 0, 0]
    for x in a:
        for c in range(3):
            allowed = set(unaugmented[c].flatten().tolist())
            assert {v for v in x[c].flatten().tolist() if abs(v - pad[c]) > 1e-5} <= allowed
    assert torch.equal(off[7]["pixel_values"], off[7]["pixel_values"])


def test_collate_model_and_metric(folder) -> None:
    root, _ = folder
    data = load_cifar("cifar10", data_dir=root, val_size=20)
    loader = DataLoader(data.val, batch_size=8, shuffle=False, collate_fn=data.collate)
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (8, 3, 32, 32)
    assert batch["labels"].dtype == torch.long and batch["index"].tolist() == list(range(8))
    model = cifar_resnet(8, data.num_labels).eval()
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "index")}
    with torch.no_grad():
        logits = model(**inputs)
    assert logits.shape == (8, 10)
    result = data.metric(logits.numpy(), batch["labels"].numpy())
    assert set(result) == {"accuracy"} and 0.0 <= result["accuracy"] <= 1.0
    assert cifar_accuracy(np.eye(3)[[0, 1, 2, 0]], np.array([0, 1, 1, 0])) == {"accuracy": 0.75}
    with pytest.raises(ValueError):
        cifar_collate([])


def test_jpeg_tree_decodes_like_pil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_imagefolder(tmp_path, CLASSES, 3, 2, ext="jpg")
    Image.fromarray(_random_image(np.random.default_rng(1))).save(tmp_path / "train/class03/x.png")
    data = load_cifar("cifar10", data_dir=tmp_path, val_size=10, augment=False)
    monkeypatch.setattr(cifar_mod, "_tv_io", None)  # the PIL-only path
    pil = load_cifar("cifar10", data_dir=tmp_path, val_size=10, augment=False)
    assert pil.fingerprint == data.fingerprint
    for split in ("train", "val", "test"):
        diff = (data.split(split).images.int() - pil.split(split).images.int()).abs().max()
        assert diff <= 1  # both libjpeg(-turbo); exact on the staged CIFAR JPEGs


# ---- errors -------------------------------------------------------------------------------------


def _assert_not_found(exc: pytest.ExceptionInfo, path: Path) -> None:
    msg = str(exc.value)
    assert str(path) in msg and "\n" not in msg
    assert "--data-dir" in msg and "ImageFolder" in msg and "cifar-10-batches-py" in msg
    assert "download" in msg


def test_missing_or_empty_dir_is_data_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DataNotFoundError) as exc:
        load_cifar("cifar10", data_dir=missing)
    _assert_not_found(exc, missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError) as exc:
        load_cifar("cifar10", data_dir=empty)
    _assert_not_found(exc, empty / "train")
    (empty / "train").mkdir()
    with pytest.raises(DataNotFoundError) as exc:
        load_cifar("cifar10", data_dir=empty)
    _assert_not_found(exc, empty / "test")
    (empty / "test").mkdir()
    with pytest.raises(DataNotFoundError, match="no class folders"):
        load_cifar("cifar10", data_dir=empty)


def test_missing_split_or_empty_class_is_data_not_found(tmp_path: Path) -> None:
    write_imagefolder(tmp_path, CLASSES, 2, 1, ext="png")
    (tmp_path / "test/class04/000.png").unlink()
    with pytest.raises(DataNotFoundError) as exc:
        load_cifar("cifar10", data_dir=tmp_path, val_size=10)
    _assert_not_found(exc, tmp_path / "test" / "class04")


def test_user_input_errors(folder, tmp_path: Path) -> None:
    root, _ = folder
    with pytest.raises(UserInputError, match="10 class folders but cifar100 has 100"):
        load_cifar("cifar100", data_dir=root)
    with pytest.raises(UserInputError, match="name"):
        load_cifar("mnist", data_dir=root)
    bad_sizes = [
        {"val_size": 0}, {"val_size": 1.5}, {"val_size": 120}, {"val_size": True},
        {"val_size": 5},  # fewer than the 10 classes: cannot stratify
        {"val_size": 20, "train_size": 101}, {"val_size": 20, "train_size": 0},
        {"val_size": 20, "test_size": 41}, {"val_size": 20, "seed": 1.5},
    ]  # fmt: skip
    for kw in bad_sizes:
        with pytest.raises(UserInputError):
            load_cifar("cifar10", data_dir=root, **kw)
    write_imagefolder(tmp_path, CLASSES, 2, 1, ext="png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "train/class01/big.png")
    with pytest.raises(UserInputError, match=r"big\.png.*32x32"):
        load_cifar("cifar10", data_dir=tmp_path, val_size=10)


# ---- torchvision layout -------------------------------------------------------------------------


def write_batches(root: Path, name: str, per_class: int = 2) -> dict[str, np.ndarray]:
    """A tiny copy of the official pickled layout; returns {split: data N x 3072}."""
    rng = np.random.default_rng(0)
    if name == "cifar10":
        folder, classes, key = root / "cifar-10-batches-py", 10, "labels"
        files = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        meta = ("batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    else:
        folder, classes, key = root / "cifar-100-python", 100, "fine_labels"
        files = {"train": ["train"], "test": ["test"]}
        meta = ("meta", {"fine_label_names": [f"f{i}" for i in range(100)]})
    folder.mkdir(parents=True)
    out = {}
    for split, names in files.items():
        datas = []
        for fname in names:
            labels = [c for c in range(classes) for _ in range(per_class)]
            data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
            entry = {
                "batch_label": fname,
                key: labels,
                "data": data,
                "filenames": ["x.png"] * len(labels),
            }
            if name == "cifar100":
                entry["coarse_labels"] = [c // 5 for c in labels]
            with open(folder / fname, "wb") as f:
                pickle.dump(entry, f, protocol=2)
            datas.append(data)
        out[split] = np.concatenate(datas)
    with open(folder / meta[0], "wb") as f:
        pickle.dump(meta[1], f, protocol=2)
    return out


def test_torchvision_layout_cifar10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = write_batches(tmp_path, "cifar10")
    data = load_cifar("cifar10", data_dir=tmp_path, val_size=20, test_size=10)
    assert (len(data.train), len(data.val), len(data.test)) == (80, 20, 10)
    assert data.train.classes == [f"c{i}" for i in range(10)]
    images = raw["train"].reshape(-1, 3, 32, 32)
    assert np.array_equal(data.val.images.numpy(), images[data.val.source_indices])
    got = torch.stack([data.val[i]["pixel_values"] for i in range(len(data.val))])
    assert torch.allclose(got, normalise(images[data.val.source_indices]), atol=1e-5)
    assert np.bincount(data.test.labels).tolist() == [1] * 10
    # the batches folder itself is accepted too, with the same data and fingerprint
    same = load_cifar(
        "cifar10", data_dir=tmp_path / "cifar-10-batches-py", val_size=20, test_size=10
    )
    assert same.fingerprint == data.fingerprint
    # torchvision reads our files the same way (its MD5 check aside): the format is the official one
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    tv = torchvision.datasets.CIFAR10(str(tmp_path), train=True, download=False)
    assert np.array_equal(tv.data.transpose(0, 3, 1, 2), images)
    assert tv.classes == data.train.classes


def test_torchvision_layout_cifar100_and_mismatches(tmp_path: Path) -> None:
    write_batches(tmp_path / "a", "cifar100")
    data = load_cifar("cifar100", data_dir=tmp_path / "a", val_size=100, test_size=100)
    assert data.num_labels == 100 and (len(data.train), len(data.val)) == (100, 100)
    assert np.bincount(data.val.labels).tolist() == [1] * 100
    with pytest.raises(UserInputError, match="cifar-100-python"):
        load_cifar("cifar10", data_dir=tmp_path / "a")
    write_batches(tmp_path / "b", "cifar10")
    (tmp_path / "b/cifar-10-batches-py/data_batch_3").unlink()
    with pytest.raises(DataNotFoundError) as exc:
        load_cifar("cifar10", data_dir=tmp_path / "b", val_size=10)
    _assert_not_found(exc, tmp_path / "b/cifar-10-batches-py/data_batch_3")
    (tmp_path / "b/cifar-10-batches-py/data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(UserInputError, match="data_batch_3"):
        load_cifar("cifar10", data_dir=tmp_path / "b", val_size=10)


def test_download_path_uses_torchvision_then_reads_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cifar_mod.ENV_CACHE_DIR, str(tmp_path / "cache"))
    calls = []

    class FakeCIFAR10:  # what torchvision does on download: fetch, verify, extract
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            if not (Path(root) / "cifar-10-batches-py").is_dir():
                write_batches(Path(root), "cifar10")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    data = load_cifar("cifar10", data_dir=None, val_size=20)
    root = tmp_path / "cache" / "torchvision"
    assert calls == [(str(root), True, True)]
    assert (len(data.train), len(data.val), len(data.test)) == (80, 20, 20)
    assert load_cifar("cifar10", data_dir=root, val_size=20).fingerprint == data.fingerprint

    class Offline:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", Offline)
    with pytest.raises(DataNotFoundError) as exc:
        load_cifar("cifar100", data_dir=None)
    _assert_not_found(exc, root)
    assert "no network" in str(exc.value)


# ---- default directory --------------------------------------------------------------------------


# ---- a CIFAR-10 JPEG tree, as staged ------------------------------------------------------------


def test_cifar10_jpeg_tree(cifar_dir: Path) -> None:
    """The generated CIFAR-10 JPEG tree: real class names, batched JPEG decoding, smoke sizes."""
    data = load_cifar("cifar10", data_dir=cifar_dir, val_size=50, train_size=100, test_size=50)
    assert (len(data.train), len(data.val), len(data.test)) == (100, 50, 50)
    assert data.train.classes == list(CIFAR10_CLASSES)
    assert np.bincount(data.train.labels).tolist() == [10] * 10
    assert np.bincount(data.test.labels).tolist() == [5] * 10
    assert not set(data.train.source_indices) & set(data.val.source_indices)
    # labels are ImageFolder's: consecutive files per class in the train and test trees
    assert (data.train.labels == data.train.source_indices // CIFAR_TRAIN_PER_CLASS).all()
    assert (data.test.labels == data.test.source_indices // CIFAR_TEST_PER_CLASS).all()
    again = load_cifar("cifar10", data_dir=cifar_dir, val_size=50, train_size=100, test_size=50)
    assert again.fingerprint == data.fingerprint
    assert torch.equal(again.test.images, data.test.images)
    # the smoke profile's sizes fit (the benches' tests train on this tree)
    smoke = CIFAR_PROFILES["smoke"]
    sized = load_cifar(
        "cifar10", data_dir=cifar_dir, val_size=smoke.val_size, train_size=smoke.train_size,
        test_size=smoke.test_size, teacher_size=smoke.teacher_size,
    )  # fmt: skip
    assert sized.describe_splits()["teacher_train"]["size"] == smoke.teacher_size


@pytest.mark.real_data("cifar10-jpeg")
def test_staged_cifar10_jpeg(real_data_dir: Path) -> None:
    """The real staged CIFAR-10: its classes, 5,000 training images each, natural statistics."""
    data = load_cifar(
        "cifar10", data_dir=real_data_dir, val_size=100, train_size=200, test_size=100
    )
    assert (len(data.train), len(data.val), len(data.test)) == (200, 100, 100)
    assert data.train.classes == [
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    ]  # fmt: skip
    assert np.bincount(data.train.labels).tolist() == [20] * 10
    assert np.bincount(data.test.labels).tolist() == [10] * 10
    assert not set(data.train.source_indices) & set(data.val.source_indices)
    # labels are ImageFolder's: 5,000 consecutive files per class in the train tree
    assert (data.train.labels == data.train.source_indices // 5000).all()
    x = torch.stack([data.val[i]["pixel_values"] for i in range(len(data.val))])
    assert abs(x.mean().item()) < 0.3 and 0.7 < x.std().item() < 1.3  # normalised natural images
    again = load_cifar(
        "cifar10", data_dir=real_data_dir, val_size=100, train_size=200, test_size=100
    )
    assert again.fingerprint == data.fingerprint
    assert torch.equal(again.test.images, data.test.images)


def test_crafted_pickle_cannot_run_code(tmp_path: Path) -> None:
    """The torchvision-layout reader refuses pickles that reference callables."""
    import pickle

    from ckd_tune.data import cifar as cifar_mod

    class Exploit:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    evil = tmp_path / "data_batch_1"
    evil.write_bytes(pickle.dumps({"data": Exploit()}, protocol=2))
    with pytest.raises(UserInputError, match="refusing to load"):
        cifar_mod._load_pickle(evil)
    assert not (tmp_path / "pwned").exists()
