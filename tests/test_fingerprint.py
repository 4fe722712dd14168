"""The one fingerprint helper: stable, order-free for dicts, sensitive to every value."""

from __future__ import annotations

from pathlib import Path

from ckd_tune.fingerprint import bytes_sha256, file_sha256, fingerprint


def test_fingerprint_is_short_stable_and_ignores_dict_order():
    fp = fingerprint("teacher", {"lr": 0.1, "epochs": 3}, [1, 2])
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fingerprint("teacher", {"epochs": 3, "lr": 0.1}, [1, 2]) == fp
    assert fingerprint("teacher", {"lr": 0.1, "epochs": 3}, [1, 2]) == fp


def test_fingerprint_changes_with_any_value():
    base = ("teacher", {"lr": 0.1, "epochs": 3}, None)
    others = [
        ("student", {"lr": 0.1, "epochs": 3}, None),
        ("teacher", {"lr": 0.2, "epochs": 3}, None),
        ("teacher", {"lr": 0.1, "epochs": 3, "seed": 0}, None),
        ("teacher", {"lr": 0.1, "epochs": 3}, "data"),
        ("teacher", {"lr": 0.1, "epochs": 3}),
    ]
    assert len({fingerprint(*base), *(fingerprint(*parts) for parts in others)}) == 6


def test_fingerprint_writes_paths_as_text():
    assert fingerprint(Path("a/b")) == fingerprint("a/b")


def test_file_and_bytes_digests_agree(tmp_path):
    data = bytes(range(256)) * 5000  # over one read chunk
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == bytes_sha256(data)
    assert bytes_sha256(data) != bytes_sha256(data[:-1])
