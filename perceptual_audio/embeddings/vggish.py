"""VGGish (Hershey et al., ICASSP 2017) in PyTorch: log-mel front end, network, PCA post-processing.

Re-implements Google's reference (``tensorflow/models`` ``research/audioset/vggish``:
``vggish_input.py``, ``mel_features.py``, ``vggish_params.py``, ``vggish_slim.py``,
``vggish_postprocess.py``) with a differentiable torch front end, and loads the pretrained
weights of the ``harritaylor/torchvggish`` port (a state dict converted from Google's
``vggish_model.ckpt``).

Pipeline, for mono audio at 16 kHz:

1. STFT magnitude: 25 ms (400-sample) frames every 10 ms (160 samples), periodic Hann window,
   512-point ``|rfft|``; only complete frames (no centring, no end padding).
2. 64 mel bands, 125-7500 Hz, HTK mel scale, unnormalised triangles whose DC-bin weight is
   forced to zero, exactly as ``mel_features.spectrogram_to_mel_matrix``; ``log(mel + 0.01)``.
3. Non-overlapping patches of 96 frames x 64 bands (0.96 s). A patch needs 15 600 samples
   (0.975 s); samples after the last complete patch are dropped (as the reference does). A clip
   shorter than one patch is zero-padded to one patch and flagged (:meth:`VGGishEmbedder.flags`),
   never returned empty.
4. Network (NCHW here, height = time, width = mel): conv 64, pool, conv 128, pool, conv 256 x 2,
   pool, conv 512 x 2, pool (3x3 'same' + ReLU, 2x2 max-pool stride 2) -> 512 x 6 x 4, flattened in
   TF's NHWC order, fc 4096, fc 4096 (ReLU), fc 128. The 128-D output is pre-activation, as in
   Google's current model; ``final_relu=True`` adds the ReLU of torchvggish.
5. Optional PCA post-processing (``vggish_postprocess.py``): ``E (x - mu)``, clip to [-2, 2],
   scale by 255/4 and truncate to 8-bit integers (returned as float32 values).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from perceptual_audio.embeddings import weights
from perceptual_audio.embeddings.base import Embedder, ModelOption, full_fp32_on_cuda, register
from perceptual_audio.errors import (
    ParameterError,
    WeightsUnavailableError,
    WeightsVerificationError,
)

logger = logging.getLogger(__name__)

# -- reference parameters (vggish_params.py) ----------------------------------------------------
#: Sample rate in Hz the model runs at.
SAMPLE_RATE = 16000
#: STFT analysis window in seconds (25 ms) and in samples.
STFT_WINDOW_SECONDS = 0.025
STFT_WINDOW_SAMPLES = int(round(SAMPLE_RATE * STFT_WINDOW_SECONDS))  # 400
#: STFT hop in seconds (10 ms) and in samples.
STFT_HOP_SECONDS = 0.010
STFT_HOP_SAMPLES = int(round(SAMPLE_RATE * STFT_HOP_SECONDS))  # 160
#: FFT size: the next power of two above the window (mel_features.log_mel_spectrogram).
FFT_SIZE = 2 ** int(np.ceil(np.log2(STFT_WINDOW_SAMPLES)))  # 512
#: Number of rfft bins (FFT_SIZE / 2 + 1).
N_SPECTRUM_BINS = FFT_SIZE // 2 + 1  # 257
#: Mel bands and their frequency range in Hz.
NUM_MEL_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
#: Offset added to the mel magnitudes before the natural log (avoids log(0)).
LOG_OFFSET = 0.01
#: HTK mel scale constants: mel = 1127 ln(1 + f / 700).
_MEL_BREAK_FREQUENCY_HZ = 700.0
_MEL_HIGH_FREQUENCY_Q = 1127.0
#: One example ("patch"): 96 frames x 64 bands, 0.96 s, with a hop of 0.96 s (no overlap).
PATCH_FRAMES = 96
PATCH_HOP_FRAMES = 96
PATCH_SECONDS = PATCH_FRAMES * STFT_HOP_SECONDS  # 0.96
PATCH_HOP_SECONDS = PATCH_HOP_FRAMES * STFT_HOP_SECONDS  # 0.96
#: Samples one patch needs (0.975 s), and the hop between patches in samples.
PATCH_SAMPLES = STFT_WINDOW_SAMPLES + (PATCH_FRAMES - 1) * STFT_HOP_SAMPLES  # 15600
PATCH_HOP_SAMPLES = PATCH_HOP_FRAMES * STFT_HOP_SAMPLES  # 15360
#: Size of the embedding.
EMBEDDING_SIZE = 128
#: PCA post-processing: clip range of the PCA'd embedding and the 8-bit scale.
QUANTIZE_MIN_VAL = -2.0
QUANTIZE_MAX_VAL = 2.0
QUANTIZE_LEVELS = 255.0

#: Conv layer widths with "M" for a 2x2 max-pool (vggish_slim.py), as in torchvggish's
#: ``make_layers``: the indices of ``features`` in the state dict follow from this list.
_LAYOUT: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")
#: Names of the conv blocks reported by :meth:`VGGishEmbedder.features`, keyed by the index in
#: ``features`` of the ReLU that ends each block (Google's scopes conv1, conv2, conv3, conv4).
_BLOCK_ENDS = {1: "conv1", 4: "conv2", 9: "conv3", 14: "conv4"}

#: Exact keys and shapes of torchvggish's ``vggish-10086976.pth``.
TORCHVGGISH_MODEL_SHAPES: dict[str, tuple[int, ...]] = {
    "features.0.weight": (64, 1, 3, 3),
    "features.0.bias": (64,),
    "features.3.weight": (128, 64, 3, 3),
    "features.3.bias": (128,),
    "features.6.weight": (256, 128, 3, 3),
    "features.6.bias": (256,),
    "features.8.weight": (256, 256, 3, 3),
    "features.8.bias": (256,),
    "features.11.weight": (512, 256, 3, 3),
    "features.11.bias": (512,),
    "features.13.weight": (512, 512, 3, 3),
    "features.13.bias": (512,),
    "embeddings.0.weight": (4096, 512 * 6 * 4),
    "embeddings.0.bias": (4096,),
    "embeddings.2.weight": (4096, 4096),
    "embeddings.2.bias": (4096,),
    "embeddings.4.weight": (EMBEDDING_SIZE, 4096),
    "embeddings.4.bias": (EMBEDDING_SIZE,),
}
#: Keys and shapes of the PCA parameters (torchvggish ``.pth`` and Google's ``.npz`` alike;
#: the means may also be stored as a (128, 1) column).
PCA_SHAPES: dict[str, tuple[int, ...]] = {
    "pca_eigen_vectors": (EMBEDDING_SIZE, EMBEDDING_SIZE),
    "pca_means": (EMBEDDING_SIZE,),
}

#: Resamplers accepted by :class:`VGGishEmbedder` for input at another rate.
RESAMPLERS = ("soxr", "resampy")


# -- front end --------------------------------------------------------------------------------
def hertz_to_mel(frequencies_hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: ``1127 ln(1 + f / 700)``.

    Parameters
    ----------
    frequencies_hz : float or np.ndarray
        Frequencies in Hz.

    Returns
    -------
    np.ndarray
        Same shape, in mel.
    """
    return _MEL_HIGH_FREQUENCY_Q * np.log1p(
        np.asarray(frequencies_hz, dtype=np.float64) / _MEL_BREAK_FREQUENCY_HZ
    )


