"""VGGish weight files: registration, verification and conversion to this package's state dicts."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perceptual_audio.embeddings import weights
from perceptual_audio.embeddings.vggish.frontend import (
    EMBEDDING_SIZE,
)
from perceptual_audio.errors import (
    WeightsUnavailableError,
    WeightsVerificationError,
)

logger = logging.getLogger(__name__)


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


# -- weight conversion ------------------------------------------------------------------------
def _numpy_safe_globals() -> list[Any]:
    """NumPy objects torch's weights-only unpickler may rebuild (arrays of plain dtypes).

    torchvggish's PCA file holds NumPy arrays, pickled by NumPy 1.x under the module name
    ``numpy.core.multiarray``; NumPy 2 names it ``numpy._core.multiarray``: allow both.
    """
    try:
        # NumPy 2 (its private name is what the pickle names)
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


def check_tensors(
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
    return check_tensors(source, load_torch_file(source), TORCHVGGISH_MODEL_SHAPES)


def _pca_tensors(source: str | os.PathLike, params: dict[str, Any]) -> dict[str, torch.Tensor]:
    params = dict(params)
    if "pca_means" in params:  # the reference stores a flat vector and reshapes it to a column
        means = params["pca_means"]
        if tuple(np.shape(means)) == (EMBEDDING_SIZE, 1):
            params["pca_means"] = means.reshape(-1)
    # float64, as the reference's NumPy post-processing computes
    return check_tensors(source, params, PCA_SHAPES, dtype=torch.float64)


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


def load_pca(weights_dir: Path | None) -> weights.LoadedWeights:
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
