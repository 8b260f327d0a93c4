"""The degradation half of stage 2: outputs, manifest rows, determinism, incremental reruns."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from perceptual_audio import degradations as deg
from perceptual_audio.audio_io import load_audio, save_wav
from perceptual_audio.errors import ParameterError
from perceptual_audio.files import sha256_file
from perceptual_audio.manifest import (
    COLUMNS,
    ManifestRow,
    read_manifest,
    replace_kind,
    write_manifest,
)
from perceptual_audio.stages import degrade as stage

SR = 16000


def tone(seconds: float, freq: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def add_clean(root: Path, files: dict[str, np.ndarray]) -> None:
    """Write clean WAVs and their manifest rows as stage 1 would (keeps existing clean rows)."""
    rows = {r.path: r for r in read_manifest(root) if r.kind == "clean"}
    for rel, x in files.items():
        path = f"clean/{rel}"
        save_wav(root / path, x, SR)
        rows[path] = ManifestRow.make(
            path,
            kind="clean",
            source=rel.replace(".wav", ".flac"),
            parameters={"sr": SR},
            sample_rate=SR,
            duration=len(x) / SR,
            sha256=sha256_file(root / path),
            source_sha256="0" * 64,
        )
    replace_kind(root, "clean", list(rows.values()))


def remove_clean(root: Path, rel: str) -> None:
    (root / "clean" / rel).unlink()
    rows = [r for r in read_manifest(root) if r.kind == "clean" and r.path != f"clean/{rel}"]
    replace_kind(root, "clean", rows)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "test_audio"
    add_clean(
        r,
        {
            "speech/a.wav": tone(0.6, 220, 1),
            "speech/b.wav": tone(0.5, 330, 2),
            "music/c (1).wav": tone(0.4, 440, 3),
        },
    )
    return r


def run(root: Path, *extra: str) -> int:
    args = stage.build_parser().parse_args(
        ["--input-dir", str(root), "--workers", "1", "--quiet", *extra]
    )
    return stage.run_degradations(stage.DegradeSettings.from_args(args))


def degraded_rows(root: Path) -> dict[str, ManifestRow]:
    return {r.path: r for r in read_manifest(root) if r.kind == "degraded"}


def mtimes(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_mtime_ns
        for p in (root / "degraded").rglob("*.wav")
    }


def test_default_run_writes_every_default_level_with_complete_rows(root):
    assert run(root) == 0
    rows = degraded_rows(root)
    assert len(rows) == 3 * 3 * 3  # 3 files x (noise, bitrate, compression) x 3 levels
    clean = {r.path: r for r in read_manifest(root) if r.kind == "clean"}
    for path, row in rows.items():
        assert (root / path).is_file() and sha256_file(root / path) == row.sha256
        assert row.id == path[:-4] and row.kind == "degraded"
        assert path == f"degraded/{row.family}/{row.level}/{row.source[len('clean/') :]}"
        assert row.source_sha256 == clean[row.source].sha256
        # Only a degradation that draws random values records (and depends on) a seed.
        drawn = deg.derive_seed(0, row.family, row.level, row.source)
        assert row.seed == (drawn if row.family == "noise" else None)
        y, sr = load_audio(root / path)
        x, _ = load_audio(root / row.source)
        assert sr == row.sample_rate == SR and len(y) == len(x)
        assert row.duration == pytest.approx(len(x) / SR, abs=1e-6)
        p = row.params
        assert p["params"] == deg.FAMILIES[row.family].levels[row.level].as_dict()
        assert p["seed"] == row.seed and p["details"]["applied"] is True
    noise = rows["degraded/noise/high/speech/a.wav"].params["details"]
    assert noise["snr_db_achieved"] == pytest.approx(15.0, abs=0.1)
    mp3 = rows["degraded/bitrate/extreme/speech/a.wav"].params["details"]
    assert mp3["codec_delay_samples"] >= 0 and mp3["encoded_bytes"] > 0
    run_json = json.loads((root / "degraded" / "run.json").read_text())
    assert run_json["counts"]["written"] == 27 and run_json["seed"] == 0
    assert [s["family"] for s in run_json["parameters"]["selection"]].count("noise") == 3
    with open(root / "manifest.csv", encoding="utf-8") as f:
        assert tuple(f.readline().strip().split(",")) == COLUMNS


def test_same_seed_gives_identical_files_other_seed_other_noise(tmp_path, root):
    other = tmp_path / "copy"
    add_clean(
        other,
        {
            "speech/a.wav": tone(0.6, 220, 1),
            "speech/b.wav": tone(0.5, 330, 2),
            "music/c (1).wav": tone(0.4, 440, 3),
        },
    )
    assert run(root, "--degradations", "noise:high,bitrate:low") == 0
    assert run(other, "--degradations", "noise:high,bitrate:low") == 0
    a, b = degraded_rows(root), degraded_rows(other)
    assert {p: r.sha256 for p, r in a.items()} == {p: r.sha256 for p, r in b.items()}
    assert run(other, "--degradations", "noise:high,bitrate:low", "--seed", "1") == 0
    c = degraded_rows(other)
    noise = "degraded/noise/high/speech/a.wav"
    assert c[noise].sha256 != a[noise].sha256 and c[noise].seed != a[noise].seed
    # The MP3 codec draws nothing: its output is the same under any seed.
    mp3 = "degraded/bitrate/low/speech/a.wav"
    assert np.array_equal(load_audio(root / mp3)[0], load_audio(other / mp3)[0])


def test_rerun_redoes_only_what_changed(tmp_path, root):
    sel = "noise:low,compression:high"
    assert run(root, "--degradations", sel) == 0
    before, rows_before = mtimes(root), degraded_rows(root)

    # Nothing changed: nothing rewritten, run.json and manifest included (run.json keeps
    # describing the run that made the files).
    stamps = {p: (root / p).stat().st_mtime_ns for p in ("degraded/run.json", "manifest.csv")}
    assert run(root, "--degradations", sel) == 0
    assert mtimes(root) == before
    assert {p: (root / p).stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((root / "degraded/run.json").read_text())["counts"]["written"] == 6

    # A new level: only its files are written.
    assert run(root, "--degradations", sel + ",noise:extreme") == 0
    after = mtimes(root)
    assert {k: v for k, v in after.items() if k in before} == before
    assert sorted(set(after) - set(before)) == [
        "degraded/noise/extreme/music/c (1).wav",
        "degraded/noise/extreme/speech/a.wav",
        "degraded/noise/extreme/speech/b.wav",
    ]

    # A changed parameter (JSON file) regenerates exactly that level.
    spec = tmp_path / "sel.json"
    spec.write_text(
        json.dumps({"noise": {"low": {"snr_db": 20}, "extreme": {}}, "compression": ["high"]})
    )
    assert run(root, "--degradations", str(spec)) == 0
    changed = {k for k, v in mtimes(root).items() if after.get(k) != v}
    assert changed == {k for k in after if k.startswith("degraded/noise/low/")}
    row = degraded_rows(root)["degraded/noise/low/speech/a.wav"]
    assert row.params["params"]["snr_db"] == 20.0
    assert row.params["details"]["snr_db_achieved"] == pytest.approx(20.0, abs=0.1)

    # A changed clean file regenerates only its own outputs; an altered output is redone.
    stamp = mtimes(root)
    add_clean(root, {"speech/b.wav": tone(0.5, 300, 9)})
    (root / "degraded/compression/high/speech/a.wav").write_bytes(b"garbage")
    assert run(root, "--degradations", str(spec)) == 0
    changed = {k for k, v in mtimes(root).items() if stamp.get(k) != v}
    assert changed == {
        "degraded/noise/low/speech/b.wav",
        "degraded/noise/extreme/speech/b.wav",
        "degraded/compression/high/speech/b.wav",
        "degraded/compression/high/speech/a.wav",
    }
    rows = degraded_rows(root)
    assert all(sha256_file(root / p) == r.sha256 for p, r in rows.items())

    # --force rewrites everything.
    stamp = mtimes(root)
    assert run(root, "--degradations", str(spec), "--force") == 0
    assert all(mtimes(root)[k] != v for k, v in stamp.items())
    assert rows_before  # the first run's rows existed


def test_removed_selections_and_files_are_removed(root):
    assert run(root, "--degradations", "noise:low,noise:high,bitrate:low") == 0
    assert run(root, "--degradations", "noise:low") == 0
    assert (
        sorted(degraded_rows(root))
        == sorted(mtimes(root))
        == [
            "degraded/noise/low/music/c (1).wav",
            "degraded/noise/low/speech/a.wav",
            "degraded/noise/low/speech/b.wav",
        ]
    )
    assert not (root / "degraded/bitrate").exists()  # empty folders pruned
    remove_clean(root, "speech/b.wav")
    assert run(root, "--degradations", "noise:low") == 0
    assert (
        sorted(degraded_rows(root))
        == sorted(mtimes(root))
        == ["degraded/noise/low/music/c (1).wav", "degraded/noise/low/speech/a.wav"]
    )
    # Clean rows are untouched by stage 2.
    assert len([r for r in read_manifest(root) if r.kind == "clean"]) == 2


def test_adding_a_file_does_not_change_other_files_noise(root):
    assert run(root, "--degradations", "noise,pink_noise:low") == 0
    before = {p: r.sha256 for p, r in degraded_rows(root).items()}
    add_clean(root, {"speech/new.wav": tone(0.5, 500, 4)})
    assert run(root, "--degradations", "noise,pink_noise:low") == 0
    after = {p: r.sha256 for p, r in degraded_rows(root).items()}
    assert {p: after[p] for p in before} == before
    assert len(after) == len(before) + 4


def test_babble_mixes_other_recordings_and_records_them(root):
    assert run(root, "--degradations", "babble:high") == 0
    row = degraded_rows(root)["degraded/babble/high/speech/a.wav"]
    talkers = row.params["details"]["talkers"]
    assert sorted(t["source"] for t in talkers) == ["clean/music/c (1).wav", "clean/speech/b.wav"]
    assert row.params["details"]["snr_db_achieved"] == pytest.approx(15.0, abs=0.1)
    # A talker that changes changes the babble of the files it is mixed into.
    stamp = mtimes(root)
    add_clean(root, {"speech/b.wav": tone(0.5, 300, 9)})
    assert run(root, "--degradations", "babble:high") == 0
    changed = {k for k, v in mtimes(root).items() if stamp.get(k) != v}
    assert changed == {
        "degraded/babble/high/speech/a.wav",
        "degraded/babble/high/speech/b.wav",
        "degraded/babble/high/music/c (1).wav",
    }


def test_silent_and_short_clean_files_are_flagged(root):
    add_clean(
        root, {"silence.wav": np.zeros(SR // 2, np.float32), "tiny.wav": tone(0.02, 300, 5)[:200]}
    )
    assert run(root, "--degradations", "noise:low,bitrate:low") == 0
    rows = degraded_rows(root)
    silent = rows["degraded/noise/low/silence.wav"]
    assert silent.flag_set == {"silent"} and silent.params["details"]["applied"] is False
    assert not np.any(load_audio(root / silent.path)[0])
    assert rows["degraded/bitrate/low/tiny.wav"].flag_set == {"short"}
    # Flags of the clean row (stage 1: short < 0.5 s, silent) carry over to its degradations.
    assert rows["degraded/noise/low/tiny.wav"].flag_set == set()
    rows_clean = [r for r in read_manifest(root) if r.kind == "clean"]
    rows_clean = [
        dataclasses.replace(r, flags="short") if r.path == "clean/tiny.wav" else r
        for r in rows_clean
    ]
    replace_kind(root, "clean", rows_clean)
    assert run(root, "--degradations", "noise:low,bitrate:low", "--force") == 0
    assert degraded_rows(root)["degraded/noise/low/tiny.wav"].flag_set == {"short"}
    assert len(load_audio(root / "degraded/bitrate/low/tiny.wav")[0]) == 200


def test_a_clean_file_changed_after_stage_1_is_refused(root, caplog):
    (root / "clean/speech/b.wav").write_bytes(b"RIFF not really a wav")
    assert run(root, "--degradations", "noise:low") == 1
    assert "clean/speech/b.wav: changed since audio_conversion.py wrote it" in caplog.text
    assert sorted(degraded_rows(root)) == [
        "degraded/noise/low/music/c (1).wav",
        "degraded/noise/low/speech/a.wav",
    ]


def test_no_clean_rows_removes_nothing(root, caplog):
    assert run(root, "--degradations", "noise:low") == 0
    rows = [r for r in read_manifest(root) if r.kind == "degraded"]
    write_manifest(root, rows)  # e.g. stage 1 pointed at a wrong folder
    assert run(root, "--degradations", "noise:low") == 1
    assert "lists no clean files" in caplog.text
    assert len(list((root / "degraded").rglob("*.wav"))) == 3


def test_a_failing_file_is_reported_and_the_others_are_written(root):
    bad = root / "clean/speech/b.wav"
    bad.write_bytes(b"RIFF not really a wav")  # and the manifest agrees: a decode failure
    rows = [
        dataclasses.replace(r, sha256=sha256_file(bad)) if r.path == "clean/speech/b.wav" else r
        for r in read_manifest(root)
    ]
    write_manifest(root, rows)
    assert run(root, "--degradations", "noise:low") == 1
    assert sorted(degraded_rows(root)) == [
        "degraded/noise/low/music/c (1).wav",
        "degraded/noise/low/speech/a.wav",
    ]
    failures = json.loads((root / "degraded/run.json").read_text())["failures"]
    assert len(failures) == 1 and failures[0]["file"] == "degraded/noise/low/speech/b.wav"
    assert "clean/speech/b.wav" in failures[0]["error"]


def test_bad_selection_is_a_usage_error(root, caplog):
    assert run(root, "--degradations", "noise:medium") == 2
    assert "family 'noise' has no level 'medium'" in caplog.text
    assert not (root / "degraded").exists()


def test_missing_manifest_fails_with_a_hint(tmp_path, caplog):
    assert run(tmp_path / "nothing") == 2  # a bad --input-dir is a bad command line
    assert (
        f"--input-dir {tmp_path / 'nothing'}: no such folder; run audio_conversion.py "
        f"--input <your audio folder> --output {tmp_path / 'nothing'} first" in caplog.text
    )
    assert run(tmp_path) == 2
    assert f"--input-dir {tmp_path} holds no manifest.csv; run audio_conversion.py" in caplog.text


def test_foreign_manifest_fails_with_the_schema_message(tmp_path, caplog):
    (tmp_path / "manifest.csv").write_text("file,score\na.wav,1\n")
    assert run(tmp_path) == 1
    assert "unexpected manifest columns ['file', 'score']" in caplog.text


def test_parse_selection_forms(tmp_path):
    names = lambda levels: [f"{lv.family}:{lv.name}" for lv in levels]  # noqa: E731
    assert names(stage.parse_selection("default")) == [
        f"{f}:{lv}" for f in ("noise", "bitrate", "compression") for lv in deg.STANDARD_LEVELS
    ]
    assert names(stage.parse_selection("compression:high, noise ,bitrate:low")) == [
        "noise:low",
        "noise:high",
        "noise:extreme",
        "bitrate:low",
        "compression:high",
    ]
    assert len(stage.parse_selection("all")) == 3 * len(deg.FAMILIES)
    toml = tmp_path / "sel.toml"
    toml.write_text('gsm = "all"\n[noise.very_low]\nsnr_db = 40\ncolor = "pink"\n')
    levels = stage.parse_selection(str(toml))
    assert names(levels) == ["noise:very_low", "gsm:low", "gsm:high", "gsm:extreme"]
    assert levels[0].as_dict() == {"color": "pink", "snr_db": 40.0}
    with pytest.raises(ParameterError, match="unknown degradation family 'mp3'"):
        stage.parse_selection("mp3")
    with pytest.raises(ParameterError, match="does not exist"):
        stage.parse_selection(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"noise": ["loud"]}')
    with pytest.raises(ParameterError, match="family 'noise' has no level 'loud'"):
        stage.parse_selection(str(bad))
    bad.write_text('{"noise": {"x": {"snr_db": "a"}}}')
    with pytest.raises(ParameterError, match=r"noise:x: parameter 'snr_db' must be a number"):
        stage.parse_selection(str(bad))


def test_help_lists_every_family_and_level_with_units():
    text = stage.build_parser().format_help()
    for option in (
        "--input-dir",
        "--degradations",
        "--seed",
        "--workers",
        "--force",
        "--quiet",
        "--verbose",
    ):
        assert option in text
    for fam in deg.FAMILIES.values():
        assert f"  {fam.name}" in text
    assert "snr_db=30.0 dB" in text and "rt60_seconds=0.3 s" in text
    assert stage.describe_families() == deg.describe_families()


def test_parallel_workers_give_the_same_bytes(tmp_path, root):
    other = tmp_path / "parallel"
    add_clean(
        other,
        {
            "speech/a.wav": tone(0.6, 220, 1),
            "speech/b.wav": tone(0.5, 330, 2),
            "music/c (1).wav": tone(0.4, 440, 3),
        },
    )
    sel = "noise:extreme,reverb:low"
    assert run(root, "--degradations", sel) == 0
    args = stage.build_parser().parse_args(
        ["--input-dir", str(other), "--workers", "2", "--quiet", "--degradations", sel]
    )
    assert stage.run_degradations(stage.DegradeSettings.from_args(args)) == 0
    assert {p: r.sha256 for p, r in degraded_rows(root).items()} == {
        p: r.sha256 for p, r in degraded_rows(other).items()
    }
    assert not math.isnan(
        json.loads((other / "degraded/run.json").read_text())["timings_seconds"]["total"]
    )
