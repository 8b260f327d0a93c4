"""Level and dynamics: dynamic-range compression, clipping, bit-depth reduction."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from perceptual_audio.audio_io import is_silent
from perceptual_audio.degradations.base import (
    Family,
    ParamSpec,
    ac_power,
    as_signal,
    crest_factor_db,
    fit_length,
    level_table,
    not_applied,
)

logger = logging.getLogger(__name__)

#: Pre-roll (s) that settles the compressor's level detector before the first sample.
COMPRESSOR_PREROLL_SECONDS = 0.2


# -- dynamics ---------------------------------------------------------------------------------
def compress(
    x: np.ndarray,
    sample_rate: int,
    *,
    params: Mapping[str, Any],
    rng: np.random.Generator,
    info: dict | None = None,
) -> np.ndarray:
    """Dynamic-range compression (pedalboard ``Compressor``) with loudness-matching make-up gain.

    The threshold is set relative to the file's own RMS level (AC part), so a level is the same
    amount of compression whatever the recording level. The detector is primed with
    :data:`COMPRESSOR_PREROLL_SECONDS` of time-reversed opening, so the file's first samples
    are compressed like the rest. After compression a make-up gain
    restores the input's RMS, so loudness stays comparable and only the dynamics change.

    Parameters
    ----------
    params : mapping
        ``threshold_db_re_rms`` (dB relative to the file's RMS), ``ratio`` (input dB per output
        dB above threshold), ``attack_ms`` and ``release_ms`` (ms).
    info : dict, optional
        Receives ``threshold_dbfs``, ``makeup_gain_db``, ``dc_offset``, ``crest_factor_in_db``
        and ``crest_factor_out_db`` (AC part).

    Silent input is returned unchanged (no level to set the threshold against). A DC offset is
    removed before the compressor and added back unchanged after it.
    """
    import pedalboard  # deferred: heavy (JUCE); only this family needs it

    x = as_signal(x)
    if is_silent(x):
        return not_applied(
            x, info, "silent input: no level to set the threshold against, left unchanged"
        )
    rms_in = math.sqrt(ac_power(x))
    threshold_dbfs = 20 * math.log10(rms_in) + float(params["threshold_db_re_rms"])
    comp = pedalboard.Compressor(
        threshold_db=threshold_dbfs,
        ratio=float(params["ratio"]),
        attack_ms=float(params["attack_ms"]),
        release_ms=float(params["release_ms"]),
    )
    # Prime the level detector with the time-reversed opening (cut off again afterwards):
    # starting from a zero envelope would pass a loud opening uncompressed, and the make-up
    # gain would then push that opening far above the rest (seen on real recordings).
    # The compressor acts on the AC part (as AC-coupled hardware does); a DC offset would
    # otherwise hold the detector above threshold and be amplified by the make-up gain.
    dc = float(np.mean(x, dtype=np.float64))
    ac = (x.astype(np.float64) - dc).astype(np.float32)
    n_pre = min(len(x), int(round(COMPRESSOR_PREROLL_SECONDS * sample_rate)))
    primed = np.concatenate([ac[:n_pre][::-1], ac])
    y = np.asarray(comp(primed, sample_rate), dtype=np.float64).reshape(-1)[n_pre:]
    y = fit_length(y, len(x))
    rms_out = math.sqrt(ac_power(y))
    makeup = rms_in / rms_out if rms_out > 0 else 1.0
    y = (y * makeup + dc).astype(np.float32)
    if info is not None:
        info.update(
            threshold_dbfs=threshold_dbfs,
            makeup_gain_db=20 * math.log10(makeup),
            dc_offset=dc,
            crest_factor_in_db=crest_factor_db(x),
            crest_factor_out_db=crest_factor_db(y),
        )
    return y


def clip(
    x: np.ndarray,
    sample_rate: int,
    *,
    params: Mapping[str, Any],
    rng: np.random.Generator,
    info: dict | None = None,
) -> np.ndarray:
    """Symmetric hard clipping of a given fraction of the samples.

    The threshold is the magnitude exceeded by ``clip_fraction`` of the samples, so the level
    means the same on quiet and loud files; samples beyond it are set to +/- threshold.
    Clipping is about zero, as in a converter, so a DC offset makes it asymmetric.

    Parameters
    ----------
    params : mapping
        ``clip_fraction`` (fraction of samples clipped, 0 to 1).
    info : dict, optional
        Receives ``threshold`` (full-scale units), ``threshold_db_re_peak`` and
        ``clipped_fraction_achieved`` (ties at the threshold can make it differ slightly).

    Silent input is returned unchanged.
    """
    x = as_signal(x)
    if is_silent(x):
        return not_applied(x, info, "silent input: nothing to clip, left unchanged")
    mag = np.sort(np.abs(x))[::-1]
    k = int(round(float(params["clip_fraction"]) * len(x)))
    k = min(max(k, 0), len(x) - 1)
    threshold = float(mag[k])
    y = np.clip(x, -threshold, threshold).astype(np.float32)
    if info is not None:
        peak = float(mag[0])
        info.update(
            threshold=threshold,
            threshold_db_re_peak=20 * math.log10(threshold / peak)
            if threshold > 0
            else float("-inf"),
            clipped_fraction_achieved=float(np.mean(np.abs(x) > threshold)),
        )
    return y


def quantize(
    x: np.ndarray,
    sample_rate: int,
    *,
    params: Mapping[str, Any],
    rng: np.random.Generator,
    info: dict | None = None,
) -> np.ndarray:
    """Requantise to ``bits``-bit integer PCM (rounding, no dither) and back to float.

    The grid is two's-complement PCM: step 2 / 2**bits over [-1, 1 - step]; samples outside
    are saturated, as a real converter does.

    Parameters
    ----------
    params : mapping
        ``bits`` (bit depth, 2 to 24).
    info : dict, optional
        Receives ``step`` and ``saturated_samples``.
    """
    x = as_signal(x)
    bits = int(params["bits"])
    step = 2.0 / 2**bits
    q = np.round(x.astype(np.float64) / step) * step
    y = np.clip(q, -1.0, 1.0 - step).astype(np.float32)
    if info is not None:
        info.update(step=step, saturated_samples=int(np.sum(q != np.clip(q, -1.0, 1.0 - step))))
    return y


# -- families ---------------------------------------------------------------------------------
#: The families declared here (the registry, :mod:`.registry`, lists them in its order).
DECLARED: tuple[Family, ...] = (
    Family(
        "compression",
        "dynamic-range compression (pedalboard Compressor), threshold relative "
        "to the file's RMS, make-up gain restores the RMS",
        compress,
        (
            ParamSpec(
                "threshold_db_re_rms",
                "dB",
                "threshold relative to the file's RMS level",
                0.0,
                low=-60.0,
                high=20.0,
            ),
            ParamSpec(
                "ratio",
                "dB/dB",
                "compression ratio above the threshold",
                4.0,
                low=1.0,
                high=100.0,
            ),
            ParamSpec("attack_ms", "ms", "attack time", 5.0, low=0.01, high=1000.0),
            ParamSpec("release_ms", "ms", "release time", 100.0, low=1.0, high=5000.0),
        ),
        level_table(
            "compression",
            {
                "low": (
                    {
                        "threshold_db_re_rms": 0.0,
                        "ratio": 2.0,
                        "attack_ms": 10.0,
                        "release_ms": 100.0,
                    },
                    "mild",
                ),
                "high": (
                    {
                        "threshold_db_re_rms": -10.0,
                        "ratio": 4.0,
                        "attack_ms": 5.0,
                        "release_ms": 100.0,
                    },
                    "strong",
                ),
                "extreme": (
                    {
                        "threshold_db_re_rms": -20.0,
                        "ratio": 10.0,
                        "attack_ms": 1.0,
                        "release_ms": 50.0,
                    },
                    "extreme",
                ),
            },
        ),
        version=2,
        default=True,
    ),
    Family(
        "clipping",
        "symmetric hard clipping of a fraction of the samples",
        clip,
        (
            ParamSpec(
                "clip_fraction",
                "fraction",
                "share of samples clipped",
                0.01,
                low=0.0,
                high=1.0,
            ),
        ),
        level_table(
            "clipping",
            {
                "low": ({"clip_fraction": 0.01}, "1% of samples"),
                "high": ({"clip_fraction": 0.05}, "5%"),
                "extreme": ({"clip_fraction": 0.20}, "20%"),
            },
        ),
    ),
    Family(
        "bitdepth",
        "requantisation to fewer bits (rounding, no dither)",
        quantize,
        (ParamSpec("bits", "bits", "PCM bit depth", 8, kind=int, low=2, high=24),),
        level_table(
            "bitdepth",
            {
                "low": ({"bits": 12}, "12-bit"),
                "high": ({"bits": 8}, "8-bit"),
                "extreme": ({"bits": 6}, "6-bit"),
            },
        ),
    ),
)
