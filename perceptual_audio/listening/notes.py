"""Why a cell of ``listener_agreement.csv`` is empty: the ``note`` column in words.

A small study cannot give everything: with fewer than
:data:`perceptual_audio.stats.MIN_RECORDINGS_FOR_CI` stimuli there is no bootstrap over stimuli,
so no CI; without per-listener ratings (a table of means) there is no split-half ceiling. The
table says so in its ``note`` column, and the report repeats it, instead of leaving bare NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from perceptual_audio.listening.table import LEVEL_FILE, MAPPING_PARAMETERS, MIN_RATED_FILES
from perceptual_audio.stats import MIN_RECORDINGS_FOR_CI

if TYPE_CHECKING:
    from perceptual_audio.listening.study import StudyRatings


def _nan(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def ci_note(n_stimuli: int, n_bootstrap: int) -> str:
    """Why a coefficient has no CI (no "; " inside: notes join their parts with it)."""

    if n_stimuli < MIN_RECORDINGS_FOR_CI:
        return (
            f"no CI: {_plural(n_stimuli, 'stimulus', 'stimuli')} (the bootstrap resamples "
            f"stimuli and needs at least {MIN_RECORDINGS_FOR_CI})"
        )
    if n_bootstrap <= 0:
        return "no CI: --bootstrap 0"
    return "no CI: too few bootstrap replicates gave a value"


def metric_note(row: Mapping[str, Any], *, n_stimuli: int, n_bootstrap: int) -> str:
    """The ``note`` of one metric's row: why its coefficients, CIs or mapping are missing
    ("" when nothing is)."""
    n = int(row.get("n") or 0)
    unit = ("file", "files") if row.get("level") == LEVEL_FILE else ("condition", "conditions")
    parts = []
    if _nan(row.get("pearson")):
        if n < MIN_RATED_FILES:
            parts.append(
                f"no coefficient: {_plural(n, *unit)} with a value, at least {MIN_RATED_FILES} "
                "needed"
            )
        else:
            parts.append("no coefficient: no spread in the metric or in the ratings")
        return "; ".join(parts)
    if _nan(row.get("pearson_ci_low")):
        parts.append(ci_note(n_stimuli, n_bootstrap))
    if _nan(row.get("pearson_mapped")) and n <= MAPPING_PARAMETERS:
        parts.append(
            f"no P.1401 mapping: {_plural(n, *unit)}, it fits {MAPPING_PARAMETERS} parameters"
        )
    return "; ".join(parts)


def ceiling_blocker(files: Sequence[str], ratings: StudyRatings, listeners: Sequence[str]) -> str:
    """Why the split-half ceiling cannot be estimated at all ("" when it can be tried)."""
    means = [f for f in files if f in ratings.means]
    if means:
        return (
            "ceiling not estimated: a split-half needs per-listener ratings, and "
            f"{len(means)} of {_plural(len(files), 'rated file', 'rated files')} "
            "have only a mean rating (rating_mean)"
        )
    if len(files) < MIN_RATED_FILES:
        return f"ceiling not estimated: fewer than {MIN_RATED_FILES} rated files"
    if len(listeners) < 2:
        return (
            f"ceiling not estimated: the ratings name {_plural(len(listeners), 'listener', 'listeners')}; "
            "a split into halves needs at least 2"
        )
    return ""


def ceiling_note(
    row: Mapping[str, Any],
    files: Sequence[str],
    ratings: StudyRatings,
    *,
    n_stimuli: int,
    n_bootstrap: int,
) -> str:
    """The ``note`` of a ceiling row that could be tried (see :func:`ceiling_blocker`)."""
    most = max((len(ratings.per_file.get(f, [])) for f in files), default=0)
    if _nan(row.get("pearson")):
        if not ratings.has_listeners and most < 2:
            return (
                "ceiling not estimated: the table names no listeners and gives one rating "
                "per file, so no file's ratings can be split into halves"
            )
        return (
            "ceiling not estimated: no split gave both halves ratings of enough files with spread"
        )
    parts = []
    if not ratings.has_listeners:
        parts.append(
            "no listener column: each rating counted as its own listener (the halves split "
            "ratings, not listeners)"
        )
    if _nan(row.get("pearson_ci_low")):
        parts.append(ci_note(n_stimuli, n_bootstrap))
    return "; ".join(parts)
