"""Model output variables of the basic version (ITU-R BS.1387-1 Annex 2 sections 4 and 5),
per channel as momentary (per-frame) values, then averaged over the selected frames.

The detection-probability MOVs (MFPD, ADB) combine the channels per frame (binaural, eqs.
79-80); every other MOV is averaged over time per channel and then over channels (5.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perceptual_audio.metrics.peaq.ear_fft import (
    FRAME_LENGTH,
    HOP,
    Bands,
    FftEar,
    internal_noise,
    mask_offset_db,
    noise_patterns,
)
from perceptual_audio.metrics.peaq.preprocess import (
    Adapted,
    Modulation,
)

#: Windowed-average length (frames), section 5.2.3: about 100 ms.
WINDOW_FFT = 4
#: Bandwidth: the frame counts only if the reference's bandwidth exceeds 346 lines (4.4.2).
BANDWIDTH_MIN_LINES = 346
#: EHS maximum lag (FFT lines) and the energy threshold of 5.2.4.3 (16-bit scale).
EHS_LAGS = 256
EHS_ENERGY_THRESHOLD = 8000.0
#: Detection probability: forgetting constants c0, c1 (eqs. 84, 86; c1 = 1 per the text).
PD_C0 = 0.9
PD_C1 = 1.0


def mod_diff(mod_test, mod_ref, loud_ref, centre_hz, neg_wt, offset, lev_wt):
    """ModDiff[n] (eqs. 63-64) and TempWt[n] (eq. 65), each (frames,)."""
    w = np.where(mod_test > mod_ref, 1.0, neg_wt)
    local = w * np.abs(mod_test - mod_ref) / (offset + mod_ref)
    momentary = 100.0 * local.mean(axis=1)
    thr = internal_noise(centre_hz) ** 0.3
    temp_wt = np.sum(loud_ref / (loud_ref + lev_wt * thr), axis=1)
    return momentary, temp_wt


def noise_loudness(e_test, e_ref, mod_test, mod_ref, centre_hz, alpha, thr_fac, s0, nl_min):
    """Momentary noise loudness NL[n] (eqs. 66-68), spectrally averaged x 24 (frames,)."""
    e_thr = internal_noise(centre_hz)
    s_test = thr_fac * mod_test + s0
    s_ref = thr_fac * mod_ref + s0
    beta = np.exp(-alpha * (e_test - e_ref) / e_ref)
    num = np.maximum(s_test * e_test - s_ref * e_ref, 0.0)
    nl = (e_thr / s_test) ** 0.23 * ((1.0 + num / (e_thr + s_ref * e_ref * beta)) ** 0.23 - 1.0)
    out = 24.0 * nl.mean(axis=1)
    return np.where(out < nl_min, 0.0, out)


def bandwidths(spec_ref: np.ndarray, spec_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BwRef[n], BwTest[n] in FFT lines (pseudocode 4.4.1), from |F_f| (frames, 1025)."""
    lev_ref = 20.0 * np.log10(np.maximum(spec_ref[:, :1024], 1e-30))
    lev_test = 20.0 * np.log10(np.maximum(spec_test[:, :1024], 1e-30))
    zero = lev_test[:, 921:].max(axis=1, keepdims=True)
    lines = np.arange(921)
    above_ref = lev_ref[:, :921] >= 10.0 + zero
    bw_ref = np.where(above_ref.any(axis=1), (above_ref * (lines + 1)).max(axis=1), 0)
    above_test = (lev_test[:, :921] >= 5.0 + zero) & (lines[None, :] < bw_ref[:, None])
    bw_test = np.where(above_test.any(axis=1), (above_test * (lines + 1)).max(axis=1), 0)
    return bw_ref.astype(float), bw_test.astype(float)


def ehs_frames(spec_ref: np.ndarray, spec_test: np.ndarray) -> np.ndarray:
    """Per-frame error harmonic structure (section 4.8), before the x1000 and averaging.

    The error is log(|F_test|^2 / |F_ref|^2) over lines 0..510 (the outer-ear weights cancel
    in the ratio); its normalised autocorrelation over 256 lags (eq. 87) has its mean removed,
    is Hann-windowed, and the largest value of its power spectrum after the first valley is
    the frame's value.
    """
    lags = EHS_LAGS
    count = 2 * lags - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.log(spec_test[:, :count] ** 2 / spec_ref[:, :count] ** 2)
    d = np.where(np.isfinite(d), d, 0.0)
    # c[l] = sum_{j<256} d[j] d[j+l], by FFT cross-correlation (frames, lag).
    nfft = 4 * lags
    spec_head = np.fft.rfft(d[:, :lags], nfft, axis=1)
    spec_all = np.fft.rfft(d, nfft, axis=1)
    c = np.fft.irfft(np.conj(spec_head) * spec_all, nfft, axis=1)[:, :lags]
    e0 = np.sum(d[:, :lags] ** 2, axis=1, keepdims=True)
    cs = np.concatenate([np.zeros((len(d), 1)), np.cumsum(d**2, axis=1)], axis=1)
    el = cs[:, lags : 2 * lags] - cs[:, :lags]
    den = np.sqrt(e0 * el)
    cn = np.where(den > 0, c / np.where(den > 0, den, 1.0), 0.0)
    n = np.arange(lags)
    window = np.sqrt(8.0 / 3.0) / lags * 0.5 * (1.0 - np.cos(2.0 * np.pi * n / (lags - 1)))
    cw = window * (cn - cn.mean(axis=1, keepdims=True))
    power = np.abs(np.fft.rfft(cw, axis=1)) ** 2
    return _peak_after_valley(power)


