"""Names for people: metric labels, model names, level labels, the words of correlations."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from perceptual_audio import metrics as _metrics
from perceptual_audio.layout import HTML_REPORT_NAME, TEXT_REPORT_NAME  # noqa: F401 (re-exported)
from perceptual_audio.listening import LISTENING_FAMILY

logger = logging.getLogger(__name__)


#: Symbols of the correlation methods (in :data:`CORRELATION_METHODS` order).
METHOD_SYMBOL = {"pearson": "r", "spearman": "ρ", "kendall": "τ"}
METHOD_NAME = {"pearson": "Pearson", "spearman": "Spearman", "kendall": "Kendall"}
#: The method the plain-word findings rank by: rank-based, so a monotone but curved relation
#: (PESQ saturates near 4.6) still counts as full agreement.
PRIMARY_METHOD = "spearman"
#: Scope value of correlations over all pairs.
SCOPE_ALL = "all"


def study_models() -> dict[str, str]:
    """The embedding models (the registry's, in column order) with their display names."""
    from perceptual_audio.embeddings.base import (
        model_names,  # deferred: the model registry imports torch
    )

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
    models = list(study_models())
    if info.model is not None:
        kinds = list(_metrics.model_metric_names(info.model))
        rank = models.index(info.model) if info.model in models else len(models)
        return (1 + rank, kinds.index(name) if name in kinds else 99, name)
    return (9 + len(models), 0, name)


def headline_metrics(metrics: Iterable[str]) -> list[str]:
    """The headline measures among ``metrics`` (the catalogue's ``headline`` flag: At a
    glance, the Listen cards), in report order."""
    return sorted(_metrics.headline_metric_names(list(metrics)), key=metric_sort_key)


def primary_neural_metrics(metrics: Iterable[str]) -> list[str]:
    """The headline neural measures: per model its frame cosine, then the models' own
    learned metrics (CDPAM's distance); catalogue-driven (``headline``)."""
    headline = headline_metrics(metrics)
    cosine = [m for m in headline if metric_info(m).neural and m.endswith("_cosine")]
    return cosine + [m for m in headline if metric_info(m).neural and m not in cosine]


def judge_metrics(metrics: Iterable[str], has_values: Any = None) -> list[str]:
    """What the findings judge the other measures against: the reference panel (metrics the
    catalogue marks as validated against listeners, ``validated_by``) where the study computed
    it; else the headline classic scores of perceived quality or intelligibility (bounded
    scales: PESQ-WB, STOI; not the signal ratio SI-SDR), the seed study's references.

    ``has_values(metric) -> bool`` drops columns without a value (a metric that failed
    everywhere)."""
    metrics = list(metrics)
    keep = has_values or (lambda m: True)
    panel = [m for m in _metrics.panel_metric_names(metrics) if keep(m)]
    if panel:
        return panel
    return [
        m
        for m in headline_metrics(metrics)
        if metric_info(m).kind == "classic" and metric_info(m).bounds is not None and keep(m)
    ]


def condition_label(family: str, level: str) -> str:
    """``noise``, ``low`` -> ``Noise (Low)`` (the seed study's row names); a listening test's
    condition is shown as the test names it (``opus``, ``Proposed 1.38 16kHz``)."""

    if family == LISTENING_FAMILY:
        return str(level)

    def nice(s: str) -> str:
        s = str(s).replace("_", " ")
        return s[:1].upper() + s[1:]

    return f"{nice(family)} ({nice(level)})"


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


def fmt_n(value: Any) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if math.isnan(x) else str(int(round(x)))


#: A note's reason is cut to this many characters (the models table has the whole text).
NOTE_REASON_CHARS = 120


def one_line_reason(reason: str) -> str:
    """The first line of a (multi-line) reason, at most :data:`NOTE_REASON_CHARS` long."""
    first = (reason or "no reason given").strip().splitlines()[0].strip().rstrip(":;,.")
    if len(first) > NOTE_REASON_CHARS:
        first = first[: NOTE_REASON_CHARS - 3].rstrip() + "..."
    return first


# =============================================================================================
# Agreement with listeners (perceptual_audio.listening computes, this part presents)
# =============================================================================================
