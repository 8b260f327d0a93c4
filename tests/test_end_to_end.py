"""The four scripts run as a user runs them (subprocesses, DESIGN.md section 2 command lines).

A tiny generated input set goes through every stage with CDPAM (its real weights ship with the
``cdpam`` package) and OpenL3 + VGGish on *synthetic* official-format weight files in a
``--weights-dir``. The synthetic weights prove that the whole chain runs; their numbers mean
nothing and are never shown as results.

The official VGGish files carry a sha256 prefix in their names, which synthetic bytes cannot
match: the subprocesses get a ``sitecustomize`` that drops the expected prefix, the only thing
patched. A second run without weights checks that the pipeline degrades gracefully.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO_ROOT, write_audio

import perceptual_audio.embeddings.vggish as V
from perceptual_audio.manifest import read_manifest

#: Left out of ``make test-fast``: the whole pipeline on the bundled audio (minutes).
pytestmark = pytest.mark.slow

sys.path.insert(0, str(REPO_ROOT / "tests"))
from openl3_synthetic import make_weights, write_keras_h5  # noqa: E402

SR = 16000
DEGRADATIONS = "noise:low,noise:extreme,bitrate:extreme"


def _speechlike(seconds: float, f0_hz: float, rng: np.random.Generator) -> np.ndarray:
    """Voiced harmonic bursts with syllable-rate gaps: PESQ/STOI see 'speech'."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = f0_hz * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    y = sum((0.7**k) * np.sin(k * phase) for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.5
    y = y * envelope + 0.002 * rng.standard_normal(len(t))
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


def _script(name: str, *args: str, env: dict, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / name), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=900,
    )


