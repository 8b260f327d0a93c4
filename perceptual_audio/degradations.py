"""Controlled, seeded, recorded audio degradations (stage 2, first half).

Every degradation is a pure function ``f(x, sample_rate, *, params, rng, info=None) -> y``:

- ``x`` is a mono waveform, ``np.ndarray [shape=(n,), dtype=float32]``, nominally in [-1, 1];
- ``y`` has exactly the same length and dtype (codec delays are removed, lengths restored);
- every random value comes from ``rng`` (a ``np.random.Generator``), so a seed reproduces the
  output bit for bit;
- when ``info`` (a dict) is given, the function writes into it what it drew (noise gain, lost
  packets, ...) and what it measured (achieved SNR, encoded bitrate, codec delay, ...), so the
  manifest can record the exact degradation applied.

Functions are grouped into :class:`Family` objects (``noise``, ``bitrate``, ``compression``,
...), each with named :class:`Level` s (``low``, ``high``, ``extreme``: increasing damage).
:data:`FAMILIES` is the registry; :func:`apply_degradation` is the one entry point the stage
uses (input validation, output checks, flags).

Documented edge cases (the same for every family unless its docstring says otherwise):

- **silent input** (AC peak at or below :data:`perceptual_audio.audio_io.SILENCE_DBFS`): SNR, compression threshold and
  clipping threshold are undefined relative to the signal, so ``noise``, ``babble``,
  ``pink_noise``, ``compression`` and ``clipping`` return the input unchanged and record
  ``applied: false`` with the reason; every family flags the output ``silent``;
- **input shorter than a codec frame** (MP3 1152/576 samples, Opus and GSM 20 ms): encoded
  and decoded like any other (the codecs pad internally), length restored, flagged ``short``;
- **DC offset**: signal power for SNR and levels is measured on the AC part (mean removed),
  since DC carries no audible signal; the DC itself is kept in the output;
- **full scale**: outputs are float32 and may exceed 1.0 (float WAV keeps them); the output
  peak is recorded and flagged ``clipped_peak`` when above 1.0. Only ``bitdepth`` (a fixed
  integer grid) and ``gsm`` (a 16-bit codec) saturate at full scale, as the real systems do.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import math
import re
import textwrap
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perceptual_audio.audio_io import is_silent, resample
from perceptual_audio.errors import ParameterError, PerceptualAudioError

logger = logging.getLogger(__name__)

#: Line width of :func:`describe_families`.
HELP_WIDTH = 96
#: Level names are path components: letters, digits, ``_`` and ``-``.
LEVEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
#: The built-in level names, in increasing order of damage.
STANDARD_LEVELS = ("low", "high", "extreme")
#: Seeds are kept below 2**53 so that any CSV reader (even one going through float64) keeps
#: them exact.
SEED_MODULUS = 2**53

# MP3 (MPEG-1/2/2.5 Layer III) facts, as used by LAME through libsndfile.
#: Sample rates (Hz) an MP3 stream can carry.
MP3_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
#: Legal constant bitrates (kbps) per MPEG version; libsndfile maps its compression level
#: linearly onto [min, max] of the version's range (``mpeg_l3_encode.c``).
MP3_BITRATES_KBPS = {
    "MPEG-1": (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    "MPEG-2": (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    "MPEG-2.5": (8, 16, 24, 32, 40, 48, 56, 64),
}
#: Samples per MP3 frame per MPEG version.
MP3_FRAME_SAMPLES = {"MPEG-1": 1152, "MPEG-2": 576, "MPEG-2.5": 576}
#: Largest codec delay (samples) the alignment search considers.
MP3_MAX_LAG_SAMPLES = 4608
#: Sample rates (Hz) libopus accepts; others are resampled to 48 kHz around the codec.
OPUS_SAMPLE_RATES = (8000, 12000, 16000, 24000, 48000)
#: libsndfile maps Opus compression level c to (1 - c) * 250 kbps + 6 kbps (``ogg_opus.c``).
OPUS_MIN_KBPS, OPUS_SPAN_KBPS = 6.0, 250.0
#: Opus and GSM frames are 20 ms long.
CODEC_FRAME_SECONDS = 0.020
#: Pre-roll (s) that settles the compressor's level detector before the first sample.
COMPRESSOR_PREROLL_SECONDS = 0.2
#: GSM 06.10 full rate runs at 8 kHz, 160-sample frames, 13 kbit/s.
GSM_SAMPLE_RATE = 8000


# -- registry types ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a family: its unit, meaning, default and allowed values."""

    name: str
    unit: str
    description: str
    default: Any
    kind: type = float
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None

    def check(self, value: Any, where: str) -> Any:
        """Validate and normalise one value; ``where`` names the family and level."""
        what = f"{where}: parameter {self.name!r}"
        if self.kind is str:
            if not isinstance(value, str):
                raise ParameterError(f"{what} must be a string, got {value!r}")
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ParameterError(f"{what} must be a number ({self.unit}), got {value!r}")
            if not math.isfinite(float(value)):
                raise ParameterError(f"{what} must be finite, got {value!r}")
            if self.kind is int:
                if float(value) != int(value):
                    raise ParameterError(f"{what} must be an integer, got {value!r}")
                value = int(value)
            else:
                value = float(value)
            if self.low is not None and value < self.low:
                raise ParameterError(f"{what} must be >= {self.low} {self.unit}, got {value}")
            if self.high is not None and value > self.high:
                raise ParameterError(f"{what} must be <= {self.high} {self.unit}, got {value}")
        if self.choices is not None and value not in self.choices:
            raise ParameterError(f"{what} must be one of {list(self.choices)}, got {value!r}")
        return value


