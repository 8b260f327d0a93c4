"""The on-disk format of stage 3's results folder (docs/CONTRACTS.md): file names, columns,
readers and the writer of ``pair_metrics.csv``.

The one owner of that format: stage 3 (:mod:`perceptual_audio.stages.score`) writes the
tables, stage 4 (:mod:`perceptual_audio.report`, :mod:`perceptual_audio.stages.visualize`) and
the tests read them with the functions here. pandas is imported lazily: stage 3's worker
processes import this module without it.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perceptual_audio.errors import SchemaError
from perceptual_audio.files import write_text_if_changed
from perceptual_audio.layout import (  # noqa: F401 (the table's names, re-exported)
    CORRELATIONS_NAME,
    LOSS_AUDIT_NAME,
    MONOTONICITY_NAME,
    PAIR_METRICS_NAME,
    RUN_JSON_NAME,
    SUMMARY_NAME,
)

if TYPE_CHECKING:
    import pandas as pd  # deferred: pandas is slow to import; stage-3 workers never need it

logger = logging.getLogger(__name__)

# -- file names of the results folder ----------------------------------------------------------
# (owned by :mod:`perceptual_audio.layout`; imported here for the table's readers)

# -- columns -----------------------------------------------------------------------------------
#: Leading columns of ``pair_metrics.csv``, in order.
LEADING_COLUMNS = ("reference_path", "degraded_path", "family", "level")
#: Per-pair facts from the audio manifest, after the statuses: the degraded file's flags
#: (``silent``, ``short``, ...) and whether its degradation was applied at all (a silent
#: input is left unchanged by noise, compression and clipping: SNR is undefined).
#: ``kind``: ``degraded``, or ``restored`` (stage 2's ``--restore``: ``degraded_path`` is then
#: the restored file and ``loss`` the loss it was optimised under; out of the statistics).
PAIR_INFO_COLUMNS = ("flags", "degradation_applied", "kind", "loss")
#: Text columns a listening test adds to ``pair_metrics.csv`` (``listening.PAIR_RATING_COLUMNS``).
RATING_TEXT_COLUMNS = ("condition", "hidden_reference")
#: Suffixes of the bookkeeping columns of ``pair_metrics.csv`` (text, never metrics).
TEXT_SUFFIXES = ("_status", "_key", "_sha256")
#: Columns every row of ``summary_by_degradation.csv`` carries besides ``<metric>_mean``.
SUMMARY_KEY_COLUMNS = ("family", "level")
#: Columns ``correlations.csv`` carries (besides at least one ``<method>_r`` column).
CORRELATION_KEY_COLUMNS = ("scope", "metric_x", "metric_y")
#: Correlation methods of ``correlations.csv``.
CORRELATION_METHODS = ("pearson", "spearman", "kendall")


def is_text_column(name: str) -> bool:
    """Whether a ``pair_metrics.csv`` column holds text (paths, statuses, keys, hashes, flags)."""
    return (
        name in LEADING_COLUMNS
        or name in PAIR_INFO_COLUMNS
        or name in RATING_TEXT_COLUMNS
        or name.endswith(TEXT_SUFFIXES)
    )


# -- pair_metrics.csv: stage 3's writer and cache reader ----------------------------------------
def _format_value(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return ""
    return repr(float(v))


def write_pair_table(
    path: Path, rows: list[dict[str, Any]], columns: Sequence[str], value_columns: Sequence[str]
) -> None:
    """Write ``pair_metrics.csv`` atomically; floats as Python ``repr`` (exact round trip),
    NaN as an empty cell."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    values = set(value_columns)
    for r in rows:
        w.writerow([_format_value(r[c]) if c in values else r.get(c, "") for c in columns])
    write_text_if_changed(path, buf.getvalue())


