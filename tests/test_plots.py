"""Figures of stage 4: the matplotlib objects carry the data, labels and legends they should."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
from _visual_fixtures import make_pairs, metric_columns
from matplotlib.collections import PathCollection
from matplotlib.container import ErrorbarContainer

from perceptual_audio import stats
from perceptual_audio.errors import ParameterError
from perceptual_audio.report import plots, plots_families, read_correlations

FAMILIES = {"noise": ["low", "high", "extreme"], "bitrate": ["low", "medium", "high"]}


@pytest.fixture(scope="module")
def pairs() -> pd.DataFrame:
    return make_pairs(n_recordings=5, families=FAMILIES, models=("openl3", "cdpam"))


@pytest.fixture(scope="module")
def order(pairs) -> dict[str, list[str]]:
    return stats.level_order({f: g["level"] for f, g in pairs.groupby("family")}, FAMILIES)


@pytest.fixture(scope="module")
def correlations(pairs, tmp_path_factory) -> pd.DataFrame:
    metrics = metric_columns(pairs)
    neural = [m for m in metrics if m.startswith(("openl3", "cdpam"))]
    table = stats.correlation_table(
        pairs, stats.metric_pairs(neural, ["pesq_wb", "stoi"]), n_bootstrap=100, seed=0
    )
    path = tmp_path_factory.mktemp("corr") / "correlations.csv"
    table.to_csv(path, index=False)
    return read_correlations(path)


@pytest.fixture(scope="module")
def summary(pairs, order) -> pd.DataFrame:
    return stats.summary_by_degradation(pairs, metric_columns(pairs), order)


def _n_points(ax) -> int:
    return sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))


def test_agg_backend_is_selected():
    assert matplotlib.get_backend().lower() == "agg"


def test_scatter_figure_points_labels_and_legends(pairs, order, correlations):
    fig = plots.scatter_figure(
        pairs,
        neural_metric="openl3_cosine",
        references=["pesq_wb", "stoi"],
        families=list(FAMILIES),
        level_order=order,
        correlations=correlations,
    )
    axes = [ax for ax in fig.axes if ax.get_xlabel()]
    assert [ax.get_xlabel() for ax in axes] == [  # speech-only metrics carry their domain
        "PESQ-WB [speech] (MOS-LQO, 1-4.64)",
        "STOI [speech] (0-1)",
    ]
    assert all(ax.get_ylabel() == "OpenL3 cosine (frame-aligned) (-1 to 1)" for ax in axes)
    assert all(ax.get_title() for ax in axes) and fig.get_suptitle()
    assert [_n_points(ax) for ax in axes] == [len(pairs), len(pairs)]
    # The fit line's legend entry quotes correlations.csv: value and CI, both methods, and n.
    row = correlations[
        (correlations["scope"] == "all")
        & (correlations["metric_x"] == "openl3_cosine")
        & (correlations["metric_y"] == "pesq_wb")
    ].iloc[0]
    text = axes[0].get_legend().get_texts()[0].get_text()
    assert (
        f"Pearson r = {row['pearson_r']:.2f} [{row['pearson_ci_low']:.2f}, {row['pearson_ci_high']:.2f}]"
        in text
    )
    assert f"Spearman ρ = {row['spearman_r']:.2f}" in text
    assert f"n = {len(pairs)}" in text
    # Figure legend: one entry per family (colour) and per severity rank (marker).
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == [
        "family: noise",
        "family: bitrate",
        "level 1: low",
        "level 2: high / medium",
        "level 3: extreme / high",
    ]
    # The fitted line is the least-squares line of the plotted points.
    line = axes[0].get_lines()[0]
    slope, intercept = np.polyfit(pairs["pesq_wb"], pairs["openl3_cosine"], 1)
    x, y = line.get_data()
    np.testing.assert_allclose(y, slope * x + intercept, rtol=1e-9)
    plots.plt.close(fig)


def test_scatter_leaves_out_nan_and_says_when_too_few_points(pairs, order):
    broken = pairs.copy()
    broken.loc[[0, 5], "openl3_cosine"] = np.nan
    fig = plots.scatter_figure(
        broken,
        neural_metric="openl3_cosine",
        references=["pesq_wb"],
        families=list(FAMILIES),
        level_order=order,
    )
    ax = fig.axes[0]
    assert _n_points(ax) == len(pairs) - 2
    # Without correlations.csv the values are computed here and say the CI is missing.
    assert "(CI n/a)" in ax.get_legend().get_texts()[0].get_text()
    plots.plt.close(fig)
    one = pairs.iloc[:1]
    fig = plots.scatter_figure(
        one,
        neural_metric="openl3_cosine",
        references=["pesq_wb"],
        families=["noise"],
        level_order=order,
    )
    text = fig.axes[0].get_legend().get_texts()[0].get_text()
    assert _n_points(fig.axes[0]) == 1
    assert text.startswith("no fit (too few points)") and "Pearson r undefined" in text
    plots.plt.close(fig)


def test_scatter_without_any_reference_column_names_the_columns(pairs, order):
    with pytest.raises(ParameterError, match=r"none of the references \['visqol'\] is a column"):
        plots.scatter_figure(
            pairs,
            neural_metric="openl3_cosine",
            references=["visqol"],
            families=list(FAMILIES),
            level_order=order,
        )


def test_heatmap_annotates_pandas_correlations_and_drops_empty_metrics(pairs):
    data = pairs.copy()
    data["cdpam_l2"] = np.nan  # a metric that failed everywhere
    metrics = ["pesq_wb", "stoi", "openl3_cosine", "cdpam_distance", "cdpam_l2"]
    fig = plots.correlation_heatmap(data, metrics, method="spearman")
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 4 * 4
    expected = data[metrics[:4]].corr(method="spearman")
    assert texts == [f"{v:.2f}" for v in expected.to_numpy().ravel()]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "PESQ-WB [speech]",
        "STOI [speech]",
        "OpenL3 cosine (frame-aligned)",
        "CDPAM distance (learned)",
    ]
    assert (
        "Spearman ρ" in ax.get_title()
        and "1 metric(s) without enough values left out" in ax.get_title()
    )
    assert fig.axes[1].get_ylabel() == "Spearman ρ (-1 to 1)"  # colour bar
    plots.plt.close(fig)
    with pytest.raises(
        ParameterError, match="method must be pearson, spearman or kendall, got 'cosine'"
    ):
        plots.correlation_heatmap(data, metrics, method="cosine")


def test_heatmap_with_one_usable_metric_says_so(pairs):
    fig = plots.correlation_heatmap(pairs.iloc[:2], ["pesq_wb", "stoi"])
    assert "no correlation to show" in fig.axes[0].texts[0].get_text()
    plots.plt.close(fig)


def test_bar_chart_heights_and_error_bars_are_the_summary(summary, order):
    metrics = ["pesq_wb", "cdpam_distance"]
    fig = plots_families.bar_chart(summary, metrics, families=list(FAMILIES), level_order=order)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 2
    ax = visible[0]
    conditions = [(f, lv) for f in FAMILIES for lv in order[f]]
    heights = [p.get_height() for p in ax.patches]
    expected = [
        summary[(summary.family == f) & (summary.level == lv)]["pesq_wb_mean"].item()
        for f, lv in conditions
    ]
    np.testing.assert_allclose(heights, expected)
    assert [t.get_text() for t in ax.get_xticklabels()][:2] == ["Noise (Low)", "Noise (High)"]
    assert ax.get_ylabel() == "PESQ-WB [speech] (MOS-LQO, 1-4.64)"
    assert "lower = closer to clean" in visible[1].get_title()
    # Error bars span exactly the CI of each bar.
    errorbar = next(c for c in ax.containers if isinstance(c, ErrorbarContainer))
    segments = errorbar.lines[2][0].get_segments()
    lows = [s[0][1] for s in segments]
    highs = [s[1][1] for s in segments]
    ci = [
        summary[(summary.family == f) & (summary.level == lv)][
            ["pesq_wb_ci_low", "pesq_wb_ci_high"]
        ]
        .to_numpy()
        .ravel()
        for f, lv in conditions
    ]
    np.testing.assert_allclose(lows, [c[0] for c in ci])
    np.testing.assert_allclose(highs, [c[1] for c in ci])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "family: noise",
        "family: bitrate",
        "95% confidence interval",
    ]
    plots.plt.close(fig)


def test_normalised_means_follow_each_metrics_direction():
    summary = pd.DataFrame(
        {
            "family": ["a", "a", "a"],
            "level": ["low", "high", "extreme"],
            "pesq_wb_mean": [4.0, 3.0, 2.0],
            "cdpam_distance_mean": [0.1, 0.3, 0.5],
            "stoi_mean": [0.9, 0.9, np.nan],
        }
    )
    cond = [("a", "low"), ("a", "high"), ("a", "extreme")]
    np.testing.assert_allclose(
        plots_families.normalised_means(summary, "pesq_wb", cond), [1.0, 0.5, 0.0]
    )
    np.testing.assert_allclose(
        plots_families.normalised_means(summary, "cdpam_distance", cond), [1.0, 0.5, 0.0]
    )
    np.testing.assert_array_equal(
        plots_families.normalised_means(summary, "stoi", cond), [1.0, 1.0, np.nan]
    )


def test_severity_curves_raw_scale_small_multiples_with_the_span(summary, order):
    fig = plots_families.severity_curves(
        summary, ["pesq_wb", "openl3_l2"], families=list(FAMILIES), level_order=order
    )
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 2
    for ax, metric in zip(visible, ["pesq_wb", "openl3_l2"], strict=True):
        assert len(ax.get_lines()) >= len(FAMILIES)
        assert ax.get_xlabel() == "severity rank of the level (1 = least severe)"
        means = summary[f"{metric}_mean"]
        # Raw means, not a 0-1 normalisation; the title prints their span.
        assert f"means span {means.min():.3g} to {means.max():.3g}" in ax.get_title()
        lines = [c.lines[0] for c in ax.containers if isinstance(c, ErrorbarContainer)]
        for fam, line in zip(FAMILIES, lines, strict=True):
            assert list(line.get_xdata()) == [1, 2, 3]
            expected = [
                summary[(summary.family == fam) & (summary.level == lv)][f"{metric}_mean"].item()
                for lv in order[fam]
            ]
            np.testing.assert_allclose(line.get_ydata(), expected)
    assert visible[0].get_ylabel() == "PESQ-WB [speech] (MOS-LQO, 1-4.64)"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["noise (low > high > extreme)", "bitrate (low > medium > high)"]
    plots.plt.close(fig)


def test_cosine_bars_take_their_axis_from_the_data_and_say_so(summary, order):
    fig = plots_families.bar_chart(
        summary, ["openl3_cosine", "pesq_wb"], families=list(FAMILIES), level_order=order
    )
    cos, pesq = [ax for ax in fig.axes if ax.get_visible()]
    means = summary["openl3_cosine_mean"]
    lo, hi = cos.get_ylim()
    assert lo > 0.3 and lo < summary["openl3_cosine_ci_low"].min()
    assert hi > summary["openl3_cosine_ci_high"].max() and hi < 1.1
    assert means.min() > lo
    assert "y axis from the data, not from 0" in cos.get_title()
    assert pesq.get_ylim()[0] == 0 and "not from 0" not in pesq.get_title()
    plots.plt.close(fig)


def test_data_ylim_keeps_zero_when_bars_show_the_differences():
    assert (
        plots_families.data_ylim(np.array([1.0, 4.0]), np.array([0.9, 3.8]), np.array([1.1, 4.2]))
        is None
    )
    assert (
        plots_families.data_ylim(
            np.array([-1.0, 2.0]), np.array([np.nan] * 2), np.array([np.nan] * 2)
        )
        is None
    )
    lo, hi = plots_families.data_ylim(
        np.array([0.97, 0.99]), np.array([0.96, 0.985]), np.array([0.98, 0.995])
    )
    assert 0.95 < lo < 0.96 and 0.995 < hi < 1.0


def test_family_small_multiples_grid_and_points(pairs, order, correlations):
    fig = plots_families.family_small_multiples(
        pairs,
        family="noise",
        neural_metrics=["openl3_cosine", "cdpam_distance"],
        references=["pesq_wb", "stoi"],
        level_order=order,
        correlations=correlations,
    )
    axes = [ax for ax in fig.axes if ax.get_xlabel()]
    assert len(axes) == 4
    n_noise = int((pairs["family"] == "noise").sum())
    assert all(_n_points(ax) == n_noise for ax in axes)
    # Colour by level: the legend lists the family's levels, then the fit with the family's CI.
    texts = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert texts[:3] == ["low", "high", "extreme"]
    row = correlations[
        (correlations["scope"] == "noise")
        & (correlations["metric_x"] == "openl3_cosine")
        & (correlations["metric_y"] == "pesq_wb")
    ].iloc[0]
    assert f"Spearman ρ = {row['spearman_r']:.2f} [{row['spearman_ci_low']:.2f}" in texts[3]
    assert "'noise'" in fig.get_suptitle()
    plots.plt.close(fig)


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_save_figure_writes_the_format_atomically(tmp_path, suffix, magic, summary, order):
    fig = plots_families.severity_curves(summary, ["stoi"], families=["noise"], level_order=order)
    out = plots.save_figure(fig, tmp_path / f"curves{suffix}", dpi=30)
    assert out.read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [f"curves{suffix}"]  # no temporary left
    assert not plots.plt.fignum_exists(fig.number)  # closed


def test_save_figure_rejects_other_formats(tmp_path):
    fig = plots.plt.figure()
    with pytest.raises(ParameterError, match=r"must end in \.png, \.svg or \.pdf, got '\.eps'"):
        plots.save_figure(fig, tmp_path / "x.eps")
    plots.plt.close(fig)
    assert list(tmp_path.iterdir()) == []


def test_vector_figures_keep_their_text_as_text(tmp_path, summary, order):
    """Figures for papers: the SVG holds <text> elements (a named font, not glyph outlines)
    and the PDF embeds TrueType (Type 42) fonts, with the axis label findable in both."""
    import re
    import xml.etree.ElementTree as ET
    import zlib

    fig = plots_families.severity_curves(summary, ["stoi"], families=["noise"], level_order=order)
    label = plots.metric_info("stoi").axis_label
    paths = plots.save_figures(
        fig, [tmp_path / "c.png", tmp_path / "c.svg", tmp_path / "c.pdf"], dpi=30
    )
    assert [p.read_bytes()[:4] for p in paths] == [b"\x89PNG", b"<?xm", b"%PDF"]
    assert not plots.plt.fignum_exists(fig.number)  # closed once, after every format
    texts = [
        "".join(el.itertext())
        for el in ET.parse(paths[1]).iter()
        if el.tag.endswith("}text") or el.tag == "text"
    ]
    assert label in texts, texts[:10]
    assert b"<path" in paths[1].read_bytes()  # the lines are still drawn
    pdf = paths[2].read_bytes()
    # Type 42: a TrueType font (matplotlib writes it as a CID font) embedded as /FontFile2.
    assert re.search(rb"/Subtype\s*/(TrueType|CIDFontType2)", pdf) and b"/FontFile2" in pdf
    assert b"/Type3" not in pdf
    streams = [
        zlib.decompress(m.group(1))
        for m in re.finditer(rb"stream\r?\n(.*?)endstream", pdf, re.S)
        if m.group(1)[:1] == b"x"
    ]
    assert any(b"Tj" in st or b"TJ" in st for st in streams)  # text-showing operators
    assert math.isfinite(plots.PANEL_WIDTH_IN)
