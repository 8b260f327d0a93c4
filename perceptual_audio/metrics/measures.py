"""The measures of one pair: PESQ, STOI, ESTOI, SI-SDR, the embedding similarities, and the models' extra metrics (CDPAM's learned distance)."""

from __future__ import annotations

import functools
import logging
import math
import os
import warnings
from typing import Any

import numpy as np

from perceptual_audio.audio_io import resample
from perceptual_audio.errors import MetricError, ParameterError
from perceptual_audio.metrics.signal import (
    Measurement,
    as_signal,
    check_not_silent,
    common_length,
    measure,
)

logger = logging.getLogger(__name__)


#: Sample rate (Hz) of wide-band PESQ (ITU-T P.862.2); other rates are resampled to it.
PESQ_WB_SAMPLE_RATE = 16000
#: Default rate (Hz) of narrow-band PESQ (P.862). P.862 accepts 8 and 16 kHz input; the default
#: runs it on the 16 kHz audio as python-pesq's own reference test does (so the stage
#: reproduces wb 1.0832337141036987 / nb 1.6072081327438354 on its test vectors). 8000
#: resamples to the telephone rate first (soxr VHQ; nb 1.6654431819915771 on those vectors).
PESQ_NB_SAMPLE_RATE = 16000
PESQ_NB_SAMPLE_RATES = (8000, 16000)
#: Seconds: the longest recording PESQ scores. ITU-T P.862.3 (application guide, section 7.1)
#: specifies reference signals of 8-30 s, and the guide says the scores of a long recording cut
#: into segments must not simply be averaged; past about 95 s at 16 kHz python-pesq's C
#: library also crashes the process (SIGSEGV, measured here with pesq 0.0.4). Longer pairs are
#: refused with this reason instead of being scored outside the standard.
PESQ_MAX_SECONDS = 30.0
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


#: python-pesq returns MOS-LQO, P.862.1 / P.862.2's mapping of the raw score x:
#: 0.999 + 4 / (1 + e^(a x + b)), which lies in (0.999, 4.999) whatever x is (the raw range
#: [-0.5, 4.5] is not enforced: scores below 1.04 occur). The catalogue's PESQ bounds.
PESQ_MOS_LQO_RANGE = (0.999, 4.999)


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
        Silence, too short (< 0.25 s), longer than :data:`PESQ_MAX_SECONDS`, or no utterance
        detected by PESQ.
    """
    # deferred: metric package, loaded by the process that scores it
    from pesq import PesqError, pesq

    if mode not in ("wb", "nb"):
        raise ParameterError(f"PESQ mode must be 'wb' or 'nb', got {mode!r}")
    if pesq_sample_rate is None:
        pesq_sample_rate = PESQ_WB_SAMPLE_RATE if mode == "wb" else PESQ_NB_SAMPLE_RATE
    if mode == "wb" and pesq_sample_rate != PESQ_WB_SAMPLE_RATE:
        raise ParameterError(f"wide-band PESQ runs at 16000 Hz only, got {pesq_sample_rate}")
    if pesq_sample_rate not in PESQ_NB_SAMPLE_RATES:
        raise ParameterError(f"PESQ runs at 8000 or 16000 Hz, got {pesq_sample_rate}")
    reference = as_signal(reference, "reference")
    degraded = as_signal(degraded, "degraded")
    check_not_silent(reference, "reference")
    check_not_silent(degraded, "degraded")
    longest = max(len(reference), len(degraded)) / sample_rate
    if longest > PESQ_MAX_SECONDS:
        raise MetricError(
            f"PESQ is specified for recordings of 8-{PESQ_MAX_SECONDS:g} s (ITU-T P.862.3, 7.1) "
            f"and this pair is {longest:.1f} s; cut it into utterances of at most "
            f"{PESQ_MAX_SECONDS:g} s to score it with PESQ"
        )
    if sample_rate != pesq_sample_rate:
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
    from pystoi import stoi  # deferred: metric package, loaded by the process that scores it

    name = "ESTOI" if extended else "STOI"
    reference = as_signal(reference, "reference")
    degraded = as_signal(degraded, "degraded")
    check_not_silent(reference, "reference")
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
    reference = as_signal(reference, "reference")
    degraded = as_signal(degraded, "degraded")
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
    from perceptual_audio.embeddings.base import (
        get_embedder,  # deferred: the model registry imports torch
    )

    embedder = get_embedder(model, device=device)
    embedder.load()
    logger.debug("%s model loaded in this process", model)
    return embedder


def registered_model_class(model: str) -> Any:
    """The registered class of ``model``, or None (a table may name a model no longer
    registered: its columns still get a neutral catalogue entry)."""
    from perceptual_audio.embeddings.base import (
        model_class,  # deferred: the model registry imports torch
    )

    try:
        return model_class(model)
    except ParameterError:
        return None


def extra_metrics(model: str) -> tuple[Any, ...]:
    """The :class:`~perceptual_audio.embeddings.base.ExtraMetric` declarations of ``model``
    (none for a model that is not registered)."""
    cls = registered_model_class(model)
    return cls.extra_metrics if cls is not None else ()


def model_extras(model: str) -> tuple[str, ...]:
    """Names of the extra arrays ``model``'s extra metrics read, each once, in order."""
    return tuple(dict.fromkeys(k for e in extra_metrics(model) for k in e.extras))


def extra_metric_value(
    model: str, name: str, reference: dict[str, np.ndarray], degraded: dict[str, np.ndarray]
) -> float:
    """Extra metric ``name`` of ``model`` from the two files' extra arrays (by name)."""
    import torch  # deferred: heavy; only model metrics need it

    with torch.no_grad():  # no_grad, not inference_mode: a model may cache tensors it later
        # differentiates through (the loss)
        return float(model_embedder(model).extra_metric(name, reference, degraded))


def extras_from_audio(model: str, waveform: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
    """``model``'s extra arrays of one file computed from its audio (the fallback when stage 2
    stored none)."""
    return model_embedder(model).extras_from_audio(as_signal(waveform, "audio"), sample_rate)