def mel_weight_matrix(
    *,
    n_mel_bands: int = NUM_MEL_BANDS,
    n_spectrum_bins: int = N_SPECTRUM_BINS,
    sample_rate: int = SAMPLE_RATE,
    fmin_hz: float = MEL_MIN_HZ,
    fmax_hz: float = MEL_MAX_HZ,
) -> np.ndarray:
    """Mel filterbank of the VGGish reference (``mel_features.spectrogram_to_mel_matrix``).

    Triangles are linear in mel, have unit peak (no area normalisation), have band edges equally
    spaced in HTK mel between ``fmin_hz`` and ``fmax_hz``, and the DC bin gets weight zero in
    every band (HTK ignores it), whatever ``fmin_hz`` is.

    Parameters
    ----------
    n_mel_bands : int
        Number of mel bands (columns).
    n_spectrum_bins : int
        Number of rfft bins (rows), ``n_fft // 2 + 1``; bin ``k`` sits at
        ``k * (sample_rate / 2) / (n_spectrum_bins - 1)`` Hz.
    sample_rate : int
        Sample rate in Hz of the analysed audio.
    fmin_hz, fmax_hz : float
        Lower edge of the lowest band and upper edge of the highest band, in Hz.

    Returns
    -------
    np.ndarray [shape=(n_spectrum_bins, n_mel_bands), dtype=float64]
        ``mel = spectrum @ matrix``.

    Raises
    ------
    ParameterError
        If the band edges are negative, out of order, or above Nyquist.
    """
    nyquist_hz = sample_rate / 2.0
    if fmin_hz < 0.0:
        raise ParameterError(f"mel_weight_matrix: fmin_hz must be >= 0, got {fmin_hz}")
    if fmin_hz >= fmax_hz:
        raise ParameterError(
            f"mel_weight_matrix: fmin_hz must be < fmax_hz, got fmin_hz={fmin_hz}, fmax_hz={fmax_hz}"
        )
    if fmax_hz > nyquist_hz:
        raise ParameterError(
            f"mel_weight_matrix: fmax_hz must be <= Nyquist ({nyquist_hz} Hz), got {fmax_hz}"
        )
    bins_mel = hertz_to_mel(np.linspace(0.0, nyquist_hz, n_spectrum_bins))[:, None]
    edges_mel = np.linspace(hertz_to_mel(fmin_hz), hertz_to_mel(fmax_hz), n_mel_bands + 2)
    lower, centre, upper = edges_mel[:-2], edges_mel[1:-1], edges_mel[2:]
    rising = (bins_mel - lower) / (centre - lower)
    falling = (upper - bins_mel) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # the reference zeroes the DC bin explicitly
    return weights