@dataclass(frozen=True)
class Level:
    """A named, fully specified parameter set of one family."""

    family: str
    name: str
    params: Mapping[str, Any]
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.params)

    def __reduce__(self) -> tuple:
        # A read-only mapping does not pickle; worker processes get a rebuilt copy.
        return (_make_level, (self.family, self.name, dict(self.params), self.note))


def _make_level(family: str, name: str, params: dict[str, Any], note: str) -> Level:
    return Level(family, name, types.MappingProxyType(params), note)


@dataclass(frozen=True)
class Family:
    """A kind of degradation: its function, parameters and named levels.

    Attributes
    ----------
    name : str
        Folder name under ``degraded/``.
    description : str
        One line for ``--help``.
    function : callable
        ``function(x, sample_rate, *, params, rng, info=None[, pool]) -> y``.
    params : tuple of ParamSpec
    levels : Mapping[str, Level]
        Built-in levels, in increasing order of damage.
    version : int
        Bumped when the algorithm changes its output for the same parameters (reruns then
        regenerate the family's files).
    default : bool
        Part of the default selection.
    uses_pool : bool
        The function needs ``pool``: other clean recordings of the run (babble).
    """

    name: str
    description: str
    function: Callable[..., np.ndarray]
    params: tuple[ParamSpec, ...]
    levels: Mapping[str, Level]
    version: int = 1
    default: bool = False
    uses_pool: bool = False

    @property
    def param_specs(self) -> dict[str, ParamSpec]:
        return {p.name: p for p in self.params}

    def level(self, name: str) -> Level:
        """The built-in level ``name``; the error lists the valid names."""
        try:
            return self.levels[name]
        except KeyError:
            raise ParameterError(
                f"degradation family {self.name!r} has no level {name!r}; "
                f"choose one of {list(self.levels)} or define it in a JSON/TOML file"
            ) from None

    def make_level(
        self, name: str, overrides: Mapping[str, Any] | None = None, note: str = ""
    ) -> Level:
        """A validated level: the built-in level ``name`` (or the family's defaults when there
        is none) with ``overrides`` applied."""
        where = f"degradation {self.name}:{name}"
        if not LEVEL_NAME_PATTERN.match(name):
            raise ParameterError(
                f"{where}: level names may hold only letters, digits, '_' and "
                f"'-' (they become folder names), got {name!r}"
            )
        specs = self.param_specs
        base = (
            dict(self.levels[name].params)
            if name in self.levels
            else {p.name: p.default for p in self.params}
        )
        for key, value in (overrides or {}).items():
            if key not in specs:
                raise ParameterError(
                    f"{where}: unknown parameter {key!r}; {self.name} takes {sorted(specs)}"
                )
            base[key] = value
        checked = {k: specs[k].check(v, where) for k, v in sorted(base.items())}
        return Level(
            self.name,
            name,
            types.MappingProxyType(checked),
            note or (self.levels[name].note if name in self.levels else ""),
        )


def _levels(family: str, table: Mapping[str, tuple[dict[str, Any], str]]) -> Mapping[str, Level]:
    return types.MappingProxyType(
        {
            name: Level(family, name, types.MappingProxyType(dict(sorted(p.items()))), note)
            for name, (p, note) in table.items()
        }
    )


