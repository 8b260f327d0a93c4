"""Stage 2's restorations (--restore) through the real stages 1 and 2."""

from __future__ import annotations

import json
import logging
import shutil
from typing import ClassVar

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import speechlike, write_audio

from perceptual_audio.embeddings import base
from perceptual_audio.errors import WeightsUnavailableError
from perceptual_audio.manifest import read_manifest
from perceptual_audio.stages import convert as conversion
from perceptual_audio.stages import extract as extract_stage
from perceptual_audio.stages import restore as restore_stage
from perceptual_audio.stages import score as metrics_stage
from perceptual_audio.stages import shards

SR = 16000


class _FrameEmbedder(base.Embedder):
    """A differentiable stand-in: per 0.25 s frame the mean and RMS (numbers mean nothing)."""

    name: ClassVar[str] = "framemodel"
    sample_rate: ClassVar[int] = SR

    def load(self) -> None:
        pass

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        f = waveform[:, : waveform.shape[-1] // 4000 * 4000].reshape(waveform.shape[0], -1, 4000)
        return torch.stack([f.mean(-1), f.square().mean(-1).sqrt()], dim=-1)

    def timestamps(self, n_samples: int) -> np.ndarray:
        return np.arange(n_samples // 4000) * 0.25

    def info(self) -> dict:
        return {"model": self.name, "variant": "x", "hop_seconds": 0.25, "weights_sha256": ""}


class _MissingEmbedder(_FrameEmbedder):
    name: ClassVar[str] = "missingmodel"

    def load(self) -> None:
        raise WeightsUnavailableError("missingmodel weights are unavailable: fetch x.bin to /y")


@pytest.fixture(autouse=True)
def models():
    with base.registry_scope():
        base.register(_FrameEmbedder)
        base.register(_MissingEmbedder)
        yield


@pytest.fixture
def audio_dir(tmp_path):
    write_audio(tmp_path / "in" / "a.wav", speechlike(1.0, 120, seed=1), SR)
    argv = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "test_audio"), "-q"]
    assert conversion.main([*argv, "--workers", "1"]) == 0
    return tmp_path / "test_audio"


def _stage2(audio_dir, *extra: str) -> int:
    return extract_stage.main(
        ["--input-dir", str(audio_dir), "--degradations", "noise:high", "--models",
         "framemodel", "--framemodel-dir", str(audio_dir.parent / "fm"), "--workers", "1",
         *extra]
    )  # fmt: skip


def test_restorations_are_written_recorded_and_embedded(audio_dir, caplog):
    caplog.set_level(logging.INFO)
    rc = _stage2(audio_dir, "--restore", "l1,missingmodel,framemodel", "--restore-steps", "20")
    assert rc == 3  # missingmodel's loss was skipped, the others ran
    assert "missingmodel skipped: missingmodel weights are unavailable" in caplog.text
    rows = {r.path: r for r in read_manifest(audio_dir)}
    restored = [r for r in rows.values() if r.kind == "restored"]
    assert sorted(r.path for r in restored) == [
        "restored/framemodel/noise/high/a.wav",
        "restored/l1/noise/high/a.wav",
    ]
    row = rows["restored/l1/noise/high/a.wav"]
    assert row.source == "degraded/noise/high/a.wav"
    assert row.source_sha256 == rows[row.source].sha256
    p = row.params
    assert (p["loss"], p["mode"], p["steps"], p["lr"], p["seed"]) == ("l1", "mask", 20, 0.5, 0)
    assert p["clean"] == "clean/a.wav" and p["loss_after"] < p["loss_before"]
    assert p["seconds"] > 0
    info = sf.info(audio_dir / row.path)
    degraded = sf.info(audio_dir / row.source)
    assert (info.subtype, info.samplerate, info.frames) == ("FLOAT", SR, degraded.frames)
    embedded = (audio_dir.parent / "fm" / "manifest.csv").read_text()
    assert "restored/l1/noise/high/a.wav" in embedded


