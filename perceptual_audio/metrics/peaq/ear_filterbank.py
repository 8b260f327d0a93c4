"""The filter-bank-based peripheral ear model of ITU-R BS.1387-1 (Annex 2 section 2.2),
used by the advanced version.

Vectorised: the 40 complex FIR filters (Table 8, eq. 29) with their delays (eq. 31) and the
outer/middle-ear weights (eq. 32) are one (1457, 80) matrix applied to a strided view of the
input at every 32nd sample; frequency spreading (2.2.7) is two matrix products per output
sample, with the level-dependent upper slope smoothed over time by :func:`scipy.signal.lfilter`;
backward masking (eq. 35) is a convolution along time, forward masking (eq. 39) a one-pole
filter along frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter

from perceptual_audio.metrics.peaq.ear_fft import (
    PLAYBACK_LEVEL_DB,
    SAMPLE_RATE,
    bark,
    internal_noise,
    inverse_bark,
    outer_ear_db,
    smooth,
)

#: Filter-bank output decimation (samples at 48 kHz) and frame (StepSize) of the model.
SUBSAMPLE = 32
HOP = 192
FRAME_RATE = SAMPLE_RATE / HOP
#: Table 8: impulse-response lengths (samples) of the 40 filters.
FILTER_LENGTHS = np.array([
    1456, 1438, 1406, 1362, 1308, 1244, 1176, 1104, 1030, 956, 884, 814, 748, 686, 626, 570,
    520, 472, 430, 390, 354, 320, 290, 262, 238, 214, 194, 176, 158, 144, 130, 118, 106, 96,
    86, 78, 70, 64, 58, 52,
])  # fmt: skip
BANDS = len(FILTER_LENGTHS)
#: Eq. (28): the two second-order sections of the 20 Hz DC-rejection high-pass (b1, b2).
DC_SECTIONS = ((1.99517, -0.995174), (1.99799, -0.997998))
#: Frequency spreading: lower slope (dB/Bark) and the upper slope's time constant (s).
LOWER_SLOPE_DB = 31.0
SLOPE_TAU_S = 0.1
#: Backward masking calibration, eq. (35).
BACKWARD_CAL = 0.9761
#: Forward-masking time constants (s), eq. (38).
TAU_MIN_S = 0.004
TAU_100_S = 0.020


def centre_frequencies() -> np.ndarray:
    """Table 8's centre frequencies: 40 filters equally spaced in pitch from 50 Hz to 18 kHz
    (eq. 30); the table is these values rounded to 0.01 Hz."""
    return inverse_bark(np.linspace(bark(50.0), bark(18000.0), BANDS))


def filter_matrix() -> np.ndarray:
    """(1457, 80) taps: column k the real and column 40 + k the imaginary filter of band k,
    delayed by D[k] (eq. 31) and weighted by the outer and middle ear (eq. 32), stored
    time-reversed so that row i multiplies the input sample 1456 - i before the output."""
    fc = centre_frequencies()
    weight = 10.0 ** (outer_ear_db(fc) / 20.0)
    length = FILTER_LENGTHS[0] + 1
    taps = np.zeros((length, 2 * BANDS))
    for k, (n_k, f) in enumerate(zip(FILTER_LENGTHS, fc, strict=True)):
        delay = 1 + (FILTER_LENGTHS[0] - n_k) // 2
        n = np.arange(n_k)
        env = 4.0 / n_k * np.sin(np.pi * n / n_k) ** 2 * weight[k]
        phase = 2.0 * np.pi * f * (n - n_k / 2.0) / SAMPLE_RATE
        rows = length - 1 - (delay + n)
        taps[rows, k] = env * np.cos(phase)
        taps[rows, BANDS + k] = env * np.sin(phase)
    return taps


def _filter_bank(x: np.ndarray, outputs: int) -> np.ndarray:
    """Complex band signals (outputs, 40) at every 32nd input sample."""
    taps = filter_matrix()
    padded = np.concatenate([np.zeros(len(taps) - 1), x])
    view = sliding_window_view(padded, len(taps))[::SUBSAMPLE][:outputs]
    out = np.empty((outputs, 2 * BANDS))
    # The long low-band filters need every row, the short high-band ones few: multiply each
    # group of bands by its own rows only (the taps outside them are zero).
    groups = []
    for group in np.array_split(np.arange(BANDS), 5):
        cols = np.concatenate([group, group + BANDS])
        rows = np.flatnonzero(np.any(taps[:, cols] != 0, axis=1))
        groups.append(
            (
                cols,
                rows[0],
                rows[-1] + 1,
                np.ascontiguousarray(taps[rows[0] : rows[-1] + 1][:, cols]),
            )
        )
    block = 1024
    for start in range(0, outputs, block):
        frames = np.ascontiguousarray(view[start : start + block])
        for cols, lo, hi, sub in groups:
            out[start : start + block, cols] = frames[:, lo:hi] @ sub
    return out[:, :BANDS] + 1j * out[:, BANDS:]


def _spread(bands: np.ndarray, fc: np.ndarray) -> np.ndarray:
    """Frequency-domain spreading of the band signals (pseudocode 2.2.7.1), (outputs, 40)."""
    z = bark(fc)
    dist = 0.1 ** ((z[-1] - z[0]) / (39 * 20))
    a = np.exp(-SUBSAMPLE / (SAMPLE_RATE * SLOPE_TAU_S))
    with np.errstate(divide="ignore"):
        level = 10.0 * np.log10(np.abs(bands) ** 2)
    slope = np.maximum(4.0, 24.0 + 230.0 / fc - 0.2 * level)
    # cu[k] = a dist^s + (1 - a) cu[k], as the pseudocode writes it.
    cu = lfilter([a], [1.0, -(1.0 - a)], dist**slope, axis=0)
    # Upward: A_up[j] = sum_{k <= j} out[k] cu[k]^(j - k), a recursion over j.
    upward = np.empty_like(bands)
    terms = np.zeros_like(bands)
    for j in range(BANDS):
        terms[:, :j] *= cu[:, :j]
        terms[:, j] = bands[:, j]
        upward[:, j] = terms[:, : j + 1].sum(axis=1)
    steps = np.arange(BANDS)[None, :] - np.arange(BANDS)[:, None]  # (k, j): j - k
    down = np.where(steps >= 0, dist ** (LOWER_SLOPE_DB * np.maximum(steps, 0)), 0.0)
    return upward @ down.T  # A[k] = sum_{j >= k} cl^(j - k) A_up[j]


def _backward_mask(e0: np.ndarray, frames: int) -> np.ndarray:
    """Eq. (35): cos^2 FIR over the last 11 outputs, taken at every 6th, (frames, 40)."""
    i = np.arange(11)
    h = BACKWARD_CAL / 6.0 * np.cos(np.pi * (i - 5) / 12.0) ** 2
    smeared = lfilter(h, [1.0], e0, axis=0)
    return smeared[5 :: HOP // SUBSAMPLE][:frames]


@dataclass
class FilterbankEar:
    """Outputs of the filter-bank ear model for one channel (all (frames, 40))."""

    unsmeared: np.ndarray  #: E2 (eq. 37)
    excitation: np.ndarray  #: E (eq. 39)


def filterbank_ear(x: np.ndarray, level_db: float = PLAYBACK_LEVEL_DB) -> FilterbankEar:
    """Run the filter-bank ear model on one channel ``x`` (16-bit scale, 48 kHz)."""
    frames = len(x) // HOP
    y = x * 10.0 ** (level_db / 20.0) / 32767.0  # eq. (27)
    for b1, b2 in DC_SECTIONS:
        y = lfilter([1.0, -2.0, 1.0], [1.0, -b1, -b2], y)
    fc = centre_frequencies()
    bands = _filter_bank(y, frames * (HOP // SUBSAMPLE))
    e0 = np.abs(_spread(bands, fc)) ** 2
    unsmeared = _backward_mask(e0, frames) + internal_noise(fc)
    tau = TAU_MIN_S + 100.0 / fc * (TAU_100_S - TAU_MIN_S)
    a = np.exp(-HOP / (SAMPLE_RATE * tau))
    return FilterbankEar(unsmeared, smooth(unsmeared, a))
