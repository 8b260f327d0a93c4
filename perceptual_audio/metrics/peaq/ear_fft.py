"""The FFT-based peripheral ear model of ITU-R BS.1387-1 (section 2.1 of its Annex 2).

Every function works on all frames at once: signals are framed into a (frames, 2048) array
and each stage is an array operation over frames and bands; the only recursion (forward
masking, eq. 22) is a first-order IIR filter run along the frame axis by
:func:`scipy.signal.lfilter`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

#: Sample rate (Hz) the Recommendation's models are defined at.
SAMPLE_RATE = 48000
#: FFT frame length and hop (samples), eq. (1): 50 % overlap.
FRAME_LENGTH = 2048
HOP = 1024
#: Frame rate of the FFT model (frames per second): 48000 / 1024.
FRAME_RATE = SAMPLE_RATE / HOP
#: Default playback level (dB SPL) of a full-scale sine (section 2.1.3).
PLAYBACK_LEVEL_DB = 92.0
#: Full scale of the 16-bit integer data the Recommendation's thresholds refer to.
FULL_SCALE = 32768.0
#: Band edges (Hz) and pitch resolution (Bark) of the band grouping (section 2.1.5).
F_LOW_HZ = 80.0
F_HIGH_HZ = 18000.0
RESOLUTION_BASIC = 0.25
RESOLUTION_ADVANCED = 0.5
#: Lower slope (dB/Bark) of the spreading function, eq. (16).
LOWER_SLOPE_DB = 27.0
#: Forward-masking time constants (s), eq. (21).
TAU_MIN_S = 0.008
TAU_100_S = 0.030


def bark(f_hz: np.ndarray | float) -> np.ndarray:
    """Schroeder's pitch approximation, eq. (10): z = 7 asinh(f / 650 Hz)."""
    return 7.0 * np.arcsinh(np.asarray(f_hz, dtype=float) / 650.0)


def inverse_bark(z: np.ndarray | float) -> np.ndarray:
    return 650.0 * np.sinh(np.asarray(z, dtype=float) / 7.0)


@dataclass(frozen=True)
class Bands:
    """The frequency groups of Table 6 (res 0.25 Bark, 109 groups) or 7 (0.5 Bark, 55)."""

    resolution: float
    lower_hz: np.ndarray
    centre_hz: np.ndarray
    upper_hz: np.ndarray

    @property
    def count(self) -> int:
        return len(self.centre_hz)


def make_bands(resolution: float) -> Bands:
    """The frequency groups from 80 Hz to 18 kHz, equally spaced on the pitch scale.

    Tables 6 and 7 are these values rounded to 3 decimals (the last group's upper edge is
    clipped at 18 kHz).
    """
    z_low, z_high = bark(F_LOW_HZ), bark(F_HIGH_HZ)
    count = int(np.ceil((z_high - z_low) / resolution))
    z = z_low + resolution * np.arange(count + 1)
    edges = np.minimum(inverse_bark(z), F_HIGH_HZ)
    centre = inverse_bark(z_low + resolution * (np.arange(count) + 0.5))
    return Bands(resolution, edges[:-1], centre, edges[1:])


def hann_window() -> np.ndarray:
    """The scaled Hann window of eq. (2)."""
    n = np.arange(FRAME_LENGTH)
    return 0.5 * np.sqrt(8.0 / 3.0) * (1.0 - np.cos(2.0 * np.pi * n / (FRAME_LENGTH - 1)))


