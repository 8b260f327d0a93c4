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
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from perceptual_audio import listening, options
from perceptual_audio.audio_io import (
    AUDIO_EXTENSIONS,
    find_audio_files,
)
from perceptual_audio.errors import OutputConflictError, PerceptualAudioError, SchemaError
from perceptual_audio.files import (
    mirror_path,
    params_digest,
    remove_stale_temporaries,
    same_or_inside,
    sha256_file,
)
from perceptual_audio.layout import CLEAN_DIR
from perceptual_audio.manifest import (
    ManifestRow,
    manifest_path,
    read_manifest,
    replace_kind,
    write_manifest,
)
from perceptual_audio.stages import cli, listening_import, work
from perceptual_audio.stages.convert_items import (
    STAGE,
    ConvertJob,
    ConvertSettings,
    claim_output,
    conversion_settings,
    convert_file,
    prune_empty_dirs,
)
from perceptual_audio.stages.skeleton import StageRun, run_stage

logger = logging.getLogger(__name__)


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
        "--sr",
        type=options.positive_int,
        default=16000,
        metavar="HZ",
        help="output sample rate in Hz",
    )
    listening_import.add_import_arguments(parser)
    cli.add_common_arguments(parser)
    return parser


def run(settings: ConvertSettings) -> int:
    """Run stage 1; returns the exit status."""
    if settings.listening_test is not None:
        return listening_import.run_import(settings)
    return run_stage(_Conversion(settings))


@dataclass
class _Conversion(StageRun[ConvertSettings]):
    """Stage 1 in the skeleton: every input file to one mono WAV under ``clean/``."""

    stage: ClassVar[str] = "audio_conversion"
    desc: ClassVar[str] = "converting"
    do_item: ClassVar = convert_file

    inputs: list[Path] = field(default_factory=list)
    old_rows: dict[str, ManifestRow] = field(default_factory=dict)
    rows: list[ManifestRow] = field(default_factory=list)
    skipped: int = 0
    removed: int = 0

    def check(self) -> int | None:
        found = _find_inputs(self.settings)
        if isinstance(found, int):
            return found
        self.inputs = found
        return None

    def claim(self) -> int | None:
        return claim_output(self.settings)

    def read(self) -> int | None:
        remove_stale_temporaries(self.settings.output)
        old_rows = _earlier_rows(self.settings)
        if isinstance(old_rows, int):
            return old_rows
        self.old_rows = old_rows
        return None

    def plan(self) -> int | None:
        jobs, self.failures = _plan_jobs(self.settings, self.inputs)
        for job in jobs:
            old = self.old_rows.get(job.rel_output)
            if not self.settings.force and _is_up_to_date(old, job, self.settings.output):
                self.rows.append(old)
            else:
                self.todo.append(job)
        self.skipped = len(self.rows)
        return None

    def collect(self, outcomes: list[work.Outcome]) -> None:
        for oc in outcomes:
            if oc.ok:
                self.rows.append(oc.value)
            else:
                self.failures.append((oc.item.input_path, oc.error))

    def commit(self) -> int | None:
        self.removed = _commit(self.settings, self.rows, self.old_rows)
        for msg in dict.fromkeys(m if s in m else f"{s}: {m}" for s, m in self.failures):
            logger.error("%s", msg)  # a collision is one message for all its inputs
        cli.write_run_json(
            self.settings.output,
            stage=STAGE,
            settings=self.settings,
            params=conversion_settings(self.settings.sr),
            timings={"total": round(self.elapsed, 3)},
            extra={
                "counts": {
                    "inputs": len(self.inputs),
                    "converted": self.written,
                    "skipped": self.skipped,
                    "failed": len(self.failures),
                    "removed": self.removed,
                },
                "failures": [{"file": s, "error": m} for s, m in self.failures],
            },
        )
        return None

    def summary(self) -> str:
        return (
            f"converted {self.written}, skipped {self.skipped} (up to date), failed "
            f"{len(self.failures)}, removed {self.removed} stale -> "
            f"{manifest_path(self.settings.output)}"
        )


def _find_inputs(settings: ConvertSettings) -> list[Path] | int:
    """The input audio files, or the exit status of a refusal (nothing is written)."""
    input_root, output_root = settings.input, settings.output
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
    return inputs


def _earlier_rows(settings: ConvertSettings) -> dict[str, ManifestRow] | int:
    """The clean rows of an earlier run (or the exit status for an unreadable manifest)."""
    try:
        return {r.path: r for r in read_manifest(settings.output) if r.kind == "clean"}
    except SchemaError as e:
        if not settings.force:
            logger.error("%s", e)
            return cli.EXIT_FAILED
        # --force rebuilds a manifest this version cannot read (its rows are lost anyway).
        logger.warning("%s; --force: starting a new manifest", str(e).split(". ")[0])
        manifest_path(settings.output).unlink()
        return {}


def _plan_jobs(
    settings: ConvertSettings, inputs: list[Path]
) -> tuple[list[ConvertJob], list[tuple[str, str]]]:
    """One job per input; inputs that collide on one output path, or cannot be read, fail."""
    input_root, output_root = settings.input, settings.output
    by_output: dict[Path, list[Path]] = defaultdict(list)
    for p in inputs:
        by_output[mirror_path(p, input_root, output_root / CLEAN_DIR, suffix=".wav")].append(p)
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
                sample_rate=settings.sr,
                source_sha256=digest,
            )
        )
    return jobs, failures


def _commit(
    settings: ConvertSettings, rows: list[ManifestRow], old_rows: dict[str, ManifestRow]
) -> int:
    """Remove the outputs that no longer correspond to a convertible input (and an earlier
    listening-test import), write the clean rows; returns the files removed."""
    output_root = settings.output
    current = {r.path for r in rows}
    removed = 0
    for path in sorted(set(old_rows) - current):
        stale = output_root / path
        if stale.exists():
            stale.unlink()
            removed += 1
            logger.info("removed %s (its input disappeared, changed or now fails)", stale)
    prune_empty_dirs(output_root / CLEAN_DIR)
    replace_kind(output_root, "clean", rows)
    return removed + _drop_listening_test(output_root)


def _drop_listening_test(output_root: Path) -> int:
    """A run without ``--listening-test`` removes an earlier import (its rated files, their
    manifest rows and ``ratings.csv``): stage 1 owns them. Returns the files removed."""

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
            prune_empty_dirs(output_root / sub)
        logger.info("removed %d file(s) of an earlier listening-test import", len(imported))
    ratings = output_root / listening.RATINGS_NAME
    if ratings.exists():
        ratings.unlink()
        removed += 1
    return removed


@cli.stage_entry("audio_conversion.py")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(quiet=args.quiet, verbose=args.verbose)
    return run(ConvertSettings.from_args(args))