def periodic_hann(window_samples: int) -> torch.Tensor:
    """Periodic Hann window ``0.5 - 0.5 cos(2 pi n / N)``, n = 0..N-1 (float64, shape (N,))."""
    n = torch.arange(window_samples, dtype=torch.float64)
    return 0.5 - 0.5 * torch.cos(2.0 * torch.pi * n / window_samples)


def n_stft_frames(n_samples: int) -> int:
    """Number of complete 400-sample STFT frames (hop 160) in ``n_samples`` samples."""
    if n_samples < STFT_WINDOW_SAMPLES:
        return 0
    return 1 + (n_samples - STFT_WINDOW_SAMPLES) // STFT_HOP_SAMPLES


def n_patches(n_samples: int) -> int:
    """Number of 0.96 s patches for ``n_samples`` at 16 kHz: at least 1 (short clips are padded)."""
    if n_samples < PATCH_SAMPLES:
        return 1
    return 1 + (n_stft_frames(n_samples) - PATCH_FRAMES) // PATCH_HOP_FRAMES


def is_short(n_samples: int) -> bool:
    """True when ``n_samples`` (16 kHz) is shorter than one patch (15 600 samples, 0.975 s)."""
    return n_samples < PATCH_SAMPLES


class LogMelFrontend(nn.Module):
    """The VGGish log-mel front end in torch, differentiable with respect to the waveform.

    Computed in float64, as the NumPy reference does: in float32 the STFT's rounding error
    (about 1e-7 of a frame's peak magnitude) reaches 3e-4 in the log of the weakest bands next to
    a loud tone, because ``log(mel + 0.01)`` magnifies absolute errors near 0.01. The cost is
    negligible next to the network. Buffers: ``window`` (400,) periodic Hann and ``mel_matrix``
    (257, 64), float64.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", periodic_hann(STFT_WINDOW_SAMPLES), persistent=False)
        self.register_buffer("mel_matrix", torch.from_numpy(mel_weight_matrix()), persistent=False)

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """Log-mel spectrogram.

        Parameters
        ----------
        waveform : torch.Tensor [shape=(B, n)]
            16 kHz mono audio, ``n >= 400``.

        Returns
        -------
        torch.Tensor [shape=(B, F, 64), dtype=float32]
            ``log(mel + 0.01)`` for the ``F = 1 + (n - 400) // 160`` complete frames.
        """
        x = waveform.to(torch.float64)
        frames = x.unfold(-1, STFT_WINDOW_SAMPLES, STFT_HOP_SAMPLES)  # (B, F, 400)
        spectrum = torch.fft.rfft(frames * self.window, n=FFT_SIZE).abs()  # (B, F, 257)
        return torch.log(spectrum @ self.mel_matrix + LOG_OFFSET).to(torch.float32)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Patches of log-mel frames.

        Parameters
        ----------
        waveform : torch.Tensor [shape=(B, n)]
            16 kHz mono audio. Shorter than 15 600 samples: zero-padded at the end to one patch.

        Returns
        -------
        torch.Tensor [shape=(B, T, 96, 64)]
            ``T = n_patches(n)`` patches (time x mel); frames after the last complete patch are
            dropped, as in the reference.
        """
        n = waveform.shape[-1]
        if n < PATCH_SAMPLES:
            waveform = nn.functional.pad(waveform, (0, PATCH_SAMPLES - n))
        n_out = n_patches(n)
        log_mel = self.log_mel(waveform)[:, : n_out * PATCH_FRAMES]
        return log_mel.reshape(waveform.shape[0], n_out, PATCH_FRAMES, NUM_MEL_BANDS)


