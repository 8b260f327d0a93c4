"""Stage 1's settings and item: converting one input file to mono float32 WAV at the study rate.

Shared by both runners of stage 1: :mod:`perceptual_audio.stages.convert` (a folder of audio)
and :mod:`perceptual_audio.stages.listening_import` (exactly the files of a listening test).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perceptual_audio.audio_io import (
    CLIP_RUN_SAMPLES,
    SOXR_QUALITY,
    audio_info,
    full_scale_run,
    is_silent,
    load_audio,
    save_wav,
)
from perceptual_audio.files import params_digest, sha256_file
from perceptual_audio.listening import DEFAULT_RATING_SCALE
from perceptual_audio.manifest import ManifestRow
from perceptual_audio.stages import cli

logger = logging.getLogger(__name__)

STAGE = "audio_conversion"
#: Inputs shorter than this (seconds) are converted but flagged ``short``.
SHORT_SECONDS = 0.5


@dataclass(frozen=True)
class ConvertJob:
    """One input file to convert (picklable, for the worker processes)."""

    input_path: str
    source: str  # input path relative to the input root (POSIX)
    output_path: str
    rel_output: str  # output path relative to the output root (POSIX)
    sample_rate: int
    source_sha256: str


def conversion_settings(sample_rate: int) -> dict:
    """The parameters that decide a conversion's output (a change redoes every file)."""
    return {
        "target_sample_rate": int(sample_rate),
        "downmix": "mean of channels",
        "resampler": "soxr",
        "soxr_quality": SOXR_QUALITY,
        "output_format": "WAV float32",
    }


def convert_file(job: ConvertJob) -> ManifestRow:
    """Convert one file and return its manifest row (raises on bad input, writes atomically)."""
    info = audio_info(job.input_path)
    y, sr = load_audio(job.input_path, sample_rate=job.sample_rate, mono=True)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    flags = []
    duration = len(y) / sr
    if duration < SHORT_SECONDS:
        flags.append("short")
    if is_silent(y):  # converted all the same, flagged (audio_io.SILENCE_DBFS)
        flags.append("silent")
    run = full_scale_run(job.input_path)
    if run >= CLIP_RUN_SAMPLES:
        flags.append("clipped")
        logger.warning(
            "%s: %d consecutive samples at full scale: the input was probably clipped "
            "before it reached this tool (flagged 'clipped')",
            job.input_path,
            run,
        )
    if peak > 1.0:
        flags.append("clipped_peak")
        logger.warning(
            "%s: peak %.3f (%.2f dBFS) is above full scale after resampling; kept "
            "unclipped in the float WAV",
            job.input_path,
            peak,
            20 * np.log10(peak),
        )
    save_wav(job.output_path, y, sr)
    settings = conversion_settings(job.sample_rate)
    params = {
        **settings,
        "settings_digest": params_digest(settings),
        "input_sample_rate": int(info.samplerate),
        "input_channels": int(info.channels),
        "input_format": info.format,
        "input_subtype": info.subtype,
        "input_frames": int(info.frames),
        "peak": round(peak, 6),
    }
    return ManifestRow.make(
        job.rel_output,
        kind="clean",
        source=job.source,
        parameters=params,
        sample_rate=sr,
        duration=duration,
        sha256=sha256_file(job.output_path),
        source_sha256=job.source_sha256,
        flags=flags,
    )


def prune_empty_dirs(root: Path) -> None:
    """Remove the empty folders under ``root`` (deepest first), keeping ``root``."""
    if not root.is_dir():
        return
    for d in sorted(
        (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    ):
        if not any(d.iterdir()):
            d.rmdir()


@dataclass(frozen=True, kw_only=True)
class ConvertSettings(cli.StageSettings):
    """Stage 1's settings (both runners: a folder of audio, or a listening test's files).

    Attributes
    ----------
    input : Path
        Folder of input audio (searched recursively).
    output : Path
        The audio folder written (``clean/``, ``manifest.csv``, ``run.json``).
    sr : int
        Output sample rate in Hz.
    listening_test : Path or None
        A listening test's table: convert exactly its files (:mod:`.listening_import`).
    rating_scale : (float, float)
        Valid range of its ratings.
    """

    input: Path = Path("original_audio")
    output: Path = Path("test_audio")
    sr: int = 16000
    listening_test: Path | None = None
    rating_scale: tuple[float, float] = DEFAULT_RATING_SCALE


def claim_output(settings: ConvertSettings) -> int | None:
    """Check and lock stage 1's ``--output`` folder, for a conversion and a listening-test
    import alike (None), or the exit status of a refusal."""
    return cli.claim_output_folder(
        settings.output,
        owner=STAGE,
        option="--output",
        inputs=[("--input", settings.input, None)],
    )
