"""VGGish's reference parameters (``vggish_params.py``) and its log-mel front end as a differentiable torch module."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from perceptual_audio.errors import (
    ParameterError,
)

logger = logging.getLogger(__name__)


# -- reference parameters (vggish_params.py) ----------------------------------------------------
#: Sample rate in Hz the model runs at.
SAMPLE_RATE = 16000
#: STFT analysis window in seconds (25 ms) and in samples.
STFT_WINDOW_SECONDS = 0.025
STFT_WINDOW_SAMPLES = int(round(SAMPLE_RATE * STFT_WINDOW_SECONDS))  # 400
#: STFT hop in seconds (10 ms) and in samples.
STFT_HOP_SECONDS = 0.010
STFT_HOP_SAMPLES = int(round(SAMPLE_RATE * STFT_HOP_SECONDS))  # 160
#: FFT size: the next power of two above the window (mel_features.log_mel_spectrogram).
FFT_SIZE = 2 ** int(np.ceil(np.log2(STFT_WINDOW_SAMPLES)))  # 512
#: Number of rfft bins (FFT_SIZE / 2 + 1).
N_SPECTRUM_BINS = FFT_SIZE // 2 + 1  # 257
#: Mel bands and their frequency range in Hz.
NUM_MEL_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
#: Offset added to the mel magnitudes before the natural log (avoids log(0)).
LOG_OFFSET = 0.01
#: HTK mel scale constants: mel = 1127 ln(1 + f / 700).
_MEL_BREAK_FREQUENCY_HZ = 700.0
_MEL_HIGH_FREQUENCY_Q = 1127.0
#: One example ("patch"): 96 frames x 64 bands, 0.96 s, with a hop of 0.96 s (no overlap).
PATCH_FRAMES = 96
PATCH_HOP_FRAMES = 96
PATCH_SECONDS = PATCH_FRAMES * STFT_HOP_SECONDS  # 0.96
PATCH_HOP_SECONDS = PATCH_HOP_FRAMES * STFT_HOP_SECONDS  # 0.96
#: Samples one patch needs (0.975 s), and the hop between patches in samples.
PATCH_SAMPLES = STFT_WINDOW_SAMPLES + (PATCH_FRAMES - 1) * STFT_HOP_SAMPLES  # 15600
PATCH_HOP_SAMPLES = PATCH_HOP_FRAMES * STFT_HOP_SAMPLES  # 15360
#: Size of the embedding.
EMBEDDING_SIZE = 128
#: PCA post-processing: clip range of the PCA'd embedding and the 8-bit scale.
QUANTIZE_MIN_VAL = -2.0
QUANTIZE_MAX_VAL = 2.0
QUANTIZE_LEVELS = 255.0


#: Resamplers accepted by :class:`VGGishEmbedder` for input at another rate.
RESAMPLERS = ("soxr", "resampy")


# -- front end --------------------------------------------------------------------------------
def hertz_to_mel(frequencies_hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: ``1127 ln(1 + f / 700)``.

    Parameters
    ----------
    frequencies_hz : float or np.ndarray
        Frequencies in Hz.

    Returns
    -------
    np.ndarray
        Same shape, in mel.
    """
    return _MEL_HIGH_FREQUENCY_Q * np.log1p(
        np.asarray(frequencies_hz, dtype=np.float64) / _MEL_BREAK_FREQUENCY_HZ
    )


def mel_weight_matrix(
    *,
    n_mel_bands: int = NUM_MEL_BANDS,
    n_spectrum_bins: int = N_SPECTRUM_BINS,
    sample_rate: int = SAMPLE_RATE,
    fmin_hz: float = MEL_MIN_HZ,
    fmax_hz: float = MEL_MAX_HZ,
) -> np.ndarray:
    """Mel filterbank of the VGGish reference (``mel_features.spectrogram_to_mel_matrix``).

    Triangles are linear in mel, have unit peak (no area normalisation), have band edges equally
    spaced in HTK mel between ``fmin_hz`` and ``fmax_hz``, and the DC bin gets weight zero in
    every band (HTK ignores it), whatever ``fmin_hz`` is.

    Parameters
    ----------
    n_mel_bands : int
        Number of mel bands (columns).
    n_spectrum_bins : int
        Number of rfft bins (rows), ``n_fft // 2 + 1``; bin ``k`` sits at
        ``k * (sample_rate / 2) / (n_spectrum_bins - 1)`` Hz.
    sample_rate : int
        Sample rate in Hz of the analysed audio.
    fmin_hz, fmax_hz : float
        Lower edge of the lowest band and upper edge of the highest band, in Hz.

    Returns
    -------
    np.ndarray [shape=(n_spectrum_bins, n_mel_bands), dtype=float64]
        ``mel = spectrum @ matrix``.

    Raises
    ------
    ParameterError
        If the band edges are negative, out of order, or above Nyquist.
    """
    nyquist_hz = sample_rate / 2.0
    if fmin_hz < 0.0:
        raise ParameterError(f"mel_weight_matrix: fmin_hz must be >= 0, got {fmin_hz}")
    if fmin_hz >= fmax_hz:
        raise ParameterError(
            f"mel_weight_matrix: fmin_hz must be < fmax_hz, got fmin_hz={fmin_hz}, fmax_hz={fmax_hz}"
        )
    if fmax_hz > nyquist_hz:
        raise ParameterError(
            f"mel_weight_matrix: fmax_hz must be <= Nyquist ({nyquist_hz} Hz), got {fmax_hz}"
        )
    bins_mel = hertz_to_mel(np.linspace(0.0, nyquist_hz, n_spectrum_bins))[:, None]
    edges_mel = np.linspace(hertz_to_mel(fmin_hz), hertz_to_mel(fmax_hz), n_mel_bands + 2)
    lower, centre, upper = edges_mel[:-2], edges_mel[1:-1], edges_mel[2:]
    rising = (bins_mel - lower) / (centre - lower)
    falling = (upper - bins_mel) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # the reference zeroes the DC bin explicitly
    return weights


