"""The computations of stage 3: a :class:`MetricGroup` per computation on the audio of a pair
(one call fills all its columns: DNSMOS's four), the settings they read
(:class:`MetricSettings`) and :data:`AUDIO_GROUPS`, the groups stage 3 schedules and caches.

What each column *is* (label, unit, direction, bounds) is the catalogue's
(:mod:`perceptual_audio.metrics.catalogue`), which imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from perceptual_audio.errors import ParameterError
from perceptual_audio.metrics import reference as rm
from perceptual_audio.metrics.measures import (
    PESQ_NB_SAMPLE_RATE,
    PESQ_NB_SAMPLE_RATES,
    pesq_score,
    si_sdr,
    stoi_score,
)
from perceptual_audio.metrics.peaq.columns import (
    ADVANCED_COLUMNS,
    BASIC_COLUMNS,
    MOV_COLUMNS,
    peaq_advanced_group,
    peaq_group,
    peaq_movs_group,
)
from perceptual_audio.metrics.reference import DNSMOS_OUTPUTS, VISQOL_SPEECH_MODELS
from perceptual_audio.metrics.signal import Measurement, measure, package_version

#: Roles: a measurement of the pair (analysed), or of the clean file alone (context: a
#: no-reference metric's score of the reference, so that a reader sees the drop).
ROLE_PAIR = "pair"
ROLE_CLEAN = "clean"
#: Suffix of a no-reference metric's column for the clean file.
CLEAN_SUFFIX = "_clean"


@dataclass(frozen=True)
class MetricSettings:
    """Settings of the audio metrics; each group's share of them keys its cached cells.

    Attributes
    ----------
    pesq_nb_sample_rate : int
        Hz; 16000 (P.862 on the 16 kHz audio, default) or 8000 (resampled to the narrow-band rate).
    resample_quality : str
        soxr recipe used when a signal must be resampled for a metric.
    visqol_speech_model : str
        ViSQOL speech mode's quality mapping: ``lattice`` (the C++ default) or ``exponential``.
    """

    pesq_nb_sample_rate: int = PESQ_NB_SAMPLE_RATE
    resample_quality: str = "VHQ"
    visqol_speech_model: str = "lattice"

    def __post_init__(self) -> None:
        if self.pesq_nb_sample_rate not in PESQ_NB_SAMPLE_RATES:
            raise ParameterError(
                f"pesq_nb_sample_rate must be one of {PESQ_NB_SAMPLE_RATES} Hz, "
                f"got {self.pesq_nb_sample_rate}"
            )
        if self.visqol_speech_model not in VISQOL_SPEECH_MODELS:
            raise ParameterError(
                f"visqol_speech_model must be one of {VISQOL_SPEECH_MODELS}, "
                f"got {self.visqol_speech_model!r}"
            )

    def as_dict(self) -> dict[str, Any]:
        """Settings plus the versions of the libraries that compute them."""
        d = asdict(self)
        for package in sorted({p for g in AUDIO_GROUPS.values() for p in g.packages}):
            d[f"{package}_version"] = package_version(package)
        return d


def classic_metrics(
    reference: np.ndarray,
    degraded: np.ndarray,
    sample_rate: int,
    settings: MetricSettings | None = None,
) -> dict[str, Measurement]:
    """PESQ-WB, PESQ-NB, STOI, ESTOI and SI-SDR of one pair.

    Parameters
    ----------
    reference, degraded : np.ndarray [shape=(n,)]
        At ``sample_rate`` Hz.
    sample_rate : int
        Hz.
    settings : MetricSettings or None
        Defaults when None.

    Returns
    -------
    dict
        :data:`CLASSIC_METRICS` name -> :class:`Measurement`.
    """
    s = settings or MetricSettings()
    return {
        "pesq_wb": measure(
            pesq_score,
            reference,
            degraded,
            sample_rate,
            mode="wb",
            resample_quality=s.resample_quality,
        ),
        "pesq_nb": measure(
            pesq_score,
            reference,
            degraded,
            sample_rate,
            mode="nb",
            pesq_sample_rate=s.pesq_nb_sample_rate,
            resample_quality=s.resample_quality,
        ),
        "stoi": measure(stoi_score, reference, degraded, sample_rate),
        "estoi": measure(stoi_score, reference, degraded, sample_rate, extended=True),
        "si_sdr": measure(si_sdr, reference, degraded),
    }


@dataclass(frozen=True)
class MetricGroup:
    """One computation on the audio of a pair that yields one or more catalogue columns.

    Attributes
    ----------
    name : str
    columns : tuple of str
        The columns it fills, in table order.
    compute : callable
        ``compute(reference, degraded, sample_rate, settings) -> {column: Measurement}``;
        ``degraded`` is None for a :data:`ROLE_CLEAN` group (it scores the reference alone).
    packages : tuple of str
        PyPI distributions it needs (their versions key its cached cells).
    settings : tuple of str
        :class:`MetricSettings` fields it depends on.
    role : str
        :data:`ROLE_PAIR`, or :data:`ROLE_CLEAN`: computed once per clean file.
    """

    name: str
    columns: tuple[str, ...]
    compute: Callable[..., dict[str, Measurement]]
    packages: tuple[str, ...] = ()
    settings: tuple[str, ...] = ()
    role: str = ROLE_PAIR

    def params(self, settings: MetricSettings) -> dict[str, Any]:
        """What its cells depend on besides the audio: settings and package versions."""
        out: dict[str, Any] = {f: getattr(settings, f) for f in self.settings}
        out.update({p: package_version(p) for p in self.packages})
        return out


def measure_many(
    func: Callable[..., dict[str, float]], columns: dict[str, str], *args: Any, **kwargs: Any
) -> dict[str, Measurement]:
    """Call a metric that returns several values at once; ``columns`` maps its output keys to
    column names. A failure gives every column NaN with the same reason."""
    result: dict[str, float] = {}

    def first() -> float:
        result.update(func(*args, **kwargs))
        return 0.0

    m = measure(first)
    if not m.ok:
        return {c: Measurement(math.nan, m.status) for c in columns.values()}
    out = {}
    for key, column in columns.items():
        value = float(result[key])
        out[column] = (
            Measurement(value) if math.isfinite(value) else Measurement(math.nan, "not finite")
        )
    return out


# -- group functions ------------------------------------------------------------------------
def _pesq_wb(ref, deg, sr, s: MetricSettings) -> dict[str, Measurement]:
    return {
        "pesq_wb": measure(pesq_score, ref, deg, sr, mode="wb", resample_quality=s.resample_quality)
    }


def _pesq_nb(ref, deg, sr, s: MetricSettings) -> dict[str, Measurement]:
    return {
        "pesq_nb": measure(
            pesq_score,
            ref,
            deg,
            sr,
            mode="nb",
            pesq_sample_rate=s.pesq_nb_sample_rate,
            resample_quality=s.resample_quality,
        )
    }


def _stoi(ref, deg, sr, s: MetricSettings) -> dict[str, Measurement]:
    return {"stoi": measure(stoi_score, ref, deg, sr)}


def _estoi(ref, deg, sr, s: MetricSettings) -> dict[str, Measurement]:
    return {"estoi": measure(stoi_score, ref, deg, sr, extended=True)}


def _si_sdr(ref, deg, sr, s: MetricSettings) -> dict[str, Measurement]:
    return {"si_sdr": measure(si_sdr, ref, deg)}


def _visqol_audio(ref, deg, sr, s: MetricSettings) -> dict[str, Measurement]:
    return {
        "visqol_audio": measure(
            rm.visqol_score, ref, deg, sr, mode="audio", resample_quality=s.resample_quality
        )
    }


def _visqol_speech(ref, deg, sr, s: MetricSettings) -> dict[str, Measurement]:
    return {
        "visqol_speech": measure(
            rm.visqol_score,
            ref,
            deg,
            sr,
            mode="speech",
            speech_model=s.visqol_speech_model,
            resample_quality=s.resample_quality,
        )
    }


def _zimtohrli(ref, deg, sr, s: MetricSettings) -> dict[str, Measurement]:
    def both() -> dict[str, float]:
        d = rm.zimtohrli_distance(ref, deg, sr, resample_quality=s.resample_quality)
        return {"distance": d, "mos": rm.zimtohrli_mos(d)}

    return measure_many(both, {"distance": "zimtohrli", "mos": "zimtohrli_mos"})


def _dnsmos_columns(suffix: str = "") -> dict[str, str]:
    return {k: f"dnsmos_{v}{suffix}" for k, v in DNSMOS_OUTPUTS.items()}


def _dnsmos(ref, deg, sr, s: MetricSettings) -> dict[str, Measurement]:
    return measure_many(
        rm.dnsmos_scores, _dnsmos_columns(), deg, sr, resample_quality=s.resample_quality
    )


def _dnsmos_clean(ref, deg, sr, s: MetricSettings) -> dict[str, Measurement]:
    return measure_many(
        rm.dnsmos_scores,
        _dnsmos_columns(CLEAN_SUFFIX),
        ref,
        sr,
        resample_quality=s.resample_quality,
    )


AUDIO_GROUPS: dict[str, MetricGroup] = {
    g.name: g
    for g in (
        MetricGroup("pesq_wb", ("pesq_wb",), _pesq_wb, ("pesq",), ("resample_quality",)),
        MetricGroup(
            "pesq_nb",
            ("pesq_nb",),
            _pesq_nb,
            ("pesq",),
            ("pesq_nb_sample_rate", "resample_quality"),
        ),
        MetricGroup("stoi", ("stoi",), _stoi, ("pystoi",)),
        MetricGroup("estoi", ("estoi",), _estoi, ("pystoi",)),
        MetricGroup("si_sdr", ("si_sdr",), _si_sdr),
        MetricGroup(
            "visqol_audio",
            ("visqol_audio",),
            _visqol_audio,
            ("visqol-python",),
            ("resample_quality",),
        ),
        MetricGroup(
            "visqol_speech",
            ("visqol_speech",),
            _visqol_speech,
            ("visqol-python", "ai-edge-litert"),
            ("resample_quality", "visqol_speech_model"),
        ),
        MetricGroup(
            "zimtohrli",
            ("zimtohrli", "zimtohrli_mos"),
            _zimtohrli,
            ("zimtohrli",),
            ("resample_quality",),
        ),
        MetricGroup(
            "dnsmos",
            tuple(_dnsmos_columns().values()),
            _dnsmos,
            ("speechmos", "onnxruntime"),
            ("resample_quality",),
        ),
        MetricGroup("peaq", BASIC_COLUMNS, peaq_group, (), ("resample_quality",)),
        MetricGroup(
            "peaq_advanced", ADVANCED_COLUMNS, peaq_advanced_group, (), ("resample_quality",)
        ),
        MetricGroup(
            "peaq_movs",
            tuple(MOV_COLUMNS.values()),
            peaq_movs_group,
            (),
            ("resample_quality",),
        ),
        MetricGroup(
            "dnsmos_clean",
            tuple(_dnsmos_columns(CLEAN_SUFFIX).values()),
            _dnsmos_clean,
            ("speechmos", "onnxruntime"),
            ("resample_quality",),
            role=ROLE_CLEAN,
        ),
    )
}
