#!/usr/bin/env python3
"""Benchmark of the embedding models on this machine's CPU (prints figures; not a test).

Measures
--------
1. Compute seconds per second of audio for OpenL3 (mel256, 6144, hop 0.1 s), VGGish and CDPAM
   through ``Embedder.embed`` (resampling included), plus OpenL3's resampling share.
2. OpenL3 against the machine's convolution throughput: FLOPs of one 1-s window (counted from
   the architecture) divided by the GFLOP/s torch reaches on one large conv layer here.
3. OpenL3 against ``torchopenl3`` (PyPI) at equal settings (mel256, 6144, same windows, same
   threads), run from a separate venv (default /tmp/t3) because it must not enter the project
   venv; and against a plain per-window loop of our own network.
4. soxr vs resampy (kaiser_best) resampling to 48 kHz: cosine of the OpenL3 embeddings.
5. Peak RSS of embedding a 10-minute file with OpenL3 (chunked), in a fresh process.

OpenL3 and VGGish use **random weights in the official formats** (the real files are not
downloadable here): the timings are real, the embedding values mean nothing. CDPAM uses its
real shipped model.

Run: ``.venv/bin/python bench/bench_embeddings.py`` (about 10 minutes on 2 cores); options
``--quick``, ``--skip-long``, ``--torchopenl3-python PATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from perceptual_audio.embeddings import openl3 as ol3  # noqa: E402
from perceptual_audio.embeddings.frontends import OpenL3Frontend  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
SR_IN = 16000


def log(msg: str = "") -> None:
    print(msg, flush=True)


def test_signal(seconds: float, sr: int = SR_IN, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * (300 + 200 * t) * t)
    return (y + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def synthetic_openl3_weights(
    folder: Path, input_repr: str = "mel256", content: str = "music"
) -> Path:
    from openl3_synthetic import make_weights, write_keras_h5

    return write_keras_h5(folder / ol3.weight_file(input_repr, content).filename, make_weights(0))


def openl3_embedder(weights_dir: Path, cache: Path, **kw) -> ol3.OpenL3Embedder:
    e = ol3.OpenL3Embedder(weights_dir=weights_dir, cache_dir=cache, download=False, **kw)
    e.load()
    return e


# -- 1. throughput ----------------------------------------------------------------------------
def time_embed(embedder, y: np.ndarray, sr: int, repeats: int = 1) -> float:
    embedder.embed(y[: sr // 2], sr)  # warm-up (allocator, lazy imports, JIT)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        embedder.embed(y, sr)
        best = min(best, time.perf_counter() - t0)
    return best


def random_vggish():
    from perceptual_audio.embeddings import vggish as vg

    e = vg.VGGishEmbedder()
    g = torch.Generator().manual_seed(0)
    sd = {
        k: torch.randn(shape, generator=g) * 0.01
        for k, shape in vg.TORCHVGGISH_MODEL_SHAPES.items()
    }
    e._set_network(sd)
    return e


def bench_throughput(wdir: Path, cache: Path, seconds: float, results: dict) -> None:
    log(
        f"== 1. compute seconds per audio second ({seconds:g} s of 16 kHz audio, "
        f"{torch.get_num_threads()} torch threads)"
    )
    y = test_signal(seconds)
    e = openl3_embedder(wdir, cache)
    t = time_embed(e, y, SR_IN)
    n_win = e.n_windows(int(len(y) * 48000 / SR_IN))
    t_res = min(_timeit(lambda: e.resample_numpy(y, SR_IN)) for _ in range(3))
    results["openl3_s_per_audio_s"] = t / seconds
    results["openl3_s_per_window"] = t / n_win
    log(
        f"openl3 mel256/6144 hop 0.1: {t / seconds:.3f} s per audio second "
        f"({n_win} windows, {t / n_win * 1000:.0f} ms per window; soxr resampling "
        f"{t_res / seconds * 1000:.2f} ms per audio second)"
    )
    try:
        v = random_vggish()
        t = time_embed(v, y, SR_IN, repeats=3)
        results["vggish_s_per_audio_s"] = t / seconds
        log(f"vggish: {t / seconds:.4f} s per audio second")
    except Exception as err:  # the VGGish module may be mid-development
        log(f"vggish: not measured ({type(err).__name__}: {err})")
    try:
        from perceptual_audio.embeddings.base import get_embedder

        c = get_embedder("cdpam")
        c.load()
        yc = y[: int(min(seconds, 5.0) * SR_IN)]
        t = time_embed(c, yc, SR_IN)
        results["cdpam_s_per_audio_s"] = t / (len(yc) / SR_IN)
        log(f"cdpam (real model): {t / (len(yc) / SR_IN):.3f} s per audio second")
    except Exception as err:
        log(f"cdpam: not measured ({type(err).__name__}: {err})")


def _timeit(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# -- 2. FLOPs and machine throughput -------------------------------------------------------------
def openl3_flops_per_window(input_repr: str = "mel256") -> float:
    """Multiply-adds x 2 of the 8 convolutions for one 1-s window."""
    h, w = OpenL3Frontend(input_repr).output_shape()
    flops, c_in = 0.0, 1
    for b, c_out in enumerate(ol3.BLOCK_FILTERS, start=1):
        for _ in (1, 2):
            flops += 2.0 * h * w * c_in * c_out * 9
            c_in = c_out
        if b < len(ol3.BLOCK_FILTERS):
            h, w = h // 2, w // 2
    return flops


def machine_conv_gflops() -> float:
    """GFLOP/s of torch on a large 3x3 conv (OpenL3 block-3 shape, batch 8): the best case."""
    x = torch.randn(8, 256, 64, 49)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1).eval()
    flops = 2.0 * 8 * 64 * 49 * 256 * 256 * 9
    with torch.inference_mode():
        conv(x)
        best = min(_timeit(lambda: conv(x)) for _ in range(3))
    return flops / best / 1e9


def bench_flops(results: dict) -> None:
    log("== 2. OpenL3 against the machine's convolution throughput")
    f = openl3_flops_per_window()
    g = machine_conv_gflops()
    ideal = f / (g * 1e9)
    results.update(
        openl3_gflop_per_window=f / 1e9, machine_conv_gflops=g, openl3_ideal_s_per_window=ideal
    )
    log(
        f"FLOPs per mel256 window: {f / 1e9:.2f} GFLOP; torch conv throughput here: {g:.1f} GFLOP/s "
        f"-> ideal {ideal * 1000:.0f} ms per window"
    )
    if "openl3_s_per_window" in results:
        ratio = results["openl3_s_per_window"] / ideal
        results["openl3_vs_ideal"] = ratio
        log(
            f"measured {results['openl3_s_per_window'] * 1000:.0f} ms per window = {ratio:.2f}x the "
            f"ideal (target <= 1.5x)"
        )


# -- 3. torchopenl3 -------------------------------------------------------------------------
TORCHOPENL3_SCRIPT = r"""
import json, sys, time, types, torch
# torchopenl3 imports resampy 0.2.2, which needs pkg_resources (gone from current setuptools);
# resampling is not timed here, so a stub module stands in for it.
sys.modules.setdefault("resampy", types.ModuleType("resampy"))
torch.set_num_threads(int(sys.argv[1])); n = int(sys.argv[2]); bs = int(sys.argv[3])
from torchopenl3.models import PytorchOpenl3
m = PytorchOpenl3("music", "mel256", 6144).eval()   # random weights: timing only
x = torch.randn(n, 1, 48000) * 0.1
with torch.inference_mode():
    m(x[:1]); t0 = time.perf_counter()
    out = [m(x[i:i + bs]) for i in range(0, n, bs)]
    t = time.perf_counter() - t0
