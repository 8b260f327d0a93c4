"""Real codecs round trips: MP3 (LAME), Opus, GSM 06.10 (libsndfile), delays removed."""

from __future__ import annotations

import functools
import io
import logging
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
    xcorr_lag,
)
from perceptual_audio.errors import ParameterError, PerceptualAudioError

logger = logging.getLogger(__name__)

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
#: GSM 06.10 full rate runs at 8 kHz, 160-sample frames, 13 kbit/s.
GSM_SAMPLE_RATE = 8000


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
    import soundfile as sf  # deferred: only the codec families encode through libsndfile

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
        probe, fit_length(y, len(probe) + MP3_MAX_LAG_SAMPLES), max_lag=MP3_MAX_LAG_SAMPLES
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
    x = as_signal(x)
    kbps = int(params["bitrate_kbps"])
    codec_rate = mp3_codec_rate(sample_rate, kbps)
    xc = resample(x, sample_rate, codec_rate) if codec_rate != sample_rate else x
    decoded, n_bytes = _mp3_roundtrip(xc, codec_rate, kbps)
    delay = mp3_delay_samples(codec_rate, kbps)
    yc = fit_length(decoded[delay:], len(xc))
    y = resample(yc, codec_rate, sample_rate) if codec_rate != sample_rate else yc
    y = fit_length(np.asarray(y, dtype=np.float32), len(x))
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
    import soundfile as sf  # deferred: only the codec families encode through libsndfile

    x = as_signal(x)
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
    yc = fit_length(decoded, len(xc))
    y = resample(yc, codec_rate, sample_rate) if codec_rate != sample_rate else yc
    y = fit_length(np.asarray(y, dtype=np.float32), len(x))
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
    import pedalboard  # deferred: heavy (JUCE); only this family needs it

    x = as_signal(x)
    y = x
    for _ in range(int(params["passes"])):
        codec = pedalboard.GSMFullRateCompressor()
        y = np.asarray(codec(y.astype(np.float32), sample_rate), dtype=np.float32).reshape(-1)
    y = fit_length(y, len(x))
    if info is not None:
        info.update(
            codec="GSM 06.10 full rate (pedalboard GSMFullRateCompressor)",
            codec_sample_rate=GSM_SAMPLE_RATE,
            nominal_kbps=13.0,
            short=len(x) < CODEC_FRAME_SECONDS * sample_rate,
        )
    return y


# -- families ---------------------------------------------------------------------------------
#: The families declared here (the registry, :mod:`.registry`, lists them in its order).
DECLARED: tuple[Family, ...] = (
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
        level_table(
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
        level_table(
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
        level_table(
            "opus",
            {
                "low": ({"bitrate_kbps": 24.0}, "24 kbps"),
                "high": ({"bitrate_kbps": 12.0}, "12 kbps"),
                "extreme": ({"bitrate_kbps": 6.0}, "6 kbps"),
            },
        ),
    ),
)
