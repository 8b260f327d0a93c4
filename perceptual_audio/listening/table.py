"""A listening test's long-format table (one row per listener, stimulus and condition) and its reading."""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from perceptual_audio.errors import PerceptualAudioError
from perceptual_audio.layout import AGREEMENT_NAME, RATINGS_NAME  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from perceptual_audio.manifest import ManifestRow


logger = logging.getLogger(__name__)


#: Manifest family of every file imported from a listening test (level = condition folder).
LISTENING_FAMILY = "listening_test"
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
