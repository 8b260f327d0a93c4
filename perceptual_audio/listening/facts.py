"""Facts for the report: the metrics' rates, orientation and ranking against the listeners."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


from perceptual_audio import metrics
from perceptual_audio.listening.table import (
    CEILING,
    LEVEL_FILE,
    LEVELS,
)
from perceptual_audio.stats import higher_is_better

logger = logging.getLogger(__name__)


# Facts for the report
# =============================================================================================
def metric_rate_hz(metric: str, study_rate: int, *, pesq_nb_rate: int = 16000) -> int:
    """Sample rate (Hz) the metric computes at (its audio resampled from ``study_rate``): the
    catalogue's native rate (``metrics.describe``); the study's own rate for a metric without
    one (SI-SDR); PESQ-NB at ``--pesq-nb-rate``."""

    if metric == "pesq_nb":
        return int(pesq_nb_rate)
    rate = metrics.describe(metric).sample_rate
    return int(study_rate if rate is None else rate)


def oriented(metric: str, value: float) -> float:
    """A coefficient turned so that larger = agrees more with listeners (distances flip)."""

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


_SYMBOL = {"pearson": "Pearson r", "spearman": "Spearman ρ", "kendall": "Kendall τ"}


def _note(row: Any) -> str:
    note = row.get("note", "") if hasattr(row, "get") else ""
    return note if isinstance(note, str) else ""


def _ci_reason(row: Any) -> str:
    """The row's "no CI: ..." reason in short (``no CI: 2 stimuli``), or a plain "no CI"."""
    for part in _note(row).split("; "):
        if part.startswith("no CI"):
            return part.split(" (")[0]
    return "no CI"


def _point(row: Any, method: str) -> tuple[float, float, float]:
    """(value, ci_low, ci_high) turned so that larger = agrees more."""
    v = oriented(row["metric"], row[method])
    lo, hi = oriented_ci(row["metric"], row[f"{method}_ci_low"], row[f"{method}_ci_high"])
    return v, lo, hi


def _lead_sentence(best: Any, second: Any, level: str, label: Any, method: str) -> str:
    """Best metric against the runner-up: a winner is named only when its CI lies above the
    runner-up's; otherwise it only ranks first, and the sentence says why that is no lead."""
    sym = _SYMBOL[method]
    what = "file" if level == LEVEL_FILE else "condition (system)"
    b_v, b_lo, b_hi = _point(best, method)
    has_ci = np.isfinite(b_lo) and np.isfinite(b_hi)
    ci = f" [{b_lo:.2f}, {b_hi:.2f}]" if has_ci else f" ({_ci_reason(best)})"
    head = f"At {what} level (n = {int(best['n'])}), "
    if b_v <= 0:
        return (
            head + f"no metric agrees with the listeners: even the best, {label(best['metric'])}, "
            f"has {sym} {b_v:.2f}{ci} in its better-is-better direction, i.e. it orders the "
            f"{'files' if level == LEVEL_FILE else 'conditions'} against the listeners"
        )
    if second is None:
        text = head + f"{label(best['metric'])} is the only metric: {sym} {b_v:.2f}{ci}"
    else:
        s_v, s_lo, s_hi = _point(second, method)
        s_name = label(second["metric"])
        if has_ci and np.isfinite(s_hi) and b_lo > s_hi:
            text = (
                head + f"{label(best['metric'])} agrees best with the listeners: {sym} "
                f"{b_v:.2f}{ci}, its CI above the runner-up {s_name}'s ({s_v:.2f} "
                f"[{s_lo:.2f}, {s_hi:.2f}])"
            )
        elif has_ci and np.isfinite(s_lo) and np.isfinite(s_hi):
            text = (
                head + f"{label(best['metric'])} ranks first: {sym} {b_v:.2f}{ci}; the "
                f"runner-up {s_name} ({s_v:.2f} [{s_lo:.2f}, {s_hi:.2f}]): the CIs overlap, "
                "so this test does not separate the two"
            )
        else:
            text = (
                head + f"{label(best['metric'])} ranks first by its point value, {sym} "
                f"{b_v:.2f}{ci}, ahead of {s_name} ({s_v:.2f}); without CIs this test "
                "cannot say that either leads"
            )
    if has_ci and b_lo <= 0:
        text += " (the first's CI includes 0: no reliable agreement)"
    return text


def _ceiling_sentence(agreement: pd.DataFrame, level: str, method: str) -> str:
    ceil = agreement[(agreement["level"] == level) & (agreement["metric"] == CEILING)]
    if ceil.empty:
        return ""
    value = float(ceil[method].iloc[0])
    if np.isfinite(value):
        return f"; the listener ceiling is {value:.2f}"
    note = _note(ceil.iloc[0])
    return f"; the listener ceiling is unknown ({note})" if note else ""


def _neural_vs_classic(rk: pd.DataFrame, classic: Sequence[str], label: Any, method: str,
                       what: str) -> list[str]:  # fmt: skip
    neural = rk[~rk["metric"].isin(classic)]
    clas = rk[rk["metric"].isin(classic)]
    if neural.empty or clas.empty:
        return []
    n0, c0 = neural.iloc[0], clas.iloc[0]
    (nv, n_lo, n_hi), (cv, c_lo, c_hi) = _point(n0, method), _point(c0, method)
    if all(np.isfinite(v) for v in (n_lo, n_hi, c_lo, c_hi)):
        overlap = n_lo <= c_hi and c_lo <= n_hi
        verdict = "not separable from" if overlap else ("better than" if nv > cv else "worse than")
        tail = ""
    else:
        verdict = "ahead of" if nv > cv else "behind"
        tail = f" by point value only ({_ci_reason(n0)}; not a demonstrated difference)"
    return [
        f"At {what} level the best neural metric, {label(n0['metric'])} ({nv:.2f}), is "
        f"{verdict} the best classic metric, {label(c0['metric'])} ({cv:.2f}){tail}."
    ]


def agreement_findings(
    agreement: pd.DataFrame, label: Any, *, classic: Sequence[str], method: str = "pearson"
) -> list[str]:
    """Key findings in words: which metric ranks first and whether CIs support its lead over
    the runner-up, the ceiling (or why it is unknown), the best neural vs the best classic.

    ``label`` maps a metric name to its display label; ``classic`` names the non-neural
    metrics (PESQ, STOI, ...). No metric is called the best unless its CI lies above the
    runner-up's; with no CIs (a small study) the sentence says so.
    """
    out = []
    for level in LEVELS:
        rk = ranked(agreement, level, method)
        rk = rk[rk[method].notna()]
        if rk.empty:
            continue
        best, second = rk.iloc[0], rk.iloc[1] if len(rk) > 1 else None
        text = _lead_sentence(best, second, level, label, method)
        out.append(text + _ceiling_sentence(agreement, level, method) + ".")
        what = "file" if level == LEVEL_FILE else "condition (system)"
        out += _neural_vs_classic(rk, classic, label, method, what)
    return out