# -- helpers ----------------------------------------------------------------------------------
def _as_signal(x: np.ndarray, what: str = "x") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1:
        raise ParameterError(f"{what}: expected a mono waveform of shape (n,), got shape {x.shape}")
    if x.size == 0:
        raise ParameterError(f"{what}: the waveform is empty (0 samples)")
    if not np.all(np.isfinite(x)):
        raise ParameterError(f"{what}: the waveform holds NaN or infinite samples")
    return x.astype(np.float32, copy=False)


def _db(power_ratio: float) -> float:
    return 10.0 * math.log10(power_ratio) if power_ratio > 0 else float("-inf")


def ac_power(x: np.ndarray) -> float:
    """Mean square of ``x`` after removing its mean (the DC), in full-scale units squared."""
    x64 = np.asarray(x, dtype=np.float64)
    return float(np.mean((x64 - x64.mean()) ** 2))


def crest_factor_db(x: np.ndarray) -> float:
    """Peak-to-RMS ratio of ``x`` in dB (AC part)."""
    x64 = np.asarray(x, dtype=np.float64)
    x64 = x64 - x64.mean()
    rms = math.sqrt(float(np.mean(x64**2)))
    return 20 * math.log10(float(np.max(np.abs(x64))) / rms) if rms > 0 else float("nan")


def xcorr_lag(reference: np.ndarray, delayed: np.ndarray, *, max_lag: int) -> int:
    """Lag (samples) in [-max_lag, max_lag] that maximises the cross-correlation.

    A positive lag means ``delayed`` is late: ``delayed[k + lag] ~ reference[k]``.
    """
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(delayed, dtype=np.float64)
    n_fft = 1 << int(math.ceil(math.log2(len(a) + len(b) + 1)))
    cc = np.fft.irfft(np.fft.rfft(b, n_fft) * np.conj(np.fft.rfft(a, n_fft)), n_fft)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    values = np.concatenate([cc[: max_lag + 1], cc[n_fft - max_lag :]])
    return int(lags[int(np.argmax(values))])


def derive_seed(run_seed: int, family: str, level: str, path: str) -> int:
    """The per-file seed: a hash of (run seed, family, level, clean file path).

    Depends on nothing else, so adding or removing other files never changes a file's noise.
    Returns an int in [0, 2**53).
    """
    blob = f"{int(run_seed)}|{family}|{level}|{path}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") % SEED_MODULUS


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    if len(y) >= n:
        return y[:n]
    return np.concatenate([y, np.zeros(n - len(y), dtype=y.dtype)])


def _skip(x: np.ndarray, info: dict | None, reason: str) -> np.ndarray:
    if info is not None:
        info["applied"] = False
        info["reason"] = reason
    return x.astype(np.float32, copy=True)


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
    x = _as_signal(x)
    if is_silent(x):
        return _skip(x, info, "silent input: SNR is undefined, left unchanged")
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
        info["snr_db_achieved"] = _db(
            p_signal / float(np.mean((y.astype(np.float64) - x.astype(np.float64)) ** 2))
        )
    return y


# -- MP3 --------------------------------------------------------------------------------------
def mpeg_version(sample_rate: int) -> str:
    """``MPEG-1`` (32-48 kHz), ``MPEG-2`` (16-24 kHz) or ``MPEG-2.5`` (8-12 kHz)."""
    if sample_rate >= 32000:
        return "MPEG-1"
    if sample_rate >= 16000:
        return "MPEG-2"
    return "MPEG-2.5"


def mp3_codec_rate(sample_rate: int, bitrate_kbps: int) -> int:
    """The MP3 sample rate (Hz) used to encode ``sample_rate`` audio at ``bitrate_kbps``.

    The input rate itself when MP3 carries it at that bitrate; otherwise the highest MP3 rate
    below it that allows the bitrate (what an encoder does for low bitrates: 8 kbps does not
    exist at 44.1 kHz), else the lowest one above it.
    """

    def ok(rate: int) -> bool:
        return bitrate_kbps in MP3_BITRATES_KBPS[mpeg_version(rate)]

    if sample_rate in MP3_SAMPLE_RATES and ok(sample_rate):
        return sample_rate
    below = [r for r in MP3_SAMPLE_RATES if r <= sample_rate and ok(r)]
    if below:
        return max(below)
    above = [r for r in MP3_SAMPLE_RATES if r > sample_rate and ok(r)]
    if above:
        return min(above)
    legal = sorted(set().union(*MP3_BITRATES_KBPS.values()))
    raise ParameterError(
        f"MP3 bitrate {bitrate_kbps} kbps is not a legal MP3 bitrate; choose one of {legal}"
    )


