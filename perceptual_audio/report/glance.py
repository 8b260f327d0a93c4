"""At a glance, the report's first section: which measure tracks perceived quality here, and
how sure that is.

One table ranks the headline measures (the catalogue's ``headline`` flag) by the best evidence
the study has:

- with listening-test ratings, their agreement with the listeners (``listener_agreement.csv``:
  Pearson r at file and at condition level, 95% bootstrap CIs over stimuli), with the
  listeners' own split-half ceiling as the last row;
- without ratings, their agreement with the *reference panel*: the metrics the catalogue marks
  as validated against listeners (``validated_by``: ViSQOL audio, Zimtohrli, ...). A measure's
  agreement is the Spearman correlation of its (oriented) values with the panel's mean rank
  percentile over the pairs; a panel member is compared with the other members only. The 95% CI
  is the cluster bootstrap over clean recordings of :func:`perceptual_audio.stats.correlate`.
  Without a panel the headline classic measures (PESQ-WB, STOI, SI-SDR) stand in, and the
  table says so.

Two or three sentences state the verdict and its uncertainty.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from perceptual_audio import listening, stats
from perceptual_audio.report.elements import Cell, Paragraph, Section, Table
from perceptual_audio.report.findings import and_list
from perceptual_audio.report.loading import StudyResults
from perceptual_audio.report.vocabulary import (
    fmt_n,
    headline_metrics,
    judge_metrics,
    metric_info,
)

logger = logging.getLogger(__name__)

SECTION_TITLE = "At a glance"
#: Role of a panel member in the table.
ROLE_PANEL = "panel"
ROLE_WORDS = {"classic": "classic", "neural": "neural", "reference": "reference perceptual"}
#: Bootstrap replicates of the panel agreement's CI (as stage 3's correlations).
N_BOOTSTRAP = 1000


@dataclass(frozen=True)
class GlanceRow:
    """One measure's evidence: oriented coefficient (+ = agrees), 95% CI, n and groups."""

    metric: str
    value: float
    ci_low: float
    ci_high: float
    n: float
    n_groups: float
    #: Listener case: the condition-level (value, ci_low, ci_high, n); else None.
    condition: tuple[float, float, float, float] | None = None

    @property
    def has_ci(self) -> bool:
        return not (math.isnan(self.ci_low) or math.isnan(self.ci_high))

    def short(self, symbol: str) -> str:
        ci = f" [{self.ci_low:.2f}, {self.ci_high:.2f}]" if self.has_ci else " (no CI)"
        return f"{symbol} = {self.value:.2f}{ci}"


def role(metric: str) -> str:
    """``reference panel``, ``classic``, ``neural`` or ``reference perceptual``."""
    spec = metric_info(metric)
    if spec.validated:
        return ROLE_PANEL
    return ROLE_WORDS.get(spec.kind, spec.kind)


def _has_values(results: StudyResults, metric: str) -> bool:
    return metric in results.pairs and bool(
        pd.to_numeric(results.pairs[metric], errors="coerce")
        .replace([np.inf, -np.inf], np.nan)
        .notna()
        .any()
    )


def glance_measures(results: StudyResults) -> list[str]:
    """The headline measures the study computed (with at least one value)."""
    return [m for m in headline_metrics(results.metrics) if _has_values(results, m)]


def _oriented(pairs: pd.DataFrame, metric: str) -> np.ndarray:
    v = pd.to_numeric(pairs[metric], errors="coerce").replace([np.inf, -np.inf], np.nan)
    v = v.to_numpy(float)
    return v if metric_info(metric).higher_is_better else -v


def panel_score(pairs: pd.DataFrame, panel: list[str]) -> np.ndarray:
    """Per pair, the panel's mean rank percentile (1 = the most clean-like pair under each
    member); NaN where no member has a value."""
    pct = [pd.Series(_oriented(pairs, m)).rank(pct=True).to_numpy(float) for m in panel]
    stack = np.vstack(pct)
    with np.errstate(invalid="ignore"):
        counts = np.isfinite(stack).sum(axis=0)
        total = np.nansum(stack, axis=0)
    return np.where(counts > 0, total / np.maximum(counts, 1), np.nan)


