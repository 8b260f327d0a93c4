"""Atomic writes, hashing and the input->output path mapping."""

from __future__ import annotations

import numpy as np
import pytest

from perceptual_audio.files import (
    TMP_MARKER,
    atomic_path,
    atomic_write_text,
    mirror_path,
    params_digest,
    remove_stale_temporaries,
    save_npy_atomic,
    sha256_array,
    sha256_file,
)


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_path(target) as tmp:
            tmp.write_text("half-writ")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_path_keeps_the_suffix_for_format_sniffing_writers(tmp_path):
    with atomic_path(tmp_path / "x.wav") as tmp:
        assert tmp.suffix == ".wav" and TMP_MARKER in tmp.name and tmp.parent == tmp_path
        tmp.write_bytes(b"data")
    assert (tmp_path / "x.wav").read_bytes() == b"data"


def test_remove_stale_temporaries_only_touches_marked_files(tmp_path):
    (tmp_path / "sub").mkdir()
    leftover = tmp_path / "sub" / f".a.wav{TMP_MARKER}1234abcd.wav"
    leftover.write_bytes(b"partial")
    keep = tmp_path / "sub" / "a.wav"
    keep.write_bytes(b"complete")
    assert remove_stale_temporaries(tmp_path) == [leftover]
    assert keep.exists() and not leftover.exists()


def test_save_npy_atomic_round_trip(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    save_npy_atomic(tmp_path / "e" / "a.npy", a)
    np.testing.assert_array_equal(np.load(tmp_path / "e" / "a.npy"), a)


def test_hashes(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    a = np.zeros(4, np.float32)
    assert sha256_array(a) == sha256_array(a.copy())
    assert sha256_array(a) != sha256_array(a.astype(np.float64))
    assert sha256_array(a) != sha256_array(a.reshape(2, 2))
    assert params_digest({"a": 1, "b": 2}) == params_digest({"b": 2, "a": 1})
    assert params_digest({"a": 1}) != params_digest({"a": 2})


def test_mirror_path_maps_nested_awkward_names(tmp_path):
    src = tmp_path / "in" / "día 1 (take 2)" / "voix.flac"
    assert mirror_path(src, tmp_path / "in", tmp_path / "out" / "clean", suffix=".wav") == (
        tmp_path / "out" / "clean" / "día 1 (take 2)" / "voix.wav"
    )
    with pytest.raises(ValueError):
        mirror_path(tmp_path / "elsewhere.wav", tmp_path / "in", tmp_path / "out")
