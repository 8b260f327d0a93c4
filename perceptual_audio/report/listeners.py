"""The agreement-with-listeners section (:mod:`perceptual_audio.listening` computes it)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from perceptual_audio import listening, stats
from perceptual_audio.listening import CEILING
from perceptual_audio.report.elements import (
    Cell,
    FigureBlock,
    Paragraph,
    Table,
    ci_cell,
)
from perceptual_audio.report.loading import (
    StudyResults,
)
from perceptual_audio.report.vocabulary import (
    fmt_n,
    metric_info,
)
from perceptual_audio.stats import mean_ci

logger = logging.getLogger(__name__)

# =============================================================================================
# Agreement with listeners (perceptual_audio.listening computes, this part presents)
# =============================================================================================
#: Figure group whose figures are shown in the listener section (see visualize_stage).
LISTENER_FIGURE_GROUP = "Agreement with listeners"


def _hidden(column: pd.Series) -> pd.Series:
    """``hidden_reference`` cells as booleans (written ``true``/``false``)."""
    return column.astype(str).str.lower() == "true"


def _label(metric: str) -> str:

    return "Listener ceiling (split-half)" if metric == CEILING else metric_info(metric).label


def _coef_cell(row: pd.Series, method: str) -> Cell:
    v, lo, hi = (float(row[f"{method}{s}"]) for s in ("", "_ci_low", "_ci_high"))
    return ci_cell(v, lo, hi) if not math.isnan(v) else Cell("n/a", math.nan)


def listener_table(results: StudyResults, level: str) -> Table:
    """Every metric ranked by its (direction-adjusted) Pearson r with the listeners at one
    level; the listener ceiling last."""

    agreement = results.listening
    rates = (results.run.get("metric_sample_rates_hz") or {}).get("metrics", {})
    rows = []
    ranked = listening.ranked(agreement, level)
    ceil = agreement[(agreement["level"] == level) & (agreement["metric"] == listening.CEILING)]
    for i, (_, r) in enumerate([*ranked.iterrows(), *ceil.iterrows()], start=1):
        is_ceiling = r["metric"] == listening.CEILING
        rows.append(
            [
                Cell("" if is_ceiling else str(i), i),
                _label(r["metric"]),
                "" if is_ceiling else str(rates.get(r["metric"], "")),
                Cell(fmt_n(r["n"]), float(r["n"])),
                _coef_cell(r, "pearson"),
                _coef_cell(r, "spearman"),
                _coef_cell(r, "kendall"),
                r["pearson_mapped"],
                r["rmse_mapped"],
            ]
        )
    what = (
        "each rated file"
        if level == listening.LEVEL_FILE
        else "per-condition means over stimuli (system level)"
    )
    return Table(
        f"Every metric against the mean listener rating, {what}: ranked by Pearson r turned "
        "so that larger = agrees more (a distance agrees when its r is negative); 95% "
        "bootstrap CIs over stimuli; r and RMSE after the P.1401 monotonic third-order "
        "mapping (n/a: the best mapping in the metric's direction is flat, i.e. the metric "
        "orders the files against the listeners); last row: how well half the listeners "
        "predict the other half (Spearman-Brown corrected), the best any metric can do",
        [
            "Rank",
            "Metric",
            "Rate (Hz)",
            "n",
            "Pearson r",
            "Spearman ρ",
            "Kendall τ",
            "r mapped",
            "RMSE mapped",
        ],
        rows,
    )


def condition_table(results: StudyResults) -> Table:
    """Per listening-test condition: files, mean rating with Student-t CI, each metric's mean."""

    pairs = results.pairs[results.pairs["rating_mean"].notna()]
    rows = []
    for cond, g in sorted(pairs.groupby("condition"), key=lambda kv: -kv[1]["rating_mean"].mean()):
        mean, lo, hi, n = mean_ci(g["rating_mean"].to_numpy(float))
        hidden = _hidden(g["hidden_reference"]).all()
        row: list[Any] = [str(cond) + (" (hidden reference)" if hidden else ""), n]
        row.append(ci_cell(mean, lo, hi))
        for m in results.metrics:
            v = g[m].replace([np.inf, -np.inf], np.nan).to_numpy(float)
            row.append(float(np.nanmean(v)) if np.isfinite(v).any() else math.nan)
        rows.append(row)
    return Table(
        "Per condition: rated files (stimuli), mean rating over stimuli [95% t-CI] and "
        "each metric's mean (conditions best-rated first)",
        ["Condition", "Files", "Mean rating", *[metric_info(m).label for m in results.metrics]],
        rows,
    )


