"""A synthetic results folder (stage 3's outputs) for the stage-4 tests.

The numbers are generated from a known latent quality per pair, so the tests know the answers:
OpenL3 tracks quality closely, VGGish loosely, CDPAM's distance falls with quality, and on the
``compression`` family VGGish runs the wrong way. Columns follow issue 5 / ``metrics_stage``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

FAMILIES = {"noise": ["low", "high", "extreme"], "bitrate": ["low", "medium", "high"],
            "compression": ["mild", "strong", "extreme"]}
CLASSIC = ["pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr"]


def make_pairs(*, n_recordings: int = 6, families: dict | None = None,
               models: tuple[str, ...] = ("openl3", "vggish", "cdpam"), seed: int = 0) -> pd.DataFrame:
    """pair_metrics.csv rows with a known structure (see module docstring)."""
    families = FAMILIES if families is None else families
    rng = np.random.default_rng(seed)
    rows = []
    for fam, levels in families.items():
        for rank, lev in enumerate(levels):
            for i in range(n_recordings):
                q = 0.9 - 0.3 * rank + rng.normal(0, 0.04)  # latent quality, falls with severity
                ref = f"clean/speech/rec{i}.wav"
                row = {"reference_path": ref, "degraded_path": f"degraded/{fam}/{lev}/speech/rec{i}.wav",
                       "family": fam, "level": lev,
                       "pesq_wb": 1.0 + 3.5 * q, "pesq_nb": 1.2 + 3.2 * q, "stoi": 0.5 + 0.5 * q,
                       "estoi": 0.3 + 0.7 * q, "si_sdr": 30 * q - 5}
                for m in CLASSIC:
                    row[f"{m}_status"] = "ok"
                vgg_sign = -1 if fam == "compression" else 1
                model_q = {"openl3": q + rng.normal(0, 0.02),
                           "vggish": 0.5 + vgg_sign * (q - 0.5) + rng.normal(0, 0.1),
                           "cdpam": q + rng.normal(0, 0.05)}
                for m in models:
                    row[f"{m}_cosine"] = 0.5 + 0.5 * model_q[m]
                    row[f"{m}_cosine_pooled"] = 0.6 + 0.4 * model_q[m]
                    row[f"{m}_l2"] = 10 * (1 - model_q[m])
                    row[f"{m}_status"] = "ok"
                if "cdpam" in models:
                    row["cdpam_distance"] = 2.0 * (1 - model_q["cdpam"])
                    row["cdpam_distance_status"] = "ok"
                rows.append(row)
    frame = pd.DataFrame(rows)
    lead = ["reference_path", "degraded_path", "family", "level"]
    metric_cols = [c for c in frame.columns if c not in lead and not c.endswith("_status")]
    status_cols = [c for c in frame.columns if c.endswith("_status")]
    return frame[lead + metric_cols + status_cols]


def metric_columns(pairs: pd.DataFrame) -> list[str]:
    return [c for c in pairs.columns[4:] if not c.endswith("_status")]


def summarise(pairs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (fam, lev), grp in pairs.groupby(["family", "level"], sort=False):
        row = {"family": fam, "level": lev, "n": len(grp)}
        for m in metric_columns(pairs):
            v = grp[m].dropna().to_numpy()
            mean = v.mean() if v.size else np.nan
            half = 1.96 * v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else np.nan
            row.update({f"{m}_mean": mean, f"{m}_ci_low": mean - half, f"{m}_ci_high": mean + half,
                        f"{m}_n": v.size})
        rows.append(row)
    return pd.DataFrame(rows)


def correlate(pairs: pd.DataFrame) -> pd.DataFrame:
    metrics = metric_columns(pairs)
    neural = [m for m in metrics if m not in CLASSIC]
    combos = [(n, c) for n in neural for c in CLASSIC] + [
        (a, b) for i, a in enumerate(CLASSIC) for b in CLASSIC[i + 1:]]
    rows = []
    scopes = [("all", pairs)] + [(f, g) for f, g in pairs.groupby("family", sort=False)]
    for scope, data in scopes:
        for x, y in combos:
            d = data[[x, y]].dropna()
            row = {"scope": scope, "metric_x": x, "metric_y": y, "n": len(d)}
            for name, func in (("pearson", sps.pearsonr), ("spearman", sps.spearmanr),
                               ("kendall", sps.kendalltau)):
                if len(d) >= 3 and d[x].nunique() > 1 and d[y].nunique() > 1:
                    r, p = (float(v) for v in func(d[x], d[y]))
                    lo, hi = max(-1.0, r - 0.15), min(1.0, r + 0.15)
                else:
                    r = p = lo = hi = np.nan
                row.update({f"{name}_r": r, f"{name}_ci_low": lo, f"{name}_ci_high": hi,
                            f"{name}_p": p})
            rows.append(row)
    return pd.DataFrame(rows)


def monotonicity(pairs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for fam, grp in pairs.groupby("family", sort=False):
        for m in metric_columns(pairs):
            rows.append({"family": fam, "metric": m, "n_recordings": grp["reference_path"].nunique(),
                         "fraction_monotonic": 0.5 if m.startswith("vggish") else 1.0})
    return pd.DataFrame(rows)


def write_results(folder: Path, pairs: pd.DataFrame, *, run: dict | None = None,
                  unavailable: dict[str, str] | None = None) -> Path:
    """Write results/ (+ sibling model folders with run.json) for ``pairs``; returns results/."""
    results = folder / "results"
    results.mkdir(parents=True, exist_ok=True)
    pairs.to_csv(results / "pair_metrics.csv", index=False)
    summarise(pairs).to_csv(results / "summary_by_degradation.csv", index=False)
    correlate(pairs).to_csv(results / "correlations.csv", index=False)
    monotonicity(pairs).to_csv(results / "monotonicity.csv", index=False)
    record = run if run is not None else {
        "stage": "calculate_metrics", "command": ["calculate_metrics.py", "--results-dir", "results"],
        "arguments": {"audio_dir": str(folder / "test_audio"), "results_dir": str(results)},
        "parameters": {"bootstrap": 1000}, "finished_at": "2026-01-01T00:00:00+00:00"}
    (results / "run.json").write_text(json.dumps(record))
    for model, reason in (unavailable or {}).items():
        d = folder / f"{model}_embeddings"
        d.mkdir(exist_ok=True)
        (d / "run.json").write_text(json.dumps({"available": False, "reason": reason}))
    return results
