#!/usr/bin/env python3
"""Benchmark of stage 3: cost of each metric, and pairs per second with 1 and 2 workers.

Builds a synthetic study in a temporary folder (``--recordings`` speech-like clean files of
``--seconds`` s, each with noise at ``--levels`` SNRs, so recordings x levels pairs; one
stand-in embedding model with OpenL3's frame rate and size), then

1. times every metric of the catalogue (each computation group once, as the stage runs
   them: DNSMOS's four scores are one call) on every pair in this process (ms per pair);
   PEAQ's cost is then broken down (resampling, each ear model, each version);
2. runs the whole stage (``calculate_metrics.py --force``) with ``--workers 1`` and then
   ``--workers N`` on the same folder and prints pairs per second and the speedup, for the
   scoring phase alone and for the whole run (which adds start-up and statistics).

Usage::

    .venv/bin/python bench/bench_metrics.py                 # 40 pairs of 10 s, workers 1 vs 2
    .venv/bin/python bench/bench_metrics.py --recordings 2 --levels 3   # 6 pairs of 10 s
    .venv/bin/python bench/bench_metrics.py --recordings 4 --seconds 3   # quick check
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perceptual_audio import metrics  # noqa: E402
from perceptual_audio.audio_io import load_audio, save_wav  # noqa: E402
from perceptual_audio.files import sha256_file  # noqa: E402
from perceptual_audio.manifest import ManifestRow, write_manifest  # noqa: E402

SR = 16000
#: Stand-in model: OpenL3's default frame rate (hop 0.1 s) and a 512-D embedding.
HOP_SECONDS = 0.1
EMBEDDING_DIM = 512
SNRS_DB = (30.0, 20.0, 10.0, 5.0, 0.0, -5.0)


def speech_like(seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    f0 = 110 + 30 * rng.random() + 20 * np.sin(2 * np.pi * 0.8 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(
        (math.exp(-0.5 * ((k * 120 - 700) / 300) ** 2) + 0.1) / k * np.sin(k * phase)
        for k in range(1, 30)
    )
    x = x * np.clip(np.sin(2 * np.pi * (3.5 + rng.random()) * t), 0, None) ** 2
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def stand_in_embedding(y: np.ndarray, projection: np.ndarray) -> np.ndarray:
    hop = int(HOP_SECONDS * SR)
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(y, (0, 1024)), 1024)[::hop]
    logspec = np.log10(np.abs(np.fft.rfft(frames * np.hanning(1024), axis=1)) ** 2 + 1e-6)
    return (logspec @ projection).astype(np.float32)


def build(root: Path, n_recordings: int, n_levels: int, seconds: float) -> None:
    rng = np.random.default_rng(0)
    projection = rng.standard_normal((513, EMBEDDING_DIM)) / math.sqrt(513)
    audio = root / "test_audio"
    model = root / "openl3_embeddings"
    rows = []
    levels = [f"l{i}" for i in range(n_levels)]
    for i in range(n_recordings):
        y = speech_like(seconds, rng)
        items = [(f"clean/r{i}.wav", y, "clean", "", "")]
        for level, snr_db in zip(levels, SNRS_DB, strict=False):
            noise = rng.standard_normal(len(y)).astype(np.float32)
            gain = math.sqrt(float(np.mean(y**2)) / 10 ** (snr_db / 10))
            items.append(
                (
                    f"degraded/noise/{level}/r{i}.wav",
                    y + np.float32(gain) * noise,
                    "degraded",
                    "noise",
                    level,
                )
            )
        for rel, sig, kind, family, level in items:
            save_wav(audio / rel, sig, SR)
            emb = model / Path(rel).with_suffix(".npy")
            emb.parent.mkdir(parents=True, exist_ok=True)
            np.save(emb, stand_in_embedding(sig, projection))
            rows.append(
                ManifestRow.make(
                    rel,
                    kind=kind,
                    source=f"r{i}.flac" if kind == "clean" else f"clean/r{i}.wav",
                    family=family,
                    level=level,
                    parameters={},
                    seed=0 if family else None,
                    sample_rate=SR,
                    duration=seconds,
                    sha256=sha256_file(audio / rel),
                    source_sha256="",
                )
            )
    write_manifest(audio, rows)


def per_metric_costs(root: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Mean seconds per pair of each catalogue group (in this process), and the first call's
    extra cost per group (model loading, numba/TFLite start-up; paid once per worker)."""
    audio = root / "test_audio"
    pairs = sorted(p.relative_to(audio) for p in (audio / "degraded").rglob("*.wav"))
    costs: dict[str, list[float]] = {}
    from perceptual_audio.stages.scoring import single_threaded_blas

    with single_threaded_blas():  # as the stage runs them
        _time_pairs(root, audio, pairs[:1], costs)  # warm-up: loads every model once
        first = {k: v[0] for k, v in costs.items()}
        costs.clear()
        _time_pairs(root, audio, pairs, costs)
    mean = {k: float(np.mean(v)) for k, v in costs.items()}
    return mean, {k: max(0.0, first[k] - mean[k]) for k in mean}