# -- network ----------------------------------------------------------------------------------
class VGGishNetwork(nn.Module):
    """The VGGish network; parameter names equal torchvggish's (``features.*``, ``embeddings.*``).

    Input (N, 1, 96, 64) patches (time x mel), output (N, 128) embeddings before any ReLU.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 1
        for width in _LAYOUT:
            if width == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_channels, int(width), kernel_size=3, padding=1), nn.ReLU()]
                in_channels = int(width)
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 6 * 4, 4096),
            nn.ReLU(),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, EMBEDDING_SIZE),
        )

    @staticmethod
    def flatten_nhwc(x: torch.Tensor) -> torch.Tensor:
        """(N, 512, 6, 4) -> (N, 12288) in TF's (height, width, channel) order.

        The fc weights were trained on TF's channels-last flatten; flattening the NCHW tensor
        directly would scramble fc1's inputs without any shape error.
        """
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, 1, 96, 64) log-mel patches -> (N, 128) pre-activation embeddings."""
        return self.embeddings(self.flatten_nhwc(self.features(patches)))

    def forward_features(self, patches: torch.Tensor) -> dict[str, torch.Tensor]:
        """Activations after each conv block (post-ReLU, pre-pool), fc1, fc2 and the embedding.

        Returns
        -------
        dict
            ``conv1`` (N, 64, 96, 64), ``conv2`` (N, 128, 48, 32), ``conv3`` (N, 256, 24, 16),
            ``conv4`` (N, 512, 12, 8), ``fc1`` (N, 4096), ``fc2`` (N, 4096),
            ``embedding`` (N, 128, pre-activation).
        """
        out: dict[str, torch.Tensor] = {}
        x = patches
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _BLOCK_ENDS:
                out[_BLOCK_ENDS[i]] = x
        x = self.flatten_nhwc(x)
        x = self.embeddings[1](self.embeddings[0](x))
        out["fc1"] = x
        x = self.embeddings[3](self.embeddings[2](x))
        out["fc2"] = x
        out["embedding"] = self.embeddings[4](x)
        return out


def pca_quantize(
    embeddings: torch.Tensor, eigen_vectors: torch.Tensor, means: torch.Tensor
) -> torch.Tensor:
    """Google's post-processing: PCA (with whitening), clip, 8-bit quantisation by truncation.

    Parameters
    ----------
    embeddings : torch.Tensor [shape=(..., 128)]
        Raw VGGish embeddings.
    eigen_vectors : torch.Tensor [shape=(128, 128)]
        ``pca_eigen_vectors`` (rows are output dimensions).
    means : torch.Tensor [shape=(128,)]
        ``pca_means``.

    Returns
    -------
    torch.Tensor [shape=(..., 128), dtype=float32]
        Integer values in [0, 255]: ``trunc((clip(E (x - mu), -2, 2) + 2) * 255 / 4)``, as
        ``vggish_postprocess.Postprocessor`` does with ``astype(np.uint8)``. Not differentiable
        (the gradient of the truncation is zero): use raw embeddings for a loss.
    """
    # float64 like the reference (NumPy promotes the float32 embeddings to the float64 PCA
    # parameters), so values on an integer boundary truncate the same way
    pca = (embeddings.to(torch.float64) - means.to(torch.float64)) @ eigen_vectors.to(
        torch.float64
    ).T
    clipped = pca.clamp(QUANTIZE_MIN_VAL, QUANTIZE_MAX_VAL)
    scaled = (clipped - QUANTIZE_MIN_VAL) * (
        QUANTIZE_LEVELS / (QUANTIZE_MAX_VAL - QUANTIZE_MIN_VAL)
    )
    return torch.floor(scaled).float()  # values are >= 0, so floor == truncation toward zero