print(json.dumps({"seconds": t, "shape": list(torch.cat(out).shape), "torch": torch.__version__}))
"""


def bench_torchopenl3(wdir: Path, cache: Path, python: str, n_windows: int, results: dict) -> None:
    threads = torch.get_num_threads()
    log(
        f"== 3. OpenL3 vs torchopenl3 ({n_windows} mel256 windows, 6144-d, batch 8, {threads} threads)"
    )
    e = openl3_embedder(wdir, cache)
    x = torch.randn(n_windows, 48000) * 0.1

    def run(batch: int) -> float:
        t0 = time.perf_counter()
        for i in range(0, n_windows, batch):
            e.network(e.frontend(x[i : i + batch]))
        return time.perf_counter() - t0

    # Both shapes warmed up first (oneDNN creates its primitives per shape: an unwarmed batch
    # shape made batching look slower than the loop), then interleaved rounds, best of each.
    sizes = (1, 2, 4, 8, 16)
    best = dict.fromkeys(sizes, float("inf"))
    with torch.inference_mode():
        for size in sizes:
            e.network(e.frontend(x[:size]))
        for _ in range(2):
            for size in sizes:
                best[size] = min(best[size], run(size))
    for size in sizes:
        log(
            f"batch {size:2d}: {best[size] / n_windows * 1000:.0f} ms per window (network + front end)"
        )
    fastest = min(best, key=best.get)
    log(f"fastest batch size: {fastest} (default {ol3.OpenL3Embedder().batch_size})")
    ours, loop = best[8], best[1]
    results.update(
        ours_batched_s=ours,
        ours_per_window_loop_s=loop,
        batch_ms_per_window={k: v / n_windows * 1000 for k, v in best.items()},
    )
    log(f"ours, batched:           {ours:.2f} s ({ours / n_windows * 1000:.0f} ms per window)")
    log(
        f"ours, per-window loop:   {loop:.2f} s ({loop / n_windows * 1000:.0f} ms per window) "
        f"-> batched is {loop / ours:.2f}x faster"
    )
    if not Path(python).exists():
        log(
            f"torchopenl3: not measured (no interpreter at {python}; create it with "
            "`python3 -m venv /tmp/t3 && /tmp/t3/bin/pip install torch==2.13.0 torchopenl3`)"
        )
        return
    proc = subprocess.run(
        [python, "-c", TORCHOPENL3_SCRIPT, str(threads), str(n_windows), "8"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        log(f"torchopenl3: failed to run: {proc.stderr.strip().splitlines()[-1:]}")
        return
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    results.update(torchopenl3_s=r["seconds"], speedup_vs_torchopenl3=r["seconds"] / ours)
    log(
        f"torchopenl3 {r['torch']}: {r['seconds']:.2f} s ({r['seconds'] / n_windows * 1000:.0f} ms per "
        f"window) -> ours is {r['seconds'] / ours:.2f}x faster (target >= 1.5x)"
    )


# -- 4. resamplers ------------------------------------------------------------------------------
def bench_resamplers(wdir: Path, cache: Path, results: dict) -> None:
    log("== 4. soxr vs resampy kaiser_best to 48 kHz: cosine of OpenL3 embeddings")
    from perceptual_audio.audio_io import load_audio

    clips = []
    rec = SHARED / "recordings"
    if rec.is_dir():
        for name in sorted(p.name for p in rec.glob("*.ogg"))[:4]:
            y, sr = load_audio(rec / name)
            clips.append((name, y[: int(3 * sr)], sr))
    else:
        clips.append(("synthetic", test_signal(3.0), SR_IN))
    e = openl3_embedder(wdir, cache, hop_seconds=0.25)
    cos_all = []
    for name, y, sr in clips:
        e.resampler = "soxr"
        a, _ = e.embed(y, sr)
        e.resampler = "resampy"
        b, _ = e.embed(y, sr)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        cos_all.append(cos)
        log(
            f"{name} ({sr} Hz): cosine mean {cos.mean():.6f}, min {cos.min():.6f}, "
            f"relative L2 {np.linalg.norm(a - b) / np.linalg.norm(b):.2e}"
        )
    c = np.concatenate(cos_all)
    results.update(resampler_cosine_min=float(c.min()), resampler_cosine_mean=float(c.mean()))
    y = test_signal(10.0, 22050)
    e.resampler = "soxr"
    t_soxr = _timeit(lambda: e.resample_numpy(y, 22050))
    e.resampler = "resampy"
    e.resample_numpy(y[:2205], 22050)
    t_resampy = _timeit(lambda: e.resample_numpy(y, 22050))
    log(
        f"(random weights) min cosine over {len(c)} frames: {c.min():.6f}; resampling 10 s "
        f"22.05k->48k: soxr {t_soxr * 1000:.0f} ms, resampy {t_resampy * 1000:.0f} ms"
    )


# -- 5. peak RSS of a long file ---------------------------------------------------------------
def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB: VmHWM (per address space; getrusage's
    ru_maxrss would carry the parent's peak across fork + exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(minutes: float, hop: float, wdir: str, cache: str) -> None:
    from perceptual_audio.audio_io import load_audio, save_wav

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        save_wav(path, test_signal(minutes * 60), SR_IN)
        e = openl3_embedder(Path(wdir), Path(cache), hop_seconds=hop)
        base_rss = peak_rss_mb()
        t0 = time.perf_counter()
        y, sr = load_audio(path)
        emb, ts = e.embed(y, sr)
        t = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "peak_rss_mb": peak_rss_mb(),
                "before_embed_rss_mb": base_rss,
                "seconds": t,
                "frames": int(emb.shape[0]),
                "output_mb": emb.nbytes / 2**20,
            }
        )
    )


def bench_long(wdir: Path, cache: Path, minutes: float, hop: float, results: dict) -> None:
    log(
        f"== 5. peak RSS, OpenL3 on a {minutes:g}-minute 16 kHz file (hop {hop:g} s, batch 8 windows)"
    )
    proc = subprocess.run(
        [sys.executable, __file__, "--_rss-child", str(minutes), str(hop), str(wdir), str(cache)],
        capture_output=True,
        text=True,
        timeout=7200,
    )
    if proc.returncode != 0:
        log(f"failed: {proc.stderr[-2000:]}")
        return
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    results.update(long_file=r)
    log(
        f"peak RSS {r['peak_rss_mb']:.0f} MB (model loaded: {r['before_embed_rss_mb']:.0f} MB; output "
        f"{r['frames']} x 6144 = {r['output_mb']:.0f} MB); {r['seconds']:.0f} s "
        f"= {r['seconds'] / (minutes * 60):.3f} s per audio second"
    )
    if hop != 0.1:
        extra = (minutes * 600 - r["frames"]) * 6144 * 4 / 2**20
        log(
            f"at hop 0.1 s the output grows by {extra:.0f} MB (to {minutes * 600:.0f} frames); the "
            f"working set of the chunked network does not change"
        )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=5.0, help="audio seconds for throughput")
    p.add_argument("--windows", type=int, default=24, help="windows for the torchopenl3 comparison")
    p.add_argument("--long-minutes", type=float, default=10.0)
    p.add_argument(
        "--long-hop",
        type=float,
        default=1.0,
        help="hop of the long-file run (0.1 takes ~30 min on 2 cores)",
    )
    p.add_argument("--skip-long", action="store_true")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--torchopenl3-python", default="/tmp/t3/bin/python")
    p.add_argument("--_rss-child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._rss_child:
        m, h, w, c = args._rss_child
        rss_child(float(m), float(h), w, c)
        return
    if args.quick:
        args.seconds, args.windows, args.long_minutes = 2.0, 4, 0.5
    results: dict = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        wdir, cache = Path(tmp) / "weights", Path(tmp) / "cache"
        synthetic_openl3_weights(wdir)
        bench_throughput(wdir, cache, args.seconds, results)
        bench_flops(results)
        bench_torchopenl3(wdir, cache, args.torchopenl3_python, args.windows, results)
        bench_resamplers(wdir, cache, results)
        if not args.skip_long:
            bench_long(wdir, cache, args.long_minutes, args.long_hop, results)
    log("== summary (JSON)")
    log(json.dumps(results, indent=1, sort_keys=True, default=float))


if __name__ == "__main__":
    os.environ.setdefault("PERCEPTUAL_AUDIO_OFFLINE", "1")
    main()
