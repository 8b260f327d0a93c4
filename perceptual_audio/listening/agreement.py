"""Agreement of every metric with the listeners (bootstrap CIs, monotonic mapping) and the split-half listener ceiling."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.stats import rankdata

from perceptual_audio import stats
from perceptual_audio.listening.notes import ceiling_blocker, ceiling_note, metric_note
from perceptual_audio.listening.study import (
    StudyRatings,
)
from perceptual_audio.listening.table import (
    AGREEMENT_COLUMNS,
    CEILING,
    CEILING_SPLITS,
    LEVEL_FILE,
    LEVELS,
    MAPPING_GRID_POINTS,
    MAPPING_PARAMETERS,
    METHODS,
    MIN_RATED_FILES,
)
from perceptual_audio.stats import (
    MIN_RECORDINGS_FOR_CI,
    bootstrap_weights,
    stable_seed,
    weighted_pearson,
)

logger = logging.getLogger(__name__)


# Statistics
# =============================================================================================
def rowwise_correlations(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Pearson, Spearman and Kendall tau-b of each row of ``x`` against the same row of ``y``.

    Parameters
    ----------
    x, y : np.ndarray [shape=(B, n)]
        Finite values; meant for small ``n`` (conditions), as Kendall uses all n^2 pairs.

    Returns
    -------
    dict
        method -> np.ndarray [shape=(B,)] (NaN where a row has no spread).
    """
    x = np.atleast_2d(np.asarray(x, dtype=float))
    y = np.atleast_2d(np.asarray(y, dtype=float))
    w = np.ones_like(x)
    out = {
        "pearson": weighted_pearson(x, y, w),
        "spearman": weighted_pearson(rankdata(x, axis=1), rankdata(y, axis=1), w),
    }
    i, j = np.triu_indices(x.shape[1], k=1)
    dx = np.sign(x[:, i] - x[:, j])
    dy = np.sign(y[:, i] - y[:, j])
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = (dx * dy).sum(axis=1) / np.sqrt((dx != 0).sum(axis=1) * (dy != 0).sum(axis=1))
    out["kendall"] = np.clip(tau, -1.0, 1.0)
    return out