def _time_pairs(root: Path, audio: Path, pairs: list[Path], costs: dict[str, list[float]]) -> None:
    def timed(name, fn, *a, **k):
        t0 = time.perf_counter()
        fn(*a, **k)
        costs.setdefault(name, []).append(time.perf_counter() - t0)

    settings = metrics.MetricSettings()
    for rel in pairs:
        ref_rel = Path("clean") / rel.name
        t0 = time.perf_counter()
        ref, _ = load_audio(audio / ref_rel)
        deg, _ = load_audio(audio / rel)
        costs.setdefault("load 2 wavs", []).append(time.perf_counter() - t0)
        for name, group in metrics.AUDIO_GROUPS.items():  # every audio metric of the catalogue
            shown = ", ".join(group.columns[:4]) + (", ..." if len(group.columns) > 4 else "")
            label = f"{name} ({shown})" if len(group.columns) > 1 else name
            if group.role == metrics.ROLE_CLEAN:
                label += " [once per clean file]"
                timed(label, group.compute, ref, None, SR, settings)
            else:
                timed(label, group.compute, ref, deg, SR, settings)
        e_ref = np.load(root / "openl3_embeddings" / ref_rel.with_suffix(".npy"))
        e_deg = np.load(root / "openl3_embeddings" / rel.with_suffix(".npy"))
        timed("cosine (frames)", metrics.frame_cosine, e_ref, e_deg)
        timed("cosine_pooled", metrics.pooled_cosine, e_ref, e_deg)
        timed("l2 (frames)", metrics.frame_l2, e_ref, e_deg)


def peaq_breakdown(root: Path) -> dict[str, float]:
    """Where PEAQ's time goes on the first pair (seconds, one thread): the resampling to
    48 kHz, the two ear models (per signal) and the rest of each version."""
    from perceptual_audio.audio_io import resample
    from perceptual_audio.metrics import peaq
    from perceptual_audio.metrics.peaq.ear_fft import RESOLUTION_BASIC, fft_ear, make_bands
    from perceptual_audio.metrics.peaq.ear_filterbank import filterbank_ear
    from perceptual_audio.stages.scoring import single_threaded_blas

    audio = root / "test_audio"
    rel = sorted(p.relative_to(audio) for p in (audio / "degraded").rglob("*.wav"))[0]
    ref, _ = load_audio(audio / "clean" / rel.name)
    deg, _ = load_audio(audio / rel)
    out: dict[str, float] = {}

    def timed(name, fn, *a):
        t0 = time.perf_counter()
        result = fn(*a)
        out[name] = time.perf_counter() - t0
        return result

    with single_threaded_blas():
        r48 = timed("resample both to 48 kHz (soxr VHQ)", lambda: resample(ref, SR, 48000))
        d48 = resample(deg, SR, 48000)
        x = r48 * 32768.0
        timed("FFT ear model, one signal", fft_ear, x, make_bands(RESOLUTION_BASIC))
        timed("filter-bank ear model, one signal", filterbank_ear, x)
        timed("peaq_basic (2 FFT ears + MOVs + network)", peaq.peaq_basic, r48, d48)
        timed("peaq_advanced (2 filter-bank + 2 FFT ears + MOVs)", peaq.peaq_advanced, r48, d48)
    out["resample both to 48 kHz (soxr VHQ)"] *= 2
    return out


