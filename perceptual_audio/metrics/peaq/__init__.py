"""PEAQ, ITU-R BS.1387-1 (basic and advanced version), and the 2f-model, in NumPy.

PEAQ ("Perceptual Evaluation of Audio Quality") is the ITU's objective measure of the basic
audio quality of a coded or processed signal against its reference: an ear model, model
output variables (MOVs) and a small neural network that maps them to a distortion index
(DI) and an objective difference grade (ODG, -4 "very annoying" to 0 "imperceptible";
the network allows up to +0.22). The 2f-model (Kastner & Herre, IEEE WASPAA 2019) maps two
basic-version MOVs, AvgModDiff1 and ADB, to a MUSHRA score (0-100).

Why this package implements it: no PEAQ package exists on PyPI, and the open
implementations (the GStreamer plugin GstPEAQ in C, Kabal's PQevalAudio in MATLAB/C and
its ports) cannot be installed as dependencies, and none meets the Recommendation's
conformance tolerance on every item. This code is written from the Recommendation's text
(Annex 2), vectorised over frames, and tested on the ITU's conformance items
(``tests/test_peaq.py``).

Playback level: a full-scale sine (amplitude 1.0 of float audio, 32768 of 16-bit audio)
is taken to play at 92 dB SPL, the Recommendation's default for an unknown level (Annex 2
sections 2.1.3 and 2.2.3, and the level of its conformance test). Input is float audio in
[-1, 1] at 48 kHz; the thresholds the Recommendation states for 16-bit data (data
boundary 200, EHS frame energy 8000) apply to the audio scaled by 32768.

Channels: stereo is measured per channel and the MOVs are averaged over the channels
(section 5.3), except the detection-probability MOVs (MFPD, ADB), which take the larger
of the two channels band by band (binaural, eqs. 79-80).
"""

from __future__ import annotations

import math

import numpy as np

from perceptual_audio.errors import MetricError, ParameterError
from perceptual_audio.metrics.peaq.advanced import advanced_from_movs, advanced_movs
from perceptual_audio.metrics.peaq.basic import PeaqResult, basic_from_movs, basic_movs
from perceptual_audio.metrics.peaq.ear_fft import (
    FRAME_LENGTH,
    FULL_SCALE,
    HOP,
    PLAYBACK_LEVEL_DB,
    SAMPLE_RATE,
)
from perceptual_audio.metrics.peaq.movs import data_boundary

__all__ = [
    "MIN_FRAMES",
    "MIN_SAMPLES",
    "PeaqResult",
    "SAMPLE_RATE",
    "peaq_advanced",
    "peaq_basic",
    "twof_mms",
    "twof_mms_from_movs",
]

#: Frames the measurement needs: the 0.5 s of delayed averaging (24 frames) plus the 4-frame
#: window of WinModDiff1 (sections 5.2.3, 5.2.4.1). The Recommendation asks for items longer
#: than 0.5 s (Annex 1 section 3.2); with fewer frames the modulation MOVs have no value.
MIN_FRAMES = 28
#: Samples at 48 kHz of :data:`MIN_FRAMES` frames (29696, 0.619 s).
MIN_SAMPLES = FRAME_LENGTH + (MIN_FRAMES - 1) * HOP

#: 2f-model constants (Kastner & Herre 2019, eq. for MMS).
_TWOF = (56.1345, -0.0282, -0.8628, -27.1451, 86.3515)


