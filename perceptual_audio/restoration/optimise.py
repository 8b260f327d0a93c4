"""Restoration by Adam: optimise a per-bin STFT mask or the waveform under one loss.

Start from the degraded audio and move towards its clean reference by minimising
``loss(estimate, clean)``:

- ``mask``: a gain in [0, 1] per STFT bin (``sigmoid`` of a free parameter) applied to the
  degraded signal's STFT, then the inverse STFT. What a mask-based enhancer can do: it can
  remove energy, never add it (with a Hann window at 75 % overlap the inverse STFT is an
  orthogonal projection, so the output's energy is at most the masked spectrum's).
- ``waveform``: the samples themselves, so any change is allowed; it probes whether a loss
  can be satisfied by changes people would not accept.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from perceptual_audio.errors import ParameterError

#: Restoration modes.
MODES = ("mask", "waveform")
#: Mask STFT: FFT size and hop in samples (32 ms / 8 ms at 16 kHz), periodic Hann window.
MASK_FFT_SIZE = 512
MASK_HOP = MASK_FFT_SIZE // 4
#: Gain every mask bin starts at (-0.45 dB): the sigmoid's slope there leaves room to move.
MASK_INIT_GAIN = 0.95
#: Adam learning rate per mode: mask in logit units per step (0.5: ten steps can take a bin
#: from 0.95 to about 0.1), waveform in sample amplitude (full scale 1.0) per step.
DEFAULT_LR = {"mask": 0.5, "waveform": 1e-3}
#: Default number of Adam steps (see README "Does it work as a loss?": enough for the
#: baselines to move, affordable for CDPAM on CPU).
DEFAULT_STEPS = 30


@dataclass(frozen=True)
class RestoreResult:
    """What :func:`restore` returns.

    Attributes
    ----------
    audio : np.ndarray [shape=(n,), float32]
        The restored waveform, same length and rate as the degraded input.
    loss_before, loss_after : float
        ``loss(degraded, clean)`` and ``loss(audio, clean)``.
    steps : int
    seconds : float
        Wall time of the optimisation (loss construction not included).
    gains : np.ndarray or None [shape=(n_fft // 2 + 1, frames)]
        Mask mode: the final gains in [0, 1]; None in waveform mode.
    """

    audio: np.ndarray
    loss_before: float
    loss_after: float
    steps: int
    seconds: float
    gains: np.ndarray | None = None


def _window(device: torch.device) -> torch.Tensor:
    return torch.hann_window(MASK_FFT_SIZE, periodic=True, device=device)


def stft(x: torch.Tensor) -> torch.Tensor:
    """Complex STFT (..., n_fft // 2 + 1, frames) of the mask mode (centred frames)."""
    return torch.stft(
        x, MASK_FFT_SIZE, MASK_HOP, window=_window(x.device), center=True, return_complex=True
    )


def istft(spec: torch.Tensor, length: int) -> torch.Tensor:
    """Inverse of :func:`stft` (least squares overlap-add), ``length`` samples."""
    return torch.istft(
        spec, MASK_FFT_SIZE, MASK_HOP, window=_window(spec.device), center=True, length=length
    )


def _check(degraded: np.ndarray, clean: np.ndarray, mode: str, steps: int, lr: float) -> None:
    if mode not in MODES:
        raise ParameterError(f"restore: mode must be one of {', '.join(MODES)}, got {mode!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ParameterError(f"restore: steps must be a positive integer, got {steps!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ParameterError(f"restore: lr must be a positive number, got {lr!r}")
    for label, x in (("degraded", degraded), ("clean", clean)):
        if x.ndim != 1 or x.size == 0:
            raise ParameterError(f"restore: {label} must be a non-empty 1-D array, got {x.shape}")
    if degraded.shape != clean.shape:
        raise ParameterError(
            f"restore: degraded and clean must have the same length, got {degraded.size} and "
            f"{clean.size} samples"
        )


def restore(
    degraded: np.ndarray,
    clean: np.ndarray,
    *,
    loss: nn.Module,
    mode: str = "mask",
    steps: int = DEFAULT_STEPS,
    lr: float | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> RestoreResult:
    """Optimise ``degraded`` towards ``clean`` under ``loss`` with Adam.

    Parameters
    ----------
    degraded, clean : np.ndarray [shape=(n,)]
        Mono waveforms at the rate ``loss`` was built for, same length.
    loss : nn.Module
        ``loss(estimate, reference)`` on (n,) tensors, a scalar to minimise (see
        :func:`perceptual_audio.restoration.build_loss`).
    mode : {"mask", "waveform"}
    steps : int
        Adam steps (> 0).
    lr : float or None
        Adam learning rate; None: :data:`DEFAULT_LR` of the mode.
    seed : int
        Seeds torch's generator before optimising (the result is deterministic for a seed,
        device and thread count).
    device : str or torch.device

    Returns
    -------
    RestoreResult
    """
    degraded = np.asarray(degraded, dtype=np.float32)
    clean = np.asarray(clean, dtype=np.float32)
    lr = DEFAULT_LR.get(mode, 0.0) if lr is None else float(lr)
    _check(degraded, clean, mode, steps, lr)
    dev = torch.device(device)
    torch.manual_seed(int(seed))
    loss = loss.to(dev)
    x = torch.from_numpy(degraded).to(dev)
    ref = torch.from_numpy(clean).to(dev)
    t0 = time.perf_counter()
    with torch.no_grad():
        before = float(loss(x, ref))
    if mode == "mask":
        spec = stft(x)
        init = math.log(MASK_INIT_GAIN / (1.0 - MASK_INIT_GAIN))
        theta = torch.full(spec.shape, init, device=dev, requires_grad=True)

        def estimate() -> torch.Tensor:
            return istft(torch.sigmoid(theta) * spec, x.numel())

    else:
        theta = x.clone().requires_grad_(True)

        def estimate() -> torch.Tensor:
            return theta

    opt = torch.optim.Adam([theta], lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        value = loss(estimate(), ref)
        value.backward()
        opt.step()
    with torch.no_grad():
        out = estimate().detach()
        after = float(loss(out, ref))
    gains = torch.sigmoid(theta).detach().cpu().numpy() if mode == "mask" else None
    return RestoreResult(
        audio=out.cpu().numpy().astype(np.float32),
        loss_before=before,
        loss_after=after,
        steps=steps,
        seconds=time.perf_counter() - t0,
        gains=gains,
    )