def _synthetic_weights_dir(root):
    wdir = root / "weights"
    write_keras_h5(wdir / "openl3_audio_mel256_music-v0_4_0.h5.gz", make_weights(seed=1))
    rng = np.random.default_rng(3)
    sd = {
        k: torch.from_numpy((0.05 * rng.standard_normal(shape)).astype(np.float32))
        for k, shape in V.TORCHVGGISH_MODEL_SHAPES.items()
    }
    torch.save(sd, wdir / V.MODEL_WEIGHTS.filename)
    hook = root / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        textwrap.dedent("""
        # Test hook: synthetic VGGish bytes cannot match the official sha256 prefix.
        import dataclasses
        import perceptual_audio.embeddings.vggish as V
        V.checkpoint.MODEL_WEIGHTS = dataclasses.replace(V.MODEL_WEIGHTS, sha256_prefix=None)
    """)
    )
    return wdir, hook


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Run all four stages once on generated audio; return the working folder and outputs."""
    work = tmp_path_factory.mktemp("e2e")
    rng = np.random.default_rng(7)
    write_audio(work / "original_audio" / "talker a.wav", _speechlike(2.5, 120, rng), 22050)
    stereo = np.stack([_speechlike(2.5, 210, rng), _speechlike(2.5, 210, rng)], 1)
    write_audio(work / "original_audio" / "sub (2)" / "talker_b.flac", stereo, 44100)
    wdir, hook = _synthetic_weights_dir(work)
    env = dict(
        os.environ,
        PERCEPTUAL_AUDIO_CACHE=str(work / "cache"),
        PERCEPTUAL_AUDIO_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([str(hook), str(REPO_ROOT)]),
    )
    runs = {}
    runs["convert"] = _script(
        "audio_conversion.py",
        "--input",
        "original_audio",
        "--output",
        "test_audio",
        "--sr",
        "16000",
        env=env,
        cwd=work,
    )
    runs["extract"] = _script(
        "extract_embeddings.py",
        "--input-dir",
        "test_audio",
        "--openl3-dir",
        "openl3_embeddings",
        "--vggish-dir",
        "vggish_embeddings",
        "--degradations",
        DEGRADATIONS,
        "--weights-dir",
        str(wdir),
        "--openl3-hop",
        "0.5",
        env=env,
        cwd=work,
    )
    runs["metrics"] = _script(
        "calculate_metrics.py",
        "--audio-dir",
        "test_audio",
        "--openl3-dir",
        "openl3_embeddings",
        "--vggish-dir",
        "vggish_embeddings",
        "--results-dir",
        "results",
        "--bootstrap",
        "200",
        env=env,
        cwd=work,
    )
    runs["visualize"] = _script(
        "visualize_results.py",
        "--results-dir",
        "results",
        "--output-dir",
        "results/visualizations",
        env=env,
        cwd=work,
    )
    return work, runs


def test_every_stage_exits_zero(pipeline):
    _, runs = pipeline
    for name, res in runs.items():
        assert res.returncode == 0, f"{name} exited {res.returncode}:\n{res.stderr[-3000:]}"


def test_stage_outputs(pipeline):
    work, _ = pipeline
    rows = read_manifest(work / "test_audio")
    clean = [r for r in rows if r.kind == "clean"]
    degraded = [r for r in rows if r.kind == "degraded"]
    assert {r.path for r in clean} == {"clean/talker a.wav", "clean/sub (2)/talker_b.wav"}
    assert len(degraded) == 2 * 3
    assert {(r.family, r.level) for r in degraded} == {
        ("noise", "low"),
        ("noise", "extreme"),
        ("bitrate", "extreme"),
    }
    for model, dim in (("openl3", 6144), ("vggish", 128), ("cdpam", None)):
        folder = work / f"{model}_embeddings"
        assert (folder / "run.json").is_file() and (folder / "manifest.csv").is_file()
        assert json.loads((folder / "run.json").read_text()).get("available", True) is True
        for r in rows:
            emb = np.load(folder / (r.path[:-4] + ".npy"))
            assert emb.dtype == np.float32 and emb.ndim == 2 and emb.shape[0] >= 1
            if dim:
                assert emb.shape[1] == dim
            if model == "cdpam":  # the clip embedding behind CDPAM's learned distance
                assert np.load(folder / (r.path[:-4] + ".clip.npy")).shape == (512,)
    pairs = pd.read_csv(work / "results" / "pair_metrics.csv")
    assert len(pairs) == 6
    assert list(pairs.columns[:4]) == ["reference_path", "degraded_path", "family", "level"]
    for col in (
        "pesq_wb",
        "pesq_nb",
        "stoi",
        "estoi",
        "si_sdr",
        "openl3_cosine",
        "vggish_cosine_pooled",
        "cdpam_cosine",
        "cdpam_distance",
    ):
        assert col in pairs.columns and pairs[col].notna().all(), col
    # The learned CDPAM distance grows from 30 dB to 5 dB SNR on every recording.
    noise = pairs[pairs.family == "noise"].pivot(
        index="reference_path", columns="level", values="cdpam_distance"
    )
    assert (noise["extreme"] > noise["low"]).all()
    for name in ("summary_by_degradation.csv", "correlations.csv", "monotonicity.csv", "run.json"):
        assert (work / "results" / name).is_file()
    vis = work / "results" / "visualizations"
    assert len(list(vis.glob("*.png"))) >= 5
    report = (vis / "analysis_report.txt").read_text()
    assert "Sample Results" in report and "Noise (Low)" in report and "Bitrate (Extreme)" in report
    # The reference panel (ViSQOL audio, Zimtohrli, PEAQ, the 2f-model) judges the neural
    # metrics; At a glance leads.
    assert report.split("\n")[4] == "At a glance"
    assert (
        "the best evidence here is agreement with ViSQOL audio, Zimtohrli distance, PEAQ ODG and "
        "2f-model MMS" in " ".join(report.split())
    )
    assert "Against ViSQOL audio, the neural metric that agrees best is" in report
    assert "Against Zimtohrli distance, the neural metric that agrees best is" in report
    assert "was unavailable" not in report  # all three models ran
    html = (vis / "report.html").read_text()
    assert "data:image/png;base64," in html and "http://" not in html.replace(
        "http://www.w3.org", ""
    )


def test_rerun_redoes_nothing(pipeline):
    work, runs = pipeline
    env = dict(
        os.environ,
        PERCEPTUAL_AUDIO_CACHE=str(work / "cache"),
        PERCEPTUAL_AUDIO_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([str(work / "hook"), str(REPO_ROOT)]),
    )
    before = {p: p.stat().st_mtime_ns for p in (work / "cdpam_embeddings").rglob("*.npy")}
    res = _script(
        "audio_conversion.py",
        "--input",
        "original_audio",
        "--output",
        "test_audio",
        env=env,
        cwd=work,
    )
    assert "converted 0, skipped 2" in res.stderr
    res = _script(
        "extract_embeddings.py",
        "--input-dir",
        "test_audio",
        "--degradations",
        DEGRADATIONS,
        "--models",
        "cdpam",
        env=env,
        cwd=work,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert before == {p: p.stat().st_mtime_ns for p in (work / "cdpam_embeddings").rglob("*.npy")}


def test_without_weights_openl3_and_vggish_are_reported_and_the_rest_runs(tmp_path, pipeline):
    work, _ = pipeline
    env = dict(
        os.environ,
        PERCEPTUAL_AUDIO_CACHE=str(tmp_path / "empty_cache"),
        PERCEPTUAL_AUDIO_OFFLINE="1",
        PYTHONPATH=str(REPO_ROOT),
    )
    res = _script(
        "extract_embeddings.py",
        "--input-dir",
        str(work / "test_audio"),
        "--openl3-dir",
        str(tmp_path / "o"),
        "--vggish-dir",
        str(tmp_path / "v"),
        "--cdpam-dir",
        str(tmp_path / "c"),
        "--degradations",
        DEGRADATIONS,
        "--models",
        "openl3,vggish",
        env=env,
        cwd=tmp_path,
    )
    assert res.returncode == 3, res.stderr[-2000:]
    assert (
        "https://github.com/marl/openl3/raw/models/openl3_audio_mel256_music-v0_4_0.h5.gz"
        in res.stderr
    )
    assert "vggish-10086976.pth" in res.stderr
    assert json.loads((tmp_path / "o" / "run.json").read_text())["available"] is False