def panel_agreement(
    results: StudyResults, metric: str, panel: list[str], *, n_bootstrap: int = N_BOOTSTRAP
) -> GlanceRow | None:
    """Spearman of ``metric`` (oriented) with the mean rank of the panel members other than it,
    with the cluster-bootstrap 95% CI over recordings; None when no other member exists."""

    others = [p for p in panel if p != metric]
    if not others:
        return None
    pairs = results.pairs
    if "hidden_reference" in pairs:
        pairs = pairs[pairs["hidden_reference"].astype(str).str.lower() != "true"]
    r = stats.correlate(
        _oriented(pairs, metric),
        panel_score(pairs, others),
        pairs["reference_path"].to_numpy(object),
        n_bootstrap=n_bootstrap,
        seed=stats.stable_seed("at-a-glance", metric, *others),
    )
    return GlanceRow(
        metric,
        float(r["spearman"]),
        float(r["spearman_ci_low"]),
        float(r["spearman_ci_high"]),
        float(r["n"]),
        float(r["n_recordings"]),
    )


def _sorted(rows: list[GlanceRow]) -> list[GlanceRow]:
    return sorted(rows, key=lambda r: -r.value if not math.isnan(r.value) else math.inf)


def _ci2(value: float, lo: float, hi: float) -> Cell:
    """``0.57 [0.40, 0.76]``: two decimals, enough for coefficients whose CIs span tenths."""
    if math.isnan(value):
        return Cell("n/a", math.nan)
    if math.isnan(lo) or math.isnan(hi):
        return Cell(f"{value:.2f}", value)
    return Cell(f"{value:.2f} [{lo:.2f}, {hi:.2f}]", value)


def _ci(row: GlanceRow) -> Cell:
    return _ci2(row.value, row.ci_low, row.ci_high)


def _separation(a: GlanceRow, b: GlanceRow) -> str:
    """``ahead of`` / ``behind`` when the CIs do not overlap, else ``not separable from``."""
    if a.has_ci and b.has_ci and (a.ci_low > b.ci_high or b.ci_low > a.ci_high):
        return "ahead of" if a.value > b.value else "behind"
    if not (a.has_ci and b.has_ci):
        return "(without CIs) not separable from"
    return "not separable from"


def _neural_vs_classic(rows: list[GlanceRow], symbol: str) -> str:
    neural = [r for r in rows if metric_info(r.metric).neural and not math.isnan(r.value)]
    classic = [
        r for r in rows if metric_info(r.metric).kind == "classic" and not math.isnan(r.value)
    ]
    if not neural or not classic:
        return ""
    n, c = neural[0], classic[0]
    return (
        f"The best neural measure, {metric_info(n.metric).label} ({n.short(symbol)}), is "
        f"{_separation(n, c)} the best classic one, {metric_info(c.metric).label} "
        f"({c.short(symbol)})."
    )


