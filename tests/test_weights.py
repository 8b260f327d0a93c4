"""Weights lookup, download (through real file:// URLs), verification and conversion cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from perceptual_audio.embeddings import weights as W
from perceptual_audio.errors import WeightsUnavailableError, WeightsVerificationError
from perceptual_audio.files import TMP_MARKER

PAYLOAD = b"official weights bytes \x00\x01\x02" * 1000


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A 'published' file on a local file:// server."""
    p = tmp_path / "server" / "toy-weights.bin"
    p.parent.mkdir()
    p.write_bytes(PAYLOAD)
    return p


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv(W.OFFLINE_ENV, raising=False)
    monkeypatch.setenv(W.CACHE_ENV, str(tmp_path / "envcache"))


def toy(source: Path, **kw) -> W.WeightFile:
    return W.WeightFile(model="toy", filename=source.name, url=source.as_uri(), **kw)


def no_temporaries(folder: Path) -> bool:
    return not any(TMP_MARKER in p.name for p in folder.rglob("*"))


def test_download_through_file_url_into_cache_then_reuse(source, tmp_path):
    cache = tmp_path / "cache"
    wf = toy(source, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    seen = []
    [r] = W.resolve_weight_files([wf], cache_dir=cache, progress=lambda d, t: seen.append((d, t)))
    assert r.origin == "download"
    assert r.path == cache / "toy" / source.name
    assert r.path.read_bytes() == PAYLOAD
    assert r.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert no_temporaries(cache)
    source.unlink()  # the second lookup must not need the server
    [r2] = W.resolve_weight_files([wf], cache_dir=cache)
    assert (r2.origin, r2.path, r2.sha256) == ("cache", r.path, r.sha256)


def test_cache_dir_defaults_to_environment_variable(source, tmp_path):
    path = W.resolve_weight_file(toy(source))
    assert path == tmp_path / "envcache" / "toy" / source.name


def test_weights_dir_is_searched_before_the_cache(source, tmp_path):
    cache, wdir = tmp_path / "cache", tmp_path / "by_hand"
    W.resolve_weight_file(toy(source), cache_dir=cache)  # now cached
    (wdir / "toy").mkdir(parents=True)
    (wdir / "toy" / source.name).write_bytes(b"hand-fetched")
    [r] = W.resolve_weight_files([toy(source)], weights_dir=wdir, cache_dir=cache)
    assert (r.origin, r.path) == ("weights_dir", wdir / "toy" / source.name)
    assert r.sha256 == hashlib.sha256(b"hand-fetched").hexdigest()


def test_sha256_mismatch_of_a_local_file(source, tmp_path):
    wdir = tmp_path / "by_hand"
    wdir.mkdir()
    (wdir / source.name).write_bytes(b"corrupt")
    wf = toy(source, sha256="ab" * 32)
    got = hashlib.sha256(b"corrupt").hexdigest()
    with pytest.raises(WeightsVerificationError) as e:
        W.resolve_weight_file(wf, weights_dir=wdir, cache_dir=tmp_path / "cache")
    assert str(e.value) == (
        f"toy weights file {wdir / source.name} fails verification: expected sha256 {'ab' * 32}, "
        f"received sha256 {got}. The file is corrupt or not the official {source.name}; "
        f"delete it and fetch it again from {source.as_uri()}"
    )


def test_sha256_mismatch_of_a_download_leaves_nothing(source, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(WeightsVerificationError, match="expected sha256 prefix 0000"):
        W.resolve_weight_file(toy(source, sha256_prefix="0000"), cache_dir=cache)
    assert not (cache / "toy" / source.name).exists()
    assert no_temporaries(cache)


def test_sha256_prefix_accepted():
    prefix = hashlib.sha256(PAYLOAD).hexdigest()[:8]
    wf = W.WeightFile(
        model="toy", filename="x.pth", url="file:///nowhere/x.pth", sha256_prefix=prefix
    )
    assert W.verify_sha256(wf, Path("unused"), hashlib.sha256(PAYLOAD).hexdigest())


def test_offline_message_names_model_urls_and_paths(tmp_path):
    cache, wdir = tmp_path / "cache", tmp_path / "wd"
    wf = W.WeightFile(
        model="toy",
        filename="a.h5.gz",
        url="https://example.org/a.h5.gz",
        mirrors=("https://mirror.example.org/a.h5.gz",),
        description="toy model",
    )
    with pytest.raises(WeightsUnavailableError) as e:
        W.resolve_weight_file(wf, weights_dir=wdir, cache_dir=cache, download=False)
    assert str(e.value) == (
        f"toy weights are unavailable: a.h5.gz is not in --weights-dir {wdir} nor the cache "
        f"{cache / 'toy'} and downloading is disabled (download=False).\n"
        "Fetch the file(s) by hand and put each at the path shown (the cache folder is "
        "$PERCEPTUAL_AUDIO_CACHE, default ~/.cache/perceptual_audio):\n"
        "  a.h5.gz (toy model)\n"
        "    download: https://example.org/a.h5.gz\n"
        "    download: https://mirror.example.org/a.h5.gz\n"
        f"    save as:  {cache / 'toy' / 'a.h5.gz'}\n"
        f"    or as:    {wdir / 'a.h5.gz'}"
    )


def test_failed_download_lists_every_missing_file_and_reason(tmp_path, monkeypatch):
    missing = [
        W.WeightFile(model="toy", filename=n, url=(tmp_path / "srv" / n).as_uri())
        for n in ("m.pth", "pca.pth")
    ]
    with pytest.raises(WeightsUnavailableError) as e:
        W.resolve_weight_files(missing, cache_dir=tmp_path / "c")
    msg = str(e.value)
    for wf in missing:
        assert f"download: {wf.url}" in msg
        assert f"save as:  {tmp_path / 'c' / 'toy' / wf.filename}" in msg
        assert f"{wf.url}: [Errno 2] No such file or directory" in msg
    assert "or as:    <DIR>/pca.pth and pass --weights-dir <DIR>" in msg
    monkeypatch.setenv(W.OFFLINE_ENV, "1")
    with pytest.raises(WeightsUnavailableError, match=r"\$PERCEPTUAL_AUDIO_OFFLINE is set"):
        W.resolve_weight_files(missing, cache_dir=tmp_path / "c")


def test_converted_once_then_loaded_from_cache(source, tmp_path):
    cache = tmp_path / "cache"
    calls = []

    def convert(path: Path) -> dict[str, torch.Tensor]:
        calls.append(path)
        return {"w": torch.tensor([float(len(path.read_bytes()))]), "n": torch.tensor(3)}

    a = W.load_converted(toy(source), convert, tag="v1", cache_dir=cache)
    b = W.load_converted(toy(source), convert, tag="v1", cache_dir=cache)
    assert len(calls) == 1
    assert (
        a.converted_path
        == b.converted_path
        == (cache / "toy" / f"{source.name}.v1-{hashlib.sha256(PAYLOAD).hexdigest()[:16]}.pt")
    )
    assert torch.equal(b.state_dict["w"], torch.tensor([float(len(PAYLOAD))]))
    assert b.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    W.load_converted(toy(source), convert, tag="v2", cache_dir=cache)  # new converter version
    assert len(calls) == 2
    # A changed source file (new sha256) is converted again.
    (cache / "toy" / source.name).write_bytes(b"new release")
    c = W.load_converted(toy(source), convert, tag="v1", cache_dir=cache)
    assert len(calls) == 3 and c.state_dict["w"].item() == len(b"new release")


def test_converter_must_return_a_state_dict(source, tmp_path):
    with pytest.raises(WeightsVerificationError, match="does not hold a state dict"):
        W.load_converted(toy(source), lambda p: {"w": [1, 2]}, tag="v1", cache_dir=tmp_path)


def test_registry_rejects_conflicting_entries():
    wf = W.register_weight_file(
        W.WeightFile(model="toyreg", filename="f.bin", url="https://e/f.bin")
    )
    assert W.register_weight_file(wf) is wf
    assert W.get_weight_file("toyreg", "f.bin") == wf
    with pytest.raises(ValueError, match="already registered differently"):
        W.register_weight_file(W.WeightFile(model="toyreg", filename="f.bin", url="https://e/g"))
    with pytest.raises(ValueError, match="must be lower-case hex, got 'XYZ'"):
        W.WeightFile(model="t", filename="f", url="u", sha256="XYZ")
