"""Facts for the report: the metrics' rates, orientation and ranking against the listeners."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


from perceptual_audio.listening.table import (
    CEILING,
    LEVEL_FILE,
    LEVELS,
)

logger = logging.getLogger(__name__)


# Facts for the report
# =============================================================================================
def metric_rate_hz(metric: str, study_rate: int, *, pesq_nb_rate: int = 16000) -> int:
    """Sample rate (Hz) the metric computes at (its audio resampled from ``study_rate``): the
    catalogue's native rate (``metrics.describe``); the study's own rate for a metric without
    one (SI-SDR); PESQ-NB at ``--pesq-nb-rate``."""
    from perceptual_audio import metrics

    if metric == "pesq_nb":
        return int(pesq_nb_rate)
    rate = metrics.describe(metric).sample_rate
    return int(study_rate if rate is None else rate)


def oriented(metric: str, value: float) -> float:
    """A coefficient turned so that larger = agrees more with listeners (distances flip)."""
    from perceptual_audio.stats import higher_is_better

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


def agreement_findings(
    agreement: pd.DataFrame, label: Any, *, classic: Sequence[str], method: str = "pearson"
) -> list[str]:
    """Key findings in words: best metrics, whether their CIs separate, neural vs classic.

    ``label`` maps a metric name to its display label; ``classic`` names the non-neural
    metrics (PESQ, STOI, ...).
    """
    out = []
    for level in LEVELS:
        rk = ranked(agreement, level, method)
        rk = rk[rk[method].notna()]
        if rk.empty:
            continue
        ceil = agreement[(agreement["level"] == level) & (agreement["metric"] == CEILING)]
        ceil_v = float(ceil[method].iloc[0]) if not ceil.empty else math.nan
        what = "file" if level == LEVEL_FILE else "condition (system)"
        best, second = rk.iloc[0], rk.iloc[1] if len(rk) > 1 else None
        b_v = oriented(best["metric"], best[method])
        b_lo, b_hi = oriented_ci(
            best["metric"], best[f"{method}_ci_low"], best[f"{method}_ci_high"]
        )
        sym = {"pearson": "Pearson r", "spearman": "Spearman ρ", "kendall": "Kendall τ"}[method]
        ci = f" [{b_lo:.2f}, {b_hi:.2f}]" if np.isfinite(b_lo) else " (no CI)"
        if b_v > 0:
            text = (
                f"At {what} level (n = {int(best['n'])}), {label(best['metric'])} agrees best "
                f"with the listeners: {sym} {b_v:.2f}{ci}"
            )
        else:
            text = (
                f"At {what} level (n = {int(best['n'])}), no metric agrees with the listeners: "
                f"even the best, {label(best['metric'])}, has {sym} {b_v:.2f}{ci} in its "
                "better-is-better direction, i.e. it orders the "
                f"{'files' if level == LEVEL_FILE else 'conditions'} against the listeners"
            )
        if b_v > 0 and np.isfinite(b_lo) and b_lo <= 0:
            text += " (its CI includes 0: no reliable agreement)"
        if np.isfinite(ceil_v):
            text += f", against a listener ceiling of {ceil_v:.2f}"
        if second is not None:
            s_v = oriented(second["metric"], second[method])
            s_lo, s_hi = oriented_ci(
                second["metric"], second[f"{method}_ci_low"], second[f"{method}_ci_high"]
            )
            if np.isfinite(b_lo) and np.isfinite(s_hi):
                sep = "do not overlap" if b_lo > s_hi else "overlap"
                text += (
                    f"; the runner-up {label(second['metric'])} ({s_v:.2f} "
                    f"[{s_lo:.2f}, {s_hi:.2f}]): the CIs {sep}"
                )
                if sep == "overlap":
                    text += ", so the two are not separated by this test"
            else:
                text += f"; runner-up {label(second['metric'])} ({s_v:.2f})"
        out.append(text + ".")
        neural = rk[~rk["metric"].isin(classic)]
        clas = rk[rk["metric"].isin(classic)]
        if not neural.empty and not clas.empty:
            n0, c0 = neural.iloc[0], clas.iloc[0]
            nv, cv = oriented(n0["metric"], n0[method]), oriented(c0["metric"], c0[method])
            n_lo, n_hi = oriented_ci(n0["metric"], n0[f"{method}_ci_low"], n0[f"{method}_ci_high"])
            c_lo, c_hi = oriented_ci(c0["metric"], c0[f"{method}_ci_low"], c0[f"{method}_ci_high"])
            verdict = "better than" if nv > cv else "worse than"
            if all(np.isfinite(v) for v in (n_lo, n_hi, c_lo, c_hi)):
                if n_lo <= c_hi and c_lo <= n_hi:
                    verdict = "not separable from"
            out.append(
                f"At {what} level the best neural metric, {label(n0['metric'])} ({nv:.2f}), is "
                f"{verdict} the best classic metric, {label(c0['metric'])} ({cv:.2f})."
            )
    return out
