"""Listening tests: import (stage 1), ratings (stage 3), agreement with listeners, ceiling.

A listening test is a long-format CSV table, one row per rating::

    reference,degraded,condition,rating,listener
    stim_01/ref.wav,stim_01/lyra_6.wav,Lyra 6,62,3

``reference`` and ``degraded`` are paths relative to the input folder (stage 1) or, in stage 3,
either manifest paths or those input paths; ``listener`` is optional. A row whose ``degraded``
equals its ``reference`` rates the hidden reference; a row with an empty ``degraded`` (a MUSHRA
anchor whose audio is not shipped) is skipped with one note.

Stage 1 (:func:`run_import`) converts exactly the files of the table: references to
``clean/<mirrored path>.wav``, rated files to ``degraded/<condition>/<mirrored path>.wav`` with
``degraded`` manifest rows (family :data:`LISTENING_FAMILY`, level = the condition's folder
name, source = the clean reference), and keeps the ratings beside the manifest
(``ratings.csv``, manifest paths). Stage 2 never deletes these rows (:func:`is_imported`).

Stage 3 joins the ratings to ``pair_metrics.csv`` (``rating_mean``, ``rating_sd``,
``rating_n``) and writes ``listener_agreement.csv`` (:func:`agreement_table`): per metric and
level (``file``: every rated file; ``condition``: per-condition means over stimuli), Pearson,
Spearman and Kendall with 95% bootstrap CIs resampling stimuli (references), Pearson and RMSE
after the third-order monotonic mapping of ITU-T P.1401 (:func:`monotonic_cubic_fit`), and a
``ceiling`` row per level: the split-half agreement of the listeners with themselves,
Spearman-Brown corrected (:func:`listener_ceiling`).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perceptual_audio.errors import PerceptualAudioError

if TYPE_CHECKING:
    import argparse

    import pandas as pd

    from perceptual_audio.manifest import ManifestRow

logger = logging.getLogger(__name__)

#: Manifest family of every file imported from a listening test (level = condition folder).
LISTENING_FAMILY = "listening_test"
#: The ratings stage 1 keeps beside the manifest (manifest paths).
RATINGS_NAME = "ratings.csv"
#: Stage 3's table of every metric against the listeners.
AGREEMENT_NAME = "listener_agreement.csv"
#: Columns a listening-test table must have; ``listener`` is optional.
REQUIRED_COLUMNS = ("reference", "degraded", "condition", "rating")
LISTENER_COLUMN = "listener"
#: Columns of ``ratings.csv`` (stage 1): the long format plus where each file came from.
RATINGS_COLUMNS = (
    "reference",
    "degraded",
    "condition",
    "rating",
    "listener",
    "hidden_reference",
    "input_reference",
    "input_degraded",
)
#: Default rating scale (MUSHRA, 0-100); ``--rating-scale`` changes it (MOS: 1:5).
DEFAULT_RATING_SCALE = (0.0, 100.0)
#: Fewest rated files (hidden reference excluded unless included) for any statistic.
MIN_RATED_FILES = 3
#: Columns stage 3 adds to ``pair_metrics.csv`` when a study has ratings (none is a metric).
PAIR_RATING_COLUMNS = ("condition", "hidden_reference", "rating_mean", "rating_sd", "rating_n")
#: Levels of ``listener_agreement.csv``.
LEVEL_FILE = "file"
LEVEL_CONDITION = "condition"
LEVELS = (LEVEL_FILE, LEVEL_CONDITION)
#: ``metric`` of the listeners' own split-half agreement.
CEILING = "ceiling"
METHODS = ("pearson", "spearman", "kendall")
AGREEMENT_COLUMNS = (
    "metric",
    "level",
    "n",
    "pearson",
    "pearson_ci_low",
    "pearson_ci_high",
    "spearman",
    "spearman_ci_low",
    "spearman_ci_high",
    "kendall",
    "kendall_ci_low",
    "kendall_ci_high",
    "pearson_mapped",
    "rmse_mapped",
)
#: Random listener splits averaged for the ceiling's point estimate.
CEILING_SPLITS = 200
#: Free parameters of P.1401's third-order mapping (its RMSE divides by N - this).
MAPPING_PARAMETERS = 4
#: Points of the observed metric range where the mapping's slope is constrained.
MAPPING_GRID_POINTS = 64

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class ListeningTestError(PerceptualAudioError):
    """A listening-test or ratings table is malformed or does not match the study."""


# =============================================================================================
# The long-format table
# =============================================================================================
@dataclass(frozen=True)
class Rating:
    """One row of a listening-test table.

    Attributes
    ----------
    line : int
        Line of the CSV file (the header is line 1).
    reference, degraded : str
        As written in the table (``degraded`` is "" for unshipped audio).
    condition : str
    rating : float
    listener : str
        "" when the table has no ``listener`` column.
    """

    line: int
    reference: str
    degraded: str
    condition: str
    rating: float
    listener: str = ""

    @property
    def hidden_reference(self) -> bool:
        return _norm(self.degraded) == _norm(self.reference)


def _norm(path: str) -> str:
    return Path(path.strip()).as_posix() if path.strip() else ""


def parse_rating_scale(text: str) -> tuple[float, float]:
    """``"0:100"`` -> (0.0, 100.0); argparse type of ``--rating-scale``."""
    import argparse

    low, sep, high = text.partition(":")
    try:
        lo, hi = float(low), float(high)
    except ValueError:
        lo = hi = math.nan
    if not sep or not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
        raise argparse.ArgumentTypeError(
            f"expected MIN:MAX with MIN < MAX (e.g. 0:100 for MUSHRA, 1:5 for MOS), got {text!r}"
        )
    return lo, hi


def read_rating_table(
    path: str | Path, *, scale: tuple[float, float] = DEFAULT_RATING_SCALE
) -> list[Rating]:
    """Read and check a long-format listening-test table.

    Parameters
    ----------
    path : path-like
        CSV with ``reference, degraded, condition, rating`` and optionally ``listener``.
    scale : (float, float)
        Inclusive range of valid ratings.

    Returns
    -------
    list of Rating
        Every row, including rows with an empty ``degraded`` (the caller skips them).

    Raises
    ------
    ListeningTestError
        Missing file or column, empty reference or condition, a non-numeric or out-of-scale
        rating, or a duplicate (degraded file, condition, listener); the message names the
        file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise ListeningTestError(f"{path}: no such ratings file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ListeningTestError(f"{path}: cannot read it as UTF-8 text ({e})") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ListeningTestError(
            f"{path}: missing column(s) {', '.join(missing)}; a listening-test table needs "
            f"{', '.join(REQUIRED_COLUMNS)} (and optionally {LISTENER_COLUMN}), got {header}"
        )
    reader.fieldnames = header
    has_listener = LISTENER_COLUMN in header
    lo, hi = scale
    out: list[Rating] = []
    seen: dict[tuple[str, str, str], int] = {}
    for line, rec in enumerate(reader, start=2):
        ref = _norm(rec.get("reference") or "")
        deg = _norm(rec.get("degraded") or "")
        cond = (rec.get("condition") or "").strip()
        raw = (rec.get("rating") or "").strip()
        listener = (rec.get(LISTENER_COLUMN) or "").strip() if has_listener else ""
        where = f"{path}, line {line}"
        if not ref:
            raise ListeningTestError(f"{where}: empty reference")
        if not cond:
            raise ListeningTestError(f"{where}: empty condition")
        try:
            value = float(raw)
        except ValueError:
            raise ListeningTestError(f"{where}: rating {raw!r} is not a number") from None
        if not math.isfinite(value) or not lo <= value <= hi:
            raise ListeningTestError(
                f"{where}: rating {raw} is outside the scale {lo:g}-{hi:g} "
                "(set --rating-scale MIN:MAX for another scale)"
            )
        if has_listener and not listener:
            raise ListeningTestError(f"{where}: empty listener")
        if deg and has_listener:
            key = (deg, cond, listener)
            if key in seen:
                raise ListeningTestError(
                    f"{where}: listener {listener!r} rates {deg} ({cond}) a second time "
                    f"(first on line {seen[key]}); keep one rating per file and listener"
                )
            seen[key] = line
        out.append(Rating(line, ref, deg, cond, value, listener))
    if not out:
        raise ListeningTestError(f"{path}: the table has a header but no ratings")
    return out


