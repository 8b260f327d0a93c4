"""The whole report as sections: :func:`build_report`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

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
    monotonicity_findings,
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
    notes += [Paragraph(n, note=True) for n in rate_notes(results)]
    findings = correlation_findings(results) + reference_tracking_findings(results)
    per_family = (
        family_findings(results)
        if not results.correlations.empty and results.neural_metrics
        else []
    )
    mono_sentences, mono_right, mono_monotone = monotonicity_findings(results)
    fail_sentences, fail_metric_rows, fail_pair_rows = failure_summary(results)

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
    rates = metric_rate_table(results)
    panel = panel_sources_table(results)
    sections.append(
        Section(
            "Setup",
            setup_blocks(results)
            + ([rates] if rates.rows else [])
            + ([panel] if panel is not None else []),
        )
    )
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
