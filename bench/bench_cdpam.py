#!/usr/bin/env python3
"""CDPAM encoder evaluations side by side: speed and agreement (prints figures; not a test).

For each clip (default: the first ``--seconds`` of a bundled speech file at 16 kHz, as stage 2
sees it) the encoders ``reference`` (``cdpam.models.base_encoder``'s loop, the pre-issue-14
code path), ``direct`` and ``fast`` (:mod:`perceptual_audio.embeddings.cdpam.encoder`) run in
interleaved rounds on the same preprocessed audio; the script prints each one's best seconds of
compute per audio second and the ratio to ``reference``, then the agreement of the outputs:

- frames (T, 512) and clip embedding (512,) of :meth:`CDPAMEmbedder.forward_with_clip`:
  max |x - x_ref| / max |x_ref|;
- the CDPAM distance between the clip and a noisy copy (20 dB SNR): ours (from stored clip
  embeddings, as stage 3 computes it) against ``cdpam.CDPAM(dev='cpu').forward``.

Before that, the one-off cost of preparing the fast encoder (folding BatchNorm, the spectral
weights of the FFT blocks; paid once per process) is timed against the construction it
replaced (the block matrices built in float64 and rounded at the end: the same bits), in
interleaved rounds; ``--skip-prepare`` leaves it out.

The machine is shared and noisy: compare the ratios of one run, not absolute times across runs.

Run: ``.venv/bin/python bench/bench_cdpam.py [--seconds 5] [--rounds 3] [--threads 2]``
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perceptual_audio.audio_io import load_audio  # noqa: E402
from perceptual_audio.embeddings.cdpam import (  # noqa: E402
    INT16_SCALE,
    SAMPLE_RATE,
    CDPAMEmbedder,
)

DEFAULT_CLIP = REPO / "original_audio" / "speech" / "harvard_01_male_us.wav"
#: Rate of stage 1's clean audio (what stage 2 feeds CDPAM, resampled to 22.05 kHz).
PIPELINE_SAMPLE_RATE = 16000


def rel(x: np.ndarray | torch.Tensor, ref: np.ndarray | torch.Tensor) -> float:
    x, ref = np.asarray(x, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.abs(x - ref).max() / max(np.abs(ref).max(), 1e-30))


def _spectral_float64(w: torch.Tensor, fft_size: int) -> torch.Tensor:
    """The spectral weights as built before 2026-12-03: float64 concatenations, rounded last."""
    spec = torch.conj(torch.fft.rfft(w.double(), n=fft_size, dim=-1)).permute(2, 0, 1)
    re, im = spec.real, spec.imag
    block = torch.cat([torch.cat([re, -im], dim=2), torch.cat([im, re], dim=2)], dim=1)
    return block.float().contiguous()


def bench_prepare(rounds: int) -> None:
    """Seconds to build the fast encoder, now and as before; the weights must be equal."""
    from perceptual_audio.embeddings.cdpam import encoder as enc

    base = CDPAMEmbedder().model.base_encoder
    now, before = enc._spectral, _spectral_float64
    times: dict[str, list[float]] = {"now": [], "float64 concatenation": []}
    built = {}
    try:
        for _ in range(rounds):
            for name, fn in (("float64 concatenation", before), ("now", now)):
                enc._spectral = fn
                t0 = time.perf_counter()
                built[name] = enc.FastEncoder(base, out_channels=slice(0, 512))
                times[name].append(time.perf_counter() - t0)
    finally:
        enc._spectral = now
    same = all(
        torch.equal(a.weight, b.weight)
        for a, b in zip(built["now"].blocks, built["float64 concatenation"].blocks, strict=True)
    )
    t_now, t_before = min(times["now"]), min(times["float64 concatenation"])
    print(
        f"fast encoder preparation (once per process): {t_now:.2f} s, before "
        f"{t_before:.2f} s ({t_before / t_now:.1f}x; best of {rounds} interleaved rounds); "
        f"weights {'identical' if same else 'DIFFERENT'}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-package", action="store_true", help="no cdpam.CDPAM comparison")
    p.add_argument("--skip-prepare", action="store_true", help="no encoder preparation timing")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.skip_prepare:
        bench_prepare(rounds=2)

    from perceptual_audio.audio_io import resample

    y, sr = load_audio(args.clip)
    y = resample(y, sr, PIPELINE_SAMPLE_RATE)[: int(args.seconds * PIPELINE_SAMPLE_RATE)]
    embedders = {name: CDPAMEmbedder(encoder=name) for name in ("reference", "direct", "fast")}
    for e in embedders.values():
        e.load()
    x = torch.from_numpy(embedders["fast"].preprocess(y, PIPELINE_SAMPLE_RATE))[None]
    audio_s = x.shape[1] / SAMPLE_RATE
    print(
        f"clip {args.clip.name}: {audio_s:.2f} s at 22.05 kHz; {args.threads} torch threads; "
        f"load average {' '.join(f'{v:.2f}' for v in __import__('os').getloadavg())}",
        flush=True,
    )

    best = dict.fromkeys(embedders, float("inf"))
    outputs = {}
    with torch.inference_mode():
        for e in embedders.values():
            e.forward_with_clip(x[:, : SAMPLE_RATE // 2])  # warm-up
        for r in range(args.rounds):
            for name, e in embedders.items():
                t0 = time.perf_counter()
                outputs[name] = e.forward_with_clip(x)
                best[name] = min(best[name], time.perf_counter() - t0)
            print(
                f"round {r + 1}: "
                + ", ".join(f"{n} {best[n] / audio_s:.3f}" for n in embedders)
                + " s per audio second (best so far)",
                flush=True,
            )
    for name in embedders:
        print(
            f"{name:9s}: {best[name] / audio_s:.3f} s per audio second, "
            f"{best['reference'] / best[name]:.2f}x reference"
        )
    f_ref, c_ref = outputs["reference"]
    for name in ("direct", "fast"):
        f, c = outputs[name]
        print(
            f"{name:9s} vs reference: frames {rel(f, f_ref):.1e}, clip {rel(c, c_ref):.1e} "
            "(max |diff| / max |reference|)"
        )

    if not args.skip_package:
        import cdpam

        rng = np.random.default_rng(0)
        clean = embedders["fast"].preprocess(y, PIPELINE_SAMPLE_RATE)
        noise = rng.standard_normal(len(clean))
        noise *= np.sqrt(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise**2) / 100)
        noisy = embedders["fast"].preprocess(
            (clean + noise).astype(np.float32), embedders["fast"].sample_rate
        )
        load = torch.load
        torch.load = functools.partial(load, weights_only=False)  # cdpam 0.0.6 needs it
        try:
            original = cdpam.CDPAM(dev="cpu")
        finally:
            torch.load = load
        a = torch.from_numpy(clean)[None]
        b = torch.from_numpy(noisy)[None]
        with torch.inference_mode():
            expected = float(original.forward(a * INT16_SCALE, b * INT16_SCALE)[0])
            for name, e in embedders.items():
                _, _, ca = e.embed_with_clip(clean, SAMPLE_RATE)
                _, _, cb = e.embed_with_clip(noisy, SAMPLE_RATE)
                got = float(e.distance_from_embeddings(ca, cb))
                print(
                    f"distance {name:9s}: {got:.7f} vs cdpam.CDPAM.forward {expected:.7f} "
                    f"(relative {abs(got - expected) / expected:.1e})"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
