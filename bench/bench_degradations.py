#!/usr/bin/env python3
"""Throughput of every degradation (audio-seconds degraded per wall-second, one process), and the
measured property of each family on real recordings.

    .venv/bin/python bench/bench_degradations.py [--seconds 10] [--files 3] [--repeats 2]

Uses ``../shared/data/recordings`` when present (speech and music, resampled to 16 kHz),
otherwise synthetic speech-like signals. Prints one line per family and level.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import signal as sps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perceptual_audio import degradations as deg  # noqa: E402
from perceptual_audio.audio_io import load_audio  # noqa: E402

SR = 16000
RECORDINGS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "recordings"
FILES = [
    "198-209-0000.ogg",
    "Kevin_MacLeod_-_Vibe_Ace.ogg",
    "3436-172162-0000.ogg",
    "sorohanro_-_solo-trumpet-06.ogg",
    "glacier-bay-humpback.ogg",
]


def load_inputs(n_files: int, seconds: float) -> tuple[list[tuple[str, np.ndarray]], str]:
    if RECORDINGS.is_dir():
        out = []
        for name in FILES[:n_files]:
            x, _ = load_audio(RECORDINGS / name, sample_rate=SR)
            out.append((name, x[: int(seconds * SR)]))
        return out, f"real recordings from {RECORDINGS}"
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    out = []
    for i in range(n_files):
        x = np.sin(2 * np.pi * (150 + 40 * i) * t) * (1 + np.sin(2 * np.pi * 4 * t)) ** 2
        out.append(
            (f"synthetic{i}", (0.2 * x + 0.01 * rng.standard_normal(len(t))).astype(np.float32))
        )
    return out, "synthetic signals (../shared/data/recordings absent)"


def measure(family: str, x: np.ndarray, y: np.ndarray, info: dict, params: dict) -> str:
    """The property each family promises, measured on this output."""
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    if family in ("noise", "pink_noise", "babble"):
        p = np.mean((x64 - x64.mean()) ** 2)
        return f"SNR {10 * math.log10(p / np.mean((y64 - x64) ** 2)):.3f} dB"
    lag = deg.xcorr_lag(x, y, max_lag=2000)
    if family == "bitrate":
        return (
            f"{info['achieved_kbps']:.2f} kbps, lag {lag}, codec delay removed "
            f"{info['codec_delay_samples']}"
        )
    if family == "opus":
        return (
            f"{info['payload_kbps']:.2f} kbps payload ({info['achieved_kbps']:.2f} file), lag {lag}"
        )
    if family == "compression":
        return f"crest {info['crest_factor_in_db']:.2f} -> {info['crest_factor_out_db']:.2f} dB"
    if family == "bandlimit":
        f, pw = sps.welch(y64, SR, nperseg=1024, window="blackmanharris")
        above = 10 * math.log10(pw[f > 1.02 * params["cutoff_hz"]].sum() / pw.sum())
        return f"energy above 1.02 x cut-off {above:.1f} dB"
    if family == "clipping":
        return f"clipped {100 * info['clipped_fraction_achieved']:.2f}% of samples"
    if family == "reverb":
        return f"RT60 {info['rt60_seconds_measured']:.3f} s, lag {lag}"
    if family == "packet_loss":
        return f"lost {100 * info['loss_rate_achieved']:.1f}% of packets"
    err = 10 * math.log10(np.mean((y64 - x64) ** 2) / np.mean(x64**2) + 1e-30)
    return f"error {err:.1f} dB re signal, lag {lag}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="audio per file (s)")
    ap.add_argument("--files", type=int, default=3, help="number of recordings")
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats (best is reported)")
    opts = ap.parse_args()
    inputs, what = load_inputs(opts.files, opts.seconds)
    total_s = sum(len(x) for _, x in inputs) / SR
    print(f"{what}: {len(inputs)} files, {total_s:.1f} s of audio at {SR} Hz, 1 process")
    print(f"{'family':<12} {'level':<8} {'audio-s/wall-s':>14}  property (first file)")
    for fam in deg.FAMILIES.values():
        for lev in fam.levels.values():
            if fam.name == "bitrate":  # calibration is once per process: keep it out of timing
                deg.mp3_delay_samples(
                    deg.mp3_codec_rate(SR, lev.params["bitrate_kbps"]), lev.params["bitrate_kbps"]
                )
            best = math.inf
            first = None
            for _ in range(opts.repeats):
                t0 = time.perf_counter()
                for i, (name, x) in enumerate(inputs):
                    pool = [(n, o) for n, o in inputs if n != name]
                    out = deg.apply_degradation(x, SR, lev, rng=np.random.default_rng(i), pool=pool)
                    if first is None:
                        first = (x, out)
                best = min(best, time.perf_counter() - t0)
            x, out = first
            prop = measure(fam.name, x, out.audio, out.info, lev.as_dict())
            print(f"{fam.name:<12} {lev.name:<8} {total_s / best:>14.0f}  {prop}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
