"""The monotonicity findings: does each metric move the right way as a degradation gets
stronger? Sentences and metric x family tables from stage 3's ``monotonicity.csv``."""

from __future__ import annotations

import pandas as pd

from perceptual_audio.report.findings import and_list
from perceptual_audio.report.loading import StudyResults
from perceptual_audio.report.vocabulary import metric_info, metric_sort_key

#: Column of the tables that averages a metric's fractions over the families.
MEAN_COLUMN = "mean over families"
#: Below this fraction of recording-steps moving the right way, a metric is named as weak.
WEAK_FRACTION = 0.8


def monotonicity_findings(results: StudyResults) -> tuple[list[str], pd.DataFrame, pd.DataFrame]:
    """Sentences and tables from ``monotonicity.csv``.

    Reads the rows with ``step == "all"`` (pooled over the steps of a family): ``fraction_right``
    (share of recording-steps that move the right way) and ``fraction_monotone`` (share of
    recordings that move the right way at every step).

    Returns
    -------
    sentences : list of str
    right : pd.DataFrame
        metric x family table of ``fraction_right`` plus a ``mean over families`` column.
    monotone : pd.DataFrame
        The same for ``fraction_monotone`` (empty when the column is absent).
    """
    mono = results.monotonicity
    empty = pd.DataFrame()
    if mono is None or mono.empty:
        return (
            [
                "Monotonicity was not computed (monotonicity.csv is missing or has no rows; "
                "it needs at least two levels in a family)."
            ],
            empty,
            empty,
        )
    if not {"family", "metric", "fraction_right"} <= set(mono.columns):
        return (
            [
                f"monotonicity.csv has columns {list(mono.columns)}; expected family, metric, "
                "fraction_right (rerun calculate_metrics.py), so it is not summarised."
            ],
            empty,
            empty,
        )
    rows = _pooled_rows(mono, results.metrics)
    right = _fraction_table(rows, "fraction_right", results.families)
    monotone = _fraction_table(rows, "fraction_monotone", results.families)
    overall = (
        right[MEAN_COLUMN].dropna().sort_values(ascending=False)
        if not right.empty
        else pd.Series(dtype=float)
    )
    if overall.empty:
        return (
            ["No metric has enough values at two consecutive levels to judge monotonicity."],
            right,
            monotone,
        )
    return _leader_sentences(overall) + [_weak_sentence(right)], right, monotone


def _pooled_rows(mono: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """The rows pooled over a family's steps (``step == "all"``, when there are any) of the
    reported ``metrics``."""
    m = mono.copy()
    m["family"] = m["family"].astype(str)
    if "step" in m.columns:
        pooled = m[m["step"].astype(str) == "all"]
        m = pooled if not pooled.empty else m
    return m[m["metric"].isin(metrics)]


def _fraction_table(rows: pd.DataFrame, col: str, families: list[str]) -> pd.DataFrame:
    """metric x family table of ``col`` (report order) plus its mean over the families; empty
    when the column is absent."""
    if col not in rows.columns or rows.empty:
        return pd.DataFrame()
    vals = rows.assign(**{col: pd.to_numeric(rows[col], errors="coerce")})
    table = vals.pivot_table(
        index="metric", columns="family", values=col, aggfunc="mean", dropna=False
    )
    table = table.reindex(
        index=sorted(table.index, key=metric_sort_key),
        columns=[f for f in families if f in table.columns],
    )
    table[MEAN_COLUMN] = table.mean(axis=1)
    return table


def _leaders(ranked: pd.Series) -> list[str]:
    """Index labels tied with the first value of a descending series (to 1e-12)."""
    return [k for k, v in ranked.items() if abs(v - ranked.iloc[0]) <= 1e-12]


def _leader_sentences(overall: pd.Series) -> list[str]:
    """The most monotonic metric(s) overall and among the neural metrics, from their mean
    fraction of recording-steps moving the right way (descending)."""
    top = _leaders(overall)
    out = [
        (
            "The metric that most often moves the right way at each step up in severity is "
            if len(top) == 1
            else f"The {len(top)} metrics that most often move the right way at each step up "
            "in severity are tied: "
        )
        + f"{and_list(metric_info(x).label for x in top)}: {100 * overall.iloc[0]:.0f}% of "
        "recording-steps, averaged over families."
    ]
    neural = overall[[x for x in overall.index if metric_info(x).neural]]
    if not neural.empty:
        best = _leaders(neural)
        out.append(
            f"Among the neural metrics, {and_list(metric_info(x).label for x in best)} "
            + ("is the most monotonic" if len(best) == 1 else "tie as the most monotonic")
            + f" ({100 * neural.iloc[0]:.0f}% of recording-steps move the right way)."
        )
    return out


def _weak_sentence(right: pd.DataFrame) -> str:
    """The metric/family cells below :data:`WEAK_FRACTION`, or that there are none."""
    weak = []
    for metric, row in right.drop(columns=MEAN_COLUMN).iterrows():
        for fam, v in row.items():
            if pd.notna(v) and v < WEAK_FRACTION:
                weak.append(f"{metric_info(metric).label} on {fam} ({100 * v:.0f}%)")
    if weak:
        return (
            f"Below {WEAK_FRACTION:.0%} (the metric often fails to rank the severities of a "
            "family): " + "; ".join(weak) + "."
        )
    return (
        f"Every metric moves the right way at {WEAK_FRACTION:.0%} or more of the steps in "
        "every family."
    )