def _percentile_ci(reps: np.ndarray, n_bootstrap: int, confidence: float) -> tuple[float, float]:
    valid = reps[np.isfinite(reps)]
    if n_bootstrap <= 0 or len(valid) < max(10, n_bootstrap // 2):
        return math.nan, math.nan
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(valid, [alpha, 1 - alpha])
    return float(lo), float(hi)


@dataclass(frozen=True)
class CubicMapping:
    """P.1401 third-order mapping ``y = a0 + a1 u + a2 u^2 + a3 u^3``, ``u = (x - x0) / scale``."""

    coefficients: tuple[float, float, float, float]
    x0: float
    scale: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        u = (np.asarray(x, dtype=float) - self.x0) / self.scale
        a = self.coefficients
        return a[0] + a[1] * u + a[2] * u**2 + a[3] * u**3


def monotonic_cubic_fit(x: np.ndarray, y: np.ndarray, *, increasing: bool) -> CubicMapping:
    """Least-squares third-order polynomial from metric ``x`` to rating ``y``, monotonic on
    the observed range of ``x`` (ITU-T P.1401, sec. 7.3 / 8.2).

    Method: ``x`` is scaled to ``u`` in [0, 1]; the unconstrained cubic least-squares fit is
    taken when its slope has the required sign at :data:`MAPPING_GRID_POINTS` points of
    [0, 1]; otherwise the squared error is minimised by SLSQP under those slope constraints,
    starting from the best monotonic straight line. ``increasing`` is the metric's direction
    (:func:`perceptual_audio.stats.higher_is_better`), so a metric that orders the files the
    wrong way is not rescued by a decreasing map.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    x0, span = float(x.min()), float(np.ptp(x))
    scale = span if span > 0 else 1.0
    u = (x - x0) / scale
    design = np.vander(u, 4, increasing=True)
    grid = np.linspace(0.0, 1.0, MAPPING_GRID_POINTS)
    slope_design = np.stack([np.zeros_like(grid), np.ones_like(grid), 2 * grid, 3 * grid**2], 1)
    sign = 1.0 if increasing else -1.0
    tol = 1e-9 * max(1.0, float(np.ptp(y)))

    def feasible(a: np.ndarray) -> bool:
        return bool(np.all(sign * (slope_design @ a) >= -tol))

    free, *_ = np.linalg.lstsq(design, y, rcond=None)
    if feasible(free):
        return CubicMapping(tuple(float(v) for v in free), x0, scale)
    slope = float(np.polyfit(u, y, 1)[0]) if span > 0 else 0.0
    if sign * slope < 0:
        slope = 0.0
    start = np.array([float(y.mean()) - slope * float(u.mean()), slope, 0.0, 0.0])
    res = minimize(
        lambda a: float(np.sum((design @ a - y) ** 2)),
        start,
        jac=lambda a: 2 * design.T @ (design @ a - y),
        constraints=[
            {
                "type": "ineq",
                "fun": lambda a: sign * (slope_design @ a),
                "jac": lambda a: sign * slope_design,
            }
        ],
        method="SLSQP",
        options={"maxiter": 500, "ftol": 1e-12},
    )
    coef = res.x if feasible(res.x) else start
    return CubicMapping(tuple(float(v) for v in coef), x0, scale)


def mapped_agreement(x: np.ndarray, y: np.ndarray, *, increasing: bool) -> tuple[float, float]:
    """(Pearson, RMSE) of ratings against the P.1401-mapped metric.

    RMSE divides by ``N - 4`` (P.1401 eq. 7-29, four mapping parameters); both are NaN with
    ``N <= 4`` or no spread in ``x``.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(x)
    if n <= MAPPING_PARAMETERS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    pred = monotonic_cubic_fit(x, y, increasing=increasing)(x)
    rmse = math.sqrt(float(np.sum((y - pred) ** 2)) / (n - MAPPING_PARAMETERS))
    if np.ptp(pred) <= 1e-12 * max(1.0, float(np.abs(pred).max())):
        return math.nan, rmse
    return float(np.corrcoef(pred, y)[0, 1]), rmse


def _condition_matrix(
    frame: pd.DataFrame, value: str, stimuli: list[str], conditions: list[str]
) -> np.ndarray:
    """(stimuli, conditions) matrix of ``value`` (NaN where a stimulus lacks a condition; the
    mean where a stimulus has several files of one condition)."""
    total = np.zeros((len(stimuli), len(conditions)))
    count = np.zeros_like(total)
    si = {s: i for i, s in enumerate(stimuli)}
    ci = {c: i for i, c in enumerate(conditions)}
    for s, c, v in zip(frame["reference_path"], frame["condition"], frame[value], strict=True):
        total[si[s], ci[c]] += v
        count[si[s], ci[c]] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _weighted_condition_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B, C) means over stimuli of each condition, stimulus s weighing ``weights[b, s]``."""
    present = np.isfinite(values)
    v0 = np.where(present, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ v0) / (weights @ present.astype(float))


def agreement_table(
    pairs: pd.DataFrame,
    metrics: Sequence[str],
    ratings: StudyRatings,
    *,
    include_reference: bool = False,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Every metric against the listeners, at file and condition level, and the ceiling.

    Parameters
    ----------
    pairs : pd.DataFrame
        The pair table with ``reference_path, degraded_path, condition, hidden_reference,
        rating_mean`` and the metric columns.
    metrics : sequence of str
        Metric columns to rank.
    ratings : StudyRatings
        Per-listener ratings (for the ceiling).
    include_reference : bool
        Count hidden-reference files (default: left out).
    n_bootstrap, seed, confidence
        Bootstrap replicates resampling stimuli (``reference_path``) with all their files.

    Returns
    -------
    pd.DataFrame
        :data:`AGREEMENT_COLUMNS`; per level the metrics in the given order, then ``ceiling``.
        Coefficients keep their sign (a distance agrees with listeners when negative);
        ``note`` says why a value is missing (:mod:`.notes`), "" when none is.
    """
    rated = pairs[pairs["rating_mean"].notna()].copy()
    if not include_reference:
        rated = rated[rated["hidden_reference"].astype(str).str.lower() != "true"]
    rated = rated.reset_index(drop=True)
    stimuli = sorted(rated["reference_path"].unique())
    conditions = sorted(rated["condition"].unique())
    rows = []
    for level in LEVELS:
        for m in metrics:
            sub = rated[np.isfinite(rated[m].to_numpy(float))]
            rows.append(
                _metric_row(m, level, sub, stimuli, conditions, n_bootstrap, seed, confidence)
            )
        rows.append(
            listener_ceiling(
                rated,
                ratings,
                level=level,
                n_bootstrap=n_bootstrap,
                seed=stable_seed(seed, level, CEILING),
                confidence=confidence,
            )
        )
    return pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS))


