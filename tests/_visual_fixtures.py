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

from perceptual_audio import metrics, stats

FAMILIES = {
    "noise": ["low", "high", "extreme"],
    "bitrate": ["low", "medium", "high"],
    "compression": ["mild", "strong", "extreme"],
}
CLASSIC = ["pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr"]


def make_pairs(
    *,
    n_recordings: int = 6,
    families: dict | None = None,
    models: tuple[str, ...] = ("openl3", "vggish", "cdpam"),
    seed: int = 0,
) -> pd.DataFrame:
    """pair_metrics.csv rows with a known structure (see module docstring)."""
    families = FAMILIES if families is None else families
    rng = np.random.default_rng(seed)
    rows = []
    for fam, levels in families.items():
        for rank, lev in enumerate(levels):
            for i in range(n_recordings):
                q = 0.9 - 0.3 * rank + rng.normal(0, 0.04)  # latent quality, falls with severity
                ref = f"clean/speech/rec{i}.wav"
                row = {
                    "reference_path": ref,
                    "degraded_path": f"degraded/{fam}/{lev}/speech/rec{i}.wav",
                    "family": fam,
                    "level": lev,
                    "pesq_wb": 1.0 + 3.5 * q,
                    "pesq_nb": 1.2 + 3.2 * q,
                    "stoi": 0.5 + 0.5 * q,
                    "estoi": 0.3 + 0.7 * q,
                    "si_sdr": 30 * q - 5,
                }
                for m in CLASSIC:
                    row[f"{m}_status"] = "ok"
                vgg_sign = -1 if fam == "compression" else 1
                model_q = {
                    "openl3": q + rng.normal(0, 0.02),
                    "vggish": 0.5 + vgg_sign * (q - 0.5) + rng.normal(0, 0.1),
                    "cdpam": q + rng.normal(0, 0.05),
                }
                for m in models:
                    row[f"{m}_cosine"] = 0.5 + 0.5 * model_q[m]
                    row[f"{m}_cosine_pooled"] = 0.6 + 0.4 * model_q[m]
                    row[f"{m}_l2"] = 10 * (1 - model_q[m])
                    for k in ("cosine", "cosine_pooled", "l2"):
                        row[f"{m}_{k}_status"] = "ok"
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
    return [c for c in pairs.columns[4:] if f"{c}_status" in pairs.columns]


def write_results(
    folder: Path,
    pairs: pd.DataFrame,
    *,
    unavailable: dict[str, str] | None = None,
    n_bootstrap: int = 200,
    run: dict | None = None,
) -> Path:
    """Write results/ for ``pairs`` with the metrics stage's own statistics functions (so the
    schema is the one stage 3 writes), a run.json like stage 3's, and for each unavailable
    model a sibling ``<model>_embeddings/run.json``; returns the results folder."""
    results = folder / "results"
    results.mkdir(parents=True, exist_ok=True)
    pairs = pairs.copy()
    pairs["reference_sha256"] = "0" * 64  # bookkeeping columns stage 3 appends
    pairs["classic_key"] = "abc"
    pairs.to_csv(results / "pair_metrics.csv", index=False)
    value_cols = metric_columns(pairs)
    neural = metrics.neural_metric_names(value_cols)
    refs = metrics.reference_metric_names(value_cols)
    order = stats.level_order({f: g["level"] for f, g in pairs.groupby("family")}, FAMILIES)
    stats.summary_by_degradation(pairs, value_cols, order).to_csv(
        results / "summary_by_degradation.csv", index=False
    )
    stats.correlation_table(
        pairs,
        stats.metric_pairs(neural, refs),
        n_bootstrap=n_bootstrap,
        seed=0,
    ).to_csv(results / "correlations.csv", index=False)
    stats.monotonicity(pairs, value_cols, order).to_csv(results / "monotonicity.csv", index=False)
    models = {
        m: {
            "available": m not in (unavailable or {}),
            "reason": (unavailable or {}).get(m, ""),
            "folder": str(folder / f"{m}_embeddings"),
        }
        for m in ("openl3", "vggish", "cdpam")
    }
    record = (
        run
        if run is not None
        else {
            "stage": "calculate_metrics",
            "command": ["calculate_metrics.py", "--results-dir", "results"],
            "arguments": {"audio_dir": str(folder / "test_audio"), "results_dir": str(results)},
            "parameters": {"bootstrap": n_bootstrap, "metrics": {"study_sample_rate": 16000}},
            "finished_at": "2026-01-01T00:00:00+00:00",
            "models": models,
            "level_order": order,
            "failures": {c: int((pairs[f"{c}_status"] != "ok").sum()) for c in value_cols},
        }
    )
    (results / "run.json").write_text(json.dumps(record))
    for model, reason in (unavailable or {}).items():
        d = folder / f"{model}_embeddings"
        d.mkdir(exist_ok=True)
        (d / "run.json").write_text(json.dumps({"available": False, "reason": reason}))
    return results
