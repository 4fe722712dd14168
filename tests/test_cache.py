"""The on-disk cache: checksummed tensors, checked directories, leftovers, locations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ckd_tune import cache


def _tensors() -> dict[str, torch.Tensor]:
    return {"train": torch.arange(12.0).reshape(4, 3), "val": torch.ones(2, 3)}


def _flip_byte(path: Path, position: int) -> None:
    """Change one byte of ``path`` in place (same length: only a checksum can tell)."""
    data = bytearray(path.read_bytes())
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))


def test_saved_tensors_load_back(tmp_path):
    path = tmp_path / "logits" / "a.pt"
    cache.save_tensors(_tensors(), path)
    loaded = cache.load_tensors(path)
    assert loaded is not None and loaded.keys() == _tensors().keys()
    assert all(torch.equal(loaded[k], v) for k, v in _tensors().items())
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.pt", "a.pt.sha256"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: _flip_byte(p, len(p.read_bytes()) // 2),
        lambda p: p.write_bytes(p.read_bytes()[:100]),
        lambda p: Path(str(p) + ".sha256").unlink(),
    ],
    ids=["flipped-byte", "truncated", "no-checksum"],
)
def test_damaged_tensor_file_is_refused_and_removed(tmp_path, damage):
    path = tmp_path / "a.pt"
    cache.save_tensors(_tensors(), path)
    damage(path)
    assert cache.load_tensors(path) is None
    assert not Path(str(path) + ".sha256").exists()  # a mismatch removes the file and checksum
    cache.save_tensors(_tensors(), path)  # the caller rebuilds it
    assert cache.load_tensors(path) is not None


def test_missing_tensor_file_is_none(tmp_path):
    assert cache.load_tensors(tmp_path / "absent.pt") is None


def _published(tmp_path: Path) -> Path:
    tmp = tmp_path / ".entry-build"
    tmp.mkdir()
    (tmp / "weights.bin").write_bytes(b"w" * 64)
    final = tmp_path / "entry"
    cache.publish_dir(tmp, final, ["weights.bin"], {"train_seconds": 1.5})
    return final


def test_published_directory_is_checked(tmp_path):
    final = _published(tmp_path)
    assert not (tmp_path / ".entry-build").exists()
    assert cache.checked_dir(final, ["weights.bin"])
    meta = cache.read_json(final / "meta.json")
    assert meta["train_seconds"] == 1.5 and set(meta["sha256"]) == {"weights.bin"}


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: _flip_byte(d / "weights.bin", 10),
        lambda d: (d / "weights.bin").unlink(),
        lambda d: (d / "meta.json").write_text("{"),
        lambda d: (d / "meta.json").unlink(),
    ],
    ids=["flipped-byte", "missing-file", "broken-meta", "no-meta"],
)
def test_damaged_directory_fails_its_check(tmp_path, damage):
    final = _published(tmp_path)
    damage(final)
    assert not cache.checked_dir(final, ["weights.bin"])


def test_publishing_replaces_an_older_entry(tmp_path):
    final = _published(tmp_path)
    (final / "stale.txt").write_text("old")
    tmp = tmp_path / ".entry-again"
    tmp.mkdir()
    (tmp / "weights.bin").write_bytes(b"v2")
    cache.publish_dir(tmp, final, ["weights.bin"], {})
    assert not (final / "stale.txt").exists() and (final / "weights.bin").read_bytes() == b"v2"


def test_leftovers_of_an_interrupted_writer_are_removed(tmp_path):
    path = tmp_path / "entry"
    (tmp_path / f"{cache.leftover_prefix(path)}abc").mkdir()
    (tmp_path / f"{cache.leftover_prefix(path)}def.tmp").write_text("half")
    (tmp_path / ".other-1").write_text("not ours")
    path.write_text("kept")
    with cache.locked(path):
        assert cache.remove_leftovers(path) == 2
        assert cache.remove_leftovers(path) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other-1", "entry", "entry.lock"]


def test_json_round_trip(tmp_path):
    path = tmp_path / "sub" / "meta.json"
    cache.write_json({"b": [1, 2], "a": Path("x")}, path)
    assert cache.read_json(path) == {"a": "x", "b": [1, 2]}
    assert [p.name for p in path.parent.iterdir()] == ["meta.json"]  # no temporary file left


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CKD_TUNE_CACHE", str(tmp_path / "mine"))
    assert cache.default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("CKD_TUNE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.default_cache_dir() == tmp_path / "xdg" / "ckd_tune"
