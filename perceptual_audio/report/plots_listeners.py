"""Stage 4's figures of the agreement with listeners: the forest plot of every metric's
correlation with the ratings (with the listeners' ceiling) and the headline metrics against the
rating. Drawn like every figure of :mod:`perceptual_audio.report.plots` (imported first: it
sets the headless backend and the font types)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from scipy import stats as sps

from perceptual_audio.errors import ParameterError
from perceptual_audio.listening import CEILING, LEVELS, oriented, oriented_ci, ranked
from perceptual_audio.report import plots  # sets the Agg backend and the font types
from perceptual_audio.report.vocabulary import METHOD_NAME, METHOD_SYMBOL, metric_info

logger = logging.getLogger(__name__)


#: Colours of the forest plot (colour-blind safe): neural metrics, then the others.
NEURAL_COLOR = "#0072B2"
OTHER_COLOR = "#D55E00"


def listener_forest_plot(
    agreement: pd.DataFrame,
    *,
    method: str = "pearson",
    labels: Mapping[str, str] | None = None,
) -> Figure:
    """Every metric's correlation with the listeners, with 95% CI, one panel per level.

    Parameters
    ----------
    agreement : pd.DataFrame
        ``listener_agreement.csv``.
    method : {"pearson", "spearman", "kendall"}
    labels : mapping, optional
        Metric -> display label (default :func:`metric_info` labels).

    Coefficients are turned so that right = agrees more with listeners (a distance's sign is
    flipped, marked "(−)"); the shaded band is the listeners' split-half ceiling with its CI.
    """
    if method not in METHOD_NAME:
        raise ParameterError(f"listener_forest_plot: method must be one of {list(METHOD_NAME)}")
    levels = [lv for lv in LEVELS if (agreement["level"] == lv).any()]
    if not levels:
        raise ParameterError("listener_forest_plot: the agreement table has no rows")
    n_metrics = max(
        int(((agreement["level"] == lv) & (agreement["metric"] != CEILING)).sum()) for lv in levels
    )
    fig, axes = plt.subplots(
        1,
        len(levels),
        figsize=(plots.PANEL_WIDTH_IN * len(levels) + 3.5, 1.6 + 0.32 * n_metrics),
        squeeze=False,
        layout="constrained",
    )
    for ax, level in zip(axes[0], levels, strict=True):
        _forest_panel(ax, agreement, level, method, labels or {})
    ceiling_handles, _ = axes[0][-1].get_legend_handles_labels()
    handles = [
        Line2D([], [], color=NEURAL_COLOR, marker="o", label="neural metric"),
        Line2D([], [], color=OTHER_COLOR, marker="o", label="classic / reference metric"),
    ]
    fig.legend(handles=ceiling_handles + handles, loc="outside lower center", ncols=4, fontsize=8)
    plots.suptitle(
        fig, "Agreement of every metric with the listeners (95% bootstrap CI over stimuli)", 11
    )
    return fig


def _forest_panel(
    ax: Axes, agreement: pd.DataFrame, level: str, method: str, label_of: Mapping[str, str]
) -> None:
    """One level's panel: the listeners' ceiling behind each metric's oriented coefficient
    with its CI, best at the top."""
    rk = ranked(agreement, level, method).iloc[::-1]
    names = list(rk["metric"])
    ceiling = _ceiling_row(agreement, level, method)
    if ceiling is not None:
        _draw_ceiling(ax, ceiling, method)
    _draw_metrics(ax, rk, method)
    ax.set_yticks(np.arange(len(names)))
    ax.set_yticklabels(
        [
            label_of.get(m, metric_info(m).label)
            + ("" if metric_info(m).higher_is_better else " (−)")
            for m in names
        ],
        fontsize=8,
    )
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel(
        f"{METHOD_NAME[method]} {METHOD_SYMBOL[method]} with the rating (right = agrees more)"
    )
    n = int(rk["n"].max()) if len(rk) else 0
    ceiling_text = f", ceiling {ceiling[method]:.2f}" if ceiling is not None else ""
    ax.set_title(
        f"{'file' if level == 'file' else 'condition (system)'} level, n = {n}{ceiling_text}",
        fontsize=10,
    )
    ax.grid(True, axis="x", alpha=0.3)


def _ceiling_row(agreement: pd.DataFrame, level: str, method: str) -> pd.Series | None:
    """The listeners' ceiling row at ``level``; None when absent or without a ``method``
    value."""
    rows = agreement[(agreement["level"] == level) & (agreement["metric"] == CEILING)]
    if rows.empty or not np.isfinite(rows[method].iloc[0]):
        return None
    return rows.iloc[0]


def _draw_ceiling(ax: Axes, ceiling: pd.Series, method: str) -> None:
    """The ceiling as a dashed line, its 95% CI as a grey band (when finite)."""
    lo, hi = ceiling[f"{method}_ci_low"], ceiling[f"{method}_ci_high"]
    if np.isfinite(lo) and np.isfinite(hi):
        ax.axvspan(lo, hi, color="0.85", label="listener ceiling, 95% CI")
    ax.axvline(
        ceiling[method],
        color="0.4",
        linestyle="--",
        linewidth=1,
        label="listener ceiling (split-half)",
    )


def _draw_metrics(ax: Axes, rk: pd.DataFrame, method: str) -> None:
    """Each metric (row ``y`` of ``rk``) as a dot at its oriented coefficient with its CI."""
    names = list(rk["metric"])
    vals = [oriented(m, v) for m, v in zip(names, rk[method], strict=True)]
    cis = [
        oriented_ci(m, lo, hi)
        for m, lo, hi in zip(names, rk[f"{method}_ci_low"], rk[f"{method}_ci_high"], strict=True)
    ]
    for y, v, (lo, hi), m in zip(np.arange(len(names)), vals, cis, names, strict=True):
        color = NEURAL_COLOR if metric_info(m).neural else OTHER_COLOR
        if np.isfinite(lo) and np.isfinite(hi):
            ax.plot([lo, hi], [y, y], color=color, linewidth=1.6)
        ax.plot([v], [y], "o", color=color, markersize=5)


def rating_scatter_figure(pairs: pd.DataFrame, metrics: Sequence[str]) -> Figure:
    """Each metric (x) against the mean listener rating (y), one point per rated file,
    colour = listening-test condition; hidden-reference files are hollow."""
    metrics = [m for m in metrics if m in pairs.columns]
    if not metrics:
        raise ParameterError("rating_scatter_figure: no metric column to draw")
    data = pairs[pairs["rating_mean"].notna()].replace([np.inf, -np.inf], np.nan)
    conditions = sorted(data["condition"].astype(str).unique())
    palette = sns.color_palette("colorblind", n_colors=max(len(conditions), 1))
    colors = {c: palette[i % len(palette)] for i, c in enumerate(conditions)}
    rows, cols = plots.grid(len(metrics))
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(plots.PANEL_WIDTH_IN * cols + 2.0, plots.PANEL_HEIGHT_IN * rows + 0.5),
        squeeze=False,
        layout="constrained",
    )
    for ax, m in zip(axes.flat, metrics, strict=False):
        for cond, g in data.groupby("condition"):
            hidden = g["hidden_reference"].astype(str).str.lower() == "true"
            for mask, face in ((~hidden, colors[str(cond)]), (hidden, "none")):
                if mask.any():
                    ax.scatter(
                        g.loc[mask, m],
                        g.loc[mask, "rating_mean"],
                        s=26,
                        color=colors[str(cond)],
                        facecolors=face,
                        linewidths=0.8,
                    )
        ok = data[m].notna() & (data["hidden_reference"].astype(str).str.lower() != "true")
        x, y = data.loc[ok, m].to_numpy(float), data.loc[ok, "rating_mean"].to_numpy(float)
        if len(x) >= plots.MIN_POINTS_FOR_FIT and np.ptp(x) > 0 and np.ptp(y) > 0:
            r = float(sps.pearsonr(x, y)[0])
            ax.set_title(f"{metric_info(m).label}: Pearson r = {r:.2f}, n = {len(x)}", fontsize=9)
        else:
            ax.set_title(f"{metric_info(m).label}: too few points", fontsize=9)
        ax.set_xlabel(metric_info(m).axis_label)
        ax.set_ylabel("mean rating")
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.set_visible(False)
    handles = [Patch(color=colors[c]) for c in conditions]
    handles.append(Line2D([], [], linestyle="", marker="o", color="0.3", markerfacecolor="none"))
    fig.legend(
        handles,
        [*conditions, "hidden reference (not in r)"],
        loc="outside right upper",
        fontsize=8,
        title="condition",
        title_fontsize=8,
    )
    plots.suptitle(
        fig, "Headline metrics against the mean listener rating (one point per rated file)", 11
    )
    return fig
