"""Figures of stage 4, built from the results tables (the package's only matplotlib importer).

Every function takes DataFrames (as read by :mod:`perceptual_audio.report`), returns a
:class:`matplotlib.figure.Figure` and never shows it; :func:`save_figure` writes it atomically
and closes it. The non-interactive Agg backend is selected on import, so figures render on
machines without a display.

Conventions shared by the figures: colour = degradation family, marker = severity rank of the
level within its family (1 = least severe), axis labels carry units (from
:func:`perceptual_audio.report.metric_info`), every axes has a title and a legend.
"""

from __future__ import annotations

import logging
import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display needed, the same output everywhere
# Figures for papers: text in SVG stays <text> (the font referenced by name, editable) and PDF
# embeds TrueType fonts (Type 42) rather than Type 3 outlines, which journals refuse.
matplotlib.rcParams["svg.fonttype"] = "none"
matplotlib.rcParams["pdf.fonttype"] = 42
matplotlib.rcParams["ps.fonttype"] = 42
# fontTools subsets the PDF fonts and logs each step at INFO: not the stage's news.
logging.getLogger("fontTools").setLevel(logging.WARNING)

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from scipy import stats as sps

from perceptual_audio.errors import ParameterError
from perceptual_audio.files import atomic_path
from perceptual_audio.report.findings import (
    lookup_correlation,
)
from perceptual_audio.report.vocabulary import (
    METHOD_NAME,
    METHOD_SYMBOL,
    SCOPE_ALL,
    metric_info,
)
from perceptual_audio.results import CORRELATION_METHODS

logger = logging.getLogger(__name__)

#: Marker of the 1st, 2nd, ... level (by severity) of each family.
LEVEL_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
#: Figure formats :func:`save_figure` writes.
FORMATS = ("png", "svg", "pdf")
#: Width of one panel, inches (figures are about 10-13 in wide: readable at report width).
PANEL_WIDTH_IN = 4.2
PANEL_HEIGHT_IN = 3.4
#: Points below which no fit line or correlation is drawn.
MIN_POINTS_FOR_FIT = 3


def suptitle(fig: Figure, text: str, fontsize: float) -> None:
    """Figure title wrapped to the figure's width (a cut-off title is unreadable)."""
    chars = max(30, int(fig.get_figwidth() * 72 / (0.55 * fontsize)))
    fig.suptitle(textwrap.fill(text, chars), fontsize=fontsize)


