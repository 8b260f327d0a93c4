"""Stage 1: any input audio -> mono float32 WAV at one sample rate (default 16 kHz).

``audio_conversion.py --input original_audio --output test_audio --sr 16000`` walks the input
tree, writes ``OUTPUT/clean/<mirrored path>.wav`` for every audio file, and records one
``clean`` row per file in ``OUTPUT/manifest.csv`` plus ``OUTPUT/run.json``.

Reruns convert only inputs whose bytes or conversion settings changed; outputs of inputs that
disappeared (or now fail) are removed from the folder and the manifest.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perceptual_audio import cli
from perceptual_audio.audio_io import (
    AUDIO_EXTENSIONS,
    CLIP_RUN_SAMPLES,
    SOXR_QUALITY,
    audio_info,
    find_audio_files,
    full_scale_run,
    is_silent,
    load_audio,
    save_wav,
)
from perceptual_audio.errors import OutputConflictError, PerceptualAudioError, SchemaError
from perceptual_audio.files import (
    mirror_path,
    params_digest,
    remove_stale_temporaries,
    same_or_inside,
    sha256_file,
)
from perceptual_audio.manifest import ManifestRow, manifest_path, read_manifest, replace_kind

logger = logging.getLogger(__name__)

STAGE = "audio_conversion"
CLEAN_DIR = "clean"
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


def _is_up_to_date(row: ManifestRow | None, job: ConvertJob, output_root: Path) -> bool:
    if row is None or row.source != job.source or row.source_sha256 != job.source_sha256:
        return False
    if row.params.get("settings_digest") != params_digest(conversion_settings(job.sample_rate)):
        return False
    out = output_root / row.path
    return out.is_file() and sha256_file(out) == row.sha256


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audio_conversion.py",
        formatter_class=cli.HelpFormatter,
        description="Stage 1: convert every audio file below --input to mono float32 WAV at "
        "--sr Hz under OUTPUT/clean/, mirroring the folder tree, and record each "
        "file in OUTPUT/manifest.csv.",
        epilog=f"Reads: {', '.join(sorted(AUDIO_EXTENSIONS))} (any rate, channels, bit depth).\n"
        "Exit status: 0 all converted or up to date; 1 some inputs failed (the others "
        "were converted) or another run holds the folder; 2 bad command line (also: a "
        "missing --input, an --output that belongs to another stage); 130 interrupted.",
    )
    parser.add_argument(
        "--input",
        type=Path,
        default=Path("original_audio"),
        metavar="DIR",
        help="folder of input audio (searched recursively)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("test_audio"),
        metavar="DIR",
        help="output folder: clean/, manifest.csv and run.json go here",
    )
    parser.add_argument(
        "--sr", type=cli.positive_int, default=16000, metavar="HZ", help="output sample rate in Hz"
    )
    from perceptual_audio import listening

    listening.add_import_arguments(parser)
    cli.add_common_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run stage 1 with parsed arguments; returns the exit status."""
    if getattr(args, "listening_test", None) is not None:
        from perceptual_audio import listening

        return listening.run_import(args)
    t0 = time.perf_counter()
    input_root: Path = args.input
    output_root: Path = args.output
    clean_root = output_root / CLEAN_DIR
    try:
        inputs = find_audio_files(input_root)
    except PerceptualAudioError as e:
        logger.error("%s", e)
        return cli.EXIT_USAGE
    if same_or_inside(output_root.resolve(), input_root.resolve()):
        logger.error("--output %s must not be inside --input %s", output_root, input_root)
        return cli.EXIT_USAGE
    if not inputs:
        # A mistyped or unmounted --input must not wipe an existing study as "stale".
        logger.error(
            "no audio files (%s) found under %s; nothing converted, %s left untouched",
            ", ".join(sorted(AUDIO_EXTENSIONS)),
            input_root,
            output_root,
        )
        return cli.EXIT_FAILED
    refused = cli.claim_output_folder(
        output_root, owner=STAGE, option="--output", inputs=[("--input", input_root, None)]
    )
    if refused is not None:
        return refused
    remove_stale_temporaries(output_root)

    try:
        old_rows = {r.path: r for r in read_manifest(output_root) if r.kind == "clean"}
    except SchemaError as e:
        if not args.force:
            logger.error("%s", e)
            return cli.EXIT_FAILED
        # --force rebuilds a manifest this version cannot read (its rows are lost anyway).
        logger.warning("%s; --force: starting a new manifest", str(e).split(". ")[0])
        manifest_path(output_root).unlink()
        old_rows = {}

    # Map inputs to outputs; inputs that collide on one output path all fail.
    by_output: dict[Path, list[Path]] = defaultdict(list)
    for p in inputs:
        by_output[mirror_path(p, input_root, clean_root, suffix=".wav")].append(p)
    failures: list[tuple[str, str]] = []
    jobs: list[ConvertJob] = []
    for out, srcs in sorted(by_output.items()):
        if len(srcs) > 1:
            names = ", ".join(str(s) for s in srcs)
            msg = str(
                OutputConflictError(
                    f"{names}: these inputs would all be written to {out}; rename all but one"
                )
            )
            failures.extend((str(s), msg) for s in srcs)
            continue
        src = srcs[0]
        try:
            digest = sha256_file(src)
        except OSError as e:
            if src.is_symlink() and not src.exists():
                msg = f"{src}: a symbolic link to {os.readlink(src)}, which does not exist"
            else:
                msg = f"{src}: cannot read the file ({e.strerror})"
            failures.append((str(src), msg))
            continue
        jobs.append(
            ConvertJob(
                input_path=str(src),
                source=src.relative_to(input_root).as_posix(),
                output_path=str(out),
                rel_output=out.relative_to(output_root).as_posix(),
                sample_rate=args.sr,
                source_sha256=digest,
            )
        )

    todo, rows = [], []
    for job in jobs:
        old = old_rows.get(job.rel_output)
        if not args.force and _is_up_to_date(old, job, output_root):
            rows.append(old)
        else:
            todo.append(job)
    skipped = len(rows)

    outcomes = cli.parallel_map(
        convert_file, todo, workers=args.workers, desc="converting", args=args
    )
    for oc in outcomes:
        if oc.ok:
            rows.append(oc.value)
        else:
            failures.append((oc.item.input_path, oc.error))

    # Outputs that no longer correspond to a convertible input are removed.
    current = {r.path for r in rows}
    removed = 0
    for path in sorted(set(old_rows) - current):
        stale = output_root / path
        if stale.exists():
            stale.unlink()
            removed += 1
            logger.info("removed %s (its input disappeared, changed or now fails)", stale)
    _prune_empty_dirs(clean_root)

    replace_kind(output_root, "clean", rows)
    removed += _drop_listening_test(output_root)
    for msg in dict.fromkeys(m if s in m else f"{s}: {m}" for s, m in failures):
        logger.error("%s", msg)  # a collision is one message for all its inputs
    cli.write_run_json(
        output_root,
        stage=STAGE,
        args=args,
        params=conversion_settings(args.sr),
        timings={"total": round(time.perf_counter() - t0, 3)},
        extra={
            "counts": {
                "inputs": len(inputs),
                "converted": len(outcomes) - sum(not o.ok for o in outcomes),
                "skipped": skipped,
                "failed": len(failures),
                "removed": removed,
            },
            "failures": [{"file": s, "error": m} for s, m in failures],
        },
    )
    converted = sum(o.ok for o in outcomes)
    cli.stage_summary(
        "audio_conversion",
        t0,
        f"converted {converted}, skipped {skipped} (up to date), "
        f"failed {len(failures)}, removed {removed} stale -> {output_root / 'manifest.csv'}",
    )
    return cli.EXIT_FAILED if failures else cli.EXIT_OK


def _drop_listening_test(output_root: Path) -> int:
    """A run without ``--listening-test`` removes an earlier import (its rated files, their
    manifest rows and ``ratings.csv``): stage 1 owns them. Returns the files removed."""
    from perceptual_audio import listening
    from perceptual_audio.manifest import write_manifest

    rows = read_manifest(output_root)
    imported = [r for r in rows if listening.is_imported(r)]
    removed = 0
    for r in imported:
        p = output_root / r.path
        if p.exists():
            p.unlink()
            removed += 1
    if imported:
        write_manifest(output_root, [r for r in rows if not listening.is_imported(r)])
        for sub in (listening.RATED_DIR, "degraded"):  # degraded/: imports before rated/
            _prune_empty_dirs(output_root / sub)
        logger.info("removed %d file(s) of an earlier listening-test import", len(imported))
    ratings = output_root / listening.RATINGS_NAME
    if ratings.exists():
        ratings.unlink()
        removed += 1
    return removed


def _prune_empty_dirs(root: Path) -> None:
    if not root.is_dir():
        return
    for d in sorted(
        (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    ):
        if not any(d.iterdir()):
            d.rmdir()


@cli.stage_entry("audio_conversion.py")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args)
    return run(args)
