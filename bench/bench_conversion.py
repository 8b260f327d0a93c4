#!/usr/bin/env python3
"""Stage-1 throughput: audio-seconds converted per wall-second.

Input: a 10-minute 44.1 kHz stereo 16-bit WAV (generated). Measured side by side in one run:
- the full conversion of one file (read, downmix, soxr VHQ to 16 kHz, float WAV write);
- the resampler alone: soxr VHQ (ours) vs librosa.resample's default vs resampy kaiser_best.
Ratios are what to compare: these machines are noisy.

    .venv/bin/python bench/bench_conversion.py [--minutes 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perceptual_audio.audio_io import resample  # noqa: E402
from perceptual_audio.stages.convert import ConvertJob, convert_file  # noqa: E402


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="input length in minutes")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (best is reported)")
    args = parser.parse_args()

    sr_in, sr_out = 44100, 16000
    seconds = args.minutes * 60
    rng = np.random.default_rng(0)
    n = int(seconds * sr_in)
    t = np.arange(n) / sr_in
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)], 1)
    stereo += 0.05 * rng.standard_normal(stereo.shape)
    mono = stereo.mean(1).astype(np.float32)

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "long.wav"
        sf.write(src, stereo.astype(np.float32), sr_in, subtype="PCM_16")
        job = ConvertJob(
            str(src), "long.wav", str(Path(tmp) / "out.wav"), "clean/long.wav", sr_out, "0" * 64
        )
        full = best_of(lambda: convert_file(job), args.repeats)

    import librosa

    rows = [("full conversion (read+mix+soxr VHQ+write)", full)]
    rows.append(
        (
            "resample only: soxr VHQ (pipeline)",
            best_of(lambda: resample(mono, sr_in, sr_out), args.repeats),
        )
    )
    rows.append(
        (
            "resample only: librosa default (soxr_hq)",
            best_of(lambda: librosa.resample(mono, orig_sr=sr_in, target_sr=sr_out), args.repeats),
        )
    )
    short = mono[: sr_in * 60]  # resampy is slow: time one minute and scale
    import resampy

    t_res = (
        best_of(lambda: resampy.resample(short, sr_in, sr_out, filter="kaiser_best"), 1)
        * seconds
        / 60
    )
    rows.append(("resample only: resampy kaiser_best (1 min, scaled)", t_res))

    print(
        f"input: {args.minutes:g} min, {sr_in} Hz stereo -> {sr_out} Hz mono; best of {args.repeats}"
    )
    print(f"{'what':55s} {'wall s':>8s} {'audio-s/wall-s':>15s} {'vs soxr VHQ':>12s}")
    ref = rows[1][1]
    for name, sec in rows:
        print(f"{name:55s} {sec:8.3f} {seconds / sec:15.1f} {sec / ref:11.2f}x")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