def frames(x: np.ndarray) -> np.ndarray:
    """(frames, 2048) view of the complete frames of ``x`` (samples), hop 1024, eq. (1)."""
    count = max(0, (len(x) - FRAME_LENGTH) // HOP + 1)
    idx = np.arange(count)[:, None] * HOP + np.arange(FRAME_LENGTH)[None, :]
    return x[idx]


def _spectrum(x: np.ndarray) -> np.ndarray:
    """|F_f[k, n]| of eq. (4) (1/N-normalised FFT of windowed frames), lines 0..1024."""
    return np.abs(np.fft.rfft(frames(x) * hann_window(), axis=-1)) / FRAME_LENGTH


def playback_scale(level_db: float = PLAYBACK_LEVEL_DB) -> float:
    """fac of eq. (5): 10^(Lp/20) / Norm, Norm the largest spectral magnitude of a 1019.5 Hz
    full-scale sine over 10 frames."""
    n = np.arange(FRAME_LENGTH + 9 * HOP)
    sine = FULL_SCALE * np.sin(2.0 * np.pi * 1019.5 * n / SAMPLE_RATE)
    norm = _spectrum(sine).max()
    return 10.0 ** (level_db / 20.0) / norm


def outer_ear_db(f_hz: np.ndarray) -> np.ndarray:
    """Outer and middle ear weighting W(f) in dB, eq. (7); -inf at 0 Hz."""
    f = np.asarray(f_hz, dtype=float) / 1000.0
    out = np.full(f.shape, -np.inf)
    pos = f > 0
    fp = f[pos]
    out[pos] = -0.6 * 3.64 * fp**-0.8 + 6.5 * np.exp(-0.6 * (fp - 3.3) ** 2) - 1e-3 * fp**3.6
    return out


def grouping_matrix(bands: Bands) -> np.ndarray:
    """(1025, Z) weights of each FFT line in each frequency group (pseudocode 2.1.5.1)."""
    res = SAMPLE_RATE / FRAME_LENGTH
    k = np.arange(FRAME_LENGTH // 2 + 1)[:, None]
    lo, hi = (k - 0.5) * res, (k + 0.5) * res
    fl, fu = bands.lower_hz[None, :], bands.upper_hz[None, :]
    # Overlap of line k's interval [lo, hi] with the group [fl, fu], in units of a line width.
    overlap = np.clip(np.minimum(hi, fu) - np.maximum(lo, fl), 0.0, None) / res
    overlap[FRAME_LENGTH // 2 :, :] = 0.0  # the pseudocode runs k over 0..1023
    return overlap


def internal_noise(f_hz: np.ndarray) -> np.ndarray:
    """P_Thres of eq. (13) (and E_Thres of eq. (36)): 10^(0.4 * 0.364 (f/kHz)^-0.8)."""
    return 10.0 ** (0.4 * 0.364 * (np.asarray(f_hz) / 1000.0) ** -0.8)


def _geometric_sum(ratio: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """sum_{d=0}^{terms-1} ratio^d, elementwise (ratio != 1)."""
    return (1.0 - ratio**terms) / (1.0 - ratio)


def _spread_sum(level_db: np.ndarray, bands: Bands) -> np.ndarray:
    """sum_j E_line[j, k]^0.4 of eq. (17) for level patterns L[j] (frames, Z) in dB.

    E_line[j, k] (eq. 18) is the energy 10^(L[j]/10) spread with 27 dB/Bark below j and the
    level-dependent upper slope S_u[j] (eq. 15) above, normalised so that its spread over all
    groups sums to one. Both slopes are geometric in the group distance, so the normalising
    sums are closed-form geometric series and the upper sum is a recursion over k (no
    (frames, Z, Z) array of powers).
    """
    z = bands.count
    res = bands.resolution
    j = np.arange(z)
    upper_db = -24.0 - 230.0 / bands.centre_hz + 0.2 * level_db  # dB/Bark, eq. (15)
    # Denominator of eq. (18): sum over mu < j of the lower slope, over mu >= j of the upper.
    g = 10.0 ** (-res * LOWER_SLOPE_DB / 10.0)
    below = g * _geometric_sum(g, j)
    above = _geometric_sum(10.0 ** (res * upper_db / 10.0), z - j)
    amp = (10.0 ** (level_db / 10.0) / (below + above)) ** 0.4
    # Groups above the line (k >= j): amp[j] r[j]^(k - j), r = 10^(0.04 res S_u[j]).
    ratio = 10.0 ** (0.04 * res * upper_db)
    upward = np.empty_like(amp)
    terms = np.zeros_like(amp)
    for k in range(z):
        terms[:, :k] *= ratio[:, :k]
        terms[:, k] = amp[:, k]
        upward[:, k] = terms[:, : k + 1].sum(axis=1)
    # Groups below the line (k < j): amp[j] q^(j - k), a fixed matrix.
    q = 10.0 ** (-0.04 * res * LOWER_SLOPE_DB)
    dist = j[None, :] - j[:, None]  # (k, j)
    lower = np.where(dist > 0, q ** np.maximum(dist, 0), 0.0)
    return upward + amp @ lower.T


def spread(pitch: np.ndarray, bands: Bands) -> np.ndarray:
    """Unsmeared excitation E2[k, n] (frames, Z) from pitch patterns P_p, eqs. (15)-(20).

    The spread lines of all groups add with exponent 0.4 and the result is normalised by the
    spread of a 0 dB pattern (NormSP, eq. (19)).
    """
    norm = _spread_sum(np.zeros((1, bands.count)), bands)[0] ** 2.5
    return _spread_sum(10.0 * np.log10(pitch), bands) ** 2.5 / norm


def time_constant_filter(
    x: np.ndarray, centre_hz: np.ndarray, tau_100: float, tau_min: float, hop: int = HOP
) -> tuple[np.ndarray, np.ndarray]:
    """First-order low-pass over frames (axis 0) with the band time constants of eq. (21);
    returns (filtered, a)."""
    tau = tau_min + 100.0 / centre_hz * (tau_100 - tau_min)
    a = np.exp(-hop / (SAMPLE_RATE * tau))
    return smooth(x, a), a


def smooth(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    """y[n] = a y[n-1] + (1 - a) x[n] along axis 0, per band (a: (Z,)), y[-1] = 0."""
    out = np.empty_like(x)
    for k, ak in enumerate(np.atleast_1d(a)):
        out[:, k] = lfilter([1.0 - ak], [1.0, -ak], x[:, k])
    return out


def mask_offset_db(bands: Bands) -> np.ndarray:
    """m[k] of eq. (25): 3 dB up to 12 Bark, then 0.25 k res dB."""
    k = np.arange(bands.count)
    return np.where(k * bands.resolution <= 12.0, 3.0, 0.25 * k * bands.resolution)


@dataclass
class FftEar:
    """Outputs of the FFT ear model for one channel of one signal (all (frames, ...))."""

    spectrum: np.ndarray  #: |F_f| scaled to the playback level (frames, 1025)
    weighted: np.ndarray  #: |F_e|, outer-ear weighted magnitude (frames, 1025)
    unsmeared: np.ndarray  #: E2, unsmeared excitation (frames, Z)
    excitation: np.ndarray  #: E, excitation after forward masking (frames, Z)


def fft_ear(x: np.ndarray, bands: Bands, level_db: float = PLAYBACK_LEVEL_DB) -> FftEar:
    """Run the FFT ear model on one channel ``x`` (16-bit scale samples at 48 kHz)."""
    spectrum = _spectrum(x) * playback_scale(level_db)
    f = np.arange(FRAME_LENGTH // 2 + 1) * SAMPLE_RATE / FRAME_LENGTH
    weighted = spectrum * 10.0 ** (outer_ear_db(f) / 20.0)
    energies = np.maximum(weighted**2 @ grouping_matrix(bands), 1e-12)
    pitch = energies + internal_noise(bands.centre_hz)
    unsmeared = spread(pitch, bands)
    smeared, _ = time_constant_filter(unsmeared, bands.centre_hz, TAU_100_S, TAU_MIN_S)
    return FftEar(spectrum, weighted, unsmeared, np.maximum(smeared, unsmeared))


def noise_patterns(ref: FftEar, test: FftEar, bands: Bands) -> np.ndarray:
    """P_noise (frames, Z): the error |F_e,ref| - |F_e,test| grouped into bands, eq. (62)."""
    return np.maximum((ref.weighted - test.weighted) ** 2 @ grouping_matrix(bands), 1e-12)
