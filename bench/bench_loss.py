"""Benchmark the perceptual losses: forward + backward time and peak memory per second of audio.

For each model and batch size, ``EmbeddingLoss(model, sample_rate=16000)`` (or
``DeepFeatureLoss`` with ``--loss deep``) is evaluated on an estimate that requires a gradient
and a reference that does not (the usual training setup), followed by ``backward()``. Each
(model, batch) runs in a fresh subprocess so that memory figures do not leak between runs.

Reported per configuration:
- ``s/audio-s``: wall seconds of forward + backward per second of audio (median of
  ``--repeats`` after one warm-up), i.e. ``time / (batch * seconds)``;
- ``peak MB``: peak memory above the level before the first forward pass (CPU: resident set
  size sampled every 2 ms from /proc; CUDA: ``torch.cuda.max_memory_allocated``), and the same
  divided by the seconds of audio in the batch (``MB/audio-s``).

Models whose weights are unavailable are skipped, unless ``--random-weights``: then their
architecture runs with random weights, which is valid for timing only (never for scores).

Usage::

    python bench/bench_loss.py                                  # all models, batch 1 and 8, CPU
    python bench/bench_loss.py --models cdpam --seconds 1 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: Rate of the waveforms given to the losses (the pipeline's rate).
INPUT_RATE = 16000
MODELS = ("cdpam", "openl3", "vggish")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRSS:
    """Samples the resident set size in a thread (torch releases the GIL inside its ops)."""

    def __init__(self, interval_s: float = 0.002) -> None:
        self.interval_s = interval_s
        self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval_s)

    def __enter__(self) -> _PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def make_embedder(name: str, device: str, random_weights: bool, openl3_hop_seconds: float):
    """The embedder with real weights, or (``random_weights``) its architecture when the weights
    are unavailable. Returns (embedder, weights label)."""
    from perceptual_audio.embeddings.base import get_embedder
    from perceptual_audio.errors import WeightsUnavailableError

    options = {"device": device}
    if name == "openl3":
        options.update(hop_seconds=openl3_hop_seconds)
    embedder = get_embedder(name, **options)
    try:
        embedder.load()
        return embedder, "real"
    except WeightsUnavailableError as e:
        if not random_weights:
            raise
        reason = str(e).splitlines()[0]
    import torch

    torch.manual_seed(0)
    if name == "cdpam":
        from perceptual_audio.embeddings.cdpam import build_model

        embedder._model = build_model().to(device).eval()
    elif name == "vggish":
        from perceptual_audio.embeddings.vggish import VGGishNetwork

        embedder.network = VGGishNetwork().to(device).eval()
    else:  # openl3 builds its network in __init__; only loading needs the files
        embedder.load = lambda: None
    return embedder, f"random (timing only; {reason[:80]})"


def run_one(args: argparse.Namespace) -> dict:
    import torch

    from perceptual_audio.loss import DeepFeatureLoss, EmbeddingLoss

    torch.manual_seed(0)
    embedder, weights_label = make_embedder(
        args.model, args.device, args.random_weights, args.openl3_hop_seconds
    )
    cls = EmbeddingLoss if args.loss == "embedding" else DeepFeatureLoss
    loss_fn = cls(embedder, sample_rate=INPUT_RATE).to(args.device)
    n = int(args.seconds * INPUT_RATE)
    reference = 0.1 * torch.randn(args.batch, n, device=args.device)
    noisy = reference + 0.03 * torch.randn(args.batch, n, device=args.device)
    cuda = args.device.startswith("cuda")

    def step() -> None:
        x = noisy.clone().requires_grad_(True)
        loss_fn(x, reference).backward()
        if cuda:
            torch.cuda.synchronize()

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()  # warm-up, also the memory measurement
        peak = torch.cuda.max_memory_allocated() - base
    else:
        base = _rss_bytes()
        with _PeakRSS() as sampler:
            step()
        peak = sampler.peak - base
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    audio_seconds = args.batch * args.seconds
    median = statistics.median(times)
    return {
        "model": args.model,
        "loss": args.loss,
        "batch": args.batch,
        "seconds": args.seconds,
        "device": args.device,
        "weights": weights_label,
        "threads": torch.get_num_threads(),
        "median_s": median,
        "s_per_audio_s": median / audio_seconds,
        "peak_mb": peak / 2**20,
        "peak_mb_per_audio_s": peak / 2**20 / audio_seconds,
        "cpu_count": os.cpu_count(),
        "loadavg_1min": os.getloadavg()[0],
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="forward+backward time and peak memory of the perceptual losses",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--seconds", type=float, default=1.0, help="audio per batch item, seconds")
    p.add_argument("--repeats", type=int, default=2, help="timed repetitions after the warm-up")
    p.add_argument("--loss", choices=("embedding", "deep"), default="embedding")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--openl3-hop-seconds",
        type=float,
        default=0.5,
        help="OpenL3 window hop (its default 0.1 s makes 5x the windows)",
    )
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="time models without weights using random ones (timing only)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    p.add_argument("--model", help=argparse.SUPPRESS)  # child mode: one configuration
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.model is not None:
        print("RESULT " + json.dumps(run_one(args)), flush=True)
        return 0
    rows = []
    header = f"{'model':7} {'loss':9} {'batch':>5} {'s/audio-s':>10} {'peak MB':>9} {'MB/audio-s':>10}  weights"
    print(
        f"device {args.device}, {args.seconds:g} s of {INPUT_RATE} Hz audio per item, "
        f"median of {args.repeats} after a warm-up; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} (timings on a shared machine scale with it)"
    )
    print(header)
    for model in args.models:
        for batch in args.batches:
            cmd = [
                sys.executable,
                __file__,
                "--model",
                model,
                "--batch",
                str(batch),
                "--seconds",
                str(args.seconds),
                "--repeats",
                str(args.repeats),
                "--loss",
                args.loss,
                "--device",
                args.device,
                "--openl3-hop-seconds",
                str(args.openl3_hop_seconds),
            ]
            if args.random_weights:
                cmd.append("--random-weights")
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                print(f"{model:7} {args.loss:9} {batch:5d}  failed: {err}")
                continue
            row = json.loads(lines[-1][len("RESULT ") :])
            rows.append(row)
            print(
                f"{model:7} {args.loss:9} {batch:5d} {row['s_per_audio_s']:10.3f} "
                f"{row['peak_mb']:9.0f} {row['peak_mb_per_audio_s']:10.0f}  {row['weights']}",
                flush=True,
            )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if args.json is not None:
        from perceptual_audio.files import atomic_write_json

        atomic_write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
