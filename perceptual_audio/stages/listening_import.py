"""Stage 1's import of a listening test: exactly the files of its table, references to ``clean/``, rated files to ``rated/<condition>/``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from perceptual_audio.audio_io import AUDIO_EXTENSIONS
from perceptual_audio.errors import PerceptualAudioError
from perceptual_audio.files import (
    params_digest,
    remove_stale_temporaries,
    same_or_inside,
    sha256_file,
)
from perceptual_audio.layout import CLEAN_DIR, DEGRADED_DIR, MANIFEST_NAME
from perceptual_audio.listening.table import (
    DEFAULT_RATING_SCALE,
    LISTENING_FAMILY,
    MIN_RATED_FILES,
    RATED_DIR,
    RATINGS_NAME,
    ListeningTestError,
    Rating,
    condition_folder,
    is_imported,
    norm_path,
    parse_rating_scale,
    read_rating_table,
    write_rating_table,
)
from perceptual_audio.manifest import ManifestRow, read_manifest, write_manifest
from perceptual_audio.stages import cli, work
from perceptual_audio.stages import convert_items as conversion
from perceptual_audio.stages.convert_items import ConvertJob, ConvertSettings, conversion_settings
from perceptual_audio.stages.skeleton import StageRun, run_stage

logger = logging.getLogger(__name__)


# Stage 1: import
# =============================================================================================
def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """``--listening-test`` and ``--rating-scale`` of ``audio_conversion.py``."""
    parser.add_argument(
        "--listening-test",
        type=Path,
        default=None,
        metavar="TEST.csv",
        help="import a listening test instead of converting every file below --input: a CSV "
        "with reference, degraded, condition (paths relative to --input) and either rating"
        "[, listener] (one row per rating) or rating_mean[, rating_sd][, rating_n] (one row "
        f"per file). References go to clean/, rated files to {RATED_DIR}/<condition>/, the "
        f"ratings to OUTPUT/{RATINGS_NAME}",
    )
    parser.add_argument(
        "--rating-scale",
        type=parse_rating_scale,
        default=DEFAULT_RATING_SCALE,
        metavar="MIN:MAX",
        help="valid range of the ratings (MUSHRA 0:100, MOS 1:5); default 0:100",
    )


@dataclass(frozen=True)
class _ImportPlan:
    clean: dict[str, str]  # input reference (rel) -> clean manifest path
    degraded: dict[tuple[str, str], str]  # (input degraded rel, condition) -> manifest path
    reference_of: dict[tuple[str, str], str]  # same key -> input reference rel
    ratings: list[Rating]  # rows with audio
    n_skipped: int
    skipped_conditions: tuple[str, ...]


def plan_import(ratings: Sequence[Rating], input_root: Path, test_path: Path) -> _ImportPlan:
    """Where every file of a listening test goes (``rated/<condition folder>/<input path>``:
    a folder of stage 1's own, so a condition may be named like a stage-2 family); raises
    :class:`ListeningTestError`."""
    rated = [r for r in ratings if r.degraded]
    skipped = [r for r in ratings if not r.degraded]
    folders: dict[str, str] = {}
    for r in rated:
        name = condition_folder(r.condition)
        where = f"{test_path}, line {r.line}"
        if not name or name in (".", ".."):
            raise ListeningTestError(
                f"{where}: condition {r.condition!r} gives no usable folder name"
            )
        other = folders.setdefault(name, r.condition)
        if other != r.condition:
            raise ListeningTestError(
                f"{where}: conditions {other!r} and {r.condition!r} both map to the folder "
                f"{RATED_DIR}/{name}/; rename one"
            )
    clean: dict[str, str] = {}
    clean_of_output: dict[str, str] = {}
    degraded: dict[tuple[str, str], str] = {}
    reference_of: dict[tuple[str, str], str] = {}
    for r in rated:
        where = f"{test_path}, line {r.line}"
        for what, rel in (("reference", r.reference), ("degraded", r.degraded)):
            p = input_root / rel
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise ListeningTestError(
                    f"{where}: {what} {rel!r} must be a path relative to --input {input_root}"
                )
            if not p.is_file():
                raise ListeningTestError(f"{where}: {what} file {p} does not exist")
            if p.suffix.lower() not in AUDIO_EXTENSIONS:
                raise ListeningTestError(
                    f"{where}: {what} file {p} is not audio (expected one of "
                    f"{', '.join(sorted(AUDIO_EXTENSIONS))})"
                )
        if r.reference not in clean:
            out = (Path("clean") / r.reference).with_suffix(".wav").as_posix()
            prev = clean_of_output.setdefault(out, r.reference)
            if prev != r.reference:
                raise ListeningTestError(
                    f"{where}: references {prev} and {r.reference} would both be written to "
                    f"{out}; rename one"
                )
            clean[r.reference] = out
        key = (r.degraded, r.condition)
        prev_ref = reference_of.setdefault(key, r.reference)
        if prev_ref != r.reference:
            raise ListeningTestError(
                f"{where}: {r.degraded} ({r.condition}) is rated against reference "
                f"{r.reference} here but against {prev_ref} elsewhere; one file has one reference"
            )
        folder = condition_folder(r.condition)
        degraded[key] = (Path(RATED_DIR) / folder / r.degraded).with_suffix(".wav").as_posix()
    outputs = list(degraded.values())
    if len(set(outputs)) != len(outputs):
        dup = sorted({o for o in outputs if outputs.count(o) > 1})
        raise ListeningTestError(
            f"{test_path}: several rated files would be written to {dup[0]} (same name, "
            "different extension); rename one"
        )
    if len(degraded) < MIN_RATED_FILES:
        raise ListeningTestError(
            f"{test_path}: only {len(degraded)} rated file(s); agreement with listeners needs "
            f"at least {MIN_RATED_FILES}"
        )
    return _ImportPlan(
        clean,
        degraded,
        reference_of,
        rated,
        len(skipped),
        tuple(dict.fromkeys(r.condition for r in skipped)),
    )


def run_import(settings: ConvertSettings) -> int:
    """Stage 1 with ``--listening-test``: convert exactly the table's files; exit status."""
    return run_stage(_Import(settings))


@dataclass
class _Import(StageRun[ConvertSettings]):
    """The import in the stage skeleton: the table's references and rated files converted."""

    stage: ClassVar[str] = "audio_conversion"
    desc: ClassVar[str] = "converting"
    do_item: ClassVar = conversion.convert_file

    test: _ImportPlan | None = None
    old_by_path: dict[str, ManifestRow] = field(default_factory=dict)
    kept_stage2: list[ManifestRow] = field(default_factory=list)
    rows: dict[str, ManifestRow] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def output_root(self) -> Path:
        return Path(self.settings.output)

    def check(self) -> int | None:
        test = _read_test(self.settings)
        if isinstance(test, int):
            return test
        self.test = test
        return None

    def claim(self) -> int | None:
        return conversion.claim_output(self.settings)

    def read(self) -> int | None:
        self.output_root.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.output_root)
        try:
            old = read_manifest(self.output_root)
        except PerceptualAudioError as e:
            logger.error("%s", e)
            return cli.EXIT_FAILED
        self.old_by_path = {r.path: r for r in old if r.kind == "clean" or is_imported(r)}
        self.kept_stage2 = [r for r in old if r.kind == "degraded" and not is_imported(r)]
        return None

    def plan(self) -> int | None:
        jobs, self.failures = _jobs(self.settings, self.test)
        for job in jobs:
            prev = self.old_by_path.get(job.rel_output)
            if (
                not self.settings.force
                and prev is not None
                and _import_up_to_date(prev, job, self.output_root)
            ):
                self.rows[job.rel_output] = prev
            else:
                self.todo.append(job)
        self.counts["skipped"] = len(self.rows)
        return None

    def collect(self, outcomes: list[work.Outcome]) -> None:
        for oc in outcomes:
            if oc.ok:
                self.rows[oc.item.rel_output] = oc.value
            else:
                self.failures.append((oc.item.source, oc.error))

    def commit(self) -> int | None:
        settings, plan, rows, failures = self.settings, self.test, self.rows, self.failures
        clean_rows = [rows[p] for p in plan.clean.values() if p in rows]
        imported_rows, kept_ratings = _rated_rows(plan, rows, clean_rows)
        removed = _commit(
            settings, self.old_by_path, clean_rows, imported_rows, self.kept_stage2, kept_ratings
        )
        for src, msg in dict.fromkeys(failures):
            logger.error("%s", msg if src in msg else f"{src}: {msg}")
        self.counts = {
            "references": len(clean_rows),
            "rated_files": len(imported_rows),
            "ratings": len(kept_ratings),
            "ratings_skipped_no_audio": plan.n_skipped,
            "converted": self.written,
            "skipped": self.counts["skipped"],
            "failed": len(failures),
            "removed": removed,
        }
        cli.write_run_json(
            self.output_root,
            stage=conversion.STAGE,
            settings=settings,
            params={
                **conversion.conversion_settings(settings.sr),
                "listening_test": str(settings.listening_test),
                "rating_scale": list(settings.rating_scale),
            },
            timings={"total": round(self.elapsed, 3)},
            extra={
                "counts": self.counts,
                "failures": [{"file": s, "error": m} for s, m in failures],
            },
        )
        return None

    def summary(self) -> str:
        c = self.counts
        return (
            f"listening test {self.settings.listening_test}: {c['references']} references, "
            f"{c['rated_files']} rated files, {c['ratings']} ratings "
            f"({c['ratings_skipped_no_audio']} without audio skipped); converted "
            f"{c['converted']}, skipped {c['skipped']} (up to date), failed {c['failed']}, "
            f"removed {c['removed']} stale -> {self.output_root / MANIFEST_NAME}"
        )


