"""Differentiable torch spectrogram front ends.

Everything in a ``forward`` path here is torch only (no NumPy), so gradients flow from the
output back to the waveform. Filterbanks are computed once at construction (librosa) and kept
as buffers.

Reusable helpers (VGGish and the losses use them too):

- :func:`frame_signal`: ``tf.signal.frame`` semantics (frames from sample 0, optional end pad);
- :func:`stft_magnitude`: ``|tf.signal.stft|`` semantics (no centring, periodic Hann);
- :func:`safe_magnitude`: ``|z|`` with a finite gradient at ``z == 0``;
- :func:`mel_filterbank`: librosa's mel matrix as a torch tensor ``(n_freq, n_mels)``;
- :func:`kapre_v014_decibel`: openl3 0.4.2's dB scaling (per-example max, 80 dB floor).

The OpenL3 front end (:class:`OpenL3Frontend`) reproduces the kapre path of openl3 0.4.2
(kapre 0.3.x ``STFT`` -> ``Magnitude`` -> [``ApplyFilterbank(mel)``] -> openl3's own
``kapre_v0_1_4_magnitude_to_decibel`` -> ``Permute`` to (freq, time)):

=========  =====  ===  =======  ===============  ==========
repr       n_fft  hop  pad_end  bins             frames/1 s
=========  =====  ===  =======  ===============  ==========
linear     512    242  no       257 (FFT bins)   197
mel128     2048   242  yes      128 mel          199
mel256     2048   242  yes      256 mel          199
=========  =====  ===  =======  ===============  ==========

Mel filterbank: ``librosa.filters.mel(sr=48000, n_fft, n_mels, fmin=0, fmax=24000,
htk=False, norm="slaney")`` applied to the *magnitude* (not the power) spectrum. dB:
``10 log10(max(x, 1e-10))`` minus its maximum over the whole window, floored at -80 dB.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from perceptual_audio.errors import ParameterError

#: Squared magnitudes below this are clamped before the square root (keeps gradients finite
#: at exact zeros, e.g. zero-padded frames). Far below any dB floor used here.
MAGNITUDE_SQUARED_FLOOR = 1e-30

#: openl3 0.4.2 front-end constants.
OPENL3_SAMPLE_RATE = 48000
OPENL3_HOP_LENGTH = 242
OPENL3_AMIN = 1e-10
OPENL3_DYNAMIC_RANGE_DB = 80.0
#: input_repr -> (n_fft, n_mels or None for linear, pad_end)
OPENL3_FRONTENDS: dict[str, tuple[int, int | None, bool]] = {
    "linear": (512, None, False),
    "mel128": (2048, 128, True),
    "mel256": (2048, 256, True),
}


def n_frames_tf(n_samples: int, frame_length: int, hop_length: int, *, pad_end: bool) -> int:
    """Number of frames ``tf.signal.frame`` gives for ``n_samples``.

    ``pad_end=False``: complete frames only, ``1 + (n - frame_length) // hop`` (0 when the
    signal is shorter than a frame). ``pad_end=True``: ``ceil(n / hop)``.
    """
    if pad_end:
        return -(-n_samples // hop_length)
    if n_samples < frame_length:
        return 0
    return 1 + (n_samples - frame_length) // hop_length


def frame_signal(
    x: torch.Tensor, frame_length: int, hop_length: int, *, pad_end: bool = False
) -> torch.Tensor:
    """Split the last axis into frames, as ``tf.signal.frame`` does.

    Parameters
    ----------
    x : torch.Tensor [shape=(..., n)]
    frame_length, hop_length : int
        In samples.
    pad_end : bool
        Zero-pad the end so that every sample starts a frame's hop (``ceil(n / hop)``
        frames, the last ones partly zeros); otherwise only complete frames.

    Returns
    -------
    torch.Tensor [shape=(..., T, frame_length)]
        A strided view when no padding is needed.
    """
    n = x.shape[-1]
    t = n_frames_tf(n, frame_length, hop_length, pad_end=pad_end)
    if t == 0:
        raise ParameterError(
            f"frame_signal: signal of {n} samples is shorter than one frame of {frame_length}"
        )
    needed = (t - 1) * hop_length + frame_length
    if needed > n:
        x = F.pad(x, (0, needed - n))
    return x.unfold(-1, frame_length, hop_length)


def hann_window(
    length: int, *, periodic: bool = True, device=None, dtype=torch.float32
) -> torch.Tensor:
    """Hann window; ``periodic=True`` matches ``tf.signal.hann_window`` and
    ``scipy.signal.get_window("hann", N)``."""
    return torch.hann_window(length, periodic=periodic, device=device, dtype=dtype)


def safe_magnitude(z: torch.Tensor) -> torch.Tensor:
    """``|z|`` of a complex tensor with a zero (not NaN) gradient where ``z == 0``."""
    power = z.real.square() + z.imag.square()
    return torch.sqrt(torch.clamp(power, min=MAGNITUDE_SQUARED_FLOOR))


def stft_magnitude(
    x: torch.Tensor,
    *,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    window: torch.Tensor | None = None,
    pad_end: bool = False,
) -> torch.Tensor:
    """Magnitude STFT with ``tf.signal.stft`` framing (no centring).

    Parameters
    ----------
    x : torch.Tensor [shape=(B, n)]
        Waveforms.
    n_fft : int
        FFT size; frames are zero-padded to it when ``win_length < n_fft``.
    hop_length : int
        Samples between frame starts.
    win_length : int or None
        Frame length in samples (default ``n_fft``).
    window : torch.Tensor [shape=(win_length,)] or None
        Default: periodic Hann.
    pad_end : bool
        As in :func:`frame_signal`.

    Returns
    -------
    torch.Tensor [shape=(B, T, n_fft // 2 + 1)]
        ``|rfft(window * frame, n_fft)|``, unnormalised.
    """
    win_length = n_fft if win_length is None else win_length
    if window is None:
        window = hann_window(win_length, device=x.device, dtype=x.dtype)
    frames = frame_signal(x, win_length, hop_length, pad_end=pad_end)
    spec = torch.fft.rfft(frames * window, n=n_fft, dim=-1)
    return safe_magnitude(spec)


def mel_filterbank(
    *,
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    fmin_hz: float = 0.0,
    fmax_hz: float | None = None,
    htk: bool = False,
    norm: str | None = "slaney",
) -> torch.Tensor:
    """librosa's mel filterbank, transposed for right-multiplication.

    Returns
    -------
    torch.Tensor [shape=(n_fft // 2 + 1, n_mels), dtype=float32]
    """
    import librosa  # deferred: librosa is slow to import (numba)

    fb = librosa.filters.mel(
        sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin_hz, fmax=fmax_hz, htk=htk, norm=norm
    )
    return torch.from_numpy(np.ascontiguousarray(fb.T, dtype=np.float32))


def kapre_v014_decibel(
    x: torch.Tensor, *, amin: float = OPENL3_AMIN, dynamic_range_db: float = OPENL3_DYNAMIC_RANGE_DB
) -> torch.Tensor:
    """openl3 0.4.2's ``kapre_v0_1_4_magnitude_to_decibel``.

    ``10 log10(max(x, amin))``, minus its maximum over all non-batch axes (so the loudest
    bin of each example is 0 dB), floored at ``-dynamic_range_db``.

    Parameters
    ----------
    x : torch.Tensor [shape=(B, ...)]
        Non-negative magnitudes.
    """
    log_spec = 10.0 * torch.log10(torch.clamp(x, min=amin))
    peak = log_spec.flatten(1).amax(dim=1).reshape((-1,) + (1,) * (x.dim() - 1))
    return torch.clamp(log_spec - peak, min=-dynamic_range_db)


class OpenL3Frontend(nn.Module):
    """The openl3 0.4.2 (kapre) spectrogram of 1-s windows at 48 kHz.

    Parameters
    ----------
    input_repr : {"linear", "mel128", "mel256"}

    Forward
    -------
    x : torch.Tensor [shape=(B, 48000)]
    returns torch.Tensor [shape=(B, 1, F, T)]
        dB spectrogram, frequency on axis 2 (257/128/256 bins), time on axis 3 (197/199).
    """

    def __init__(self, input_repr: str = "mel256") -> None:
        super().__init__()
        if input_repr not in OPENL3_FRONTENDS:
            raise ParameterError(
                f"input_repr must be one of {', '.join(OPENL3_FRONTENDS)}, got {input_repr!r}"
            )
        self.input_repr = input_repr
        self.n_fft, self.n_mels, self.pad_end = OPENL3_FRONTENDS[input_repr]
        self.hop_length = OPENL3_HOP_LENGTH
        self.register_buffer("window", hann_window(self.n_fft), persistent=False)
        if self.n_mels is not None:
            fb = mel_filterbank(
                sample_rate=OPENL3_SAMPLE_RATE,
                n_fft=self.n_fft,
                n_mels=self.n_mels,
                fmin_hz=0.0,
                fmax_hz=OPENL3_SAMPLE_RATE / 2,
                htk=False,
                norm="slaney",
            )
            self.register_buffer("mel_fb", fb, persistent=False)
        else:
            self.mel_fb = None

    def output_shape(self, n_samples: int = OPENL3_SAMPLE_RATE) -> tuple[int, int]:
        """(n_freq_bins, n_frames) for a window of ``n_samples``."""
        n_bins = self.n_mels if self.n_mels is not None else self.n_fft // 2 + 1
        return n_bins, n_frames_tf(n_samples, self.n_fft, self.hop_length, pad_end=self.pad_end)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mag = stft_magnitude(
            x,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self.window,
            pad_end=self.pad_end,
        )  # (B, T, n_freq)
        if self.mel_fb is not None:
            mag = mag @ self.mel_fb  # (B, T, n_mels)
        db = kapre_v014_decibel(mag)
        return db.transpose(1, 2).unsqueeze(1)  # (B, 1, F, T)


def openl3_window_count(n_samples: int, *, hop_length: int, center: bool, frame_length: int) -> int:
    """Number of 1-s windows openl3 0.4.2 takes from ``n_samples`` (``_get_num_windows``)."""
    if n_samples <= 0:
        raise ParameterError(f"openl3 needs a non-empty waveform, got {n_samples} samples")
    if center:
        n_samples += frame_length // 2
    if n_samples <= frame_length:
        return 1
    return 1 + math.ceil((n_samples - frame_length) / hop_length)