def _channels(x: np.ndarray, name: str) -> np.ndarray:
    """(channels, n) float64 in 16-bit scale from (n,) or (n, channels) float audio."""
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] not in (1, 2):
        raise ParameterError(
            f"PEAQ: the {name} signal must be (n,) mono or (n, 2) stereo, got shape {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise MetricError(f"the {name} signal holds NaN or infinite samples")
    if not np.any(x):
        raise MetricError(f"the {name} signal is digital silence (all samples are 0)")
    return x.T * FULL_SCALE


def _prepare(reference: np.ndarray, degraded: np.ndarray, sample_rate: int):
    if sample_rate != SAMPLE_RATE:
        raise ParameterError(
            f"PEAQ is defined at {SAMPLE_RATE} Hz; got sample_rate={sample_rate} "
            "(resample first, e.g. perceptual_audio.audio_io.resample)"
        )
    ref, test = _channels(reference, "reference"), _channels(degraded, "degraded")
    if ref.shape[0] != test.shape[0]:
        raise ParameterError(
            f"PEAQ: reference has {ref.shape[0]} channel(s), degraded {test.shape[0]}"
        )
    n = min(ref.shape[1], test.shape[1])
    if n < MIN_SAMPLES:
        raise MetricError(
            f"PEAQ needs at least {MIN_SAMPLES} samples ({MIN_SAMPLES / SAMPLE_RATE:.3f} s) at "
            f"48 kHz: more than the Recommendation's 0.5 s, for the 0.5 s delayed averaging and "
            f"the 4-frame window; got {n} ({n / SAMPLE_RATE:.3f} s)"
        )
    ref, test = ref[:, :n], test[:, :n]
    if not data_boundary(ref, (n - FRAME_LENGTH) // HOP + 1).any():
        raise MetricError(
            "the reference signal is below PEAQ's data boundary everywhere (no 5 samples sum "
            "to more than 200/32768 in magnitude): nothing to measure"
        )
    return ref, test


def peaq_basic(
    reference: np.ndarray,
    degraded: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    *,
    playback_level_db: float = PLAYBACK_LEVEL_DB,
) -> PeaqResult:
    """PEAQ basic version of one pair (ITU-R BS.1387-1).

    Parameters
    ----------
    reference, degraded : np.ndarray [shape=(n,) or (n, 2)]
        Time-aligned float audio in [-1, 1] at 48 kHz, mono or stereo; cut to the shorter.
    sample_rate : int
        Hz; must be 48000.
    playback_level_db : float
        dB SPL of a full-scale sine (default 92, the Recommendation's).

    Returns
    -------
    PeaqResult
        ``di``, ``odg`` (about -3.98 to 0.22) and ``movs``, the 11 MOVs by name.

    Raises
    ------
    MetricError
        Silent or too short input (the message says which).
    ParameterError
        Wrong rate, shape or channel mismatch.
    """
    ref, test = _prepare(reference, degraded, sample_rate)
    return basic_from_movs(basic_movs(ref, test, playback_level_db))


def peaq_advanced(
    reference: np.ndarray,
    degraded: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    *,
    playback_level_db: float = PLAYBACK_LEVEL_DB,
) -> PeaqResult:
    """PEAQ advanced version of one pair (ITU-R BS.1387-1): the filter-bank ear model's
    RmsModDiff, RmsNoiseLoudAsym and AvgLinDist with the FFT model's Segmental NMR and EHS.

    Parameters, returns and raises as :func:`peaq_basic`; ``movs`` holds the 5 MOVs.
    """
    ref, test = _prepare(reference, degraded, sample_rate)
    return advanced_from_movs(advanced_movs(ref, test, playback_level_db))


def twof_mms_from_movs(avg_mod_diff1: float, adb: float) -> float:
    """The 2f-model's MUSHRA score from AvgModDiff1 and ADB, clipped to [0, 100].

    MMS = 56.1345 / (1 + (-0.0282 AvgModDiff1 - 0.8628)^2) - 27.1451 ADB + 86.3515
    (Kastner & Herre, "An efficient model for estimating subjective quality of separated
    audio source signals", IEEE WASPAA 2019).
    """
    a, b, c, d, e = _TWOF
    mms = a / (1.0 + (b * avg_mod_diff1 + c) ** 2) + d * adb + e
    return float(min(100.0, max(0.0, mms))) if math.isfinite(mms) else math.nan


def twof_mms(reference: np.ndarray, degraded: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """The 2f-model's MUSHRA score (0-100) of one pair, from the basic version's MOVs."""
    movs = peaq_basic(reference, degraded, sample_rate).movs
    return twof_mms_from_movs(movs["AvgModDiff1B"], movs["ADBB"])
