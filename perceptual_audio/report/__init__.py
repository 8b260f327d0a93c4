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
   by :mod:`perceptual_audio.report.plots`) into a list of :class:`Section`; :func:`render_text` and
   :func:`render_html` render the same sections, so the two reports always say the same thing.
   The HTML is one self-contained file: figures as ``data:`` URIs, inline CSS, a few lines of
   inline JavaScript to sort tables, no remote resources.

The package, in import order: :mod:`.vocabulary`, :mod:`.loading`, :mod:`.elements`,
:mod:`.findings`, :mod:`.tables`, :mod:`.listeners`, :mod:`.sections`, :mod:`.render`. It does not import matplotlib (only :mod:`perceptual_audio.report.plots` does).
"""

from __future__ import annotations

from pathlib import Path as _Path

from perceptual_audio.report.elements import (
    Bullets,
    Cell,
    FigureBlock,
    HtmlBlock,
    Paragraph,
    Section,
    Table,
    cell_sort,
    cell_text,
    ci_cell,
)
from perceptual_audio.report.findings import (
    Correlation,
    agreement,
    and_list,
    classify_agreement,
    correlation_findings,
    failure_summary,
    family_agreement_table,
    family_findings,
    judges,
    lookup_correlation,
    rate_notes,
    reference_tracking_findings,
    strength_word,
)
from perceptual_audio.report.listeners import (
    LISTENER_FIGURE_GROUP,
    condition_table,
    listener_section,
    listener_table,
    metric_rate_table,
    min_recordings_for_ci,
)
from perceptual_audio.report.loading import (
    ModelStatus,
    StudyResults,
    describe_parameters,
    load_results,
    shorten,
)
from perceptual_audio.report.loading_tables import read_pair_metrics
from perceptual_audio.report.monotonicity import monotonicity_findings
from perceptual_audio.report.render import (
    figure_data_uri,
    render_html,
    render_text,
)
from perceptual_audio.report.sections import (
    build_report,
)
from perceptual_audio.report.tables import (
    full_correlation_table,
    reference_correlation_table,
    sample_results_table,
    setup_blocks,
    summary_table,
)
from perceptual_audio.report.vocabulary import (
    HTML_REPORT_NAME,
    METHOD_NAME,
    METHOD_SYMBOL,
    NOTE_REASON_CHARS,
    PRIMARY_METHOD,
    SCOPE_ALL,
    STRENGTH_WORDS,
    TEXT_REPORT_NAME,
    MetricInfo,
    condition_label,
    fmt,
    fmt_n,
    headline_metrics,
    judge_metrics,
    metric_info,
    metric_sort_key,
    one_line_reason,
    primary_neural_metrics,
    study_models,
)
from perceptual_audio.results import (
    CORRELATIONS_NAME,
    MONOTONICITY_NAME,
    PAIR_METRICS_NAME,
    RUN_JSON_NAME,
    SUMMARY_NAME,
    read_correlations,
    read_summary,
)

#: The modules of this package (stage 4's inputs digest hashes their code).
MODULE_FILES = tuple(sorted(_Path(__file__).parent.glob("*.py")))

__all__ = [
    "Bullets",
    "CORRELATIONS_NAME",
    "Cell",
    "Correlation",
    "FigureBlock",
    "HTML_REPORT_NAME",
    "HtmlBlock",
    "LISTENER_FIGURE_GROUP",
    "METHOD_NAME",
    "METHOD_SYMBOL",
    "MONOTONICITY_NAME",
    "MetricInfo",
    "ModelStatus",
    "NOTE_REASON_CHARS",
    "PAIR_METRICS_NAME",
    "PRIMARY_METHOD",
    "Paragraph",
    "RUN_JSON_NAME",
    "SCOPE_ALL",
    "STRENGTH_WORDS",
    "SUMMARY_NAME",
    "Section",
    "StudyResults",
    "TEXT_REPORT_NAME",
    "Table",
    "and_list",
    "cell_sort",
    "cell_text",
    "ci_cell",
    "fmt_n",
    "min_recordings_for_ci",
    "one_line_reason",
    "shorten",
    "agreement",
    "build_report",
    "classify_agreement",
    "condition_label",
    "condition_table",
    "correlation_findings",
    "describe_parameters",
    "failure_summary",
    "family_agreement_table",
    "family_findings",
    "figure_data_uri",
    "fmt",
    "full_correlation_table",
    "headline_metrics",
    "listener_section",
    "listener_table",
    "judge_metrics",
    "load_results",
    "judges",
    "lookup_correlation",
    "metric_info",
    "metric_rate_table",
    "metric_sort_key",
    "monotonicity_findings",
    "primary_neural_metrics",
    "rate_notes",
    "read_correlations",
    "read_pair_metrics",
    "read_summary",
    "reference_correlation_table",
    "reference_tracking_findings",
    "render_html",
    "render_text",
    "sample_results_table",
    "setup_blocks",
    "strength_word",
    "study_models",
    "summary_table",
]
