"""The advanced version of PEAQ (ITU-R BS.1387-1): filter-bank ear model for RmsModDiff,
RmsNoiseLoudAsym and AvgLinDist, FFT ear model (0.5 Bark groups) for Segmental NMR and EHS,
and the 5-MOV network (section 6.3)."""

from __future__ import annotations

import math

import numpy as np

from perceptual_audio.metrics.peaq import network
from perceptual_audio.metrics.peaq.basic import (
    DELAY_S,
    LOUDNESS_THRESHOLD_SONE,
    LOUDNESS_WAIT_S,
    PeaqResult,
)
from perceptual_audio.metrics.peaq.ear_fft import (
    FRAME_LENGTH,
    PLAYBACK_LEVEL_DB,
    RESOLUTION_ADVANCED,
    fft_ear,
    make_bands,
    mask_offset_db,
    noise_patterns,
)
from perceptual_audio.metrics.peaq.ear_fft import HOP as FFT_HOP
from perceptual_audio.metrics.peaq.ear_filterbank import (
    FRAME_RATE,
    HOP,
    centre_frequencies,
    filterbank_ear,
)
from perceptual_audio.metrics.peaq.movs import (
    data_boundary,
    ehs_frames,
    frame_energy_ok,
    mod_diff,
    noise_loudness,
)
from perceptual_audio.metrics.peaq.preprocess import (
    LOUDNESS_CONST_FILTERBANK,
    adapt,
    modulation,
    total_loudness,
)

#: Pattern-adaptation window (bands) of the filter-bank model (section 3.1.2).
ADAPT_WIDTH_FILTERBANK = 3


def _frames(seconds: float) -> int:
    return int(math.ceil(seconds * FRAME_RATE))


def _filterbank_channel(xr: np.ndarray, xt: np.ndarray, level_db: float) -> dict[str, np.ndarray]:
    """Momentary filter-bank values of one channel, each (frames,)."""
    fc = centre_frequencies()
    er, et = filterbank_ear(xr, level_db), filterbank_ear(xt, level_db)
    adapted = adapt(er.excitation, et.excitation, fc, HOP, ADAPT_WIDTH_FILTERBANK)
    mr, mt = modulation(er.unsmeared, fc, HOP), modulation(et.unsmeared, fc, HOP)
    md, wt = mod_diff(mt.mod, mr.mod, mr.loud, fc, 1.0, 1.0, 1.0)
    nl = noise_loudness(adapted.test, adapted.ref, mt.mod, mr.mod, fc, 2.5, 0.3, 1.0, 0.1)
    # Missing components: adapted patterns (and modulation) of test and reference swapped.
    mc = noise_loudness(adapted.ref, adapted.test, mr.mod, mt.mod, fc, 1.5, 0.15, 1.0, 0.0)
    # Linear distortion: the adapted reference against the unadapted reference.
    ld = noise_loudness(er.excitation, adapted.ref, mr.mod, mr.mod, fc, 1.5, 0.15, 1.0, 0.0)
    return {
        "mod_diff": md,
        "temp_wt": wt,
        "noise_loud": nl,
        "missing": mc,
        "lin_dist": ld,
        "loud_ref": total_loudness(er.excitation, fc, LOUDNESS_CONST_FILTERBANK),
        "loud_test": total_loudness(et.excitation, fc, LOUDNESS_CONST_FILTERBANK),
    }


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0


def _filterbank_movs(ref: np.ndarray, test: np.ndarray, level_db: float) -> dict[str, float]:
    chans = [_filterbank_channel(xr, xt, level_db) for xr, xt in zip(ref, test, strict=True)]
    count = len(chans[0]["mod_diff"])
    frame = np.arange(count)
    valid = data_boundary(ref, count, HOP, HOP) & (frame >= _frames(DELAY_S))
    starts = []
    for c in chans:
        hit = (c["loud_ref"] > LOUDNESS_THRESHOLD_SONE) & (c["loud_test"] > LOUDNESS_THRESHOLD_SONE)
        if hit.any():
            starts.append(int(np.argmax(hit)))
    loud_start = min(starts) + _frames(LOUDNESS_WAIT_S) if starts else count
    loud = valid & (frame >= loud_start)
    per = []
    for c in chans:
        w2 = c["temp_wt"][valid] ** 2
        x2 = c["mod_diff"][valid] ** 2
        rms_mod = math.sqrt(40.0 * np.sum(w2 * x2) / np.sum(w2)) if np.sum(w2) > 0 else 0.0
        asym = _rms(c["noise_loud"][loud]) + 0.5 * _rms(c["missing"][loud])
        lin = float(np.mean(c["lin_dist"][loud])) if loud.any() else 0.0
        per.append((rms_mod, asym, lin))
    mean = np.mean(per, axis=0)
    return {"RmsModDiffA": mean[0], "RmsNoiseLoudAsymA": mean[1], "AvgLinDistA": mean[2]}


def _fft_movs(ref: np.ndarray, test: np.ndarray, level_db: float) -> dict[str, float]:
    bands = make_bands(RESOLUTION_ADVANCED)
    seg, ehs = [], []
    for xr, xt in zip(ref, test, strict=True):
        er, et = fft_ear(xr, bands, level_db), fft_ear(xt, bands, level_db)
        count = len(er.excitation)
        valid = data_boundary(ref, count, FFT_HOP, FRAME_LENGTH)
        mask = er.excitation / 10.0 ** (mask_offset_db(bands) / 10.0)
        local = 10.0 * np.log10(np.mean(noise_patterns(er, et, bands) / mask, axis=1))
        seg.append(float(np.mean(local[valid])) if valid.any() else 0.0)
        ok = valid & (frame_energy_ok(xr, count) | frame_energy_ok(xt, count))
        per_frame = ehs_frames(er.spectrum, et.spectrum)
        ehs.append(1000.0 * float(np.mean(per_frame[ok])) if ok.any() else 0.0)
    return {"SegmentalNMRB": float(np.mean(seg)), "EHSB": float(np.mean(ehs))}


def advanced_movs(
    ref: np.ndarray, test: np.ndarray, level_db: float = PLAYBACK_LEVEL_DB
) -> dict[str, float]:
    """The 5 MOVs of the advanced version; ``ref``, ``test`` (channels, samples) 16-bit scale."""
    movs = _filterbank_movs(ref, test, level_db)
    movs.update(_fft_movs(ref, test, level_db))
    return {k: float(movs[k]) for k in network.ADVANCED_MOVS}


def advanced_from_movs(movs: dict[str, float]) -> PeaqResult:
    x = np.array([movs[k] for k in network.ADVANCED_MOVS])
    di = network.distortion_index(
        x,
        network.ADVANCED_A_MIN,
        network.ADVANCED_A_MAX,
        network.ADVANCED_W_X,
        network.ADVANCED_W_Y,
    )
    return PeaqResult(di, network.odg(di), dict(movs))
