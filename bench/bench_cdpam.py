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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-package", action="store_true", help="no cdpam.CDPAM comparison")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

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