def mp3_compression_level(sample_rate: int, bitrate_kbps: int) -> float:
    """libsndfile's ``compression_level`` that selects ``bitrate_kbps`` in CONSTANT mode.

    libsndfile computes ``int(max - level * (max - min))`` over the MPEG version's bitrate
    range; aiming 0.25 kbps above the target survives the truncation.
    """
    rates = MP3_BITRATES_KBPS[mpeg_version(sample_rate)]
    lo, hi = rates[0], rates[-1]
    return float(min(1.0, max(0.0, (hi - bitrate_kbps - 0.25) / (hi - lo))))


def _mp3_roundtrip(x: np.ndarray, sample_rate: int, bitrate_kbps: int) -> tuple[np.ndarray, int]:
    import soundfile as sf

    buf = io.BytesIO()
    try:
        sf.write(
            buf,
            x,
            sample_rate,
            format="MP3",
            subtype="MPEG_LAYER_III",
            bitrate_mode="CONSTANT",
            compression_level=mp3_compression_level(sample_rate, bitrate_kbps),
        )
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise PerceptualAudioError(
            f"MP3 encoding at {bitrate_kbps} kbps, {sample_rate} Hz failed in libsndfile ({e}); "
            "libsndfile >= 1.1 built with LAME and mpg123 is required"
        ) from None
    n_bytes = buf.tell()
    buf.seek(0)
    y, decoded_rate = sf.read(buf, dtype="float32")
    if decoded_rate != sample_rate:
        raise PerceptualAudioError(
            f"MP3 decoded at {decoded_rate} Hz, encoded at {sample_rate} Hz:"
            " the encoder changed the sample rate"
        )
    return (y if y.ndim == 1 else y.mean(axis=1)).astype(np.float32), n_bytes


@functools.lru_cache(maxsize=64)
def mp3_delay_samples(sample_rate: int, bitrate_kbps: int) -> int:
    """Delay (samples) of an MP3 encode + decode through libsndfile, measured once.

    A 2 s seeded white-noise probe is encoded and decoded with the same settings; the delay is
    the cross-correlation peak. (With LAME at 16 kHz and <= 32 kbps this is 1105 = 576 encoder
    + 529 decoder samples; at higher bitrates LAME's info tag lets the decoder remove it, 0.)
    Noise gives one unambiguous peak, unlike periodic or silent program material.
    """
    probe = np.random.default_rng(20240607).standard_normal(2 * sample_rate).astype(np.float32)
    probe *= 0.1
    y, _ = _mp3_roundtrip(probe, sample_rate, bitrate_kbps)
    lag = xcorr_lag(
        probe, _fit_length(y, len(probe) + MP3_MAX_LAG_SAMPLES), max_lag=MP3_MAX_LAG_SAMPLES
    )
    if lag < 0:
        raise PerceptualAudioError(
            f"MP3 round trip at {sample_rate} Hz, {bitrate_kbps} kbps "
            f"measured a negative delay ({lag} samples)"
        )
    logger.debug(
        "MP3 %d Hz %d kbps: measured codec delay %d samples", sample_rate, bitrate_kbps, lag
    )
    return lag


