#!/usr/bin/env python3
"""GPU benchmark of the embedding models (prints figures and writes JSON; not a test).

Per model (OpenL3 mel256/6144 hop 0.1 s, VGGish, CDPAM), on ``--device`` (default ``cuda``):

- throughput through ``Embedder.embed`` on ``--seconds`` of 16 kHz audio (resampling included):
  windows (OpenL3) / patches (VGGish) / frames (CDPAM) per second and audio seconds per second,
  best of ``--repeats`` after a warm-up;
- CPU/GPU agreement on a short clip: max |gpu - cpu| / max |cpu| of the embeddings (and of
  CDPAM's clip embedding), with the CUDA matmul/cuDNN TF32 setting in force;
- peak GPU memory of the timed runs (``torch.cuda.max_memory_allocated``).

OpenL3 and VGGish use **random weights in the official formats** (the real files are not
downloadable on these machines): timings and agreement are real, embedding values mean
nothing. CDPAM runs its real shipped model. Without CUDA the script says so and exits 0
(``--device cpu`` runs the same measurements on the CPU, for a dry run).

Run: ``.venv/bin/python bench/bench_gpu.py [--device cuda] [--seconds 60] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))

import bench_embeddings as be  # noqa: E402

#: Length in seconds of the CPU/GPU agreement clip (the CPU side is the slow one).
AGREEMENT_SECONDS = 3.0


def make_embedder(name: str, device: str, wdir: Path):
    """A loaded embedder on ``device`` (random official-shape weights for OpenL3/VGGish)."""
    if name == "openl3":
        return be.openl3_embedder(wdir, wdir / "cache", device=device)
    if name == "vggish":
        from perceptual_audio.embeddings import vggish as vg

        e = vg.VGGishEmbedder(device=device)
        g = torch.Generator().manual_seed(0)
        e._set_network(
            {
                k: torch.randn(shape, generator=g) * 0.01
                for k, shape in vg.TORCHVGGISH_MODEL_SHAPES.items()
            }
        )
        return e
    from perceptual_audio.embeddings.cdpam import CDPAMEmbedder

    e = CDPAMEmbedder(device=device)
    e.load()
    return e


def embed_all(e, y: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(frames, clip or None) of one clip through the stage's NumPy path."""
    if hasattr(e, "embed_with_clip"):
        frames, _, clip = e.embed_with_clip(y, sr)
        return frames, clip
    frames, _ = e.embed(y, sr)
    return frames, None


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def bench_model(name: str, device: str, wdir: Path, y: np.ndarray, repeats: int) -> dict:
    sr = be.SR_IN
    seconds = len(y) / sr
    e = make_embedder(name, device, wdir)
    embed_all(e, y[: sr * 2], sr)  # warm-up: kernels, cuDNN plans, allocator
    synchronize(device)
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    best = float("inf")
    frames = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        frames, _ = embed_all(e, y, sr)
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    out = {
        "device": device,
        "seconds_of_audio": seconds,
        "best_wall_s": best,
        "frames": int(frames.shape[0]),
        "frames_per_s": frames.shape[0] / best,
        "audio_s_per_s": seconds / best,
        "cuda_allow_tf32": bool(torch.backends.cudnn.allow_tf32)
        if torch.device(device).type == "cuda"
        else None,
    }
    if torch.device(device).type == "cuda":
        out["peak_gpu_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    # CPU/GPU agreement on a short clip.
    if torch.device(device).type != "cpu":
        short = y[: int(AGREEMENT_SECONDS * sr)]
        g_frames, g_clip = embed_all(e, short, sr)
        c_frames, c_clip = embed_all(make_embedder(name, "cpu", wdir), short, sr)
        out["agreement_frames_rel"] = float(
            np.abs(g_frames - c_frames).max() / max(np.abs(c_frames).max(), 1e-30)
        )
        if c_clip is not None:
            out["agreement_clip_rel"] = float(
                np.abs(g_clip - c_clip).max() / max(np.abs(c_clip).max(), 1e-30)
            )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--seconds", type=float, default=60.0, help="audio length timed per model")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--models", default="openl3,vggish,cdpam")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        be.log(f"no CUDA device here (torch {torch.__version__}): nothing measured")
        return 0
    if torch.device(args.device).type == "cuda":
        be.log(f"GPU: {torch.cuda.get_device_name(args.device)}; torch {torch.__version__}")
    y = be.test_signal(args.seconds)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        wdir = Path(tmp)
        be.synthetic_openl3_weights(wdir)
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            try:
                r = bench_model(name, args.device, wdir, y, args.repeats)
            except Exception as err:  # one model failing does not hide the others' figures
                be.log(f"{name}: FAILED ({type(err).__name__}: {err})")
                results[name] = {"error": f"{type(err).__name__}: {err}"}
                continue
            results[name] = r
            line = (
                f"{name:7s} {r['frames_per_s']:9.1f} frames/s {r['audio_s_per_s']:8.1f} "
                f"audio-s/s ({r['frames']} frames in {r['best_wall_s']:.3f} s)"
            )
            if "peak_gpu_memory_mib" in r:
                line += f", peak GPU memory {r['peak_gpu_memory_mib']:.0f} MiB"
            if "agreement_frames_rel" in r:
                line += f", GPU vs CPU {r['agreement_frames_rel']:.1e}"
            if "agreement_clip_rel" in r:
                line += f" (clip {r['agreement_clip_rel']:.1e})"
            be.log(line)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
