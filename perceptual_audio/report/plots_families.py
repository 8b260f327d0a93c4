"""Stage 4's figures by degradation: bars per family and level, severity curves and one
family's small multiples. Drawn like every figure of :mod:`perceptual_audio.report.plots`
(which sets the headless backend and the font types)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from perceptual_audio.errors import ParameterError
from perceptual_audio.report.plots import (
    PANEL_HEIGHT_IN,
    PANEL_WIDTH_IN,
    family_colors,
    grid,
    scatter_panel,
    summary_values,
    suptitle,
)
from perceptual_audio.report.vocabulary import condition_label, metric_info

logger = logging.getLogger(__name__)


def bar_chart(
    summary: pd.DataFrame,
    metrics: Sequence[str],
    *,
    families: Sequence[str],
    level_order: Mapping[str, Sequence[str]],
    ncols: int = 3,
) -> Figure:
    """Mean of every metric per degradation (family and level) with 95% CI error bars.

    One panel per metric; bars ordered by family, then severity; colour = family. A metric
    without any ``<metric>_mean`` value is left out.
    """
    metrics = [
        m for m in metrics if f"{m}_mean" in summary.columns and summary[f"{m}_mean"].notna().any()
    ]
    conditions = [(f, lv) for f in families for lv in level_order.get(f, [])]
    colors = family_colors(families)
    nrows, ncols = grid(max(len(metrics), 1), ncols)
    width = max(PANEL_WIDTH_IN, 0.38 * len(conditions) + 1.2)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(width * ncols, (PANEL_HEIGHT_IN + 0.9) * nrows + 0.6),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat[len(metrics) :]:
        ax.set_visible(False)
    xs = np.arange(len(conditions))
    for ax, metric in zip(axes.flat, metrics, strict=False):
        vals = np.array([summary_values(summary, f, lv, metric) for f, lv in conditions]).reshape(
            -1, 3
        )
        mean, lo, hi = vals[:, 0], vals[:, 1], vals[:, 2]
        err = np.vstack(
            [
                np.where(np.isnan(lo), 0, np.clip(mean - lo, 0, None)),
                np.where(np.isnan(hi), 0, np.clip(hi - mean, 0, None)),
            ]
        )
        ax.bar(
            xs,
            np.nan_to_num(mean),
            yerr=err,
            capsize=3,
            color=[colors[f] for f, _ in conditions],
            edgecolor="0.25",
            linewidth=0.5,
            error_kw={"elinewidth": 1, "ecolor": "0.15"},
        )
        ax.set_xticks(
            xs,
            [condition_label(f, lv) for f, lv in conditions],
            rotation=45,
            ha="right",
            fontsize=8,
        )
        info = metric_info(metric)
        zoom = data_ylim(mean, lo, hi, cosine="-1 to 1" in info.unit)
        ax.set_title(
            f"{info.label} ({'higher' if info.higher_is_better else 'lower'} = closer to clean)"
            + ("\ny axis from the data, not from 0" if zoom else ""),
            fontsize=9,
        )
        if zoom:
            ax.set_ylim(*zoom)
        ax.set_ylabel(info.axis_label, fontsize=8)
        ax.set_xlabel("degradation (family, level)", fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    fig.legend(
        [Patch(color=colors[f]) for f in families] + [Line2D([], [], color="0.15")],
        [f"family: {f}" for f in families] + ["95% confidence interval"],
        loc="outside lower center",
        ncols=min(len(families) + 1, 6),
        fontsize=9,
    )
    suptitle(fig, "Mean of each metric per degradation, with 95% confidence intervals", 12)
    return fig


#: Bars start at 0 unless the data span less than this share of their largest magnitude.
ZOOM_BELOW_SHARE = 0.25


def data_ylim(
    mean: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, cosine: bool = False
) -> tuple[float, float] | None:
    """A y range from the data (means and CIs, 10% margin) when bars from 0 would hide the
    differences: always for cosine similarities (values near 1 differ by 0.01-0.1), else when
    the data span less than :data:`ZOOM_BELOW_SHARE` of their largest magnitude. None: keep 0."""
    values = np.concatenate([np.asarray(a, float) for a in (mean, lo, hi)])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    vmin, vmax = float(values.min()), float(values.max())
    span = vmax - vmin
    top = float(np.max(np.abs(values)))
    if top == 0 or (not cosine and span >= ZOOM_BELOW_SHARE * top):
        return None
    if vmin <= 0 <= vmax:  # 0 is inside the data: bars from 0 are honest
        return None
    margin = 0.1 * span if span > 0 else 0.01 * top
    return vmin - margin, vmax + margin


def normalised_means(
    summary: pd.DataFrame, metric: str, conditions: Sequence[tuple[str, str]]
) -> np.ndarray:
    """Means of ``metric`` per condition scaled to [0, 1]: 1 = best observed, 0 = worst.

    "Best" follows the metric's direction (a distance's best is its minimum), so every metric
    falls from 1 towards 0 as audio gets worse. A constant metric gives 1 everywhere.

    Returns
    -------
    np.ndarray [shape=(len(conditions),)]
        NaN where the summary has no value.
    """
    means = np.array(
        [summary_values(summary, f, lv, metric)[0] for f, lv in conditions], dtype=float
    )
    finite = means[np.isfinite(means)]
    if finite.size == 0:
        return means
    lo, hi = finite.min(), finite.max()
    if hi == lo:
        return np.where(np.isfinite(means), 1.0, np.nan)
    scaled = (means - lo) / (hi - lo)
    return scaled if metric_info(metric).higher_is_better else 1.0 - scaled


def severity_curves(
    summary: pd.DataFrame,
    metrics: Sequence[str],
    *,
    families: Sequence[str],
    level_order: Mapping[str, Sequence[str]],
    ncols: int = 3,
) -> Figure:
    """Each metric against severity on its own raw scale (small multiples), one line per family.

    x = severity rank of the level in its family (1 = least severe); y = the metric's mean with
    its 95% CI, in the metric's unit. Every panel has its own y range, printed in its title
    (``span 1.2 to 4.4``): a metric that barely moves is not drawn as steep as one that
    collapses, and the span says how far each one moved.
    """
    metrics = [
        m for m in metrics if f"{m}_mean" in summary.columns and summary[f"{m}_mean"].notna().any()
    ]
    colors = family_colors(families)
    nrows, ncols = grid(max(len(metrics), 1), ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(PANEL_WIDTH_IN * ncols, (PANEL_HEIGHT_IN + 0.3) * nrows + 0.6),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat[len(metrics) :]:
        ax.set_visible(False)
    depth = max((len(level_order.get(f, [])) for f in families), default=1)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        means = [
            _severity_curve(ax, summary, metric, fam, list(level_order.get(fam, [])), colors[fam])
            for fam in families
        ]
        _severity_axes(ax, metric, [m for m in means if m is not None], depth)
    if metrics:
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=min(len(families), 4),
            fontsize=9,
            title="family (levels from least to most severe); bars: 95% CI",
            title_fontsize=9,
        )
    suptitle(
        fig,
        "Severity curves: each metric's mean as the degradation gets stronger, on the "
        "metric's own scale (each panel its own y range; the span is in its title)",
        12,
    )
    return fig


def _severity_curve(
    ax: Axes, summary: pd.DataFrame, metric: str, family: str, levels: list[str], color: Any
) -> np.ndarray | None:
    """One family's line: ``metric``'s mean at each severity rank with its 95% CI as error
    bars; returns the means (None when the family has no levels)."""
    vals = np.array(
        [summary_values(summary, family, lv, metric) for lv in levels], dtype=float
    ).reshape(-1, 3)
    if vals.size == 0:
        return None
    mean, lo, hi = vals[:, 0], vals[:, 1], vals[:, 2]
    err = np.vstack(
        [
            np.where(np.isnan(lo), 0, np.clip(mean - lo, 0, None)),
            np.where(np.isnan(hi), 0, np.clip(hi - mean, 0, None)),
        ]
    )
    ax.errorbar(
        np.arange(1, len(levels) + 1),
        mean,
        yerr=err,
        marker="o",
        color=color,
        linewidth=1.6,
        capsize=2,
        elinewidth=0.8,
        label=f"{family} ({' > '.join(levels)})" if len(levels) < 5 else family,
    )
    return mean


def _severity_axes(ax: Axes, metric: str, means: list[np.ndarray], depth: int) -> None:
    """Title (with the span of the means), severity-rank x axis and the metric's y label."""
    info = metric_info(metric)
    finite = np.concatenate(means) if means else np.array([])
    finite = finite[np.isfinite(finite)]
    span = (
        f"means span {fmt_value(finite.min())} to {fmt_value(finite.max())}"
        if finite.size
        else "no values"
    )
    ax.set_title(
        f"{info.label} ({'higher' if info.higher_is_better else 'lower'} = closer to "
        f"clean)\n{span}",
        fontsize=9,
    )
    ax.set_xticks(np.arange(1, depth + 1))
    ax.set_xlim(0.7, depth + 0.3)
    ax.set_xlabel("severity rank of the level (1 = least severe)", fontsize=8)
    ax.set_ylabel(info.axis_label, fontsize=8)
    ax.grid(True, alpha=0.3)