def periodic_hann(window_samples: int) -> torch.Tensor:
    """Periodic Hann window ``0.5 - 0.5 cos(2 pi n / N)``, n = 0..N-1 (float64, shape (N,))."""
    n = torch.arange(window_samples, dtype=torch.float64)
    return 0.5 - 0.5 * torch.cos(2.0 * torch.pi * n / window_samples)


def n_stft_frames(n_samples: int) -> int:
    """Number of complete 400-sample STFT frames (hop 160) in ``n_samples`` samples."""
    if n_samples < STFT_WINDOW_SAMPLES:
        return 0
    return 1 + (n_samples - STFT_WINDOW_SAMPLES) // STFT_HOP_SAMPLES


def n_patches(n_samples: int) -> int:
    """Number of 0.96 s patches for ``n_samples`` at 16 kHz: at least 1 (short clips are padded)."""
    if n_samples < PATCH_SAMPLES:
        return 1
    return 1 + (n_stft_frames(n_samples) - PATCH_FRAMES) // PATCH_HOP_FRAMES


def is_short(n_samples: int) -> bool:
    """True when ``n_samples`` (16 kHz) is shorter than one patch (15 600 samples, 0.975 s)."""
    return n_samples < PATCH_SAMPLES


class LogMelFrontend(nn.Module):
    """The VGGish log-mel front end in torch, differentiable with respect to the waveform.

    Computed in float64, as the NumPy reference does: in float32 the STFT's rounding error
    (about 1e-7 of a frame's peak magnitude) reaches 3e-4 in the log of the weakest bands next to
    a loud tone, because ``log(mel + 0.01)`` magnifies absolute errors near 0.01. The cost is
    negligible next to the network. Buffers: ``window`` (400,) periodic Hann and ``mel_matrix``
    (257, 64), float64.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", periodic_hann(STFT_WINDOW_SAMPLES), persistent=False)
        self.register_buffer("mel_matrix", torch.from_numpy(mel_weight_matrix()), persistent=False)

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """Log-mel spectrogram.

        Parameters
        ----------
        waveform : torch.Tensor [shape=(B, n)]
            16 kHz mono audio, ``n >= 400``.

        Returns
        -------
        torch.Tensor [shape=(B, F, 64), dtype=float32]
            ``log(mel + 0.01)`` for the ``F = 1 + (n - 400) // 160`` complete frames.
        """
        x = waveform.to(torch.float64)
        frames = x.unfold(-1, STFT_WINDOW_SAMPLES, STFT_HOP_SAMPLES)  # (B, F, 400)
        spectrum = torch.fft.rfft(frames * self.window, n=FFT_SIZE).abs()  # (B, F, 257)
        return torch.log(spectrum @ self.mel_matrix + LOG_OFFSET).to(torch.float32)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Patches of log-mel frames.

        Parameters
        ----------
        waveform : torch.Tensor [shape=(B, n)]
            16 kHz mono audio. Shorter than 15 600 samples: zero-padded at the end to one patch.

        Returns
        -------
        torch.Tensor [shape=(B, T, 96, 64)]
            ``T = n_patches(n)`` patches (time x mel); frames after the last complete patch are
            dropped, as in the reference.
        """
        n = waveform.shape[-1]
        if n < PATCH_SAMPLES:
            waveform = nn.functional.pad(waveform, (0, PATCH_SAMPLES - n))
        n_out = n_patches(n)
        log_mel = self.log_mel(waveform)[:, : n_out * PATCH_FRAMES]
        return log_mel.reshape(waveform.shape[0], n_out, PATCH_FRAMES, NUM_MEL_BANDS)
