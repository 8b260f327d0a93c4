"""Controlled, seeded, recorded audio degradations (stage 2, first half).

The package: :mod:`.base` (registry types, shared helpers), one module per kind of damage
declaring its families beside their functions (:mod:`.noise`, :mod:`.codecs`,
:mod:`.dynamics`, :mod:`.filtering`), and :mod:`.registry` (:data:`FAMILIES` in order,
:func:`apply_degradation`). A new family is a function and a ``Family`` in ``DECLARED`` of
one of these modules, plus its name in ``registry._ORDER``.

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

from perceptual_audio.degradations.base import (
    LEVEL_NAME_PATTERN,
    SEED_MODULUS,
    STANDARD_LEVELS,
    Family,
    Level,
    ParamSpec,
    ac_power,
    crest_factor_db,
    derive_seed,
    xcorr_lag,
)
from perceptual_audio.degradations.codecs import (
    CODEC_FRAME_SECONDS,
    GSM_SAMPLE_RATE,
    MP3_BITRATES_KBPS,
    MP3_FRAME_SAMPLES,
    MP3_MAX_LAG_SAMPLES,
    MP3_SAMPLE_RATES,
    OPUS_MIN_KBPS,
    OPUS_SAMPLE_RATES,
    OPUS_SPAN_KBPS,
    gsm,
    mp3,
    mp3_codec_rate,
    mp3_compression_level,
    mp3_delay_samples,
    mpeg_version,
    ogg_packet_sizes,
    opus,
)
from perceptual_audio.degradations.dynamics import (
    COMPRESSOR_PREROLL_SECONDS,
    clip,
    compress,
    quantize,
)
from perceptual_audio.degradations.filtering import (
    bandlimit,
    neutral,
    packet_loss,
    reverb,
    schroeder_rt60,
    synthetic_rir,
)
from perceptual_audio.degradations.noise import (
    add_noise,
    pink_noise,
    select_babble_talkers,
)
from perceptual_audio.degradations.registry import (
    DEFAULT_FAMILIES,
    FAMILIES,
    HELP_WIDTH,
    Degraded,
    apply_degradation,
    describe_families,
    get_family,
)

__all__ = [
    "CODEC_FRAME_SECONDS",
    "COMPRESSOR_PREROLL_SECONDS",
    "DEFAULT_FAMILIES",
    "Degraded",
    "FAMILIES",
    "Family",
    "GSM_SAMPLE_RATE",
    "HELP_WIDTH",
    "LEVEL_NAME_PATTERN",
    "Level",
    "MP3_BITRATES_KBPS",
    "MP3_FRAME_SAMPLES",
    "MP3_MAX_LAG_SAMPLES",
    "MP3_SAMPLE_RATES",
    "OPUS_MIN_KBPS",
    "OPUS_SAMPLE_RATES",
    "OPUS_SPAN_KBPS",
    "ParamSpec",
    "SEED_MODULUS",
    "STANDARD_LEVELS",
    "ac_power",
    "add_noise",
    "apply_degradation",
    "bandlimit",
    "clip",
    "compress",
    "crest_factor_db",
    "derive_seed",
    "describe_families",
    "get_family",
    "gsm",
    "mp3",
    "mp3_codec_rate",
    "mp3_compression_level",
    "mp3_delay_samples",
    "mpeg_version",
    "neutral",
    "ogg_packet_sizes",
    "opus",
    "packet_loss",
    "pink_noise",
    "quantize",
    "reverb",
    "schroeder_rt60",
    "select_babble_talkers",
    "synthetic_rir",
    "xcorr_lag",
]
