"""Per-pair metrics: classic (PESQ, STOI, ESTOI, SI-SDR) and embedding similarities.

Every metric compares a clean *reference* with a *degraded* version of it. A metric that
cannot be computed on a pair (digital silence, too short, a missing embedding) raises
:class:`MetricError`; :func:`measure` turns that into ``NaN`` plus a one-line status, so a
failed measurement is never replaced by a stand-in number.

Exactness: :func:`pesq_score` and :func:`stoi_score` call the ``pesq`` and ``pystoi``
libraries on the very arrays they are given (float32 as read by
:func:`perceptual_audio.audio_io.load_audio`), so their values equal a direct call. The only
processing added is resampling when the file's rate is not the one the measure needs
(soxr VHQ, :func:`perceptual_audio.audio_io.resample`).

Conventions: waveforms are (n,) float arrays in [-1, 1]; embeddings are (T, D) arrays whose
frame ``t`` of the reference and of the degraded file cover the same time span (same model,
same hop, timestamps = frame index x hop).

The package, in import order (each imports only those before it): :mod:`.signal` (what one
measurement is, input checks), :mod:`.measures` (PESQ, STOI, SI-SDR, embedding
similarities), :mod:`.reference` (ViSQOL, Zimtohrli, DNSMOS), :mod:`.groups` (the computations
stage 3 schedules, their settings), :mod:`.catalogue` (what each column is, ``--metrics``
selection).
"""

from __future__ import annotations

from perceptual_audio.metrics.catalogue import (
    CATALOGUE,
    CLASSIC_METRICS,
    DOMAIN_ANY,
    DOMAIN_SPEECH,
    KIND_CLASSIC,
    KIND_NEURAL,
    KIND_REFERENCE,
    KINDS,
    MetricSpec,
    analysed_metrics,
    describe,
    embedding_specs,
    find_spec,
    headline_metric_names,
    higher_is_better,
    is_metric_column,
    metric_columns,
    metric_selectors,
    model_display_name,
    model_metric_names,
    neural_metric_names,
    panel_metric_names,
    parse_metric_list,
    reference_metric_names,
    value_range,
)
from perceptual_audio.metrics.groups import (
    AUDIO_GROUPS,
    CLEAN_SUFFIX,
    ROLE_CLEAN,
    ROLE_PAIR,
    MetricGroup,
    MetricSettings,
    classic_metrics,
    measure_many,
)
from perceptual_audio.metrics.measures import (
    EMBEDDING_METRIC_SUFFIXES,
    ESTOI_DITHER_SEED,
    MODEL_DEVICE_ENV,
    PESQ_MOS_LQO_RANGE,
    PESQ_NB_SAMPLE_RATE,
    PESQ_NB_SAMPLE_RATES,
    PESQ_WB_SAMPLE_RATE,
    PYSTOI_MIN_FRAMES,
    PYSTOI_TOO_SHORT_VALUE,
    embedding_metric_names,
    embedding_metrics,
    extra_metric_value,
    extra_metrics,
    extras_from_audio,
    frame_cosine,
    frame_l2,
    model_embedder,
    model_extras,
    pesq_score,
    pooled_cosine,
    si_sdr,
    stoi_score,
)
from perceptual_audio.metrics.signal import (
    STATUS_OK,
    Measurement,
    as_signal,
    check_not_silent,
    common_length,
    measure,
    one_line,
    package_version,
)

__all__ = [
    "AUDIO_GROUPS",
    "CATALOGUE",
    "CLASSIC_METRICS",
    "CLEAN_SUFFIX",
    "DOMAIN_ANY",
    "DOMAIN_SPEECH",
    "EMBEDDING_METRIC_SUFFIXES",
    "ESTOI_DITHER_SEED",
    "KINDS",
    "KIND_CLASSIC",
    "KIND_NEURAL",
    "KIND_REFERENCE",
    "MODEL_DEVICE_ENV",
    "Measurement",
    "MetricGroup",
    "MetricSettings",
    "MetricSpec",
    "PESQ_MOS_LQO_RANGE",
    "PESQ_NB_SAMPLE_RATE",
    "PESQ_NB_SAMPLE_RATES",
    "PESQ_WB_SAMPLE_RATE",
    "PYSTOI_MIN_FRAMES",
    "PYSTOI_TOO_SHORT_VALUE",
    "ROLE_CLEAN",
    "ROLE_PAIR",
    "STATUS_OK",
    "analysed_metrics",
    "as_signal",
    "check_not_silent",
    "classic_metrics",
    "common_length",
    "describe",
    "embedding_metric_names",
    "embedding_metrics",
    "embedding_specs",
    "extra_metric_value",
    "extra_metrics",
    "extras_from_audio",
    "find_spec",
    "headline_metric_names",
    "frame_cosine",
    "frame_l2",
    "higher_is_better",
    "is_metric_column",
    "measure",
    "measure_many",
    "metric_columns",
    "metric_selectors",
    "model_display_name",
    "model_embedder",
    "model_extras",
    "model_metric_names",
    "neural_metric_names",
    "one_line",
    "package_version",
    "panel_metric_names",
    "parse_metric_list",
    "pesq_score",
    "pooled_cosine",
    "reference_metric_names",
    "si_sdr",
    "stoi_score",
    "value_range",
]
