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
    _cell_sort,
    _cell_text,
    _ci_cell,
)
from perceptual_audio.report.findings import (
    Correlation,
    _and,
    _leaders,
    _sign_note,
    _status_column,
    agreement,
    classify_agreement,
    correlation_findings,
    failure_summary,
    family_agreement_table,
    family_findings,
    judges,
    lookup_correlation,
    monotonicity_findings,
    rate_notes,
    reference_tracking_findings,
    strength_word,
)
from perceptual_audio.report.listeners import (
    LISTENER_FIGURE_GROUP,
    _coef_cell,
    _hidden,
    _label,
    _min_recordings_for_ci,
    condition_table,
    listener_section,
    listener_table,
    metric_rate_table,
)
from perceptual_audio.report.loading import (
    _PARAMETER_BOOKKEEPING,
    ModelStatus,
    StudyResults,
    _conversion_settings,
    _level_order,
    _locate,
    _model_status,
    _parse_parameters,
    _rating_columns,
    _read_degradations,
    _read_json,
    _read_listener_agreement,
    _run_argument,
    _shared,
    _short,
    describe_parameters,
    load_results,
    read_pair_metrics,
)
from perceptual_audio.report.render import (
    _CSS,
    _SORT_JS,
    _html_table,
    _looks_numeric,
    _slug,
    _text_table,
    _wrap,
    figure_data_uri,
    render_html,
    render_text,
)
from perceptual_audio.report.sections import (
    build_report,
)
from perceptual_audio.report.tables import (
    _model_available,
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
    _fmt_n,
    _one_line_reason,
    condition_label,
    fmt,
    headline_metrics,
    judge_metrics,
    metric_info,
    metric_sort_key,
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
    "_CSS",
    "_PARAMETER_BOOKKEEPING",
    "_SORT_JS",
    "_and",
    "_cell_sort",
    "_cell_text",
    "_ci_cell",
    "_coef_cell",
    "_conversion_settings",
    "_fmt_n",
    "_hidden",
    "_html_table",
    "_label",
    "_leaders",
    "_level_order",
    "_locate",
    "_looks_numeric",
    "_min_recordings_for_ci",
    "_model_available",
    "_model_status",
    "_one_line_reason",
    "_parse_parameters",
    "_rating_columns",
    "_read_degradations",
    "_read_json",
    "_read_listener_agreement",
    "_run_argument",
    "_shared",
    "_short",
    "_sign_note",
    "_slug",
    "_status_column",
    "_text_table",
    "_wrap",
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
