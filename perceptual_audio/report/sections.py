"""The whole report as sections: :func:`build_report`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pandas as pd

from perceptual_audio.report import content as report_content
from perceptual_audio.report.elements import (
    Bullets,
    Cell,
    FigureBlock,
    Paragraph,
    Section,
    Table,
)
from perceptual_audio.report.findings import (
    correlation_findings,
    failure_summary,
    family_agreement_table,
    family_findings,
    judges,
    rate_notes,
    reference_tracking_findings,
)
from perceptual_audio.report.glance import glance_section, panel_sources_table
from perceptual_audio.report.listeners import (
    LISTENER_FIGURE_GROUP,
    listener_section,
    metric_rate_table,
    min_recordings_for_ci,
)
from perceptual_audio.report.loading import (
    StudyResults,
)
from perceptual_audio.report.monotonicity import monotonicity_findings
from perceptual_audio.report.tables import (
    full_correlation_table,
    reference_correlation_table,
    sample_results_table,
    setup_blocks,
    summary_table,
)
from perceptual_audio.report.vocabulary import (
    fmt,
    metric_info,
)

logger = logging.getLogger(__name__)


def _has_panel(results: StudyResults) -> bool:

    return any(metric_info(m).validated for m in judges(results))


def build_report(
    results: StudyResults,
    figures: Sequence[FigureBlock] = (),
    *,
    listen: Sequence[Any] = (),
    loss_audit: Sequence[Any] = (),
) -> list[Section]:
    """The report's sections, in order; rendered by :func:`render_text` and :func:`render_html`.

    ``listen``: the blocks of the audio-examples section
    (:func:`perceptual_audio.report.audio.audio_examples_blocks`), shown after the key findings.
    """
    notes = _notes(results)
    findings = correlation_findings(results) + reference_tracking_findings(results)
    per_family = (
        family_findings(results)
        if not results.correlations.empty and results.neural_metrics
        else []
    )
    mono_sentences, mono_right, mono_monotone = monotonicity_findings(results)

    sections = [glance_section(results)]
    sections += [Section("Notes", notes)] if notes else []
    listener_key, listener_blocks = listener_section(results, figures)
    figures = [f for f in figures if f.group != LISTENER_FIGURE_GROUP]
    content_findings, content_blocks = report_content.content_breakdown(results)
    groups = (
        ("Listeners", listener_key),
        ("Against the " + ("reference panel" if _has_panel(results) else "classics"), findings),
        ("By content type", content_findings),
        ("By degradation family", per_family[-1:]),
        ("Monotonicity", mono_sentences[:2]),
    )
    sections.append(
        Section(
            "Key findings",
            [Bullets(items, title=title, fold=True) for title, items in groups if items],
        )
    )
    if loss_audit:  # report.loss_audit.loss_audit_blocks
        sections.append(Section("Loss audit", list(loss_audit)))
    if listener_blocks:  # with ratings, the report leads with the listeners
        sections.append(Section("Agreement with listeners", listener_blocks))
    if listen:
        sections.append(Section("Listen", list(listen)))
    sections.append(_setup_section(results))
    sections.append(
        Section("Sample Results", [sample_results_table(results), summary_table(results)])
    )
    sections.append(_correlation_section(results, findings, per_family))
    if content_blocks:
        sections.append(Section("By content type", content_blocks))
    sections.append(_monotonicity_section(mono_sentences, mono_right, mono_monotone))
    sections.append(_failures_section(results))
    if figures:
        sections.append(Section("Figures", list(figures)))
    return sections


def _notes(results: StudyResults) -> list[Paragraph]:
    """The Notes section: the loader's notes, then what makes the statistics weak or empty."""
    notes = [Paragraph(n, note=True) for n in results.notes]
    n_rec = int(results.pairs["reference_path"].nunique())
    min_rec = min_recordings_for_ci()
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
    return notes + [Paragraph(n, note=True) for n in rate_notes(results)]


def _setup_section(results: StudyResults) -> Section:
    """Inputs, degradations and models, then the metrics' rates and the panel's sources."""
    rates = metric_rate_table(results)
    panel = panel_sources_table(results)
    return Section(
        "Setup",
        setup_blocks(results)
        + ([rates] if rates.rows else [])
        + ([panel] if panel is not None else []),
    )


def _correlation_section(
    results: StudyResults, findings: list[str], per_family: list[str]
) -> Section:
    """The correlation findings in words, then the tables behind them."""
    blocks: list[Any] = [Bullets(findings + per_family), reference_correlation_table(results)]
    if per_family and len(results.families) > 1:
        blocks.append(family_agreement_table(results))
    if not results.correlations.empty:
        blocks.append(full_correlation_table(results))
    return Section("Correlation findings", blocks)


def _monotonicity_section(
    sentences: list[str], right: pd.DataFrame, monotone: pd.DataFrame
) -> Section:
    """The monotonicity findings in words, then its metric x family tables."""
    blocks: list[Any] = [Bullets(sentences)]
    for table, caption in (
        (
            right,
            "Fraction of recording-steps whose score moves the right way at a step "
            "up in severity (1 = always)",
        ),
        (
            monotone,
            "Fraction of recordings whose score moves the right way at every "
            "step of the family (1 = all)",
        ),
    ):
        if not table.empty:
            rows = [
                [metric_info(idx).marked_label, *[Cell(fmt(v, 2), v) for v in r]]
                for idx, r in zip(table.index, table.to_numpy(dtype=float), strict=True)
            ]
            blocks.append(Table(caption, ["Metric", *[str(c) for c in table.columns]], rows))
    return Section("Monotonicity", blocks)


def _failures_section(results: StudyResults) -> Section:
    """Failures in words, per metric and per failed pair."""
    sentences, metric_rows, pair_rows = failure_summary(results)
    blocks: list[Any] = [Paragraph(" ".join(sentences))]
    if metric_rows:
        blocks.append(
            Table("Failures per metric", ["Metric", "Failed", "Pairs", "Reasons"], metric_rows)
        )
        blocks.append(
            Table(
                "Failed pairs" + (" (first 200)" if len(pair_rows) >= 200 else ""),
                ["Degraded file", "Metric", "Reason"],
                pair_rows,
            )
        )
    return Section("Failures", blocks)
