"""The embedding half of stage 2: outputs, manifests, reuse, removal, unavailable models."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from openl3_synthetic import make_weights, write_keras_h5  # noqa: E402

from perceptual_audio.embeddings import base  # noqa: E402
from perceptual_audio.errors import WeightsUnavailableError  # noqa: E402
from perceptual_audio.files import sha256_file  # noqa: E402
from perceptual_audio.manifest import ManifestRow, write_manifest  # noqa: E402
from perceptual_audio.stages import embed as embed_stage

SR = 16000
CALLS: list[int] = []


class FakeEmbedder(base.Embedder):
    """Frames of 0.25 s: (mean, rms) per frame. Counts embed calls in CALLS."""

    name: ClassVar[str] = "fakemodel"
    sample_rate: ClassVar[int] = SR
    frame = SR // 4

    def __init__(self, *, device: str = "cpu", weights_dir: Any = None) -> None:
        super().__init__(device=device)

    def load(self) -> None:
        pass

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        n = waveform.shape[-1] // self.frame * self.frame
        f = waveform[:, :n].reshape(waveform.shape[0], -1, self.frame)
        return torch.stack([f.mean(-1), f.square().mean(-1).sqrt()], dim=-1)

    def timestamps(self, n_samples: int) -> np.ndarray:
        return np.arange(n_samples // self.frame) * 0.25

    def embed(self, waveform, sr):
        CALLS.append(len(waveform))
        return super().embed(waveform, sr)

    def info(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "variant": "v1",
            "hop_seconds": 0.25,
            "weights_sha256": "f" * 64,
        }


class MissingEmbedder(FakeEmbedder):
    name: ClassVar[str] = "missingmodel"

    def load(self) -> None:
        raise WeightsUnavailableError(
            "missingmodel weights are unavailable: fetch x.bin to /y/x.bin"
        )


@pytest.fixture(autouse=True)
def fake_models():
    with base.registry_scope():
        base.register(FakeEmbedder)
        base.register(MissingEmbedder)
        CALLS.clear()
        yield


def make_audio_dir(root: Path, files: dict[str, np.ndarray]) -> Path:
    rows = []
    for rel, y in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, y, SR, subtype="PCM_16")
        kind = "clean" if rel.startswith("clean/") else "degraded"
        fam = rel.split("/")[1] if kind == "degraded" else ""
        lvl = rel.split("/")[2] if kind == "degraded" else ""
        rows.append(
            ManifestRow.make(
                rel,
                kind=kind,
                source="x.wav" if kind == "clean" else "clean/" + rel.split("/", 3)[3],
                parameters={},
                sample_rate=SR,
                duration=len(y) / SR,
                sha256=sha256_file(p),
                source_sha256="0" * 64,
                family=fam,
                level=lvl,
                seed=1 if kind == "degraded" else None,
            )
        )
    write_manifest(root, rows)
    return root


def run(tmp_path: Path, *extra: str) -> int:
    argv = ["--input-dir", str(tmp_path / "test_audio"), "--quiet", "--workers", "1", *extra]
    # The registered fakes get their --<model>-dir options from the registry.
    return embed_stage.run_embeddings(embed_stage.build_parser().parse_args(argv))


def dirs(tmp_path: Path, *models: str) -> list[str]:
    out = []
    for m in models:
        out += [f"--{m}-dir", str(tmp_path / f"{m}_embeddings")]
    return out


def read_rows(folder: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(folder / "manifest.csv", newline="") as f:
        r = csv.DictReader(f)
        return list(r.fieldnames or []), list(r)


def tone(seconds: float, f_hz: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * f_hz * t)).astype(np.float32)


@pytest.fixture
def audio(tmp_path) -> Path:
    return make_audio_dir(
        tmp_path / "test_audio",
        {
            "clean/speech/a.wav": tone(1.0, 440),
            "clean/b.wav": tone(0.5, 220, 0.25),
            "degraded/noise/low/speech/a.wav": tone(1.0, 440) + 0.01,
        },
    )


def test_outputs_manifest_and_run_json(tmp_path, audio, monkeypatch):
    rc = run(tmp_path, "--models", "fakemodel", *dirs(tmp_path, "fakemodel"))
    assert rc == 0
    out = tmp_path / "fakemodel_embeddings"
    emb = np.load(out / "clean/speech/a.npy")
    ts = np.load(out / "clean/speech/a.timestamps.npy")
    assert emb.dtype == np.float32 and emb.shape == (4, 2)
    np.testing.assert_allclose(emb[:, 1], 0.5 / np.sqrt(2), rtol=1e-3)  # rms of the tone
    np.testing.assert_array_equal(ts, [0.0, 0.25, 0.5, 0.75])
    assert np.load(out / "degraded/noise/low/speech/a.npy")[0, 0] == pytest.approx(0.01, abs=1e-3)
    header, rows = read_rows(out)
    assert header == list(embed_stage.EMBEDDING_COLUMNS)
    by_path = {r["path"]: r for r in rows}
    assert sorted(by_path) == [
        "clean/b.wav",
        "clean/speech/a.wav",
        "degraded/noise/low/speech/a.wav",
    ]
    r = by_path["clean/b.wav"]
    assert (
        r["embedding"],
        r["model"],
        r["variant"],
        r["n_frames"],
        r["dim"],
        r["hop_seconds"],
        r["status"],
        r["weights_sha256"],
    ) == ("clean/b.npy", "fakemodel", "v1", "2", "2", "0.25", "ok", "f" * 64)
    assert r["audio_sha256"] == sha256_file(audio / "clean/b.wav")
    assert json.loads(r["settings"])["variant"] == "v1"
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["available"] is True and run_json["counts"]["embedded"] == 3


def test_rerun_skips_unchanged_redoes_changed_and_removes_gone(tmp_path, audio, monkeypatch):
    args = ("--models", "fakemodel", *dirs(tmp_path, "fakemodel"))
    assert run(tmp_path, *args) == 0 and len(CALLS) == 3
    CALLS.clear()
    assert run(tmp_path, *args) == 0 and CALLS == []  # nothing changed
    # b.wav changes (new content, 0.75 s) and speech/a.wav leaves the manifest.
    make_audio_dir(
        audio,
        {"clean/b.wav": tone(0.75, 220), "degraded/noise/low/speech/a.wav": tone(1.0, 440) + 0.01},
    )
    assert run(tmp_path, *args) == 0
    assert CALLS == [int(0.75 * SR)]
    out = tmp_path / "fakemodel_embeddings"
    assert np.load(out / "clean/b.npy").shape == (3, 2)
    assert not (out / "clean/speech/a.npy").exists()
    assert not (out / "clean/speech/a.timestamps.npy").exists()
    assert sorted(r["path"] for r in read_rows(out)[1]) == [
        "clean/b.wav",
        "degraded/noise/low/speech/a.wav",
    ]
    CALLS.clear()
    assert run(tmp_path, *args, "--force") == 0 and len(CALLS) == 2


def test_unavailable_model_is_reported_and_others_run(tmp_path, audio, monkeypatch, caplog):
    rc = run(
        tmp_path, "--models", "missingmodel,fakemodel", *dirs(tmp_path, "fakemodel", "missingmodel")
    )
    assert rc == 3
    assert "fetch x.bin to /y/x.bin" in caplog.text
    missing = tmp_path / "missingmodel_embeddings"
    header, rows = read_rows(missing)
    assert header == list(embed_stage.EMBEDDING_COLUMNS) and rows == []
    rj = json.loads((missing / "run.json").read_text())
    assert rj["available"] is False and rj["reason"].endswith("fetch x.bin to /y/x.bin")
    assert len(read_rows(tmp_path / "fakemodel_embeddings")[1]) == 3


def test_a_bad_file_fails_alone(tmp_path, audio, monkeypatch):
    (audio / "clean/b.wav").write_bytes(b"not audio at all")
    rc = run(tmp_path, "--models", "fakemodel", *dirs(tmp_path, "fakemodel"))
    assert rc == 1
    rows = {r["path"]: r for r in read_rows(tmp_path / "fakemodel_embeddings")[1]}
    assert rows["clean/b.wav"]["status"].startswith("error: ")
    assert "b.wav" in rows["clean/b.wav"]["status"]
    assert rows["clean/speech/a.wav"]["status"] == "ok"
    assert not (tmp_path / "fakemodel_embeddings/clean/b.npy").exists()


def test_models_none_and_unknown(tmp_path, audio, caplog):
    assert run(tmp_path, "--models", "none") == 0
    assert not any(p.name.endswith("_embeddings") for p in tmp_path.iterdir())
    assert run(tmp_path, "--models", "openl3,nosuchmodel") == 2
    assert "--models: unknown model(s) nosuchmodel" in caplog.text


def test_openl3_end_to_end_with_synthetic_weights_dir(tmp_path, monkeypatch):
    """Official-format synthetic weights in --weights-dir: OpenL3 runs end to end."""
    monkeypatch.setenv("PERCEPTUAL_AUDIO_CACHE", str(tmp_path / "cache"))
    wdir = tmp_path / "weights"
    wfile = write_keras_h5(wdir / "openl3_audio_mel128_env-v0_4_0.h5.gz", make_weights(seed=3))
    make_audio_dir(tmp_path / "test_audio", {"clean/x.wav": tone(0.5, 1000)})
    rc = run(
        tmp_path,
        "--models",
        "openl3",
        "--weights-dir",
        str(wdir),
        "--openl3-input-repr",
        "mel128",
        "--openl3-content-type",
        "env",
        "--openl3-embedding-size",
        "512",
        "--openl3-hop",
        "0.25",
        *dirs(tmp_path, "openl3"),
    )
    assert rc == 0
    out = tmp_path / "openl3_embeddings"
    emb = np.load(out / "clean/x.npy")
    assert emb.shape == (1, 512) and np.isfinite(emb).all() and emb.std() > 0
    [row] = read_rows(out)[1]
    assert row["variant"] == "mel128_env_512" and row["hop_seconds"] == "0.25"
    assert row["weights_sha256"] == hashlib.sha256(wfile.read_bytes()).hexdigest()
    rj = json.loads((out / "run.json").read_text())
    assert rj["weights_sha256"] == row["weights_sha256"]


class ExtrasEmbedder(FakeEmbedder):
    """Like CDPAM: a clip-level array stored beside the frames; like VGGish: flags."""

    name: ClassVar[str] = "extrasmodel"

    def embed_with_extras(self, waveform, sr):
        emb, ts = self.embed(waveform, sr)
        return emb, ts, {"clip": np.asarray([waveform.mean(), waveform.std()], np.float32)}

    def flags(self, n_samples: int) -> list[str]:
        return ["short"] if n_samples < SR else []


def test_extras_are_stored_beside_the_frames_flags_recorded_and_stale_ones_removed(tmp_path):
    base.register(ExtrasEmbedder)
    rng = np.random.default_rng(0)
    long, short = 0.1 * rng.standard_normal(SR * 2), 0.1 * rng.standard_normal(SR // 2)
    audio = make_audio_dir(tmp_path / "test_audio", {"clean/a.b.wav": long, "clean/s.wav": short})
    folder = tmp_path / "extrasmodel_embeddings"
    assert run(tmp_path, "--models", "extrasmodel", *dirs(tmp_path, "extrasmodel")) == 0
    _, rows = read_rows(folder)
    by_path = {r["path"]: r for r in rows}
    assert by_path["clean/a.b.wav"]["extras"] == "clip" and by_path["clean/a.b.wav"]["flags"] == ""
    assert by_path["clean/s.wav"]["flags"] == "short"
    clip = np.load(folder / "clean" / "a.b.clip.npy")
    y, _ = sf.read(audio / "clean/a.b.wav", dtype="float32")
    np.testing.assert_allclose(clip, [y.mean(), y.std()], rtol=1e-5)
    # A missing extra makes the file be embedded again; removing the audio removes all three.
    (folder / "clean" / "a.b.clip.npy").unlink()
    CALLS.clear()
    assert run(tmp_path, "--models", "extrasmodel", *dirs(tmp_path, "extrasmodel")) == 0
    assert len(CALLS) == 1 and (folder / "clean" / "a.b.clip.npy").is_file()
    make_audio_dir(tmp_path / "test_audio", {"clean/s.wav": short})
    assert run(tmp_path, "--models", "extrasmodel", *dirs(tmp_path, "extrasmodel")) == 0
    assert sorted(p.name for p in (folder / "clean").iterdir()) == [
        "s.clip.npy",
        "s.npy",
        "s.timestamps.npy",
    ]


def test_an_interrupted_run_keeps_what_it_embedded(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    make_audio_dir(
        tmp_path / "test_audio",
        {f"clean/f{i}.wav": 0.1 * rng.standard_normal(SR) for i in range(4)},
    )
    monkeypatch.setattr(embed_stage, "CHECKPOINT_SECONDS", 0.0)
    real_embed = FakeEmbedder.embed

    def dying_embed(self, waveform, sr):
        if len(CALLS) == 2:
            raise KeyboardInterrupt("killed")
        return real_embed(self, waveform, sr)

    monkeypatch.setattr(FakeEmbedder, "embed", dying_embed)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "--models", "fakemodel", *dirs(tmp_path, "fakemodel"))
    _, rows = read_rows(tmp_path / "fakemodel_embeddings")
    assert [r["path"] for r in rows] == ["clean/f0.wav", "clean/f1.wav"]
    monkeypatch.setattr(FakeEmbedder, "embed", real_embed)
    CALLS.clear()
    assert run(tmp_path, "--models", "fakemodel", *dirs(tmp_path, "fakemodel")) == 0
    assert len(CALLS) == 2  # only f2 and f3 are embedded on the rerun
