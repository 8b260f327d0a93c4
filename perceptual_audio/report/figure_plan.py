"""Stage 4's list of figures: file stem, report group, caption and a builder for each.

The plotting modules import matplotlib; they are imported inside the builders' functions, so
that ``visualize_results.py --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from perceptual_audio import listening
from perceptual_audio.report.findings import judges
from perceptual_audio.report.listeners import LISTENER_FIGURE_GROUP
from perceptual_audio.report.loading import StudyResults
from perceptual_audio.report.vocabulary import (
    headline_metrics,
    metric_info,
    primary_neural_metrics,
)

GROUP_SCATTER = "Neural metrics against the judges (the reference panel, else PESQ-WB and STOI)"
GROUP_HEATMAP = "Correlations among all metrics"
GROUP_DEGRADATION = "Metrics by degradation"
GROUP_FAMILY = "One degradation family at a time"

#: ``(file stem, group, caption, builder)``; ``builder()`` returns a matplotlib Figure.
PlannedFigure = tuple[str, str, str, Any]


def figure_plan(results: StudyResults) -> list[PlannedFigure]:
    """``(file stem, group, caption, builder)`` of every figure to draw, in report order.

    ``builder`` is a zero-argument callable returning a matplotlib Figure; plots is imported
    here, lazily, so that ``--help`` stays fast.
    """
    pairs = results.pairs.replace([float("inf"), float("-inf")], float("nan"))
    refs = judges(results)
    neural = [m for m in results.neural_metrics if pairs[m].notna().any()]
    plan = listener_figure_plan(results, pairs)
    if refs:
        plan += _scatter_figures(results, pairs, neural, refs)
    plan += _heatmap_figures(results, pairs)
    plan += _degradation_figures(results)
    primary = [m for m in primary_neural_metrics(results.metrics) if m in neural]
    if len(results.families) > 1 and refs and primary:
        plan += _family_figures(results, pairs, primary, refs)
    return plan


def _judges_text(refs: Sequence[str]) -> str:
    return " and ".join(metric_info(r).label for r in refs)


def _scatter_figures(
    results: StudyResults, pairs: pd.DataFrame, neural: list[str], refs: list[str]
) -> list[PlannedFigure]:
    """Each neural metric against the judges, per pair."""
    from perceptual_audio.report import plots  # deferred: matplotlib

    return [
        (
            f"scatter_{m}",
            GROUP_SCATTER,
            f"{metric_info(m).label} against {_judges_text(refs)}: one point per pair, colour "
            "= family, marker = level; the legend gives Pearson and Spearman with 95% CI and n.",
            lambda m=m: plots.scatter_figure(
                pairs,
                neural_metric=m,
                references=refs,
                families=results.families,
                level_order=results.level_order,
                correlations=results.correlations,
            ),
        )
        for m in neural
    ]


def _heatmap_figures(results: StudyResults, pairs: pd.DataFrame) -> list[PlannedFigure]:
    """Pearson and Spearman correlations among all metrics."""
    from perceptual_audio.report import plots  # deferred: matplotlib

    return [
        (
            f"heatmap_{method}",
            GROUP_HEATMAP,
            f"{method.capitalize()} correlation between every pair of metrics over all pairs.",
            lambda method=method: plots.correlation_heatmap(
                pairs, results.analysed_metrics, method=method
            ),
        )
        for method in ("pearson", "spearman")
    ]


def _degradation_figures(results: StudyResults) -> list[PlannedFigure]:
    """Every metric per family and level: bars, then severity curves."""
    from perceptual_audio.report import plots_families  # deferred: matplotlib

    summary, families, order = results.summary, results.families, results.level_order
    return [
        (
            "bars_by_degradation",
            GROUP_DEGRADATION,
            "Mean of every metric per degradation family and level, with 95% CI error bars. "
            "Where bars from 0 would hide the differences (cosine similarities near 1), the "
            "y axis is chosen from the data and the panel says so.",
            lambda: plots_families.bar_chart(
                summary, results.metrics, families=families, level_order=order
            ),
        ),
        (
            "severity_curves",
            GROUP_DEGRADATION,
            "Every metric against the severity of the degradation, one line per family, on "
            "its own raw scale with 95% CIs (small multiples: each panel has its own y range, "
            "and its title gives the span of the means).",
            lambda: plots_families.severity_curves(
                summary, results.metrics, families=families, level_order=order
            ),
        ),
    ]


def _family_figures(
    results: StudyResults, pairs: pd.DataFrame, primary: list[str], refs: list[str]
) -> list[PlannedFigure]:
    """One family at a time: the headline neural metrics against the judges, by level."""
    from perceptual_audio.report import plots_families  # deferred: matplotlib

    return [
        (
            f"family_{fam}",
            GROUP_FAMILY,
            f"Family '{fam}' only: headline neural metrics against {_judges_text(refs)}, by "
            "level, with this family's correlations.",
            lambda fam=fam: plots_families.family_small_multiples(
                pairs,
                family=fam,
                neural_metrics=primary,
                references=refs,
                level_order=results.level_order,
                correlations=results.correlations,
            ),
        )
        for fam in results.families
    ]


def listener_figure_plan(results: StudyResults, pairs: Any) -> list[PlannedFigure]:
    """The listener figures (forest plot, headline metrics against the rating); [] without
    ratings. They are shown in the report's listener section."""

    agreement = results.listening
    if agreement is None or agreement.empty:
        return []
    ranked = listening.ranked(agreement, listening.LEVEL_FILE)
    top = [m for m in ranked["metric"] if m in results.metrics][:2]
    headline = list(dict.fromkeys([*top, *headline_metrics(results.metrics)]))
    headline = [m for m in headline if m in results.metrics and pairs[m].notna().any()]
    return [
        (
            "listener_forest",
            LISTENER_FIGURE_GROUP,
            "Every metric's Pearson r with the mean listener rating, file and condition level, "
            "95% bootstrap CI over stimuli; grey band: the listeners' split-half ceiling.",
            lambda: _listener_figures().listener_forest_plot(agreement),
        ),
        (
            "listener_scatter",
            LISTENER_FIGURE_GROUP,
            "Headline metrics against the mean listener rating, one point per rated file, "
            "colour = condition.",
            lambda: _listener_figures().rating_scatter_figure(pairs, headline),
        ),
    ]


def _listener_figures() -> Any:
    from perceptual_audio.report import plots_listeners  # deferred: matplotlib

    return plots_listeners
