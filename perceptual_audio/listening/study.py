"""Stage 3's side: the ratings joined to the study's pairs."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
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
    Rating,
    condition_folder,
    is_imported,
    norm_path,
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
        Degraded manifest path -> list of (listener, rating) (files rated per listener; an
        unnamed listener is ``line<N>``, every rating its own listener).
    condition : dict
        Degraded manifest path -> condition name.
    hidden : frozenset
        Degraded paths that are the hidden reference.
    has_listeners : bool
        Whether the table names its listeners.
    means : dict
        Degraded manifest path -> (mean, SD or NaN, vote count or None): files given as a
        row of means (``rating_mean``), which have no per-listener ratings.
    """

    source: str
    per_file: dict[str, list[tuple[str, float]]]
    condition: dict[str, str]
    hidden: frozenset[str]
    has_listeners: bool
    means: dict[str, tuple[float, float, int | None]] = field(default_factory=dict)

    @property
    def n_ratings(self) -> int:
        """Individual ratings, plus the vote counts given with means (unknown counts as 0)."""
        votes = sum(n for _, _, n in self.means.values() if n is not None)
        return sum(len(v) for v in self.per_file.values()) + votes


def add_ratings_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ratings``, ``--include-reference`` and ``--rating-scale`` of stage 3."""
    parser.add_argument(
        "--ratings",
        type=Path,
        default=None,
        metavar="RATINGS.csv",
        help="listening-test ratings (reference, degraded, condition and rating[, listener] "
        "or rating_mean[, rating_sd][, rating_n]; paths as in the manifest or as given to "
        "stage 1); default: the ratings stage 1 "
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


class _StudyIndex:
    """The study's rated files by every name a ratings table may give them: the manifest
    path, the path inside the audio folder, and the path given to stage 1's import."""

    def __init__(self, audio_dir: Path, rows: Sequence[ManifestRow]):
        self.audio_dir = audio_dir
        self.audio_abs = audio_dir.resolve()
        self.clean = {r.path: r for r in rows if r.kind == "clean"}
        self.by_name: dict[str, list[ManifestRow]] = {}
        rated = [r for r in rows if r.kind == "degraded"]
        # Restored files (stage 2 --restore) are rated against their clean file like degraded ones.
        rated += [replace(r, source=r.params.get("clean", r.source)) for r in rows
                  if r.kind == "restored"]  # fmt: skip
        for r in rated:
            self._index(r.path, r)
            self._index((audio_dir / r.path).as_posix(), r)
            if is_imported(r) and r.params.get("input"):
                self._index(str(r.params["input"]), r)
        self.ref_names = {
            r.path: {r.path, (audio_dir / r.path).as_posix(), norm_path(r.source)}
            for r in self.clean.values()
        }

    def _index(self, name: str, row: ManifestRow) -> None:
        lst = self.by_name.setdefault(norm_path(name), [])
        if row not in lst:
            lst.append(row)

    def _candidates(self, rt: Rating) -> list[ManifestRow]:
        cands = self.by_name.get(rt.degraded, [])
        if not cands:
            try:
                rel = Path(rt.degraded).resolve().relative_to(self.audio_abs).as_posix()
            except ValueError:
                rel = ""
            cands = self.by_name.get(rel, []) if rel else []
        if len(cands) > 1:
            narrowed = [c for c in cands if c.params.get("condition", c.level) == rt.condition] or [
                c for c in cands if c.level == condition_folder(rt.condition)
            ]
            cands = narrowed if narrowed else cands
        return cands

    def rated_row(self, rt: Rating, where: str) -> ManifestRow:
        """The study's row of the file ``rt`` rates (its reference checked), or the error."""
        cands = self._candidates(rt)
        if not cands:
            raise ListeningTestError(
                f"{where}: degraded file {rt.degraded!r} is not in the study "
                f"({self.audio_dir / 'manifest.csv'}); give its manifest path (degraded/...) or "
                "the path given to audio_conversion.py --listening-test"
            )
        if len(cands) > 1:
            raise ListeningTestError(
                f"{where}: degraded file {rt.degraded!r} matches several files of the study "
                f"({', '.join(c.path for c in cands)}); give its manifest path"
            )
        row = cands[0]
        names = self.ref_names.get(row.source, {row.source})
        if rt.reference not in names and rt.reference != norm_path(row.source):
            raise ListeningTestError(
                f"{where}: reference {rt.reference!r} is not the reference of {row.path} in "
                f"the study ({row.source}, input "
                f"{self.clean[row.source].source if row.source in self.clean else 'unknown'})"
            )
        return row


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
    index = _StudyIndex(audio_dir, rows)
    per_file: dict[str, list[tuple[str, float]]] = {}
    means: dict[str, tuple[float, float, int | None]] = {}
    condition: dict[str, str] = {}
    hidden: set[str] = set()
    seen: dict[tuple[str, str], int] = {}  # (path, listener or mean/rating marker) -> line
    for rt in table:
        if not rt.degraded:
            continue
        where = f"{path}, line {rt.line}"
        row = index.rated_row(rt, where)
        prev_cond = condition.setdefault(row.path, rt.condition)
        if prev_cond != rt.condition:
            raise ListeningTestError(
                f"{where}: {row.path} is rated under condition {rt.condition!r} here and "
                f"{prev_cond!r} elsewhere; one file has one condition"
            )
        _check_once(rt, row.path, where, seen)
        if rt.is_mean:
            means[row.path] = (rt.mean, rt.sd, rt.votes)
        else:
            per_file.setdefault(row.path, []).append((rt.listener or f"line{rt.line}", rt.rating))
        if row.path == row.source or rt.hidden_reference or row.params.get("hidden_reference"):
            hidden.add(row.path)
    counted = [p for p in [*per_file, *means] if include_reference or p not in hidden]
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
        means=means,
    )