def _metric_row(
    m: str,
    level: str,
    sub: pd.DataFrame,
    stimuli: Sequence[str],
    conditions: Sequence[str],
    n_bootstrap: int,
    seed: int,
    confidence: float,
) -> dict[str, Any]:
    """One metric's agreement with the listeners at one level (``sub``: its rated files with
    a finite value): correlations with CIs, the mapped Pearson and RMSE, and the note."""
    row: dict[str, Any] = {"metric": m, "level": level}
    if level == LEVEL_FILE:
        r = stats.correlate(
            sub[m].to_numpy(float),
            sub["rating_mean"].to_numpy(float),
            sub["reference_path"].to_numpy(object),
            n_bootstrap=n_bootstrap,
            seed=stable_seed(seed, level, m),
            confidence=confidence,
        )
        row["n"] = int(r["n"])
        for meth in METHODS:
            for suffix in ("", "_ci_low", "_ci_high"):
                row[meth + suffix] = r[meth + suffix]
        xs, ys = sub[m].to_numpy(float), sub["rating_mean"].to_numpy(float)
    else:
        row, xs, ys = _condition_level(
            row, sub, m, stimuli, conditions, n_bootstrap, seed, confidence
        )
    pm, rmse = mapped_agreement(xs, ys, increasing=stats.higher_is_better(m))
    row["pearson_mapped"], row["rmse_mapped"] = pm, rmse
    row["note"] = metric_note(
        row, n_stimuli=sub["reference_path"].nunique(), n_bootstrap=n_bootstrap
    )
    return row


