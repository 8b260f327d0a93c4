"""Manifest rows: round trip, ownership by kind, schema checks."""

from __future__ import annotations

import pytest

from perceptual_audio.errors import SchemaError
from perceptual_audio.manifest import ManifestRow, read_manifest, replace_kind, write_manifest


def _row(path, kind="clean", **kw):
    base = dict(
        kind=kind,
        source="x.flac",
        parameters={"target_sample_rate": 16000},
        sample_rate=16000,
        duration=1.5,
        sha256="a" * 64,
        source_sha256="b" * 64,
    )
    base.update(kw)
    return ManifestRow.make(path, **base)


def test_round_trip_preserves_every_field(tmp_path):
    rows = [
        _row("clean/día (1).wav", flags=["short", "silent"]),
        _row(
            "degraded/noise/low/día (1).wav",
            kind="degraded",
            source="clean/día (1).wav",
            family="noise",
            level="low",
            seed=7,
            parameters={"snr_db": 30, "noise_rms": 0.01},
        ),
    ]
    write_manifest(tmp_path, rows)
    back = read_manifest(tmp_path)
    assert back == rows
    assert back[0].id == "clean/día (1)" and back[0].flag_set == {"short", "silent"}
    assert back[1].params == {"noise_rms": 0.01, "snr_db": 30} and back[1].seed == 7


def test_replace_kind_keeps_the_other_stage_rows(tmp_path):
    write_manifest(
        tmp_path, [_row("clean/a.wav"), _row("degraded/noise/low/a.wav", kind="degraded", seed=1)]
    )
    replace_kind(tmp_path, "clean", [_row("clean/b.wav")])
    assert [r.path for r in read_manifest(tmp_path)] == ["clean/b.wav", "degraded/noise/low/a.wav"]


def test_missing_manifest_is_empty_and_foreign_header_is_a_schema_error(tmp_path):
    assert read_manifest(tmp_path) == []
    (tmp_path / "manifest.csv").write_text("file,kind\na.wav,clean\n")
    with pytest.raises(SchemaError, match=r"unexpected manifest columns \['file', 'kind'\]"):
        read_manifest(tmp_path)


def test_duplicate_ids_are_refused(tmp_path):
    with pytest.raises(ValueError, match="duplicate manifest ids"):
        write_manifest(tmp_path, [_row("clean/a.wav"), _row("clean/a.wav")])
