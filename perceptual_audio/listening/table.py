"""A listening test's ratings table (per-listener rows or per-file means): its one reader and writer, names and folders."""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from perceptual_audio.errors import PerceptualAudioError
from perceptual_audio.layout import (  # noqa: F401 (re-exported)
    AGREEMENT_NAME,
    RATED_DIR,
    RATINGS_NAME,
)

if TYPE_CHECKING:
    from perceptual_audio.manifest import ManifestRow


from perceptual_audio.files import atomic_write_text
from perceptual_audio.results import CORRELATION_METHODS

#: The correlation methods, one list (:mod:`perceptual_audio.results` owns the tables).
METHODS = CORRELATION_METHODS

logger = logging.getLogger(__name__)


#: Manifest family of every file imported from a listening test (level = the condition as given).
LISTENING_FAMILY = "listening_test"
#: Columns every listening-test table has, besides ``rating`` or ``rating_mean``.
REQUIRED_COLUMNS = ("reference", "degraded", "condition")
#: One listener's rating of a file (a row of individual ratings).
RATING_COLUMN = "rating"
LISTENER_COLUMN = "listener"
#: A file's mean rating (a row of means, the layout of most MOS corpora), with its optional
#: standard deviation and vote count.
MEAN_COLUMN = "rating_mean"
SD_COLUMN = "rating_sd"
VOTES_COLUMN = "rating_n"
#: Columns of ``ratings.csv``, the one format every accepted layout is carried in: a row holds
#: either ``rating`` (and ``listener`` when the test names them) or ``rating_mean`` (and
#: ``rating_sd``, ``rating_n`` when known); ``reference, degraded`` are manifest paths there.
RATINGS_COLUMNS = (
    "reference",
    "degraded",
    "condition",
    RATING_COLUMN,
    LISTENER_COLUMN,
    MEAN_COLUMN,
    SD_COLUMN,
    VOTES_COLUMN,
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
    "note",
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
# The ratings table: one reader, one writer
# =============================================================================================
@dataclass(frozen=True)
class Rating:
    """One row of a listening-test table: one listener's rating, or a file's mean rating.

    Attributes
    ----------
    line : int
        Line of the CSV file (the header is line 1).
    reference, degraded : str
        As written in the table (``degraded`` is "" for unshipped audio).
    condition : str
        As written in the table.
    rating : float
        One listener's rating; NaN on a row of means.
    listener : str
        "" when the table names no listeners (every rating then counts as its own listener).
    mean, sd : float
        ``rating_mean`` and ``rating_sd`` of a row of means (NaN elsewhere, or SD unknown).
    votes : int or None
        ``rating_n`` of a row of means (None when unknown).
    hidden : bool
        Marked as the hidden reference (``ratings.csv``'s ``hidden_reference`` column).
    input_reference, input_degraded : str
        The paths given to stage 1 (``ratings.csv`` only; "" elsewhere).
    """

    line: int
    reference: str
    degraded: str
    condition: str
    rating: float = math.nan
    listener: str = ""
    mean: float = math.nan
    sd: float = math.nan
    votes: int | None = None
    hidden: bool = False
    input_reference: str = ""
    input_degraded: str = ""

    @property
    def is_mean(self) -> bool:
        """True for a row of means (``rating_mean``), False for one listener's rating."""
        return math.isnan(self.rating)

    @property
    def hidden_reference(self) -> bool:
        return self.hidden or norm_path(self.degraded) == norm_path(self.reference)


def norm_path(path: str) -> str:
    """A table's path as POSIX text, stripped ('' for an empty cell)."""
    return Path(path.strip()).as_posix() if path.strip() else ""


def parse_rating_scale(text: str) -> tuple[float, float]:
    """``"0:100"`` -> (0.0, 100.0); argparse type of ``--rating-scale``."""
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
    """Read and check a listening-test table in any accepted layout (also ``ratings.csv``).

    Layouts (columns ``reference, degraded, condition`` and):

    - ``rating, listener``: one row per listener and file (MUSHRA, per-vote MOS);
    - ``rating``: individual ratings, listeners not named (each counts as its own listener);
    - ``rating_mean[, rating_sd][, rating_n]``: one row per file, its mean rating (MOS corpora).

    A table with both ``rating`` and ``rating_mean`` gives one of them per row, and one file
    either per-listener rows or one row of means.

    Parameters
    ----------
    path : path-like
        The CSV file (UTF-8, a BOM allowed).
    scale : (float, float)
        Inclusive range of valid ratings and means.

    Returns
    -------
    list of Rating
        Every row, including rows with an empty ``degraded`` (the caller skips them).

    Raises
    ------
    ListeningTestError
        Missing file or column, empty reference or condition, a non-numeric or out-of-scale
        rating or mean, an SD below zero, a vote count that is not a positive integer, a
        duplicate (file, condition, listener) or mean, a file with both means and
        per-listener rows; the message names the file and the line.
    """
    path = Path(path)
    reader, header = _open_table(path)
    has = {c: c in header for c in (RATING_COLUMN, LISTENER_COLUMN, MEAN_COLUMN)}
    out = [_parse_row(rec, f"{path}, line {line}", line, has, scale)
           for line, rec in enumerate(reader, start=2)]  # fmt: skip
    if not out:
        raise ListeningTestError(f"{path}: the table has a header but no ratings")
    _check_consistent(path, out)
    return out


def _open_table(path: Path) -> tuple[csv.DictReader, list[str]]:
    if not path.is_file():
        raise ListeningTestError(f"{path}: no such ratings file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ListeningTestError(f"{path}: cannot read it as UTF-8 text ({e})") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if RATING_COLUMN not in header and MEAN_COLUMN not in header:
        missing.append(f"{RATING_COLUMN} (or {MEAN_COLUMN})")
    if missing:
        raise ListeningTestError(
            f"{path}: missing column(s) {', '.join(missing)}; a listening-test table needs "
            f"{', '.join(REQUIRED_COLUMNS)} and {RATING_COLUMN} (optionally {LISTENER_COLUMN}) "
            f"or {MEAN_COLUMN} (optionally {SD_COLUMN}, {VOTES_COLUMN}), got {header}"
        )
    reader.fieldnames = header
    return reader, header


def _cell(rec: dict, column: str) -> str:
    return (rec.get(column) or "").strip()


def _number(raw: str, what: str, where: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ListeningTestError(f"{where}: {what} {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ListeningTestError(f"{where}: {what} {raw!r} is not a finite number")
    return value


def _in_scale(value: float, raw: str, what: str, where: str, scale: tuple[float, float]) -> None:
    lo, hi = scale
    if not lo <= value <= hi:
        raise ListeningTestError(
            f"{where}: {what} {raw} is outside the scale {lo:g}-{hi:g} "
            "(set --rating-scale MIN:MAX for another scale)"
        )


def _parse_row(
    rec: dict, where: str, line: int, has: dict[str, bool], scale: tuple[float, float]
) -> Rating:
    ref, deg = norm_path(_cell(rec, "reference")), norm_path(_cell(rec, "degraded"))
    cond = _cell(rec, "condition")
    if not ref:
        raise ListeningTestError(f"{where}: empty reference")
    if not cond:
        raise ListeningTestError(f"{where}: empty condition")
    raw, raw_mean = _cell(rec, RATING_COLUMN), _cell(rec, MEAN_COLUMN)
    raw_sd, raw_n = _cell(rec, SD_COLUMN), _cell(rec, VOTES_COLUMN)
    listener = _cell(rec, LISTENER_COLUMN)
    common = {
        "hidden": _cell(rec, "hidden_reference").lower() == "true",
        "input_reference": _cell(rec, "input_reference"),
        "input_degraded": _cell(rec, "input_degraded"),
    }
    if raw and raw_mean:
        raise ListeningTestError(
            f"{where}: both {RATING_COLUMN} and {MEAN_COLUMN}; a row is one listener's rating "
            "or a file's mean rating, not both"
        )
    if raw or not has[MEAN_COLUMN]:
        value = _number(raw, "rating", where)
        _in_scale(value, raw, "rating", where, scale)
        extra = [c for c, v in ((SD_COLUMN, raw_sd), (VOTES_COLUMN, raw_n)) if v]
        if extra:
            raise ListeningTestError(
                f"{where}: {extra[0]} belongs to a row of means ({MEAN_COLUMN}), not to one "
                "listener's rating"
            )
        return Rating(line, ref, deg, cond, value, listener, **common)
    if not raw_mean:
        raise ListeningTestError(f"{where}: no rating (give {RATING_COLUMN} or {MEAN_COLUMN})")
    if listener:
        raise ListeningTestError(
            f"{where}: listener {listener!r} on a row of means; a mean is over all listeners"
        )
    mean = _number(raw_mean, MEAN_COLUMN, where)
    _in_scale(mean, raw_mean, MEAN_COLUMN, where, scale)
    sd = _number(raw_sd, SD_COLUMN, where) if raw_sd else math.nan
    if sd < 0:
        raise ListeningTestError(f"{where}: {SD_COLUMN} {raw_sd} is below zero")
    votes = None
    if raw_n:
        try:
            n = float(raw_n)
        except ValueError:
            n = math.nan
        if not (math.isfinite(n) and n >= 1 and n.is_integer()):
            raise ListeningTestError(
                f"{where}: {VOTES_COLUMN} {raw_n!r} is not a positive integer (the number of "
                f"ratings behind {MEAN_COLUMN})"
            )
        votes = int(n)
    return Rating(line, ref, deg, cond, mean=mean, sd=sd, votes=votes, **common)


def _check_consistent(path: Path, rows: Sequence[Rating]) -> None:
    """Listeners named on every rating row or none; one rating per (file, condition,
    listener); one mean per file; no file with both means and per-listener rows."""
    named = next((r for r in rows if not r.is_mean and r.listener), None)
    seen: dict[tuple[str, str, str], int] = {}
    means: dict[tuple[str, str], int] = {}
    singles: dict[tuple[str, str], int] = {}
    for r in rows:
        where = f"{path}, line {r.line}"
        if not r.is_mean and named is not None and not r.listener:
            raise ListeningTestError(
                f"{where}: empty listener (line {named.line} names one: name the listener of "
                "every rating, or of none)"
            )
        if not r.degraded:
            continue
        key = (r.degraded, r.condition)
        if r.is_mean:
            if key in means:
                raise ListeningTestError(
                    f"{where}: a second {MEAN_COLUMN} for {r.degraded} ({r.condition}) (first "
                    f"on line {means[key]}); one mean per file"
                )
            means[key] = r.line
        else:
            singles.setdefault(key, r.line)
        if key in means and key in singles:
            first = min(means[key], singles[key])
            raise ListeningTestError(
                f"{where}: {r.degraded} ({r.condition}) has a row of means and per-listener "
                f"ratings (first on line {first}); give a file one or the other"
            )
        if r.listener:
            lkey = (r.degraded, r.condition, r.listener)
            if lkey in seen:
                raise ListeningTestError(
                    f"{where}: listener {r.listener!r} rates {r.degraded} ({r.condition}) a "
                    f"second time (first on line {seen[lkey]}); keep one rating per file and "
                    "listener"
                )
            seen[lkey] = r.line


def _number_text(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value))


def write_rating_table(path: Path, rows: Sequence[Rating]) -> None:
    """Write ``ratings.csv`` (:data:`RATINGS_COLUMNS`) atomically; :func:`read_rating_table`
    reads it back to the same rows (``line`` aside)."""

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(RATINGS_COLUMNS)
    for r in rows:
        w.writerow(
            [
                r.reference,
                r.degraded,
                r.condition,
                _number_text(r.rating),
                r.listener,
                _number_text(r.mean),
                _number_text(r.sd),
                "" if r.votes is None else str(r.votes),
                "true" if r.hidden_reference else "false",
                r.input_reference,
                r.input_degraded,
            ]
        )
    atomic_write_text(path, buf.getvalue())


def condition_folder(condition: str) -> str:
    """A condition's folder name: runs of characters other than ``A-Za-z0-9._-`` become ``_``.

    ``"Proposed 1.38 16kHz"`` -> ``"Proposed_1.38_16kHz"``.
    """
    name = _SAFE_NAME.sub("_", condition.strip()).strip("._")
    return name


def is_imported(row: ManifestRow) -> bool:
    """True for a ``degraded`` manifest row that stage 1 imported from a listening test."""
    return row.kind == "degraded" and row.family == LISTENING_FAMILY
