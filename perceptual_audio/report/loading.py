"""Reading a results folder and its upstream folders into one :class:`StudyResults`."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perceptual_audio import metrics as _metrics
from perceptual_audio import stats
from perceptual_audio.errors import PerceptualAudioError, SchemaError
from perceptual_audio.report.loading_tables import (
    read_correlation_table,
    read_listener_agreement,
    read_monotonicity_table,
    read_study_pairs,
    read_summary_table,
)
from perceptual_audio.report.vocabulary import (
    metric_info,
    one_line_reason,
    study_models,
)
from perceptual_audio.results import (
    PAIR_METRICS_NAME,
    RUN_JSON_NAME,
)

logger = logging.getLogger(__name__)


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
        parts = [", ".join(f"{k}={shorten(v)}" for k, v in settings.items())]
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
    text = ", ".join(f"{k}={shorten(v)}" for k, v in common.items())
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
    return ", ".join(f"{k}={shorten(v)}" for k, v in keep.items())


def shorten(v: Any) -> str:
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
    notes: list[str] = []  # in the order the report shows them
    pairs, metrics, n_not_applied = read_study_pairs(results_dir)
    summary = read_summary_table(results_dir)
    correlations = read_correlation_table(results_dir, notes)
    monotonicity = read_monotonicity_table(results_dir, notes)
    run = _read_json(results_dir / RUN_JSON_NAME)
    if n_not_applied:
        notes.append(
            f"{n_not_applied} pair(s) whose degradation was not applied (silent input: the "
            "'degraded' file equals the clean one) are left out of the figures and statistics; "
            f"they are listed in {PAIR_METRICS_NAME}."
        )
    families = list(dict.fromkeys(pairs["family"].tolist()))
    audio_folder, degradations, audio_info = _read_audio_folder(results_dir, audio_dir, run)
    models = _model_statuses(results_dir, run, model_dirs, metrics, pairs)
    metrics = _without_unavailable_models(models, metrics, notes)
    if not metrics:
        raise SchemaError(
            f"{results_dir / PAIR_METRICS_NAME}: no metric has a value; "
            "expected at least pesq_wb or stoi."
        )
    inputs = _setup_facts(results_dir, pairs, run, audio_folder, audio_info, notes)
    return StudyResults(
        results_dir=results_dir,
        pairs=pairs,
        metrics=metrics,
        summary=summary,
        correlations=correlations,
        monotonicity=monotonicity,
        run=run,
        families=families,
        level_order=_level_order(pairs, families, run),
        models=models,
        degradations=degradations,
        inputs=inputs,
        notes=notes,
        listening=read_listener_agreement(results_dir, metrics, notes),
    )


def _read_audio_folder(
    results_dir: Path, audio_dir: str | os.PathLike | None, run: dict[str, Any]
) -> tuple[str, pd.DataFrame, dict[str, Any]]:
    """The audio folder of stages 1-2 (as given, else as recorded in run.json, else
    ``<results parent>/test_audio``) in words, with its degradations and facts
    (:func:`_read_degradations`)."""
    recorded = str(audio_dir) if audio_dir is not None else _run_argument(run, "audio_dir")
    folder = _locate(recorded, results_dir, "test_audio")
    degradations, info = _read_degradations(folder)
    return (str(folder) if folder else (recorded or "not found")), degradations, info


def _setup_facts(
    results_dir: Path,
    pairs: pd.DataFrame,
    run: dict[str, Any],
    audio_folder: str,
    audio_info: dict[str, Any],
    notes: list[str],
) -> dict[str, Any]:
    """:attr:`StudyResults.inputs`: the facts of the setup section; a note when run.json
    cannot say how the metrics were computed."""
    if not run:
        notes.append(
            f"{results_dir / RUN_JSON_NAME} is missing or unreadable: the setup section "
            "cannot say how the metrics were computed."
        )
    return {
        "results_dir": str(results_dir),
        "audio_dir": audio_folder,
        "n_pairs": len(pairs),
        "n_references": int(pairs["reference_path"].nunique()),
        "metrics_command": " ".join(map(str, run.get("command", []))) if run else "",
        "metrics_finished_at": run.get("finished_at", "") if run else "",
        **audio_info,
    }


def _model_statuses(
    results_dir: Path,
    run: dict[str, Any],
    model_dirs: dict[str, str | os.PathLike] | None,
    metrics: list[str],
    pairs: pd.DataFrame,
) -> list[ModelStatus]:
    """The status of every study model, from its embedding folder (given in ``model_dirs``,
    else as recorded in run.json, else ``<results parent>/<model>_embeddings``)."""
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
    return models


def _without_unavailable_models(
    models: Sequence[ModelStatus], metrics: list[str], notes: list[str]
) -> list[str]:
    """``metrics`` without the columns of unavailable models, with a note for each such model."""
    for m in models:
        if not m.available:
            notes.append(
                f"{m.display} was unavailable and is left out of this report "
                f"({one_line_reason(m.reason)}); details in the Embedding models table."
            )
            # Columns of a model its stage called unavailable (stale values of an older run)
            # are not reported either: the report would contradict its own note.
            metrics = [c for c in metrics if metric_info(c).model != m.name]
    return metrics
