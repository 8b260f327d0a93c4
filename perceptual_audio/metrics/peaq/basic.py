"""The basic version of PEAQ (ITU-R BS.1387-1): FFT ear model, 11 MOVs, network."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from perceptual_audio.metrics.peaq import network
from perceptual_audio.metrics.peaq.ear_fft import (
    FRAME_RATE,
    HOP,
    PLAYBACK_LEVEL_DB,
    RESOLUTION_BASIC,
    fft_ear,
    make_bands,
)
from perceptual_audio.metrics.peaq.movs import (
    BANDWIDTH_MIN_LINES,
    PD_C0,
    PD_C1,
    WINDOW_FFT,
    ChannelFrames,
    channel_frames,
    data_boundary,
)
from perceptual_audio.metrics.peaq.preprocess import (
    LOUDNESS_CONST_FFT,
    adapt,
    modulation,
    total_loudness,
)

#: Pattern-adaptation window (bands) of the basic version's FFT model (section 3.1.2).
ADAPT_WIDTH_BASIC = 8
#: Delayed averaging: the first 0.5 s are left out of the modulation and loudness MOVs.
DELAY_S = 0.5
#: Loudness threshold (sone) and the wait after it (s), section 5.2.4.2.
LOUDNESS_THRESHOLD_SONE = 0.1
LOUDNESS_WAIT_S = 0.05


@dataclass(frozen=True)
class PeaqResult:
    """DI, ODG and the model output variables (by the Recommendation's names)."""

    di: float
    odg: float
    movs: dict[str, float] = field(default_factory=dict)


def _delay_frames(seconds: float) -> int:
    return int(math.ceil(seconds * FRAME_RATE))


def _loudness_start(loud_ref: list[np.ndarray], loud_test: list[np.ndarray]) -> int:
    """First frame of the noise-loudness average: 50 ms after both signals first exceed
    0.1 sone in one channel."""
    starts = []
    for nr, nt in zip(loud_ref, loud_test, strict=True):
        hit = (nr > LOUDNESS_THRESHOLD_SONE) & (nt > LOUDNESS_THRESHOLD_SONE)
        if hit.any():
            starts.append(int(np.argmax(hit)))
    if not starts:
        return len(loud_ref[0])
    return min(starts) + _delay_frames(LOUDNESS_WAIT_S)


def _win_avg(x: np.ndarray, length: int) -> float:
    """Windowed average of eq. (93)."""
    if len(x) < length:
        return 0.0
    roots = np.sqrt(x)
    sums = np.convolve(roots, np.ones(length), mode="valid") / length
    return float(np.sqrt(np.mean(sums**4)))


def _weighted_avg(x: np.ndarray, w: np.ndarray) -> float:
    total = w.sum()
    return float(np.sum(w * x) / total) if total > 0 else 0.0


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0


def _channel_movs(
    cf: ChannelFrames, valid: np.ndarray, delayed: np.ndarray, loud: np.ndarray
) -> dict[str, float]:
    """Time averages of one channel's momentary values (section 5.2)."""
    sel = valid & delayed
    nl_sel = sel & loud
    bw = valid & (cf.bw_ref > BANDWIDTH_MIN_LINES)
    ehs = valid & cf.ehs_ok
    n_valid = max(int(valid.sum()), 1)
    return {
        "BandwidthRefB": float(cf.bw_ref[bw].mean()) if bw.any() else 0.0,
        "BandwidthTestB": float(cf.bw_test[bw].mean()) if bw.any() else 0.0,
        "TotalNMRB": float(10.0 * np.log10(max(cf.nmr_ratio[valid].mean(), 1e-30)))
        if valid.any()
        else 0.0,
        "WinModDiff1B": _win_avg(cf.mod_diff1[sel], WINDOW_FFT),
        "EHSB": float(1000.0 * cf.ehs[ehs].mean()) if ehs.any() else 0.0,
        "AvgModDiff1B": _weighted_avg(cf.mod_diff1[sel], cf.temp_wt1[sel]),
        "AvgModDiff2B": _weighted_avg(cf.mod_diff2[sel], cf.temp_wt2[sel]),
        "RmsNoiseLoudB": _rms(cf.noise_loud[nl_sel]),
        "RelDistFramesB": float(np.sum(cf.nmr_max_db[valid] >= 1.5) / n_valid),
    }


def _binaural_movs(channels: list[ChannelFrames], valid: np.ndarray) -> dict[str, float]:
    """MFPD and ADB from the binaural detection probability (eqs. 79-86, 4.7.2)."""
    p = np.max([c.p for c in channels], axis=0)[valid]
    q = np.max([c.q for c in channels], axis=0)[valid]
    p_total = 1.0 - np.prod(1.0 - p, axis=1)
    q_total = q.sum(axis=1)
    smoothed = np.empty_like(p_total)
    prev = 0.0
    pm = 0.0
    for n, value in enumerate(p_total):
        prev = (1.0 - PD_C0) * value + PD_C0 * prev
        smoothed[n] = prev
        pm = max(PD_C1 * pm, prev)
    distorted = p_total > 0.5
    n_dist = int(distorted.sum())
    q_sum = float(q_total[distorted].sum())
    if n_dist == 0:
        adb = 0.0
    elif q_sum > 0:
        adb = math.log10(q_sum / n_dist)
    else:
        adb = 0.5
    return {"MFPDB": float(pm), "ADBB": adb}


def basic_movs(
    ref: np.ndarray, test: np.ndarray, level_db: float = PLAYBACK_LEVEL_DB
) -> dict[str, float]:
    """The 11 MOVs of the basic version; ``ref``, ``test`` (channels, samples) 16-bit scale."""
    bands = make_bands(RESOLUTION_BASIC)
    fc = bands.centre_hz
    channels, loud_ref, loud_test = [], [], []
    for xr, xt in zip(ref, test, strict=True):
        er, et = fft_ear(xr, bands, level_db), fft_ear(xt, bands, level_db)
        adapted = adapt(er.excitation, et.excitation, fc, HOP, ADAPT_WIDTH_BASIC)
        mr, mt = modulation(er.unsmeared, fc, HOP), modulation(et.unsmeared, fc, HOP)
        channels.append(channel_frames(er, et, adapted, mr, mt, bands, xr, xt))
        loud_ref.append(total_loudness(er.excitation, fc, LOUDNESS_CONST_FFT))
        loud_test.append(total_loudness(et.excitation, fc, LOUDNESS_CONST_FFT))
    count = len(channels[0].mod_diff1)
    frame = np.arange(count)
    valid = data_boundary(ref, count)
    delayed = frame >= _delay_frames(DELAY_S)
    loud = frame >= _loudness_start(loud_ref, loud_test)
    per_channel = [_channel_movs(c, valid, delayed, loud) for c in channels]
    movs = {k: float(np.mean([m[k] for m in per_channel])) for k in per_channel[0]}
    movs.update(_binaural_movs(channels, valid))
    return {k: movs[k] for k in network.BASIC_MOVS}


def basic_from_movs(movs: dict[str, float]) -> PeaqResult:
    x = np.array([movs[k] for k in network.BASIC_MOVS])
    di = network.distortion_index(
        x, network.BASIC_A_MIN, network.BASIC_A_MAX, network.BASIC_W_X, network.BASIC_W_Y
    )
    return PeaqResult(di, network.odg(di), dict(movs))