def _condition_level(
    row: dict[str, Any],
    sub: pd.DataFrame,
    metric: str,
    stimuli: list[str],
    conditions: list[str],
    n_bootstrap: int,
    seed: int,
    confidence: float,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    values = _condition_matrix(sub, metric, stimuli, conditions)
    rating = _condition_matrix(sub, "rating_mean", stimuli, conditions)
    ones = np.ones((1, len(stimuli)))
    xs = _weighted_condition_means(values, ones)[0]
    ys = _weighted_condition_means(rating, ones)[0]
    ok = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[ok], ys[ok]
    row["n"] = int(ok.sum())
    for meth in METHODS:
        row[meth] = row[f"{meth}_ci_low"] = row[f"{meth}_ci_high"] = math.nan
    if row["n"] < MIN_RATED_FILES or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return row, xs, ys
    point = rowwise_correlations(xs[None, :], ys[None, :])
    for meth in METHODS:
        row[meth] = float(point[meth][0])
    if n_bootstrap > 0 and len(stimuli) >= MIN_RECORDINGS_FOR_CI:
        rng = np.random.default_rng(seed)
        w = bootstrap_weights(len(stimuli), n_bootstrap, rng).astype(float)
        bx = _weighted_condition_means(values[:, ok], w)
        by = _weighted_condition_means(rating[:, ok], w)
        reps = rowwise_correlations(bx, by)
        bad = ~(np.isfinite(bx).all(axis=1) & np.isfinite(by).all(axis=1))
        for meth in METHODS:
            reps[meth][bad] = np.nan
            row[f"{meth}_ci_low"], row[f"{meth}_ci_high"] = _percentile_ci(
                reps[meth], n_bootstrap, confidence
            )
    return row, xs, ys


def spearman_brown(r: np.ndarray | float) -> np.ndarray:
    """Reliability of the full panel from the correlation of two halves: ``2r / (1 + r)``,
    clipped to [0, 1] (a negative split-half correlation means no measurable agreement)."""
    r = np.asarray(r, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 2 * r / (1 + r)
    return np.clip(out, 0.0, 1.0)


def listener_ceiling(
    rated: pd.DataFrame,
    ratings: StudyRatings,
    *,
    level: str,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """How well one random half of the listeners predicts the other half.

    The listeners are split at random into two halves; each half's mean rating of each file
    (``file`` level) or each condition's mean over stimuli of those (``condition`` level) is
    correlated with the other half's, and the Spearman-Brown formula
    (:func:`spearman_brown`) turns the half-panel correlation into the full panel's. The
    point estimate averages :data:`CEILING_SPLITS` random splits; each bootstrap replicate
    resamples the stimuli (with all their files) and draws a fresh split. Without a
    ``listener`` column every rating counts as its own listener; files given only as a mean
    (``rating_mean``) have no listeners to split, so the ceiling is then not estimated and
    ``note`` says why.

    Returns
    -------
    dict
        A :data:`AGREEMENT_COLUMNS` row with ``metric = "ceiling"`` (mapped columns NaN).
    """
    files = rated["degraded_path"].tolist()
    stim = rated["reference_path"].tolist()
    cond = rated["condition"].tolist()
    listeners, mat = _listener_matrix(files, ratings)
    stimuli = sorted(set(stim))
    s_index = np.array([stimuli.index(s) for s in stim])
    conditions = sorted(set(cond))
    c_index = np.array([conditions.index(c) for c in cond])
    row: dict[str, Any] = {c: math.nan for c in AGREEMENT_COLUMNS}
    row.update(metric=CEILING, level=level)
    row["n"] = len(files) if level == LEVEL_FILE else len(conditions)
    row["note"] = ceiling_blocker(files, ratings, listeners)
    if row["note"]:
        return row

    def one(split: np.ndarray, stim_weights: np.ndarray) -> dict[str, float]:
        a = _half_means(mat, split)
        b = _half_means(mat, ~split)
        w = stim_weights[s_index]
        if level == LEVEL_FILE:
            idx = np.repeat(np.arange(len(files)), w.astype(int))
            x, y = a[idx], b[idx]
        else:
            x = _grouped_mean(a, c_index, len(conditions), w)
            y = _grouped_mean(b, c_index, len(conditions), w)
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        if len(x) < MIN_RATED_FILES or np.ptp(x) == 0 or np.ptp(y) == 0:
            return dict.fromkeys(METHODS, math.nan)
        r = rowwise_correlations(x[None, :], y[None, :])
        return {m: float(spearman_brown(r[m][0])) for m in METHODS}

    rng = np.random.default_rng(seed)
    full = np.ones(len(stimuli))
    points = [one(_random_split(len(listeners), rng), full) for _ in range(CEILING_SPLITS)]
    for m in METHODS:
        vals = np.array([p[m] for p in points])
        row[m] = float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan
    if n_bootstrap > 0 and len(stimuli) >= MIN_RECORDINGS_FOR_CI:
        reps = {m: np.full(n_bootstrap, np.nan) for m in METHODS}
        for b in range(n_bootstrap):
            w = rng.multinomial(len(stimuli), np.full(len(stimuli), 1.0 / len(stimuli)))
            r = one(_random_split(len(listeners), rng), w.astype(float))
            for m in METHODS:
                reps[m][b] = r[m]
        for m in METHODS:
            row[f"{m}_ci_low"], row[f"{m}_ci_high"] = _percentile_ci(
                reps[m], n_bootstrap, confidence
            )
    row["note"] = ceiling_note(row, files, ratings, n_stimuli=len(stimuli), n_bootstrap=n_bootstrap)
    return row


def _listener_matrix(files: list[str], ratings: StudyRatings) -> tuple[list[str], np.ndarray]:
    """The listeners and the (files, listeners) matrix of their ratings (NaN: not rated)."""
    listeners = sorted({li for f in files for li, _ in ratings.per_file.get(f, [])})
    li_index = {li: i for i, li in enumerate(listeners)}
    mat = np.full((len(files), len(listeners)), np.nan)
    for i, f in enumerate(files):
        for li, v in ratings.per_file.get(f, []):
            mat[i, li_index[li]] = v
    return listeners, mat


def _random_split(n: int, rng: np.random.Generator) -> np.ndarray:
    split = np.zeros(n, dtype=bool)
    split[rng.permutation(n)[: n // 2]] = True
    return split


def _half_means(mat: np.ndarray, columns: np.ndarray) -> np.ndarray:
    part = mat[:, columns]
    n = np.isfinite(part).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.nansum(part, axis=1) / np.maximum(n, 1), np.nan)


def _grouped_mean(v: np.ndarray, groups: np.ndarray, n_groups: int, w: np.ndarray) -> np.ndarray:
    ok = np.isfinite(v) & (w > 0)
    num = np.bincount(groups[ok], weights=(v * w)[ok], minlength=n_groups)
    den = np.bincount(groups[ok], weights=w[ok], minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)