def family_colors(families: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """A colour-blind-safe colour per family, stable for a given family order."""
    palette = sns.color_palette("colorblind", n_colors=max(len(families), 1))
    return {f: tuple(palette[i % len(palette)]) for i, f in enumerate(families)}


def _level_rank(level_order: Mapping[str, Sequence[str]], family: str, level: str) -> int:
    levels = list(level_order.get(family, []))
    return levels.index(level) if level in levels else len(levels)


def _rank_labels(level_order: Mapping[str, Sequence[str]], families: Sequence[str]) -> list[str]:
    """Legend text per severity rank: the level names holding that rank, joined by ' / '."""
    depth = max((len(level_order.get(f, [])) for f in families), default=0)
    labels = []
    for i in range(depth):
        names = list(
            dict.fromkeys(level_order[f][i] for f in families if len(level_order.get(f, [])) > i)
        )
        labels.append(" / ".join(names))
    return labels


def _style_legend_handles(
    families: Sequence[str], level_order: Mapping[str, Sequence[str]], colors: Mapping[str, tuple]
) -> tuple[list, list[str]]:
    handles: list = [Patch(color=colors[f]) for f in families]
    labels = [f"family: {f}" for f in families]
    for i, text in enumerate(_rank_labels(level_order, families)):
        handles.append(
            Line2D(
                [],
                [],
                linestyle="",
                marker=LEVEL_MARKERS[i % len(LEVEL_MARKERS)],
                color="0.35",
                markersize=7,
            )
        )
        labels.append(f"level {i + 1}: {text}")
    return handles, labels


def _correlation_text(
    correlations: pd.DataFrame | None,
    x: np.ndarray,
    y: np.ndarray,
    metric_x: str,
    metric_y: str,
    scope: str = SCOPE_ALL,
) -> str:
    """``Pearson r = 0.88 [0.80, 0.93]`` / ``Spearman ρ = ...``, n: from correlations.csv when it
    has the pair, else computed here (without CI)."""
    lines = []
    n_here = len(x)
    for method in ("pearson", "spearman"):
        c = (
            lookup_correlation(correlations, scope, metric_x, metric_y, method)
            if correlations is not None
            else None
        )
        sym = f"{METHOD_NAME[method]} {METHOD_SYMBOL[method]}"
        if c is not None and not math.isnan(c.r):
            ci = (
                "CI n/a"
                if math.isnan(c.ci_low) or math.isnan(c.ci_high)
                else f"[{c.ci_low:.2f}, {c.ci_high:.2f}]"
            )
            lines.append(f"{sym} = {c.r:.2f} {ci}")
            if not math.isnan(c.n):
                n_here = int(c.n)
        elif n_here >= MIN_POINTS_FOR_FIT and np.ptp(x) > 0 and np.ptp(y) > 0:
            func = sps.pearsonr if method == "pearson" else sps.spearmanr
            lines.append(f"{sym} = {float(func(x, y)[0]):.2f} (CI n/a)")
        else:
            lines.append(f"{sym} undefined")
    lines.append(f"n = {n_here}")
    return "\n".join(lines)


def scatter_panel(
    ax: plt.Axes,
    pairs: pd.DataFrame,
    *,
    x_metric: str,
    y_metric: str,
    level_order: Mapping[str, Sequence[str]],
    colors: Mapping[str, tuple],
    correlations: pd.DataFrame | None = None,
    scope: str = SCOPE_ALL,
    color_by: str = "family",
) -> int:
    """One scatter of ``y_metric`` against ``x_metric`` on ``ax``, with a least-squares line.

    Rows where either metric is NaN are left out. ``color_by="family"`` colours by family and
    marks levels by severity rank; ``"level"`` colours by severity rank (one-family panels).
    The fit line's legend entry carries Pearson and Spearman (95% CI) and n.

    Returns
    -------
    int
        Number of points drawn.
    """
    ok = pairs[[x_metric, y_metric]].notna().all(axis=1)
    data = pairs[ok]
    rank_colors = sns.color_palette("rocket_r", n_colors=max(len(LEVEL_MARKERS), 1))
    for (fam, lev), grp in data.groupby(["family", "level"], sort=False):
        rank = _level_rank(level_order, fam, lev)
        color = (
            colors.get(fam, (0.3, 0.3, 0.3))
            if color_by == "family"
            else rank_colors[min(1 + 2 * rank, len(rank_colors) - 1)]
        )
        ax.scatter(
            grp[x_metric],
            grp[y_metric],
            s=28,
            alpha=0.8,
            color=color,
            marker=LEVEL_MARKERS[rank % len(LEVEL_MARKERS)],
            edgecolors="white",
            linewidths=0.4,
            label="_nolegend_" if color_by == "family" else lev,
        )
    x = data[x_metric].to_numpy(dtype=float)
    y = data[y_metric].to_numpy(dtype=float)
    text = _correlation_text(correlations, x, y, x_metric, y_metric, scope)
    if len(x) >= 2 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 50)
        ax.plot(
            xs, slope * xs + intercept, color="black", linewidth=1.2, label=f"linear fit\n{text}"
        )
    else:
        ax.plot([], [], color="black", linewidth=1.2, label=f"no fit (too few points)\n{text}")
    ax.set_xlabel(metric_info(x_metric).axis_label)
    ax.set_ylabel(metric_info(y_metric).axis_label)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=7, framealpha=0.85)
    return int(len(x))


def scatter_figure(
    pairs: pd.DataFrame,
    *,
    neural_metric: str,
    references: Sequence[str],
    families: Sequence[str],
    level_order: Mapping[str, Sequence[str]],
    correlations: pd.DataFrame | None = None,
) -> Figure:
    """A neural metric against each reference (PESQ-WB, STOI): one panel per reference.

    Parameters
    ----------
    pairs : pd.DataFrame
        ``pair_metrics.csv`` (``family``, ``level`` and the metric columns).
    neural_metric : str
        Column on the y axes.
    references : sequence of str
        Columns on the x axes, one panel each (those absent from ``pairs`` are skipped).
    families, level_order
        Family order and each family's levels from least to most severe.
    correlations : pd.DataFrame, optional
        ``correlations.csv``; its ``all``-scope values (with CIs) go in the legends.
    """
    refs = [r for r in references if r in pairs.columns]
    if not refs:
        raise ParameterError(
            f"scatter_figure: none of the references {list(references)} is a "
            f"column of the pairs table (columns: {list(pairs.columns)[:12]})"
        )
    colors = family_colors(families)
    fig, axes = plt.subplots(
        1,
        len(refs),
        figsize=(PANEL_WIDTH_IN * len(refs) + 1.8, PANEL_HEIGHT_IN + 0.6),
        squeeze=False,
        layout="constrained",
    )
    for ax, ref in zip(axes[0], refs, strict=True):
        scatter_panel(
            ax,
            pairs,
            x_metric=ref,
            y_metric=neural_metric,
            level_order=level_order,
            colors=colors,
            correlations=correlations,
        )
        ax.set_title(f"{metric_info(neural_metric).label} vs {metric_info(ref).label}", fontsize=10)
    handles, labels = _style_legend_handles(families, level_order, colors)
    fig.legend(
        handles,
        labels,
        loc="outside right upper",
        fontsize=8,
        title="colour / marker",
        title_fontsize=8,
    )
    suptitle(fig, f"{metric_info(neural_metric).label} against the classic metrics (all pairs)", 11)
    return fig


