"""Stage 3 end to end on synthetic folders written to the contract (docs/CONTRACTS.md)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import CallLog, record_call
from pesq import pesq

from perceptual_audio import metrics
from perceptual_audio import results as results_format
from perceptual_audio.audio_io import load_audio, save_wav
from perceptual_audio.embedding_manifest import EMBEDDING_COLUMNS
from perceptual_audio.files import sha256_file
from perceptual_audio.manifest import (
    DEGRADED_DIR,
    LEVEL_ORDER_KEY,
    ManifestRow,
    level_order_of,
    write_manifest,
)
from perceptual_audio.stages import cli
from perceptual_audio.stages import score as metrics_stage

SR = 16000
SNR_DB = {"low": 30.0, "high": 15.0, "extreme": 5.0}
EMB_COLUMNS = EMBEDDING_COLUMNS  # the embedding stage's own manifest schema


def speech_like(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Formant-shaped harmonics with a syllable envelope: PESQ and STOI treat it as speech."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 110 + 30 * rng.random() + 20 * np.sin(2 * np.pi * 0.8 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(
        (math.exp(-0.5 * ((k * 120 - 700) / 300) ** 2) + 0.1) / k * np.sin(k * phase)
        for k in range(1, 30)
    )
    x = x * np.clip(np.sin(2 * np.pi * (3.5 + rng.random()) * t), 0, None) ** 2
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def fake_embedding(y: np.ndarray) -> np.ndarray:
    """A stand-in model: 64 log band powers of 0.128 s frames, hop 0.064 s, (T, 64)."""
    frames = np.lib.stride_tricks.sliding_window_view(y, 2048)[::1024] * np.hanning(2048)
    spec = np.abs(np.fft.rfft(frames, axis=1)[:, :1024]) ** 2
    return np.log10(spec.reshape(len(frames), 64, 16).sum(axis=2) + 1e-6).astype(np.float32)


def write_model(
    root: Path, model: str, audio_dir: Path, rows: list[ManifestRow], *, skip: tuple[str, ...] = ()
) -> Path:
    """``<model>_embeddings`` with .npy files, manifest.csv and run.json as stage 2 writes."""
    folder = root / f"{model}_embeddings"
    records = []
    for r in rows:
        emb_rel = str(Path(r.path).with_suffix(".npy"))
        if r.path not in skip:
            y, _ = load_audio(audio_dir / r.path)
            e = fake_embedding(y)
            (folder / emb_rel).parent.mkdir(parents=True, exist_ok=True)
            np.save(folder / emb_rel, e)
        records.append(
            {
                "path": r.path,
                "embedding": emb_rel,
                "model": model,
                "variant": "test",
                "n_frames": "",
                "dim": "",
                "hop_seconds": "0.064",
                "audio_sha256": r.sha256,
                "settings": "{}",
                "settings_digest": "x",
                "weights_sha256": "w",
                "status": "ok",
            }
        )
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=EMB_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(records)
    (folder / "run.json").write_text(json.dumps({"available": True}))
    return folder


def write_unavailable(root: Path, model: str) -> None:
    folder = root / f"{model}_embeddings"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(
        json.dumps({"available": False, "reason": "no weights on this machine"})
    )


def make_dataset(
    root: Path, *, n_recordings: int = 3, seconds: float = 2.0, silent: bool = False
) -> tuple[Path, list[ManifestRow]]:
    """test_audio/ with clean recordings and noise at three SNRs, plus the manifest."""
    audio = root / "test_audio"
    rng = np.random.default_rng(42)
    rows = []
    for i in range(n_recordings):
        rel = f"clean/speech/r{i}.wav"
        y = speech_like(seconds, rng)
        if silent and i == 0:
            y = np.zeros_like(y)
        save_wav(audio / rel, y, SR)
        rows.append(
            ManifestRow.make(
                rel,
                kind="clean",
                source=f"speech/r{i}.flac",
                parameters={"sr": SR},
                sample_rate=SR,
                duration=seconds,
                sha256=sha256_file(audio / rel),
                source_sha256="s",
            )
        )
        for level, snr_db in SNR_DB.items():
            noise = rng.standard_normal(len(y)).astype(np.float32)
            power = max(float(np.mean(y**2)), 1e-6)
            noisy = y + noise * np.float32(math.sqrt(power / 10 ** (snr_db / 10)))
            drel = f"degraded/noise/{level}/speech/r{i}.wav"
            save_wav(audio / drel, noisy, SR)
            rows.append(
                ManifestRow.make(
                    drel,
                    kind="degraded",
                    source=rel,
                    family="noise",
                    level=level,
                    parameters={"snr_db": snr_db},
                    seed=i,
                    sample_rate=SR,
                    duration=seconds,
                    sha256=sha256_file(audio / drel),
                    source_sha256="s",
                )
            )
    write_manifest(audio, rows)
    # What stage 2 records beside its files: the severity order of the levels.
    (audio / DEGRADED_DIR / "run.json").write_text(
        json.dumps({LEVEL_ORDER_KEY: level_order_of([("noise", lv) for lv in SNR_DB])})
    )
    return audio, rows


def run(root: Path, results: str = "results", *extra: str) -> int:
    argv = [
        "--audio-dir",
        str(root / "test_audio"),
        "--results-dir",
        str(root / results),
        "--openl3-dir",
        str(root / "openl3_embeddings"),
        "--vggish-dir",
        str(root / "vggish_embeddings"),
        "--cdpam-dir",
        str(root / "cdpam_embeddings"),
        "--bootstrap",
        "200",
        "-q",
        *extra,
    ]
    if "--metrics" not in extra:
        # The reference perceptual metrics have their own stage tests
        # (test_reference_metrics.py); these tests need the classic and neural ones only.
        argv += ["--metrics", "classic,neural"]
    return metrics_stage.main(argv)


def read_table(path: Path) -> pd.DataFrame:
    return results_format.read_pair_table(path)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage3")
    audio, rows = make_dataset(root, n_recordings=5)
    write_model(root, "openl3", audio, rows)
    write_unavailable(root, "cdpam")  # vggish: no folder at all
    return root, rows


@pytest.fixture(scope="module")
def first_run(dataset):
    root, rows = dataset
    code = run(root, "results", "--workers", "1")
    return root, rows, code


# -- the tables --------------------------------------------------------------------------------
def test_pair_table_columns_and_values(first_run):
    root, rows, code = first_run
    assert code == cli.EXIT_MODELS_UNAVAILABLE  # vggish and cdpam skipped, no failed cell
    df = read_table(root / "results" / "pair_metrics.csv")
    values = [
        "pesq_wb",
        "pesq_nb",
        "stoi",
        "estoi",
        "si_sdr",
        "openl3_cosine",
        "openl3_cosine_pooled",
        "openl3_l2",
    ]
    assert list(df.columns[: 4 + len(values)]) == [
        "reference_path",
        "degraded_path",
        "family",
        "level",
        *values,
    ]
    assert [f"{v}_status" for v in values] == list(df.columns[12:20])
    assert not any(c.startswith(("vggish", "cdpam")) for c in df.columns)
    assert len(df) == 15 and set(df["family"]) == {"noise"}
    assert (df[[f"{v}_status" for v in values]] == "ok").all().all()
    # Exact against the libraries on the very files.
    row = df[df.degraded_path == "degraded/noise/high/speech/r1.wav"].iloc[0]
    assert row["reference_path"] == "clean/speech/r1.wav"
    audio = root / "test_audio"
    ref, _ = load_audio(audio / row["reference_path"])
    deg, _ = load_audio(audio / row["degraded_path"])
    assert row["pesq_wb"] == pesq(16000, ref, deg, "wb")
    assert row["pesq_nb"] == metrics.pesq_score(ref, deg, SR, mode="nb")
    assert row["stoi"] == metrics.stoi_score(ref, deg, SR)
    assert row["si_sdr"] == metrics.si_sdr(ref, deg)
    e_ref = np.load(root / "openl3_embeddings/clean/speech/r1.npy")
    e_deg = np.load(root / "openl3_embeddings/degraded/noise/high/speech/r1.npy")
    assert row["openl3_cosine"] == metrics.frame_cosine(e_ref, e_deg)
    assert row["openl3_l2"] == metrics.frame_l2(e_ref, e_deg)


def test_compare_results_script_finds_the_one_changed_cell(first_run, tmp_path, capsys):
    """scripts/compare_results.py (how refactors check 'outputs unchanged'): a folder equals
    itself; one changed SI-SDR cell is the only difference, named with its pair."""
    import importlib.util

    from conftest import REPO_ROOT

    spec = importlib.util.spec_from_file_location(
        "compare_results", REPO_ROOT / "scripts" / "compare_results.py"
    )
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    root, *_ = first_run
    before = root / "results"
    assert compare.main([str(before), str(before)]) == 0
    after = tmp_path / "after"
    shutil.copytree(before, after)
    df = pd.read_csv(after / "pair_metrics.csv")
    df.loc[0, "si_sdr"] += 1e-9
    df.to_csv(after / "pair_metrics.csv", index=False)
    capsys.readouterr()
    assert compare.main([str(before), str(after)]) == 1
    out = capsys.readouterr().out
    assert f"DIFF si_sdr: [('{df.loc[0, 'degraded_path']}'" in out
    assert ", 1 differ" in out.splitlines()[0]


def test_scores_fall_with_severity_and_tables_follow(first_run):
    root, _, _ = first_run
    res = root / "results"
    s = pd.read_csv(res / "summary_by_degradation.csv")
    assert list(s["level"]) == ["low", "high", "extreme"]
    for m in ("pesq_wb", "stoi", "openl3_cosine"):
        assert s[f"{m}_mean"].is_monotonic_decreasing, m
    assert s["openl3_l2_mean"].is_monotonic_increasing
    assert (s["pesq_wb_ci_low"] < s["pesq_wb_mean"]).all()
    mono = pd.read_csv(res / "monotonicity.csv")
    allrows = mono[mono.step == "all"].set_index("metric")
    assert allrows.loc["pesq_wb", "fraction_monotone"] == 1.0
    assert allrows.loc["openl3_l2", "direction"] == "rises"
    corr = pd.read_csv(res / "correlations.csv")
    assert set(corr["scope"]) == {"all", "noise"}
    row = corr[
        (corr.scope == "all") & (corr.metric_x == "openl3_cosine") & (corr.metric_y == "pesq_wb")
    ].iloc[0]
    assert row["n"] == 15 and row["n_recordings"] == 5
    assert row["spearman"] > 0.5
    assert row["spearman_ci_low"] <= row["spearman"] <= row["spearman_ci_high"]
    # classic pairs are there too, once each
    assert len(corr[(corr.scope == "all") & (corr.metric_x == "pesq_wb")]) == 4
    run_json = json.loads((res / "run.json").read_text())
    assert run_json["stage"] == "calculate_metrics"
    assert run_json["models"]["cdpam"] == {
        "available": False,
        "folder": str(root / "cdpam_embeddings"),
        "reason": f"{root / 'cdpam_embeddings' / 'run.json'} says unavailable: "
        "no weights on this machine",
    }
    assert run_json["models"]["vggish"]["available"] is False
    assert run_json["failures"]["pesq_wb"] == 0


@pytest.mark.slow
def test_serial_equals_parallel(first_run):
    root, _, _ = first_run
    assert run(root, "results_parallel", "--workers", "2", "--force") == cli.EXIT_MODELS_UNAVAILABLE
    for name in (
        "pair_metrics.csv",
        "summary_by_degradation.csv",
        "correlations.csv",
        "monotonicity.csv",
    ):
        a = (root / "results" / name).read_bytes()
        b = (root / "results_parallel" / name).read_bytes()
        assert a == b, name


# -- reruns ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_rerun_reuses_and_recomputes_only_new_cells(tmp_path, monkeypatch):
    audio, rows = make_dataset(tmp_path, n_recordings=2)
    write_model(tmp_path, "openl3", audio, rows)
    assert run(tmp_path, "results", "--workers", "1") == cli.EXIT_MODELS_UNAVAILABLE
    first = (tmp_path / "results" / "pair_metrics.csv").read_bytes()

    calls = CallLog(tmp_path / "si_sdr_calls", monkeypatch)
    # One call per pair whose classic cells are computed (in the stage's worker process).
    group = metrics.AUDIO_GROUPS["si_sdr"]
    monkeypatch.setitem(
        metrics.AUDIO_GROUPS, "si_sdr", dataclasses.replace(group, compute=_counted_si_sdr)
    )
    assert run(tmp_path, "results", "--workers", "1") == cli.EXIT_MODELS_UNAVAILABLE
    assert len(calls) == 0
    assert (tmp_path / "results" / "pair_metrics.csv").read_bytes() == first
    # Nothing changed, so run.json still records the run that scored the pairs.
    assert json.loads((tmp_path / "results" / "run.json").read_text())["pairs_scored"] == 6

    # A new model: only its cells are computed; the classic cells are reused.
    write_model(tmp_path, "vggish", audio, rows)
    assert run(tmp_path, "results", "--workers", "1") == cli.EXIT_MODELS_UNAVAILABLE
    assert len(calls) == 0
    df = read_table(tmp_path / "results" / "pair_metrics.csv")
    assert (df["vggish_cosine_status"] == "ok").all()
    assert df["vggish_cosine"].tolist() == df["openl3_cosine"].tolist()  # same stand-in model

    # One degraded file changes: only its pair's classic cells are recomputed.
    changed = "degraded/noise/low/speech/r1.wav"
    y, _ = load_audio(audio / changed)
    save_wav(audio / changed, y * np.float32(0.5), SR)
    assert run(tmp_path, "results", "--workers", "1") == cli.EXIT_FAILED  # stale embedding
    assert len(calls) == 1
    # --force recomputes everything.
    run(tmp_path, "results", "--workers", "1", "--force")
    assert len(calls) == 1 + 6


# -- failures ----------------------------------------------------------------------------------
@pytest.mark.slow  # each stage-3 run spawns its worker process (2-5 s)
def test_failures_are_nan_with_status_never_dropped(tmp_path):
    audio, rows = make_dataset(tmp_path, n_recordings=2, silent=True)
    write_model(tmp_path, "openl3", audio, rows, skip=("degraded/noise/low/speech/r1.wav",))
    assert run(tmp_path, "results", "--workers", "1") == cli.EXIT_FAILED
    df = read_table(tmp_path / "results" / "pair_metrics.csv")
    assert len(df) == 6
    silent = df[df.reference_path == "clean/speech/r0.wav"]
    assert silent["pesq_wb"].isna().all()
    assert (
        silent["pesq_wb_status"] == "the reference signal is digital silence (all samples are 0)"
    ).all()
    assert silent["stoi"].isna().all()
    missing = df[df.degraded_path == "degraded/noise/low/speech/r1.wav"].iloc[0]
    assert math.isnan(missing["openl3_cosine"])
    expected = tmp_path / "openl3_embeddings" / "degraded/noise/low/speech/r1.npy"
    assert missing["openl3_cosine_status"] == f"missing openl3 embedding {expected}"
    assert missing["pesq_wb_status"] == "ok"
    run_json = json.loads((tmp_path / "results" / "run.json").read_text())
    assert run_json["failures"]["pesq_wb"] == 3
    assert run_json["failures"]["openl3_cosine"] == 1
    # Only the missing file is an input failure (exit 1); silence makes PESQ undefined.
    assert run_json["input_failures"] == {
        "openl3_cosine": 1,
        "openl3_cosine_pooled": 1,
        "openl3_l2": 1,
    }
    assert missing["openl3_key"] == "" and silent["pesq_wb_key"].str.len().min() == 16
    s = pd.read_csv(tmp_path / "results" / "summary_by_degradation.csv")
    assert (s["n_pairs"] == 2).all() and (s["pesq_wb_n"] == 1).all()


@pytest.mark.slow  # each stage-3 run spawns its worker process (2-5 s)
def test_undefined_measurements_do_not_fail_the_run(tmp_path):
    audio, rows = make_dataset(tmp_path, n_recordings=2, silent=True)
    write_model(tmp_path, "openl3", audio, rows)
    assert run(tmp_path, "results", "--workers", "1") == cli.EXIT_MODELS_UNAVAILABLE
    run_json = json.loads((tmp_path / "results" / "run.json").read_text())
    assert run_json["failures"]["stoi"] == 3 and run_json["input_failures"] == {}


@pytest.mark.slow  # each stage-3 run spawns its worker process (2-5 s)
def test_missing_embedding_is_retried_on_rerun(tmp_path):
    audio, rows = make_dataset(tmp_path, n_recordings=1)
    write_model(tmp_path, "openl3", audio, rows, skip=("degraded/noise/high/speech/r0.wav",))
    assert run(tmp_path, "results", "--workers", "1") == cli.EXIT_FAILED
    write_model(tmp_path, "openl3", audio, rows)
    assert run(tmp_path, "results", "--workers", "1") == cli.EXIT_MODELS_UNAVAILABLE
    df = read_table(tmp_path / "results" / "pair_metrics.csv")
    assert (df["openl3_cosine_status"] == "ok").all()
    run_json = json.loads((tmp_path / "results" / "run.json").read_text())
    assert run_json["pairs_scored"] == 1  # rewritten but identical files keep their keys


@pytest.mark.slow  # each stage-3 run spawns its worker process (2-5 s)
def test_stale_embedding_is_reported(tmp_path):
    audio, rows = make_dataset(tmp_path, n_recordings=1)
    write_model(tmp_path, "openl3", audio, rows)
    changed = "degraded/noise/high/speech/r0.wav"
    y, _ = load_audio(audio / changed)
    save_wav(audio / changed, y * np.float32(0.9), SR)
    run(tmp_path, "results", "--workers", "1")
    df = read_table(tmp_path / "results" / "pair_metrics.csv").set_index("degraded_path")
    assert df.loc[changed, "openl3_cosine_status"].startswith(
        f"openl3 embedding of {changed} is stale: made from audio sha256"
    )
    assert df.loc["degraded/noise/low/speech/r0.wav", "openl3_cosine_status"] == "ok"


def test_missing_manifest_is_a_clear_error(tmp_path, caplog):
    assert run(tmp_path) == cli.EXIT_USAGE
    assert (
        f"--audio-dir {tmp_path / 'test_audio'}: no such folder; run audio_conversion.py "
        f"--output {tmp_path / 'test_audio'} and extract_embeddings.py --input-dir "
        f"{tmp_path / 'test_audio'} first, or fix the path" in caplog.text
    )


def test_bad_command_line_exits_2(tmp_path):
    from perceptual_audio import stats

    assert metrics_stage.DEFAULT_BOOTSTRAP == stats.N_BOOTSTRAP
    with pytest.raises(SystemExit) as e:
        metrics_stage.main(["--bootstrap", "-1"])
    assert e.value.code == cli.EXIT_USAGE
    with pytest.raises(SystemExit):
        metrics_stage.main(["--pesq-nb-rate", "11025"])


# -- reference numbers through the whole stage ----------------------------------------------
@pytest.mark.slow  # each stage-3 run spawns its worker process (2-5 s)
def test_stage_reproduces_pesq_reference(tmp_path, shared_data):
    folder = shared_data / "pesq_reference"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    audio = tmp_path / "test_audio"
    (audio / "clean").mkdir(parents=True)
    (audio / "degraded/noise/high").mkdir(parents=True)
    shutil.copy(folder / "speech.wav", audio / "clean/speech.wav")
    shutil.copy(folder / "speech_bab_0dB.wav", audio / "degraded/noise/high/speech.wav")
    rows = [
        ManifestRow.make(
            "clean/speech.wav",
            kind="clean",
            source="speech.wav",
            parameters={},
            sample_rate=SR,
            duration=3.1,
            sha256=sha256_file(audio / "clean/speech.wav"),
            source_sha256="",
        ),
        ManifestRow.make(
            "degraded/noise/high/speech.wav",
            kind="degraded",
            source="clean/speech.wav",
            family="noise",
            level="high",
            parameters={},
            seed=0,
            sample_rate=SR,
            duration=3.1,
            sha256=sha256_file(audio / "degraded/noise/high/speech.wav"),
            source_sha256="",
        ),
    ]
    write_manifest(audio, rows)
    run(tmp_path, "results", "--workers", "1")  # the defaults reproduce python-pesq's test
    row = read_table(tmp_path / "results" / "pair_metrics.csv").iloc[0]
    assert row["pesq_wb"] == 1.0832337141036987
    assert row["pesq_nb"] == 1.6072081327438354
    run(tmp_path, "results8k", "--workers", "1", "--pesq-nb-rate", "8000")
    row = read_table(tmp_path / "results8k" / "pair_metrics.csv").iloc[0]
    assert row["pesq_wb"] == 1.0832337141036987
    assert row["pesq_nb"] == 1.6654431819915771  # resampled to 8 kHz with soxr VHQ first


# -- CDPAM ---------------------------------------------------------------------------------------
@pytest.mark.slow  # each stage-3 run spawns its worker process (2-5 s)
def test_cdpam_distance_from_stored_clip_embeddings(tmp_path):
    pytest.importorskip("cdpam")
    from perceptual_audio.embeddings.cdpam import CDPAMEmbedder

    audio, rows = make_dataset(tmp_path, n_recordings=1)
    folder = write_model(tmp_path, "cdpam", audio, rows)
    rng = np.random.default_rng(0)
    clips = {}
    for r in rows:
        c = rng.standard_normal(512).astype(np.float32)
        clips[r.path] = c / np.linalg.norm(c)
        np.save(folder / str(Path(r.path).with_suffix(".clip.npy")), clips[r.path])
    run(tmp_path, "results", "--workers", "1")
    df = read_table(tmp_path / "results" / "pair_metrics.csv")
    assert (df["cdpam_distance_status"] == "ok").all()
    model = CDPAMEmbedder()
    for _, row in df.iterrows():
        expected = float(
            model.distance_from_embeddings(
                clips[row["reference_path"]], clips[row["degraded_path"]]
            )
        )
        assert row["cdpam_distance"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow  # each stage-3 run spawns its worker process (2-5 s)
def test_pairs_whose_degradation_was_not_applied_stay_out_of_the_statistics(tmp_path):
    audio, rows = make_dataset(tmp_path, n_recordings=2)
    # As stage 2 records a silent input: left unchanged, flagged, applied false.
    rows = [
        dataclasses.replace(r, flags="silent", parameters=json.dumps({"applied": False}))
        if r.path == "degraded/noise/low/speech/r0.wav"
        else r
        for r in rows
    ]
    write_manifest(audio, rows)
    write_model(tmp_path, "openl3", audio, rows)
    run(tmp_path, "results", "--workers", "1")
    df = read_table(tmp_path / "results" / "pair_metrics.csv")
    assert len(df) == 6  # still scored and listed
    row = df[df.degraded_path == "degraded/noise/low/speech/r0.wav"].iloc[0]
    assert row["degradation_applied"] == "false" and row["flags"] == "silent"
    s = pd.read_csv(tmp_path / "results" / "summary_by_degradation.csv")
    n = dict(zip(s["level"], s["n_pairs"], strict=True))
    assert n == {"low": 1, "high": 2, "extreme": 2}
    run_json = json.loads((tmp_path / "results" / "run.json").read_text())
    assert run_json["n_pairs_not_applied"] == 1


@pytest.mark.slow
def test_models_option_scores_only_the_listed_models(dataset, tmp_path):
    root, _ = dataset
    assert run(root, "results_openl3_only", "--workers", "1", "--models", "openl3") == 0
    df = read_table(root / "results_openl3_only" / "pair_metrics.csv")
    assert "openl3_cosine" in df.columns and not any(c.startswith("cdpam") for c in df.columns)
    models = json.loads((root / "results_openl3_only" / "run.json").read_text())["models"]
    assert models["vggish"] == {
        "available": False,
        "reason": "not requested (--models)",
        "folder": str(root / "vggish_embeddings"),
    }
    assert run(root, "results_none", "--workers", "1", "--models", "none") == 0
    df = read_table(root / "results_none" / "pair_metrics.csv")
    assert not any(c.startswith(("openl3", "vggish", "cdpam")) for c in df.columns)
    assert run(root, "results_bad", "--models", "openl3,mfcc") == 2


_REAL_SI_SDR = metrics.AUDIO_GROUPS["si_sdr"].compute


def _counted_si_sdr(ref, deg, sr, settings):
    record_call()
    return _REAL_SI_SDR(ref, deg, sr, settings)


def _segfault(ref, deg, sr, settings):
    os.kill(os.getpid(), signal.SIGSEGV)


@pytest.mark.slow  # every crashed pair is rescored one metric group per process (~40 s)
def test_a_metric_that_crashes_loses_only_its_cells(tmp_path, monkeypatch, caplog):
    """A native crash (here SI-SDR's process killed by SIGSEGV, as PESQ's C library does on a
    long pair) fails that metric of the pair, named with the likely cause; every other cell is
    computed, with one worker as with two."""
    audio, rows = make_dataset(tmp_path, n_recordings=1)
    write_model(tmp_path, "openl3", audio, rows)
    group = metrics.AUDIO_GROUPS["si_sdr"]
    monkeypatch.setitem(
        metrics.AUDIO_GROUPS, "si_sdr", dataclasses.replace(group, compute=_segfault)
    )
    # Each crashed pair is scored again one metric per process: few metrics keep it short.
    few = ("--metrics", "si_sdr,stoi,pesq_wb,openl3")
    assert run(tmp_path, "results", "--workers", "1", *few) == cli.EXIT_FAILED
    df = read_table(tmp_path / "results" / "pair_metrics.csv")
    assert len(df) == 3
    assert df["si_sdr"].isna().all()
    assert (
        df["si_sdr_status"].tolist()
        == [
            "crashed: SI-SDR killed its worker process (the worker process died (SIGSEGV)) on this "
            "2.0 s pair; native code failed on input it cannot handle (length, level, rate); the "
            "pair's other metrics were computed"
        ]
        * 3
    )
    for col in ("pesq_wb", "stoi", "openl3_cosine"):
        assert (df[f"{col}_status"] == "ok").all(), col
    run_json = json.loads((tmp_path / "results" / "run.json").read_text())
    assert run_json["input_failures"] == {"si_sdr": 3}
    # The crash is retried on the next run; once the metric works, it is filled in.
    monkeypatch.undo()
    assert run(tmp_path, "results", "--workers", "1", *few) == cli.EXIT_OK
    assert (read_table(tmp_path / "results" / "pair_metrics.csv")["si_sdr_status"] == "ok").all()


def test_pesq_refuses_pairs_longer_than_p862_allows():
    rng = np.random.default_rng(0)
    y = np.tile(speech_like(2.0, rng), 16)  # 32 s
    m = metrics.measure(metrics.pesq_score, y, y, SR)
    assert math.isnan(m.value)
    assert m.status == (
        "PESQ is specified for recordings of 8-30 s (ITU-T P.862.3, 7.1) and this pair is "
        "32.0 s; cut it into utterances of at most 30 s to score it with PESQ"
    )
    assert metrics.measure(metrics.pesq_score, y[: 29 * SR], y[: 29 * SR], SR).ok
