"""CDPAM's NumPy preprocessing, as ``cdpam.load_audio`` does it (resampling, the int16 grid)."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch

from perceptual_audio.audio_io import resample, resample_resampy02
from perceptual_audio.embeddings.cdpam.checkpoint import (
    INT16_SCALE,
    RESAMPLERS,
    SAMPLE_RATE,
)
from perceptual_audio.errors import (
    ParameterError,
)

logger = logging.getLogger(__name__)


# -- NumPy preprocessing -----------------------------------------------------------------------
def resample_like_cdpam(x: np.ndarray, sr: int, *, resampler: str = "resampy") -> np.ndarray:
    """Resample mono audio to 22.05 kHz as CDPAM's loader did.

    ``cdpam.load_audio`` calls ``librosa.load(path, sr=22050)``. With the librosa of its time
    (< 0.10) that is resampy 0.2's ``kaiser_best`` followed by ``fix_length`` to
    ``ceil(n * 22050 / sr)`` samples (``resampler="resampy"``, the parity mode). Since librosa
    0.10 the default is soxr; ``resampler="soxr"`` uses the project's soxr resampler
    (:func:`perceptual_audio.audio_io.resample`, VHQ, ``round(n * 22050 / sr)`` samples).

    Parameters
    ----------
    x : np.ndarray [shape=(n,)]
        Mono float audio at ``sr`` Hz.
    sr : int
        Its sample rate in Hz.

    Returns
    -------
    np.ndarray [shape=(m,), dtype=float32]
    """
    if resampler not in RESAMPLERS:
        raise ParameterError(f"cdpam: resampler must be one of {RESAMPLERS}, got {resampler!r}")
    if sr <= 0:
        raise ParameterError(f"cdpam: sample rate must be positive, got sr={sr}")
    x = np.asarray(x, dtype=np.float32)
    if sr == SAMPLE_RATE:
        return x
    if resampler == "soxr":
        return resample(x, sr, SAMPLE_RATE)

    # librosa < 0.10 required resampy < 0.3, whose kaiser_best filter resampy 0.3 replaced.
    y = resample_resampy02(x, sr, SAMPLE_RATE).astype(np.float32)
    n_out = int(math.ceil(len(x) * SAMPLE_RATE / sr))
    if len(y) > n_out:
        y = y[:n_out]
    elif len(y) < n_out:
        y = np.pad(y, (0, n_out - len(y)))
    return np.ascontiguousarray(y, dtype=np.float32)


def round_to_int16_grid(x: np.ndarray) -> np.ndarray:
    """``round(x * 32768) / 32768`` as float32: ``cdpam.load_audio``'s rounding, kept in
    [-1, 1] units (the division by a power of two is exact, so scaling by 32768 later gives
    exactly the integers ``cdpam.load_audio`` would)."""
    return (np.round(np.asarray(x, dtype=np.float64) * INT16_SCALE) / INT16_SCALE).astype(
        np.float32
    )


def shape_of(x: Any) -> str:
    """A tensor's shape for error messages; for anything else, its type (and shape)."""
    shape = getattr(x, "shape", None)
    if isinstance(x, torch.Tensor):
        return str(tuple(shape))
    return type(x).__name__ + (f" of shape {tuple(shape)}" if shape is not None else "")