def _read_test(settings: ConvertSettings) -> _ImportPlan | int:
    """The test's table read and planned, or the exit status of a refusal (nothing written)."""
    input_root, output_root = Path(settings.input), Path(settings.output)
    test_path = Path(settings.listening_test)
    if not input_root.is_dir():
        logger.error("--input %s: no such folder", input_root)
        return cli.EXIT_USAGE
    if same_or_inside(output_root.resolve(), input_root.resolve()):
        logger.error("--output %s must not be inside --input %s", output_root, input_root)
        return cli.EXIT_USAGE
    try:
        ratings = read_rating_table(test_path, scale=settings.rating_scale)
        plan = plan_import(ratings, input_root, test_path)
    except ListeningTestError as e:
        logger.error("%s", e)
        logger.error("nothing converted; %s left untouched", output_root)
        return cli.EXIT_USAGE
    if plan.n_skipped:
        logger.warning(
            "%s: %d rating row(s) with an empty 'degraded' (condition %s) skipped: their "
            "audio is not shipped, so no metric can score them",
            test_path,
            plan.n_skipped,
            ", ".join(repr(c) for c in plan.skipped_conditions),
        )
    return plan


def _jobs(
    settings: ConvertSettings, plan: _ImportPlan
) -> tuple[list[ConvertJob], list[tuple[str, str]]]:
    """A conversion per reference and rated file; unreadable inputs fail."""
    input_root, output_root = Path(settings.input), Path(settings.output)
    jobs: list[ConvertJob] = []
    failures: list[tuple[str, str]] = []
    digests: dict[str, str] = {}
    for rel in sorted(set(plan.clean) | {k[0] for k in plan.degraded}):
        try:
            digests[rel] = sha256_file(input_root / rel)
        except OSError as e:
            failures.append((rel, f"{input_root / rel}: cannot read the file ({e.strerror})"))
    outputs = [
        *sorted(plan.clean.items()),
        *((rel, out) for (rel, _), out in sorted(plan.degraded.items())),
    ]
    for rel, out in outputs:
        if rel in digests:
            jobs.append(_convert_job(input_root, output_root, rel, out, settings.sr, digests[rel]))
    return jobs, failures


