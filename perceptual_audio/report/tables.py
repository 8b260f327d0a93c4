"""The report's tables and its setup section."""

from __future__ import annotations

import logging
import math
from typing import Any

import pandas as pd

from perceptual_audio.report.elements import (
    Bullets,
    Cell,
    Folded,
    Paragraph,
    Table,
    ci_cell,
    split_for_fold,
)
from perceptual_audio.report.findings import (
    lookup_correlation,
)
from perceptual_audio.report.loading import (
    StudyResults,
    shorten,
)
from perceptual_audio.report.vocabulary import (
    METHOD_NAME,
    METHOD_SYMBOL,
    SCOPE_ALL,
    condition_label,
    fmt_n,
    headline_metrics,
    metric_info,
    primary_neural_metrics,
    study_models,
)
from perceptual_audio.results import (
    CORRELATION_METHODS,
)

logger = logging.getLogger(__name__)


def sample_results_table(results: StudyResults) -> Table:
    """The seed study's table: one row per condition (``Noise (Low)``), mean of the headline
    neural similarities per model, PESQ and STOI."""
    columns: list[tuple[str, str]] = []
    models = study_models()
    for m in primary_neural_metrics(results.metrics):
        model = metric_info(m).model
        if model is not None and _model_available(results, model):
            label = f"{models.get(model, model)} similarity" if m == f"{model}_cosine" else None
            columns.append((m, label or metric_info(m).label))
    for m in headline_metrics(results.metrics):
        if not metric_info(m).neural:
            # "PESQ" is the wide-band one (the caption says so)
            columns.append((m, "PESQ" if m == "pesq_wb" else metric_info(m).label))
    rows = []
    for fam, lev in results.conditions:
        n = float(((results.pairs["family"] == fam) & (results.pairs["level"] == lev)).sum())
        row: list[Any] = [condition_label(fam, lev), Cell(fmt_n(n), n)]
        for m, _ in columns:
            mean, _lo, _hi, n_metric = results.summary_cell(fam, lev, m)
            row.append(mean)
            row.append(Cell(fmt_n(n_metric), n_metric))
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
                    Cell(fmt_n(n), n),
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
                cells.append(ci_cell(c.r, c.ci_low, c.ci_high) if c else Cell("n/a", math.nan))
            if first is None:
                continue
            cells.insert(2, Cell(fmt_n(first.n), first.n))
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
        row.append(Cell(fmt_n(n), float(n) if pd.notna(n) else math.nan))
        for m in methods:
            row.append(
                ci_cell(
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


#: Units of parameters whose name does not carry one (the house names carry units).
PARAMETER_UNITS = {
    "bootstrap": "replicates",
    "confidence": "coverage",
    "seed": "",
    "pesq_nb_sample_rate": "Hz",
    "study_sample_rate": "Hz",
    "dpi": "dots per inch",
}
#: Name endings and their units.
UNIT_SUFFIXES = (
    ("_hz", "Hz"),
    ("_sample_rate", "Hz"),
    ("_seconds", "s"),
    ("_s", "s"),
    ("_db", "dB"),
    ("_mb", "MB"),
    ("_kbps", "kbit/s"),
    ("_version", "version"),
)
#: A parameter value longer than this is folded (one line shown, the rest behind details).
PARAMETER_VALUE_CHARS = 80


def parameter_unit(name: str) -> str:
    """The unit of a parameter from its name (``pesq_nb_sample_rate`` -> ``Hz``)."""
    last = name.rsplit(".", 1)[-1]
    if last in PARAMETER_UNITS:
        return PARAMETER_UNITS[last]
    return next((unit for end, unit in UNIT_SUFFIXES if last.endswith(end)), "")


def parameter_table(params: dict[str, Any]) -> Table:
    """A run's parameters as a definition table: name, value, unit (nested settings one level
    deep as ``group.name``; a long value folded)."""
    rows: list[list[Any]] = []

    def add(name: str, value: Any, shown: str | None = None) -> None:
        text = shorten(value)
        cell: Any = text
        if shown is not None or len(text) > PARAMETER_VALUE_CHARS:
            cell = Folded(shown or text[: PARAMETER_VALUE_CHARS - 3] + "...", text)
        rows.append([name, cell, parameter_unit(name)])

    for key, value in params.items():
        if not isinstance(value, dict):
            add(key, value)
            continue
        records = {k: v for k, v in value.items() if isinstance(v, dict)}
        for sub, v in value.items():
            if sub not in records:
                add(f"{key}.{sub}", v)
        if records:  # one record per column (the metrics' descriptions): one folded row
            add(f"{key} (per entry)", records, f"{len(records)} entries: " + ", ".join(records))
    return Table("Metric stage parameters (results/run.json)", ["Name", "Value", "Unit"], rows)


def _folded_reason(reason: str) -> Any:
    """A model's skip reason: its first line, the whole message behind a fold if longer."""
    first = reason.strip().splitlines()[0] if reason.strip() else ""
    whole = reason.strip()
    if whole == first and len(first) <= PARAMETER_VALUE_CHARS:
        return first
    return Folded(split_for_fold(first, PARAMETER_VALUE_CHARS)[0], whole)


def setup_blocks(results: StudyResults) -> list[Any]:
    """Inputs, degradations with their parameters, models with weights hashes."""
    params = (
        results.run.get("parameters") if isinstance(results.run.get("parameters"), dict) else {}
    )
    blocks: list[Any] = [Bullets(_setup_lines(results))]
    if params:
        blocks.append(parameter_table(params))
    blocks.append(_degradation_table(results))
    blocks.append(_model_table(results))
    return blocks


def _setup_lines(results: StudyResults) -> list[str]:
    """The inputs in words: folders, pairs, families and levels, the clean files, and the
    commands of stages 2 and 3 (as far as they are known)."""
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
    return lines


def _degradation_table(results: StudyResults) -> Table | Paragraph:
    """Each condition's parameters and file count from the audio manifest (or why not)."""
    if results.degradations.empty:
        return Paragraph(
            "The audio manifest (test_audio/manifest.csv) was not found, so "
            "the degradation parameters cannot be listed."
        )
    rows = []
    for fam, lev in results.conditions:
        hit = results.degradations[
            (results.degradations["family"] == fam) & (results.degradations["level"] == lev)
        ]
        if hit.empty:
            rows.append([condition_label(fam, lev), "not in the audio manifest", ""])
        else:
            rows.append(
                [condition_label(fam, lev), hit.iloc[0]["parameters"], int(hit.iloc[0]["n_files"])]
            )
    return Table(
        "Degradations and their parameters (from the audio manifest)",
        ["Degradation", "Parameters", "Files"],
        rows,
    )


def _model_table(results: StudyResults) -> Table:
    """The embedding models: available or why skipped, variant, weights hash, embeddings."""
    rows = [
        [
            m.display,
            "yes" if m.available else "no (skipped)",
            m.variant or "",
            m.weights_sha256 or "",
            "" if m.n_embeddings is None else m.n_embeddings,
            _folded_reason(m.reason) if m.reason and not m.available else "",
        ]
        for m in results.models
    ]
    return Table(
        "Embedding models",
        ["Model", "Available", "Variant", "Weights sha256", "Embeddings", "Why skipped"],
        rows,
    )
