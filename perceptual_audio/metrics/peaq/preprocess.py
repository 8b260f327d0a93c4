"""Pre-processing of excitation patterns, ITU-R BS.1387-1 Annex 2 section 3: level and
pattern adaptation, modulation, loudness. Shared by both ear models: ``hop`` is the model's
StepSize (1024 for the FFT model, 192 for the filter bank) and all arrays are (frames, Z).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perceptual_audio.metrics.peaq.ear_fft import SAMPLE_RATE, smooth

#: Adaptation time constants (s), eq. (41); modulation ones, eq. (56).
ADAPT_TAU_100_S = 0.050
ADAPT_TAU_MIN_S = 0.008
MOD_TAU_100_S = 0.050
MOD_TAU_MIN_S = 0.008
#: Loudness scaling constants (1 sone for a 40 dB SPL 1 kHz sine), section 3.3.
LOUDNESS_CONST_FFT = 1.07664
LOUDNESS_CONST_FILTERBANK = 1.26539


def band_coefficient(centre_hz: np.ndarray, tau_100: float, tau_min: float, hop: int) -> np.ndarray:
    """a = exp(-StepSize / (48000 tau)) with tau = tau_min + 100 Hz / f_c (tau_100 - tau_min)."""
    tau = tau_min + 100.0 / np.asarray(centre_hz) * (tau_100 - tau_min)
    return np.exp(-hop / (SAMPLE_RATE * tau))


@dataclass
class Adapted:
    """Level- and pattern-adapted excitation patterns E_P (eqs. 52-53)."""

    ref: np.ndarray
    test: np.ndarray


def adapt(
    e_ref: np.ndarray, e_test: np.ndarray, centre_hz: np.ndarray, hop: int, width: int
) -> Adapted:
    """Level adaptation (eqs. 41-47) and pattern adaptation (eqs. 48-53); ``width`` is M."""
    a = band_coefficient(centre_hz, ADAPT_TAU_100_S, ADAPT_TAU_MIN_S, hop)
    p_ref, p_test = smooth(e_ref, a), smooth(e_test, a)
    num = np.sum(np.sqrt(p_test * p_ref), axis=1)
    den = np.sum(p_test, axis=1)
    lev = np.where(den > 0, (num / np.where(den > 0, den, 1.0)) ** 2, 1.0)[:, None]
    el_ref = np.where(lev > 1, e_ref / lev, e_ref)
    el_test = np.where(lev > 1, e_test, e_test * lev)
    # Eq. (48): exponentially weighted sums, i.e. one-pole filters without the (1 - a) gain.
    num = _accumulate(el_test * el_ref, a)
    den = _accumulate(el_ref * el_ref, a)
    r_test, r_ref = _ratios(num, den)
    corr_test = smooth(_band_average(r_test, width), a)
    corr_ref = smooth(_band_average(r_ref, width), a)
    return Adapted(el_ref * corr_ref, el_test * corr_test)


def _accumulate(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    """y[n] = a y[n-1] + x[n] along frames, per band."""
    return smooth(x, a) / (1.0 - a)


def _ratios(num: np.ndarray, den: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R_Test, R_Ref of eq. (49) with the Recommendation's rules for zero sums."""
    frames, bands = num.shape
    r_test, r_ref = np.ones_like(num), np.ones_like(num)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = num / den
    defined = den > 0
    big = defined & (r >= 1)
    small = defined & (r < 1)
    r_test[big] = 1.0 / r[big]
    r_ref[small] = r[small]
    zero_den = (~defined) & (num > 0)
    r_test[zero_den] = 0.0
    # 0/0: copy the ratios of the band below (band 0: one).
    both_zero = (~defined) & (num <= 0)
    for k in range(1, bands):
        rows = both_zero[:, k]
        if rows.any():
            r_test[rows, k] = r_test[rows, k - 1]
            r_ref[rows, k] = r_ref[rows, k - 1]
    return r_test, r_ref


def _band_average(r: np.ndarray, width: int) -> np.ndarray:
    """Mean over the window of ``width`` bands around each band, reduced at the edges (eq. 51)."""
    bands = r.shape[1]
    if width % 2:
        m1 = m2 = (width - 1) // 2
    else:
        m1, m2 = width // 2, width // 2 - 1
    cs = np.concatenate([np.zeros((r.shape[0], 1)), np.cumsum(r, axis=1)], axis=1)
    k = np.arange(bands)
    lo = k - np.minimum(m1, k)
    hi = k + np.minimum(m2, bands - k - 1)
    return (cs[:, hi + 1] - cs[:, lo]) / (hi - lo + 1)


@dataclass
class Modulation:
    """Modulation pattern Mod[k, n] (eq. 57) and the smoothed loudness E-bar (eq. 55)."""

    mod: np.ndarray
    loud: np.ndarray


def modulation(unsmeared: np.ndarray, centre_hz: np.ndarray, hop: int) -> Modulation:
    """Eqs. (54)-(57) from the unsmeared excitation E2 (frames, Z)."""
    a = band_coefficient(centre_hz, MOD_TAU_100_S, MOD_TAU_MIN_S, hop)
    e03 = unsmeared**0.3
    diff = np.abs(np.diff(e03, axis=0, prepend=np.zeros((1, e03.shape[1]))))
    der = smooth(diff * (SAMPLE_RATE / hop), a)
    loud = smooth(e03, a)
    return Modulation(der / (1.0 + loud / 0.3), loud)


def loudness_threshold(centre_hz: np.ndarray) -> np.ndarray:
    """E_Thres of eq. (60): 10^(0.364 (f/kHz)^-0.8)."""
    return 10.0 ** (0.364 * (np.asarray(centre_hz) / 1000.0) ** -0.8)


def threshold_index(centre_hz: np.ndarray) -> np.ndarray:
    """s[k] of eq. (61) (linear)."""
    f = np.asarray(centre_hz)
    return 10.0 ** (
        0.1 * (-2.0 - 2.05 * np.arctan(f / 4000.0) - 0.75 * np.arctan((f / 1600.0) ** 2))
    )


def total_loudness(excitation: np.ndarray, centre_hz: np.ndarray, const: float) -> np.ndarray:
    """N_total[n] (sone), eqs. (58)-(59), of excitation patterns (frames, Z)."""
    e_thr = loudness_threshold(centre_hz)
    s = threshold_index(centre_hz)
    specific = (
        const * (e_thr / (s * 1e4)) ** 0.23 * ((1.0 - s + s * excitation / e_thr) ** 0.23 - 1.0)
    )
    return 24.0 / excitation.shape[1] * np.sum(np.maximum(specific, 0.0), axis=1)