def mp3(
    x: np.ndarray,
    sample_rate: int,
    *,
    params: Mapping[str, Any],
    rng: np.random.Generator,
    info: dict | None = None,
) -> np.ndarray:
    """A real MP3 encode + decode (LAME + mpg123 via libsndfile), constant bitrate.

    The codec delay (:func:`mp3_delay_samples`, measured, not assumed) is cut from the front and
    the output trimmed to the input length, so the output is sample-aligned with the input.
    Audio at a rate MP3 cannot carry at the bitrate is resampled (soxr) to
    :func:`mp3_codec_rate` for the codec and back.

    Parameters
    ----------
    params : mapping
        ``bitrate_kbps`` (kbit/s; a legal MP3 constant bitrate).
    rng : np.random.Generator
        Unused (the codec is deterministic).
    info : dict, optional
        Receives ``codec_sample_rate``, ``compression_level``, ``encoded_bytes``,
        ``achieved_kbps`` (encoded bytes x 8 / duration, padding and headers included),
        ``codec_delay_samples``, ``frame_samples``.
    """
    x = _as_signal(x)
    kbps = int(params["bitrate_kbps"])
    codec_rate = mp3_codec_rate(sample_rate, kbps)
    xc = resample(x, sample_rate, codec_rate) if codec_rate != sample_rate else x
    decoded, n_bytes = _mp3_roundtrip(xc, codec_rate, kbps)
    delay = mp3_delay_samples(codec_rate, kbps)
    yc = _fit_length(decoded[delay:], len(xc))
    y = resample(yc, codec_rate, sample_rate) if codec_rate != sample_rate else yc
    y = _fit_length(np.asarray(y, dtype=np.float32), len(x))
    if info is not None:
        version = mpeg_version(codec_rate)
        info.update(
            codec="MP3 (LAME via libsndfile), constant bitrate",
            mpeg_version=version,
            codec_sample_rate=codec_rate,
            compression_level=mp3_compression_level(codec_rate, kbps),
            encoded_bytes=n_bytes,
            achieved_kbps=n_bytes * 8 / (len(xc) / codec_rate) / 1000,
            codec_delay_samples=delay,
            frame_samples=MP3_FRAME_SAMPLES[version],
            short=len(xc) < MP3_FRAME_SAMPLES[version],
        )
    return y


# -- Opus -------------------------------------------------------------------------------------
def ogg_packet_sizes(data: bytes) -> list[int]:
    """Sizes (bytes) of the logical packets of a single-stream Ogg file, in order.

    Reads the page headers (``OggS``, 27 bytes + lacing table) and joins segments into packets
    (a lacing value below 255 ends a packet). For Ogg/Opus, packets 0 and 1 are the OpusHead and
    OpusTags headers; the rest are audio.
    """
    sizes: list[int] = []
    pos, current = 0, 0
    while pos + 27 <= len(data):
        if data[pos : pos + 4] != b"OggS":
            raise PerceptualAudioError(f"Ogg stream: no page header at byte {pos}")
        n_segments = data[pos + 26]
        lacing = data[pos + 27 : pos + 27 + n_segments]
        pos += 27 + n_segments + sum(lacing)
        for value in lacing:
            current += value
            if value < 255:
                sizes.append(current)
                current = 0
    return sizes


def opus(
    x: np.ndarray,
    sample_rate: int,
    *,
    params: Mapping[str, Any],
    rng: np.random.Generator,
    info: dict | None = None,
) -> np.ndarray:
    """A real Opus encode + decode (libopus via libsndfile's Ogg/Opus), VBR at a target bitrate.

    The Ogg container's pre-skip removes the codec delay on decoding (checked by the tests:
    cross-correlation lag 0 +/- 1). Rates libopus does not take are resampled to 48 kHz.

    Parameters
    ----------
    params : mapping
        ``bitrate_kbps`` (kbit/s target, 6 to 256).
    info : dict, optional
        Receives ``codec_sample_rate``, ``compression_level``, ``encoded_bytes``,
        ``achieved_kbps`` (whole file, Ogg headers and framing included) and
        ``payload_kbps`` (Opus audio packets only: the codec's own bitrate).
    """
    import soundfile as sf

    x = _as_signal(x)
    kbps = float(params["bitrate_kbps"])
    codec_rate = sample_rate if sample_rate in OPUS_SAMPLE_RATES else 48000
    xc = resample(x, sample_rate, codec_rate) if codec_rate != sample_rate else x
    level = float(min(1.0, max(0.0, 1.0 - (kbps - OPUS_MIN_KBPS) / OPUS_SPAN_KBPS)))
    buf = io.BytesIO()
    try:
        sf.write(buf, xc, codec_rate, format="OGG", subtype="OPUS", compression_level=level)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise PerceptualAudioError(
            f"Opus encoding at {kbps} kbps, {codec_rate} Hz failed in "
            f"libsndfile ({e}); libsndfile >= 1.0.29 with Opus is required"
        ) from None
    n_bytes = buf.tell()
    payload_bytes = sum(ogg_packet_sizes(buf.getvalue()[:n_bytes])[2:])
    buf.seek(0)
    decoded, decoded_rate = sf.read(buf, dtype="float32")
    if decoded_rate != codec_rate:
        raise PerceptualAudioError(f"Opus decoded at {decoded_rate} Hz, encoded at {codec_rate} Hz")
    yc = _fit_length(decoded, len(xc))
    y = resample(yc, codec_rate, sample_rate) if codec_rate != sample_rate else yc
    y = _fit_length(np.asarray(y, dtype=np.float32), len(x))
    if info is not None:
        info.update(
            codec="Opus (libopus via libsndfile Ogg/Opus), VBR",
            codec_sample_rate=codec_rate,
            compression_level=level,
            encoded_bytes=n_bytes,
            achieved_kbps=n_bytes * 8 / (len(xc) / codec_rate) / 1000,
            payload_kbps=payload_bytes * 8 / (len(xc) / codec_rate) / 1000,
            decoded_length_difference=int(len(decoded) - len(xc)),
            short=len(xc) < CODEC_FRAME_SECONDS * codec_rate,
        )
    return y