def _rated_rows(
    plan: _ImportPlan, rows: dict[str, ManifestRow], clean_rows: list[ManifestRow]
) -> tuple[list[ManifestRow], list[Rating]]:
    """The rated files as ``degraded`` rows of the test (family :data:`LISTENING_FAMILY`,
    level = the condition as given) and the ratings of the files that were converted, in
    manifest paths."""
    clean_sha = {r.path: r.sha256 for r in clean_rows}
    imported_rows = []
    by_key = {}
    for (rel, cond), out in sorted(plan.degraded.items()):
        ref_out = plan.clean[plan.reference_of[(rel, cond)]]
        row = rows.get(out)
        if row is None or ref_out not in clean_sha:
            continue
        # A fresh conversion comes back as a clean row: it becomes a degraded row of the
        # test (a reused one is rebuilt too, so a renamed condition or reference is current).
        params = {
            **row.params,
            "origin": LISTENING_FAMILY,
            "condition": cond,
            "input": rel,
            "input_sha256": row.source_sha256
            if row.kind == "clean"
            else row.params["input_sha256"],
            "hidden_reference": norm_path(rel) == norm_path(plan.reference_of[(rel, cond)]),
        }
        row = ManifestRow.make(
            out,
            kind="degraded",
            source=ref_out,
            parameters=params,
            sample_rate=row.sample_rate,
            duration=row.duration,
            sha256=row.sha256,
            source_sha256=clean_sha[ref_out],
            family=LISTENING_FAMILY,
            level=cond,  # the condition as given (the folder is a safe name of it)
            flags=sorted(row.flag_set),
        )
        imported_rows.append(row)
        by_key[(rel, cond)] = row
    kept_ratings = [
        replace(
            r,
            reference=row.source,
            degraded=row.path,
            hidden=r.hidden_reference,
            input_reference=r.reference,
            input_degraded=r.degraded,
        )
        for r in plan.ratings
        if (row := by_key.get((r.degraded, r.condition))) is not None
    ]
    return imported_rows, kept_ratings


