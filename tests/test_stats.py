"""Statistics: correlations against scipy, the cluster bootstrap, summaries, monotonicity."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from perceptual_audio import stats
from perceptual_audio.errors import ParameterError


def clustered_sample(rng, n_clusters, per_cluster, rho, *, decimals=None):
    """Bivariate normal pairs with correlation ``rho``; cluster labels; optional ties."""
    cov = [[1.0, rho], [rho, 1.0]]
    xy = rng.multivariate_normal([0, 0], cov, size=n_clusters * per_cluster)
    if decimals is not None:
        xy = np.round(xy, decimals)
    clusters = np.repeat([f"rec{i}" for i in range(n_clusters)], per_cluster)
    return xy[:, 0], xy[:, 1], clusters


# -- point estimates -------------------------------------------------------------------------
def test_point_estimates_and_p_values_are_scipys(rng):
    x, y, clusters = clustered_sample(rng, 20, 3, 0.5, decimals=1)
    r = stats.correlate(x, y, clusters, n_bootstrap=0)
    for method, fn in (
        ("pearson", sps.pearsonr),
        ("spearman", sps.spearmanr),
        ("kendall", sps.kendalltau),
    ):
        res = fn(x, y)
        assert r[method] == res.statistic
        assert r[f"{method}_p"] == res.pvalue
        assert math.isnan(r[f"{method}_ci_low"])
    assert (r["n"], r["n_recordings"]) == (60, 20)


def test_known_data_values():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    y = np.array([2.0, 1.0, 4.0, 3.0, 5.0])
    r = stats.correlate(x, y, ["a", "b", "c", "d", "e"], n_bootstrap=0)
    assert r["pearson"] == pytest.approx(0.8)
    assert r["spearman"] == pytest.approx(0.8)
    assert r["kendall"] == pytest.approx(0.6)  # 8 concordant, 2 discordant of 10 pairs


# -- the vectorised bootstrap -----------------------------------------------------------------
def test_each_replicate_equals_scipy_on_the_replicated_sample(rng):
    x, y, clusters = clustered_sample(rng, 12, 4, 0.4, decimals=1)  # many ties
    n_boot = 8
    reps = stats.bootstrap_correlations(
        x, y, clusters, n_bootstrap=n_boot, rng=np.random.default_rng(5)
    )
    weights = stats.bootstrap_weights(12, n_boot, np.random.default_rng(5))
    codes = np.unique(clusters, return_inverse=True)[1]
    for b in range(n_boot):
        idx = np.repeat(np.arange(len(x)), weights[b][codes])  # whole recordings repeated
        assert reps["pearson"][b] == pytest.approx(sps.pearsonr(x[idx], y[idx])[0], abs=1e-12)
        assert reps["spearman"][b] == pytest.approx(sps.spearmanr(x[idx], y[idx])[0], abs=1e-12)
        assert reps["kendall"][b] == pytest.approx(sps.kendalltau(x[idx], y[idx])[0], abs=1e-12)


def test_bootstrap_weights_draw_whole_clusters(rng):
    w = stats.bootstrap_weights(7, 500, rng)
    assert w.shape == (500, 7)
    assert np.all(w.sum(axis=1) == 7)
    assert w.mean() == pytest.approx(1.0, abs=0.05)


def test_cis_cover_the_true_correlation():
    rho = 0.6
    truth = {
        "pearson": rho,
        "spearman": 6 / math.pi * math.asin(rho / 2),
        "kendall": 2 / math.pi * math.asin(rho),
    }
    rng = np.random.default_rng(2024)
    n_sets = 60
    covered = {m: 0 for m in truth}
    for k in range(n_sets):
        x, y, clusters = clustered_sample(rng, 50, 1, rho)
        r = stats.correlate(x, y, clusters, n_bootstrap=400, seed=k)
        for m in truth:
            assert r[f"{m}_ci_low"] < r[m] < r[f"{m}_ci_high"]
            covered[m] += r[f"{m}_ci_low"] <= truth[m] <= r[f"{m}_ci_high"]
    for m, c in covered.items():
        # Nominal 95 %; percentile intervals at n = 50 run a little narrow.
        assert c / n_sets >= 0.85, f"{m}: {c}/{n_sets} intervals contain the true value"


def test_cluster_bootstrap_widens_for_clustered_pairs():
    # Pairs of one recording share a recording effect: the effective sample is the recordings.
    rng = np.random.default_rng(11)
    n_rec, per = 15, 8
    effect = rng.multivariate_normal([0, 0], [[1, 0.5], [0.5, 1]], size=n_rec)
    xy = np.repeat(effect, per, axis=0) + 0.3 * rng.standard_normal((n_rec * per, 2))
    clusters = np.repeat(np.arange(n_rec), per)
    by_recording = stats.correlate(xy[:, 0], xy[:, 1], clusters, n_bootstrap=1000, seed=1)
    by_pair = stats.correlate(xy[:, 0], xy[:, 1], np.arange(n_rec * per), n_bootstrap=1000, seed=1)
    width = lambda r: r["pearson_ci_high"] - r["pearson_ci_low"]  # noqa: E731
    assert width(by_recording) > 1.8 * width(by_pair)


def test_same_seed_same_interval_and_fast(rng):
    import time

    x, y, clusters = clustered_sample(rng, 100, 9, 0.3)
    t0 = time.perf_counter()
    a = stats.correlate(x, y, clusters, n_bootstrap=1000, seed=3)
    elapsed = time.perf_counter() - t0
    b = stats.correlate(x, y, clusters, n_bootstrap=1000, seed=3)
    assert a == b
    assert elapsed < 5.0, f"900 pairs x 1000 replicates took {elapsed:.1f} s"


# -- missing values and degenerate input ------------------------------------------------------
def test_nan_and_inf_pairs_are_left_out(rng):
    x, y, clusters = clustered_sample(rng, 10, 2, 0.7)
    x2, y2 = x.copy(), y.copy()
    x2[3], y2[7], x2[11] = np.nan, np.inf, -np.inf
    keep = np.ones(20, bool)
    keep[[3, 7, 11]] = False
    r = stats.correlate(x2, y2, clusters, n_bootstrap=200, seed=0)
    ref = stats.correlate(x[keep], y[keep], clusters[keep], n_bootstrap=200, seed=0)
    assert r == ref
    assert r["n"] == 17


def test_no_interval_from_too_few_recordings(rng):
    x, y, clusters = clustered_sample(rng, stats.MIN_RECORDINGS_FOR_CI - 1, 5, 0.5)
    r = stats.correlate(x, y, clusters, n_bootstrap=200)
    assert r["n"] == 5 * (stats.MIN_RECORDINGS_FOR_CI - 1) and not math.isnan(r["pearson"])
    assert math.isnan(r["pearson_ci_low"]) and math.isnan(r["kendall_ci_high"])


def test_too_few_or_constant_values_give_nan():
    r = stats.correlate([1.0, 2.0], [1.0, 3.0], ["a", "b"], n_bootstrap=10)
    assert r["n"] == 2 and math.isnan(r["pearson"]) and math.isnan(r["kendall_ci_low"])
    r = stats.correlate([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0], list("abcd"))
    assert math.isnan(r["spearman"])
    with pytest.raises(ParameterError, match="x, y and clusters must have one length, got 3, 3, 2"):
        stats.correlate([1, 2, 3], [1, 2, 3], ["a", "b"])
    with pytest.raises(ParameterError, match=r"confidence must be in \(0, 1\), got 1.5"):
        stats.correlate([1, 2, 3], [1, 2, 3], list("abc"), confidence=1.5)


# -- tables ------------------------------------------------------------------------------------
#: Families and levels of :func:`synthetic_pairs`, mildest first (what stage 2 records).
SYNTHETIC_LEVELS = {
    "noise": ["low", "high", "extreme"],
    "compression": ["mild", "strong", "extreme"],
}


def synthetic_pairs(rng, n_rec=8):
    """Two families x three levels; scores fall (distances rise) with severity."""
    rows = []
    for family, lv in SYNTHETIC_LEVELS.items():
        for k, level in enumerate(lv):
            for i in range(n_rec):
                quality = 4.0 - k - 0.3 * rng.random()
                rows.append(
                    {
                        "reference_path": f"clean/r{i}.wav",
                        "degraded_path": f"degraded/{family}/{level}/r{i}.wav",
                        "family": family,
                        "level": level,
                        "pesq_wb": quality,
                        "m_cosine": 0.9 + 0.02 * quality + 0.001 * rng.standard_normal(),
                        "m_l2": 10 - quality,
                    }
                )
    return pd.DataFrame(rows)


def test_level_order_follows_the_record_never_the_level_names():
    recorded = {"noise": ["low", "high", "extreme"], "custom": ["snr30", "snr10", "snr3"]}
    order = stats.level_order(
        {
            "noise": ["extreme", "low", "high", "low"],
            "custom": ["snr3", "snr30", "snr10"],
            "compression": ["strong", "extreme", "mild"],
        },
        recorded,
    )
    assert order == {
        "noise": ["low", "high", "extreme"],
        "custom": ["snr30", "snr10", "snr3"],  # the record's order, not the names'
        "compression": ["extreme", "mild", "strong"],  # not recorded: name order
    }
    # Levels the record does not list follow in name order; recorded levels absent drop out.
    assert stats.level_order({"noise": ["zeta", "high", "alpha"]}, recorded) == {
        "noise": ["high", "alpha", "zeta"]
    }
    # Without a record nothing is guessed from the names.
    assert stats.level_order({"noise": ["low", "high"]}) == {"noise": ["high", "low"]}


def test_summary_by_degradation_t_interval(rng):
    df = synthetic_pairs(rng)
    df.loc[0, "pesq_wb"] = np.nan  # a failed cell is left out, not counted as a value
    s = stats.summary_by_degradation(df, ["pesq_wb", "m_cosine"], SYNTHETIC_LEVELS)
    assert list(s[["family", "level"]].itertuples(index=False, name=None)) == [
        ("compression", "mild"),
        ("compression", "strong"),
        ("compression", "extreme"),
        ("noise", "low"),
        ("noise", "high"),
        ("noise", "extreme"),
    ]
    row = s[(s.family == "noise") & (s.level == "low")].iloc[0]
    vals = df[(df.family == "noise") & (df.level == "low")]["pesq_wb"].dropna().to_numpy()
    half = sps.t.ppf(0.975, len(vals) - 1) * vals.std(ddof=1) / math.sqrt(len(vals))
    assert row["n_pairs"] == 8 and row["pesq_wb_n"] == 7
    assert row["pesq_wb_mean"] == pytest.approx(vals.mean())
    assert row["pesq_wb_ci_low"] == pytest.approx(vals.mean() - half)
    assert row["pesq_wb_ci_high"] == pytest.approx(vals.mean() + half)


def test_correlation_table_scopes_and_pairs(rng):
    df = synthetic_pairs(rng)
    pairs = stats.metric_pairs(["m_cosine", "m_l2"], ["pesq_wb", "stoi"])
    assert pairs == [
        ("m_cosine", "pesq_wb"),
        ("m_cosine", "stoi"),
        ("m_l2", "pesq_wb"),
        ("m_l2", "stoi"),
        ("pesq_wb", "stoi"),
    ]
    t = stats.correlation_table(df, pairs, n_bootstrap=200, seed=0)
    # "stoi" is not a column: its pairs are skipped.
    assert set(t["scope"]) == {"all", "compression", "noise"}
    assert len(t) == 3 * 2
    allrow = t[(t.scope == "all") & (t.metric_x == "m_l2")].iloc[0]
    assert allrow["n"] == 48 and allrow["n_recordings"] == 8
    assert allrow["pearson"] == pytest.approx(-1.0)
    noise = df[df.family == "noise"]
    r = stats.correlate(
        noise["m_cosine"],
        noise["pesq_wb"],
        noise["reference_path"],
        n_bootstrap=200,
        seed=stats.stable_seed(0, "noise", "m_cosine", "pesq_wb"),
    )
    got = t[(t.scope == "noise") & (t.metric_x == "m_cosine")].iloc[0]
    assert got["spearman"] == r["spearman"] and got["spearman_ci_low"] == r["spearman_ci_low"]


def test_monotonicity_directions(rng):
    df = synthetic_pairs(rng)
    # Recording r0 of noise: cosine rises from low to high (a wrong move).
    sel = (df.family == "noise") & (df.reference_path == "clean/r0.wav")
    df.loc[sel & (df.level == "high"), "m_cosine"] = 2.0
    m = stats.monotonicity(df, ["pesq_wb", "m_cosine", "m_l2"], SYNTHETIC_LEVELS)
    get = lambda fam, met, step: m[(m.family == fam) & (m.metric == met) & (m.step == step)].iloc[0]  # noqa: E731
    assert get("noise", "pesq_wb", "low->high")["fraction_right"] == 1.0
    assert get("noise", "m_l2", "all")["direction"] == "rises"
    assert get("noise", "m_l2", "all")["fraction_monotone"] == 1.0
    assert get("noise", "m_cosine", "low->high")["fraction_right"] == pytest.approx(7 / 8)
    assert get("noise", "m_cosine", "high->extreme")["fraction_right"] == 1.0
    assert get("noise", "m_cosine", "all")["fraction_right"] == pytest.approx(15 / 16)
    assert get("noise", "m_cosine", "all")["fraction_monotone"] == pytest.approx(7 / 8)
    assert get("compression", "m_cosine", "mild->strong")["n_recordings"] == 8


def test_metric_direction():
    assert stats.higher_is_better("pesq_wb") and stats.higher_is_better("openl3_cosine_pooled")
    assert not stats.higher_is_better("vggish_l2")
    assert not stats.higher_is_better("cdpam_distance")
