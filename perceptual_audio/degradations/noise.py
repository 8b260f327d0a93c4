"""Additive noise: white, pink and babble at an exact SNR."""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from perceptual_audio.audio_io import is_silent
from perceptual_audio.degradations.base import (
    Family,
    ParamSpec,
    ac_power,
    as_signal,
    level_table,
    not_applied,
    power_db,
)
from perceptual_audio.errors import ParameterError

logger = logging.getLogger(__name__)


# -- noise ------------------------------------------------------------------------------------
def pink_noise(n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean noise with a 1/f power spectrum (-3 dB per octave), unit variance.

    White Gaussian noise shaped in the frequency domain by 1/sqrt(f); the DC bin is zeroed.

    Returns
    -------
    np.ndarray [shape=(n_samples,), dtype=float64]
    """
    white = rng.standard_normal(n_samples)
    spec = np.fft.rfft(white)
    k = np.arange(len(spec), dtype=np.float64)
    k[0] = np.inf  # zero DC
    spec /= np.sqrt(k)
    pink = np.fft.irfft(spec, n_samples)
    pink -= pink.mean()
    std = pink.std()
    return pink / std if std > 0 else pink


def select_babble_talkers(
    candidates: Sequence[str], *, seed: int, n_talkers: int, exclude: str | None = None
) -> list[str]:
    """Choose the talkers of a babble mix by rendezvous hashing.

    Each candidate (a clean file path) gets the score sha256(seed|candidate); the
    ``n_talkers`` lowest win. Adding a file to the run changes a selection only when the new
    file out-ranks a chosen talker, and removing an unchosen file changes nothing.

    Returns the chosen candidates, sorted.
    """
    scored = sorted(
        (hashlib.sha256(f"{int(seed)}|{c}".encode()).hexdigest(), c)
        for c in set(candidates)
        if c != exclude
    )
    return sorted(c for _, c in scored[: max(0, int(n_talkers))])


def _babble(
    n: int, pool: Sequence[tuple[str, np.ndarray]], rng: np.random.Generator, info: dict | None
) -> np.ndarray:
    if not pool:
        raise ParameterError(
            "babble noise needs at least one other clean recording in the "
            "run (pool is empty); add recordings or choose white/pink noise"
        )
    mix = np.zeros(n, dtype=np.float64)
    used = []
    for name, talker in pool:
        t = np.asarray(talker, dtype=np.float64)
        t = t - t.mean()
        p = float(np.mean(t**2)) if len(t) else 0.0
        if p <= 0:
            used.append({"source": name, "offset_samples": None, "skipped": "silent"})
            continue
        offset = int(rng.integers(0, len(t)))
        # Loop the talker from a random start point until it covers the whole file.
        reps = int(math.ceil((offset + n) / len(t)))
        seg = np.tile(t, reps)[offset : offset + n]
        mix += seg / math.sqrt(p)  # equal power per talker
        used.append({"source": name, "offset_samples": offset})
    if info is not None:
        info["talkers"] = used
    if not np.any(mix):
        raise ParameterError("babble noise: every recording in the pool is silent")
    return mix


def add_noise(
    x: np.ndarray,
    sample_rate: int,
    *,
    params: Mapping[str, Any],
    rng: np.random.Generator,
    info: dict | None = None,
    pool: Sequence[tuple[str, np.ndarray]] | None = None,
) -> np.ndarray:
    """Add noise at an exact signal-to-noise ratio.

    SNR = 10 log10(P_signal / P_noise) over the whole file, with P_signal the mean square of
    ``x`` after removing its DC; the drawn noise is made zero-mean and scaled so that its
    *realised* power (not its expected power) gives exactly ``snr_db``.

    Parameters
    ----------
    x : np.ndarray [shape=(n,), dtype=float32]
    sample_rate : int
        Hz (unused by white and pink noise; recorded).
    params : mapping
        ``snr_db`` (dB), ``color`` (``white``, ``pink`` or ``babble``).
    rng : np.random.Generator
    info : dict, optional
        Receives ``signal_rms``, ``noise_gain``, ``snr_db_achieved`` (measured on the float32
        output), and for babble the talkers and their drawn start offsets.
    pool : sequence of (name, waveform), optional
        Babble talkers (other clean recordings at ``sample_rate``).

    Silent input (no AC signal) is returned unchanged: an SNR relative to nothing is undefined.
    """
    x = as_signal(x)
    if is_silent(x):
        return not_applied(x, info, "silent input: SNR is undefined, left unchanged")
    n = len(x)
    color = params["color"]
    if color == "white":
        noise = rng.standard_normal(n)
    elif color == "pink":
        noise = pink_noise(n, rng)
    elif color == "babble":
        noise = _babble(n, pool or [], rng, info)
    else:  # guarded by ParamSpec.choices; kept for direct callers
        raise ParameterError(f"noise color must be white, pink or babble, got {color!r}")
    noise = noise - noise.mean()
    p_signal = ac_power(x)
    p_noise = float(np.mean(noise**2))
    gain = math.sqrt(p_signal / (p_noise * 10 ** (params["snr_db"] / 10)))
    y = (x.astype(np.float64) + gain * noise).astype(np.float32)
    if info is not None:
        info["signal_rms"] = math.sqrt(p_signal)
        info["noise_gain"] = gain
        info["noise_rms"] = gain * math.sqrt(p_noise)
        info["snr_db_achieved"] = power_db(
            p_signal / float(np.mean((y.astype(np.float64) - x.astype(np.float64)) ** 2))
        )
    return y


# -- families ---------------------------------------------------------------------------------
def _noise_family(name: str, color: str, description: str, default: bool) -> Family:
    specs = (
        ParamSpec(
            "snr_db",
            "dB",
            "signal-to-noise ratio (signal power after DC removal)",
            15.0,
            low=-30.0,
            high=120.0,
        ),
        ParamSpec(
            "color",
            "",
            "noise spectrum: white, pink (1/f) or babble (other recordings)",
            color,
            kind=str,
            choices=("white", "pink", "babble"),
        ),
    ) + (
        (
            ParamSpec(
                "talkers", "count", "recordings mixed into the babble", 4, kind=int, low=1, high=64
            ),
        )
        if color == "babble"
        else ()
    )
    extra = {"talkers": 4} if color == "babble" else {}
    return Family(
        name,
        description,
        add_noise,
        specs,
        level_table(
            name,
            {
                "low": ({"snr_db": 30.0, "color": color, **extra}, "30 dB SNR"),
                "high": ({"snr_db": 15.0, "color": color, **extra}, "15 dB SNR"),
                "extreme": ({"snr_db": 5.0, "color": color, **extra}, "5 dB SNR"),
            },
        ),
        default=default,
        uses_pool=color == "babble",
    )


#: The families declared here (the registry, :mod:`.registry`, lists them in its order).
DECLARED: tuple[Family, ...] = (
    _noise_family("noise", "white", "additive white Gaussian noise at an exact SNR", True),
    _noise_family("pink_noise", "pink", "additive pink (1/f) noise at an exact SNR", False),
    _noise_family(
        "babble",
        "babble",
        "other clean recordings of the run (any content), mixed at "
        "equal power, added at an exact SNR",
        False,
    ),
)