#: Keys of :func:`_check_once` for a file's row of means and its first per-listener rating.
_MEAN_KEY, _RATED_KEY = "\x00mean", "\x00rated"


def _check_once(rt: Rating, path: str, where: str, seen: dict[tuple[str, str], int]) -> None:
    """One rating per (file, listener), one mean per file, not both for one file: checked on
    the study's paths, as one file may be named by its manifest and by its input path."""
    if rt.is_mean:
        if (path, _MEAN_KEY) in seen:
            raise ListeningTestError(
                f"{where}: a second rating_mean for {path} (first on line "
                f"{seen[(path, _MEAN_KEY)]}); one mean per file"
            )
        other = seen.get((path, _RATED_KEY))
        seen[(path, _MEAN_KEY)] = rt.line
    else:
        if rt.listener and (path, rt.listener) in seen:
            raise ListeningTestError(
                f"{where}: listener {rt.listener!r} rates {path} a second time (first on line "
                f"{seen[(path, rt.listener)]}); keep one rating per file and listener"
            )
        if rt.listener:
            seen[(path, rt.listener)] = rt.line
        other = seen.get((path, _MEAN_KEY))
        seen.setdefault((path, _RATED_KEY), rt.line)
    if other is not None:
        raise ListeningTestError(
            f"{where}: {path} has a row of means and per-listener ratings (first on line "
            f"{min(other, rt.line)}); give a file one or the other"
        )


def pair_rating_cells(ratings: StudyRatings, degraded_path: str) -> dict[str, Any]:
    """The :data:`PAIR_RATING_COLUMNS` cells of one pair: the mean, SD (ddof 1) and count of
    its ratings, or the mean, SD and votes it was given with; "" where unrated or where the
    table did not say (read back as NaN)."""

    def cell(value: float | int | None) -> float | int | str:
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value

    cells: dict[str, Any] = {
        "condition": ratings.condition.get(degraded_path, ""),
        "hidden_reference": "true" if degraded_path in ratings.hidden else "false",
    }
    if degraded_path in ratings.means:
        mean, sd, votes = ratings.means[degraded_path]
        return {**cells, "rating_mean": cell(mean), "rating_sd": cell(sd), "rating_n": cell(votes)}
    vals = np.array([v for _, v in ratings.per_file.get(degraded_path, [])], dtype=float)
    return {
        **cells,
        "rating_mean": cell(float(vals.mean())) if len(vals) else "",
        "rating_sd": cell(float(vals.std(ddof=1))) if len(vals) > 1 else "",
        "rating_n": len(vals) if len(vals) else "",
    }
