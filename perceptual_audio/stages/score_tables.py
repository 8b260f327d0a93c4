"""Stage 3's statistics: summaries, correlations and monotonicity of the scored pairs, and
agreement with the listeners when the study has ratings (:mod:`perceptual_audio.listening`
and :mod:`perceptual_audio.stats` do the work)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from perceptual_audio import listening, metrics, stats
from perceptual_audio.errors import PerceptualAudioError
from perceptual_audio.files import write_text_if_changed
from perceptual_audio.manifest import read_level_order
from perceptual_audio.restoration import audit
from perceptual_audio.results import (
    CORRELATIONS_NAME,
    LEADING_COLUMNS,
    LOSS_AUDIT_NAME,
    MONOTONICITY_NAME,
    SUMMARY_NAME,
)
from perceptual_audio.stages.score_settings import ScoreSettings

logger = logging.getLogger(__name__)


def write_statistics(
    settings: ScoreSettings,
    results_dir: Path,
    audio_dir: Path,
    table: list[dict[str, Any]],
    value_cols: list[str],
    study_ratings: Any,
) -> tuple[dict[str, list[str]], int, Any]:
    """Summaries, correlations, monotonicity (and agreement with listeners) of the table;
    returns the level order, the number of pairs left out (degradation not applied) and the
    listening record for run.json."""
    write_loss_audit(results_dir, table, value_cols, settings.bootstrap)
    table = [r for r in table if r.get("kind") != "restored"]  # the audit's, not the study's
    # Pairs whose degradation was not applied (the 'degraded' file equals the clean one) are
    # scored in pair_metrics.csv but would fake perfect agreement in the statistics.
    analysed_rows = [r for r in table if r["degradation_applied"] != "false"]
    not_applied = len(table) - len(analysed_rows)
    if not_applied:
        logger.warning(
            "%d pair(s) whose degradation was not applied (silent input) are left out "
            "of the summaries, correlations and monotonicity",
            not_applied,
        )
    frame = pd.DataFrame(
        {c: [r[c] for r in analysed_rows] for c in (*LEADING_COLUMNS, *value_cols)}
    )
    for c in value_cols:
        frame[c] = frame[c].astype(float)
    order = level_order(frame, audio_dir)
    analysed = metrics.analysed_metrics(value_cols)
    summary = stats.summary_by_degradation(
        frame, value_cols, order, bounds={c: metrics.value_range(c) for c in value_cols}
    )
    corr = stats.correlation_table(
        frame,
        stats.metric_pairs(
            metrics.neural_metric_names(analysed), metrics.reference_metric_names(analysed)
        ),
        n_bootstrap=settings.bootstrap,
        seed=settings.seed,
    )
    # A listening test's conditions have no severity order: no monotonicity for them.
    graded = frame["family"] != LISTENING_FAMILY
    mono = stats.monotonicity(
        frame[graded], analysed, {f: o for f, o in order.items() if f != LISTENING_FAMILY}
    )
    for name, df in ((SUMMARY_NAME, summary), (CORRELATIONS_NAME, corr), (MONOTONICITY_NAME, mono)):
        write_text_if_changed(results_dir / name, df.to_csv(index=False, lineterminator="\n"))
    listening_info = write_listener_agreement(
        settings, results_dir, table, value_cols, study_ratings
    )
    return order, not_applied, listening_info


LISTENING_FAMILY = "listening_test"  # = listening.LISTENING_FAMILY (workers need no import)


def level_order(frame: Any, audio_dir: Path) -> dict[str, list[str]]:
    """Each family's levels, mildest first, as stage 2 recorded them; a listening test's
    conditions (no severity) and levels stage 2 did not record in name order, with a warning
    for the latter."""
    present = {f: g["level"] for f, g in frame.groupby("family")}
    recorded = read_level_order(audio_dir)
    unrecorded = {
        f: sorted(set(levels) - set(recorded.get(f, ())))
        for f, levels in present.items()
        if f != LISTENING_FAMILY
    }
    for family, levels in unrecorded.items():
        if levels:
            logger.warning(
                "%s records no severity order for %s levels %s; they are ordered by name "
                "(rerun extract_embeddings.py to record it)",
                audio_dir / "degraded" / "run.json",
                family,
                ", ".join(levels),
            )
    return stats.level_order(present, recorded)


def load_ratings(settings: ScoreSettings, audio_dir: Path, rows: list) -> tuple[Any, str | None]:
    """(ratings or None, problem or None): ``--ratings``, else stage 1's ``ratings.csv``."""
    try:
        ratings = listening.load_study_ratings(
            audio_dir,
            rows,
            ratings_path=settings.ratings,
            scale=settings.rating_scale,
            include_reference=settings.include_reference,
        )
    except PerceptualAudioError as e:
        return None, str(e)
    return ratings, None


