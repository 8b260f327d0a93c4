"""Stage 3's side: the ratings joined to the study's pairs."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import argparse

    from perceptual_audio.manifest import ManifestRow

from perceptual_audio.listening.table import (
    DEFAULT_RATING_SCALE,
    MIN_RATED_FILES,
    RATINGS_NAME,
    ListeningTestError,
    _norm,
    condition_folder,
    is_imported,
    parse_rating_scale,
    read_rating_table,
)

logger = logging.getLogger(__name__)


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
    # Restored files (stage 2 --restore) are rated against their clean file like degraded ones.
    degraded += [replace(r, source=r.params.get("clean", r.source)) for r in rows
                 if r.kind == "restored"]  # fmt: skip
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
