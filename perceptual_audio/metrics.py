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
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from perceptual_audio.errors import MetricError, ParameterError

logger = logging.getLogger(__name__)

#: Status text of a successful measurement.
STATUS_OK = "ok"

#: Sample rate (Hz) of wide-band PESQ (ITU-T P.862.2); other rates are resampled to it.
PESQ_WB_SAMPLE_RATE = 16000
#: Default rate (Hz) of narrow-band PESQ (P.862). P.862 accepts 8 and 16 kHz input; the default
#: runs it on the 16 kHz audio as python-pesq's own reference test does (so the stage
#: reproduces wb 1.0832337141036987 / nb 1.6072081327438354 on its test vectors). 8000
#: resamples to the telephone rate first (soxr VHQ; nb 1.6654431819915771 on those vectors).
PESQ_NB_SAMPLE_RATE = 16000
PESQ_NB_SAMPLE_RATES = (8000, 16000)
#: pystoi's stand-in score when fewer than 30 STFT frames remain after silent-frame removal.
PYSTOI_TOO_SHORT_VALUE = 1e-5
#: Frames (of 256 samples at 10 kHz, hop 128) pystoi needs for one intermediate score.
PYSTOI_MIN_FRAMES = 30
#: pystoi's ESTOI adds 1e-16-scale Gaussian dither drawn from NumPy's *global* generator, so
#: two calls differ in the last bits. It is seeded with this value around each call (and the
#: global state restored), which makes ESTOI reproducible: it equals
#: ``np.random.seed(ESTOI_DITHER_SEED); pystoi.stoi(x, y, fs, extended=True)``.
ESTOI_DITHER_SEED = 0

#: Embedding metrics per model: ``<model>_<suffix>``.
EMBEDDING_METRIC_SUFFIXES = ("cosine", "cosine_pooled", "l2")
#: CDPAM's learned distance.
CDPAM_DISTANCE = "cdpam_distance"


#: python-pesq returns MOS-LQO, P.862.1 / P.862.2's mapping of the raw score x:
#: 0.999 + 4 / (1 + e^(a x + b)), which lies in (0.999, 4.999) whatever x is (the raw range
#: [-0.5, 4.5] is not enforced: scores below 1.04 occur). The catalogue's PESQ bounds.
PESQ_MOS_LQO_RANGE = (0.999, 4.999)


def value_range(name: str) -> tuple[float | None, float | None]:
    """(low, high) of metric ``name``'s values from its catalogue ``bounds``; None where
    unbounded. Confidence intervals of a mean are kept inside it (stats.mean_ci)."""
    bounds = describe(name).bounds
    if bounds is None:
        return (None, None)
    return tuple(None if not math.isfinite(b) else float(b) for b in bounds)


@dataclass(frozen=True)
class Measurement:
    """One metric on one pair: ``value`` (NaN on failure) and ``status`` (``"ok"`` or why)."""

    value: float
    status: str = STATUS_OK

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK


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
        from perceptual_audio.reference_metrics import VISQOL_SPEECH_MODELS

        if self.visqol_speech_model not in VISQOL_SPEECH_MODELS:
            raise ParameterError(
                f"visqol_speech_model must be one of {VISQOL_SPEECH_MODELS}, "
                f"got {self.visqol_speech_model!r}"
            )

    def as_dict(self) -> dict[str, Any]:
        """Settings plus the versions of the libraries that compute them."""
        d = asdict(self)
        for package in sorted({p for g in AUDIO_GROUPS.values() for p in g.packages}):
            d[f"{package}_version"] = _version(package)
        return d


#: The former name (stage 3 once had only the classic metrics).
ClassicSettings = MetricSettings


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


# -- wrappers -------------------------------------------------------------------------------
def measure(func: Callable[..., float], *args: Any, **kwargs: Any) -> Measurement:
    """Call a metric function; a failure becomes ``Measurement(nan, reason)``.

    :class:`MetricError` carries its own reason; any other exception (raised inside a
    metric library) is reported as ``"<ExceptionType>: <message>"`` and logged.
    """
    try:
        value = float(func(*args, **kwargs))
    except MetricError as e:
        return Measurement(math.nan, _one_line(str(e)))
    except Exception as e:  # a library error on one pair never stops the others
        logger.debug("metric %s failed", getattr(func, "__name__", func), exc_info=True)
        return Measurement(math.nan, _one_line(f"{type(e).__name__}: {e}"))
    if math.isnan(value):
        return Measurement(math.nan, "the metric returned NaN")
    return Measurement(value)


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown error"


