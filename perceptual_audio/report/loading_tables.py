"""The stage-3 tables of a results folder, each read and checked on its own.

:func:`perceptual_audio.report.loading.load_results` puts them together with what it finds of
the upstream folders. A required table that is missing raises; an optional one that is missing
or unreadable adds a note (shown at the top of the report) and reads as empty.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from perceptual_audio import results as results_format
from perceptual_audio.errors import PerceptualAudioError, SchemaError
from perceptual_audio.listening import (
    AGREEMENT_COLUMNS,
    AGREEMENT_NAME,
    CEILING,
    PAIR_RATING_COLUMNS,
)
from perceptual_audio.report.vocabulary import metric_sort_key
from perceptual_audio.results import (
    CORRELATION_KEY_COLUMNS,
    CORRELATIONS_NAME,
    MONOTONICITY_NAME,
    PAIR_METRICS_NAME,
    SUMMARY_NAME,
    read_correlations,
    read_summary,
)


def read_pair_metrics(path: str | os.PathLike) -> tuple[pd.DataFrame, list[str]]:
    """:func:`perceptual_audio.results.read_pair_metrics` without the listening-test ratings
    (the truth, not metrics), its metric columns in report order (:func:`metric_sort_key`)."""
    frame, metrics = results_format.read_pair_metrics(path, not_metrics=PAIR_RATING_COLUMNS)
    if "kind" in frame.columns:  # restored pairs belong to the loss audit, not the study
        frame = frame[frame["kind"].fillna("degraded") != "restored"].reset_index(drop=True)
    return frame, sorted(metrics, key=metric_sort_key)


def read_study_pairs(results_dir: Path) -> tuple[pd.DataFrame, list[str], int]:
    """``pair_metrics.csv`` without the pairs whose degradation was not applied.

    Returns
    -------
    pairs : pd.DataFrame
    metrics : list of str
        Metric columns in report order.
    n_not_applied : int
        Pairs left out because stage 2 did not apply their degradation (silent input).
    """
    pair_path = results_dir / PAIR_METRICS_NAME
    if not pair_path.exists():
        raise PerceptualAudioError(
            f"{pair_path}: not found; expected the table written by "
            "calculate_metrics.py. Run stage 3 first."
        )
    pairs, metrics = read_pair_metrics(pair_path)
    n_not_applied = 0
    if "degradation_applied" in pairs.columns:  # as in stage 3's statistics
        keep = pairs["degradation_applied"].astype(str).str.lower() != "false"
        n_not_applied = int((~keep).sum())
        pairs = pairs[keep].reset_index(drop=True)
    if pairs.empty:
        raise SchemaError(
            f"{pair_path}: has a header but no rows; expected one row per "
            "clean/degraded pair. Check stage 2 produced degraded files."
        )
    return pairs, metrics, n_not_applied


def read_summary_table(results_dir: Path) -> pd.DataFrame:
    """``summary_by_degradation.csv`` (required)."""
    summary_path = results_dir / SUMMARY_NAME
    if not summary_path.exists():
        raise PerceptualAudioError(
            f"{summary_path}: not found; expected the per-degradation "
            "summary written by calculate_metrics.py. Rerun stage 3."
        )
    return read_summary(summary_path)


def read_correlation_table(results_dir: Path, notes: list[str]) -> pd.DataFrame:
    """``correlations.csv``; empty (with a note) when missing."""
    corr_path = results_dir / CORRELATIONS_NAME
    if corr_path.exists():
        return read_correlations(corr_path)
    notes.append(f"{CORRELATIONS_NAME} is missing from {results_dir}: no correlation findings.")
    return pd.DataFrame(columns=list(CORRELATION_KEY_COLUMNS))


def read_monotonicity_table(results_dir: Path, notes: list[str]) -> pd.DataFrame:
    """``monotonicity.csv``; empty (with a note) when missing or unreadable."""
    mono_path = results_dir / MONOTONICITY_NAME
    if not mono_path.exists():
        notes.append(
            f"{MONOTONICITY_NAME} is missing from {results_dir}: monotonicity is not reported."
        )
        return pd.DataFrame()
    try:
        return pd.read_csv(mono_path, dtype={"family": str, "metric": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        notes.append(f"{mono_path} is unreadable ({e}); monotonicity is not reported.")
        return pd.DataFrame()


def read_listener_agreement(
    results_dir: Path, metrics: Sequence[str], notes: list[str]
) -> pd.DataFrame | None:
    """``listener_agreement.csv`` restricted to the reported ``metrics`` (and the listeners'
    ceiling); None when the study has no ratings or the table is unreadable (with a note)."""
    path = results_dir / AGREEMENT_NAME
    if not path.exists():
        return None
    try:
        frame = pd.read_csv(path, dtype={"metric": str, "level": str, "note": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        notes.append(f"{path} is unreadable ({e}); agreement with listeners is not reported.")
        return None

    if "note" not in frame:  # written before stage 3 explained its empty cells
        frame["note"] = ""
    frame["note"] = frame["note"].fillna("").astype(str)
    results_format.require_columns(path, frame, AGREEMENT_COLUMNS)
    # Metrics the report dropped (unavailable models) are not ranked either.
    return frame[frame["metric"].isin([*metrics, CEILING])].reset_index(drop=True)
