"""Statistics over the pair table: correlations with cluster-bootstrap CIs, per-degradation
summaries, and monotonicity of each metric along each family's severity levels.

Pairs are not independent: every degraded file of one clean recording shares that
recording. Confidence intervals therefore come from a *cluster* bootstrap (Davison & Hinkley
1997, sec. 3.8; Field & Welsh 2007): each replicate draws the clean recordings with
replacement and keeps all pairs of every drawn recording. The replicates are evaluated all at
once: drawing recordings with replacement is the same as giving each recording an integer
weight (how often it was drawn), so every replicate's Pearson, Spearman and Kendall
coefficients are weighted sums over recordings, computed as matrix products. With integer
weights they equal the coefficients scipy computes on the explicitly replicated sample.

The p-values are scipy's (``pearsonr``, ``spearmanr``, ``kendalltau``, tau-b); they assume
independent pairs and so are optimistic when a recording contributes several pairs: read the
bootstrap CI first.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from perceptual_audio import metrics
from perceptual_audio.errors import ParameterError
from perceptual_audio.results import (
    CORRELATION_METHODS as METHODS,  # one list; results owns the table
)

logger = logging.getLogger(__name__)

#: Coverage of every confidence interval.
CONFIDENCE = 0.95
#: Default number of bootstrap replicates.
N_BOOTSTRAP = 1000
#: Fewest pairs for a correlation (fewer gives NaN).
MIN_PAIRS = 3
#: Fewest clean recordings for a bootstrap CI: with fewer, resampling recordings gives only a
#: handful of distinct replicates (2 recordings: 3), and the "interval" would mislead.
MIN_RECORDINGS_FOR_CI = 5
#: Scope name of the rows computed over all pairs (the other scopes are family names).
ALL_SCOPE = "all"


# -- metric direction -----------------------------------------------------------------------
def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` means closer to the reference.

    The metric catalogue owns the answer (:func:`perceptual_audio.metrics.higher_is_better`):
    similarities and quality scores (cosines, PESQ, STOI, ViSQOL, DNSMOS, Zimtohrli MOS)
    should fall as a degradation gets more severe; distances (L2, CDPAM, Zimtohrli) rise.
    """

    return metrics.higher_is_better(metric)


def metric_columns(columns: Iterable[str]) -> list[str]:
    """The metric columns among ``columns`` (as the catalogue knows them), in their order."""

    return [c for c in columns if metrics.is_metric_column(c)]


# -- level order ----------------------------------------------------------------------------
def level_order(
    family_levels: Mapping[str, Iterable[str]],
    recorded: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, list[str]]:
    """Order (mildest first) of the levels present in each family.

    The order is the one stage 2 recorded (``recorded``: ``level_order`` of
    ``degraded/run.json``, :func:`perceptual_audio.manifest.read_level_order`); levels it does
    not list (a family stage 2 did not record, a listening test's conditions) follow in name
    order. Level names are never read for severity.
    """
    recorded = recorded or {}
    out: dict[str, list[str]] = {}
    for family, levels in family_levels.items():
        present = set(levels)
        known = [lv for lv in recorded.get(family, ()) if lv in present]
        out[family] = known + sorted(present - set(known))
    return out


# -- bootstrap core -------------------------------------------------------------------------
def _cluster_codes(clusters: Sequence) -> tuple[np.ndarray, int]:
    _, codes = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    return codes.ravel(), int(codes.max()) + 1 if len(codes) else 0


def bootstrap_weights(n_clusters: int, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """How often each cluster is drawn in each replicate: (n_bootstrap, n_clusters) ints.

    Equivalent to drawing ``n_clusters`` clusters with replacement per replicate.
    """
    return rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=n_bootstrap)


def _indicator(codes: np.ndarray, n_groups: int) -> np.ndarray:
    a = np.zeros((len(codes), n_groups))
    a[np.arange(len(codes)), codes] = 1.0
    return a


def weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson r of each weighted sample.

    Parameters
    ----------
    x, y : np.ndarray [shape=(n,) or (B, n)]
    w : np.ndarray [shape=(B, n)]
        Non-negative weights (integer weights = repeated observations).

    Returns
    -------
    np.ndarray [shape=(B,)]
        NaN where a weighted sample has no spread in ``x`` or ``y``.
    """
    total = w.sum(axis=1, keepdims=True)
    mx = (w * x).sum(axis=1, keepdims=True) / total
    my = (w * y).sum(axis=1, keepdims=True) / total
    dx = x - mx
    dy = y - my
    sxy = (w * dx * dy).sum(axis=1)
    sxx = (w * dx * dx).sum(axis=1)
    syy = (w * dy * dy).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sxy / np.sqrt(sxx * syy)
    # Spread below rounding noise is no spread.
    scale_x = np.maximum(np.abs(x).max(), 1e-300) ** 2 * total[:, 0]
    scale_y = np.maximum(np.abs(y).max(), 1e-300) ** 2 * total[:, 0]
    degenerate = (sxx <= 1e-24 * scale_x) | (syy <= 1e-24 * scale_y)
    r = np.where(degenerate, np.nan, np.clip(r, -1.0, 1.0))
    return r


def _tie_groups(v: np.ndarray) -> tuple[np.ndarray, int]:
    """Group index of each value (equal values share a group; groups sorted by value)."""
    _, inverse = np.unique(v, return_inverse=True)
    return inverse.ravel(), int(inverse.max()) + 1


def weighted_midranks(v: np.ndarray, group_weights: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Mid-ranks (ties averaged, 1-based) of ``v`` in each weighted sample.

    Parameters
    ----------
    v : np.ndarray [shape=(n,)]
    group_weights : np.ndarray [shape=(B, G)]
        Total weight of each tie group of ``v`` (groups in increasing value order).
    groups : np.ndarray [shape=(n,)]
        Tie group of each observation.

    Returns
    -------
    np.ndarray [shape=(B, n)]
        The rank that scipy's ``rankdata`` gives each observation in the replicated sample.
    """
    below = np.cumsum(group_weights, axis=1) - group_weights
    ranks = below + (group_weights + 1.0) / 2.0
    return ranks[:, groups]


def _kendall_sign_matrix(
    x: np.ndarray, y: np.ndarray, codes: np.ndarray, n_clusters: int, block: int = 2048
) -> np.ndarray:
    """(C, C) matrix of summed sign(dx) sign(dy) between the pairs of clusters a and b."""
    a = _indicator(codes, n_clusters)
    out = np.zeros((n_clusters, n_clusters))
    for start in range(0, len(x), block):
        sl = slice(start, start + block)
        s = np.sign(x[sl, None] - x[None, :]) * np.sign(y[sl, None] - y[None, :])
        out += a[sl].T @ s @ a
    return out


