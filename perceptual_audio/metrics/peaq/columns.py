"""PEAQ and 2f-model columns of ``pair_metrics.csv``: the metric catalogue's group functions.

Each takes the study's audio at its own rate, resamples it to 48 kHz with soxr (like the
other 48 kHz metrics) and returns ``{column: Measurement}``; a failure (silent or too short
input) gives every column of the group NaN with the reason. The basic version is computed
once per pair even when its headline columns and its MOV columns are both selected (a
one-entry memo keyed by the audio's hash).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import numpy as np

from perceptual_audio.metrics.measures import Measurement, MetricSettings, _as_signal
from perceptual_audio.metrics.peaq import (
    SAMPLE_RATE,
    PeaqResult,
    peaq_advanced,
    peaq_basic,
    twof_mms_from_movs,
)
from perceptual_audio.metrics.peaq.network import BASIC_MOVS

#: Basic-version MOV -> its optional column (``--metrics peaq_movs``).
MOV_COLUMNS = {
    "BandwidthRefB": "peaq_bandwidth_ref",
    "BandwidthTestB": "peaq_bandwidth_test",
    "TotalNMRB": "peaq_total_nmr",
    "WinModDiff1B": "peaq_win_mod_diff1",
    "ADBB": "peaq_adb",
    "EHSB": "peaq_ehs",
    "AvgModDiff1B": "peaq_avg_mod_diff1",
    "AvgModDiff2B": "peaq_avg_mod_diff2",
    "RmsNoiseLoudB": "peaq_rms_noise_loud",
    "MFPDB": "peaq_mfpd",
    "RelDistFramesB": "peaq_rel_dist_frames",
}
assert tuple(MOV_COLUMNS) == BASIC_MOVS
BASIC_COLUMNS = ("peaq_odg", "peaq_di", "twof_mms")
ADVANCED_COLUMNS = ("peaq_adv_odg", "peaq_adv_di")

_VERSIONS: dict[str, Callable[..., PeaqResult]] = {
    "basic": peaq_basic,
    "advanced": peaq_advanced,
}
_memo: dict[str, tuple[str, PeaqResult | Exception]] = {}


def _at_48k(x: np.ndarray, sample_rate: int, quality: str, name: str) -> np.ndarray:
    x = _as_signal(x, name)
    if sample_rate == SAMPLE_RATE:
        return x
    from perceptual_audio.audio_io import resample

    return resample(x, sample_rate, SAMPLE_RATE, quality=quality)


def _key(ref: np.ndarray, deg: np.ndarray, sr: int, settings: MetricSettings, version: str) -> str:
    h = hashlib.sha1(np.ascontiguousarray(ref).tobytes())
    h.update(np.ascontiguousarray(deg).tobytes())
    h.update(f"{sr}|{settings.resample_quality}|{version}".encode())
    return h.hexdigest()


def _result(ref, deg, sr, settings: MetricSettings, version: str) -> PeaqResult | Exception:
    """The version's result for the pair (memoised for the last pair), or the exception."""
    key = _key(ref, deg, sr, settings, version)
    hit = _memo.get(version)
    if hit is not None and hit[0] == key:
        return hit[1]
    func: Callable[..., PeaqResult] = _VERSIONS[version]
    try:
        r = _at_48k(ref, sr, settings.resample_quality, "reference")
        d = _at_48k(deg, sr, settings.resample_quality, "degraded")
        out: PeaqResult | Exception = func(r, d, SAMPLE_RATE)
    except Exception as e:  # reported in the cells' status
        out = e
    _memo[version] = (key, out)
    return out


def _cells(result: PeaqResult | Exception, values: Callable[[PeaqResult], dict[str, float]]):
    if isinstance(result, Exception):
        from perceptual_audio.errors import MetricError

        text = " ".join(str(result).split())
        reason = text if isinstance(result, MetricError) else f"{type(result).__name__}: {text}"
        return {c: Measurement(math.nan, reason) for c in values(None)}  # type: ignore[arg-type]
    out = {}
    for column, value in values(result).items():
        ok = math.isfinite(value)
        out[column] = Measurement(value) if ok else Measurement(math.nan, "not finite")
    return out


def _basic_values(r: PeaqResult | None) -> dict[str, float]:
    if r is None:
        return dict.fromkeys(BASIC_COLUMNS, math.nan)
    mms = twof_mms_from_movs(r.movs["AvgModDiff1B"], r.movs["ADBB"])
    return {"peaq_odg": r.odg, "peaq_di": r.di, "twof_mms": mms}


def _mov_values(r: PeaqResult | None) -> dict[str, float]:
    if r is None:
        return dict.fromkeys(MOV_COLUMNS.values(), math.nan)
    return {column: r.movs[mov] for mov, column in MOV_COLUMNS.items()}


def peaq_group(ref, deg, sr, settings: MetricSettings) -> dict[str, Measurement]:
    """``peaq_odg``, ``peaq_di`` and ``twof_mms`` of one pair."""
    return _cells(_result(ref, deg, sr, settings, "basic"), _basic_values)


def peaq_movs_group(ref, deg, sr, settings: MetricSettings) -> dict[str, Measurement]:
    """The 11 basic-version MOVs of one pair (optional columns)."""
    return _cells(_result(ref, deg, sr, settings, "basic"), _mov_values)


def _advanced_values(r: PeaqResult | None) -> dict[str, float]:
    if r is None:
        return dict.fromkeys(ADVANCED_COLUMNS, math.nan)
    return {"peaq_adv_odg": r.odg, "peaq_adv_di": r.di}


def peaq_advanced_group(ref, deg, sr, settings: MetricSettings) -> dict[str, Measurement]:
    """``peaq_adv_odg`` and ``peaq_adv_di`` of one pair."""
    return _cells(_result(ref, deg, sr, settings, "advanced"), _advanced_values)
