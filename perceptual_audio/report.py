"""Stage 4's reading of the results folder, and the written report (text and HTML).

Three layers, each usable alone:

1. **Vocabulary** -- :func:`metric_info` names every column of ``pair_metrics.csv`` for people
   (label, unit, which direction is better, which model it belongs to).
2. **Loading** -- :func:`load_results` reads ``results/`` (``pair_metrics.csv``,
   ``summary_by_degradation.csv``, ``correlations.csv``, ``monotonicity.csv``, ``run.json``)
   and what it can find of the upstream folders (``test_audio/manifest.csv`` for the
   degradation parameters, ``<model>_embeddings/run.json`` for model availability and weights
   hashes) into one :class:`StudyResults`. A table with the wrong columns raises
   :class:`~perceptual_audio.errors.SchemaError` naming the file, the expected and the received
   columns.
3. **Writing** -- :func:`build_report` turns a :class:`StudyResults` (plus the figure files made
   by :mod:`perceptual_audio.plots`) into a list of :class:`Section`; :func:`render_text` and
   :func:`render_html` render the same sections, so the two reports always say the same thing.
   The HTML is one self-contained file: figures as ``data:`` URIs, inline CSS, a few lines of
   inline JavaScript to sort tables, no remote resources.

This module does not import matplotlib (only :mod:`perceptual_audio.plots` does).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perceptual_audio import metrics as _metrics
from perceptual_audio import results as results_format
from perceptual_audio.errors import PerceptualAudioError, SchemaError
from perceptual_audio.results import (
    CORRELATION_KEY_COLUMNS,
    CORRELATION_METHODS,
    CORRELATIONS_NAME,
    MONOTONICITY_NAME,
    PAIR_METRICS_NAME,
    RUN_JSON_NAME,
    SUMMARY_NAME,
    read_correlations,
    read_summary,
)

logger = logging.getLogger(__name__)

TEXT_REPORT_NAME = "analysis_report.txt"
HTML_REPORT_NAME = "report.html"

#: Symbols of the correlation methods (in :data:`CORRELATION_METHODS` order).
METHOD_SYMBOL = {"pearson": "r", "spearman": "ρ", "kendall": "τ"}
METHOD_NAME = {"pearson": "Pearson", "spearman": "Spearman", "kendall": "Kendall"}
#: The method the plain-word findings rank by: rank-based, so a monotone but curved relation
#: (PESQ saturates near 4.6) still counts as full agreement.
PRIMARY_METHOD = "spearman"
#: The classic references the findings compare every neural metric against.
REFERENCE_METRICS = ("pesq_wb", "stoi")
#: Scope value of correlations over all pairs.
SCOPE_ALL = "all"


def study_models() -> dict[str, str]:
    """The embedding models (the registry's, in column order) with their display names."""
    from perceptual_audio.embeddings.base import model_names

    return {m: _metrics.model_display_name(m) for m in model_names()}


#: |correlation| thresholds for the words of the findings (Cohen-style conventions).
STRENGTH_WORDS = (
    (0.9, "very strong"),
    (0.7, "strong"),
    (0.5, "moderate"),
    (0.3, "weak"),
    (0.0, "negligible"),
)


# =============================================================================================
# Vocabulary
# =============================================================================================
#: How to present one metric column: the metric catalogue's entry (label, unit, direction,
#: kind, rate, domain, model). The catalogue is the one owner; this is its former name here.
MetricInfo = _metrics.MetricSpec


def metric_info(name: str) -> MetricInfo:
    """Presentation facts of a metric column, from the metric catalogue
    (:func:`perceptual_audio.metrics.describe`); unknown columns get a neutral description.

    Parameters
    ----------
    name : str
        A metric column of ``pair_metrics.csv``.
    """
    return _metrics.describe(name)


def metric_sort_key(name: str) -> tuple[int, int, str]:
    """Order metrics as the report lists them: the catalogue's audio metrics (classic, then
    reference perceptual), then the models in :func:`study_models` order."""
    audio = list(_metrics.CATALOGUE)
    if name in audio:
        return (0, audio.index(name), name)
    info = metric_info(name)
    if info.model is not None:
        kinds = list(_metrics.model_metric_names(info.model))
        models = list(study_models())
        rank = models.index(info.model) if info.model in models else len(models)
        return (1 + rank, kinds.index(name) if name in kinds else 99, name)
    return (9 + len(study_models()), 0, name)


def primary_neural_metrics(metrics: Iterable[str]) -> list[str]:
    """The headline metrics per model: ``<model>_cosine``, then the models' own extra metrics
    (CDPAM's learned distance)."""
    metrics = list(metrics)
    models = list(study_models())
    out = [f"{m}_cosine" for m in models if f"{m}_cosine" in metrics]
    extras = [e.name for m in models for e in _metrics.extra_metrics(m)]
    return out + [e for e in extras if e in metrics]


def condition_label(family: str, level: str) -> str:
    """``noise``, ``low`` -> ``Noise (Low)`` (the seed study's row names)."""

    def nice(s: str) -> str:
        s = str(s).replace("_", " ")
        return s[:1].upper() + s[1:]

    return f"{nice(family)} ({nice(level)})"


# =============================================================================================
# Loading
# =============================================================================================
@dataclass
class ModelStatus:
    """What the report says about one embedding model."""

    name: str
    available: bool
    reason: str = ""
    variant: str = ""
    weights_sha256: str = ""
    n_embeddings: int | None = None
    source: str = ""

    @property
    def display(self) -> str:
        return study_models().get(self.name, self.name)


@dataclass
class StudyResults:
    """Everything stage 4 knows about a run, as read from disk.

    Attributes
    ----------
    results_dir : Path
    pairs : pd.DataFrame
        ``pair_metrics.csv``; metric columns numeric (NaN where a metric failed).
    metrics : list of str
        Metric columns of ``pairs`` in report order.
    summary : pd.DataFrame
        ``summary_by_degradation.csv``.
    correlations : pd.DataFrame
        ``correlations.csv`` (possibly empty).
    monotonicity : pd.DataFrame
        ``monotonicity.csv`` (possibly empty).
    run : dict
        ``results/run.json`` (empty when absent).
    families : list of str
    level_order : dict of str to list of str
        Levels of each family from least to most severe.
    models : list of ModelStatus
    degradations : pd.DataFrame
        ``family, level, parameters, n_files`` from the audio manifest (possibly empty).
    inputs : dict
        Facts about the inputs (folders, counts) for the setup section.
    notes : list of str
        Warnings the report shows at the top (unavailable models, missing files).
    """

    results_dir: Path
    pairs: pd.DataFrame
    metrics: list[str]
    summary: pd.DataFrame
    correlations: pd.DataFrame
    monotonicity: pd.DataFrame
    run: dict[str, Any]
    families: list[str]
    level_order: dict[str, list[str]]
    models: list[ModelStatus]
    degradations: pd.DataFrame
    inputs: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    #: ``listener_agreement.csv`` when the study has listening-test ratings, else None.
    listening: pd.DataFrame | None = None

    @property
    def neural_metrics(self) -> list[str]:
        return [m for m in self.metrics if metric_info(m).neural]

    @property
    def classic_metrics(self) -> list[str]:
        return [m for m in self.metrics if not metric_info(m).neural]

    @property
    def reference_metrics(self) -> list[str]:
        """The references (classic and reference perceptual pair metrics) present."""
        return _metrics.reference_metric_names(self.metrics)

    @property
    def analysed_metrics(self) -> list[str]:
        """Metrics of the pairs (without the clean files' own no-reference scores)."""
        return _metrics.analysed_metrics(self.metrics)

    @property
    def conditions(self) -> list[tuple[str, str]]:
        """(family, level) pairs in report order (family order, then severity)."""
        return [(f, lv) for f in self.families for lv in self.level_order.get(f, [])]

    def summary_cell(
        self, family: str, level: str, metric: str
    ) -> tuple[float, float, float, float]:
        """(mean, ci_low, ci_high, n) of ``metric`` at one condition; NaN where unknown."""
        rows = self.summary[(self.summary["family"] == family) & (self.summary["level"] == level)]
        if rows.empty:
            return (math.nan,) * 4
        row = rows.iloc[0]

        def get(col: str) -> float:
            return float(row[col]) if col in row.index and pd.notna(row[col]) else math.nan

        n = get(f"{metric}_n")
        for col in ("n_pairs", "n"):
            if math.isnan(n):
                n = get(col)
        return get(f"{metric}_mean"), get(f"{metric}_ci_low"), get(f"{metric}_ci_high"), n


def read_pair_metrics(path: str | os.PathLike) -> tuple[pd.DataFrame, list[str]]:
    """:func:`perceptual_audio.results.read_pair_metrics` without the listening-test ratings
    (the truth, not metrics), its metric columns in report order (:func:`metric_sort_key`)."""
    frame, metrics = results_format.read_pair_metrics(path, not_metrics=_rating_columns())
    return frame, sorted(metrics, key=metric_sort_key)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        logger.warning("%s: unreadable JSON (%s); ignored", path, e)
        return {}
    return data if isinstance(data, dict) else {}


def _run_argument(run: dict[str, Any], *keys: str) -> str | None:
    """First non-empty value among ``keys`` in run.json's ``arguments`` or ``parameters``."""
    for section in ("arguments", "parameters", "args", "params"):
        block = run.get(section)
        if isinstance(block, dict):
            for k in keys:
                v = block.get(k)
                if v not in (None, ""):
                    return str(v)
    return None


def _locate(recorded: str | None, results_dir: Path, default_name: str) -> Path | None:
    """Find an upstream folder: as recorded (absolute, or relative to the cwd or to the results
    folder's parent), else ``<results parent>/<default_name>``."""
    candidates: list[Path] = []
    if recorded:
        p = Path(recorded)
        candidates += [p] if p.is_absolute() else [p, results_dir.parent / p, results_dir / p]
    candidates.append(results_dir.parent / default_name)
    for c in candidates:
        if c.is_dir():
            return c
    return None


def _model_status(
    name: str, folder: Path | None, metrics: list[str], pairs: pd.DataFrame
) -> ModelStatus:
    cols = [m for m in metrics if metric_info(m).model == name]
    has_values = any(pairs[c].notna().any() for c in cols) if cols else False
    run = _read_json(folder / RUN_JSON_NAME) if folder is not None else {}
    status = ModelStatus(name=name, available=has_values, source=str(folder) if folder else "")
    if run:
        available = run.get("available")
        reason = run.get("reason") or run.get("unavailable_reason") or ""
        if (
            isinstance(run.get("models"), dict) and name in run["models"]
        ):  # one run.json, many models
            sub = run["models"][name]
            available = sub.get("available", available)
            reason = sub.get("reason", reason)
            run = {**run, **sub}
        status.reason = str(reason or "")
        if available is not None:
            status.available = bool(available) and (has_values or not cols)
        status.variant = str(
            run.get("variant") or _run_argument(run, "variant", f"{name}_variant") or ""
        )
        sha = run.get("weights_sha256") or _run_argument(run, "weights_sha256")
        status.weights_sha256 = str(sha or "")
    manifest = folder / "manifest.csv" if folder is not None else None
    if manifest is not None and manifest.exists():
        try:
            rows = pd.read_csv(manifest, dtype=str).fillna("")
            status.n_embeddings = int(
                (rows.get("status", pd.Series(["ok"] * len(rows))) == "ok").sum()
            )
            if not status.variant and "variant" in rows and len(rows):
                status.variant = rows["variant"].iloc[0]
            if not status.weights_sha256 and "weights_sha256" in rows and len(rows):
                status.weights_sha256 = rows["weights_sha256"].iloc[0]
        except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as e:
            logger.warning("%s: unreadable embedding manifest (%s)", manifest, e)
    if not status.available and not status.reason:
        if not cols:
            status.reason = f"no {name}_* columns in pair_metrics.csv (model not run)"
        elif not has_values:
            status.reason = f"every {name}_* value in pair_metrics.csv is missing"
        else:
            status.reason = "reported unavailable by the embedding stage"
    return status


def _level_order(
    pairs: pd.DataFrame, families: Sequence[str], run: dict[str, Any]
) -> dict[str, list[str]]:
    """Each family's levels, mildest first, as the metrics stage recorded them in run.json
    (``level_order``, from stage 2's record); levels it does not list follow in name order
    (:func:`perceptual_audio.stats.level_order`)."""
    from perceptual_audio import stats

    present = {f: list(dict.fromkeys(pairs.loc[pairs["family"] == f, "level"])) for f in families}
    recorded = run.get("level_order") if isinstance(run.get("level_order"), dict) else {}
    recorded = {f: [str(lv) for lv in v] for f, v in recorded.items() if isinstance(v, list)}
    return stats.level_order(present, recorded)


def _read_degradations(audio_dir: Path | None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Degradation parameters per family and level from ``<audio_dir>/manifest.csv``."""
    empty = pd.DataFrame(columns=["family", "level", "parameters", "n_files"])
    info: dict[str, Any] = {}
    if audio_dir is None or not (audio_dir / "manifest.csv").exists():
        return empty, info
    path = audio_dir / "manifest.csv"
    try:
        rows = pd.read_csv(path, dtype=str).fillna("")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as e:
        logger.warning("%s: unreadable audio manifest (%s); setup section will be shorter", path, e)
        return empty, info
    if not {"kind", "family", "level", "parameters"} <= set(rows.columns):
        logger.warning("%s: columns %s lack kind/family/level/parameters", path, list(rows.columns))
        return empty, info
    degraded_run = _read_json(audio_dir / "degraded" / RUN_JSON_NAME)
    if degraded_run:  # how stage 2 made the degraded files: its command and run seed
        info["degradation_seed"] = degraded_run.get("seed")
        info["degradation_command"] = " ".join(map(str, degraded_run.get("command") or []))
    clean = rows[rows["kind"] == "clean"]
    info["n_clean_files"] = len(clean)
    if len(clean):
        info["conversion"] = _conversion_settings(clean["parameters"])
    if "duration" in clean and len(clean):
        info["clean_seconds"] = float(pd.to_numeric(clean["duration"], errors="coerce").sum())
    if "sample_rate" in clean and len(clean):
        info["sample_rates_hz"] = sorted(set(clean["sample_rate"]))
    records = []
    degraded = rows[rows["kind"] == "degraded"]
    for (fam, lev), grp in degraded.groupby(["family", "level"], sort=False):
        records.append(
            {
                "family": fam,
                "level": lev,
                "parameters": describe_parameters(grp["parameters"]),
                "n_files": len(grp),
            }
        )
    return (pd.DataFrame(records) if records else empty), info


#: Bookkeeping keys of a manifest ``parameters`` record that are not degradation settings.
_PARAMETER_BOOKKEEPING = ("digest", "family", "level", "seed", "version", "settings_digest")


def _parse_parameters(texts: Iterable[str]) -> list[dict[str, Any]]:
    dicts = []
    for t in texts:
        try:
            d = json.loads(t) if t else {}
        except ValueError:
            d = {"parameters": t}
        dicts.append(d if isinstance(d, dict) else {"parameters": d})
    return dicts


def describe_parameters(texts: Iterable[str]) -> str:
    """The settings of one condition in words, from its files' manifest ``parameters``.

    Stage 2 records ``{"params": {...settings}, "details": {...measured}, "seed", "digest", ...}``:
    the settings are shown as they are, measured values named ``*achieved*`` as their mean over
    the files, other details only when every file has the same value. A flat record (another
    or older writer) shows its keys shared by every file and names those drawn per file.
    """
    dicts = _parse_parameters(texts)
    if not dicts:
        return ""
    if all(isinstance(d.get("params"), dict) for d in dicts):
        settings = _shared(d["params"] for d in dicts)
        parts = [", ".join(f"{k}={_short(v)}" for k, v in settings.items())]
        details = [d.get("details") if isinstance(d.get("details"), dict) else {} for d in dicts]
        achieved = sorted({k for d in details for k in d if "achieved" in k})
        measured = []
        for k in achieved:
            vals = [float(d[k]) for d in details if isinstance(d.get(k), int | float)]
            if vals:
                measured.append(f"{k}={np.mean(vals):.3g}")
        if measured:
            parts.append("measured mean: " + ", ".join(measured))
        same = {
            k: v for k, v in _shared(details).items() if isinstance(v, str) and k not in achieved
        }
        if same:
            parts.append(", ".join(f"{k}={v}" for k, v in same.items()))
        return "; ".join(p for p in parts if p)
    flat = [{k: v for k, v in d.items() if k not in _PARAMETER_BOOKKEEPING} for d in dicts]
    common = _shared(flat)
    varying = sorted({k for d in flat for k in d} - set(common))
    text = ", ".join(f"{k}={_short(v)}" for k, v in common.items())
    if varying:
        text += ("; " if text else "") + "drawn per file: " + ", ".join(varying)
    return text


def _shared(dicts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Key/value pairs equal in every dict (order of the first)."""
    dicts = list(dicts)
    if not dicts:
        return {}
    return {k: v for k, v in dicts[0].items() if all(k in d and d[k] == v for d in dicts[1:])}


def _conversion_settings(texts: Iterable[str]) -> str:
    """Stage 1's settings shared by every clean file (inputs' own properties left out)."""
    shared = _shared(_parse_parameters(texts))
    keep = {
        k: v
        for k, v in shared.items()
        if not k.startswith("input_") and k not in ("peak", *_PARAMETER_BOOKKEEPING)
    }
    return ", ".join(f"{k}={_short(v)}" for k, v in keep.items())


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def load_results(
    results_dir: str | os.PathLike,
    *,
    audio_dir: str | os.PathLike | None = None,
    model_dirs: dict[str, str | os.PathLike] | None = None,
) -> StudyResults:
    """Read a results folder and what can be found of its upstream folders.

    Parameters
    ----------
    results_dir : path-like
        Folder written by ``calculate_metrics.py``.
    audio_dir : path-like, optional
        The stage-1/2 audio folder; default: as recorded in ``results/run.json``, else
        ``<results parent>/test_audio``. Only used for the setup section; absence is fine.
    model_dirs : dict, optional
        ``{"openl3": dir, ...}``; default: as recorded in run.json, else
        ``<results parent>/<model>_embeddings``.

    Raises
    ------
    PerceptualAudioError
        If the folder or ``pair_metrics.csv`` / ``summary_by_degradation.csv`` is missing.
    SchemaError
        If a table has columns this version cannot read.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise PerceptualAudioError(
            f"--results-dir {results_dir}: no such folder; run "
            f"calculate_metrics.py --results-dir {results_dir} first."
        )
    notes: list[str] = []
    pair_path = results_dir / PAIR_METRICS_NAME
    if not pair_path.exists():
        raise PerceptualAudioError(
            f"{pair_path}: not found; expected the table written by "
            "calculate_metrics.py. Run stage 3 first."
        )
    pairs, metrics = read_pair_metrics(pair_path)
    n_not_applied = 0
    if "degradation_applied" in pairs.columns:  # as in stage 3's statistics
        keep = pairs["degradation_applied"].astype(str).str.lower() != "false"
        n_not_applied = int((~keep).sum())
        pairs = pairs[keep].reset_index(drop=True)
    if pairs.empty:
        raise SchemaError(
            f"{pair_path}: has a header but no rows; expected one row per "
            "clean/degraded pair. Check stage 2 produced degraded files."
        )

    summary_path = results_dir / SUMMARY_NAME
    if not summary_path.exists():
        raise PerceptualAudioError(
            f"{summary_path}: not found; expected the per-degradation "
            "summary written by calculate_metrics.py. Rerun stage 3."
        )
    summary = read_summary(summary_path)

    corr_path = results_dir / CORRELATIONS_NAME
    if corr_path.exists():
        correlations = read_correlations(corr_path)
    else:
        notes.append(f"{CORRELATIONS_NAME} is missing from {results_dir}: no correlation findings.")
        correlations = pd.DataFrame(columns=list(CORRELATION_KEY_COLUMNS))
    mono_path = results_dir / MONOTONICITY_NAME
    monotonicity = pd.DataFrame()
    if mono_path.exists():
        try:
            monotonicity = pd.read_csv(mono_path, dtype={"family": str, "metric": str})
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            notes.append(f"{mono_path} is unreadable ({e}); monotonicity is not reported.")
    else:
        notes.append(
            f"{MONOTONICITY_NAME} is missing from {results_dir}: monotonicity is not reported."
        )
    run = _read_json(results_dir / RUN_JSON_NAME)
    if n_not_applied:
        notes.append(
            f"{n_not_applied} pair(s) whose degradation was not applied (silent input: the "
            "'degraded' file equals the clean one) are left out of the figures and statistics; "
            f"they are listed in {PAIR_METRICS_NAME}."
        )

    families = list(dict.fromkeys(pairs["family"].tolist()))
    level_order = _level_order(pairs, families, run)

    recorded_audio = str(audio_dir) if audio_dir is not None else _run_argument(run, "audio_dir")
    audio_folder = _locate(recorded_audio, results_dir, "test_audio")
    degradations, audio_info = _read_degradations(audio_folder)
    models = []
    run_models = run.get("models") if isinstance(run.get("models"), dict) else {}
    for name in study_models():
        given = (model_dirs or {}).get(name)
        recorded_model = run_models.get(name) if isinstance(run_models.get(name), dict) else {}
        recorded = (
            str(given)
            if given is not None
            else recorded_model.get("folder") or _run_argument(run, f"{name}_dir")
        )
        folder = _locate(recorded, results_dir, f"{name}_embeddings")
        status = _model_status(name, folder, metrics, pairs)
        if recorded_model.get("available") is False:
            # The metrics stage's word wins: it decided which columns were computed.
            status.available = False
            status.reason = str(recorded_model.get("reason") or status.reason)
        models.append(status)
    for m in models:
        if not m.available:
            notes.append(
                f"{m.display} was unavailable and is left out of this report "
                f"({_one_line_reason(m.reason)}); details in the Embedding models table."
            )
            # Columns of a model its stage called unavailable (stale values of an older run)
            # are not reported either: the report would contradict its own note.
            metrics = [c for c in metrics if metric_info(c).model != m.name]
    if not metrics:
        raise SchemaError(f"{pair_path}: no metric has a value; expected at least pesq_wb or stoi.")

    inputs = {
        "results_dir": str(results_dir),
        "audio_dir": str(audio_folder) if audio_folder else (recorded_audio or "not found"),
        "n_pairs": len(pairs),
        "n_references": int(pairs["reference_path"].nunique()),
        "metrics_command": " ".join(map(str, run.get("command", []))) if run else "",
        "metrics_finished_at": run.get("finished_at", "") if run else "",
        **audio_info,
    }
    if not run:
        notes.append(
            f"{results_dir / RUN_JSON_NAME} is missing or unreadable: the setup section "
            "cannot say how the metrics were computed."
        )
    return StudyResults(
        results_dir=results_dir,
        pairs=pairs,
        metrics=metrics,
        summary=summary,
        correlations=correlations,
        monotonicity=monotonicity,
        run=run,
        families=families,
        level_order=level_order,
        models=models,
        degradations=degradations,
        inputs=inputs,
        notes=notes,
        listening=_read_listener_agreement(results_dir, metrics, notes),
    )


# =============================================================================================
# Numbers into words
# =============================================================================================
def fmt(value: Any, digits: int = 3) -> str:
    """A number for the report: ``digits`` decimals, ``n/a`` for NaN/None, ints as ints."""
    if value is None:
        return "n/a"
    if isinstance(value, int | np.integer):
        return str(int(value))
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return "n/a"
    if x.is_integer() and abs(x) >= 1000:
        return f"{int(x)}"
    return f"{x:.{digits}f}"


def _fmt_n(value: Any) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if math.isnan(x) else str(int(round(x)))


def strength_word(r: float) -> str:
    """``0.93`` -> ``very strong``; NaN -> ``undefined``."""
    if r is None or math.isnan(r):
        return "undefined"
    for threshold, word in STRENGTH_WORDS:
        if abs(r) >= threshold:
            return word
    return "negligible"


@dataclass(frozen=True)
class Correlation:
    """One correlation of ``correlations.csv``: value, 95% CI, p and n for one method."""

    scope: str
    metric_x: str
    metric_y: str
    method: str
    r: float
    ci_low: float
    ci_high: float
    p: float
    n: float
    #: Clean recordings behind the pairs (the bootstrap resamples these; p treats pairs as
    #: independent, so the recordings are the sample size that matters for generalising).
    n_recordings: float = math.nan

    def _n_text(self) -> str:
        n = f"n = {_fmt_n(self.n)}"
        if not math.isnan(self.n_recordings):
            n += f" pairs from {_fmt_n(self.n_recordings)} recordings"
        return n

    def describe(self, *, with_n: bool = True) -> str:
        """``Spearman ρ = 0.82 (95% CI 0.75 to 0.88, n = 120 pairs from 10 recordings)``."""
        ci = (
            "95% CI not available"
            if math.isnan(self.ci_low) or math.isnan(self.ci_high)
            else f"95% CI {fmt(self.ci_low, 2)} to {fmt(self.ci_high, 2)}"
        )
        n = f", {self._n_text()}" if with_n else ""
        return (
            f"{METHOD_NAME[self.method]} {METHOD_SYMBOL[self.method]} = {fmt(self.r, 2)} ({ci}{n})"
        )

    def short(self) -> str:
        """``ρ = 0.82 [0.75, 0.88], n = 120`` (the method named elsewhere)."""
        ci = (
            ""
            if math.isnan(self.ci_low) or math.isnan(self.ci_high)
            else f" [{fmt(self.ci_low, 2)}, {fmt(self.ci_high, 2)}]"
        )
        return f"{METHOD_SYMBOL[self.method]} = {fmt(self.r, 2)}{ci}, n = {_fmt_n(self.n)}"


def lookup_correlation(
    correlations: pd.DataFrame, scope: str, a: str, b: str, method: str = PRIMARY_METHOD
) -> Correlation | None:
    """The correlation of metrics ``a`` and ``b`` in ``scope`` (either order), or None."""
    if correlations.empty or f"{method}_r" not in correlations.columns:
        return None
    c = correlations
    hit = c[
        (c["scope"] == scope)
        & (
            ((c["metric_x"] == a) & (c["metric_y"] == b))
            | ((c["metric_x"] == b) & (c["metric_y"] == a))
        )
    ]
    if hit.empty:
        return None
    row = hit.iloc[0]

    def get(col: str) -> float:
        return float(row[col]) if col in row.index and pd.notna(row[col]) else math.nan

    n = get(f"{method}_n")
    if math.isnan(n):
        n = get("n")
    return Correlation(
        scope,
        a,
        b,
        method,
        get(f"{method}_r"),
        get(f"{method}_ci_low"),
        get(f"{method}_ci_high"),
        get(f"{method}_p"),
        n,
        get("n_recordings"),
    )


def agreement(metric: str, corr: Correlation) -> tuple[float, float, float]:
    """(value, ci_low, ci_high) signed so that positive means "agrees with the reference".

    A distance (lower = closer to clean) agrees with PESQ/STOI when the correlation is negative.
    """
    if metric_info(metric).higher_is_better:
        return corr.r, corr.ci_low, corr.ci_high
    return -corr.r, -corr.ci_high, -corr.ci_low


def classify_agreement(metric: str, corr: Correlation | None) -> str:
    """``agrees`` (CI above 0), ``opposite`` (CI below 0), ``uncertain`` (CI spans 0 or no CI),
    ``undefined`` (no value: too few pairs or a constant metric)."""
    if corr is None or math.isnan(corr.r):
        return "undefined"
    value, lo, hi = agreement(metric, corr)
    if not (math.isnan(lo) or math.isnan(hi)):
        if lo > 0:
            return "agrees"
        if hi < 0:
            return "opposite"
    return "uncertain"


def _sign_note(metric: str) -> str:
    return "" if metric_info(metric).higher_is_better else " (a distance: negative means agreement)"


def correlation_findings(results: StudyResults) -> list[str]:
    """Plain-word findings: which neural metric agrees best with PESQ-WB and with STOI, how
    sure, and where (which degradation families) they disagree."""
    corr = results.correlations
    out: list[str] = []
    if corr.empty:
        return ["No correlations were computed (correlations.csv is missing or empty)."]
    neural = results.neural_metrics
    if not neural:
        return [
            "No neural metric is present in pair_metrics.csv, so nothing can be compared "
            "with PESQ or STOI."
        ]
    best_for: dict[str, str] = {}
    for ref in REFERENCE_METRICS:
        if ref not in results.metrics:
            continue
        ranked = []
        for m in neural:
            c = lookup_correlation(corr, SCOPE_ALL, m, ref)
            if c is not None and not math.isnan(c.r):
                ranked.append((agreement(m, c)[0], m, c))
        ref_label = metric_info(ref).label
        if not ranked:
            out.append(
                f"No neural metric has a defined correlation with {ref_label} over all "
                "pairs (too few pairs, or constant values)."
            )
            continue
        ranked.sort(key=lambda t: -t[0])
        value, best, c = ranked[0]
        best_for[ref] = best
        word = strength_word(value) if value > 0 else "no (or reversed)"
        sentence = (
            f"Against {ref_label}, the neural metric that agrees best is "
            f"{metric_info(best).label}{_sign_note(best)}: {c.describe()}, "
            f"{word} agreement over all pairs."
        )
        # The runner-up comes from another model when there is one: "OpenL3 frame cosine beats
        # OpenL3 pooled cosine" says little about which model to use.
        others = [t for t in ranked[1:] if metric_info(t[1]).model != metric_info(best).model]
        if len(ranked) > 1:
            v2, second, c2 = (others or ranked[1:])[0]
            _, lo1, hi1 = agreement(best, c)
            _, lo2, hi2 = agreement(second, c2)
            if any(math.isnan(x) for x in (lo1, hi1, lo2, hi2)):
                sure = "without confidence intervals the lead cannot be judged"
            elif lo1 > hi2:
                sure = "the confidence intervals do not overlap, so the lead is clear"
            else:
                sure = "the confidence intervals overlap, so the data do not separate the two"
            sentence += (
                f" Runner-up: {metric_info(second).label}, with "
                f"{c2.describe(with_n=False)}; {sure}."
            )
        out.append(sentence)
    if len(best_for) == 2:
        a, b = (best_for[r] for r in REFERENCE_METRICS)
        la, lb = (metric_info(r).label for r in REFERENCE_METRICS)
        if a == b:
            out.append(
                f"The same neural metric, {metric_info(a).label}, agrees best with both "
                f"{la} and {lb}."
            )
        else:
            out.append(
                f"{la} and {lb} favour different neural metrics: {metric_info(a).label} "
                f"tracks {la} best, {metric_info(b).label} tracks {lb} best."
            )
    if all(r in results.metrics for r in REFERENCE_METRICS):
        c = lookup_correlation(corr, SCOPE_ALL, *REFERENCE_METRICS)
        if c is not None:
            la, lb = (metric_info(r).label for r in REFERENCE_METRICS)
            out.append(f"For comparison, {la} and {lb} agree with each other at {c.describe()}.")
    return out


def reference_tracking_findings(results: StudyResults) -> list[str]:
    """Per headline neural metric: the reference metric (classic or reference perceptual) it
    tracks best over all pairs, by |Spearman| in the agreeing direction, with its CI."""
    corr = results.correlations
    refs = results.reference_metrics
    if corr.empty or not refs:
        return []
    out = []
    for m in primary_neural_metrics(results.metrics) or results.neural_metrics:
        ranked = []
        for ref in refs:
            c = lookup_correlation(corr, SCOPE_ALL, m, ref)
            if c is not None and not math.isnan(c.r):
                # Agreement: both similarities (or both distances) correlate positively.
                same = metric_info(m).higher_is_better == metric_info(ref).higher_is_better
                ranked.append((c.r if same else -c.r, ref, c))
        if not ranked:
            continue
        ranked.sort(key=lambda t: -t[0])
        value, best, c = ranked[0]
        kind = "reference perceptual" if metric_info(best).kind == "reference" else "classic"
        word = strength_word(value) if value > 0 else "no (or reversed)"
        sentence = (
            f"{metric_info(m).label} tracks the {kind} metric "
            f"{metric_info(best).marked_label} best of the {len(ranked)} references: "
            f"{c.describe()}, {word} agreement."
        )
        perceptual = [t for t in ranked if metric_info(t[1]).kind == "reference"]
        if perceptual and perceptual[0][1] != best:
            v2, ref2, c2 = perceptual[0]
            sentence += (
                f" Of the reference perceptual metrics, it tracks "
                f"{metric_info(ref2).marked_label} best: {c2.describe(with_n=False)}."
            )
        out.append(sentence)
    return out


def rate_notes(results: StudyResults) -> list[str]:
    """Where the study's sample rate hides content that a metric running at a higher rate
    (ViSQOL audio, Zimtohrli: 48 kHz) would judge."""
    recorded = results.run.get("parameters", {}).get("metrics", {}).get("study_sample_rate")
    rates = recorded if isinstance(recorded, list) else [recorded] if recorded else []
    if not rates:
        return []
    study = min(int(r) for r in rates)
    above = [
        m
        for m in results.metrics
        if (metric_info(m).sample_rate or 0) > study and metric_info(m).kind == "reference"
    ]
    if not above:
        return []
    names = ", ".join(sorted({metric_info(m).label for m in above}))
    top = max(metric_info(m).sample_rate or 0 for m in above)
    return [
        f"The study's audio is at {study / 1000:g} kHz, so it holds nothing above "
        f"{study / 2000:g} kHz; {names} run at up to {top / 1000:g} kHz on the audio "
        f"resampled up and would judge content up to {top / 2000:g} kHz that this study "
        f"removed from reference and degraded alike (rerun stage 1 with --sr {top} to "
        "include it)."
    ]


def family_findings(results: StudyResults) -> list[str]:
    """Per degradation family: which headline neural metrics agree with PESQ-WB / STOI, which
    are uncertain and which run the opposite way."""
    if len(results.families) < 2:
        fam = results.families[0] if results.families else "none"
        return [
            f"Only one degradation family ({fam}) is present, so the per-family breakdown "
            "equals the overall result."
        ]
    out = []
    primary = primary_neural_metrics(results.metrics) or results.neural_metrics
    disagreements = []
    for fam in results.families:
        for ref in REFERENCE_METRICS:
            if ref not in results.metrics:
                continue
            groups: dict[str, list[str]] = {
                "agrees": [],
                "uncertain": [],
                "opposite": [],
                "undefined": [],
            }
            for m in primary:
                c = lookup_correlation(results.correlations, fam, m, ref)
                kind = classify_agreement(m, c)
                text = metric_info(m).label + (
                    "" if c is None or math.isnan(c.r) else f" ({c.short()})"
                )
                groups[kind].append(text)
                if kind == "opposite":
                    disagreements.append(
                        f"{metric_info(m).label} vs {metric_info(ref).label} on {fam} ({c.short()})"
                    )
            parts = []
            if groups["agrees"]:
                parts.append("agree: " + "; ".join(groups["agrees"]))
            if groups["uncertain"]:
                parts.append(
                    "uncertain (the 95% CI spans no agreement): " + "; ".join(groups["uncertain"])
                )
            if groups["opposite"]:
                parts.append("run the opposite way: " + "; ".join(groups["opposite"]))
            if groups["undefined"]:
                parts.append(
                    "undefined (too few pairs or a constant metric): "
                    + ", ".join(groups["undefined"])
                )
            out.append(
                f"On {fam}, against {metric_info(ref).label} (Spearman, 95% CI): "
                + " | ".join(parts)
                + "."
            )
    if disagreements:
        out.append(
            "Where the neural metrics disagree with the classic ones (confidence interval "
            "entirely on the wrong side): " + "; ".join(disagreements) + "."
        )
    else:
        out.append(
            "No headline neural metric runs clearly the opposite way to PESQ-WB or STOI "
            "within any degradation family."
        )
    return out


def family_agreement_table(results: StudyResults) -> Table:
    """Headline neural metrics against PESQ-WB and STOI within each family: Spearman with CI
    and the verdict of :func:`classify_agreement`."""
    refs = [r for r in REFERENCE_METRICS if r in results.metrics]
    primary = primary_neural_metrics(results.metrics) or results.neural_metrics
    rows = []
    for fam in results.families:
        for m in primary:
            row: list[Any] = [fam, metric_info(m).label]
            for ref in refs:
                c = lookup_correlation(results.correlations, fam, m, ref)
                row.append(
                    Cell("n/a", math.nan) if c is None else _ci_cell(c.r, c.ci_low, c.ci_high)
                )
                row.append(classify_agreement(m, c))
            rows.append(row)
    cols = ["Family", "Neural metric"]
    for ref in refs:
        cols += [f"Spearman ρ vs {metric_info(ref).label} [95% CI]", f"vs {metric_info(ref).label}"]
    return Table(
        "Agreement within each degradation family (agrees: the CI is entirely on the "
        "agreeing side; a distance agrees when negative)",
        cols,
        rows,
    )


def _leaders(ranked: pd.Series) -> list[str]:
    """Index labels tied with the first value of a descending series (to 1e-12)."""
    return [k for k, v in ranked.items() if abs(v - ranked.iloc[0]) <= 1e-12]


def _and(names: Any) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def monotonicity_findings(results: StudyResults) -> tuple[list[str], pd.DataFrame, pd.DataFrame]:
    """Sentences and tables from ``monotonicity.csv``.

    Reads the rows with ``step == "all"`` (pooled over the steps of a family): ``fraction_right``
    (share of recording-steps that move the right way) and ``fraction_monotone`` (share of
    recordings that move the right way at every step).

    Returns
    -------
    sentences : list of str
    right : pd.DataFrame
        metric x family table of ``fraction_right`` plus a ``mean over families`` column.
    monotone : pd.DataFrame
        The same for ``fraction_monotone`` (empty when the column is absent).
    """
    mono = results.monotonicity
    empty = pd.DataFrame()
    if mono is None or mono.empty:
        return (
            [
                "Monotonicity was not computed (monotonicity.csv is missing or has no rows; "
                "it needs at least two levels in a family)."
            ],
            empty,
            empty,
        )
    if not {"family", "metric", "fraction_right"} <= set(mono.columns):
        return (
            [
                f"monotonicity.csv has columns {list(mono.columns)}; expected family, metric, "
                "fraction_right (rerun calculate_metrics.py), so it is not summarised."
            ],
            empty,
            empty,
        )
    m = mono.copy()
    m["family"] = m["family"].astype(str)
    if "step" in m.columns:
        pooled = m[m["step"].astype(str) == "all"]
        m = pooled if not pooled.empty else m
    m = m[m["metric"].isin(results.metrics)]

    def pivot(col: str) -> pd.DataFrame:
        if col not in m.columns or m.empty:
            return pd.DataFrame()
        vals = m.assign(**{col: pd.to_numeric(m[col], errors="coerce")})
        table = vals.pivot_table(
            index="metric", columns="family", values=col, aggfunc="mean", dropna=False
        )
        table = table.reindex(
            index=sorted(table.index, key=metric_sort_key),
            columns=[f for f in results.families if f in table.columns],
        )
        table["mean over families"] = table.mean(axis=1)
        return table

    right, monotone = pivot("fraction_right"), pivot("fraction_monotone")
    out = []
    overall = (
        right["mean over families"].dropna().sort_values(ascending=False)
        if not right.empty
        else pd.Series(dtype=float)
    )
    if overall.empty:
        return (
            ["No metric has enough values at two consecutive levels to judge monotonicity."],
            right,
            monotone,
        )
    top = _leaders(overall)
    out.append(
        (
            "The metric that most often moves the right way at each step up in severity is "
            if len(top) == 1
            else f"The {len(top)} metrics that most often move the right way at each step up "
            "in severity are tied: "
        )
        + f"{_and(metric_info(x).label for x in top)}: {100 * overall.iloc[0]:.0f}% of "
        "recording-steps, averaged over families."
    )
    neural = overall[[x for x in overall.index if metric_info(x).neural]]
    if not neural.empty:
        best = _leaders(neural)
        out.append(
            f"Among the neural metrics, {_and(metric_info(x).label for x in best)} "
            + ("is the most monotonic" if len(best) == 1 else "tie as the most monotonic")
            + f" ({100 * neural.iloc[0]:.0f}% of recording-steps move the right way)."
        )
    weak = []
    for metric, row in right.drop(columns="mean over families").iterrows():
        for fam, v in row.items():
            if pd.notna(v) and v < 0.8:
                weak.append(f"{metric_info(metric).label} on {fam} ({100 * v:.0f}%)")
    if weak:
        out.append(
            "Below 80% (the metric often fails to rank the severities of a family): "
            + "; ".join(weak)
            + "."
        )
    else:
        out.append("Every metric moves the right way at 80% or more of the steps in every family.")
    return out, right, monotone


def failure_summary(results: StudyResults) -> tuple[list[str], list[list[Any]], list[list[Any]]]:
    """Failures per metric and the failed pairs.

    Returns
    -------
    sentences : list of str
    per_metric : list of rows ``[metric, n failed, n pairs, reasons]``
    per_pair : list of rows ``[degraded_path, metric, reason]`` (first 200)
    """
    pairs = results.pairs
    per_metric, per_pair = [], []
    total = 0
    for m in results.metrics:
        status_col = _status_column(pairs, m)
        missing = pairs[m].isna()
        if status_col is not None:
            bad = missing | ~pairs[status_col].isin(["ok", ""])
            reasons = pairs.loc[bad, status_col].replace("", "missing value (no reason given)")
        else:
            bad = missing
            reasons = pd.Series(
                ["missing value (no status column)"] * int(bad.sum()), index=pairs.index[bad]
            )
        n_bad = int(bad.sum())
        if n_bad == 0:
            continue
        total += n_bad
        counts = reasons.value_counts()
        per_metric.append(
            [
                metric_info(m).label,
                n_bad,
                len(pairs),
                "; ".join(f"{r} (x{k})" for r, k in counts.items()),
            ]
        )
        for idx in pairs.index[bad]:
            if len(per_pair) < 200:
                per_pair.append(
                    [
                        pairs.at[idx, "degraded_path"],
                        metric_info(m).label,
                        str(reasons.get(idx, "")),
                    ]
                )
    if total == 0:
        sentences = [f"Every metric was computed on all {len(pairs)} pairs; nothing failed."]
    else:
        sentences = [
            f"{total} metric values out of {len(pairs) * len(results.metrics)} "
            f"({len(pairs)} pairs x {len(results.metrics)} metrics) are missing; each is "
            "NaN in pair_metrics.csv with its reason in the status column, and is left "
            "out of means and correlations."
        ]
    failures = results.run.get("failures") or results.run.get("failure_counts")
    if isinstance(failures, dict):
        nonzero = {k: v for k, v in failures.items() if v}
        if nonzero:
            sentences.append(
                "The metrics stage counted failed pairs per metric: "
                + ", ".join(f"{k}: {v}" for k, v in nonzero.items())
                + "."
            )
    return sentences, per_metric, per_pair


def _status_column(pairs: pd.DataFrame, metric: str) -> str | None:
    candidates = [f"{metric}_status"]
    info = metric_info(metric)
    if info.model is not None:
        candidates.append(f"{info.model}_status")
    candidates.append(metric.split("_")[0] + "_status")
    return next((c for c in candidates if c in pairs.columns), None)


# =============================================================================================
# Report structure: sections of blocks, rendered to text and to HTML
# =============================================================================================
@dataclass(frozen=True)
class Cell:
    """A table cell whose displayed text differs from the value it sorts by."""

    text: str
    sort: float | str


@dataclass
class Paragraph:
    text: str
    #: ``note`` paragraphs are warnings (shown in a box at the top of the HTML).
    note: bool = False


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    caption: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class FigureBlock:
    """A figure file (PNG or SVG) made by :mod:`perceptual_audio.plots`; figures of one
    ``group`` are shown under one sub-heading."""

    path: Path
    caption: str
    group: str = ""


@dataclass
class HtmlBlock:
    """Ready-made HTML (audio players) and the plain text the text report shows instead."""

    html: str
    text: str


@dataclass
class Section:
    title: str
    blocks: list[Any]


def _cell_text(value: Any) -> str:
    if isinstance(value, Cell):
        return value.text
    if isinstance(value, float | np.floating):
        return fmt(value)
    return "" if value is None else str(value)


def _cell_sort(value: Any) -> str:
    if isinstance(value, Cell):
        value = value.sort
    if isinstance(value, int | float | np.integer | np.floating):
        return "" if math.isnan(float(value)) else repr(float(value))
    return str(value)


def _ci_cell(mean: float, lo: float, hi: float) -> Cell:
    if math.isnan(lo) or math.isnan(hi):
        return Cell(fmt(mean), mean)
    return Cell(f"{fmt(mean)} [{fmt(lo)}, {fmt(hi)}]", mean)


def sample_results_table(results: StudyResults) -> Table:
    """The seed study's table: one row per condition (``Noise (Low)``), mean of the headline
    neural similarities per model, PESQ and STOI."""
    columns: list[tuple[str, str]] = []
    models = study_models()
    for model, display in models.items():
        if f"{model}_cosine" in results.metrics and _model_available(results, model):
            columns.append((f"{model}_cosine", f"{display} similarity"))
    for model in models:
        for extra in _metrics.extra_metrics(model):
            if extra.name in results.metrics and _model_available(results, model):
                columns.append((extra.name, extra.label))
    for m in ("pesq_wb", "stoi", "visqol_audio", "zimtohrli", "dnsmos_ovrl"):
        if m in results.metrics:
            # "PESQ" is the wide-band one (the caption says so)
            columns.append((m, "PESQ" if m == "pesq_wb" else metric_info(m).label))
    rows = []
    for fam, lev in results.conditions:
        n = float(((results.pairs["family"] == fam) & (results.pairs["level"] == lev)).sum())
        row: list[Any] = [condition_label(fam, lev), Cell(_fmt_n(n), n)]
        for m, _ in columns:
            mean, _lo, _hi, n_metric = results.summary_cell(fam, lev, m)
            row.append(mean)
            row.append(Cell(_fmt_n(n_metric), n_metric))
        rows.append(row)
    return Table(
        "Sample Results: mean per degradation and the number of pairs each metric scored "
        "(a metric undefined on a pair, e.g. PESQ without speech, leaves it out; similarity = "
        "frame-aligned cosine of the embeddings; PESQ = wide-band; the reference perceptual metrics "
        "where computed; 95% CIs in the next table)",
        [
            "Degradation",
            "pairs",
            *[h for _, label in columns for h in (label, f"{label} n")],
        ],
        rows,
    )


def _model_available(results: StudyResults, model: str) -> bool:
    return next((m.available for m in results.models if m.name == model), True)


def summary_table(results: StudyResults) -> Table:
    """Every metric per condition: mean and 95% CI (long format, sortable)."""
    rows = []
    for fam, lev in results.conditions:
        for m in results.metrics:
            mean, lo, hi, n = results.summary_cell(fam, lev, m)
            if math.isnan(mean) and math.isnan(n):
                continue
            rows.append(
                [
                    condition_label(fam, lev),
                    metric_info(m).marked_label,
                    Cell(_fmt_n(n), n),
                    mean,
                    lo,
                    hi,
                ]
            )
    return Table(
        "Every metric per degradation: mean and 95% confidence interval (Student t; for a "
        "bounded metric, such as STOI in [0, 1], clipped to its range, which keeps the "
        "coverage)",
        ["Degradation", "Metric", "n", "Mean", "95% CI low", "95% CI high"],
        rows,
    )


def reference_correlation_table(results: StudyResults) -> Table:
    """Each neural metric against PESQ-WB and STOI over all pairs, every method with CI."""
    rows = []
    methods = [m for m in CORRELATION_METHODS if f"{m}_r" in results.correlations.columns]
    for ref in results.reference_metrics:
        for m in results.neural_metrics:
            cells: list[Any] = [metric_info(m).label, metric_info(ref).marked_label]
            first = None
            for method in methods:
                c = lookup_correlation(results.correlations, SCOPE_ALL, m, ref, method)
                first = first or c
                cells.append(_ci_cell(c.r, c.ci_low, c.ci_high) if c else Cell("n/a", math.nan))
            if first is None:
                continue
            cells.insert(2, Cell(_fmt_n(first.n), first.n))
            rows.append(cells)
    return Table(
        "Neural metrics against the references (classic and reference perceptual metrics), "
        "over all pairs: correlation [95% bootstrap CI] (a distance agrees when negative; "
        "[speech] marks a metric designed for speech only)",
        [
            "Neural metric",
            "Reference",
            "n",
            *[f"{METHOD_NAME[m]} {METHOD_SYMBOL[m]}" for m in methods],
        ],
        rows,
    )


def full_correlation_table(results: StudyResults) -> Table:
    """Every row of ``correlations.csv``."""
    corr = results.correlations
    methods = [m for m in CORRELATION_METHODS if f"{m}_r" in corr.columns]
    rows = []
    for _, r in corr.iterrows():
        row: list[Any] = [
            r["scope"],
            metric_info(r["metric_x"]).marked_label,
            metric_info(r["metric_y"]).marked_label,
        ]
        n = r.get("n", r.get(f"{methods[0]}_n", math.nan)) if methods else math.nan
        row.append(Cell(_fmt_n(n), float(n) if pd.notna(n) else math.nan))
        for m in methods:
            row.append(
                _ci_cell(
                    r[f"{m}_r"], r.get(f"{m}_ci_low", math.nan), r.get(f"{m}_ci_high", math.nan)
                )
            )
            p = r.get(f"{m}_p", math.nan)
            row.append(Cell("n/a" if pd.isna(p) else f"{float(p):.2g}", p))
        rows.append(row)
    cols = ["Scope", "Metric x", "Metric y", "n"]
    for m in methods:
        cols += [f"{METHOD_NAME[m]} {METHOD_SYMBOL[m]} [95% CI]", f"{METHOD_NAME[m]} p"]
    return Table("All correlations (scope: all pairs, or one degradation family)", cols, rows)


def setup_blocks(results: StudyResults) -> list[Any]:
    """Inputs, degradations with their parameters, models with weights hashes."""
    inp = results.inputs
    lines = [
        f"Results folder: {inp['results_dir']}; audio folder: {inp['audio_dir']}.",
        f"{inp['n_pairs']} clean/degraded pair{'' if inp['n_pairs'] == 1 else 's'} from "
        f"{inp['n_references']} clean recording{'' if inp['n_references'] == 1 else 's'}, "
        f"{len(results.families)} degradation famil{'y' if len(results.families) == 1 else 'ies'} "
        f"({', '.join(f'{f}: ' + ' < '.join(results.level_order[f]) for f in results.families)}; "
        "levels from least to most severe).",
    ]
    if "n_clean_files" in inp:
        secs = inp.get("clean_seconds")
        lines.append(
            f"The audio manifest lists {inp['n_clean_files']} clean files"
            + (f" ({secs:.1f} s of audio in total)" if secs else "")
            + (f" at {', '.join(inp['sample_rates_hz'])} Hz" if inp.get("sample_rates_hz") else "")
            + (f"; conversion settings: {inp['conversion']}" if inp.get("conversion") else "")
            + "."
        )
    if "degradation_seed" in inp:
        lines.append(
            f"Degraded by: {inp.get('degradation_command') or 'extract_embeddings.py'} "
            f"(run seed {inp['degradation_seed']}; each file's seed is derived from it, the "
            "family, the level and the file's path)."
        )
    if inp.get("metrics_command"):
        lines.append(
            f"Metrics computed by: {inp['metrics_command']}"
            + (
                f" (finished {inp['metrics_finished_at']})"
                if inp.get("metrics_finished_at")
                else ""
            )
            + "."
        )
    params = (
        results.run.get("parameters") if isinstance(results.run.get("parameters"), dict) else {}
    )
    if params:
        lines.append(
            "Metric stage parameters: "
            + ", ".join(f"{k}={_short(v)}" for k, v in params.items())
            + "."
        )
    blocks: list[Any] = [Bullets(lines)]
    if not results.degradations.empty:
        rows = []
        for fam, lev in results.conditions:
            hit = results.degradations[
                (results.degradations["family"] == fam) & (results.degradations["level"] == lev)
            ]
            if hit.empty:
                rows.append([condition_label(fam, lev), "not in the audio manifest", ""])
            else:
                rows.append(
                    [
                        condition_label(fam, lev),
                        hit.iloc[0]["parameters"],
                        int(hit.iloc[0]["n_files"]),
                    ]
                )
        blocks.append(
            Table(
                "Degradations and their parameters (from the audio manifest)",
                ["Degradation", "Parameters", "Files"],
                rows,
            )
        )
    else:
        blocks.append(
            Paragraph(
                "The audio manifest (test_audio/manifest.csv) was not found, so "
                "the degradation parameters cannot be listed."
            )
        )
    model_rows = []
    for m in results.models:
        model_rows.append(
            [
                m.display,
                "yes" if m.available else "no (skipped)",
                m.variant or "",
                m.weights_sha256 or "",
                "" if m.n_embeddings is None else m.n_embeddings,
                " ".join(m.reason.split()) if m.reason and not m.available else "",
            ]
        )
    blocks.append(
        Table(
            "Embedding models",
            ["Model", "Available", "Variant", "Weights sha256", "Embeddings", "Why skipped"],
            model_rows,
        )
    )
    return blocks


#: A note's reason is cut to this many characters (the models table has the whole text).
NOTE_REASON_CHARS = 120


def _one_line_reason(reason: str) -> str:
    """The first line of a (multi-line) reason, at most :data:`NOTE_REASON_CHARS` long."""
    first = (reason or "no reason given").strip().splitlines()[0].strip().rstrip(":;,.")
    if len(first) > NOTE_REASON_CHARS:
        first = first[: NOTE_REASON_CHARS - 3].rstrip() + "..."
    return first


# =============================================================================================
# Agreement with listeners (perceptual_audio.listening computes, this part presents)
# =============================================================================================
#: Figure group whose figures are shown in the listener section (see visualize_stage).
LISTENER_FIGURE_GROUP = "Agreement with listeners"


def _rating_columns() -> tuple[str, ...]:
    from perceptual_audio.listening import PAIR_RATING_COLUMNS

    return PAIR_RATING_COLUMNS


def _read_listener_agreement(
    results_dir: Path, metrics: Sequence[str], notes: list[str]
) -> pd.DataFrame | None:
    from perceptual_audio.listening import AGREEMENT_NAME

    path = results_dir / AGREEMENT_NAME
    if not path.exists():
        return None
    try:
        frame = pd.read_csv(path, dtype={"metric": str, "level": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        notes.append(f"{path} is unreadable ({e}); agreement with listeners is not reported.")
        return None
    from perceptual_audio.listening import AGREEMENT_COLUMNS, CEILING

    results_format.require_columns(path, frame, AGREEMENT_COLUMNS)
    # Metrics the report dropped (unavailable models) are not ranked either.
    return frame[frame["metric"].isin([*metrics, CEILING])].reset_index(drop=True)


def _hidden(column: pd.Series) -> pd.Series:
    """``hidden_reference`` cells as booleans (written ``true``/``false``)."""
    return column.astype(str).str.lower() == "true"


def _label(metric: str) -> str:
    from perceptual_audio.listening import CEILING

    return "Listener ceiling (split-half)" if metric == CEILING else metric_info(metric).label


def _coef_cell(row: pd.Series, method: str) -> Cell:
    v, lo, hi = (float(row[f"{method}{s}"]) for s in ("", "_ci_low", "_ci_high"))
    return _ci_cell(v, lo, hi) if not math.isnan(v) else Cell("n/a", math.nan)


def listener_table(results: StudyResults, level: str) -> Table:
    """Every metric ranked by its (direction-adjusted) Pearson r with the listeners at one
    level; the listener ceiling last."""
    from perceptual_audio import listening

    agreement = results.listening
    rates = (results.run.get("metric_sample_rates_hz") or {}).get("metrics", {})
    rows = []
    ranked = listening.ranked(agreement, level)
    ceil = agreement[(agreement["level"] == level) & (agreement["metric"] == listening.CEILING)]
    for i, (_, r) in enumerate([*ranked.iterrows(), *ceil.iterrows()], start=1):
        is_ceiling = r["metric"] == listening.CEILING
        rows.append(
            [
                Cell("" if is_ceiling else str(i), i),
                _label(r["metric"]),
                "" if is_ceiling else str(rates.get(r["metric"], "")),
                Cell(_fmt_n(r["n"]), float(r["n"])),
                _coef_cell(r, "pearson"),
                _coef_cell(r, "spearman"),
                _coef_cell(r, "kendall"),
                r["pearson_mapped"],
                r["rmse_mapped"],
            ]
        )
    what = (
        "each rated file"
        if level == listening.LEVEL_FILE
        else "per-condition means over stimuli (system level)"
    )
    return Table(
        f"Every metric against the mean listener rating, {what}: ranked by Pearson r turned "
        "so that larger = agrees more (a distance agrees when its r is negative); 95% "
        "bootstrap CIs over stimuli; r and RMSE after the P.1401 monotonic third-order "
        "mapping (n/a: the best mapping in the metric's direction is flat, i.e. the metric "
        "orders the files against the listeners); last row: how well half the listeners "
        "predict the other half (Spearman-Brown corrected), the best any metric can do",
        [
            "Rank",
            "Metric",
            "Rate (Hz)",
            "n",
            "Pearson r",
            "Spearman ρ",
            "Kendall τ",
            "r mapped",
            "RMSE mapped",
        ],
        rows,
    )


def condition_table(results: StudyResults) -> Table:
    """Per listening-test condition: files, mean rating with Student-t CI, each metric's mean."""
    from perceptual_audio.stats import mean_ci

    pairs = results.pairs[results.pairs["rating_mean"].notna()]
    rows = []
    for cond, g in sorted(pairs.groupby("condition"), key=lambda kv: -kv[1]["rating_mean"].mean()):
        mean, lo, hi, n = mean_ci(g["rating_mean"].to_numpy(float))
        hidden = _hidden(g["hidden_reference"]).all()
        row: list[Any] = [str(cond) + (" (hidden reference)" if hidden else ""), n]
        row.append(_ci_cell(mean, lo, hi))
        for m in results.metrics:
            v = g[m].replace([np.inf, -np.inf], np.nan).to_numpy(float)
            row.append(float(np.nanmean(v)) if np.isfinite(v).any() else math.nan)
        rows.append(row)
    return Table(
        "Per condition: rated files (stimuli), mean rating over stimuli [95% t-CI] and "
        "each metric's mean (conditions best-rated first)",
        ["Condition", "Files", "Mean rating", *[metric_info(m).label for m in results.metrics]],
        rows,
    )


def listener_section(
    results: StudyResults, figures: Sequence[FigureBlock] = ()
) -> tuple[list[str], list[Any]]:
    """(key-finding sentences, blocks) of the listener section; ([], []) without ratings."""
    from perceptual_audio import listening

    if results.listening is None or results.listening.empty:
        return [], []
    info = results.run.get("listening") if isinstance(results.run.get("listening"), dict) else {}
    classic = [m for m in results.metrics if not metric_info(m).neural]
    key = listening.agreement_findings(results.listening, _label, classic=classic)
    pairs = results.pairs[results.pairs["rating_mean"].notna()]
    n_hidden = int(_hidden(pairs["hidden_reference"]).sum())
    included = bool(info.get("include_reference"))
    text = (
        f"{len(pairs)} rated files ({pairs['reference_path'].nunique()} stimuli, "
        f"{pairs['condition'].nunique()} conditions"
        + (f", {info['ratings_n']} ratings" if info.get("ratings_n") else "")
        + (f", from {info['ratings']}" if info.get("ratings") else "")
        + "). "
        + (
            f"The hidden reference ({n_hidden} files) is "
            + ("included in" if included else "listed but left out of")
            + " the agreement statistics"
            + (
                ""
                if included
                else " (every full-reference metric scores it perfectly; "
                "calculate_metrics.py --include-reference puts it in)"
            )
            + ". "
            if n_hidden
            else ""
        )
        + "Confidence intervals: 95% percentile bootstrap resampling stimuli with all their "
        "files. Mapping: "
        + str(info.get("mapping", "ITU-T P.1401 third-order monotonic mapping"))
        + ". Ceiling: "
        + str(info.get("ceiling", "split-half listener correlation, Spearman-Brown corrected"))
        + "."
    )
    blocks: list[Any] = [Paragraph(text)]
    blocks += [listener_table(results, lv) for lv in listening.LEVELS]
    blocks += [f for f in figures if f.group == LISTENER_FIGURE_GROUP]
    blocks.append(condition_table(results))
    return key, blocks


def metric_rate_table(results: StudyResults) -> Table:
    """The sample rate each metric computed at, and the highest frequency it could see."""
    rates = results.run.get("metric_sample_rates_hz") or {}
    study = rates.get("study_sample_rates_hz") or []
    rows = []
    for m in results.metrics:
        r = (rates.get("metrics") or {}).get(m)
        if r is None:
            continue
        top = min([int(r), *[int(s) for s in study]]) / 2000
        rows.append([metric_info(m).label, int(r), Cell(f"{top:g} kHz", top)])
    return Table(
        "Rate each metric saw: the study's audio ("
        + (", ".join(f"{s} Hz" for s in study) or "rate unknown")
        + ") resampled to the metric's own rate; nothing above the last column reaches it",
        ["Metric", "Rate (Hz)", "Sees up to"],
        rows,
    )


def _min_recordings_for_ci() -> int:
    try:
        from perceptual_audio import stats

        return int(getattr(stats, "MIN_RECORDINGS_FOR_CI", 2))
    except Exception:  # noqa: BLE001 - stage 3's module is optional here
        return 2


def build_report(
    results: StudyResults,
    figures: Sequence[FigureBlock] = (),
    *,
    listen: Sequence[Any] = (),
) -> list[Section]:
    """The report's sections, in order; rendered by :func:`render_text` and :func:`render_html`.

    ``listen``: the blocks of the audio-examples section
    (:func:`perceptual_audio.report_audio.audio_examples_blocks`), shown after the key findings.
    """
    from perceptual_audio import report_content

    notes = [Paragraph(n, note=True) for n in results.notes]
    n_rec = int(results.pairs["reference_path"].nunique())
    min_rec = _min_recordings_for_ci()
    if 3 <= len(results.pairs) and n_rec < min_rec:
        notes.append(
            Paragraph(
                f"Only {n_rec} clean recording(s): the bootstrap confidence "
                f"intervals of the correlations need at least {min_rec}, so the "
                "correlations below have no CI and their ranking is not "
                "reliable.",
                note=True,
            )
        )
    if len(results.pairs) < 3:
        notes.append(
            Paragraph(
                f"Only {len(results.pairs)} pair(s) were scored: correlations "
                "need at least 3 and are undefined here.",
                note=True,
            )
        )
    all_nan = [
        m for m in results.metrics if results.pairs[m].isna().all() and metric_info(m).model is None
    ]
    if all_nan:
        notes.append(
            Paragraph(
                "No value at all for: "
                + ", ".join(metric_info(m).label for m in all_nan)
                + " (see Failures).",
                note=True,
            )
        )
    notes += [Paragraph(n, note=True) for n in rate_notes(results)]
    findings = correlation_findings(results) + reference_tracking_findings(results)
    per_family = (
        family_findings(results)
        if not results.correlations.empty and results.neural_metrics
        else []
    )
    mono_sentences, mono_right, mono_monotone = monotonicity_findings(results)
    fail_sentences, fail_metric_rows, fail_pair_rows = failure_summary(results)

    sections = [Section("Notes", notes)] if notes else []
    listener_key, listener_blocks = listener_section(results, figures)
    figures = [f for f in figures if f.group != LISTENER_FIGURE_GROUP]
    content_findings, content_blocks = report_content.content_breakdown(results)
    key = listener_key + findings + content_findings + per_family[-1:] + mono_sentences[:2]
    sections.append(Section("Key findings", [Bullets(key)]))
    if listener_blocks:  # with ratings, the report leads with the listeners
        sections.append(Section("Agreement with listeners", listener_blocks))
    if listen:
        sections.append(Section("Listen", list(listen)))
    rates = metric_rate_table(results)
    sections.append(Section("Setup", setup_blocks(results) + ([rates] if rates.rows else [])))
    sections.append(
        Section("Sample Results", [sample_results_table(results), summary_table(results)])
    )
    corr_blocks: list[Any] = [Bullets(findings + per_family), reference_correlation_table(results)]
    if per_family and len(results.families) > 1:
        corr_blocks.append(family_agreement_table(results))
    if not results.correlations.empty:
        corr_blocks.append(full_correlation_table(results))
    sections.append(Section("Correlation findings", corr_blocks))
    if content_blocks:
        sections.append(Section("By content type", content_blocks))
    mono_blocks: list[Any] = [Bullets(mono_sentences)]
    for table, caption in (
        (
            mono_right,
            "Fraction of recording-steps whose score moves the right way at a step "
            "up in severity (1 = always)",
        ),
        (
            mono_monotone,
            "Fraction of recordings whose score moves the right way at every "
            "step of the family (1 = all)",
        ),
    ):
        if not table.empty:
            rows = [
                [metric_info(idx).marked_label, *[Cell(fmt(v, 2), v) for v in r]]
                for idx, r in zip(table.index, table.to_numpy(dtype=float), strict=True)
            ]
            mono_blocks.append(Table(caption, ["Metric", *[str(c) for c in table.columns]], rows))
    sections.append(Section("Monotonicity", mono_blocks))
    fail_blocks: list[Any] = [Paragraph(" ".join(fail_sentences))]
    if fail_metric_rows:
        fail_blocks.append(
            Table("Failures per metric", ["Metric", "Failed", "Pairs", "Reasons"], fail_metric_rows)
        )
        fail_blocks.append(
            Table(
                "Failed pairs" + (" (first 200)" if len(fail_pair_rows) >= 200 else ""),
                ["Degraded file", "Metric", "Reason"],
                fail_pair_rows,
            )
        )
    sections.append(Section("Failures", fail_blocks))
    if figures:
        sections.append(Section("Figures", list(figures)))
    return sections


# -- text ---------------------------------------------------------------------------------------
def _wrap(text: str, width: int = 100, indent: str = "") -> str:
    """Wrap each line of ``text`` (its own line breaks are kept)."""
    import textwrap

    lines = []
    for i, line in enumerate(text.splitlines() or [""]):
        lines.append(
            textwrap.fill(
                line,
                width=width,
                initial_indent=indent if i == 0 else " " * len(indent),
                subsequent_indent=" " * len(indent),
                break_on_hyphens=False,
                break_long_words=False,
            )
            or ""
        )
    return "\n".join(lines)


def _text_table(table: Table) -> str:
    cells = [[_cell_text(v) for v in row] for row in table.rows]
    widths = [len(c) for c in table.columns]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    widths = [min(w, 100) for w in widths]

    def line(values: Sequence[str]) -> str:
        out = []
        for i, v in enumerate(values):
            v = v if len(v) <= widths[i] else v[: widths[i] - 3] + "..."
            out.append(
                v.ljust(widths[i]) if i == 0 or not _looks_numeric(v) else v.rjust(widths[i])
            )
        return "  ".join(out).rstrip()

    parts = [table.caption + ":", line(table.columns), "  ".join("-" * w for w in widths)]
    parts += [line(r) for r in cells] if cells else ["(no rows)"]
    return "\n".join(parts)


def _looks_numeric(text: str) -> bool:
    return bool(re.match(r"^-?\d", text)) or text == "n/a"


def render_text(
    sections: Sequence[Section],
    *,
    title: str = "Perceptual audio metrics: analysis report",
    generated_at: str | None = None,
) -> str:
    """The report as plain text (UTF-8, lines of at most about 100 characters except tables)."""
    generated_at = generated_at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    out = [title, "=" * len(title), f"Generated {generated_at}", ""]
    for sec in sections:
        out += [sec.title, "-" * len(sec.title)]
        group = ""
        for b in sec.blocks:
            if isinstance(b, Paragraph):
                out.append(_wrap(("NOTE: " if b.note else "") + b.text))
            elif isinstance(b, Bullets):
                out += [_wrap(item, indent="- ") for item in b.items]
            elif isinstance(b, Table):
                out.append(_text_table(b))
            elif isinstance(b, HtmlBlock):
                out.append(b.text)
            elif isinstance(b, FigureBlock):
                if b.group and b.group != group:
                    out += [b.group + ":"]
                    group = b.group
                out.append(_wrap(f"{b.path.name}: {b.caption}", indent="- "))
                continue
            out.append("")
    return "\n".join(out).rstrip() + "\n"


# -- HTML ---------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;
background:#f6f7f9;color:#1d232b;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:24px 32px 64px;background:#fff;min-height:100vh}
h1{font-size:1.7em;margin:0.2em 0}h2{border-bottom:2px solid #d8dde3;padding-bottom:4px;margin-top:2em}
.meta{color:#5b6570;font-size:0.9em}
.note{white-space:pre-line;background:#fff4d6;border:1px solid #e6c36a;border-left:6px solid #d99a00;padding:10px 14px;
margin:8px 0;border-radius:4px}
table{border-collapse:collapse;margin:10px 0 18px;font-size:0.88em;width:auto;max-width:100%}
caption{caption-side:top;text-align:left;font-weight:600;padding:4px 0;color:#333}
th,td{border:1px solid #d8dde3;padding:4px 8px;vertical-align:top}
td.long{overflow-wrap:anywhere;min-width:12em}
th{background:#eef1f5;cursor:pointer;user-select:none;white-space:nowrap;text-align:left}
h3{margin-top:1.6em;color:#2b3440}
th.sorted-asc::after{content:" \\25B2";font-size:0.7em}th.sorted-desc::after{content:" \\25BC";font-size:0.7em}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:nth-child(even) td{background:#fafbfc}
.wide{overflow-x:auto}
figure{margin:18px 0 28px}figure img{max-width:100%;height:auto;border:1px solid #e3e6ea}
figcaption{font-size:0.9em;color:#444;margin-top:4px}
details summary{cursor:pointer;color:#1a5fb4;margin:6px 0}
li{margin:4px 0}
nav a{margin-right:12px}
"""

# Click a header to sort by it; numbers sort numerically (data-sort), text alphabetically,
# empty cells last. A second click reverses.
_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
 t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
  var b=t.tBodies[0],rows=Array.from(b.rows),asc=!th.classList.contains('sorted-asc');
  t.querySelectorAll('th').forEach(function(h){h.classList.remove('sorted-asc','sorted-desc')});
  th.classList.add(asc?'sorted-asc':'sorted-desc');
  function k(r){var c=r.cells[i],v=c.getAttribute('data-sort');v=v===null?c.textContent:v;
   var n=parseFloat(v);return v===''?null:(isNaN(n)||!/^[-+.\\d]/.test(v)?v.toLowerCase():n)}
  rows.sort(function(x,y){var a=k(x),c=k(y);if(a===null)return 1;if(c===null)return -1;
   if(typeof a!==typeof c){a=String(a);c=String(c)}return (a<c?-1:a>c?1:0)*(asc?1:-1)});
  rows.forEach(function(r){b.appendChild(r)});});});});
"""


def figure_data_uri(path: str | os.PathLike) -> str:
    """A ``data:`` URI of a PNG or SVG file (base64)."""
    path = Path(path)
    mime = {
        ".png": "image/png",
        ".svg": "image/svg+xml",
        ".jpg": "image/jpeg",
        ".jpeg": "image/jpeg",
    }.get(path.suffix.lower())
    if mime is None:
        raise PerceptualAudioError(
            f"{path}: cannot embed a figure of type {path.suffix!r}; expected .png or .svg"
        )
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _html_table(table: Table, table_id: str) -> str:
    esc = html.escape
    head = "".join(f'<th scope="col">{esc(c)}</th>' for c in table.columns)
    body = []
    for row in table.rows:
        tds = []
        for v in row:
            text = _cell_text(v)
            numeric = isinstance(
                v, Cell | int | float | np.integer | np.floating
            ) and _looks_numeric(text)
            # Hashes, URLs and paths may break anywhere; short words keep whole.
            long_token = any(len(tok) > 24 for tok in text.split())
            cls = ' class="num"' if numeric else (' class="long"' if long_token else "")
            sort = _cell_sort(v)
            attr = f' data-sort="{esc(sort)}"' if sort != text else ""
            tds.append(f"<td{cls}{attr}>{esc(text)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(table.columns)}">(no rows)</td></tr>')
    return (
        f'<div class="wide"><table class="sortable" id="{table_id}"><caption>'
        f"{esc(table.caption)}</caption><thead><tr>{head}</tr></thead><tbody>"
        + "\n".join(body)
        + "</tbody></table></div>"
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def render_html(
    sections: Sequence[Section],
    *,
    title: str = "Perceptual audio metrics: analysis report",
    generated_at: str | None = None,
    collapse_rows: int = 40,
) -> str:
    """The report as one self-contained HTML page.

    Figures are embedded as ``data:`` URIs; styles and the table-sorting script are inline; no
    element refers to a remote resource. Tables longer than ``collapse_rows`` rows are folded
    in a ``<details>`` element.
    """
    esc = html.escape
    generated_at = generated_at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    nav = " ".join(f'<a href="#{_slug(s.title)}">{esc(s.title)}</a>' for s in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">Generated {esc(generated_at)}</p>',
        f"<nav>{nav}</nav>",
    ]
    n_table = 0
    for sec in sections:
        parts.append(f'<section id="{_slug(sec.title)}"><h2>{esc(sec.title)}</h2>')
        group = ""
        for b in sec.blocks:
            if isinstance(b, Paragraph):
                parts.append(
                    f'<p class="note"><strong>Note:</strong> {esc(b.text)}</p>'
                    if b.note
                    else f"<p>{esc(b.text)}</p>"
                )
            elif isinstance(b, Bullets):
                parts.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in b.items) + "</ul>")
            elif isinstance(b, Table):
                n_table += 1
                rendered = _html_table(b, f"table-{n_table}")
                if len(b.rows) > collapse_rows:
                    rendered = (
                        f"<details><summary>{esc(b.caption)} ({len(b.rows)} rows, click "
                        f"to show)</summary>{rendered}</details>"
                    )
                parts.append(rendered)
            elif isinstance(b, HtmlBlock):
                parts.append(b.html)
            elif isinstance(b, FigureBlock):
                if b.group and b.group != group:
                    parts.append(f"<h3>{esc(b.group)}</h3>")
                    group = b.group
                parts.append(
                    f'<figure><img src="{figure_data_uri(b.path)}" alt="{esc(b.caption)}">'
                    f"<figcaption>{esc(b.caption)} ({esc(b.path.name)})</figcaption></figure>"
                )
        parts.append("</section>")
    parts += [f"<script>{_SORT_JS}</script>", "</main></body></html>"]
    return "\n".join(parts) + "\n"