def _peak_after_valley(power: np.ndarray) -> np.ndarray:
    """Largest value after the first local minimum of each row (0 when none)."""
    rising = power[:, 1:] > power[:, :-1]
    first = np.where(rising.any(axis=1), rising.argmax(axis=1), power.shape[1])
    cols = np.arange(power.shape[1])[None, :]
    after = np.where(cols >= first[:, None], power, 0.0)
    return after.max(axis=1)


def frame_energy_ok(x: np.ndarray, count: int) -> np.ndarray:
    """Whether the newest half of each frame has energy >= 8000 (16-bit scale), 5.2.4.3."""
    idx = np.arange(count)[:, None] * HOP + HOP + np.arange(HOP)[None, :]
    return np.sum(x[idx] ** 2, axis=1) >= EHS_ENERGY_THRESHOLD


def detection(e_ref: np.ndarray, e_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-band detection probability p[k, n] and steps above threshold q[k, n] (eqs. 72-78)."""
    lr = 10.0 * np.log10(e_ref)
    lt = 10.0 * np.log10(e_test)
    level = 0.3 * np.maximum(lr, lt) + 0.7 * lt
    pos = level > 0
    lp = np.where(pos, level, 1.0)
    step = (
        5.95072 * (6.39468 / lp) ** 1.71332
        + 9.01033e-11 * lp**4
        + 5.05622e-6 * lp**3
        - 0.00102438 * lp**2
        + 0.0550197 * lp
        - 0.198719
    )
    step = np.where(pos, step, 1e30)
    e = lr - lt
    b = np.where(lr > lt, 4.0, 6.0)
    a = 10.0 ** (np.log10(np.log10(2.0)) / b) / step
    p = 1.0 - 10.0 ** (-((a * np.abs(e)) ** b))
    q = np.abs(np.trunc(e)) / step  # eq. (78): INT(e) / s
    return p, q


@dataclass
class ChannelFrames:
    """Momentary values of one channel (each (frames,)) and its per-band detection values."""

    mod_diff1: np.ndarray
    temp_wt1: np.ndarray
    mod_diff2: np.ndarray
    temp_wt2: np.ndarray
    noise_loud: np.ndarray
    bw_ref: np.ndarray
    bw_test: np.ndarray
    nmr_ratio: np.ndarray  #: mean over bands of P_noise / M
    nmr_max_db: np.ndarray  #: max over bands of 10 log10(P_noise / M)
    ehs: np.ndarray
    ehs_ok: np.ndarray
    p: np.ndarray  #: (frames, Z)
    q: np.ndarray  #: (frames, Z)


def channel_frames(
    ref: FftEar,
    test: FftEar,
    adapted: Adapted,
    mod_ref: Modulation,
    mod_test: Modulation,
    bands: Bands,
    x_ref: np.ndarray,
    x_test: np.ndarray,
) -> ChannelFrames:
    """The momentary basic-version values of one channel."""
    fc = bands.centre_hz
    md1, tw1 = mod_diff(mod_test.mod, mod_ref.mod, mod_ref.loud, fc, 1.0, 1.0, 100.0)
    md2, tw2 = mod_diff(mod_test.mod, mod_ref.mod, mod_ref.loud, fc, 0.1, 0.01, 100.0)
    nl = noise_loudness(
        adapted.test, adapted.ref, mod_test.mod, mod_ref.mod, fc, 1.5, 0.15, 0.5, 0.0
    )
    bw_ref, bw_test = bandwidths(ref.spectrum, test.spectrum)
    mask = ref.excitation / 10.0 ** (mask_offset_db(bands) / 10.0)
    ratio = noise_patterns(ref, test, bands) / mask
    p, q = detection(ref.excitation, test.excitation)
    count = len(md1)
    ok = frame_energy_ok(x_ref, count) | frame_energy_ok(x_test, count)
    return ChannelFrames(
        md1, tw1, md2, tw2, nl, bw_ref, bw_test, ratio.mean(axis=1),
        10.0 * np.log10(ratio.max(axis=1)), ehs_frames(ref.spectrum, test.spectrum), ok, p, q,
    )  # fmt: skip


def data_boundary(
    x_ref: np.ndarray, count: int, hop: int = HOP, length: int = FRAME_LENGTH
) -> np.ndarray:
    """Frames not fully outside the reference's data (5.2.4.4): the data starts and ends where
    the sum of |x| over 5 samples exceeds 200 in one of the channels. ``x_ref`` (channels, n);
    frames of ``length`` samples every ``hop``."""
    kernel = np.ones(5)
    over = np.zeros(x_ref.shape[1] - 4, dtype=bool)
    for ch in x_ref:
        over |= np.convolve(np.abs(ch), kernel, mode="valid") > 200.0
    keep = np.zeros(count, dtype=bool)
    if not over.any():
        return keep
    begin = int(np.argmax(over))
    end = int(len(over) - 1 - np.argmax(over[::-1])) + 4
    start = np.arange(count) * hop
    return (start + length - 1 >= begin) & (start <= end)