# -- weight conversion ------------------------------------------------------------------------
def _numpy_safe_globals() -> list[Any]:
    """NumPy objects torch's weights-only unpickler may rebuild (arrays of plain dtypes).

    torchvggish's PCA file holds NumPy arrays, pickled by NumPy 1.x under the module name
    ``numpy.core.multiarray``; NumPy 2 names it ``numpy._core.multiarray``: allow both.
    """
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    allowed: list[Any] = [
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        (_reconstruct, "numpy._core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
    ]
    for name in ("float16", "float32", "float64", "int32", "int64"):
        allowed.append(type(np.dtype(name)))
    return allowed


def load_torch_file(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a state dict that may hold NumPy arrays.

    Raises
    ------
    WeightsVerificationError
        If the file is not a loadable dict (names the file and the loader's reason).
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise WeightsVerificationError(
            f"{path}: cannot be read as a torch state dict ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); delete it and fetch it again"
        ) from None
    if not isinstance(obj, dict):
        raise WeightsVerificationError(
            f"{path}: expected a state dict (mapping of tensors), got {type(obj).__name__}"
        )
    return obj


def _check_tensors(
    source: str | os.PathLike,
    tensors: dict[str, Any],
    shapes: dict[str, tuple[int, ...]],
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Check keys and shapes exactly; return contiguous ``dtype`` tensors in ``shapes`` order."""
    missing = [k for k in shapes if k not in tensors]
    extra = [k for k in tensors if k not in shapes]
    if missing or extra:
        raise WeightsVerificationError(
            f"{source}: unexpected keys; missing {missing or 'none'}, unexpected {extra or 'none'}"
            f" (expected exactly {list(shapes)})"
        )
    out = {}
    for key, shape in shapes.items():
        value = torch.as_tensor(
            np.asarray(tensors[key]) if not torch.is_tensor(tensors[key]) else tensors[key]
        )
        if tuple(value.shape) != shape:
            raise WeightsVerificationError(
                f"{source}: tensor {key!r} has shape {tuple(value.shape)}, expected {shape}"
            )
        if not torch.isfinite(value).all():
            raise WeightsVerificationError(f"{source}: tensor {key!r} holds NaN or infinite values")
        out[key] = value.detach().to(dtype).contiguous()
    return out


def convert_torchvggish_model(source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read and verify torchvggish's ``vggish-10086976.pth``.

    Returns
    -------
    dict
        The 18 tensors of :data:`TORCHVGGISH_MODEL_SHAPES` as float32, ready for
        :class:`VGGishNetwork` (whose fc1 expects the NHWC flatten, as torchvggish's does).
    """
    return _check_tensors(source, load_torch_file(source), TORCHVGGISH_MODEL_SHAPES)


def _pca_tensors(source: str | os.PathLike, params: dict[str, Any]) -> dict[str, torch.Tensor]:
    params = dict(params)
    if "pca_means" in params:  # the reference stores a flat vector and reshapes it to a column
        means = params["pca_means"]
        if tuple(np.shape(means)) == (EMBEDDING_SIZE, 1):
            params["pca_means"] = means.reshape(-1)
    # float64, as the reference's NumPy post-processing computes
    return _check_tensors(source, params, PCA_SHAPES, dtype=torch.float64)


def convert_torchvggish_pca(source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read and verify torchvggish's ``vggish_pca_params-970ea276.pth`` (NumPy arrays inside).

    Returns
    -------
    dict
        ``pca_eigen_vectors`` (128, 128) and ``pca_means`` (128,), float64.
    """
    return _pca_tensors(source, load_torch_file(source))


def convert_google_pca_npz(source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read and verify Google's ``vggish_pca_params.npz`` (same keys as the torchvggish file)."""
    try:
        with np.load(source, allow_pickle=False) as npz:
            params = {key: npz[key] for key in npz.files}
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError
        raise WeightsVerificationError(
            f"{source}: cannot be read as a NumPy .npz file ({type(e).__name__}: {e})"
        ) from None
    return _pca_tensors(source, params)


# -- the embedder -----------------------------------------------------------------------------
@register
class VGGishEmbedder(Embedder):
    """VGGish embeddings: one 128-D vector per 0.96 s patch of 16 kHz audio.

    Parameters
    ----------
    postprocess : bool
        Apply Google's PCA whitening and 8-bit quantisation (values 0..255 as float32; needs the
        PCA parameters; not differentiable). Default: raw embeddings.
    final_relu : bool
        Apply a ReLU to the 128-D output, as torchvggish does. Default False (Google's current
        model has a linear output layer).
    device : str or torch.device
        Where the network runs.
    weights_dir : path-like or None
        Folder with hand-fetched weight files (see :meth:`load`); None uses the cache
        (``$PERCEPTUAL_AUDIO_CACHE``) and download.
    resampler : {"soxr", "resampy"}
        Resampler of :meth:`embed` for input at another rate: soxr (very high quality, the
        pipeline's) or resampy ``kaiser_best`` (the reference's ``vggish_input``).
    batch_size : int
        Patches per network call in :meth:`embed` (bounds memory on long files).
    """

    name = "vggish"
    sample_rate = SAMPLE_RATE
    display_name = "VGGish"
    column_order = 20
    feature_channel_axis = 2  # (B, T, C, ...) per patch
    packages = ("h5py",)
    options = (
        ModelOption(
            "postprocess", "postprocess",
            "apply VGGish's PCA + 8-bit quantisation post-processing (default: raw 128-d "
            "embeddings)", False, boolean=True,
        ),
    )  # fmt: skip

    def __init__(
        self,
        *,
        postprocess: bool = False,
        final_relu: bool = False,
        device: str | torch.device = "cpu",
        weights_dir: str | os.PathLike | None = None,
        resampler: str = "soxr",
        batch_size: int = 64,
    ) -> None:
        super().__init__(device=device)
        if resampler not in RESAMPLERS:
            raise ParameterError(
                f"VGGishEmbedder: resampler must be one of {RESAMPLERS}, got {resampler!r}"
            )
        if int(batch_size) < 1:
            raise ParameterError(
                f"VGGishEmbedder: batch_size must be a positive integer, got {batch_size!r}"
            )
        self.postprocess = bool(postprocess)
        self.final_relu = bool(final_relu)
        self.weights_dir = None if weights_dir is None else Path(weights_dir)
        self.resampler = resampler
        self.batch_size = int(batch_size)
        self.frontend = LogMelFrontend().to(self.device)
        self.network: VGGishNetwork | None = None
        self.pca_eigen_vectors: torch.Tensor | None = None
        self.pca_means: torch.Tensor | None = None
        #: sha256 and file name of the weights in use, by role ("model", "pca").
        self.weights_sha256: dict[str, str] = {}
        self.weights_files: dict[str, str] = {}

    # -- weights ------------------------------------------------------------------------------
    def load(self) -> None:
        """Find, verify, convert (once) and load the weights; idempotent.

        Needs ``vggish-10086976.pth``, and with ``postprocess=True`` the PCA parameters
        (``vggish_pca_params-970ea276.pth`` or Google's ``vggish_pca_params.npz``).

        Raises
        ------
        WeightsUnavailableError
            Naming every URL to fetch and the exact path to put each file in.
        WeightsVerificationError
            If a file fails its checksum, key or shape check.
        """
        if self.network is not None and (not self.postprocess or self.pca_means is not None):
            return
        problems: list[str] = []
        if self.network is None:
            try:
                loaded = weights.load_converted(
                    MODEL_WEIGHTS,
                    convert_torchvggish_model,
                    tag=MODEL_CONVERSION_TAG,
                    weights_dir=self.weights_dir,
                )
            except WeightsUnavailableError as e:
                problems.append(str(e))
            else:
                self._set_network(loaded.state_dict)
                self.weights_sha256["model"] = loaded.sha256
                self.weights_files["model"] = loaded.sources[0].weight_file.filename
        if self.postprocess and self.pca_means is None:
            try:
                loaded = _load_pca(self.weights_dir)
            except WeightsUnavailableError as e:
                problems.append(str(e))
            else:
                self._set_pca(loaded.state_dict)
                self.weights_sha256["pca"] = loaded.sha256
                self.weights_files["pca"] = loaded.sources[0].weight_file.filename
        if problems:
            raise WeightsUnavailableError("\n".join(problems))

    def _set_network(self, state_dict: dict[str, torch.Tensor]) -> None:
        # Built on the meta device and filled by assignment: no random initialisation (fast, and
        # no randomly initialised network can ever produce output).
        state_dict = _check_tensors("VGGish state dict", state_dict, TORCHVGGISH_MODEL_SHAPES)
        with torch.device("meta"):
            network = VGGishNetwork()
        network.load_state_dict(state_dict, strict=True, assign=True)
        self.network = network.to(self.device).eval()
        for p in self.network.parameters():
            p.requires_grad_(False)

    def _set_pca(self, state_dict: dict[str, torch.Tensor]) -> None:
        pca = _check_tensors("VGGish PCA parameters", state_dict, PCA_SHAPES, dtype=torch.float64)
        self.pca_eigen_vectors = pca["pca_eigen_vectors"].to(self.device)
        self.pca_means = pca["pca_means"].to(self.device)

    # -- model --------------------------------------------------------------------------------
    def _as_batch(self, waveform: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(waveform) or waveform.ndim != 2:
            shape = tuple(waveform.shape) if torch.is_tensor(waveform) else type(waveform).__name__
            raise ParameterError(
                f"vggish.forward: waveform must be a (B, n) tensor at 16000 Hz, got {shape}"
            )
        if waveform.shape[-1] == 0:
            raise ParameterError("vggish.forward: waveform has no samples (n = 0)")
        self.load()
        return waveform.to(device=self.device, dtype=torch.float32)

    def _embed_patches(self, patches: torch.Tensor) -> torch.Tensor:
        batch, n_out = patches.shape[:2]
        with full_fp32_on_cuda(self.device):
            x = self.network(patches.reshape(batch * n_out, 1, PATCH_FRAMES, NUM_MEL_BANDS))
        if self.final_relu:
            x = torch.relu(x)
        if self.postprocess:
            x = pca_quantize(x, self.pca_eigen_vectors, self.pca_means)
        return x.reshape(batch, n_out, EMBEDDING_SIZE)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Embeddings of a batch of 16 kHz waveforms, differentiable (unless ``postprocess``).

        Parameters
        ----------
        waveform : torch.Tensor [shape=(B, n)]
            Mono audio at 16 kHz. Clips shorter than 15 600 samples are zero-padded to one
            patch (see :meth:`flags`).

        Returns
        -------
        torch.Tensor [shape=(B, T, 128), dtype=float32]
            ``T = n_patches(n)``; patch ``t`` covers samples ``[15360 t, 15360 t + 15600)``.
        """
        return self._embed_patches(self.frontend(self._as_batch(waveform)))

    def log_mel_patches(self, waveform: torch.Tensor) -> torch.Tensor:
        """The network's input: (B, n) 16 kHz audio -> (B, T, 96, 64) log-mel patches."""
        if not torch.is_tensor(waveform) or waveform.ndim != 2:
            raise ParameterError(
                "vggish.log_mel_patches: waveform must be a (B, n) tensor at 16000 Hz, got "
                f"{tuple(waveform.shape) if torch.is_tensor(waveform) else type(waveform).__name__}"
            )
        return self.frontend(waveform.to(device=self.device, dtype=torch.float32))

    def features(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        """Intermediate activations, per patch, for a deep-feature loss.

        Parameters
        ----------
        waveform : torch.Tensor [shape=(B, n)]
            Mono audio at 16 kHz.

        Returns
        -------
        dict of torch.Tensor
            ``log_mel`` (B, T, 96, 64); ``conv1`` (B, T, 64, 96, 64), ``conv2``
            (B, T, 128, 48, 32), ``conv3`` (B, T, 256, 24, 16), ``conv4`` (B, T, 512, 12, 8):
            each block's last ReLU output before pooling (channels, time, mel); ``fc1`` and
            ``fc2`` (B, T, 4096); ``embedding`` (B, T, 128), as :meth:`forward` returns it
            (with the final ReLU and post-processing when those options are on).
        """
        patches = self.frontend(self._as_batch(waveform))
        batch, n_out = patches.shape[:2]
        with full_fp32_on_cuda(self.device):
            acts = self.network.forward_features(
                patches.reshape(batch * n_out, 1, PATCH_FRAMES, NUM_MEL_BANDS)
            )
        embedding = acts.pop("embedding")
        if self.final_relu:
            embedding = torch.relu(embedding)
        if self.postprocess:
            embedding = pca_quantize(embedding, self.pca_eigen_vectors, self.pca_means)
        out = {"log_mel": patches}
        for key, value in acts.items():
            out[key] = value.reshape(batch, n_out, *value.shape[1:])
        out["embedding"] = embedding.reshape(batch, n_out, EMBEDDING_SIZE)
        return out

    def timestamps(self, n_samples: int) -> np.ndarray:
        """Start time in seconds of each patch: ``patch index * 0.96``, shape (T,)."""
        return np.arange(n_patches(int(n_samples)), dtype=np.float64) * PATCH_HOP_SECONDS

    def flags(self, n_samples: int) -> list[str]:
        """Flags for a 16 kHz clip of ``n_samples``: ``["short"]`` when it was zero-padded to one
        patch (shorter than 15 600 samples, 0.975 s), else empty."""
        return ["short"] if is_short(int(n_samples)) else []

    def info(self) -> dict[str, Any]:
        """What the output manifest records about this model and its settings."""
        variant = "vggish-pca" if self.postprocess else "vggish"
        if self.final_relu:
            variant += "-relu"
        return {
            "model": self.name,
            "variant": variant,
            "sample_rate": self.sample_rate,
            "hop_seconds": PATCH_HOP_SECONDS,
            "window_seconds": PATCH_SECONDS,
            "embedding_size": EMBEDDING_SIZE,
            "postprocess": self.postprocess,
            "final_relu": self.final_relu,
            "resampler": self.resampler,
            "min_samples": PATCH_SAMPLES,
            "short_clip_policy": "zero-padded to one 0.975 s patch and flagged 'short'",
            "dim": EMBEDDING_SIZE,
            "weights_files": list(self.weights_files.values()),
            # one digest for everything the output depends on: the model file, plus the PCA
            # file when post-processing (sha256 of the ';'-joined digests, weights.py's rule)
            "weights_sha256": self._combined_sha256(),
            "model_weights_sha256": self.weights_sha256.get("model"),
            "pca_weights_sha256": self.weights_sha256.get("pca"),
        }

    def _combined_sha256(self) -> str | None:
        parts = ["model", "pca"] if self.postprocess else ["model"]
        if not all(p in self.weights_sha256 for p in parts):
            return None
        return weights.combined_sha256([self.weights_sha256[p] for p in parts])

    # -- NumPy path -----------------------------------------------------------------------------
    def resample_numpy(self, x: np.ndarray, sr: int) -> np.ndarray:
        """Resample to 16 kHz with the chosen resampler (``soxr`` or ``resampy`` kaiser_best)."""
        if sr == self.sample_rate:
            return x
        if sr <= 0:
            raise ParameterError(f"vggish.embed: sr must be a positive rate in Hz, got {sr}")
        if self.resampler == "resampy":
            import resampy

            return resampy.resample(x, sr, self.sample_rate, filter="kaiser_best").astype(
                np.float32
            )
        return super().resample_numpy(x, sr)

    def embed(self, waveform: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
        """Embed one mono waveform, ``batch_size`` patches at a time (bounded memory).

        Parameters
        ----------
        waveform : np.ndarray [shape=(n,)]
            Mono audio at ``sr`` Hz.
        sr : int
            Its sample rate in Hz; resampled to 16 kHz with ``resampler`` when different.

        Returns
        -------
        embeddings : np.ndarray [shape=(T, 128), dtype=float32]
        timestamps : np.ndarray [shape=(T,)], seconds (patch starts)
        """
        x = np.asarray(waveform, dtype=np.float32)
        if x.ndim != 1:
            raise ParameterError(f"vggish.embed: waveform must be 1-D (n,), got shape {x.shape}")
        if x.size == 0:
            raise ParameterError("vggish.embed: waveform has no samples (n = 0)")
        x = self.resample_numpy(x, sr)
        if is_short(len(x)):
            logger.warning(
                "vggish: clip of %d samples (%.3f s) is shorter than one patch (%d samples, "
                "%.3f s): zero-padded to one patch",
                len(x),
                len(x) / SAMPLE_RATE,
                PATCH_SAMPLES,
                PATCH_SAMPLES / SAMPLE_RATE,
            )
        self.load()
        total = n_patches(len(x))
        signal = torch.from_numpy(x)
        chunks = []
        with torch.inference_mode():
            for first in range(0, total, self.batch_size):
                count = min(self.batch_size, total - first)
                start = first * PATCH_HOP_SAMPLES
                stop = start + (count - 1) * PATCH_HOP_SAMPLES + PATCH_SAMPLES
                segment = signal[start:stop].to(self.device)[None]
                chunks.append(self.forward(segment)[0].float().cpu())
        return torch.cat(chunks).numpy(), self.timestamps(len(x))


# -- weight files -----------------------------------------------------------------------------
_TORCHVGGISH_RELEASE = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/"

#: torchvggish's port of Google's ``vggish_model.ckpt``; the name carries the first 8 hex
#: digits of its sha256 (torch-hub convention), verified on every use.
MODEL_WEIGHTS = weights.register_weight_file(
    weights.WeightFile(
        model="vggish",
        filename="vggish-10086976.pth",
        url=_TORCHVGGISH_RELEASE + "vggish-10086976.pth",
        sha256_prefix="10086976",
        description="VGGish network, torchvggish v0.1 state dict (converted from vggish_model.ckpt)",
    )
)
#: torchvggish's copy of Google's PCA parameters (a torch pickle of NumPy arrays).
PCA_WEIGHTS = weights.register_weight_file(
    weights.WeightFile(
        model="vggish",
        filename="vggish_pca_params-970ea276.pth",
        url=_TORCHVGGISH_RELEASE + "vggish_pca_params-970ea276.pth",
        sha256_prefix="970ea276",
        description="VGGish PCA post-processing parameters, torchvggish v0.1",
    )
)
#: Google's original PCA parameters; used when the torchvggish copy is not available.
GOOGLE_PCA_WEIGHTS = weights.register_weight_file(
    weights.WeightFile(
        model="vggish",
        filename="vggish_pca_params.npz",
        url="https://storage.googleapis.com/audioset/vggish_pca_params.npz",
        description="VGGish PCA post-processing parameters, Google's original (alternative)",
    )
)
#: Versions of the converters (a change re-converts cached files).
MODEL_CONVERSION_TAG = "vggish-sd1"
PCA_CONVERSION_TAG = "vggish-pca1"
#: PCA sources in order of preference: (file, converter).
PCA_SOURCES = (
    (PCA_WEIGHTS, convert_torchvggish_pca),
    (GOOGLE_PCA_WEIGHTS, convert_google_pca_npz),
)


def _load_pca(weights_dir: Path | None) -> weights.LoadedWeights:
    """PCA parameters from whichever source is present; downloads only when none is.

    Raises
    ------
    WeightsUnavailableError
        Listing both sources (either one is enough).
    """
    for download in (False, True):
        failures = []
        for wf, convert in PCA_SOURCES:
            try:
                return weights.load_converted(
                    wf,
                    convert,
                    tag=PCA_CONVERSION_TAG,
                    weights_dir=weights_dir,
                    download=download,
                )
            except WeightsUnavailableError as e:
                failures.append(str(e))
    raise WeightsUnavailableError(
        "vggish post-processing (--vggish-postprocess) needs one of two PCA parameter files; "
        "neither is available:\n" + "\n".join(failures)
    )
