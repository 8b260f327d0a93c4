"""Numbers into words: correlations, agreement classes, the findings of the report."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from perceptual_audio.report.elements import (
    Cell,
    Table,
    ci_cell,
)
from perceptual_audio.report.loading import (
    StudyResults,
)
from perceptual_audio.report.vocabulary import (
    METHOD_NAME,
    METHOD_SYMBOL,
    PRIMARY_METHOD,
    SCOPE_ALL,
    STRENGTH_WORDS,
    fmt,
    fmt_n,
    judge_metrics,
    metric_info,
    primary_neural_metrics,
)

logger = logging.getLogger(__name__)

# =============================================================================================
# Numbers into words
# =============================================================================================


def strength_word(r: float) -> str:
    """``0.93`` -> ``very strong``; NaN -> ``undefined``."""
    if r is None or math.isnan(r):
        return "undefined"
    for threshold, word in STRENGTH_WORDS:
        if abs(r) >= threshold:
            return word
    return "negligible"


@dataclass(frozen=True)
class Correlation:
    """One correlation of ``correlations.csv``: value, 95% CI, p and n for one method."""

    scope: str
    metric_x: str
    metric_y: str
    method: str
    r: float
    ci_low: float
    ci_high: float
    p: float
    n: float
    #: Clean recordings behind the pairs (the bootstrap resamples these; p treats pairs as
    #: independent, so the recordings are the sample size that matters for generalising).
    n_recordings: float = math.nan

    def _n_text(self) -> str:
        n = f"n = {fmt_n(self.n)}"
        if not math.isnan(self.n_recordings):
            n += f" pairs from {fmt_n(self.n_recordings)} recordings"
        return n

    def describe(self, *, with_n: bool = True) -> str:
        """``Spearman ρ = 0.82 (95% CI 0.75 to 0.88, n = 120 pairs from 10 recordings)``."""
        ci = (
            "95% CI not available"
            if math.isnan(self.ci_low) or math.isnan(self.ci_high)
            else f"95% CI {fmt(self.ci_low, 2)} to {fmt(self.ci_high, 2)}"
        )
        n = f", {self._n_text()}" if with_n else ""
        return (
            f"{METHOD_NAME[self.method]} {METHOD_SYMBOL[self.method]} = {fmt(self.r, 2)} ({ci}{n})"
        )

    def short(self) -> str:
        """``ρ = 0.82 [0.75, 0.88], n = 120`` (the method named elsewhere)."""
        ci = (
            ""
            if math.isnan(self.ci_low) or math.isnan(self.ci_high)
            else f" [{fmt(self.ci_low, 2)}, {fmt(self.ci_high, 2)}]"
        )
        return f"{METHOD_SYMBOL[self.method]} = {fmt(self.r, 2)}{ci}, n = {fmt_n(self.n)}"


def judges(results: StudyResults) -> list[str]:
    """The study's judges (:func:`judge_metrics`): the reference panel where computed, else the
    headline classic measures; only columns with at least one value."""
    return judge_metrics(results.metrics, lambda m: bool(results.pairs[m].notna().any()))


def lookup_correlation(
    correlations: pd.DataFrame, scope: str, a: str, b: str, method: str = PRIMARY_METHOD
) -> Correlation | None:
    """The correlation of metrics ``a`` and ``b`` in ``scope`` (either order), or None."""
    if correlations.empty or f"{method}_r" not in correlations.columns:
        return None
    c = correlations
    hit = c[
        (c["scope"] == scope)
        & (
            ((c["metric_x"] == a) & (c["metric_y"] == b))
            | ((c["metric_x"] == b) & (c["metric_y"] == a))
        )
    ]
    if hit.empty:
        return None
    row = hit.iloc[0]

    def get(col: str) -> float:
        return float(row[col]) if col in row.index and pd.notna(row[col]) else math.nan

    n = get(f"{method}_n")
    if math.isnan(n):
        n = get("n")
    return Correlation(
        scope,
        a,
        b,
        method,
        get(f"{method}_r"),
        get(f"{method}_ci_low"),
        get(f"{method}_ci_high"),
        get(f"{method}_p"),
        n,
        get("n_recordings"),
    )


def agreement(metric: str, corr: Correlation) -> tuple[float, float, float]:
    """(value, ci_low, ci_high) signed so that positive means "the two metrics agree".

    A similarity and a distance (lower = closer to clean) agree when their correlation is
    negative; two similarities, or two distances, when it is positive. ``metric`` is one of
    the correlation's two metrics (another name is taken against a similarity).
    """
    if metric == corr.metric_x:
        other_hib = metric_info(corr.metric_y).higher_is_better
    elif metric == corr.metric_y:
        other_hib = metric_info(corr.metric_x).higher_is_better
    else:  # not one of the two: a similarity reference, as PESQ
        other_hib = True
    if metric_info(metric).higher_is_better == other_hib:
        return corr.r, corr.ci_low, corr.ci_high
    return -corr.r, -corr.ci_high, -corr.ci_low


def classify_agreement(metric: str, corr: Correlation | None) -> str:
    """``agrees`` (CI above 0), ``opposite`` (CI below 0), ``uncertain`` (CI spans 0 or no CI),
    ``undefined`` (no value: too few pairs or a constant metric)."""
    if corr is None or math.isnan(corr.r):
        return "undefined"
    value, lo, hi = agreement(metric, corr)
    if not (math.isnan(lo) or math.isnan(hi)):
        if lo > 0:
            return "agrees"
        if hi < 0:
            return "opposite"
    return "uncertain"


def _sign_note(metric: str, reference: str = "pesq_wb") -> str:
    if metric_info(metric).higher_is_better == metric_info(reference).higher_is_better:
        return ""
    if not metric_info(metric).higher_is_better:
        return " (a distance: negative means agreement)"
    return " (against a distance: negative means agreement)"


def correlation_findings(results: StudyResults) -> list[str]:
    """Plain-word findings: which neural metric agrees best with each judge (:func:`judges`:
    the reference panel, else PESQ-WB and STOI), how sure, and whether the judges agree."""
    corr = results.correlations
    out: list[str] = []
    if corr.empty:
        return ["No correlations were computed (correlations.csv is missing or empty)."]
    neural = results.neural_metrics
    if not neural:
        return [
            "No neural metric is present in pair_metrics.csv, so no neural metric can be "
            "compared with the reference panel or with PESQ-WB and STOI."
        ]
    best_for: dict[str, str] = {}
    refs = judges(results)
    for ref in refs:
        ranked = []
        for m in neural:
            c = lookup_correlation(corr, SCOPE_ALL, m, ref)
            if c is not None and not math.isnan(c.r):
                ranked.append((agreement(m, c)[0], m, c))
        ref_label = metric_info(ref).label
        if not ranked:
            out.append(
                f"No neural metric has a defined correlation with {ref_label} over all "
                "pairs (too few pairs, or constant values)."
            )
            continue
        ranked.sort(key=lambda t: -t[0])
        value, best, c = ranked[0]
        best_for[ref] = best
        word = strength_word(value) if value > 0 else "no (or reversed)"
        sentence = (
            f"Against {ref_label}, the neural metric that agrees best is "
            f"{metric_info(best).label}{_sign_note(best, ref)}: {c.describe()}, "
            f"{word} agreement over all pairs."
        )
        # The runner-up comes from another model when there is one: "OpenL3 frame cosine beats
        # OpenL3 pooled cosine" says little about which model to use.
        others = [t for t in ranked[1:] if metric_info(t[1]).model != metric_info(best).model]
        if len(ranked) > 1:
            v2, second, c2 = (others or ranked[1:])[0]
            _, lo1, hi1 = agreement(best, c)
            _, lo2, hi2 = agreement(second, c2)
            if any(math.isnan(x) for x in (lo1, hi1, lo2, hi2)):
                sure = "without confidence intervals the lead cannot be judged"
            elif lo1 > hi2:
                sure = "the confidence intervals do not overlap, so the lead is clear"
            else:
                sure = "the confidence intervals overlap, so the data do not separate the two"
            sentence += (
                f" Runner-up: {metric_info(second).label}, with "
                f"{c2.describe(with_n=False)}; {sure}."
            )
        out.append(sentence)
    labels = [metric_info(r).label for r in best_for]
    if len(best_for) >= 2 and len(set(best_for.values())) == 1:
        only = metric_info(next(iter(best_for.values()))).label
        every = "both " if len(labels) == 2 else "each of "
        out.append(f"The same neural metric, {only}, agrees best with {every}{and_list(labels)}.")
    elif len(best_for) >= 2:
        out.append(
            "The judges favour different neural metrics: "
            + "; ".join(
                f"{metric_info(b).label} tracks {metric_info(r).label} best"
                for r, b in best_for.items()
            )
            + "."
        )
    if len(refs) >= 2:
        c = lookup_correlation(corr, SCOPE_ALL, refs[0], refs[1])
        if c is not None:
            la, lb = (metric_info(r).label for r in refs[:2])
            out.append(f"For comparison, {la} and {lb} agree with each other at {c.describe()}.")
    return out


def reference_tracking_findings(results: StudyResults) -> list[str]:
    """Per headline neural metric: the reference metric (classic or reference perceptual) it
    tracks best over all pairs, by |Spearman| in the agreeing direction, with its CI."""
    corr = results.correlations
    refs = results.reference_metrics
    if corr.empty or not refs:
        return []
    out = []
    for m in primary_neural_metrics(results.metrics) or results.neural_metrics:
        ranked = []
        for ref in refs:
            c = lookup_correlation(corr, SCOPE_ALL, m, ref)
            if c is not None and not math.isnan(c.r):
                # Agreement: both similarities (or both distances) correlate positively.
                same = metric_info(m).higher_is_better == metric_info(ref).higher_is_better
                ranked.append((c.r if same else -c.r, ref, c))
        if not ranked:
            continue
        ranked.sort(key=lambda t: -t[0])
        value, best, c = ranked[0]
        kind = "reference perceptual" if metric_info(best).kind == "reference" else "classic"
        word = strength_word(value) if value > 0 else "no (or reversed)"
        sentence = (
            f"{metric_info(m).label} tracks the {kind} metric "
            f"{metric_info(best).marked_label} best of the {len(ranked)} references: "
            f"{c.describe()}, {word} agreement."
        )
        perceptual = [t for t in ranked if metric_info(t[1]).kind == "reference"]
        if perceptual and perceptual[0][1] != best:
            v2, ref2, c2 = perceptual[0]
            sentence += (
                f" Of the reference perceptual metrics, it tracks "
                f"{metric_info(ref2).marked_label} best: {c2.describe(with_n=False)}."
            )
        out.append(sentence)
    return out


def rate_notes(results: StudyResults) -> list[str]:
    """Where the study's sample rate hides content that a metric running at a higher rate
    (ViSQOL audio, Zimtohrli: 48 kHz) would judge."""
    recorded = results.run.get("parameters", {}).get("metrics", {}).get("study_sample_rate")
    rates = recorded if isinstance(recorded, list) else [recorded] if recorded else []
    if not rates:
        return []
    study = min(int(r) for r in rates)
    above = [
        m
        for m in results.metrics
        if (metric_info(m).sample_rate or 0) > study and metric_info(m).kind == "reference"
    ]
    if not above:
        return []
    names = ", ".join(sorted({metric_info(m).label for m in above}))
    top = max(metric_info(m).sample_rate or 0 for m in above)
    return [
        f"The study's audio is at {study / 1000:g} kHz, so it holds nothing above "
        f"{study / 2000:g} kHz; {names} run at up to {top / 1000:g} kHz on the audio "
        f"resampled up and would judge content up to {top / 2000:g} kHz that this study "
        f"removed from reference and degraded alike (rerun stage 1 with --sr {top} to "
        "include it)."
    ]


def family_findings(results: StudyResults) -> list[str]:
    """Per degradation family: which headline neural metrics agree with each judge, which
    are uncertain and which run the opposite way."""
    if len(results.families) < 2:
        fam = results.families[0] if results.families else "none"
        return [
            f"Only one degradation family ({fam}) is present, so the per-family breakdown "
            "equals the overall result."
        ]
    out = []
    primary = primary_neural_metrics(results.metrics) or results.neural_metrics
    disagreements = []
    for fam in results.families:
        for ref in judges(results):
            groups: dict[str, list[str]] = {
                "agrees": [],
                "uncertain": [],
                "opposite": [],
                "undefined": [],
            }
            for m in primary:
                c = lookup_correlation(results.correlations, fam, m, ref)
                kind = classify_agreement(m, c)
                text = metric_info(m).label + (
                    "" if c is None or math.isnan(c.r) else f" ({c.short()})"
                )
                groups[kind].append(text)
                if kind == "opposite":
                    disagreements.append(
                        f"{metric_info(m).label} vs {metric_info(ref).label} on {fam} ({c.short()})"
                    )
            parts = []
            if groups["agrees"]:
                parts.append("agree: " + "; ".join(groups["agrees"]))
            if groups["uncertain"]:
                parts.append(
                    "uncertain (the 95% CI spans no agreement): " + "; ".join(groups["uncertain"])
                )
            if groups["opposite"]:
                parts.append("run the opposite way: " + "; ".join(groups["opposite"]))
            if groups["undefined"]:
                parts.append(
                    "undefined (too few pairs or a constant metric): "
                    + ", ".join(groups["undefined"])
                )
            out.append(
                f"On {fam}, against {metric_info(ref).label} (Spearman, 95% CI): "
                + " | ".join(parts)
                + "."
            )
    if disagreements:
        out.append(
            "Where the neural metrics disagree with the classic ones (confidence interval "
            "entirely on the wrong side): " + "; ".join(disagreements) + "."
        )
    else:
        out.append(
            "No headline neural metric runs clearly the opposite way to "
            + and_list([metric_info(r).label for r in judges(results)] or ["the judges"])
            + " within any degradation family."
        )
    return out


def family_agreement_table(results: StudyResults) -> Table:
    """Headline neural metrics against each judge within each family: Spearman with CI
    and the verdict of :func:`classify_agreement`."""
    refs = judges(results)
    primary = primary_neural_metrics(results.metrics) or results.neural_metrics
    rows = []
    for fam in results.families:
        for m in primary:
            row: list[Any] = [fam, metric_info(m).label]
            for ref in refs:
                c = lookup_correlation(results.correlations, fam, m, ref)
                row.append(
                    Cell("n/a", math.nan) if c is None else ci_cell(c.r, c.ci_low, c.ci_high)
                )
                row.append(classify_agreement(m, c))
            rows.append(row)
    cols = ["Family", "Neural metric"]
    for ref in refs:
        cols += [f"Spearman ρ vs {metric_info(ref).label} [95% CI]", f"vs {metric_info(ref).label}"]
    return Table(
        "Agreement within each degradation family (agrees: the CI is entirely on the "
        "agreeing side; a distance agrees when negative)",
        cols,
        rows,
    )


def and_list(names: Any) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def failure_summary(results: StudyResults) -> tuple[list[str], list[list[Any]], list[list[Any]]]:
    """Failures per metric and the failed pairs.

    Returns
    -------
    sentences : list of str
    per_metric : list of rows ``[metric, n failed, n pairs, reasons]``
    per_pair : list of rows ``[degraded_path, metric, reason]`` (first 200)
    """
    pairs = results.pairs
    per_metric, per_pair = [], []
    total = 0
    for m in results.metrics:
        status_col = _status_column(pairs, m)
        missing = pairs[m].isna()
        if status_col is not None:
            bad = missing | ~pairs[status_col].isin(["ok", ""])
            reasons = pairs.loc[bad, status_col].replace("", "missing value (no reason given)")
        else:
            bad = missing
            reasons = pd.Series(
                ["missing value (no status column)"] * int(bad.sum()), index=pairs.index[bad]
            )
        n_bad = int(bad.sum())
        if n_bad == 0:
            continue
        total += n_bad
        counts = reasons.value_counts()
        per_metric.append(
            [
                metric_info(m).label,
                n_bad,
                len(pairs),
                "; ".join(f"{r} (x{k})" for r, k in counts.items()),
            ]
        )
        for idx in pairs.index[bad]:
            if len(per_pair) < 200:
                per_pair.append(
                    [
                        pairs.at[idx, "degraded_path"],
                        metric_info(m).label,
                        str(reasons.get(idx, "")),
                    ]
                )
    if total == 0:
        sentences = [f"Every metric was computed on all {len(pairs)} pairs; nothing failed."]
    else:
        sentences = [
            f"{total} metric values out of {len(pairs) * len(results.metrics)} "
            f"({len(pairs)} pairs x {len(results.metrics)} metrics) are missing; each is "
            "NaN in pair_metrics.csv with its reason in the status column, and is left "
            "out of means and correlations."
        ]
    failures = results.run.get("failures") or results.run.get("failure_counts")
    if isinstance(failures, dict):
        nonzero = {k: v for k, v in failures.items() if v}
        if nonzero:
            sentences.append(
                "The metrics stage counted failed pairs per metric: "
                + ", ".join(f"{k}: {v}" for k, v in nonzero.items())
                + "."
            )
    return sentences, per_metric, per_pair


def _status_column(pairs: pd.DataFrame, metric: str) -> str | None:
    candidates = [f"{metric}_status"]
    info = metric_info(metric)
    if info.model is not None:
        candidates.append(f"{info.model}_status")
    candidates.append(metric.split("_")[0] + "_status")
    return next((c for c in candidates if c in pairs.columns), None)