def stage_run(root: Path, workers: int, bootstrap: int) -> dict[str, float]:
    """``calculate_metrics.py`` in a fresh process (so both runs pay the same imports)."""
    results = root / f"results_w{workers}"
    argv = [
        sys.executable,
        str(REPO / "calculate_metrics.py"),
        "--audio-dir",
        str(root / "test_audio"),
        "--results-dir",
        str(results),
        "--openl3-dir",
        str(root / "openl3_embeddings"),
        "--vggish-dir",
        str(root / "none"),
        "--cdpam-dir",
        str(root / "none"),
        "--workers",
        str(workers),
        "--bootstrap",
        str(bootstrap),
        "--force",
        "-q",
    ]
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode not in (0, 3):
        raise SystemExit(f"stage failed ({done.returncode}):\n{done.stderr}")
    timings = json.loads((results / "run.json").read_text())["timings_seconds"]
    return {"wall": wall, "scoring": timings["scoring"], "statistics": timings["statistics"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recordings", type=int, default=10, help="clean recordings")
    p.add_argument(
        "--levels", type=int, default=4, help=f"SNR levels per recording (<= {len(SNRS_DB)})"
    )
    p.add_argument("--seconds", type=float, default=10.0, help="length of each file in s")
    p.add_argument("--workers", type=int, default=2, help="parallel run's worker count")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates")
    args = p.parse_args()
    n_pairs = args.recordings * args.levels
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        build(root, args.recordings, args.levels, args.seconds)
        print(f"built {n_pairs} pairs of {args.seconds:g} s in {time.perf_counter() - t0:.1f} s")

        costs, first = per_metric_costs(root)
        print(
            f"\ncost per {args.seconds:g} s pair (this process, one thread, mean over pairs; "
            "first call: extra cost once per worker process):"
        )
        for name, sec in costs.items():
            print(f"  {name:62s} {1000 * sec:9.1f} ms   first +{1000 * first[name]:8.0f} ms")
        print(f"  {'total':62s} {1000 * sum(costs.values()):9.1f} ms")
        print("\nPEAQ, where the time goes (first pair, one thread):")
        for name, sec in peaq_breakdown(root).items():
            print(f"  {name:62s} {1000 * sec:9.1f} ms")

        serial = stage_run(root, 1, args.bootstrap)
        parallel = stage_run(root, args.workers, args.bootstrap)
        same = (root / "results_w1" / "pair_metrics.csv").read_bytes() == (
            root / f"results_w{args.workers}" / "pair_metrics.csv"
        ).read_bytes()
        print(
            f"\ncalculate_metrics.py in a fresh process, {n_pairs} pairs (--force, "
            f"--bootstrap {args.bootstrap}); 'scoring' is the parallel phase alone:"
        )
        print(f"  {'':12s} {'scoring s':>10s} {'pairs/s':>8s} {'run s':>8s} {'pairs/s':>8s}")
        for label, r in (("--workers 1", serial), (f"--workers {args.workers}", parallel)):
            print(
                f"  {label:12s} {r['scoring']:10.2f} {n_pairs / r['scoring']:8.2f} "
                f"{r['wall']:8.2f} {n_pairs / r['wall']:8.2f}"
            )
        print(
            f"  speedup: scoring {serial['scoring'] / parallel['scoring']:.2f}x, "
            f"whole run {serial['wall'] / parallel['wall']:.2f}x (target >= 1.7x on 2 cores)"
        )
        print(f"  statistics phase: {serial['statistics']:.2f} s; tables identical: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
