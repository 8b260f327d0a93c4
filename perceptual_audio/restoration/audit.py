"""The loss audit: what optimising each loss did to every judge metric.

From stage 3's pair table (``pair_metrics.csv``, degraded and restored pairs, ``kind``
column), one row per loss x judge metric x scope (every pair, per family, per family and
level): n pairs, the judge's mean on the degraded and on the restored files, the mean change
oriented so that + is better, its 95 % cluster-bootstrap CI over recordings (clean files),
the fraction of pairs that improved, and ``self`` where the judge is the metric that measures
what the loss optimised (the loss catalogue's ``metric``); every other judge is independent.

A restored pair is matched to the degraded pair with the same reference, family and level.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from perceptual_audio import stats
from perceptual_audio.errors import ParameterError
from perceptual_audio.metrics import catalogue as metric_catalogue
from perceptual_audio.restoration import catalogue

#: Columns of ``loss_audit.csv``, in order.
AUDIT_COLUMNS = (
    "loss", "scope", "family", "level", "judge", "self", "n", "n_recordings",
    "degraded_mean", "restored_mean", "change_mean", "change_ci_low", "change_ci_high",
    "fraction_improved", "higher_is_better",
)  # fmt: skip
#: ``scope`` values: every pair, one family, one family and level.
SCOPE_ALL, SCOPE_FAMILY, SCOPE_LEVEL = "all", "family", "level"
#: Pair-table keys that match a restored pair to its degraded pair.
MATCH_KEYS = ("reference_path", "family", "level")


def self_metric(loss: str) -> str | None:
    """The judge that measures what ``loss`` optimises (None: none, or an unknown loss)."""
    try:
        return catalogue.describe_loss(loss).metric
    except ParameterError:
        return None


def matched_pairs(table: pd.DataFrame, judges: Sequence[str]) -> pd.DataFrame:
    """Restored pairs beside their degraded pairs: ``loss``, the match keys, and per judge
    ``<judge>__degraded`` and ``<judge>__restored`` (floats)."""
    kind = table["kind"] if "kind" in table else pd.Series("degraded", index=table.index)
    degraded = table[kind == "degraded"].drop_duplicates(list(MATCH_KEYS))
    restored = table[kind == "restored"]
    left = restored[["loss", *MATCH_KEYS, *judges]]
    right = degraded[[*MATCH_KEYS, *judges]]
    merged = left.merge(
        right, on=list(MATCH_KEYS), how="inner", suffixes=("__restored", "__degraded")
    )
    for j in judges:
        for side in ("__restored", "__degraded"):
            merged[j + side] = pd.to_numeric(merged[j + side], errors="coerce")
    return merged


def _change_ci(
    change: np.ndarray, recordings: np.ndarray, n_bootstrap: int, seed: int
) -> tuple[float, float]:
    """95 % percentile CI of the mean change, resampling recordings (clusters)."""
    _, codes = np.unique(recordings.astype(str), return_inverse=True)
    n_clusters = int(codes.max()) + 1
    if n_bootstrap <= 0 or n_clusters < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    weights = stats.bootstrap_weights(n_clusters, n_bootstrap, rng)  # (B, clusters)
    sums = np.bincount(codes, weights=change, minlength=n_clusters)
    counts = np.bincount(codes, minlength=n_clusters).astype(float)
    means = (weights @ sums) / (weights @ counts)
    alpha = (1 - stats.CONFIDENCE) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def _row(
    pairs: pd.DataFrame, loss: str, judge: str, scope: tuple[str, str, str], n_bootstrap: int
) -> dict:
    d = pairs[f"{judge}__degraded"].to_numpy(float)
    r = pairs[f"{judge}__restored"].to_numpy(float)
    ok = np.isfinite(d) & np.isfinite(r)
    d, r = d[ok], r[ok]
    recordings = pairs["reference_path"].to_numpy()[ok]
    better = metric_catalogue.higher_is_better(judge)
    change = (r - d) if better else (d - r)
    seed = zlib.crc32(f"{loss}\x1f{judge}\x1f{'/'.join(scope)}".encode())
    low, high = _change_ci(change, recordings, n_bootstrap, seed) if len(d) else (np.nan,) * 2
    return {
        "loss": loss, "scope": scope[0], "family": scope[1], "level": scope[2], "judge": judge,
        "self": judge == self_metric(loss), "n": int(len(d)),
        "n_recordings": int(len(set(recordings))),
        "degraded_mean": float(d.mean()) if len(d) else np.nan,
        "restored_mean": float(r.mean()) if len(d) else np.nan,
        "change_mean": float(change.mean()) if len(d) else np.nan,
        "change_ci_low": low, "change_ci_high": high,
        "fraction_improved": float((change > 0).mean()) if len(d) else np.nan,
        "higher_is_better": better,
    }  # fmt: skip


def loss_audit(
    table: pd.DataFrame, judges: Sequence[str], *, n_bootstrap: int = stats.N_BOOTSTRAP
) -> pd.DataFrame:
    """The audit table (:data:`AUDIT_COLUMNS`) of a pair table with restored pairs.

    Parameters
    ----------
    table : pd.DataFrame
        ``pair_metrics.csv`` rows (``kind``, ``loss``, the match keys, the judge columns).
    judges : sequence of str
        Metric columns to judge with (pair metrics of the catalogue).
    n_bootstrap : int
        Cluster-bootstrap replicates per CI (0: no CIs).
    """
    judges = [j for j in judges if j in table.columns]
    pairs = matched_pairs(table, judges)
    out = []
    for loss, by_loss in pairs.groupby("loss", sort=False):
        scopes = [((SCOPE_ALL, "", ""), by_loss)]
        for fam, g in by_loss.groupby("family", sort=True):
            scopes.append(((SCOPE_FAMILY, str(fam), ""), g))
            for lev, h in g.groupby("level", sort=True):
                scopes.append(((SCOPE_LEVEL, str(fam), str(lev)), h))
        for scope, g in scopes:
            out += [_row(g, str(loss), j, scope, n_bootstrap) for j in judges]
    return pd.DataFrame(out, columns=list(AUDIT_COLUMNS))
