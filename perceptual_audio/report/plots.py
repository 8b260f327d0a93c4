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
    condition_label,
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


def _suptitle(fig: Figure, text: str, fontsize: float) -> None:
    """Figure title wrapped to the figure's width (a cut-off title is unreadable)."""
    import textwrap

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
    _suptitle(
        fig, f"{metric_info(neural_metric).label} against the classic metrics (all pairs)", 11
    )
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


def _summary_values(
    summary: pd.DataFrame, family: str, level: str, metric: str
) -> tuple[float, float, float]:
    rows = summary[(summary["family"] == family) & (summary["level"] == level)]
    if rows.empty:
        return math.nan, math.nan, math.nan
    r = rows.iloc[0]

    def get(col: str) -> float:
        return float(r[col]) if col in r.index and pd.notna(r[col]) else math.nan

    return get(f"{metric}_mean"), get(f"{metric}_ci_low"), get(f"{metric}_ci_high")


def _grid(n_panels: int, ncols: int = 3) -> tuple[int, int]:
    ncols = max(1, min(ncols, n_panels))
    return math.ceil(n_panels / ncols), ncols


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
    nrows, ncols = _grid(max(len(metrics), 1), ncols)
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
        vals = np.array([_summary_values(summary, f, lv, metric) for f, lv in conditions]).reshape(
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
    _suptitle(fig, "Mean of each metric per degradation, with 95% confidence intervals", 12)
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
        [_summary_values(summary, f, lv, metric)[0] for f, lv in conditions], dtype=float
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
    nrows, ncols = _grid(max(len(metrics), 1), ncols)
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
        info = metric_info(metric)
        all_means = []
        for fam in families:
            levels = list(level_order.get(fam, []))
            vals = np.array(
                [_summary_values(summary, fam, lv, metric) for lv in levels], dtype=float
            ).reshape(-1, 3)
            if vals.size == 0:
                continue
            mean, lo, hi = vals[:, 0], vals[:, 1], vals[:, 2]
            all_means.append(mean)
            ranks = np.arange(1, len(levels) + 1)
            err = np.vstack(
                [
                    np.where(np.isnan(lo), 0, np.clip(mean - lo, 0, None)),
                    np.where(np.isnan(hi), 0, np.clip(hi - mean, 0, None)),
                ]
            )
            ax.errorbar(
                ranks,
                mean,
                yerr=err,
                marker="o",
                color=colors[fam],
                linewidth=1.6,
                capsize=2,
                elinewidth=0.8,
                label=f"{fam} ({' > '.join(levels)})" if len(levels) < 5 else fam,
            )
        finite = np.concatenate(all_means) if all_means else np.array([])
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
    _suptitle(
        fig,
        "Severity curves: each metric's mean as the degradation gets stronger, on the "
        "metric's own scale (each panel its own y range; the span is in its title)",
        12,
    )
    return fig


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
    _suptitle(
        fig,
        f"Degradation family '{family}': neural metrics against the classic metrics "
        f"({len(data)} pairs; each panel shows those both its metrics scored, n in its "
        "legend; colour and marker = level)",
        11,
    )
    return fig


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


# -- agreement with listeners ---------------------------------------------------------------
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
    from perceptual_audio.listening import CEILING, LEVELS, oriented, oriented_ci, ranked

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
        figsize=(PANEL_WIDTH_IN * len(levels) + 3.5, 1.6 + 0.32 * n_metrics),
        squeeze=False,
        layout="constrained",
    )
    for ax, level in zip(axes[0], levels, strict=True):
        rk = ranked(agreement, level, method).iloc[::-1]
        names = list(rk["metric"])
        ys = np.arange(len(names))
        vals = np.array([oriented(m, v) for m, v in zip(names, rk[method], strict=True)])
        cis = [
            oriented_ci(m, lo, hi)
            for m, lo, hi in zip(
                names, rk[f"{method}_ci_low"], rk[f"{method}_ci_high"], strict=True
            )
        ]
        ceil = agreement[(agreement["level"] == level) & (agreement["metric"] == CEILING)]
        if not ceil.empty and np.isfinite(ceil[method].iloc[0]):
            c = ceil.iloc[0]
            lo, hi = c[f"{method}_ci_low"], c[f"{method}_ci_high"]
            if np.isfinite(lo) and np.isfinite(hi):
                ax.axvspan(lo, hi, color="0.85", label="listener ceiling, 95% CI")
            ax.axvline(
                c[method],
                color="0.4",
                linestyle="--",
                linewidth=1,
                label="listener ceiling (split-half)",
            )
        for y, v, (lo, hi), m in zip(ys, vals, cis, names, strict=True):
            neural = metric_info(m).neural
            color = "#0072B2" if neural else "#D55E00"
            if np.isfinite(lo) and np.isfinite(hi):
                ax.plot([lo, hi], [y, y], color=color, linewidth=1.6)
            ax.plot([v], [y], "o", color=color, markersize=5)
        label_of = labels or {}
        ax.set_yticks(ys)
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
        ceiling_text = (
            f", ceiling {ceil[method].iloc[0]:.2f}"
            if not ceil.empty and np.isfinite(ceil[method].iloc[0])
            else ""
        )
        ax.set_title(
            f"{'file' if level == 'file' else 'condition (system)'} level, n = {n}{ceiling_text}",
            fontsize=10,
        )
        ax.grid(True, axis="x", alpha=0.3)
        handles = [
            Line2D([], [], color="#0072B2", marker="o", label="neural metric"),
            Line2D([], [], color="#D55E00", marker="o", label="classic / reference metric"),
        ]
        h, _ = ax.get_legend_handles_labels()
    fig.legend(handles=h + handles, loc="outside lower center", ncols=4, fontsize=8)
    _suptitle(
        fig, "Agreement of every metric with the listeners (95% bootstrap CI over stimuli)", 11
    )
    return fig


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
    rows, cols = _grid(len(metrics))
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(PANEL_WIDTH_IN * cols + 2.0, PANEL_HEIGHT_IN * rows + 0.5),
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
        if len(x) >= MIN_POINTS_FOR_FIT and np.ptp(x) > 0 and np.ptp(y) > 0:
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
    _suptitle(
        fig, "Headline metrics against the mean listener rating (one point per rated file)", 11
    )
    return fig