def fmt_value(x: float) -> str:
    """3 significant digits, for spans in titles."""
    return f"{x:.3g}"


def family_small_multiples(
    pairs: pd.DataFrame,
    *,
    family: str,
    neural_metrics: Sequence[str],
    references: Sequence[str],
    level_order: Mapping[str, Sequence[str]],
    correlations: pd.DataFrame | None = None,
) -> Figure:
    """One family's pairs: a grid of each neural metric (rows) against each reference (columns),
    coloured and marked by level, with that family's correlations in each legend."""
    refs = [r for r in references if r in pairs.columns]
    rows = [m for m in neural_metrics if m in pairs.columns]
    if not refs or not rows:
        raise ParameterError(
            f"family_small_multiples({family!r}): need at least one neural metric "
            f"and one reference column; got {list(neural_metrics)} and {list(references)}"
        )
    data = pairs[pairs["family"] == family]
    fig, axes = plt.subplots(
        len(rows),
        len(refs),
        figsize=(PANEL_WIDTH_IN * len(refs), PANEL_HEIGHT_IN * len(rows) + 0.6),
        squeeze=False,
        layout="constrained",
    )
    for i, m in enumerate(rows):
        for j, ref in enumerate(refs):
            ax = axes[i, j]
            scatter_panel(
                ax,
                data,
                x_metric=ref,
                y_metric=m,
                level_order=level_order,
                colors={},
                correlations=correlations,
                scope=family,
                color_by="level",
            )
            ax.set_title(f"{metric_info(m).label} vs {metric_info(ref).label}", fontsize=9)
    suptitle(
        fig,
        f"Degradation family '{family}': neural metrics against the classic metrics "
        f"({len(data)} pairs; each panel shows those both its metrics scored, n in its "
        "legend; colour and marker = level)",
        11,
    )
    return fig