def read_previous_pairs(path: Path) -> dict[str, dict[str, str]]:
    """Rows of an earlier ``pair_metrics.csv`` by degraded path, as strings (stage 3's cache;
    {} when absent or unreadable)."""
    if not path.exists():
        return {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return {r["degraded_path"]: r for r in csv.DictReader(f) if r.get("degraded_path")}
    except (OSError, KeyError, csv.Error) as e:
        logger.warning("cannot reuse %s (%s): recomputing every cell", path, e)
        return {}


def read_pair_table(path: str | os.PathLike) -> pd.DataFrame:
    """``pair_metrics.csv`` exactly as written: values float (empty cells NaN), text columns
    (:func:`is_text_column`) str."""
    import pandas as pd  # deferred: pandas is slow to import; stage-3 workers never need it

    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    text_cols = {c for c in header if is_text_column(c)}
    return pd.read_csv(
        path,
        dtype={c: str for c in text_cols},
        keep_default_na=False,
        na_values={c: [""] for c in header if c not in text_cols},
    )


# -- checked readers (stage 4) -----------------------------------------------------------------
def _read_csv(path: Path, *, text_columns: Sequence[str]) -> pd.DataFrame:
    import pandas as pd  # deferred: pandas is slow to import; stage-3 workers never need it

    try:
        frame = pd.read_csv(path, dtype={c: str for c in text_columns}, keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise SchemaError(
            f"{path}: the file is empty; expected a CSV table with a header "
            "row. Rerun calculate_metrics.py."
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise SchemaError(
            f"{path}: not a readable CSV table ({e}). Rerun calculate_metrics.py."
        ) from None
    for c in text_columns:
        if c in frame.columns:
            frame[c] = frame[c].fillna("").astype(str)
    return frame


def require_columns(
    path: Path, frame: pd.DataFrame, required: Sequence[str], *, leading: bool = False
) -> None:
    """Raise :class:`SchemaError` naming the file when ``frame`` lacks ``required`` (as its
    first columns with ``leading``)."""
    cols = list(frame.columns)
    ok = cols[: len(required)] == list(required) if leading else all(c in cols for c in required)
    if not ok:
        how = "leading columns" if leading else "columns"
        raise SchemaError(
            f"{path}: expected {how} {list(required)}, received {cols[:12]}"
            f"{' ...' if len(cols) > 12 else ''}. This results folder was written by an older "
            "or different version of calculate_metrics.py; rerun calculate_metrics.py --force "
            "to rebuild it."
        )


def read_pair_metrics(
    path: str | os.PathLike, *, not_metrics: Sequence[str] = ()
) -> tuple[pd.DataFrame, list[str]]:
    """Read ``pair_metrics.csv`` checked; returns the table and its metric columns (table order).

    Metric columns are the columns after the leading ones that are neither text
    (:func:`is_text_column`) nor in ``not_metrics`` (a listening test's ratings) nor text that
    is not a number; they are converted to float (an unparsable cell becomes NaN).

    Raises
    ------
    SchemaError
        If the leading columns are not :data:`LEADING_COLUMNS` or no metric column exists.
    """
    import pandas as pd  # deferred: pandas is slow to import; stage-3 workers never need it

    path = Path(path)
    frame = _read_csv(path, text_columns=(*LEADING_COLUMNS, *RATING_TEXT_COLUMNS))
    require_columns(path, frame, LEADING_COLUMNS, leading=True)
    metrics = []
    for c in map(str, frame.columns[len(LEADING_COLUMNS) :]):
        if is_text_column(c) or c in not_metrics:
            continue
        raw = frame[c]
        parsed = pd.to_numeric(raw, errors="coerce")
        if raw.notna().any() and parsed.notna().sum() == 0 and raw.dtype == object:
            continue
        metrics.append(c)
    if not metrics:
        raise SchemaError(
            f"{path}: no metric columns after {list(LEADING_COLUMNS)}; expected "
            "at least pesq_wb, stoi. Rerun calculate_metrics.py --force."
        )
    for m in metrics:
        frame[m] = pd.to_numeric(frame[m], errors="coerce")
    for c in frame.columns:
        if str(c).endswith("_status"):
            frame[c] = frame[c].fillna("").astype(str)
    return frame, metrics


def read_summary(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``summary_by_degradation.csv`` (``family, level`` + ``<metric>_mean/_ci_low/_ci_high``).

    Raises
    ------
    SchemaError
        If ``family``/``level`` or every ``*_mean`` column is missing.
    """
    import pandas as pd  # deferred: pandas is slow to import; stage-3 workers never need it

    path = Path(path)
    frame = _read_csv(path, text_columns=SUMMARY_KEY_COLUMNS)
    require_columns(path, frame, SUMMARY_KEY_COLUMNS)
    if not any(str(c).endswith("_mean") for c in frame.columns):
        raise SchemaError(
            f"{path}: expected <metric>_mean columns (e.g. pesq_wb_mean), received "
            f"{list(frame.columns)[:12]}. Rerun calculate_metrics.py --force."
        )
    for c in frame.columns:
        if c not in SUMMARY_KEY_COLUMNS:
            frame[c] = pd.to_numeric(frame[c], errors="coerce")
    return frame


def read_correlations(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``correlations.csv`` (``scope, metric_x, metric_y`` + ``<method>_r``, CI, p, n).

    Raises
    ------
    SchemaError
        If the key columns or every ``<method>_r`` column is missing.
    """
    import pandas as pd  # deferred: pandas is slow to import; stage-3 workers never need it

    path = Path(path)
    frame = _read_csv(path, text_columns=CORRELATION_KEY_COLUMNS)
    require_columns(path, frame, CORRELATION_KEY_COLUMNS)
    # stats.correlation_table names the value column after the method ("pearson"); accept
    # "pearson_r" too, and use the latter internally.
    frame = frame.rename(
        columns={
            m: f"{m}_r"
            for m in CORRELATION_METHODS
            if m in frame.columns and f"{m}_r" not in frame.columns
        }
    )
    if not any(f"{m}_r" in frame.columns for m in CORRELATION_METHODS):
        raise SchemaError(
            f"{path}: expected pearson / spearman / kendall columns, "
            f"received {list(frame.columns)[:12]}. Rerun calculate_metrics.py --force."
        )
    for c in frame.columns:
        if c not in CORRELATION_KEY_COLUMNS:
            frame[c] = pd.to_numeric(frame[c], errors="coerce")
    return frame