def panel_glance(results: StudyResults) -> tuple[Table, list[str]]:
    """(table, verdict sentences) without ratings: agreement with the reference panel."""

    panel = judge_metrics(results.metrics, lambda m: _has_values(results, m))
    is_panel = any(metric_info(p).validated for p in panel)
    measures = list(dict.fromkeys([*panel, *glance_measures(results)]))
    rows = [r for m in measures if (r := panel_agreement(results, m, panel)) is not None]
    rows = _sorted(rows)
    names = and_list([metric_info(p).label for p in panel]) if panel else "none"
    table_rows = [
        [
            Cell(str(i), i),
            metric_info(r.metric).marked_label,
            role(r.metric) if is_panel or r.metric not in panel else "stand-in judge",
            _ci(r),
            Cell(f"{fmt_n(r.n)} ({fmt_n(r.n_groups)})", r.n),
        ]
        for i, r in enumerate(rows, 1)
    ]
    # The verdict above names the judges (their sources are in Setup); the caption stays one
    # line so that the table fits the first screen at 800 px too.
    what = (
        "the reference panel"
        if is_panel
        else f"the stand-in judges ({names}: no validated metric was computed)"
    )
    table = Table(
        f"Spearman ρ with the mean rank of {what} (a member: of the others), 95% CI over "
        "recordings",
        ["Rank", "Measure", "Role", "Agreement ρ [95% CI]", "Pairs (recordings)"],
        table_rows,
    )
    if not rows:
        return table, [
            "No measure could be compared with a judge: the study computed no reference-panel "
            "metric and fewer than two classic measures with values."
        ]
    top, verdict = rows[0], []
    n_rec = int(top.n_groups) if not math.isnan(top.n_groups) else 0
    n_max = max(r.n for r in rows)
    of = f" of {fmt_n(n_max)}" if top.n < n_max else ""  # a metric undefined on some pairs
    verdict.append(
        f"Without listening-test ratings, the best evidence here is agreement with {names}"
        + ("" if is_panel else " (not validated against listeners)")
        + f": {metric_info(top.metric).label} agrees most ({top.short('ρ')}, "
        f"{fmt_n(top.n)}{of} pairs from {n_rec} recordings)."
    )
    text = _neural_vs_classic(rows, "ρ")
    if text:
        verdict.append(text)
    if n_rec < stats.MIN_RECORDINGS_FOR_CI:
        verdict.append(
            f"With {n_rec} recordings (fewer than {stats.MIN_RECORDINGS_FOR_CI}) there are no "
            "confidence intervals: the ranking is not reliable."
        )
    elif not is_panel:
        verdict.append(
            "Compute ViSQOL audio and Zimtohrli (calculate_metrics.py --metrics reference) "
            "for a reference panel validated against listeners."
        )
    return table, verdict


def _listener_row(agreement: pd.DataFrame, metric: str, level: str) -> GlanceRow | None:

    hit = agreement[(agreement["metric"] == metric) & (agreement["level"] == level)]
    if hit.empty:
        return None
    r = hit.iloc[0]
    value = listening.oriented(metric, float(r["pearson"]))
    lo, hi = listening.oriented_ci(metric, float(r["pearson_ci_low"]), float(r["pearson_ci_high"]))
    return GlanceRow(metric, value, lo, hi, float(r["n"]), math.nan)


def listener_glance(results: StudyResults) -> tuple[Table, list[str]]:
    """(table, verdict sentences) with ratings: agreement with the listeners."""

    agreement = results.listening
    ranked = listening.ranked(agreement, listening.LEVEL_FILE)
    ranked = [m for m in ranked["metric"] if m in results.metrics]
    measures = glance_measures(results)
    # The measure the listeners favour is shown even when it is not a headline one.
    if ranked and ranked[0] not in measures:
        measures.append(ranked[0])
    rows = []
    for m in measures:
        row = _listener_row(agreement, m, listening.LEVEL_FILE)
        if row is None:
            continue
        cond = _listener_row(agreement, m, listening.LEVEL_CONDITION)
        rows.append(
            GlanceRow(
                m, row.value, row.ci_low, row.ci_high, row.n, math.nan,
                None if cond is None else (cond.value, cond.ci_low, cond.ci_high, cond.n),
            )
        )  # fmt: skip
    rows = _sorted(rows)
    ceiling = {
        lv: _listener_row(agreement, listening.CEILING, lv)
        for lv in (listening.LEVEL_FILE, listening.LEVEL_CONDITION)
    }
    table_rows = [_listener_table_row(i, r) for i, r in enumerate(rows, 1)]
    file_c, cond_c = ceiling[listening.LEVEL_FILE], ceiling[listening.LEVEL_CONDITION]
    if file_c is not None:
        table_rows.append(
            _listener_table_row(
                None,
                GlanceRow(
                    listening.CEILING, file_c.value, file_c.ci_low, file_c.ci_high, file_c.n,
                    math.nan,
                    None if cond_c is None
                    else (cond_c.value, cond_c.ci_low, cond_c.ci_high, cond_c.n),
                ),
            )
        )  # fmt: skip
    n_cond = sorted({int(r.condition[3]) for r in rows if r.condition and r.condition[3] > 0})
    conditions = f"{n_cond[0]} conditions" if len(n_cond) == 1 else "Conditions"
    table = Table(
        "Headline measures by agreement with the listeners' mean ratings: Pearson r, + = "
        "agrees, 95% bootstrap CI over stimuli; last: the listeners' split-half ceiling",
        ["Rank", "Measure", "Role", "Files: r [95% CI]", "Files", f"{conditions}: r"],
        table_rows,
    )
    return table, _listener_verdict(rows, file_c)


