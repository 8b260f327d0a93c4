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
from typing import Protocol

import numpy as np

from perceptual_audio.audio_io import resample
from perceptual_audio.errors import MetricError
from perceptual_audio.metrics.peaq import (
    SAMPLE_RATE,
    PeaqResult,
    peaq_advanced,
    peaq_basic,
    twof_mms_from_movs,
)
from perceptual_audio.metrics.peaq.network import BASIC_MOVS
from perceptual_audio.metrics.signal import Measurement, as_signal


class GroupSettings(Protocol):
    """What the PEAQ groups read of the catalogue's ``MetricSettings`` (declared here so that
    the catalogue imports this module, not the other way round)."""

    resample_quality: str


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

#: ODAQ (Fraunhofer IIS 2024): absolute Pearson with MUSHRA aggregated over processing classes,
#: 2f-model 0.87 and PEAQ (basic) ODG 0.87 (ViSQOL audio 0.77, PESQ 0.74 on the same data).
_ODAQ = "ODAQ benchmark (Fraunhofer IIS 2024): |Pearson| 0.87 with MUSHRA"
#: Units of the MOV columns (the rest: "MOV units").
_MOV_UNITS = {
    "BandwidthRefB": "FFT lines",
    "BandwidthTestB": "FFT lines",
    "TotalNMRB": "dB",
    "ADBB": "log10 steps",
    "MFPDB": "probability",
    "RelDistFramesB": "fraction",
}
_ODG = "ODG, -4 to 0"
_BS1387 = "ITU-R BS.1387-1, 48 kHz, 92 dB SPL full scale"
#: The catalogue's entries of the PEAQ columns (MetricSpec fields besides kind and rate): the
#: bandwidth MOVs are better when wider, the other MOVs (distortions) when smaller.
PEAQ_SPEC_FIELDS: tuple[dict, ...] = (
    dict(name="peaq_odg", label="PEAQ ODG", unit=_ODG, higher_is_better=True, group="peaq",
         bounds=(-3.98, 0.22), validated_by=_ODAQ, headline=True,
         description=f"PEAQ basic version objective difference grade, {_BS1387}"),
    dict(name="peaq_di", label="PEAQ DI", unit="distortion index", higher_is_better=True,
         group="peaq", description="PEAQ basic version distortion index (the network output "
         "before the ODG mapping; unbounded, higher = less distortion)"),
    dict(name="twof_mms", label="2f-model MMS", unit="MUSHRA, 0-100", higher_is_better=True,
         group="peaq", bounds=(0.0, 100.0), validated_by=_ODAQ, headline=True,
         description="2f-model MUSHRA score from PEAQ's AvgModDiff1 and ADB (Kastner & Herre, "
         "WASPAA 2019)"),
    dict(name="peaq_adv_odg", label="PEAQ advanced ODG", unit=_ODG, higher_is_better=True,
         group="peaq_advanced", bounds=(-3.98, 0.22),
         description=f"PEAQ advanced version ODG (filter-bank and FFT ear models), {_BS1387}"),
    dict(name="peaq_adv_di", label="PEAQ advanced DI", unit="distortion index",
         higher_is_better=True, group="peaq_advanced",
         description="PEAQ advanced version distortion index"),
    *(
        dict(name=column, label=f"PEAQ {mov}", unit=_MOV_UNITS.get(mov, "MOV units"),
             higher_is_better=mov.startswith("Bandwidth"), group="peaq_movs", optional=True,
             description=f"PEAQ basic version's model output variable {mov} ({_BS1387})")
        for mov, column in MOV_COLUMNS.items()
    ),
)  # fmt: skip

_VERSIONS: dict[str, Callable[..., PeaqResult]] = {
    "basic": peaq_basic,
    "advanced": peaq_advanced,
}
_memo: dict[str, tuple[str, PeaqResult | Exception]] = {}


def _at_48k(x: np.ndarray, sample_rate: int, quality: str, name: str) -> np.ndarray:
    x = as_signal(x, name)
    if sample_rate == SAMPLE_RATE:
        return x
    return resample(x, sample_rate, SAMPLE_RATE, quality=quality)


def _key(ref: np.ndarray, deg: np.ndarray, sr: int, settings: GroupSettings, version: str) -> str:
    h = hashlib.sha1(np.ascontiguousarray(ref).tobytes())
    h.update(np.ascontiguousarray(deg).tobytes())
    h.update(f"{sr}|{settings.resample_quality}|{version}".encode())
    return h.hexdigest()


def _result(ref, deg, sr, settings: GroupSettings, version: str) -> PeaqResult | Exception:
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


def peaq_group(ref, deg, sr, settings: GroupSettings) -> dict[str, Measurement]:
    """``peaq_odg``, ``peaq_di`` and ``twof_mms`` of one pair."""
    return _cells(_result(ref, deg, sr, settings, "basic"), _basic_values)


def peaq_movs_group(ref, deg, sr, settings: GroupSettings) -> dict[str, Measurement]:
    """The 11 basic-version MOVs of one pair (optional columns)."""
    return _cells(_result(ref, deg, sr, settings, "basic"), _mov_values)


def _advanced_values(r: PeaqResult | None) -> dict[str, float]:
    if r is None:
        return dict.fromkeys(ADVANCED_COLUMNS, math.nan)
    return {"peaq_adv_odg": r.odg, "peaq_adv_di": r.di}


def peaq_advanced_group(ref, deg, sr, settings: GroupSettings) -> dict[str, Measurement]:
    """``peaq_adv_odg`` and ``peaq_adv_di`` of one pair."""
    return _cells(_result(ref, deg, sr, settings, "advanced"), _advanced_values)