def _as_signal(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1:
        raise ParameterError(f"{name} must be a mono (n,) array, got shape {x.shape}")
    if x.size == 0:
        raise MetricError(f"the {name} signal is empty")
    if not np.all(np.isfinite(x)):
        raise MetricError(f"the {name} signal holds NaN or infinite samples")
    return x


def _check_not_silent(x: np.ndarray, name: str) -> None:
    if not np.any(x):
        raise MetricError(f"the {name} signal is digital silence (all samples are 0)")


def common_length(reference: np.ndarray, degraded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both signals cut to the shorter length (STOI and SI-SDR compare sample by sample)."""
    n = min(len(reference), len(degraded))
    if len(reference) != len(degraded):
        logger.debug(
            "signals differ in length (%d vs %d samples): comparing the first %d",
            len(reference),
            len(degraded),
            n,
        )
    return reference[:n], degraded[:n]


# -- classic metrics ------------------------------------------------------------------------
def pesq_score(
    reference: np.ndarray,
    degraded: np.ndarray,
    sample_rate: int,
    *,
    mode: str = "wb",
    pesq_sample_rate: int | None = None,
    resample_quality: str = "VHQ",
) -> float:
    """PESQ MOS-LQO (ITU-T P.862 narrow-band or P.862.2 wide-band) from the ``pesq`` package.

    Parameters
    ----------
    reference, degraded : np.ndarray [shape=(n,)]
        Clean and degraded signals at ``sample_rate`` Hz (lengths may differ: PESQ aligns them).
    sample_rate : int
        Hz.
    mode : {"wb", "nb"}
        Wide band (needs 16 kHz) or narrow band (8 or 16 kHz).
    pesq_sample_rate : int or None
        Rate in Hz PESQ runs at; None: 16000 for ``wb``, PESQ_NB_SAMPLE_RATE (16000) for ``nb``. Signals at another
        rate are resampled to it with soxr (``resample_quality``).

    Returns
    -------
    float
        MOS-LQO, about 1.0 (bad) to 4.64 (wb) / 4.55 (nb) (excellent).

    Raises
    ------
    MetricError
        Silence, too short (< 0.25 s), or no utterance detected by PESQ.
    """
    from pesq import PesqError, pesq

    if mode not in ("wb", "nb"):
        raise ParameterError(f"PESQ mode must be 'wb' or 'nb', got {mode!r}")
    if pesq_sample_rate is None:
        pesq_sample_rate = PESQ_WB_SAMPLE_RATE if mode == "wb" else PESQ_NB_SAMPLE_RATE
    if mode == "wb" and pesq_sample_rate != PESQ_WB_SAMPLE_RATE:
        raise ParameterError(f"wide-band PESQ runs at 16000 Hz only, got {pesq_sample_rate}")
    if pesq_sample_rate not in PESQ_NB_SAMPLE_RATES:
        raise ParameterError(f"PESQ runs at 8000 or 16000 Hz, got {pesq_sample_rate}")
    reference = _as_signal(reference, "reference")
    degraded = _as_signal(degraded, "degraded")
    _check_not_silent(reference, "reference")
    _check_not_silent(degraded, "degraded")
    if sample_rate != pesq_sample_rate:
        from perceptual_audio.audio_io import resample

        reference = resample(reference, sample_rate, pesq_sample_rate, quality=resample_quality)
        degraded = resample(degraded, sample_rate, pesq_sample_rate, quality=resample_quality)
    try:
        return float(pesq(pesq_sample_rate, reference, degraded, mode))
    except PesqError as e:
        # cypesq messages are bytes reprs (b'No utterances detected'): keep the text only.
        text = str(e).strip("b'\"")
        raise MetricError(f"PESQ ({mode}) failed: {type(e).__name__}: {text}") from None


def stoi_score(
    reference: np.ndarray, degraded: np.ndarray, sample_rate: int, *, extended: bool = False
) -> float:
    """STOI (Taal et al. 2011) or extended STOI (Jensen & Taal 2016) from ``pystoi``.

    Parameters
    ----------
    reference, degraded : np.ndarray [shape=(n,)]
        At ``sample_rate`` Hz; cut to the shorter length (pystoi compares sample by sample).
    sample_rate : int
        Hz (pystoi resamples to 10 kHz internally).
    extended : bool
        ESTOI instead of STOI (its dither is seeded with :data:`ESTOI_DITHER_SEED`).

    Returns
    -------
    float
        Intelligibility index, at most 1 (identical signals).

    Raises
    ------
    MetricError
        Silence, or fewer than 30 frames (about 0.4 s of non-silent audio) remain after
        pystoi drops silent frames; pystoi itself would then return 1e-5 with only a warning.
    """
    from pystoi import stoi

    name = "ESTOI" if extended else "STOI"
    reference = _as_signal(reference, "reference")
    degraded = _as_signal(degraded, "degraded")
    _check_not_silent(reference, "reference")
    reference, degraded = common_length(reference, degraded)
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(ESTOI_DITHER_SEED)  # noqa: NPY002 -- pystoi draws from the global generator
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = float(stoi(reference, degraded, sample_rate, extended=extended))
    finally:
        np.random.set_state(state)  # noqa: NPY002
    too_short = any("Not enough STFT frames" in str(w.message) for w in caught)
    if too_short:
        raise MetricError(
            f"{name} needs at least {PYSTOI_MIN_FRAMES} non-silent frames (about 0.4 s of "
            f"speech); this pair has fewer (pystoi would return {PYSTOI_TOO_SHORT_VALUE:g})"
        )
    return value


def si_sdr(reference: np.ndarray, degraded: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al., ICASSP 2019).

    Both signals are made zero-mean; with ``alpha = <d, r> / ||r||^2`` (eq. 6 of the paper),
    ``SI-SDR = 10 log10(||alpha r||^2 / ||alpha r - d||^2)``.

    Parameters
    ----------
    reference, degraded : np.ndarray [shape=(n,)]
        Cut to the shorter length; computed in float64.

    Returns
    -------
    float
        dB; ``+inf`` when the degraded signal is an exact scaled copy of the reference.

    Raises
    ------
    MetricError
        If either signal is constant (zero energy after removing its mean).
    """
    reference = _as_signal(reference, "reference")
    degraded = _as_signal(degraded, "degraded")
    reference, degraded = common_length(reference, degraded)
    r = reference.astype(np.float64) - np.mean(reference, dtype=np.float64)
    d = degraded.astype(np.float64) - np.mean(degraded, dtype=np.float64)
    # Sums with NumPy's pairwise summation rather than BLAS dot: BLAS results depend on its
    # thread count, which would make the value depend on --workers.
    r_energy = float(np.sum(r * r))
    if r_energy == 0.0:
        raise MetricError("SI-SDR is undefined: the reference signal is constant (zero energy)")
    if not np.any(d):
        raise MetricError("SI-SDR is undefined: the degraded signal is constant (zero energy)")
    alpha = float(np.sum(d * r)) / r_energy
    target = alpha * r
    noise = d - target
    noise_energy = float(np.sum(noise * noise))
    target_energy = float(np.sum(target * target))
    if noise_energy == 0.0:
        return math.inf
    if target_energy == 0.0:
        return -math.inf
    return 10.0 * math.log10(target_energy / noise_energy)


def classic_metrics(
    reference: np.ndarray,
    degraded: np.ndarray,
    sample_rate: int,
    settings: ClassicSettings | None = None,
) -> dict[str, Measurement]:
    """PESQ-WB, PESQ-NB, STOI, ESTOI and SI-SDR of one pair.

    Parameters
    ----------
    reference, degraded : np.ndarray [shape=(n,)]
        At ``sample_rate`` Hz.
    sample_rate : int
        Hz.
    settings : ClassicSettings or None
        Defaults when None.

    Returns
    -------
    dict
        :data:`CLASSIC_METRICS` name -> :class:`Measurement`.
    """
    s = settings or ClassicSettings()
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


# -- embedding metrics ----------------------------------------------------------------------
def _as_embedding(e: np.ndarray, name: str) -> np.ndarray:
    e = np.asarray(e)
    if e.ndim != 2:
        raise MetricError(f"the {name} embedding must be (T, D), got shape {e.shape}")
    if e.shape[0] == 0:
        raise MetricError(f"the {name} embedding has no frames (shape {e.shape})")
    if not np.all(np.isfinite(e)):
        raise MetricError(f"the {name} embedding holds NaN or infinite values")
    return e.astype(np.float64)


def _aligned(e_ref: np.ndarray, e_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = _as_embedding(e_ref, "reference")
    b = _as_embedding(e_deg, "degraded")
    if a.shape[1] != b.shape[1]:
        raise MetricError(
            f"embedding sizes differ: reference D={a.shape[1]}, degraded D={b.shape[1]}"
        )
    n = min(len(a), len(b))
    return a[:n], b[:n]


def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    if np.any(na == 0) or np.any(nb == 0):
        raise MetricError("cosine similarity is undefined: an embedding frame is all zeros")
    return np.sum(a * b, axis=-1) / (na * nb)


def frame_cosine(e_ref: np.ndarray, e_deg: np.ndarray) -> float:
    """Mean over aligned frames of the cosine similarity.

    Parameters
    ----------
    e_ref, e_deg : np.ndarray [shape=(T_ref, D), (T_deg, D)]
        Frame ``t`` of both covers the same time; the first ``min(T_ref, T_deg)`` frames
        are compared.

    Returns
    -------
    float
        In [-1, 1]; 1 for identical embeddings.
    """
    a, b = _aligned(e_ref, e_deg)
    return float(np.mean(_cosine_rows(a, b)))


def pooled_cosine(e_ref: np.ndarray, e_deg: np.ndarray) -> float:
    """Cosine similarity of the mean embeddings (each over all of its own frames).

    Parameters
    ----------
    e_ref, e_deg : np.ndarray [shape=(T_ref, D), (T_deg, D)]
    """
    a = _as_embedding(e_ref, "reference").mean(axis=0)
    b = _as_embedding(e_deg, "degraded").mean(axis=0)
    if a.shape != b.shape:
        raise MetricError(f"embedding sizes differ: reference D={a.size}, degraded D={b.size}")
    return float(_cosine_rows(a[None], b[None])[0])


def frame_l2(e_ref: np.ndarray, e_deg: np.ndarray) -> float:
    """Mean over aligned frames of the Euclidean distance (embedding units).

    Parameters
    ----------
    e_ref, e_deg : np.ndarray [shape=(T_ref, D), (T_deg, D)]
        The first ``min(T_ref, T_deg)`` frames are compared.
    """
    a, b = _aligned(e_ref, e_deg)
    return float(np.mean(np.linalg.norm(a - b, axis=-1)))


def embedding_metrics(model: str, e_ref: np.ndarray, e_deg: np.ndarray) -> dict[str, Measurement]:
    """``<model>_cosine``, ``<model>_cosine_pooled`` and ``<model>_l2`` of one pair."""
    return {
        f"{model}_cosine": measure(frame_cosine, e_ref, e_deg),
        f"{model}_cosine_pooled": measure(pooled_cosine, e_ref, e_deg),
        f"{model}_l2": measure(frame_l2, e_ref, e_deg),
    }


def embedding_metric_names(model: str) -> tuple[str, ...]:
    """Column names of :func:`embedding_metrics` for ``model``."""
    return tuple(f"{model}_{s}" for s in EMBEDDING_METRIC_SUFFIXES)


# -- metrics a model computes from its extra arrays (CDPAM's learned distance) -----------------
#: Environment variable naming the torch device of the models stage 3 runs itself (extra
#: metrics without stored extras; stage 3's ``--device``; an environment variable so that
#: spawned worker processes see it too). Default ``cpu``.
MODEL_DEVICE_ENV = "PERCEPTUAL_AUDIO_MODEL_DEVICE"


def model_embedder(model: str) -> Any:
    """The loaded model on the device of :data:`MODEL_DEVICE_ENV`, once per process."""
    return _embedder_on(model, os.environ.get(MODEL_DEVICE_ENV) or "cpu")


@functools.lru_cache(maxsize=4)
def _embedder_on(model: str, device: str) -> Any:
    """The loaded ``model`` on ``device``, once per process (CDPAM loads in about a second)."""
    from perceptual_audio.embeddings.base import get_embedder

    embedder = get_embedder(model, device=device)
    embedder.load()
    logger.debug("%s model loaded in this process", model)
    return embedder


def extra_metrics(model: str) -> tuple[Any, ...]:
    """The :class:`~perceptual_audio.embeddings.base.ExtraMetric` declarations of ``model``
    (none for a model that is not registered)."""
    cls = _model_class(model)
    return cls.extra_metrics if cls is not None else ()


def model_extras(model: str) -> tuple[str, ...]:
    """Names of the extra arrays ``model``'s extra metrics read, each once, in order."""
    return tuple(dict.fromkeys(k for e in extra_metrics(model) for k in e.extras))


def extra_metric_value(
    model: str, name: str, reference: dict[str, np.ndarray], degraded: dict[str, np.ndarray]
) -> float:
    """Extra metric ``name`` of ``model`` from the two files' extra arrays (by name)."""
    import torch

    with torch.no_grad():  # no_grad, not inference_mode: a model may cache tensors it later
        # differentiates through (the loss)
        return float(model_embedder(model).extra_metric(name, reference, degraded))


def extras_from_audio(model: str, waveform: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
    """``model``'s extra arrays of one file computed from its audio (the fallback when stage 2
    stored none)."""
    return model_embedder(model).extras_from_audio(_as_signal(waveform, "audio"), sample_rate)


def cdpam_distance(clip_ref: np.ndarray, clip_deg: np.ndarray) -> float:
    """CDPAM's learned distance (Manocha et al., ICASSP 2021) from two clip embeddings.

    Parameters
    ----------
    clip_ref, clip_deg : np.ndarray [shape=(512,)]
        CDPAM clip-level acoustic embeddings of the reference and of the degraded file
        (stage 2's ``<stem>.clip.npy``, or :func:`cdpam_clip_embedding`).

    Returns
    -------
    float
        >= 0; 0 for identical audio, larger for more audible differences. Equals
        ``cdpam.CDPAM().forward`` on the two clips (see
        :meth:`perceptual_audio.embeddings.cdpam.CDPAMEmbedder.distance_from_embeddings`).
    """
    return extra_metric_value("cdpam", CDPAM_DISTANCE, {"clip": clip_ref}, {"clip": clip_deg})


def cdpam_clip_embedding(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """CDPAM clip embedding of audio (the fallback when stage 2 stored none).

    Parameters
    ----------
    waveform : np.ndarray [shape=(n,)]
        Mono audio in [-1, 1] at ``sample_rate`` Hz; prepared as ``cdpam.load_audio`` does
        (22.05 kHz, int16 grid).

    Returns
    -------
    np.ndarray [shape=(512,), dtype=float32]
    """
    return extras_from_audio("cdpam", waveform, sample_rate)["clip"]


# ===========================================================================================
# The metric catalogue: the one owner of what a metric is
# ===========================================================================================
#: Kinds of metric: the classic objective measures, the reference perceptual metrics (the
#: strongest published predictors of perceived quality), and the neural embedding metrics
#: under study.
KIND_CLASSIC = "classic"
KIND_REFERENCE = "reference"
KIND_NEURAL = "neural"
KINDS = (KIND_CLASSIC, KIND_REFERENCE, KIND_NEURAL)
#: Domains: a metric designed and validated for speech only, or for any audio.
DOMAIN_SPEECH = "speech"
DOMAIN_ANY = "any"
#: Roles: a measurement of the pair (analysed), or of the clean file alone (context: a
#: no-reference metric's score of the reference, so that a reader sees the drop).
ROLE_PAIR = "pair"
ROLE_CLEAN = "clean"
#: Suffix of a no-reference metric's column for the clean file.
CLEAN_SUFFIX = "_clean"


@dataclass(frozen=True)
class MetricSpec:
    """One column of ``pair_metrics.csv``: what it measures and how to present it.

    Attributes
    ----------
    name : str
        Column name (``pesq_wb``, ``visqol_audio``, ``openl3_cosine``).
    label : str
        Short human name (``PESQ-WB``).
    unit : str
        Unit or range for axis labels (``MOS-LQO, 1-4.64``, ``dB``).
    higher_is_better : bool
        True when a larger value means closer to the clean reference (or better quality).
    kind : str
        :data:`KIND_CLASSIC`, :data:`KIND_REFERENCE` or :data:`KIND_NEURAL`.
    sample_rate : int or None
        Hz the metric runs at (the audio is resampled to it); None: the study's own rate
        (SI-SDR) or, for embedding metrics, set by the model's front end.
    full_reference : bool
        False for a no-reference metric (DNSMOS: the degraded file alone).
    domain : str
        :data:`DOMAIN_SPEECH` (designed for speech; on music it still runs, marked) or
        :data:`DOMAIN_ANY`.
    package : str or None
        PyPI distribution that computes it (None: this package's own numpy code).
    group : str
        The computation that yields it; the columns of one group are computed together, once
        (DNSMOS's four scores).
    bounds : (float, float) or None
        The range of values where the metric is bounded (None where unbounded).
    model : str or None
        Embedding model of a neural metric.
    role : str
        :data:`ROLE_PAIR` (analysed) or :data:`ROLE_CLEAN` (the clean file's score, context).
    description : str
        One sentence for the report.
    """

    name: str
    label: str
    unit: str
    higher_is_better: bool
    kind: str = KIND_CLASSIC
    sample_rate: int | None = None
    full_reference: bool = True
    domain: str = DOMAIN_ANY
    package: str | None = None
    group: str = ""
    bounds: tuple[float, float] | None = None
    model: str | None = None
    role: str = ROLE_PAIR
    description: str = ""

    @property
    def neural(self) -> bool:
        """True for metrics computed from a neural embedding model."""
        return self.kind == KIND_NEURAL

    @property
    def is_reference(self) -> bool:
        """True for the references the neural metrics are compared with (classic and
        reference perceptual metrics of the pair)."""
        return self.kind in (KIND_CLASSIC, KIND_REFERENCE) and self.role == ROLE_PAIR

    @property
    def speech_only(self) -> bool:
        return self.domain == DOMAIN_SPEECH

    @property
    def marked_label(self) -> str:
        """Label with its domain mark: ``DNSMOS OVRL [speech]`` for a speech-only metric."""
        return f"{self.label} [speech]" if self.speech_only else self.label

    @property
    def axis_label(self) -> str:
        """Marked label with unit, for plot axes."""
        return f"{self.marked_label} ({self.unit})" if self.unit else self.marked_label

    @property
    def direction_note(self) -> str:
        return "higher = closer to clean" if self.higher_is_better else "lower = closer to clean"

    @property
    def version(self) -> str | None:
        """Installed version of :attr:`package` (None when absent or not a package)."""
        return _version(self.package) if self.package else None

    @property
    def rate_text(self) -> str:
        if self.sample_rate is None:
            return "model's rate" if self.neural else "study rate"
        return f"{self.sample_rate / 1000:g} kHz"


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
        out.update({p: _version(p) for p in self.packages})
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
    from perceptual_audio import reference_metrics as rm

    return {
        "visqol_audio": measure(
            rm.visqol_score, ref, deg, sr, mode="audio", resample_quality=s.resample_quality
        )
    }


def _visqol_speech(ref, deg, sr, s: MetricSettings) -> dict[str, Measurement]:
    from perceptual_audio import reference_metrics as rm

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
    from perceptual_audio import reference_metrics as rm

    def both() -> dict[str, float]:
        d = rm.zimtohrli_distance(ref, deg, sr, resample_quality=s.resample_quality)
        return {"distance": d, "mos": rm.zimtohrli_mos(d)}

    return measure_many(both, {"distance": "zimtohrli", "mos": "zimtohrli_mos"})


def _dnsmos_columns(suffix: str = "") -> dict[str, str]:
    from perceptual_audio.reference_metrics import DNSMOS_OUTPUTS

    return {k: f"dnsmos_{v}{suffix}" for k, v in DNSMOS_OUTPUTS.items()}


def _dnsmos(ref, deg, sr, s: MetricSettings) -> dict[str, Measurement]:
    from perceptual_audio import reference_metrics as rm

    return measure_many(
        rm.dnsmos_scores, _dnsmos_columns(), deg, sr, resample_quality=s.resample_quality
    )


def _dnsmos_clean(ref, deg, sr, s: MetricSettings) -> dict[str, Measurement]:
    from perceptual_audio import reference_metrics as rm

    return measure_many(
        rm.dnsmos_scores,
        _dnsmos_columns(CLEAN_SUFFIX),
        ref,
        sr,
        resample_quality=s.resample_quality,
    )


_PESQ_RANGE = "PESQ MOS-LQO"
_SPECS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "pesq_wb", "PESQ-WB", "MOS-LQO, 1-4.64", True, KIND_CLASSIC, PESQ_WB_SAMPLE_RATE,
        domain=DOMAIN_SPEECH, package="pesq", group="pesq_wb", bounds=PESQ_MOS_LQO_RANGE,
        description="wide-band PESQ, ITU-T P.862.2 (2005)",
    ),
    MetricSpec(
        "pesq_nb", "PESQ-NB", "MOS-LQO, 1-4.55", True, KIND_CLASSIC, PESQ_NB_SAMPLE_RATE,
        domain=DOMAIN_SPEECH, package="pesq", group="pesq_nb", bounds=PESQ_MOS_LQO_RANGE,
        description="narrow-band PESQ, ITU-T P.862 (2001), at --pesq-nb-rate",
    ),
    MetricSpec(
        "stoi", "STOI", "0-1", True, KIND_CLASSIC, 10000, domain=DOMAIN_SPEECH,
        package="pystoi", group="stoi", bounds=(-1.0, 1.0),
        description="short-time objective intelligibility (Taal et al. 2011)",
    ),
    MetricSpec(
        "estoi", "ESTOI", "0-1", True, KIND_CLASSIC, 10000, domain=DOMAIN_SPEECH,
        package="pystoi", group="estoi", bounds=(-1.0, 1.0),
        description="extended STOI (Jensen & Taal 2016)",
    ),
    MetricSpec(
        "si_sdr", "SI-SDR", "dB", True, KIND_CLASSIC, None, group="si_sdr",
        description="scale-invariant signal-to-distortion ratio (Le Roux et al. 2019)",
    ),
    MetricSpec(
        "visqol_audio", "ViSQOL audio", "MOS-LQO, 1-5", True, KIND_REFERENCE, 48000,
        package="visqol-python", group="visqol_audio", bounds=(1.0, 5.0),
        description="ViSQOL v3 audio mode (gammatone NSIM + SVR), 48 kHz",
    ),
    MetricSpec(
        "visqol_speech", "ViSQOL speech", "MOS-LQO, 1-5", True, KIND_REFERENCE, 16000,
        domain=DOMAIN_SPEECH, package="visqol-python", group="visqol_speech", bounds=(1.0, 5.0),
        description="ViSQOL v3 speech mode, 16 kHz, deep-lattice MOS mapping (C++ default; "
        "exponential mapping by setting)",
    ),
    MetricSpec(
        "zimtohrli", "Zimtohrli distance", "Zimtohrli units", False, KIND_REFERENCE, 48000,
        package="zimtohrli", group="zimtohrli", bounds=(0.0, math.inf),
        description="Zimtohrli psychoacoustic distance, 48 kHz",
    ),
    MetricSpec(
        "zimtohrli_mos", "Zimtohrli MOS", "MOS, 1-5", True, KIND_REFERENCE, 48000,
        package="zimtohrli", group="zimtohrli", bounds=(1.0, 5.0),
        description="Zimtohrli's MOS mapping of its distance",
    ),
    *(
        MetricSpec(
            f"dnsmos_{key}", f"DNSMOS {text}", "MOS, 1-5", True, KIND_REFERENCE, 16000,
            full_reference=False, domain=DOMAIN_SPEECH, package="speechmos", group="dnsmos",
            bounds=(1.0, 5.0), description=f"DNSMOS {desc} of the degraded file, no reference",
        )
        for key, text, desc in (
            ("ovrl", "OVRL", "P.835 overall quality"),
            ("sig", "SIG", "P.835 speech signal quality"),
            ("bak", "BAK", "P.835 background-noise quality"),
            ("p808", "P.808", "P.808 overall quality"),
        )
    ),
    *(
        MetricSpec(
            f"dnsmos_{key}{CLEAN_SUFFIX}", f"DNSMOS {text} (clean)", "MOS, 1-5", True,
            KIND_REFERENCE, 16000, full_reference=False, domain=DOMAIN_SPEECH,
            package="speechmos", group="dnsmos_clean", bounds=(1.0, 5.0), role=ROLE_CLEAN,
            description=f"DNSMOS {text} of the clean file (computed once per clean file)",
        )
        for key, text in (("ovrl", "OVRL"), ("sig", "SIG"), ("bak", "BAK"), ("p808", "P.808"))
    ),
)  # fmt: skip

#: Every audio metric (not tied to an embedding model), by column name, in table order.
CATALOGUE: dict[str, MetricSpec] = {s.name: s for s in _SPECS}

#: The computations behind the audio metrics, by group name, in table order.
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

#: The classic metrics, in table order (derived from the catalogue).
CLASSIC_METRICS = tuple(n for n, s in CATALOGUE.items() if s.kind == KIND_CLASSIC)


def _model_class(model: str) -> Any:
    """The registered class of ``model``, or None (a table may name a model no longer
    registered: its columns still get a neutral catalogue entry)."""
    from perceptual_audio.embeddings.base import model_class, model_names

    return model_class(model) if model in model_names() else None


def embedding_specs(model: str) -> tuple[MetricSpec, ...]:
    """The generated catalogue entries of one embedding model (``<model>_cosine``, ...,
    then the model's declared extra metrics such as ``cdpam_distance``)."""
    cls = _model_class(model)
    display = cls.label() if cls is not None else model.replace("_", " ")
    rate = cls.sample_rate if cls is not None else None
    package = cls.metric_package if cls is not None else None
    common = {"kind": KIND_NEURAL, "sample_rate": rate, "package": package, "group": model}
    specs = [
        MetricSpec(
            f"{model}_cosine", f"{display} cosine (frame-aligned)", "-1 to 1", True,
            bounds=(-1.0, 1.0), model=model,
            description=f"cosine similarity of frame-aligned {display} embeddings, mean over frames",
            **common,
        ),
        MetricSpec(
            f"{model}_cosine_pooled", f"{display} cosine (mean-pooled)", "-1 to 1", True,
            bounds=(-1.0, 1.0), model=model,
            description=f"cosine similarity of the mean {display} embeddings", **common,
        ),
        MetricSpec(
            f"{model}_l2", f"{display} L2 distance", "embedding units", False,
            bounds=(0.0, math.inf), model=model,
            description=f"mean Euclidean distance of frame-aligned {display} embeddings",
            **common,
        ),
    ]  # fmt: skip
    for e in extra_metrics(model):
        specs.append(
            MetricSpec(
                e.name, e.label, e.unit, e.higher_is_better, bounds=e.bounds, model=model,
                description=e.description, **common,
            )
        )  # fmt: skip
    return tuple(specs)


def model_display_name(model: str) -> str:
    """The display name of a model (its registered ``display_name``; else the key)."""
    cls = _model_class(model)
    return cls.label() if cls is not None else model.replace("_", " ")


def model_metric_names(model: str) -> tuple[str, ...]:
    """Columns of one embedding model, in table order."""
    return tuple(s.name for s in embedding_specs(model))


def find_spec(name: str) -> MetricSpec | None:
    """The catalogue entry of a column (audio metric or generated embedding metric), or None."""
    if name in CATALOGUE:
        return CATALOGUE[name]
    from perceptual_audio.embeddings.base import model_names

    for model in model_names():
        for spec in embedding_specs(model)[len(EMBEDDING_METRIC_SUFFIXES) :]:
            if spec.name == name:  # a model's extra metric (cdpam_distance)
                return spec
    for suffix in sorted(EMBEDDING_METRIC_SUFFIXES, key=len, reverse=True):
        if name.endswith("_" + suffix) and len(name) > len(suffix) + 1:
            model = name[: -len(suffix) - 1]
            return next(s for s in embedding_specs(model) if s.name == name)
    return None


def describe(name: str) -> MetricSpec:
    """The catalogue entry of a column; a column the catalogue does not know (a metric added
    by hand to a table) gets a neutral description, a distance if its name says so."""
    spec = find_spec(name)
    if spec is not None:
        return spec
    lower = any(w in name for w in ("distance", "_l2", "_l1", "mse", "loss", "error"))
    return MetricSpec(name, name.replace("_", " "), "", not lower, kind="other")


def higher_is_better(name: str) -> bool:
    """Whether a larger value of the column ``name`` means closer to the clean reference."""
    return describe(name).higher_is_better


def metric_columns(models: Sequence[str] = (), selected: Sequence[str] | None = None) -> list[str]:
    """Value columns of ``pair_metrics.csv``: audio metrics, then each model's, in table order.

    Parameters
    ----------
    models : sequence of str
        Embedding models whose metrics are present.
    selected : sequence of str or None
        Restrict to these columns (None: all).
    """
    cols = list(CATALOGUE)
    for m in models:
        cols += model_metric_names(m)
    if selected is not None:
        keep = set(selected)
        cols = [c for c in cols if c in keep]
    return cols


def is_metric_column(name: str) -> bool:
    """True for a column the catalogue knows (audio or embedding metric)."""
    return find_spec(name) is not None


def analysed_metrics(names: Sequence[str]) -> list[str]:
    """The columns that are statistics material (pair measurements, not clean-file context)."""
    return [n for n in names if describe(n).role == ROLE_PAIR]


def reference_metric_names(names: Sequence[str]) -> list[str]:
    """The references among ``names``: classic and reference perceptual pair metrics."""
    return [n for n in names if describe(n).is_reference]


def neural_metric_names(names: Sequence[str]) -> list[str]:
    return [n for n in names if describe(n).neural]


def metric_selectors(models: Sequence[str]) -> dict[str, list[str]]:
    """Every name ``--metrics`` accepts and the columns it stands for: ``all``, the kinds
    (``classic``, ``reference``, ``neural``), the group names (``dnsmos``, ``zimtohrli``) and
    every column. A no-reference group brings its clean-file columns along."""
    columns = metric_columns(models)
    out: dict[str, list[str]] = {"all": columns}
    for kind in KINDS:
        out[kind] = [c for c in columns if describe(c).kind == kind]
    for group in AUDIO_GROUPS.values():
        if len(group.columns) > 1:
            out[group.name] = list(group.columns)
    out["dnsmos"] = [*AUDIO_GROUPS["dnsmos"].columns, *AUDIO_GROUPS["dnsmos_clean"].columns]
    out["visqol"] = ["visqol_audio", "visqol_speech"]
    out["pesq"] = ["pesq_wb", "pesq_nb"]
    for m in models:
        out[m] = list(model_metric_names(m))
    for c in columns:
        out[c] = [c]
    return out


def parse_metric_list(text: str, models: Sequence[str]) -> list[str]:
    """``--metrics`` -> the selected columns, in table order.

    Raises
    ------
    ParameterError
        For an empty list or an unknown name; the message lists every valid name.
    """
    selectors = metric_selectors(models)
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in selectors]
    if not names or unknown:
        what = f"unknown metric name(s) {', '.join(unknown)}" if unknown else "an empty list"
        raise ParameterError(f"--metrics: got {what}; valid names: {', '.join(selectors)}")
    chosen = {c for n in names for c in selectors[n]}
    # A group is computed whole, once: selecting one of its columns brings the others.
    for group in AUDIO_GROUPS.values():
        if chosen & set(group.columns):
            chosen |= set(group.columns)
    if chosen & set(AUDIO_GROUPS["dnsmos"].columns):
        chosen |= set(AUDIO_GROUPS["dnsmos_clean"].columns)
    return [c for c in selectors["all"] if c in chosen]
