#!/usr/bin/env python3
"""Regenerate the bundled default audio in ``original_audio/`` (committed; ``make audio``).

- ``speech/``: Harvard sentences (public domain, IEEE 1969) read by espeak-ng in four voices,
  22.05 kHz 16-bit WAV (needs Debian's ``espeak-ng``).
- ``music/``: a synthesised piano-like chord progression with melody and bass, 44.1 kHz
  stereo FLAC.
- ``environment/``: synthesised wind, rain drops and bird chirps, 32 kHz 16-bit WAV.

The formats differ on purpose, so that ``make run`` exercises stage 1's resampling and
downmixing. Everything is deterministic (fixed seed); espeak-ng output depends on its version.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SEED = 20261125

#: (file stem, espeak-ng voice, words per minute, text)
SPEECH = [
    (
        "harvard_01_male_us",
        "en-us+m3",
        150,
        "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background.",
    ),
    (
        "harvard_02_female_gb",
        "en-gb+f3",
        145,
        "It is easy to tell the depth of a well. These days a chicken leg is a rare dish.",
    ),
    (
        "harvard_03_female_us",
        "en-us+f2",
        155,
        "Rice is often served in round bowls. The juice of lemons makes fine punch.",
    ),
    (
        "harvard_04_male_gb",
        "en-gb+m1",
        140,
        "The box was thrown beside the parked truck. Four hours of steady work faced us.",
    ),
]


def make_speech(out_dir: Path) -> None:
    exe = shutil.which("espeak-ng")
    if exe is None:
        sys.exit("espeak-ng not found: install Debian's espeak-ng (apt-get install espeak-ng)")
    out_dir.mkdir(parents=True, exist_ok=True)
    for stem, voice, wpm, text in SPEECH:
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "raw.wav"
            subprocess.run([exe, "-v", voice, "-s", str(wpm), "-w", str(raw), text], check=True)
            y, sr = sf.read(raw, dtype="float32")
        # Trim espeak's trailing silence to 0.25 s and normalise to -3 dBFS peak.
        active = np.flatnonzero(np.abs(y) > 1e-3)
        y = y[: min(len(y), active[-1] + int(0.25 * sr))] if active.size else y
        y = y * (10 ** (-3 / 20) / max(np.max(np.abs(y)), 1e-9))
        sf.write(out_dir / f"{stem}.wav", y, sr, subtype="PCM_16")
        print(f"{stem}.wav: {len(y) / sr:.2f} s at {sr} Hz")


def _note(freq_hz: float, dur_s: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A piano-like tone: decaying harmonics with slight inharmonicity."""
    t = np.arange(int(dur_s * sr)) / sr
    y = np.zeros_like(t)
    for k in range(1, 9):
        f = freq_hz * k * np.sqrt(1 + 1e-4 * k * k)
        if f > sr / 2 - 1000:
            break
        y += (
            (0.6 ** (k - 1))
            * np.exp(-t * (1.5 + 0.8 * k))
            * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
        )
    attack = np.minimum(1, t / 0.005)
    return y * attack


def make_music(path: Path, *, sr: int = 44100, seconds: float = 5.0) -> None:
    rng = np.random.default_rng(SEED)
    n = int(seconds * sr)
    left, right = np.zeros(n), np.zeros(n)
    midi = lambda m: 440.0 * 2 ** ((m - 69) / 12)  # noqa: E731
    chords = [(60, 64, 67), (57, 60, 64), (53, 57, 60), (55, 59, 62)]  # C, Am, F, G
    beat = seconds / 8
    for i, chord in enumerate(chords):
        start = int(i * 2 * beat * sr)
        for m in chord:  # chord, panned slightly right
            tone = _note(midi(m), 2 * beat, sr, rng)[: n - start]
            left[start : start + len(tone)] += 0.35 * tone
            right[start : start + len(tone)] += 0.5 * tone
        bass = _note(midi(chord[0] - 24), 2 * beat, sr, rng)[: n - start]
        left[start : start + len(bass)] += 0.6 * bass
        right[start : start + len(bass)] += 0.6 * bass
    melody = [72, 74, 76, 79, 77, 76, 74, 72, 71, 72, 74, 76, 74, 72, 71, 67]
    for j, m in enumerate(melody):  # melody, panned left
        start = int(j * beat / 2 * sr)
        tone = _note(midi(m), beat, sr, rng)[: n - start]
        left[start : start + len(tone)] += 0.5 * tone
        right[start : start + len(tone)] += 0.25 * tone
    stereo = np.stack([left, right], axis=1)
    stereo *= 10 ** (-3 / 20) / np.max(np.abs(stereo))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, stereo.astype(np.float32), sr, subtype="PCM_16", format="FLAC")
    print(f"{path.name}: {seconds:.2f} s at {sr} Hz, stereo FLAC")


def make_environment(path: Path, *, sr: int = 32000, seconds: float = 5.0) -> None:
    rng = np.random.default_rng(SEED + 1)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    # Wind: brown-ish noise with a slow gust envelope.
    wind = np.cumsum(rng.standard_normal(n))
    wind -= np.convolve(wind, np.ones(801) / 801, mode="same")
    wind /= np.max(np.abs(wind))
    wind *= 0.25 * (0.6 + 0.4 * np.sin(2 * np.pi * 0.3 * t + 1.0))
    # Rain: sparse decaying clicks.
    rain = np.zeros(n)
    for pos in rng.integers(0, n - 400, size=120):
        rain[pos : pos + 400] += (
            rng.uniform(0.02, 0.12) * np.exp(-np.arange(400) / 40) * rng.standard_normal(400)
        )
    # Birds: frequency-modulated chirps.
    birds = np.zeros(n)
    for start_s in (0.6, 0.9, 2.2, 2.45, 3.7, 4.1):
        d = int(0.12 * sr)
        s = int(start_s * sr)
        tt = np.arange(d) / sr
        f = 3000 + 1500 * np.sin(2 * np.pi * 8 * tt) + 4000 * tt
        chirp = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.hanning(d)
        birds[s : s + d] += 0.4 * chirp
    y = wind + rain + birds
    y *= 10 ** (-3 / 20) / np.max(np.abs(y))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y.astype(np.float32), sr, subtype="PCM_16")
    print(f"{path.name}: {seconds:.2f} s at {sr} Hz")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--output", type=Path, default=Path("original_audio"), help="folder to write into"
    )
    args = parser.parse_args()
    make_speech(args.output / "speech")
    make_music(args.output / "music" / "piano_chords.flac")
    make_environment(args.output / "environment" / "wind_rain_birds.wav")


if __name__ == "__main__":
    main()