# -- GSM --------------------------------------------------------------------------------------
def gsm(
    x: np.ndarray,
    sample_rate: int,
    *,
    params: Mapping[str, Any],
    rng: np.random.Generator,
    info: dict | None = None,
) -> np.ndarray:
    """GSM 06.10 full-rate speech codec (13 kbit/s at 8 kHz), ``passes`` times in tandem.

    pedalboard's ``GSMFullRateCompressor`` resamples to 8 kHz, encodes, decodes and resamples
    back, compensating its latency. Tandem coding (a call crossing several GSM links) is a real
    way the damage grows; levels are 1, 2 and 4 passes. GSM saturates at 16-bit full scale.

    Parameters
    ----------
    params : mapping
        ``passes`` (count of encode/decode cycles).
    """
    import pedalboard

    x = _as_signal(x)
    y = x
    for _ in range(int(params["passes"])):
        codec = pedalboard.GSMFullRateCompressor()
        y = np.asarray(codec(y.astype(np.float32), sample_rate), dtype=np.float32).reshape(-1)
    y = _fit_length(y, len(x))
    if info is not None:
        info.update(
            codec="GSM 06.10 full rate (pedalboard GSMFullRateCompressor)",
            codec_sample_rate=GSM_SAMPLE_RATE,
            nominal_kbps=13.0,
            short=len(x) < CODEC_FRAME_SECONDS * sample_rate,
        )
    return y


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
    import pedalboard

    x = _as_signal(x)
    if is_silent(x):
        return _skip(x, info, "silent input: no level to set the threshold against, left unchanged")
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
    y = _fit_length(y, len(x))
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
    x = _as_signal(x)
    if is_silent(x):
        return _skip(x, info, "silent input: nothing to clip, left unchanged")
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
    x = _as_signal(x)
    bits = int(params["bits"])
    step = 2.0 / 2**bits
    q = np.round(x.astype(np.float64) / step) * step
    y = np.clip(q, -1.0, 1.0 - step).astype(np.float32)
    if info is not None:
        info.update(step=step, saturated_samples=int(np.sum(q != np.clip(q, -1.0, 1.0 - step))))
    return y


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
    x = _as_signal(x)
    low_rate = int(round(2 * float(params["cutoff_hz"])))
    if low_rate >= sample_rate:
        return _skip(
            x,
            info,
            f"cut-off {params['cutoff_hz']} Hz is at or above the Nyquist "
            f"frequency of {sample_rate} Hz audio, left unchanged",
        )
    y = resample(resample(x, sample_rate, low_rate), low_rate, sample_rate)
    if info is not None:
        info.update(intermediate_sample_rate=low_rate, resampler="soxr VHQ")
    return _fit_length(y.astype(np.float32), len(x))


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
    from scipy.signal import fftconvolve

    x = _as_signal(x)
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
            drr_db_measured=_db(float(rir[0] ** 2) / float(np.sum(rir[1:] ** 2))),
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
    x = _as_signal(x)
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
    x = _as_signal(x)
    d = int(round(float(params["delay_ms"]) * sample_rate / 1000))
    gain = 10 ** (float(params["gain_db"]) / 20)
    shifted = np.concatenate([np.zeros(min(d, len(x)), np.float32), x[: max(len(x) - d, 0)]])
    y = (shifted.astype(np.float64) * gain).astype(np.float32)
    if info is not None:
        info.update(delay_samples=d, gain=gain)
    return y