def _commit(
    settings: ConvertSettings,
    old_by_path: dict[str, ManifestRow],
    clean_rows: list[ManifestRow],
    imported_rows: list[ManifestRow],
    kept_stage2: list[ManifestRow],
    kept_ratings: list[Rating],
) -> int:
    """Remove what the test no longer holds, write the manifest and ``ratings.csv``;
    returns the files removed."""
    output_root = Path(settings.output)
    current = {r.path for r in clean_rows} | {r.path for r in imported_rows}
    removed = 0
    for path in sorted(set(old_by_path) - current):
        stale = output_root / path
        if stale.exists():
            stale.unlink()
            removed += 1
            logger.info(
                "removed %s (not in %s, or its conversion failed)", stale, settings.listening_test
            )
    for sub in (CLEAN_DIR, RATED_DIR, DEGRADED_DIR):  # degraded/: imports before rated/ existed
        conversion.prune_empty_dirs(output_root / sub)
    write_manifest(output_root, clean_rows + imported_rows + kept_stage2)
    write_rating_table(output_root / RATINGS_NAME, kept_ratings)
    return removed


def _convert_job(
    input_root: Path, output_root: Path, rel: str, out: str, sr: int, digest: str
) -> Any:
    return ConvertJob(
        input_path=str(input_root / rel),
        source=rel,
        output_path=str(output_root / out),
        rel_output=out,
        sample_rate=int(sr),
        source_sha256=digest,
    )


def _import_up_to_date(prev: ManifestRow, job: Any, output_root: Path) -> bool:
    p = prev.params
    if p.get("settings_digest") != params_digest(conversion_settings(job.sample_rate)):
        return False
    if prev.kind == "clean":
        ok = prev.source == job.source and prev.source_sha256 == job.source_sha256
    else:
        ok = p.get("input") == job.source and p.get("input_sha256") == job.source_sha256
    out = output_root / prev.path
    return ok and out.is_file() and sha256_file(out) == prev.sha256