def test_a_rerun_writes_nothing_and_a_change_redoes_only_it(audio_dir, caplog):
    assert _stage2(audio_dir, "--restore", "l1,sisdr", "--restore-steps", "3") == 0
    target = audio_dir / "restored" / "l1" / "noise" / "high" / "a.wav"
    other = audio_dir / "restored" / "sisdr" / "noise" / "high" / "a.wav"
    stamps = (target.stat().st_mtime_ns, other.stat().st_mtime_ns)
    manifest = (audio_dir / "manifest.csv").read_bytes()
    caplog.set_level(logging.INFO)
    assert _stage2(audio_dir, "--restore", "l1,sisdr", "--restore-steps", "3") == 0
    assert "restorations: wrote 0, skipped 2 (up to date)" in caplog.text
    assert (target.stat().st_mtime_ns, other.stat().st_mtime_ns) == stamps
    assert (audio_dir / "manifest.csv").read_bytes() == manifest
    caplog.clear()
    assert _stage2(audio_dir, "--restore", "l1", "--restore-steps", "4") == 0
    assert "restorations: wrote 1, skipped 0" in caplog.text
    assert not other.exists()  # no longer asked for
    assert _stage2(audio_dir) == 0  # --restore none
    assert not (audio_dir / "restored" / "l1").exists()
    assert not [r for r in read_manifest(audio_dir) if r.kind == "restored"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--restore", "l1,nope"], "--restore: unknown loss 'nope'; valid losses: l1, sisdr"),
        (["--restore", "l1", "--restore-steps", "0"], "argument --restore-steps: expected a positive integer, got 0"),
        (["--restore", "l1", "--restore-on", "reverb"],
         "--restore-on 'reverb': family 'reverb' is not in the study's degradations (noise;"),
        (["--restore", "l1", "--restore-on", "noise:low"],
         "--restore-on 'noise:low': level 'low' of noise is not in the study's degradations"),
        (["--restore", "l1", "--restore-mode", "x"], "argument --restore-mode: invalid choice: 'x'"),
    ],
)  # fmt: skip
def test_bad_restore_options_exit_2_naming_the_option(audio_dir, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        _stage2(audio_dir, *argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (audio_dir / "degraded").exists()


def test_max_files_restores_the_first_recordings_of_each_level(tmp_path):
    for name in ("b", "a", "c"):
        write_audio(tmp_path / "in" / f"{name}.wav", speechlike(0.5, 120, seed=2), SR)
    audio = tmp_path / "test_audio"
    argv = ["--input", str(tmp_path / "in"), "--output", str(audio), "--workers", "1", "-q"]
    assert conversion.main(argv) == 0
    rc = extract_stage.main(
        ["--input-dir", str(audio), "--degradations", "noise:high,noise:low", "--models",
         "none", "--restore", "l1", "--restore-max-files", "2", "--restore-steps", "2",
         "--workers", "1", "-q"]
    )  # fmt: skip
    assert rc == 0
    restored = sorted(r.path for r in read_manifest(audio) if r.kind == "restored")
    assert restored == [
        "restored/l1/noise/high/a.wav", "restored/l1/noise/high/b.wav",
        "restored/l1/noise/low/a.wav", "restored/l1/noise/low/b.wav",
    ]  # fmt: skip


# -- shards ------------------------------------------------------------------------------------
SHARD_ARGS = ("--restore", "l1,sisdr", "--restore-steps", "3", "-q")


def _study(tmp_path, names: str = "abcd") -> tuple:
    """Stage 1 on short recordings; clean/a, b in shard 1/2, c, d in shard 2/2."""
    for i, name in enumerate(names):
        write_audio(tmp_path / "in" / f"{name}.wav", speechlike(1.0, 110 + 20 * i, seed=i), SR)
    audio = tmp_path / "stage1"
    argv = ["--input", str(tmp_path / "in"), "--output", str(audio), "--workers", "1", "-q"]
    assert conversion.main(argv) == 0
    return audio


def _copy(audio, to):
    shutil.copytree(audio, to)
    return to


def _stage2_levels(audio_dir, *extra: str) -> int:
    return _stage2(audio_dir, "--degradations", "noise:high,noise:low", *extra)


def _without_wall_time(audio_dir) -> list:
    """The manifest's rows with the restorations' wall time (``seconds``) left out: it is
    the only value that differs between two runs of the same restorations."""
    rows = []
    for r in read_manifest(audio_dir):
        params = {k: v for k, v in r.params.items() if k != "seconds"}
        rows.append((r.path, r.kind, r.source, r.sha256, r.source_sha256, json.dumps(params)))
    return rows


def _wavs(folder) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.wav")}


def _score(audio_dir, results) -> None:
    rc = metrics_stage.main(
        ["--audio-dir", str(audio_dir), "--results-dir", str(results), "--models", "none",
         "--metrics", "si_sdr,stoi", "--bootstrap", "200", "--workers", "1", "-q"]
    )  # fmt: skip
    assert rc == 0


@pytest.mark.slow
def test_restoration_shards_merge_into_the_unsharded_restorations(tmp_path, caplog):
    stage1 = _study(tmp_path)
    unsharded = _copy(stage1, tmp_path / "u" / "test_audio")
    assert _stage2_levels(unsharded, *SHARD_ARGS) == 0
    audio = _copy(stage1, tmp_path / "s" / "test_audio")
    for k in (1, 2):
        assert _stage2_levels(audio, *SHARD_ARGS, "--shard", f"{k}/2") == 0
    fragments = audio / "restored" / shards.SHARDS_DIR
    for k, mine in ((1, "ab"), (2, "cd")):
        rows = shards.restored_rows(audio, shards.Shard(k, 2))
        assert sorted(r.path for r in rows) == sorted(
            f"restored/{loss}/noise/{lev}/{n}.wav"
            for loss in ("l1", "sisdr") for lev in ("high", "low") for n in mine
        )  # fmt: skip
    assert not [r for r in read_manifest(audio) if r.kind != "clean"]  # nothing merged yet

    # A rerun of a shard with nothing changed writes nothing.
    stamps = {p: p.stat().st_mtime_ns for p in (audio / "restored").rglob("*.wav")}
    fragment = (fragments / "1-of-2" / "manifest.csv").read_bytes()
    caplog.set_level(logging.INFO)
    assert _stage2_levels(audio, *SHARD_ARGS[:-1], "--shard", "1/2") == 0
    assert "restorations, shard 1/2: wrote 0, skipped 8 (up to date), failed 0" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in (audio / "restored").rglob("*.wav")} == stamps
    assert (fragments / "1-of-2" / "manifest.csv").read_bytes() == fragment

    caplog.clear()
    assert _stage2_levels(audio, *SHARD_ARGS[:-1]) == 0  # the merge
    assert "restorations: merged 2 shards" in caplog.text
    assert "restorations: wrote 0, skipped 16 (up to date), failed 0" in caplog.text
    assert not fragments.exists() and not (audio / "degraded" / shards.SHARDS_DIR).exists()
    assert _without_wall_time(audio) == _without_wall_time(unsharded)
    assert len([r for r in read_manifest(audio) if r.kind == "restored"]) == 16
    assert _wavs(audio) == _wavs(unsharded)  # restored WAVs byte for byte
    fm, u_fm = tmp_path / "s" / "fm", tmp_path / "u" / "fm"
    assert (fm / "manifest.csv").read_text().count("\nrestored/") == 16  # embedded in the shards
    assert (fm / "manifest.csv").read_bytes() == (u_fm / "manifest.csv").read_bytes()

    _score(unsharded, tmp_path / "u" / "results")
    _score(audio, tmp_path / "s" / "results")
    for name in ("loss_audit.csv", "pair_metrics.csv"):
        merged = (tmp_path / "s" / "results" / name).read_bytes()
        assert merged == (tmp_path / "u" / "results" / name).read_bytes(), name
    assert merged.count(b"restored/") == 16
    audit = (tmp_path / "s" / "results" / "loss_audit.csv").read_text()
    for judge in ("stoi,False", "si_sdr,False", "si_sdr,True"):  # self: sisdr judged by si_sdr
        assert f"all,,,{judge},8,4," in audit, judge


def test_an_interrupted_restoration_shard_is_named_and_keeps_what_it_finished(
    tmp_path, caplog, monkeypatch
):
    audio = _study(tmp_path)
    args = ("--restore", "l1", "--restore-steps", "2")
    assert _stage2_levels(audio, *args, "--shard", "2/2", "-q") == 0
    real, calls = restore_stage.restore_file, []

    def interrupted(*a, **k):  # Ctrl-C during the second restoration of shard 1/2
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(restore_stage, "restore_file", interrupted)
    assert _stage2_levels(audio, *args, "--shard", "1/2", "-q") == 130
    monkeypatch.setattr(restore_stage, "restore_file", real)
    kept = shards.restored_rows(audio, shards.Shard(1, 2))
    assert [r.path for r in kept] == ["restored/l1/noise/high/a.wav"]

    caplog.set_level(logging.INFO)
    assert _stage2_levels(audio, *args) == 1
    assert (
        f"cannot merge the 2 shards of {audio / 'restored'}: shard 1/2 is unfinished (no "
        f"record.json in {audio / 'restored' / shards.SHARDS_DIR / '1-of-2'}: it was killed or "
        "failed before the end); run it again: extract_embeddings.py ... --restore l1 --shard "
        "1/2. Nothing merged"
    ) in caplog.text
    assert not [r for r in read_manifest(audio) if r.kind != "clean"]

    caplog.clear()
    assert _stage2_levels(audio, *args, "--shard", "1/2", "--workers", "2") == 0
    assert "restorations, shard 1/2: wrote 3, skipped 1 (up to date)" in caplog.text
    caplog.clear()
    assert _stage2_levels(audio, "--restore", "l1", "--restore-steps", "3") == 1
    assert (
        "shards 1/2, 2/2 ran with other parameters than this run (restore_steps: 2 there, 3 here)"
    ) in caplog.text
    caplog.clear()
    assert _stage2_levels(audio) == 1  # --restore none
    assert "ran with other parameters than this run (restore: 'l1' there, 'none' here)" in (
        caplog.text
    )
    caplog.clear()
    assert _stage2_levels(audio, *args) == 0
    assert (
        "restorations: the shards ran with different torch thread counts (shard 1: 2, shard 2: "
        "1): float32 rounding may differ from one unsharded run"
    ) in caplog.text
    restored = sorted(r.path for r in read_manifest(audio) if r.kind == "restored")
    assert restored == [
        f"restored/l1/noise/{lev}/{n}.wav" for lev in ("high", "low") for n in "abcd"
    ]
    assert (tmp_path / "fm" / "manifest.csv").read_text().count("\nrestored/") == 8


def test_a_merge_needs_the_shards_restore_option(tmp_path, caplog):
    audio = _study(tmp_path)
    base = ["--input-dir", str(audio), "--degradations", "noise:high", "--models", "none"]
    base += ["--workers", "1"]
    l1 = ["--restore", "l1", "--restore-steps", "2"]
    for k in (1, 2):
        assert extract_stage.main([*base, "-q", "--shard", f"{k}/2"]) == 0
    caplog.set_level(logging.INFO)
    assert extract_stage.main([*base, *l1]) == 1
    assert (
        f"cannot merge the restorations: {audio / 'restored' / shards.SHARDS_DIR} holds no "
        "fragments (the shards ran without --restore); run the shards with --restore l1, or "
        "merge without --restore. Nothing merged"
    ) in caplog.text
    for k in (1, 2):
        assert extract_stage.main([*base, *l1, "-q", "--shard", f"{k}/2"]) == 0
    assert len(list((audio / "restored").rglob("*.wav"))) == 4
    assert extract_stage.main([*base, "-q", "--shard", "1/2"]) == 0  # now --restore none
    assert [p.name for p in (audio / "restored" / shards.SHARDS_DIR).iterdir()] == ["2-of-2"]
    assert extract_stage.main([*base, "-q", "--shard", "2/2"]) == 0
    assert extract_stage.main([*base, "-q"]) == 0  # the merge, --restore none like the shards
    assert not list((audio / "restored").rglob("*.wav"))  # the shards' restorations went
    assert not (audio / "restored" / shards.SHARDS_DIR).exists()
    assert {r.kind for r in read_manifest(audio)} == {"clean", "degraded"}