# -- registry ---------------------------------------------------------------------------------
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
        _levels(
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


FAMILIES: Mapping[str, Family] = types.MappingProxyType(
    {
        f.name: f
        for f in (
            _noise_family("noise", "white", "additive white Gaussian noise at an exact SNR", True),
            Family(
                "bitrate",
                "real MP3 encode + decode (LAME via libsndfile), constant bitrate, "
                "delay removed and length restored",
                mp3,
                (
                    ParamSpec(
                        "bitrate_kbps",
                        "kbit/s",
                        "MP3 constant bitrate",
                        32,
                        kind=int,
                        low=8,
                        high=320,
                    ),
                ),
                _levels(
                    "bitrate",
                    {
                        "low": ({"bitrate_kbps": 32}, "32 kbps"),
                        "high": ({"bitrate_kbps": 16}, "16 kbps"),
                        "extreme": ({"bitrate_kbps": 8}, "8 kbps"),
                    },
                ),
                default=True,
            ),
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
                _levels(
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
            ),  # 2: detector primed with a pre-roll, DC bypassed
            _noise_family("pink_noise", "pink", "additive pink (1/f) noise at an exact SNR", False),
            _noise_family(
                "babble",
                "babble",
                "other clean recordings of the run (any content), mixed at "
                "equal power, added at an exact SNR",
                False,
            ),
            Family(
                "bandlimit",
                "band-limiting: resample down to 2 x cut-off and back (soxr VHQ)",
                bandlimit,
                (ParamSpec("cutoff_hz", "Hz", "upper band edge", 4000.0, low=100.0),),
                _levels(
                    "bandlimit",
                    {
                        "low": ({"cutoff_hz": 4000.0}, "narrow-band telephone"),
                        "high": ({"cutoff_hz": 2000.0}, ""),
                        "extreme": ({"cutoff_hz": 1000.0}, ""),
                    },
                ),
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
                _levels(
                    "clipping",
                    {
                        "low": ({"clip_fraction": 0.01}, "1% of samples"),
                        "high": ({"clip_fraction": 0.05}, "5%"),
                        "extreme": ({"clip_fraction": 0.20}, "20%"),
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
                _levels(
                    "reverb",
                    {
                        "low": ({"rt60_seconds": 0.3, "drr_db": 6.0}, "small room"),
                        "high": ({"rt60_seconds": 0.6, "drr_db": 0.0}, "large room"),
                        "extreme": ({"rt60_seconds": 1.2, "drr_db": -6.0}, "hall"),
                    },
                ),
            ),
            Family(
                "gsm",
                "GSM 06.10 full-rate codec (13 kbit/s, 8 kHz), tandem passes",
                gsm,
                (
                    ParamSpec(
                        "passes",
                        "count",
                        "encode/decode cycles in tandem",
                        1,
                        kind=int,
                        low=1,
                        high=16,
                    ),
                ),
                _levels(
                    "gsm",
                    {
                        "low": ({"passes": 1}, "one link"),
                        "high": ({"passes": 2}, "two links in tandem"),
                        "extreme": ({"passes": 4}, "four links in tandem"),
                    },
                ),
            ),
            Family(
                "opus",
                "real Opus encode + decode (libopus via libsndfile Ogg/Opus), VBR",
                opus,
                (ParamSpec("bitrate_kbps", "kbit/s", "target bitrate", 24.0, low=6.0, high=256.0),),
                _levels(
                    "opus",
                    {
                        "low": ({"bitrate_kbps": 24.0}, "24 kbps"),
                        "high": ({"bitrate_kbps": 12.0}, "12 kbps"),
                        "extreme": ({"bitrate_kbps": 6.0}, "6 kbps"),
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
                _levels(
                    "packet_loss",
                    {
                        "low": ({"loss_rate": 0.02, "packet_ms": 20.0}, "2% of packets"),
                        "high": ({"loss_rate": 0.10, "packet_ms": 20.0}, "10%"),
                        "extreme": ({"loss_rate": 0.20, "packet_ms": 20.0}, "20%"),
                    },
                ),
            ),
            Family(
                "bitdepth",
                "requantisation to fewer bits (rounding, no dither)",
                quantize,
                (ParamSpec("bits", "bits", "PCM bit depth", 8, kind=int, low=2, high=24),),
                _levels(
                    "bitdepth",
                    {
                        "low": ({"bits": 12}, "12-bit"),
                        "high": ({"bits": 8}, "8-bit"),
                        "extreme": ({"bits": 6}, "6-bit"),
                    },
                ),
            ),
            Family(
                "neutral",
                "perceptually neutral controls: small gain change, sub-ms delay",
                neutral,
                (
                    ParamSpec("gain_db", "dB", "gain change", 0.0, low=-6.0, high=6.0),
                    ParamSpec(
                        "delay_ms", "ms", "delay (rounded to whole samples)", 0.0, low=0.0, high=1.0
                    ),
                ),
                _levels(
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
    }
)

#: The default selection (DESIGN.md section 5): every level of these families.
DEFAULT_FAMILIES = tuple(name for name, fam in FAMILIES.items() if fam.default)


def get_family(name: str) -> Family:
    """The registered family ``name``; the error lists the known names."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ParameterError(
            f"unknown degradation family {name!r}; known families: {list(FAMILIES)}"
        ) from None


# -- applying ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Degraded:
    """Result of :func:`apply_degradation`."""

    audio: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()


def apply_degradation(
    x: np.ndarray,
    sample_rate: int,
    level: Level,
    *,
    rng: np.random.Generator,
    pool: Sequence[tuple[str, np.ndarray]] | None = None,
) -> Degraded:
    """Apply one level of one family, check the output, and collect what was recorded.

    Parameters
    ----------
    x : np.ndarray [shape=(n,)]
        Mono input, any float dtype (converted to float32).
    sample_rate : int
        Hz.
    level : Level
        From ``FAMILIES[name].levels`` or :meth:`Family.make_level`.
    rng : np.random.Generator
        The file's generator (``np.random.default_rng(derive_seed(...))``).
    pool : sequence of (name, waveform), optional
        For families with ``uses_pool`` (babble).

    Returns
    -------
    Degraded
        ``audio`` float32 (n,); ``info`` with drawn and measured values plus ``output_peak``;
        ``flags`` among ``silent``, ``short``, ``clipped_peak``.

    Raises
    ------
    ParameterError
        Bad input waveform or parameters.
    PerceptualAudioError
        The degradation produced a wrong length or non-finite samples (a bug or codec fault).
    """
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ParameterError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}")
    x = _as_signal(x)
    family = get_family(level.family)
    info: dict[str, Any] = {}
    kwargs: dict[str, Any] = {"params": level.params, "rng": rng, "info": info}
    if family.uses_pool:
        kwargs["pool"] = pool
    y = family.function(x, int(sample_rate), **kwargs)
    if y.shape != x.shape or y.dtype != np.float32:
        raise PerceptualAudioError(
            f"degradation {level.family}:{level.name} returned shape {y.shape} {y.dtype}; "
            f"expected {x.shape} float32"
        )
    if not np.all(np.isfinite(y)):
        raise PerceptualAudioError(
            f"degradation {level.family}:{level.name} produced NaN or infinite samples"
        )
    flags = []
    if is_silent(x):
        flags.append("silent")
    if info.pop("short", False):
        flags.append("short")
    peak = float(np.max(np.abs(y)))
    info.setdefault("applied", True)
    info["output_peak"] = peak
    if peak > 1.0:
        flags.append("clipped_peak")
    return Degraded(y, info, tuple(flags))


def describe_families() -> str:
    """Every family and level with its parameters and units (the ``--help`` epilog)."""
    lines = ["Degradation families (levels low < high < extreme; * = in the default set):"]
    for fam in FAMILIES.values():
        lines.append(
            textwrap.fill(
                f"{fam.name}{' *' if fam.default else ''}: {fam.description}",
                width=HELP_WIDTH,
                initial_indent="  ",
                subsequent_indent="      ",
            )
        )
        units = {p.name: p.unit for p in fam.params}
        for lev in fam.levels.values():
            shown = ", ".join(
                f"{k}={v}{(' ' + units[k]) if units.get(k) and isinstance(v, (int, float)) else ''}"
                for k, v in lev.params.items()
            )
            note = f"  ({lev.note})" if lev.note else ""
            lines.append(f"      {lev.name:<8} {shown}{note}")
    lines.append(
        textwrap.fill(
            "Select with --degradations: 'default', 'all', or a comma list of FAMILY or "
            "FAMILY:LEVEL (noise,bitrate:low,compression:high), or a .json/.toml file mapping "
            "FAMILY to 'all', a list of level names, or {LEVEL: {PARAM: value}} (new levels "
            "start from the family defaults, known levels from their built-in values). "
            "Noise levels are exact SNRs against the AC (DC-free) signal power; silent inputs "
            "are left unchanged and flagged 'silent'; outputs keep float peaks above 1.0.",
            width=HELP_WIDTH,
        )
    )
    return "\n".join(lines)