def listener_section(
    results: StudyResults, figures: Sequence[FigureBlock] = ()
) -> tuple[list[str], list[Any]]:
    """(key-finding sentences, blocks) of the listener section; ([], []) without ratings."""

    if results.listening is None or results.listening.empty:
        return [], []
    info = results.run.get("listening") if isinstance(results.run.get("listening"), dict) else {}
    classic = [m for m in results.metrics if not metric_info(m).neural]
    key = listening.agreement_findings(results.listening, _label, classic=classic)
    pairs = results.pairs[results.pairs["rating_mean"].notna()]
    n_hidden = int(_hidden(pairs["hidden_reference"]).sum())
    included = bool(info.get("include_reference"))
    text = (
        f"{len(pairs)} rated files ({pairs['reference_path'].nunique()} stimuli, "
        f"{pairs['condition'].nunique()} conditions"
        + (f", {info['ratings_n']} ratings" if info.get("ratings_n") else "")
        + (f", from {info['ratings']}" if info.get("ratings") else "")
        + "). "
        + (
            f"The hidden reference ({n_hidden} files) is "
            + ("included in" if included else "listed but left out of")
            + " the agreement statistics"
            + (
                ""
                if included
                else " (every full-reference metric scores it perfectly; "
                "calculate_metrics.py --include-reference puts it in)"
            )
            + ". "
            if n_hidden
            else ""
        )
        + "Confidence intervals: 95% percentile bootstrap resampling stimuli with all their "
        "files. Mapping: "
        + str(info.get("mapping", "ITU-T P.1401 third-order monotonic mapping"))
        + ". Ceiling: "
        + str(info.get("ceiling", "split-half listener correlation, Spearman-Brown corrected"))
        + "."
    )
    blocks: list[Any] = [Paragraph(text)]
    missing = agreement_notes(results.listening)
    if missing:
        blocks.append(Paragraph("What this study cannot give: " + " ".join(missing)))
    blocks += [listener_table(results, lv) for lv in listening.LEVELS]
    blocks += [f for f in figures if f.group == LISTENER_FIGURE_GROUP]
    blocks.append(condition_table(results))
    return key, blocks


def agreement_notes(agreement: pd.DataFrame) -> list[str]:
    """``listener_agreement.csv``'s notes in sentences, one per level and note (the metrics
    it applies to named unless it applies to all): why a CI, a value or the ceiling is
    missing."""

    if "note" not in agreement:
        return []
    out = []
    for level in listening.LEVELS:
        sub = agreement[(agreement["level"] == level) & (agreement["note"].fillna("") != "")]
        n_metrics = int(
            ((agreement["level"] == level) & (agreement["metric"] != listening.CEILING)).sum()
        )
        for note, g in sub.groupby("note", sort=False):
            names = [_label(m) for m in g["metric"]]
            ceiling = list(g["metric"]) == [listening.CEILING]
            who = "" if ceiling else "all metrics" if len(names) == n_metrics else ", ".join(names)
            out.append(f"{level.capitalize()} level{', ' + who if who else ''}: {note}.")
    return out


def metric_rate_table(results: StudyResults) -> Table:
    """The sample rate each metric computed at, and the highest frequency it could see."""
    rates = results.run.get("metric_sample_rates_hz") or {}
    study = rates.get("study_sample_rates_hz") or []
    rows = []
    for m in results.metrics:
        r = (rates.get("metrics") or {}).get(m)
        if r is None:
            continue
        top = min([int(r), *[int(s) for s in study]]) / 2000
        rows.append([metric_info(m).label, int(r), Cell(f"{top:g} kHz", top)])
    return Table(
        "Rate each metric saw: the study's audio ("
        + (", ".join(f"{s} Hz" for s in study) or "rate unknown")
        + ") resampled to the metric's own rate; nothing above the last column reaches it",
        ["Metric", "Rate (Hz)", "Sees up to"],
        rows,
    )


def min_recordings_for_ci() -> int:
    try:
        return int(getattr(stats, "MIN_RECORDINGS_FOR_CI", 2))
    except Exception:  # noqa: BLE001 - stage 3's module is optional here
        return 2