def write_listener_agreement(
    settings: ScoreSettings,
    results_dir: Path,
    table: list[dict[str, Any]],
    value_cols: list[str],
    ratings: Any,
) -> dict[str, Any] | None:
    """Write (or, without ratings, remove a stale) ``listener_agreement.csv``."""
    path = results_dir / listening.AGREEMENT_NAME
    if ratings is None:
        if path.exists():
            path.unlink()
            logger.info("removed %s (this study has no ratings)", path)
        return None
    cols = [*LEADING_COLUMNS, *value_cols, *listening.PAIR_RATING_COLUMNS]
    frame = pd.DataFrame({c: [r.get(c) for r in table] for c in cols})
    for c in (*value_cols, "rating_mean"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce")  # "" where unrated: NaN
    agreement = listening.agreement_table(
        frame,
        metrics.analysed_metrics(value_cols),  # the clean file's own scores are context
        ratings,
        include_reference=settings.include_reference,
        n_bootstrap=settings.bootstrap,
        seed=settings.seed,
    )
    write_text_if_changed(path, agreement.to_csv(index=False, lineterminator="\n"))
    rated = frame[frame["rating_mean"].notna()]
    return {
        "ratings": ratings.source,
        "rated_files": int(len(rated)),
        "hidden_reference_files": int((rated["hidden_reference"] == "true").sum()),
        "include_reference": bool(settings.include_reference),
        "ratings_n": ratings.n_ratings,
        "files_with_means_only": len(ratings.means),
        "listeners_named": ratings.has_listeners,
        "rating_scale": list(settings.rating_scale),
        "mapping": "ITU-T P.1401 third-order polynomial, least squares, monotonic on the "
        "observed metric range (SLSQP slope constraints); RMSE divides by N - 4",
        "ceiling": f"split-half listener correlation, Spearman-Brown corrected, mean of "
        f"{listening.CEILING_SPLITS} random splits",
        "interval": "percentile bootstrap over stimuli (references), 95%",
    }


def write_loss_audit(
    results_dir: Path, table: list[dict[str, Any]], value_cols: list[str], n_bootstrap: int
) -> None:
    """``loss_audit.csv`` from the restored pairs (removed when there are none)."""
    path = results_dir / LOSS_AUDIT_NAME
    if not any(r.get("kind") == "restored" for r in table):
        if path.exists():
            path.unlink()
            logger.info("removed %s (no restorations in this study)", path)
        return
    frame = pd.DataFrame(table)
    judges = metrics.analysed_metrics(value_cols)
    if "rating_mean" in frame:  # listeners rated restored files: a judge like any other
        judges.append("rating_mean")
    result = audit.loss_audit(frame, judges, n_bootstrap=n_bootstrap)
    write_text_if_changed(
        path, result.to_csv(index=False, float_format="%.10g", lineterminator="\n")
    )
    logger.info("wrote %s: %d losses x %d judges", path, result["loss"].nunique(), len(judges))