def _listener_table_row(rank: int | None, r: GlanceRow) -> list[Any]:

    ceiling = r.metric == listening.CEILING
    cond = r.condition
    return [
        Cell("" if rank is None else str(rank), rank if rank is not None else math.inf),
        "Listener ceiling (split-half)" if ceiling else metric_info(r.metric).marked_label,
        "listeners" if ceiling else role(r.metric),
        _ci(r),
        Cell(fmt_n(r.n), r.n),
        Cell("n/a", math.nan) if cond is None else _ci2(*cond[:3]),
    ]


def _listener_verdict(rows: list[GlanceRow], ceiling: GlanceRow | None) -> list[str]:
    valid = [r for r in rows if not math.isnan(r.value)]
    if not valid:
        return ["No headline measure has a defined agreement with the listeners."]
    top = valid[0]
    # A winner only where the CIs say so (the key findings' rule, listening.facts).
    lead = len(valid) == 1 or _separation(top, valid[1]) == "ahead of"
    claim = "agrees best with" if lead else "ranks first in agreement with"
    text = (
        f"{metric_info(top.metric).label} {claim} the listeners ({top.short('r')}, "
        f"{fmt_n(top.n)} files)"
    )
    if ceiling is not None and not math.isnan(ceiling.value):
        text += f", against a listener ceiling of {ceiling.value:.2f}"
    if top.value <= 0:
        text = (
            "No headline measure agrees with the listeners: even the best, "
            f"{metric_info(top.metric).label} ({top.short('r')}), orders the files against them"
        )
    if len(valid) > 1:
        second = valid[1]
        sep = _separation(top, second)
        text += (
            f"; it is {sep} the runner-up {metric_info(second.metric).label} ({second.short('r')})"
        )
    out = [text + "."]
    versus = _neural_vs_classic(valid, "r")
    if versus:
        out.append(versus)
    against = [metric_info(r.metric).label for r in valid if r.has_ci and r.ci_high < 0]
    if against:
        verb = "runs" if len(against) == 1 else "run"
        out.append(f"{and_list(against)} {verb} against the listeners (95% CI below 0).")
    return out


def glance_section(results: StudyResults) -> Section:
    """The At-a-glance section: the ranking table and the verdict."""
    if results.listening is not None and not results.listening.empty:
        table, verdict = listener_glance(results)
    else:
        table, verdict = panel_glance(results)
    return Section(SECTION_TITLE, [Paragraph(" ".join(verdict), lead=True), table])


def panel_sources_table(results: StudyResults) -> Table | None:
    """The reference panel's members in this study and where each was validated against
    listeners (the catalogue's ``validated_by``); None without a member."""
    panel = [m for m in results.metrics if metric_info(m).validated]
    if not panel:
        return None
    return Table(
        "The reference panel: metrics validated against listeners (catalogue validated_by)",
        ["Metric", "Validated by"],
        [[metric_info(m).marked_label, metric_info(m).validated_by] for m in panel],
    )
