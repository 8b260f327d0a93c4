"""Filtering and time: band limiting, reverberation, packet loss, the neutral control."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from perceptual_audio.audio_io import resample
from perceptual_audio.degradations.base import (
    Family,
    ParamSpec,
    as_signal,
    fit_length,
    level_table,
    not_applied,
    power_db,
)

logger = logging.getLogger(__name__)


# -- filtering and time ----------------------------------------------------------------------
def bandlimit(
    x: np.ndarray,
    sample_rate: int,
    *,
    params: Mapping[str, Any],
    rng: np.random.Generator,
    info: dict | None = None,
) -> np.ndarray:
    """Band-limit by resampling down to 2 x ``cutoff_hz`` and back up (soxr VHQ).

    This is what a narrow-band channel does to wide-band audio. soxr's linear-phase filters put
    their stop band at the lower Nyquist frequency, so nothing above ``cutoff_hz`` survives
    (measured below -90 dB) and the output stays aligned. A cut-off at or above the input's
    Nyquist frequency leaves the signal unchanged (recorded as ``applied: false``).

    Parameters
    ----------
    params : mapping
        ``cutoff_hz`` (Hz).
    """
    x = as_signal(x)
    low_rate = int(round(2 * float(params["cutoff_hz"])))
    if low_rate >= sample_rate:
        return not_applied(
            x,
            info,
            f"cut-off {params['cutoff_hz']} Hz is at or above the Nyquist "
            f"frequency of {sample_rate} Hz audio, left unchanged",
        )
    y = resample(resample(x, sample_rate, low_rate), low_rate, sample_rate)
    if info is not None:
        info.update(intermediate_sample_rate=low_rate, resampler="soxr VHQ")
    return fit_length(y.astype(np.float32), len(x))


def synthetic_rir(
    sample_rate: int, *, rt60_seconds: float, drr_db: float, rng: np.random.Generator
) -> np.ndarray:
    """A synthetic room impulse response: a unit direct path then exponentially decaying noise.

    The tail is Gaussian noise under an envelope falling 60 dB in ``rt60_seconds`` (amplitude
    exp(-3 ln(10) t / RT60)), starting one sample after the direct path and lasting
    1.5 x RT60; it is scaled so that direct / reverberant energy = ``drr_db``. The whole
    response is then scaled to unit energy, so a broadband signal keeps about its level (a
    unit direct path plus the tail would make reverberant audio louder than the clean, which
    a level-sensitive metric would score as damage of another kind).

    Returns
    -------
    np.ndarray [shape=(L,), dtype=float64]
        ``sum(rir**2) == 1``; the direct path is ``rir[0]`` (no delay is introduced).
    """
    length = max(2, int(round(1.5 * rt60_seconds * sample_rate)))
    t = np.arange(1, length) / sample_rate
    tail = rng.standard_normal(length - 1) * np.exp(-3 * math.log(10) * t / rt60_seconds)
    tail *= math.sqrt(10 ** (-drr_db / 10) / float(np.sum(tail**2)))
    rir = np.concatenate([[1.0], tail])
    return rir / math.sqrt(float(np.sum(rir**2)))


def schroeder_rt60(rir: np.ndarray, sample_rate: int) -> float:
    """RT60 (s) from the Schroeder backward-integrated decay, fitted from -5 to -25 dB (T20 x 3).

    The direct path (``rir[0]``) is excluded so that only the reverberant decay is fitted.
    """
    energy = np.asarray(rir[1:], dtype=np.float64) ** 2
    edc = np.cumsum(energy[::-1])[::-1]
    edc_db = 10 * np.log10(edc / edc[0])
    sel = (edc_db <= -5) & (edc_db >= -25)
    t = np.arange(len(edc_db))[sel] / sample_rate
    slope, _ = np.polyfit(t, edc_db[sel], 1)
    return float(-60.0 / slope)


def reverb(
    x: np.ndarray,
    sample_rate: int,
    *,
    params: Mapping[str, Any],
    rng: np.random.Generator,
    info: dict | None = None,
) -> np.ndarray:
    """Convolve with a seeded synthetic room impulse response (:func:`synthetic_rir`).

    The direct path is at lag 0, so the output stays aligned; the reverberant tail beyond the
    input's end is cut (length preserved). The response has unit energy, so the output level
    stays close to the input's.

    Parameters
    ----------
    params : mapping
        ``rt60_seconds`` (s, time for a 60 dB decay), ``drr_db`` (direct-to-reverberant energy
        ratio, dB).
    info : dict, optional
        Receives ``rir_samples``, ``direct_gain`` and the RIR's measured
        ``rt60_seconds_measured`` and ``drr_db_measured``.
    """
    from scipy.signal import fftconvolve  # deferred: scipy.signal is slow to import

    x = as_signal(x)
    rir = synthetic_rir(
        sample_rate,
        rt60_seconds=float(params["rt60_seconds"]),
        drr_db=float(params["drr_db"]),
        rng=rng,
    )
    y = fftconvolve(x.astype(np.float64), rir)[: len(x)].astype(np.float32)
    if info is not None:
        info.update(
            rir_samples=len(rir),
            rt60_seconds_measured=schroeder_rt60(rir, sample_rate),
            direct_gain=float(rir[0]),
            drr_db_measured=power_db(float(rir[0] ** 2) / float(np.sum(rir[1:] ** 2))),
        )
    return y


def packet_loss(
    x: np.ndarray,
    sample_rate: int,
    *,
    params: Mapping[str, Any],
    rng: np.random.Generator,
    info: dict | None = None,
) -> np.ndarray:
    """Drop whole packets (zeroed, no concealment) at an exact loss rate.

    ``round(loss_rate x n_packets)`` packets (at least one when ``loss_rate > 0``) are drawn
    without replacement, uniformly over the file: the realised rate is the requested one (to
    one packet) even on short files, where independent per-packet draws could lose nothing.

    Parameters
    ----------
    params : mapping
        ``loss_rate`` (probability per packet, 0 to 1), ``packet_ms`` (packet length, ms).
    info : dict, optional
        Receives ``packet_samples``, ``n_packets``, ``lost_packets`` (indices, drawn) and
        ``loss_rate_achieved``.
    """
    x = as_signal(x)
    packet = max(1, int(round(float(params["packet_ms"]) * sample_rate / 1000)))
    n_packets = int(math.ceil(len(x) / packet))
    rate = float(params["loss_rate"])
    n_lost = min(n_packets, max(1, int(round(rate * n_packets)))) if rate > 0 else 0
    lost = np.sort(rng.choice(n_packets, size=n_lost, replace=False))
    y = x.copy()
    for k in lost:
        y[k * packet : (k + 1) * packet] = 0.0
    if info is not None:
        info.update(
            packet_samples=packet,
            n_packets=n_packets,
            lost_packets=[int(k) for k in lost],
            loss_rate_achieved=len(lost) / n_packets,
            concealment="none (zeros)",
        )
    return y


def neutral(
    x: np.ndarray,
    sample_rate: int,
    *,
    params: Mapping[str, Any],
    rng: np.random.Generator,
    info: dict | None = None,
) -> np.ndarray:
    """A perceptually neutral control: a small gain change and/or a sub-millisecond delay.

    The delay is a whole number of samples (``round(delay_ms * sample_rate / 1000)``): zeros
    in front, the end cut to keep the length. A good perceptual metric should score these
    as near-identical to the clean audio.

    Parameters
    ----------
    params : mapping
        ``gain_db`` (dB), ``delay_ms`` (ms, 0 to 1).
    """
    x = as_signal(x)
    d = int(round(float(params["delay_ms"]) * sample_rate / 1000))
    gain = 10 ** (float(params["gain_db"]) / 20)
    shifted = np.concatenate([np.zeros(min(d, len(x)), np.float32), x[: max(len(x) - d, 0)]])
    y = (shifted.astype(np.float64) * gain).astype(np.float32)
    if info is not None:
        info.update(delay_samples=d, gain=gain)
    return y


# -- families ---------------------------------------------------------------------------------
#: The families declared here (the registry, :mod:`.registry`, lists them in its order).
DECLARED: tuple[Family, ...] = (
    Family(
        "bandlimit",
        "band-limiting: resample down to 2 x cut-off and back (soxr VHQ)",
        bandlimit,
        (ParamSpec("cutoff_hz", "Hz", "upper band edge", 4000.0, low=100.0),),
        level_table(
            "bandlimit",
            {
                "low": ({"cutoff_hz": 4000.0}, "narrow-band telephone"),
                "high": ({"cutoff_hz": 2000.0}, ""),
                "extreme": ({"cutoff_hz": 1000.0}, ""),
            },
        ),
    ),
    Family(
        "reverb",
        "convolution with a seeded synthetic room impulse response",
        reverb,
        (
            ParamSpec(
                "rt60_seconds",
                "s",
                "reverberation time (60 dB decay)",
                0.5,
                low=0.01,
                high=10.0,
            ),
            ParamSpec(
                "drr_db",
                "dB",
                "direct-to-reverberant energy ratio",
                0.0,
                low=-40.0,
                high=40.0,
            ),
        ),
        level_table(
            "reverb",
            {
                "low": ({"rt60_seconds": 0.3, "drr_db": 6.0}, "small room"),
                "high": ({"rt60_seconds": 0.6, "drr_db": 0.0}, "large room"),
                "extreme": ({"rt60_seconds": 1.2, "drr_db": -6.0}, "hall"),
            },
        ),
    ),
    Family(
        "packet_loss",
        "dropped packets (zeroed, no concealment)",
        packet_loss,
        (
            ParamSpec(
                "loss_rate",
                "probability",
                "chance that a packet is lost",
                0.05,
                low=0.0,
                high=1.0,
            ),
            ParamSpec("packet_ms", "ms", "packet length", 20.0, low=1.0, high=1000.0),
        ),
        level_table(
            "packet_loss",
            {
                "low": ({"loss_rate": 0.02, "packet_ms": 20.0}, "2% of packets"),
                "high": ({"loss_rate": 0.10, "packet_ms": 20.0}, "10%"),
                "extreme": ({"loss_rate": 0.20, "packet_ms": 20.0}, "20%"),
            },
        ),
    ),
    Family(
        "neutral",
        "perceptually neutral controls: small gain change, sub-ms delay",
        neutral,
        (
            ParamSpec("gain_db", "dB", "gain change", 0.0, low=-6.0, high=6.0),
            ParamSpec("delay_ms", "ms", "delay (rounded to whole samples)", 0.0, low=0.0, high=1.0),
        ),
        level_table(
            "neutral",
            {
                "low": ({"gain_db": 0.5, "delay_ms": 0.0}, "+0.5 dB gain"),
                "high": ({"gain_db": 0.0, "delay_ms": 0.5}, "0.5 ms delay"),
                "extreme": (
                    {"gain_db": -1.0, "delay_ms": 0.9},
                    "-1 dB gain and 0.9 ms delay",
                ),
            },
        ),
    ),
)
