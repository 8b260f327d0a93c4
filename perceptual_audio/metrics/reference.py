"""Reference perceptual metrics: ViSQOL v3, Zimtohrli and DNSMOS, each at its own rate.

These are the strongest published measures of perceived quality that run offline here, with
their models inside their PyPI packages:

- **ViSQOL v3** (Chinen et al., QoMEX 2020; ``visqol-python``, a pure-Python port of Google's
  C++ v3.3.3): full-reference MOS-LQO. Audio mode at 48 kHz (gammatone NSIM + the bundled
  libsvm nu-SVR), speech mode at 16 kHz with the deep-lattice mapping of the C++ default
  (TFLite model run by ``ai-edge-litert``) or its exponential fallback.
- **Zimtohrli** (Google, ``zimtohrli``): a psychoacoustic full-reference distance at 48 kHz
  (0 for identical audio, rises with audible difference) and its MOS mapping.
- **DNSMOS** (Reddy et al., ICASSP 2021/2022; ``speechmos``): trained no-reference predictors
  of ITU-T P.835 (signal, background, overall) and P.808 MOS, 16 kHz, on the degraded file
  alone.

Each function takes the study's audio at its own rate and resamples it to the metric's rate
with soxr (:func:`perceptual_audio.audio_io.resample`); what the metric then computes is the
package's own code on those arrays. A study at 16 kHz has nothing above 8 kHz, so a 48 kHz
metric judges a band-limited reference and degraded file alike.

Models are loaded once per process (``functools.lru_cache``), so a worker pays for loading
(and the first call's numba compilation) once.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from typing import Any

import numpy as np

from perceptual_audio.audio_io import resample
from perceptual_audio.errors import MetricError, ParameterError
from perceptual_audio.metrics.signal import as_signal, check_not_silent, common_length

logger = logging.getLogger(__name__)

#: Hz: ViSQOL audio mode's rate (its SVR was trained on 48 kHz audio).
VISQOL_AUDIO_SAMPLE_RATE = 48000
#: Hz: ViSQOL speech mode's rate.
VISQOL_SPEECH_SAMPLE_RATE = 16000
#: ViSQOL speech-mode quality mappings: the deep lattice network (the C++ default since v3.3,
#: needs ``ai-edge-litert``) or the exponential fit of NSIM to MOS (no extra package).
VISQOL_SPEECH_MODELS = ("lattice", "exponential")
VISQOL_SPEECH_MODEL = "lattice"
#: Hz: Zimtohrli's rate (``Pyohrli().sample_rate``).
ZIMTOHRLI_SAMPLE_RATE = 48000
#: Hz: DNSMOS's rate (``speechmos.dnsmos.SR``).
DNSMOS_SAMPLE_RATE = 16000
#: Seconds: DNSMOS scores 9.01 s segments at a 1 s hop; shorter clips are repeated up to it
#: (``speechmos.dnsmos.INPUT_LENGTH``).
DNSMOS_INPUT_SECONDS = 9.01
#: Seconds: the least audio any of these metrics is given (ViSQOL needs a few patches).
MIN_SECONDS = 0.5


class _Unavailable(RuntimeError):
    """A package a metric needs is not installed (the cell's status says which)."""


def _resampled(x: np.ndarray, sample_rate: int, target: int, quality: str) -> np.ndarray:
    if sample_rate == target:
        return x
    return resample(x, sample_rate, target, quality=quality)


def _check_length(x: np.ndarray, sample_rate: int, name: str, metric: str) -> None:
    if len(x) < MIN_SECONDS * sample_rate:
        raise MetricError(
            f"{metric} needs at least {MIN_SECONDS:g} s of audio; the {name} signal has "
            f"{len(x) / sample_rate:.3f} s"
        )


def _prepare_pair(
    reference: np.ndarray, degraded: np.ndarray, sample_rate: int, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    reference = as_signal(reference, "reference")
    degraded = as_signal(degraded, "degraded")
    check_not_silent(reference, "reference")
    check_not_silent(degraded, "degraded")
    _check_length(reference, sample_rate, "reference", metric)
    _check_length(degraded, sample_rate, "degraded", metric)
    return reference, degraded


# -- ViSQOL ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _visqol_api(mode: str, speech_model: str) -> Any:
    """A created ``visqol.VisqolApi`` per (mode, speech model), once per process."""
    try:
        # deferred: metric package, loaded by the process that scores it
        from visqol import VisqolApi
    except ImportError as e:
        raise _Unavailable(f"ViSQOL needs visqol-python ({e})") from None
    # visqol-python's numba loops run in parallel, and their reductions then add in an order
    # that depends on thread scheduling: the last bits of MOS-LQO varied between runs (a few
    # 1e-15). One thread makes every value reproducible, whatever --workers is.
    limit_threads()
    api = VisqolApi()
    if mode == "audio":
        api.create(mode="audio")
    else:
        api.create(mode="speech", use_lattice_model=speech_model == "lattice")
    return api


def visqol_score(
    reference: np.ndarray,
    degraded: np.ndarray,
    sample_rate: int,
    *,
    mode: str = "audio",
    speech_model: str = VISQOL_SPEECH_MODEL,
    resample_quality: str = "VHQ",
    run_sample_rate: int | None = None,
) -> float:
    """ViSQOL v3 MOS-LQO of one pair (``visqol-python``'s ``measure_from_arrays``).

    Parameters
    ----------
    reference, degraded : np.ndarray [shape=(n,)]
        Clean and degraded signals at ``sample_rate`` Hz (ViSQOL aligns them globally).
    sample_rate : int
        Hz; resampled to 48000 (audio mode) or 16000 (speech mode) when different.
    mode : {"audio", "speech"}
    speech_model : {"lattice", "exponential"}
        Speech mode's NSIM -> MOS mapping (see :data:`VISQOL_SPEECH_MODELS`).
    resample_quality : str
        soxr recipe of the resampling.
    run_sample_rate : int or None
        Hz to run at instead of the mode's rate. Google's conformance test runs speech mode
        on 48 kHz files as they are (``sample_rate`` here); the stage never sets it.

    Returns
    -------
    float
        MOS-LQO, 1 (bad) to about 4.75 (audio mode) / 5 (speech mode).

    Raises
    ------
    MetricError
        Silence, or less than :data:`MIN_SECONDS` of audio.
    """
    if mode not in ("audio", "speech"):
        raise ParameterError(f"ViSQOL mode must be 'audio' or 'speech', got {mode!r}")
    if speech_model not in VISQOL_SPEECH_MODELS:
        raise ParameterError(
            f"ViSQOL speech model must be one of {VISQOL_SPEECH_MODELS}, got {speech_model!r}"
        )
    target = VISQOL_AUDIO_SAMPLE_RATE if mode == "audio" else VISQOL_SPEECH_SAMPLE_RATE
    target = run_sample_rate or target
    reference, degraded = _prepare_pair(reference, degraded, sample_rate, f"ViSQOL ({mode})")
    ref = _resampled(reference, sample_rate, target, resample_quality).astype(np.float64)
    deg = _resampled(degraded, sample_rate, target, resample_quality).astype(np.float64)
    api = _visqol_api(mode, speech_model if mode == "speech" else "")
    # visqol logs a warning for every pair whose lengths differ by more than 1 ms (MP3
    # restored lengths do not): the stage records lengths itself.
    visqol_logger = logging.getLogger("visqol")
    level = visqol_logger.level
    visqol_logger.setLevel(logging.ERROR)
    try:
        result = api.measure_from_arrays(ref, deg, target)
    finally:
        visqol_logger.setLevel(level)
    return float(result.moslqo)


# -- Zimtohrli ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _pyohrli() -> Any:
    try:
        import zimtohrli  # deferred: metric package, loaded by the process that scores it
    except ImportError as e:
        raise _Unavailable(f"Zimtohrli needs the zimtohrli package ({e})") from None
    z = zimtohrli.Pyohrli()
    if int(z.sample_rate) != ZIMTOHRLI_SAMPLE_RATE:
        raise _Unavailable(
            f"zimtohrli expects {z.sample_rate} Hz, this code resamples to {ZIMTOHRLI_SAMPLE_RATE}"
        )
    return z


def zimtohrli_distance(
    reference: np.ndarray,
    degraded: np.ndarray,
    sample_rate: int,
    *,
    resample_quality: str = "VHQ",
) -> float:
    """Zimtohrli distance of one pair (``zimtohrli.Pyohrli().distance``) at 48 kHz.

    Parameters
    ----------
    reference, degraded : np.ndarray [shape=(n,)]
        At ``sample_rate`` Hz; cut to the shorter length (Zimtohrli compares time step by
        time step) and resampled to 48 kHz as float32.

    Returns
    -------
    float
        >= 0; 0 for identical audio, larger for more audible differences.
    """
    reference, degraded = _prepare_pair(reference, degraded, sample_rate, "Zimtohrli")
    reference, degraded = common_length(reference, degraded)
    ref = _resampled(reference, sample_rate, ZIMTOHRLI_SAMPLE_RATE, resample_quality)
    deg = _resampled(degraded, sample_rate, ZIMTOHRLI_SAMPLE_RATE, resample_quality)
    return float(_pyohrli().distance(ref.astype(np.float32), deg.astype(np.float32)))


def zimtohrli_mos(distance: float) -> float:
    """Zimtohrli's own MOS mapping of a distance (``zimtohrli.mos_from_zimtohrli``), 1-5."""
    import zimtohrli  # deferred: metric package, loaded by the process that scores it

    if not math.isfinite(distance):
        raise ValueError(f"Zimtohrli distance must be finite, got {distance}")
    return float(zimtohrli.mos_from_zimtohrli(distance))


# -- DNSMOS ---------------------------------------------------------------------------------
#: DNSMOS outputs in ``speechmos`` key order -> the suffix of the column name.
DNSMOS_OUTPUTS = {"ovrl_mos": "ovrl", "sig_mos": "sig", "bak_mos": "bak", "p808_mos": "p808"}


class _DnsmosModel:
    """speechmos's DNSMOS (P.835 ``sig_bak_ovr.onnx`` + P.808 ``model_v8.onnx``) with
    single-threaded ONNX sessions, so that worker processes do not compete for the cores."""

    def __init__(self) -> None:
        try:
            import onnxruntime as ort  # deferred: heavy; only DNSMOS needs it
            from speechmos import dnsmos  # deferred: metric package (imports onnxruntime)
        except ImportError as e:
            raise _Unavailable(f"DNSMOS needs speechmos and onnxruntime ({e})") from None
        folder = os.path.join(os.path.dirname(os.path.abspath(dnsmos.__file__)), "dnsmos_models")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        # speechmos's class gives the mel front end and the polynomial mappings; only its
        # sessions are replaced.
        self.model = dnsmos.DNSMOS.__new__(dnsmos.DNSMOS)
        self.model.primary_model_path = os.path.join(folder, "sig_bak_ovr.onnx")
        self.model.onnx_sess = ort.InferenceSession(
            self.model.primary_model_path, options, providers=providers
        )
        self.model.p808_onnx_sess = ort.InferenceSession(
            os.path.join(folder, "model_v8.onnx"), options, providers=providers
        )
        self.sample_rate = int(dnsmos.SR)
        self.input_seconds = float(dnsmos.INPUT_LENGTH)

    def __call__(self, audio: np.ndarray) -> dict[str, float]:
        """speechmos ``DNSMOS.__call__`` on an array (as on a file: no [-1, 1] check)."""
        fs = self.sample_rate
        len_samples = int(self.input_seconds * fs)
        while len(audio) < len_samples:
            audio = np.append(audio, audio)
        num_hops = int(np.floor(len(audio) / fs) - self.input_seconds) + 1
        sig, bak, ovr, p808 = [], [], [], []
        for idx in range(num_hops):
            seg = audio[int(idx * fs) : int((idx + self.input_seconds) * fs)]
            if len(seg) < len_samples:
                continue
            features = np.array(seg).astype("float32")[np.newaxis, :]
            p808_features = np.array(self.model.audio_melspec(audio=seg[:-160])).astype("float32")[
                np.newaxis, :, :
            ]
            p808.append(self.model.p808_onnx_sess.run(None, {"input_1": p808_features})[0][0][0])
            raw_sig, raw_bak, raw_ovr = self.model.onnx_sess.run(None, {"input_1": features})[0][0]
            s, b, o = self.model.get_polyfit_val(raw_sig, raw_bak, raw_ovr, False)
            sig.append(s)
            bak.append(b)
            ovr.append(o)
        return {
            "ovrl_mos": float(np.mean(ovr)),
            "sig_mos": float(np.mean(sig)),
            "bak_mos": float(np.mean(bak)),
            "p808_mos": float(np.mean(p808)),
        }


@functools.lru_cache(maxsize=1)
def _dnsmos_model() -> _DnsmosModel:
    return _DnsmosModel()


def dnsmos_scores(
    waveform: np.ndarray, sample_rate: int, *, resample_quality: str = "VHQ"
) -> dict[str, float]:
    """DNSMOS P.835 (overall, signal, background) and P.808 MOS of one file, no reference.

    Parameters
    ----------
    waveform : np.ndarray [shape=(n,)]
        At ``sample_rate`` Hz; resampled to 16 kHz (float32) when different. Clips shorter
        than 9.01 s are repeated up to it, as speechmos does.
    sample_rate : int
        Hz.

    Returns
    -------
    dict
        ``ovrl_mos``, ``sig_mos``, ``bak_mos``, ``p808_mos`` (MOS, 1-5): the values
        ``speechmos.dnsmos.run`` returns for the same 16 kHz audio.

    Raises
    ------
    MetricError
        Silence, or less than :data:`MIN_SECONDS` of audio.
    """
    x = as_signal(waveform, "degraded")
    check_not_silent(x, "degraded")
    _check_length(x, sample_rate, "degraded", "DNSMOS")
    x = _resampled(x, sample_rate, DNSMOS_SAMPLE_RATE, resample_quality).astype(np.float32)
    return _dnsmos_model()(x)


def limit_threads() -> None:
    """One thread for numba's parallel loops (ViSQOL): reproducible sums, and worker
    processes that do not compete for the cores."""
    try:
        import numba  # deferred: slow to import; only this metric needs it

        numba.set_num_threads(1)
    except Exception:  # numba absent or its threading layer already fixed
        logger.debug("cannot limit numba threads", exc_info=True)
