"""Stage 1 (audio_conversion.py) on a folder built the way real users' folders look."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO_ROOT, sine, write_audio

from perceptual_audio.files import TMP_MARKER
from perceptual_audio.manifest import read_manifest
from perceptual_audio.stages import convert as conversion

# relative path -> (sample rate, channels, soundfile kwargs)
GOOD = {
    "speech/interview 01 (final).wav": (44100, 2, dict(subtype="PCM_16")),
    "speech/Grabación niño ü.flac": (48000, 1, dict(subtype="PCM_24")),
    "speech/日本語.ogg": (22050, 1, dict(format="OGG", subtype="VORBIS")),
    "music/take-2/mix.aiff": (44100, 2, dict(subtype="PCM_24")),
    "music/song.mp3": (44100, 2, dict(format="MP3", subtype="MPEG_LAYER_III")),
    "field/8bit old.wav": (11025, 1, dict(subtype="PCM_U8")),
    "field/float32 loud.wav": (16000, 1, dict(subtype="FLOAT")),
    "field/int32.wav": (8000, 4, dict(subtype="PCM_32")),
}


def _make_good(root):
    for i, (rel, (sr, ch, kw)) in enumerate(GOOD.items()):
        y = sine(220.0 * (i + 1), 1.3, sr, amplitude=0.4)
        if ch > 1:
            y = np.stack([y * (1 + 0.1 * c) for c in range(ch)], axis=1)
        write_audio(root / rel, y, sr, **kw)


def _run(*args):
    return conversion.main([*map(str, args), "--workers", "1", "--quiet"])


@pytest.fixture
def messy(tmp_path):
    """A realistic input tree: good files of every kind plus broken and colliding ones."""
    root = tmp_path / "original_audio"
    _make_good(root)
    (root / "broken").mkdir()
    (root / "broken" / "empty.wav").write_bytes(b"")
    (root / "broken" / "readme.wav").write_text("not audio")
    trunc = write_audio(root / "broken" / "cut.flac", sine(440, 2, 16000), 16000)
    trunc.write_bytes(trunc.read_bytes()[:80])
    write_audio(root / "dup" / "take.wav", sine(300, 1, 16000), 16000)
    write_audio(root / "dup" / "take.flac", sine(300, 1, 16000), 16000)
    write_audio(root / "edge" / "silence.wav", np.zeros(16000, np.float32), 16000)
    write_audio(root / "edge" / "blip.wav", sine(1000, 0.2, 16000), 16000)
    (root / "notes.txt").write_text("ignored: not an audio extension")
    return root, tmp_path / "test_audio"


def test_messy_folder_converts_good_files_and_names_each_bad_one(messy, caplog):
    src, out = messy
    assert _run("--input", src, "--output", out) == 1
    rows = {r.source: r for r in read_manifest(out)}
    assert set(rows) == set(GOOD) | {"edge/silence.wav", "edge/blip.wav"}
    for rel, (sr_in, _, _) in GOOD.items():
        row = rows[rel]
        wav = out / row.path
        assert row.path == "clean/" + rel.rsplit(".", 1)[0] + ".wav" and wav.is_file()
        info = sf.info(wav)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "FLOAT")
        n_in = sf.info(src / rel).frames
        assert abs(info.frames - n_in * 16000 / sr_in) <= 1  # duration within one sample
        assert row.params["input_sample_rate"] == sr_in and row.sample_rate == 16000
    assert rows["edge/silence.wav"].flag_set == {"silent"}
    assert rows["edge/blip.wav"].flag_set == {"short"}
    text = caplog.text
    assert "empty.wav: the file is empty (0 bytes)" in text
    assert "readme.wav: not a recognised audio file" in text
    assert "cut.flac: " in text
    assert "take.wav" in text and "take.flac" in text and "would all be written to" in text
    assert not (out / "clean" / "dup" / "take.wav").exists()
    assert not list(out.rglob(f"*{TMP_MARKER}*"))
    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["failed"] == 5 and run["counts"]["converted"] == len(GOOD) + 2


def test_channel_mix_and_level_of_converted_output(tmp_path):
    src = tmp_path / "in"
    left, right = sine(500, 1.0, 16000, amplitude=0.8), sine(500, 1.0, 16000, amplitude=0.2)
    write_audio(src / "st.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    assert _run("--input", src, "--output", tmp_path / "out") == 0
    y, _ = sf.read(tmp_path / "out" / "clean" / "st.wav", dtype="float32")
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-6)


def test_peak_above_full_scale_is_kept_and_flagged(tmp_path):
    src = tmp_path / "in"
    write_audio(src / "hot.wav", sine(1000, 0.6, 48000, amplitude=1.4), 48000, subtype="FLOAT")
    assert _run("--input", src, "--output", tmp_path / "out") == 0
    row = read_manifest(tmp_path / "out")[0]
    assert "clipped_peak" in row.flag_set
    y, _ = sf.read(tmp_path / "out" / row.path, dtype="float32")
    assert np.max(np.abs(y)) == pytest.approx(1.4, rel=0.01)


def test_rerun_skips_unchanged_redoes_changed_and_removes_stale(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    for name in ("a", "b", "c"):
        write_audio(src / f"{name}.wav", sine(300, 0.8, 22050), 22050)
    assert _run("--input", src, "--output", out) == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "clean").iterdir()}
    hashes = {r.path: r.sha256 for r in read_manifest(out)}

    write_audio(src / "b.wav", sine(600, 0.8, 22050), 22050)  # changed content
    (src / "c.wav").unlink()  # disappeared
    assert _run("--input", src, "--output", out) == 0
    assert (out / "clean" / "a.wav").stat().st_mtime_ns == stamps["a.wav"]  # untouched
    assert not (out / "clean" / "c.wav").exists()
    rows = {r.path: r for r in read_manifest(out)}
    assert set(rows) == {"clean/a.wav", "clean/b.wav"}
    assert rows["clean/a.wav"].sha256 == hashes["clean/a.wav"]
    assert rows["clean/b.wav"].sha256 != hashes["clean/b.wav"]

    assert _run("--input", src, "--output", out, "--sr", "8000") == 0  # new parameters: redo
    assert {r.sample_rate for r in read_manifest(out)} == {8000}
    mtime = (out / "clean" / "a.wav").stat().st_mtime_ns
    assert _run("--input", src, "--output", out, "--sr", "8000", "--force") == 0
    assert (out / "clean" / "a.wav").stat().st_mtime_ns != mtime


def test_output_tampered_with_is_redone(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    write_audio(src / "a.wav", sine(300, 0.5, 16000), 16000)
    assert _run("--input", src, "--output", out) == 0
    good = (out / "clean" / "a.wav").read_bytes()
    (out / "clean" / "a.wav").write_bytes(good[:100])  # e.g. a copy cut short
    assert _run("--input", src, "--output", out) == 0
    assert (out / "clean" / "a.wav").read_bytes() == good


def test_crash_mid_write_leaves_no_partial_file_and_the_rerun_completes(tmp_path, monkeypatch):
    src, out = tmp_path / "in", tmp_path / "out"
    write_audio(src / "a.wav", sine(300, 0.5, 16000), 16000)
    from scipy.io import wavfile

    def crash(path, rate, data):  # write half the file, then die
        with open(path, "wb") as f:
            f.write(b"RIFF" + bytes(100))
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(wavfile, "write", crash)
    assert _run("--input", src, "--output", out) == 130  # interrupted: one line, no traceback
    assert not (out / "clean" / "a.wav").exists()
    assert not (out / ".perceptual_audio.lock").exists()  # the lock is given back
    assert not list(out.rglob(f"*{TMP_MARKER}*"))
    monkeypatch.undo()
    # A temporary left by a process killed outright (no cleanup ran) is removed on rerun.
    (out / "clean").mkdir(parents=True, exist_ok=True)
    (out / "clean" / f".a.wav{TMP_MARKER}deadbeef.wav").write_bytes(b"junk")
    assert _run("--input", src, "--output", out) == 0
    assert sf.info(out / "clean" / "a.wav").frames == 8000
    assert not list(out.rglob(f"*{TMP_MARKER}*"))


def test_parallel_equals_serial(tmp_path):
    src = tmp_path / "in"
    _make_good(src)
    assert (
        conversion.main(
            ["--input", str(src), "--output", str(tmp_path / "s"), "--workers", "1", "-q"]
        )
        == 0
    )
    assert (
        conversion.main(
            ["--input", str(src), "--output", str(tmp_path / "p"), "--workers", "2", "-q"]
        )
        == 0
    )
    strip = lambda rows: [(r.path, r.sha256, r.duration) for r in rows]  # noqa: E731
    assert strip(read_manifest(tmp_path / "s")) == strip(read_manifest(tmp_path / "p"))


@pytest.mark.slow
def test_script_exit_status_summary_and_help(tmp_path):
    src = tmp_path / "in"
    write_audio(src / "ok.wav", sine(300, 0.5, 16000), 16000)
    (src / "bad.wav").write_text("nope")
    cmd = [
        sys.executable,
        str(REPO_ROOT / "audio_conversion.py"),
        "--input",
        str(src),
        "--output",
        str(tmp_path / "out"),
        "--sr",
        "16000",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 1
    assert "bad.wav: not a recognised audio file" in res.stderr
    assert "converted 1, skipped 0 (up to date), failed 1" in res.stderr
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert "converted 0, skipped 1 (up to date), failed 1" in res.stderr
    os.remove(src / "bad.wav")
    assert subprocess.run(cmd, capture_output=True, cwd=tmp_path).returncode == 0
    helptext = subprocess.run(
        [sys.executable, str(REPO_ROOT / "audio_conversion.py"), "--help"],
        capture_output=True,
        text=True,
    ).stdout
    for opt in ("--input", "--output", "--sr", "--workers", "--force", "--quiet", "--verbose"):
        assert opt in helptext
    assert "output sample rate in Hz (default: 16000)" in helptext


def test_missing_input_folder_and_output_inside_input(tmp_path, caplog):
    assert _run("--input", tmp_path / "nope", "--output", tmp_path / "out") == 2
    assert "nope' does not exist or is not a folder" in caplog.text
    (tmp_path / "in").mkdir()
    assert _run("--input", tmp_path / "in", "--output", tmp_path / "in" / "out") == 2


def test_input_without_audio_leaves_an_existing_study_untouched(tmp_path, caplog):
    src, out = tmp_path / "in", tmp_path / "out"
    write_audio(src / "a.wav", sine(300, 0.5, 16000), 16000)
    assert _run("--input", src, "--output", out) == 0
    (tmp_path / "mistyped").mkdir()
    (tmp_path / "mistyped" / "notes.txt").write_text("no audio here")
    assert _run("--input", tmp_path / "mistyped", "--output", out) == 1
    assert "no audio files" in caplog.text and "left untouched" in caplog.text
    assert (out / "clean" / "a.wav").is_file() and len(read_manifest(out)) == 1