def condition_folder(condition: str) -> str:
    """A condition's folder name: runs of characters other than ``A-Za-z0-9._-`` become ``_``.

    ``"Proposed 1.38 16kHz"`` -> ``"Proposed_1.38_16kHz"``.
    """
    name = _SAFE_NAME.sub("_", condition.strip()).strip("._")
    return name


def is_imported(row: ManifestRow) -> bool:
    """True for a ``degraded`` manifest row that stage 1 imported from a listening test."""
    return row.kind == "degraded" and row.family == LISTENING_FAMILY


# =============================================================================================
# Stage 1: import
# =============================================================================================
def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """``--listening-test`` and ``--rating-scale`` of ``audio_conversion.py``."""
    parser.add_argument(
        "--listening-test",
        type=Path,
        default=None,
        metavar="TEST.csv",
        help="import a listening test instead of converting every file below --input: a "
        "long-format CSV (reference, degraded, condition, rating[, listener]; paths relative "
        "to --input). References go to clean/, rated files to degraded/<condition>/, the "
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


def plan_import(
    ratings: Sequence[Rating], input_root: Path, test_path: Path, *, reserved: Sequence[str] = ()
) -> _ImportPlan:
    """Where every file of a listening test goes; raises :class:`ListeningTestError`."""
    from perceptual_audio.audio_io import AUDIO_EXTENSIONS

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
        if name in reserved:
            raise ListeningTestError(
                f"{where}: condition {r.condition!r} would share degraded/{name}/ with stage 2's "
                f"degradation family {name!r}; rename the condition"
            )
        other = folders.setdefault(name, r.condition)
        if other != r.condition:
            raise ListeningTestError(
                f"{where}: conditions {other!r} and {r.condition!r} both map to the folder "
                f"degraded/{name}/; rename one"
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
        degraded[key] = (Path("degraded") / folder / r.degraded).with_suffix(".wav").as_posix()
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


def run_import(args: argparse.Namespace) -> int:
    """Stage 1 with ``--listening-test``: convert exactly the table's files; exit status."""
    import time

    from perceptual_audio import cli, conversion
    from perceptual_audio import degradations as deg
    from perceptual_audio.files import remove_stale_temporaries, same_or_inside, sha256_file
    from perceptual_audio.manifest import ManifestRow, read_manifest, write_manifest

    t0 = time.perf_counter()
    input_root, output_root = Path(args.input), Path(args.output)
    test_path = Path(args.listening_test)
    if not input_root.is_dir():
        logger.error("--input %s: no such folder", input_root)
        return cli.EXIT_USAGE
    if same_or_inside(output_root.resolve(), input_root.resolve()):
        logger.error("--output %s must not be inside --input %s", output_root, input_root)
        return cli.EXIT_USAGE
    try:
        ratings = read_rating_table(test_path, scale=args.rating_scale)
        plan = plan_import(ratings, input_root, test_path, reserved=tuple(deg.FAMILIES))
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
    output_root.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(output_root)
    try:
        old = read_manifest(output_root)
    except PerceptualAudioError as e:
        logger.error("%s", e)
        return cli.EXIT_FAILED
    old_clean = {r.path: r for r in old if r.kind == "clean"}
    old_imported = {r.path: r for r in old if is_imported(r)}
    kept_stage2 = [r for r in old if r.kind == "degraded" and not is_imported(r)]

    jobs: list[conversion.ConvertJob] = []
    failures: list[tuple[str, str]] = []
    digests: dict[str, str] = {}
    for rel in sorted(set(plan.clean) | {k[0] for k in plan.degraded}):
        try:
            digests[rel] = sha256_file(input_root / rel)
        except OSError as e:
            failures.append((rel, f"{input_root / rel}: cannot read the file ({e.strerror})"))
    for rel, out in sorted(plan.clean.items()):
        if rel in digests:
            jobs.append(_convert_job(input_root, output_root, rel, out, args.sr, digests[rel]))
    for (rel, _cond), out in sorted(plan.degraded.items()):
        if rel in digests:
            jobs.append(_convert_job(input_root, output_root, rel, out, args.sr, digests[rel]))

    rows: dict[str, ManifestRow] = {}
    todo = []
    for job in jobs:
        prev = old_clean.get(job.rel_output) or old_imported.get(job.rel_output)
        if not args.force and prev is not None and _import_up_to_date(prev, job, output_root):
            rows[job.rel_output] = prev
        else:
            todo.append(job)
    skipped = len(rows)
    outcomes = cli.parallel_map(
        conversion.convert_file, todo, workers=args.workers, desc="converting", args=args
    )
    for oc in outcomes:
        if oc.ok:
            rows[oc.item.rel_output] = oc.value
        else:
            failures.append((oc.item.source, oc.error))

    clean_rows = [rows[p] for p in plan.clean.values() if p in rows]
    clean_sha = {r.path: r.sha256 for r in clean_rows}
    imported_rows = []
    kept_ratings: list[dict[str, Any]] = []
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
            "hidden_reference": _norm(rel) == _norm(plan.reference_of[(rel, cond)]),
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
            level=condition_folder(cond),
            flags=sorted(row.flag_set),
        )
        imported_rows.append(row)
        by_key[(rel, cond)] = row
    for r in plan.ratings:
        row = by_key.get((r.degraded, r.condition))
        if row is None:
            continue
        kept_ratings.append(
            {
                "reference": row.source,
                "degraded": row.path,
                "condition": r.condition,
                "rating": repr(float(r.rating)),
                "listener": r.listener,
                "hidden_reference": "true" if r.hidden_reference else "false",
                "input_reference": r.reference,
                "input_degraded": r.degraded,
            }
        )

    current = {r.path for r in clean_rows} | {r.path for r in imported_rows}
    removed = 0
    for path in sorted((set(old_clean) | set(old_imported)) - current):
        stale = output_root / path
        if stale.exists():
            stale.unlink()
            removed += 1
            logger.info("removed %s (not in %s, or its conversion failed)", stale, test_path)
    for sub in ("clean", "degraded"):
        conversion._prune_empty_dirs(output_root / sub)
    write_manifest(output_root, clean_rows + imported_rows + kept_stage2)
    write_ratings(output_root / RATINGS_NAME, kept_ratings)
    for src, msg in dict.fromkeys(failures):
        logger.error("%s", msg if src in msg else f"{src}: {msg}")
    cli.write_run_json(
        output_root,
        stage=conversion.STAGE,
        args=args,
        params={
            **conversion.conversion_settings(args.sr),
            "listening_test": str(test_path),
            "rating_scale": list(args.rating_scale),
        },
        timings={"total": round(time.perf_counter() - t0, 3)},
        extra={
            "counts": {
                "references": len(clean_rows),
                "rated_files": len(imported_rows),
                "ratings": len(kept_ratings),
                "ratings_skipped_no_audio": plan.n_skipped,
                "converted": sum(o.ok for o in outcomes),
                "skipped": skipped,
                "failed": len(failures),
                "removed": removed,
            },
            "failures": [{"file": s, "error": m} for s, m in failures],
        },
    )
    from perceptual_audio import cli

    cli.stage_summary(  # the closing line every stage prints
        "audio_conversion",
        t0,
        f"listening test {test_path}: {len(clean_rows)} references, "
        f"{len(imported_rows)} rated files, {len(kept_ratings)} ratings "
        f"({plan.n_skipped} without audio skipped); converted {sum(o.ok for o in outcomes)}, "
        f"skipped {skipped} (up to date), failed {len(failures)}, removed {removed} stale "
        f"-> {output_root / 'manifest.csv'}",
    )
    return cli.EXIT_FAILED if failures else cli.EXIT_OK


def _convert_job(
    input_root: Path, output_root: Path, rel: str, out: str, sr: int, digest: str
) -> Any:
    from perceptual_audio.conversion import ConvertJob

    return ConvertJob(
        input_path=str(input_root / rel),
        source=rel,
        output_path=str(output_root / out),
        rel_output=out,
        sample_rate=int(sr),
        source_sha256=digest,
    )


def _import_up_to_date(prev: ManifestRow, job: Any, output_root: Path) -> bool:
    from perceptual_audio.conversion import conversion_settings
    from perceptual_audio.files import params_digest, sha256_file

    p = prev.params
    if p.get("settings_digest") != params_digest(conversion_settings(job.sample_rate)):
        return False
    if prev.kind == "clean":
        ok = prev.source == job.source and prev.source_sha256 == job.source_sha256
    else:
        ok = p.get("input") == job.source and p.get("input_sha256") == job.source_sha256
    out = output_root / prev.path
    return ok and out.is_file() and sha256_file(out) == prev.sha256


def write_ratings(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    """Write ``ratings.csv`` (:data:`RATINGS_COLUMNS`) atomically."""
    from perceptual_audio.files import atomic_write_text

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RATINGS_COLUMNS, lineterminator="\n")
    w.writeheader()
    for rec in records:
        w.writerow({c: rec.get(c, "") for c in RATINGS_COLUMNS})
    atomic_write_text(path, buf.getvalue())


# =============================================================================================
# Stage 3: ratings joined to the study
# =============================================================================================
@dataclass(frozen=True)
class StudyRatings:
    """Ratings resolved to the study's degraded files.

    Attributes
    ----------
    source : str
        The file they were read from.
    per_file : dict
        Degraded manifest path -> list of (listener, rating).
    condition : dict
        Degraded manifest path -> condition name.
    hidden : frozenset
        Degraded paths that are the hidden reference.
    """

    source: str
    per_file: dict[str, list[tuple[str, float]]]
    condition: dict[str, str]
    hidden: frozenset[str]
    has_listeners: bool


def add_ratings_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ratings``, ``--include-reference`` and ``--rating-scale`` of stage 3."""
    parser.add_argument(
        "--ratings",
        type=Path,
        default=None,
        metavar="RATINGS.csv",
        help="listening-test ratings (reference, degraded, condition, rating[, listener]; "
        "paths as in the manifest or as given to stage 1); default: the ratings stage 1 "
        f"imported (AUDIO_DIR/{RATINGS_NAME}), if any",
    )
    parser.add_argument(
        "--include-reference",
        action="store_true",
        help="count the hidden reference in the agreement statistics (default: listed with "
        "its rating but left out, since every full-reference metric scores it perfectly)",
    )
    parser.add_argument(
        "--rating-scale",
        type=parse_rating_scale,
        default=DEFAULT_RATING_SCALE,
        metavar="MIN:MAX",
        help="valid range of the ratings (MUSHRA 0:100, MOS 1:5); default 0:100",
    )


def load_study_ratings(
    audio_dir: Path,
    rows: Sequence[ManifestRow],
    *,
    ratings_path: Path | None,
    scale: tuple[float, float] = DEFAULT_RATING_SCALE,
    include_reference: bool = False,
) -> StudyRatings | None:
    """Ratings of the study: ``ratings_path``, else stage 1's ``ratings.csv``, else None.

    Raises
    ------
    ListeningTestError
        A rating for a file that is not in the study, a reference that does not match the
        file's reference, one file under two conditions, or fewer than
        :data:`MIN_RATED_FILES` rated files; the message names the file and line.
    """
    path = ratings_path if ratings_path is not None else audio_dir / RATINGS_NAME
    if ratings_path is None and not path.is_file():
        return None
    table = read_rating_table(path, scale=scale)
    degraded = [r for r in rows if r.kind == "degraded"]
    clean = {r.path: r for r in rows if r.kind == "clean"}
    by_name: dict[str, list[ManifestRow]] = {}

    def index(name: str, row: ManifestRow) -> None:
        lst = by_name.setdefault(_norm(name), [])
        if row not in lst:
            lst.append(row)

    audio_abs = audio_dir.resolve()
    for r in degraded:
        index(r.path, r)
        index((audio_dir / r.path).as_posix(), r)
        if is_imported(r) and r.params.get("input"):
            index(str(r.params["input"]), r)
    ref_names: dict[str, set[str]] = {}
    for r in clean.values():
        ref_names[r.path] = {r.path, (audio_dir / r.path).as_posix(), _norm(r.source)}

    per_file: dict[str, list[tuple[str, float]]] = {}
    condition: dict[str, str] = {}
    hidden: set[str] = set()
    seen: dict[tuple[str, str], int] = {}
    for rt in table:
        if not rt.degraded:
            continue
        where = f"{path}, line {rt.line}"
        cands = by_name.get(rt.degraded, [])
        if not cands:
            p = Path(rt.degraded)
            try:
                rel = p.resolve().relative_to(audio_abs).as_posix()
            except ValueError:
                rel = ""
            cands = by_name.get(rel, []) if rel else []
        if len(cands) > 1:
            narrowed = [c for c in cands if c.params.get("condition", c.level) == rt.condition] or [
                c for c in cands if c.level == condition_folder(rt.condition)
            ]
            cands = narrowed if narrowed else cands
        if not cands:
            raise ListeningTestError(
                f"{where}: degraded file {rt.degraded!r} is not in the study "
                f"({audio_dir / 'manifest.csv'}); give its manifest path (degraded/...) or "
                "the path given to audio_conversion.py --listening-test"
            )
        if len(cands) > 1:
            raise ListeningTestError(
                f"{where}: degraded file {rt.degraded!r} matches several files of the study "
                f"({', '.join(c.path for c in cands)}); give its manifest path"
            )
        row = cands[0]
        names = ref_names.get(row.source, {row.source})
        if rt.reference not in names and rt.reference != _norm(row.source):
            raise ListeningTestError(
                f"{where}: reference {rt.reference!r} is not the reference of {row.path} in "
                f"the study ({row.source}, input "
                f"{clean[row.source].source if row.source in clean else 'unknown'})"
            )
        prev_cond = condition.setdefault(row.path, rt.condition)
        if prev_cond != rt.condition:
            raise ListeningTestError(
                f"{where}: {row.path} is rated under condition {rt.condition!r} here and "
                f"{prev_cond!r} elsewhere; one file has one condition"
            )
        if rt.listener:
            key = (row.path, rt.listener)
            if key in seen:
                raise ListeningTestError(
                    f"{where}: listener {rt.listener!r} rates {row.path} a second time (first "
                    f"on line {seen[key]}); keep one rating per file and listener"
                )
            seen[key] = rt.line
        per_file.setdefault(row.path, []).append((rt.listener or f"line{rt.line}", rt.rating))
        if row.path == row.source or rt.hidden_reference or row.params.get("hidden_reference"):
            hidden.add(row.path)
    counted = [p for p in per_file if include_reference or p not in hidden]
    if len(counted) < MIN_RATED_FILES:
        raise ListeningTestError(
            f"{path}: only {len(counted)} rated file(s) in the study"
            + ("" if include_reference else " (hidden reference left out)")
            + f"; agreement with listeners needs at least {MIN_RATED_FILES}"
        )
    return StudyRatings(
        str(path),
        per_file,
        condition,
        frozenset(hidden),
        has_listeners=any(rt.listener for rt in table),
    )


def pair_rating_cells(ratings: StudyRatings, degraded_path: str) -> dict[str, Any]:
    """The :data:`PAIR_RATING_COLUMNS` cells of one pair (NaN ratings when unrated)."""
    vals = np.array([v for _, v in ratings.per_file.get(degraded_path, [])], dtype=float)
    return {
        "condition": ratings.condition.get(degraded_path, ""),
        "hidden_reference": "true" if degraded_path in ratings.hidden else "false",
        "rating_mean": float(vals.mean()) if len(vals) else math.nan,
        "rating_sd": float(vals.std(ddof=1)) if len(vals) > 1 else math.nan,
        "rating_n": len(vals),
    }


# =============================================================================================
# Statistics
# =============================================================================================
def _stable_seed(*parts: object) -> int:
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode())


def rowwise_correlations(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Pearson, Spearman and Kendall tau-b of each row of ``x`` against the same row of ``y``.

    Parameters
    ----------
    x, y : np.ndarray [shape=(B, n)]
        Finite values; meant for small ``n`` (conditions), as Kendall uses all n^2 pairs.

    Returns
    -------
    dict
        method -> np.ndarray [shape=(B,)] (NaN where a row has no spread).
    """
    from scipy.stats import rankdata

    from perceptual_audio.stats import weighted_pearson

    x = np.atleast_2d(np.asarray(x, dtype=float))
    y = np.atleast_2d(np.asarray(y, dtype=float))
    w = np.ones_like(x)
    out = {
        "pearson": weighted_pearson(x, y, w),
        "spearman": weighted_pearson(rankdata(x, axis=1), rankdata(y, axis=1), w),
    }
    i, j = np.triu_indices(x.shape[1], k=1)
    dx = np.sign(x[:, i] - x[:, j])
    dy = np.sign(y[:, i] - y[:, j])
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = (dx * dy).sum(axis=1) / np.sqrt((dx != 0).sum(axis=1) * (dy != 0).sum(axis=1))
    out["kendall"] = np.clip(tau, -1.0, 1.0)
    return out


def _percentile_ci(reps: np.ndarray, n_bootstrap: int, confidence: float) -> tuple[float, float]:
    valid = reps[np.isfinite(reps)]
    if n_bootstrap <= 0 or len(valid) < max(10, n_bootstrap // 2):
        return math.nan, math.nan
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(valid, [alpha, 1 - alpha])
    return float(lo), float(hi)


@dataclass(frozen=True)
class CubicMapping:
    """P.1401 third-order mapping ``y = a0 + a1 u + a2 u^2 + a3 u^3``, ``u = (x - x0) / scale``."""

    coefficients: tuple[float, float, float, float]
    x0: float
    scale: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        u = (np.asarray(x, dtype=float) - self.x0) / self.scale
        a = self.coefficients
        return a[0] + a[1] * u + a[2] * u**2 + a[3] * u**3


def monotonic_cubic_fit(x: np.ndarray, y: np.ndarray, *, increasing: bool) -> CubicMapping:
    """Least-squares third-order polynomial from metric ``x`` to rating ``y``, monotonic on
    the observed range of ``x`` (ITU-T P.1401, sec. 7.3 / 8.2).

    Method: ``x`` is scaled to ``u`` in [0, 1]; the unconstrained cubic least-squares fit is
    taken when its slope has the required sign at :data:`MAPPING_GRID_POINTS` points of
    [0, 1]; otherwise the squared error is minimised by SLSQP under those slope constraints,
    starting from the best monotonic straight line. ``increasing`` is the metric's direction
    (:func:`perceptual_audio.stats.higher_is_better`), so a metric that orders the files the
    wrong way is not rescued by a decreasing map.
    """
    from scipy.optimize import minimize

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    x0, span = float(x.min()), float(np.ptp(x))
    scale = span if span > 0 else 1.0
    u = (x - x0) / scale
    design = np.vander(u, 4, increasing=True)
    grid = np.linspace(0.0, 1.0, MAPPING_GRID_POINTS)
    slope_design = np.stack([np.zeros_like(grid), np.ones_like(grid), 2 * grid, 3 * grid**2], 1)
    sign = 1.0 if increasing else -1.0
    tol = 1e-9 * max(1.0, float(np.ptp(y)))

    def feasible(a: np.ndarray) -> bool:
        return bool(np.all(sign * (slope_design @ a) >= -tol))

    free, *_ = np.linalg.lstsq(design, y, rcond=None)
    if feasible(free):
        return CubicMapping(tuple(float(v) for v in free), x0, scale)
    slope = float(np.polyfit(u, y, 1)[0]) if span > 0 else 0.0
    if sign * slope < 0:
        slope = 0.0
    start = np.array([float(y.mean()) - slope * float(u.mean()), slope, 0.0, 0.0])
    res = minimize(
        lambda a: float(np.sum((design @ a - y) ** 2)),
        start,
        jac=lambda a: 2 * design.T @ (design @ a - y),
        constraints=[
            {
                "type": "ineq",
                "fun": lambda a: sign * (slope_design @ a),
                "jac": lambda a: sign * slope_design,
            }
        ],
        method="SLSQP",
        options={"maxiter": 500, "ftol": 1e-12},
    )
    coef = res.x if feasible(res.x) else start
    return CubicMapping(tuple(float(v) for v in coef), x0, scale)


def mapped_agreement(x: np.ndarray, y: np.ndarray, *, increasing: bool) -> tuple[float, float]:
    """(Pearson, RMSE) of ratings against the P.1401-mapped metric.

    RMSE divides by ``N - 4`` (P.1401 eq. 7-29, four mapping parameters); both are NaN with
    ``N <= 4`` or no spread in ``x``.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(x)
    if n <= MAPPING_PARAMETERS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    pred = monotonic_cubic_fit(x, y, increasing=increasing)(x)
    rmse = math.sqrt(float(np.sum((y - pred) ** 2)) / (n - MAPPING_PARAMETERS))
    if np.ptp(pred) <= 1e-12 * max(1.0, float(np.abs(pred).max())):
        return math.nan, rmse
    return float(np.corrcoef(pred, y)[0, 1]), rmse


def _condition_matrix(
    frame: pd.DataFrame, value: str, stimuli: list[str], conditions: list[str]
) -> np.ndarray:
    """(stimuli, conditions) matrix of ``value`` (NaN where a stimulus lacks a condition; the
    mean where a stimulus has several files of one condition)."""
    total = np.zeros((len(stimuli), len(conditions)))
    count = np.zeros_like(total)
    si = {s: i for i, s in enumerate(stimuli)}
    ci = {c: i for i, c in enumerate(conditions)}
    for s, c, v in zip(frame["reference_path"], frame["condition"], frame[value], strict=True):
        total[si[s], ci[c]] += v
        count[si[s], ci[c]] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _weighted_condition_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B, C) means over stimuli of each condition, stimulus s weighing ``weights[b, s]``."""
    present = np.isfinite(values)
    v0 = np.where(present, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ v0) / (weights @ present.astype(float))


def agreement_table(
    pairs: pd.DataFrame,
    metrics: Sequence[str],
    ratings: StudyRatings,
    *,
    include_reference: bool = False,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Every metric against the listeners, at file and condition level, and the ceiling.

    Parameters
    ----------
    pairs : pd.DataFrame
        The pair table with ``reference_path, degraded_path, condition, hidden_reference,
        rating_mean`` and the metric columns.
    metrics : sequence of str
        Metric columns to rank.
    ratings : StudyRatings
        Per-listener ratings (for the ceiling).
    include_reference : bool
        Count hidden-reference files (default: left out).
    n_bootstrap, seed, confidence
        Bootstrap replicates resampling stimuli (``reference_path``) with all their files.

    Returns
    -------
    pd.DataFrame
        :data:`AGREEMENT_COLUMNS`; per level the metrics in the given order, then ``ceiling``.
        Coefficients keep their sign (a distance agrees with listeners when negative).
    """
    import pandas as pd

    from perceptual_audio import stats

    rated = pairs[pairs["rating_mean"].notna()].copy()
    if not include_reference:
        rated = rated[rated["hidden_reference"].astype(str).str.lower() != "true"]
    rated = rated.reset_index(drop=True)
    stimuli = sorted(rated["reference_path"].unique())
    conditions = sorted(rated["condition"].unique())
    rows = []
    for level in LEVELS:
        for m in metrics:
            x = rated[m].to_numpy(float)
            keep = np.isfinite(x)
            sub = rated[keep]
            row: dict[str, Any] = {"metric": m, "level": level}
            if level == LEVEL_FILE:
                r = stats.correlate(
                    sub[m].to_numpy(float),
                    sub["rating_mean"].to_numpy(float),
                    sub["reference_path"].to_numpy(object),
                    n_bootstrap=n_bootstrap,
                    seed=_stable_seed(seed, level, m),
                    confidence=confidence,
                )
                row["n"] = int(r["n"])
                for meth in METHODS:
                    for suffix in ("", "_ci_low", "_ci_high"):
                        row[meth + suffix] = r[meth + suffix]
                xs, ys = sub[m].to_numpy(float), sub["rating_mean"].to_numpy(float)
            else:
                row, xs, ys = _condition_level(
                    row, sub, m, stimuli, conditions, n_bootstrap, seed, confidence
                )
            pm, rmse = mapped_agreement(xs, ys, increasing=stats.higher_is_better(m))
            row["pearson_mapped"], row["rmse_mapped"] = pm, rmse
            rows.append(row)
        rows.append(
            listener_ceiling(
                rated,
                ratings,
                level=level,
                n_bootstrap=n_bootstrap,
                seed=_stable_seed(seed, level, CEILING),
                confidence=confidence,
            )
        )
    return pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS))


def _condition_level(
    row: dict[str, Any],
    sub: pd.DataFrame,
    metric: str,
    stimuli: list[str],
    conditions: list[str],
    n_bootstrap: int,
    seed: int,
    confidence: float,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    from perceptual_audio.stats import MIN_RECORDINGS_FOR_CI, bootstrap_weights

    values = _condition_matrix(sub, metric, stimuli, conditions)
    rating = _condition_matrix(sub, "rating_mean", stimuli, conditions)
    ones = np.ones((1, len(stimuli)))
    xs = _weighted_condition_means(values, ones)[0]
    ys = _weighted_condition_means(rating, ones)[0]
    ok = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[ok], ys[ok]
    row["n"] = int(ok.sum())
    for meth in METHODS:
        row[meth] = row[f"{meth}_ci_low"] = row[f"{meth}_ci_high"] = math.nan
    if row["n"] < MIN_RATED_FILES or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return row, xs, ys
    point = rowwise_correlations(xs[None, :], ys[None, :])
    for meth in METHODS:
        row[meth] = float(point[meth][0])
    if n_bootstrap > 0 and len(stimuli) >= MIN_RECORDINGS_FOR_CI:
        rng = np.random.default_rng(seed)
        w = bootstrap_weights(len(stimuli), n_bootstrap, rng).astype(float)
        bx = _weighted_condition_means(values[:, ok], w)
        by = _weighted_condition_means(rating[:, ok], w)
        reps = rowwise_correlations(bx, by)
        bad = ~(np.isfinite(bx).all(axis=1) & np.isfinite(by).all(axis=1))
        for meth in METHODS:
            reps[meth][bad] = np.nan
            row[f"{meth}_ci_low"], row[f"{meth}_ci_high"] = _percentile_ci(
                reps[meth], n_bootstrap, confidence
            )
    return row, xs, ys


def spearman_brown(r: np.ndarray | float) -> np.ndarray:
    """Reliability of the full panel from the correlation of two halves: ``2r / (1 + r)``,
    clipped to [0, 1] (a negative split-half correlation means no measurable agreement)."""
    r = np.asarray(r, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 2 * r / (1 + r)
    return np.clip(out, 0.0, 1.0)


def listener_ceiling(
    rated: pd.DataFrame,
    ratings: StudyRatings,
    *,
    level: str,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """How well one random half of the listeners predicts the other half.

    The listeners are split at random into two halves; each half's mean rating of each file
    (``file`` level) or each condition's mean over stimuli of those (``condition`` level) is
    correlated with the other half's, and the Spearman-Brown formula
    (:func:`spearman_brown`) turns the half-panel correlation into the full panel's. The
    point estimate averages :data:`CEILING_SPLITS` random splits; each bootstrap replicate
    resamples the stimuli (with all their files) and draws a fresh split. Without a
    ``listener`` column every rating counts as its own listener.

    Returns
    -------
    dict
        A :data:`AGREEMENT_COLUMNS` row with ``metric = "ceiling"`` (mapped columns NaN).
    """
    from perceptual_audio.stats import MIN_RECORDINGS_FOR_CI

    files = rated["degraded_path"].tolist()
    stim = rated["reference_path"].tolist()
    cond = rated["condition"].tolist()
    listeners = sorted({li for f in files for li, _ in ratings.per_file.get(f, [])})
    li_index = {li: i for i, li in enumerate(listeners)}
    mat = np.full((len(files), len(listeners)), np.nan)
    for i, f in enumerate(files):
        for li, v in ratings.per_file.get(f, []):
            mat[i, li_index[li]] = v
    stimuli = sorted(set(stim))
    s_index = np.array([stimuli.index(s) for s in stim])
    conditions = sorted(set(cond))
    c_index = np.array([conditions.index(c) for c in cond])
    row: dict[str, Any] = {c: math.nan for c in AGREEMENT_COLUMNS}
    row.update(metric=CEILING, level=level)
    row["n"] = len(files) if level == LEVEL_FILE else len(conditions)
    if len(listeners) < 2 or len(files) < MIN_RATED_FILES:
        return row

    def one(split: np.ndarray, stim_weights: np.ndarray) -> dict[str, float]:
        a = _half_means(mat, split)
        b = _half_means(mat, ~split)
        w = stim_weights[s_index]
        if level == LEVEL_FILE:
            idx = np.repeat(np.arange(len(files)), w.astype(int))
            x, y = a[idx], b[idx]
        else:
            x = _grouped_mean(a, c_index, len(conditions), w)
            y = _grouped_mean(b, c_index, len(conditions), w)
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        if len(x) < MIN_RATED_FILES or np.ptp(x) == 0 or np.ptp(y) == 0:
            return dict.fromkeys(METHODS, math.nan)
        r = rowwise_correlations(x[None, :], y[None, :])
        return {m: float(spearman_brown(r[m][0])) for m in METHODS}

    rng = np.random.default_rng(seed)
    full = np.ones(len(stimuli))
    points = [one(_random_split(len(listeners), rng), full) for _ in range(CEILING_SPLITS)]
    for m in METHODS:
        vals = np.array([p[m] for p in points])
        row[m] = float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan
    if n_bootstrap > 0 and len(stimuli) >= MIN_RECORDINGS_FOR_CI:
        reps = {m: np.full(n_bootstrap, np.nan) for m in METHODS}
        for b in range(n_bootstrap):
            w = rng.multinomial(len(stimuli), np.full(len(stimuli), 1.0 / len(stimuli)))
            r = one(_random_split(len(listeners), rng), w.astype(float))
            for m in METHODS:
                reps[m][b] = r[m]
        for m in METHODS:
            row[f"{m}_ci_low"], row[f"{m}_ci_high"] = _percentile_ci(
                reps[m], n_bootstrap, confidence
            )
    return row


def _random_split(n: int, rng: np.random.Generator) -> np.ndarray:
    split = np.zeros(n, dtype=bool)
    split[rng.permutation(n)[: n // 2]] = True
    return split


def _half_means(mat: np.ndarray, columns: np.ndarray) -> np.ndarray:
    part = mat[:, columns]
    n = np.isfinite(part).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.nansum(part, axis=1) / np.maximum(n, 1), np.nan)


def _grouped_mean(v: np.ndarray, groups: np.ndarray, n_groups: int, w: np.ndarray) -> np.ndarray:
    ok = np.isfinite(v) & (w > 0)
    num = np.bincount(groups[ok], weights=(v * w)[ok], minlength=n_groups)
    den = np.bincount(groups[ok], weights=w[ok], minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


# =============================================================================================
# Facts for the report
# =============================================================================================
def metric_rate_hz(metric: str, study_rate: int, *, pesq_nb_rate: int = 16000) -> int:
    """Sample rate (Hz) the metric computes at (its audio resampled from ``study_rate``): the
    catalogue's native rate (``metrics.describe``); the study's own rate for a metric without
    one (SI-SDR); PESQ-NB at ``--pesq-nb-rate``."""
    from perceptual_audio import metrics

    if metric == "pesq_nb":
        return int(pesq_nb_rate)
    rate = metrics.describe(metric).sample_rate
    return int(study_rate if rate is None else rate)


def oriented(metric: str, value: float) -> float:
    """A coefficient turned so that larger = agrees more with listeners (distances flip)."""
    from perceptual_audio.stats import higher_is_better

    if metric == CEILING or higher_is_better(metric):
        return value
    return -value


def oriented_ci(metric: str, lo: float, hi: float) -> tuple[float, float]:
    a, b = oriented(metric, lo), oriented(metric, hi)
    return (min(a, b), max(a, b))


def ranked(agreement: pd.DataFrame, level: str, method: str = "pearson") -> pd.DataFrame:
    """Rows of one level, best agreement first (direction-oriented ``method``), ceiling last."""
    sub = agreement[(agreement["level"] == level) & (agreement["metric"] != CEILING)].copy()
    sub["_score"] = [oriented(m, v) for m, v in zip(sub["metric"], sub[method], strict=True)]
    sub = sub.sort_values("_score", ascending=False, na_position="last")
    return sub.drop(columns="_score")


def agreement_findings(
    agreement: pd.DataFrame, label: Any, *, classic: Sequence[str], method: str = "pearson"
) -> list[str]:
    """Key findings in words: best metrics, whether their CIs separate, neural vs classic.

    ``label`` maps a metric name to its display label; ``classic`` names the non-neural
    metrics (PESQ, STOI, ...).
    """
    out = []
    for level in LEVELS:
        rk = ranked(agreement, level, method)
        rk = rk[rk[method].notna()]
        if rk.empty:
            continue
        ceil = agreement[(agreement["level"] == level) & (agreement["metric"] == CEILING)]
        ceil_v = float(ceil[method].iloc[0]) if not ceil.empty else math.nan
        what = "file" if level == LEVEL_FILE else "condition (system)"
        best, second = rk.iloc[0], rk.iloc[1] if len(rk) > 1 else None
        b_v = oriented(best["metric"], best[method])
        b_lo, b_hi = oriented_ci(
            best["metric"], best[f"{method}_ci_low"], best[f"{method}_ci_high"]
        )
        sym = {"pearson": "Pearson r", "spearman": "Spearman ρ", "kendall": "Kendall τ"}[method]
        ci = f" [{b_lo:.2f}, {b_hi:.2f}]" if np.isfinite(b_lo) else " (no CI)"
        if b_v > 0:
            text = (
                f"At {what} level (n = {int(best['n'])}), {label(best['metric'])} agrees best "
                f"with the listeners: {sym} {b_v:.2f}{ci}"
            )
        else:
            text = (
                f"At {what} level (n = {int(best['n'])}), no metric agrees with the listeners: "
                f"even the best, {label(best['metric'])}, has {sym} {b_v:.2f}{ci} in its "
                "better-is-better direction, i.e. it orders the "
                f"{'files' if level == LEVEL_FILE else 'conditions'} against the listeners"
            )
        if b_v > 0 and np.isfinite(b_lo) and b_lo <= 0:
            text += " (its CI includes 0: no reliable agreement)"
        if np.isfinite(ceil_v):
            text += f", against a listener ceiling of {ceil_v:.2f}"
        if second is not None:
            s_v = oriented(second["metric"], second[method])
            s_lo, s_hi = oriented_ci(
                second["metric"], second[f"{method}_ci_low"], second[f"{method}_ci_high"]
            )
            if np.isfinite(b_lo) and np.isfinite(s_hi):
                sep = "do not overlap" if b_lo > s_hi else "overlap"
                text += (
                    f"; the runner-up {label(second['metric'])} ({s_v:.2f} "
                    f"[{s_lo:.2f}, {s_hi:.2f}]): the CIs {sep}"
                )
                if sep == "overlap":
                    text += ", so the two are not separated by this test"
            else:
                text += f"; runner-up {label(second['metric'])} ({s_v:.2f})"
        out.append(text + ".")
        neural = rk[~rk["metric"].isin(classic)]
        clas = rk[rk["metric"].isin(classic)]
        if not neural.empty and not clas.empty:
            n0, c0 = neural.iloc[0], clas.iloc[0]
            nv, cv = oriented(n0["metric"], n0[method]), oriented(c0["metric"], c0[method])
            n_lo, n_hi = oriented_ci(n0["metric"], n0[f"{method}_ci_low"], n0[f"{method}_ci_high"])
            c_lo, c_hi = oriented_ci(c0["metric"], c0[f"{method}_ci_low"], c0[f"{method}_ci_high"])
            verdict = "better than" if nv > cv else "worse than"
            if all(np.isfinite(v) for v in (n_lo, n_hi, c_lo, c_hi)):
                if n_lo <= c_hi and c_lo <= n_hi:
                    verdict = "not separable from"
            out.append(
                f"At {what} level the best neural metric, {label(n0['metric'])} ({nv:.2f}), is "
                f"{verdict} the best classic metric, {label(c0['metric'])} ({cv:.2f})."
            )
    return out