def correlation_heatmap(
    pairs: pd.DataFrame, metrics: Sequence[str], *, method: str = "pearson"
) -> Figure:
    """Annotated matrix of ``method`` correlations among ``metrics`` over all pairs.

    Correlations use pairwise-complete rows (at least 3); metrics with fewer than 3 values or a
    constant value are left out (the title says how many).
    """
    if method not in CORRELATION_METHODS:
        raise ParameterError(
            f"correlation_heatmap: method must be pearson, spearman or kendall, got {method!r}"
        )
    usable = [
        m
        for m in metrics
        if m in pairs.columns and pairs[m].notna().sum() >= 3 and pairs[m].nunique(dropna=True) > 1
    ]
    labels = [metric_info(m).marked_label for m in usable]
    size = max(4.5, 0.55 * len(usable) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.2, size), layout="constrained")
    sym = f"{METHOD_NAME[method]} {METHOD_SYMBOL[method]}"
    if len(usable) < 2:
        ax.text(
            0.5,
            0.5,
            "fewer than two metrics with at least 3 varying values:\nno correlation to show",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        matrix = pairs[usable].corr(method=method, min_periods=3)
        matrix.index = labels
        matrix.columns = labels
        sns.heatmap(
            matrix,
            ax=ax,
            vmin=-1,
            vmax=1,
            cmap="vlag",
            annot=True,
            fmt=".2f",
            annot_kws={"fontsize": 7},
            square=True,
            linewidths=0.5,
            cbar_kws={"label": f"{sym} (-1 to 1)", "shrink": 0.7},
        )
        ax.tick_params(axis="x", labelrotation=60, labelsize=8)
        ax.tick_params(axis="y", labelsize=8)
        for t in ax.get_xticklabels():
            t.set_horizontalalignment("right")
    ax.set_xlabel("metric (column of pair_metrics.csv)")
    ax.set_ylabel("metric (column of pair_metrics.csv)")
    skipped = len([m for m in metrics if m in pairs.columns]) - len(usable)
    ax.set_title(
        f"{sym} between metrics over all pairs (n = {len(pairs)}; a distance that "
        "agrees with a similarity correlates negatively)"
        + (f"; {skipped} metric(s) without enough values left out" if skipped else ""),
        fontsize=10,
    )
    return fig


def summary_values(
    summary: pd.DataFrame, family: str, level: str, metric: str
) -> tuple[float, float, float]:
    rows = summary[(summary["family"] == family) & (summary["level"] == level)]
    if rows.empty:
        return math.nan, math.nan, math.nan
    r = rows.iloc[0]

    def get(col: str) -> float:
        return float(r[col]) if col in r.index and pd.notna(r[col]) else math.nan

    return get(f"{metric}_mean"), get(f"{metric}_ci_low"), get(f"{metric}_ci_high")


def grid(n_panels: int, ncols: int = 3) -> tuple[int, int]:
    """(rows, columns) of a grid of ``n_panels`` panels, at most ``ncols`` wide."""
    ncols = max(1, min(ncols, n_panels))
    return math.ceil(n_panels / ncols), ncols


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Write ``fig`` atomically as PNG, SVG or PDF (by the suffix of ``path``) and close it.

    Parameters
    ----------
    fig : Figure
    path : path-like
        Ends in ``.png``, ``.svg`` or ``.pdf``.
    dpi : int
        Dots per inch of PNG output (SVG and PDF are resolution independent).
    """
    return save_figures(fig, [path], dpi=dpi)[0]


#: Metadata that would make two drawings of the same data differ (dates, versions): removed.
_NO_TIMESTAMPS = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}


def save_figures(fig: Figure, paths: Sequence[str | os.PathLike], *, dpi: int = 110) -> list[Path]:
    """Write ``fig`` atomically to each of ``paths`` (format by suffix: ``.png``, ``.svg``,
    ``.pdf``), then close it. Text stays text in SVG and PDF (see the rcParams above)."""
    out = [Path(p) for p in paths]
    for path in out:
        if path.suffix.lower().lstrip(".") not in FORMATS:
            raise ParameterError(
                f"save_figure: {path} must end in .png, .svg or .pdf, got {path.suffix!r}"
            )
    if dpi <= 0:
        raise ParameterError(f"save_figure: dpi must be > 0, got {dpi}")
    try:
        for path in out:
            fmt = path.suffix.lower().lstrip(".")
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=dpi, metadata=_NO_TIMESTAMPS[fmt])
    finally:
        plt.close(fig)
    return out
