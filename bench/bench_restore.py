"""Benchmark restoration steps: seconds per Adam step per audio-second, peak memory, and the
ratio of one training step (forward + backward + Adam update) to one forward pass.

For each loss and mode, a degraded signal (a speech-like tone in white noise) of
``--seconds`` at 16 kHz is restored towards its clean version for ``--steps`` Adam steps by
:func:`perceptual_audio.restoration.restore` (the code stage 2 runs). Reported per line:

- ``s/step/audio-s``: (restore wall time - its two no-grad loss evaluations) / steps / seconds,
  after a one-step warm-up restoration;
- ``fwd s``: one no-grad forward of the loss (median of 3);
- ``step/fwd``: one training step over one forward (autograd's usual cost is 2-3x);
- ``peak MB``: resident set size above the level before the run (CPU; sampled every 2 ms),
  or ``torch.cuda.max_memory_allocated`` on CUDA;
- ``cpu s/step/audio-s`` and ``cpu step/fwd``: the same from the process's CPU time (all its
  threads), which other jobs on a shared machine disturb far less than wall time.

Each (loss, mode) runs in a fresh subprocess so memory figures do not leak between runs.

Variants of the embedding losses (``--variants``, both by default, side by side so a noisy
shared machine compares them under the same load):

- ``fast``: the code as it is: the fast CDPAM encoder for both losses (``cdpam-deep`` through
  its unstrided form, :meth:`FastEncoder.activations`), the reference's features computed
  once and reused at every step;
- ``ref``: the reference path: the reference's features recomputed at every step, and
  ``cdpam-deep`` through the package's encoder loop (what stage 2 ran before; ``cdpam``'s
  embedding loss already used the fast encoder). ``--cdpam-encoder`` sets the encoder of
  ``fast``.

Usage::

    python bench/bench_restore.py                              # baselines and CDPAM, CPU
    python bench/bench_restore.py --losses cdpam,cdpam-deep --modes mask --variants fast,ref
    python bench/bench_restore.py --losses cdpam,cdpam-deep --threads 1   # CPU time exact
    python bench/bench_restore.py --device cuda --seconds 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SR = 16000


def _signal(seconds: float):
    import numpy as np

    t = np.arange(int(seconds * SR)) / SR
    clean = 0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    noise = np.random.default_rng(0).standard_normal(t.size) * 0.03
    return (clean + noise).astype("float32"), clean.astype("float32")


def run_one(
    loss: str,
    mode: str,
    seconds: float,
    steps: int,
    device: str,
    encoder: str,
    variant: str,
    threads: int = 0,
) -> dict:
    import torch
    from bench_loss import _PeakRSS

    from perceptual_audio.restoration import build_loss, restore

    if threads > 0:
        torch.set_num_threads(threads)
    degraded, clean = _signal(seconds)
    if variant == "ref" and loss.endswith("-deep"):
        encoder = "reference"
    options = {"device": device, "encoder": encoder} if loss.startswith("cdpam") else {}
    loss_fn = build_loss(loss, sample_rate=SR, model_options=options).to(device)
    if hasattr(loss_fn, "cache_reference"):
        loss_fn.cache_reference = variant != "ref"
    x = torch.from_numpy(degraded).to(device)
    ref = torch.from_numpy(clean).to(device)
    fwd, fwd_cpu = [], []
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            loss_fn(x, ref)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        fwd.append(time.perf_counter() - t0)
        fwd_cpu.append(time.process_time() - c0)
    forward_s, forward_cpu = statistics.median(fwd), statistics.median(fwd_cpu)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    restore(degraded, clean, loss=loss_fn, mode=mode, steps=1, device=device)  # warm-up
    sampler = _PeakRSS()
    before = sampler.peak
    c0 = time.process_time()
    with sampler:
        result = restore(degraded, clean, loss=loss_fn, mode=mode, steps=steps, device=device)
    step_cpu = max(time.process_time() - c0 - 2 * forward_cpu, 0.0) / steps
    if device.startswith("cuda"):
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak_mb = (sampler.peak - before) / 2**20
    step_s = max(result.seconds - 2 * forward_s, 0.0) / steps
    return {
        "loss": loss, "mode": mode, "variant": variant, "device": device, "seconds": seconds, "steps": steps,
        "s_per_step_per_audio_s": step_s / seconds, "forward_s": forward_s,
        "step_over_forward": step_s / forward_s, "peak_mb": peak_mb,
        "cpu_s_per_step_per_audio_s": step_cpu / seconds,
        "cpu_step_over_forward": step_cpu / max(forward_cpu, 1e-9),
        "loss_before": result.loss_before, "loss_after": result.loss_after,
        "threads": torch.get_num_threads(),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--losses", default="l1,sisdr,mrstft,mel,cdpam,cdpam-deep")
    parser.add_argument("--modes", default="mask,waveform")
    parser.add_argument("--seconds", type=float, default=1.0, help="audio per item (s)")
    parser.add_argument("--steps", type=int, default=3, help="Adam steps timed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cdpam-encoder", default="fast", help="fast | direct | reference")
    parser.add_argument(
        "--variants", default="fast,ref", help="embedding losses: fast and/or ref (see above)"
    )
    parser.add_argument(
        "--threads", type=int, default=0,
        help="torch threads (0: torch's default); 1 makes the CPU-time columns exact (no "
        "spin-waiting threads) on a shared machine",
    )  # fmt: skip
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: LOSS:MODE:VARIANT
    args = parser.parse_args(argv)
    if args.one:
        loss, mode, variant = args.one.split(":")
        res = run_one(
            loss, mode, args.seconds, args.steps, args.device, args.cdpam_encoder, variant,
            args.threads,
        )  # fmt: skip
        print(json.dumps(res))
        return 0
    print(f"{'loss':<12}{'mode':<10}{'variant':<8}{'s/step/audio-s':>16}{'fwd s':>9}"
          f"{'step/fwd':>10}{'peak MB':>9}{'cpu s/step/a-s':>16}{'cpu step/fwd':>13}"
          "  loss before -> after")  # fmt: skip
    for loss in args.losses.split(","):
        embedding = loss.startswith("cdpam") or loss.split("-")[0] in ("openl3", "vggish")
        for mode in args.modes.split(","):
            for variant in args.variants.split(",") if embedding else ["-"]:
                _print_one(args, loss, mode, variant)
    return 0


def _print_one(args: argparse.Namespace, loss: str, mode: str, variant: str) -> None:
    cmd = [sys.executable, __file__, "--one", f"{loss}:{mode}:{variant}", "--seconds",
           str(args.seconds), "--steps", str(args.steps), "--device", args.device,
           "--cdpam-encoder", args.cdpam_encoder, "--threads", str(args.threads)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        print(f"{loss:<12}{mode:<10}{variant:<8} failed: {out.stderr.strip().splitlines()[-1]}")
        return
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{loss:<12}{mode:<10}{variant:<8}{r['s_per_step_per_audio_s']:>16.4f}"
          f"{r['forward_s']:>9.3f}{r['step_over_forward']:>10.2f}{r['peak_mb']:>9.0f}"
          f"{r['cpu_s_per_step_per_audio_s']:>16.4f}{r['cpu_step_over_forward']:>13.2f}"
          f"  {r['loss_before']:.4g} -> {r['loss_after']:.4g}", flush=True)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