def bootstrap_correlations(
    x: np.ndarray,
    y: np.ndarray,
    clusters: Sequence,
    *,
    n_bootstrap: int = N_BOOTSTRAP,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Pearson, Spearman and Kendall tau-b of every cluster-bootstrap replicate.

    Parameters
    ----------
    x, y : np.ndarray [shape=(n,)]
        Finite paired values.
    clusters : sequence [length n]
        Cluster label of each pair (its clean recording); clusters are resampled, not pairs.
    n_bootstrap : int
        Replicates.
    rng : np.random.Generator

    Returns
    -------
    dict
        method -> np.ndarray [shape=(n_bootstrap,)] (NaN for degenerate replicates).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    codes, n_clusters = _cluster_codes(clusters)
    wc = bootstrap_weights(n_clusters, n_bootstrap, rng).astype(np.float64)  # (B, C)
    w = wc[:, codes]  # (B, n): a pair weighs as much as its cluster was drawn
    out = {"pearson": weighted_pearson(x, y, w)}

    gx, n_gx = _tie_groups(x)
    gy, n_gy = _tie_groups(y)
    # Total weight of each tie group: (B, C) @ (C, G).
    tx = wc @ (_indicator(codes, n_clusters).T @ _indicator(gx, n_gx))
    ty = wc @ (_indicator(codes, n_clusters).T @ _indicator(gy, n_gy))
    out["spearman"] = weighted_pearson(
        weighted_midranks(x, tx, gx), weighted_midranks(y, ty, gy), w
    )

    # Kendall tau-b on the replicated sample: copies of one pair are tied in x and y.
    total = w.sum(axis=1)
    n0 = total * (total - 1) / 2
    n1 = (tx * (tx - 1) / 2).sum(axis=1)
    n2 = (ty * (ty - 1) / 2).sum(axis=1)
    s_matrix = _kendall_sign_matrix(x, y, codes, n_clusters)
    s = 0.5 * np.einsum("bi,ij,bj->b", wc, s_matrix, wc)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = s / np.sqrt((n0 - n1) * (n0 - n2))
    tau = np.where((n0 - n1 <= 0) | (n0 - n2 <= 0), np.nan, np.clip(tau, -1.0, 1.0))
    out["kendall"] = tau
    return out


def stable_seed(*parts: object) -> int:
    """A seed that depends only on ``parts`` (crc32 of their text): the same bootstrap draws
    for the same metric pair or level in every run and process."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode())


def correlate(
    x: np.ndarray,
    y: np.ndarray,
    clusters: Sequence,
    *,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, float]:
    """Pearson, Spearman and Kendall (tau-b) of ``x`` and ``y`` with p-values and cluster-
    bootstrap percentile CIs; pairs where either value is NaN or infinite are left out.

    Parameters
    ----------
    x, y : array-like [shape=(n,)]
    clusters : sequence [length n]
        Clean recording of each pair.
    n_bootstrap : int
        Replicates (0: no CIs). CIs are NaN with fewer than :data:`MIN_RECORDINGS_FOR_CI`
        recordings.
    seed : int
        Seeds the replicates (the same seed gives the same CIs).
    confidence : float
        Coverage of the intervals, in (0, 1).

    Returns
    -------
    dict
        ``n``, ``n_recordings``, and per method ``<m>`` (coefficient), ``<m>_p``,
        ``<m>_ci_low``, ``<m>_ci_high``.
    """
    from scipy import stats  # deferred: scipy.stats is slow to import

    if not 0 < confidence < 1:
        raise ParameterError(f"confidence must be in (0, 1), got {confidence}")
    if n_bootstrap < 0:
        raise ParameterError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    clusters = np.asarray(clusters, dtype=object)
    if not (len(x) == len(y) == len(clusters)):
        raise ParameterError(
            f"x, y and clusters must have one length, got {len(x)}, {len(y)}, {len(clusters)}"
        )
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, clusters = x[keep], y[keep], clusters[keep]
    n = len(x)
    n_rec = len(set(clusters.tolist()))
    row: dict[str, float] = {"n": n, "n_recordings": n_rec}
    for m in METHODS:
        row.update(
            {m: math.nan, f"{m}_p": math.nan, f"{m}_ci_low": math.nan, f"{m}_ci_high": math.nan}
        )
    if n < MIN_PAIRS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return row
    with np.errstate(all="ignore"):
        pr = stats.pearsonr(x, y)
        sr = stats.spearmanr(x, y)
        kr = stats.kendalltau(x, y)
    row["pearson"], row["pearson_p"] = float(pr.statistic), float(pr.pvalue)
    row["spearman"], row["spearman_p"] = float(sr.statistic), float(sr.pvalue)
    row["kendall"], row["kendall_p"] = float(kr.statistic), float(kr.pvalue)
    if n_bootstrap > 0 and n_rec >= MIN_RECORDINGS_FOR_CI:
        rng = np.random.default_rng(seed)
        reps = bootstrap_correlations(x, y, clusters, n_bootstrap=n_bootstrap, rng=rng)
        alpha = (1 - confidence) / 2
        for m in METHODS:
            valid = reps[m][np.isfinite(reps[m])]
            if len(valid) >= max(10, n_bootstrap // 2):
                lo, hi = np.quantile(valid, [alpha, 1 - alpha])
                row[f"{m}_ci_low"], row[f"{m}_ci_high"] = float(lo), float(hi)
    return row


def metric_pairs(neural: Sequence[str], classic: Sequence[str]) -> list[tuple[str, str]]:
    """Every neural metric against every classic one, then each pair of classic metrics."""
    pairs = [(n, c) for n in neural for c in classic]
    pairs += [(a, b) for i, a in enumerate(classic) for b in classic[i + 1 :]]
    return pairs


def correlation_table(
    pairs: pd.DataFrame,
    metric_pairs: Sequence[tuple[str, str]],
    *,
    cluster_column: str = "reference_path",
    family_column: str = "family",
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """Correlations of metric pairs over all pairs and within each family.

    Parameters
    ----------
    pairs : pd.DataFrame
        One row per clean/degraded pair (``pair_metrics.csv``).
    metric_pairs : sequence of (str, str)
        Columns to correlate (``metric_x``, ``metric_y``).
    cluster_column : str
        Clean recording of each pair (the bootstrap resamples these).
    family_column : str
        Degradation family; one scope per family plus ``"all"``.
    n_bootstrap, seed, confidence
        As in :func:`correlate`; each (scope, x, y) gets its own stream from ``seed``, so a
        row does not depend on which other rows are computed.

    Returns
    -------
    pd.DataFrame
        Columns ``scope, metric_x, metric_y, n, n_recordings`` then per method
        ``<m>, <m>_ci_low, <m>_ci_high, <m>_p``.
    """
    columns = ["scope", "metric_x", "metric_y", "n", "n_recordings"]
    for m in METHODS:
        columns += [m, f"{m}_ci_low", f"{m}_ci_high", f"{m}_p"]
    scopes: list[tuple[str, pd.DataFrame]] = [(ALL_SCOPE, pairs)]
    if family_column in pairs:
        scopes += [(str(f), g) for f, g in pairs.groupby(family_column, sort=True)]
    rows = []
    for scope, frame in scopes:
        for mx, my in metric_pairs:
            if mx not in frame or my not in frame:
                continue
            r = correlate(
                frame[mx].to_numpy(float),
                frame[my].to_numpy(float),
                frame[cluster_column].to_numpy(object),
                n_bootstrap=n_bootstrap,
                seed=stable_seed(seed, scope, mx, my),
                confidence=confidence,
            )
            rows.append({"scope": scope, "metric_x": mx, "metric_y": my, **r})
    return pd.DataFrame(rows, columns=columns)


# -- per-degradation summary ----------------------------------------------------------------
def mean_ci(
    values: np.ndarray,
    confidence: float = CONFIDENCE,
    *,
    bounds: tuple[float | None, float | None] = (None, None),
) -> tuple[float, float, float, int]:
    """Mean and Student-t confidence interval of the finite values.

    ``bounds`` is the range of the metric's values (None: unbounded): the interval is clipped
    to it, so that STOI's never passes 1. Clipping keeps the coverage: the true mean lies
    inside the range, so it is in the clipped interval whenever it is in the t-interval.

    Returns
    -------
    (mean, ci_low, ci_high, n)
        The interval is NaN with fewer than 2 values.
    """
    from scipy import stats  # deferred: scipy.stats is slow to import

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(v.mean())
    if n < 2:
        return mean, math.nan, math.nan, n
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    low, high = mean - half, mean + half
    if bounds[0] is not None:
        low = max(low, bounds[0])
    if bounds[1] is not None:
        high = min(high, bounds[1])
    return mean, low, high, n


def summary_by_degradation(
    pairs: pd.DataFrame,
    metrics: Sequence[str],
    order: Mapping[str, Sequence[str]] | None = None,
    *,
    confidence: float = CONFIDENCE,
    bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
) -> pd.DataFrame:
    """Per family and level: the number of pairs and, per metric, mean, t-interval and n.

    Only finite values count (a failed cell is NaN; SI-SDR of an exact copy is +inf).
    ``bounds`` gives a metric's value range, to which its interval is clipped (:func:`mean_ci`).

    Returns
    -------
    pd.DataFrame
        ``family, level, n_pairs`` then per metric ``<m>_mean, <m>_ci_low, <m>_ci_high, <m>_n``;
        rows in family order, levels mildest first.
    """
    if order is None:
        order = level_order({f: g["level"] for f, g in pairs.groupby("family")})
    columns = ["family", "level", "n_pairs"]
    for m in metrics:
        columns += [f"{m}_mean", f"{m}_ci_low", f"{m}_ci_high", f"{m}_n"]
    rows = []
    for family in sorted(order):
        for level in order[family]:
            g = pairs[(pairs["family"] == family) & (pairs["level"] == level)]
            if g.empty:
                continue
            row: dict[str, object] = {"family": family, "level": level, "n_pairs": len(g)}
            for m in metrics:
                vals = g[m].to_numpy(float) if m in g else np.array([])
                mean, lo, hi, n = mean_ci(
                    vals, confidence, bounds=(bounds or {}).get(m, (None, None))
                )
                row.update({f"{m}_mean": mean, f"{m}_ci_low": lo, f"{m}_ci_high": hi, f"{m}_n": n})
            rows.append(row)
    return pd.DataFrame(rows, columns=columns)


# -- monotonicity ---------------------------------------------------------------------------
def monotonicity(
    pairs: pd.DataFrame,
    metrics: Sequence[str],
    order: Mapping[str, Sequence[str]] | None = None,
    *,
    recording_column: str = "reference_path",
) -> pd.DataFrame:
    """Does each metric move the right way at each step up in severity, recording by recording?

    For a family with levels ``l1 < l2 < ... < lk`` and a metric, step ``l_i -> l_{i+1}``
    counts the recordings with a finite score at both levels, and the fraction of them whose
    score moves strictly the right way (down for similarities and quality scores, up for
    distances; see :func:`higher_is_better`). A tie is not a right move. Row ``step = "all"``
    pools every step; ``fraction_monotone`` there is the fraction of recordings (finite at
    every level) that move the right way at every step.

    Returns
    -------
    pd.DataFrame
        ``family, metric, direction, step, n_recordings, fraction_right, fraction_monotone``.
    """
    if order is None:
        order = level_order({f: g["level"] for f, g in pairs.groupby("family")})
    rows = []
    for family in sorted(order):
        levels = list(order[family])
        fam = pairs[pairs["family"] == family]
        if len(levels) < 2 or fam.empty:
            continue
        for m in metrics:
            if m in fam:
                wide = fam.pivot_table(
                    index=recording_column, columns="level", values=m, aggfunc="first", dropna=False
                )
                values = wide.reindex(columns=levels).to_numpy(float)
                rows += _monotonicity_rows(family, m, levels, values)
    return pd.DataFrame(rows, columns=MONOTONICITY_COLUMNS)


#: Columns of :func:`monotonicity`'s table.
MONOTONICITY_COLUMNS = (
    "family",
    "metric",
    "direction",
    "step",
    "n_recordings",
    "fraction_right",
    "fraction_monotone",
)


def _monotonicity_rows(
    family: str, metric: str, levels: Sequence[str], values: np.ndarray
) -> list[dict[str, object]]:
    """One family's and metric's rows: each step, then ``all``. ``values`` is (recordings,
    levels) in severity order."""
    sign = -1.0 if higher_is_better(metric) else 1.0  # required sign of (next - previous)
    head = {"family": family, "metric": metric, "direction": "falls" if sign < 0 else "rises"}
    rows: list[dict[str, object]] = []
    right_all = n_all = 0
    for i in range(len(levels) - 1):
        a, b = values[:, i], values[:, i + 1]
        ok = np.isfinite(a) & np.isfinite(b)
        right = np.sign(b[ok] - a[ok]) == sign
        n = int(ok.sum())
        right_all += int(right.sum())
        n_all += n
        rows.append(
            {
                **head,
                "step": f"{levels[i]}->{levels[i + 1]}",
                "n_recordings": n,
                "fraction_right": right.mean() if n else math.nan,
                "fraction_monotone": math.nan,
            }
        )
    complete = np.all(np.isfinite(values), axis=1)
    monotone = (np.sign(np.diff(values[complete], axis=1)) == sign).all(axis=1)
    rows.append(
        {
            **head,
            "step": "all",
            "n_recordings": int(complete.sum()),
            "fraction_right": right_all / n_all if n_all else math.nan,
            "fraction_monotone": monotone.mean() if len(monotone) else math.nan,
        }
    )
    return rows
