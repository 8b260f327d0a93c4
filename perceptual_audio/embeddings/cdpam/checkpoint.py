"""CDPAM's published facts and its checkpoint: finding, verifying, safely unpickling and loading the shipped weights."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from perceptual_audio.errors import (
    WeightsUnavailableError,
    WeightsVerificationError,
)

logger = logging.getLogger(__name__)


# -- published facts of the shipped model ------------------------------------------------------
#: Package that ships the trained model, and the version this adapter was checked against.
CDPAM_PACKAGE = "cdpam"
CDPAM_PACKAGE_VERSION = "0.0.6"
#: Checkpoint path inside the installed package.
WEIGHTS_RELATIVE_PATH = "CDPAM_trained/scratchJNDdefault_best_model.pth"
#: sha256 of that checkpoint (DESIGN.md section 4); checked before unpickling.
WEIGHTS_SHA256 = "453c8b6edee1a94f0120236156436ff28fe4d8d884485e4a67695c8e8570bdfe"
#: Variant recorded in manifests.
VARIANT = "scratchJNDdefault_best_model"

#: Sample rate in Hz the model was trained at (``cdpam.load_audio`` loads at 22050).
SAMPLE_RATE = 22050
#: ``cdpam.load_audio`` multiplies [-1, 1] audio by this (and rounds): int16 range.
INT16_SCALE = 32768.0

# Hyper-parameters of cdpam.CDPAM.__init__ (0.0.6).
ENCODER_LAYERS = 16
ENCODER_FILTERS = 64
#: Size of the acoustic half of the pooled encoder output (input of the distance network).
ACOUSTIC_DIM = 512
#: Size of the whole pooled encoder output (acoustic + content halves).
ENCODER_DIM = 1024
CLASSIF_NDIM = (16, 6)
CLASSIF_DROPOUT = 0.05
CLASSIF_BATCHNORM = 0
CLASSIF_ACTIVATION = "no"
#: Negative slope of the encoder's LeakyReLU.
LEAKY_SLOPE = 0.1
#: The encoder halves the time axis after every this many blocks ...
BLOCKS_PER_DECIMATION = 4
#: ... so one feature-map position per this many input samples (position j <-> sample 16 j).
DOWNSAMPLING = 2 ** (ENCODER_LAYERS // BLOCKS_PER_DECIMATION)
#: Half-width of the encoder's receptive field in input samples: 7 taps per side per block,
#: at strides 1, 2, 4, 8 for the four groups of four blocks: 7 * 4 * (1 + 2 + 4 + 8) = 420.
RECEPTIVE_RADIUS_SAMPLES = 420
#: Context added on each side of a chunk (>= the radius, a multiple of DOWNSAMPLING) so that
#: chunked encoding equals whole-clip encoding.
CHUNK_MARGIN_SAMPLES = 1024

#: Defaults of the frame layout, in seconds.
DEFAULT_WINDOW_SECONDS = 1.0
DEFAULT_HOP_SECONDS = 0.5
#: Default chunk length in seconds for long clips (bounds memory: about 60 MB per chunk
#: second of activations in the first blocks).
DEFAULT_CHUNK_SECONDS = 10.0

#: Suffix of the clip-level embedding file stored beside ``<stem>.npy``.
CLIP_SUFFIX = ".clip.npy"
#: The ``pair_metrics.csv`` column of CDPAM's learned distance.
DISTANCE_METRIC = "cdpam_distance"

FRAMINGS = ("pooled", "windows")
#: Encoder evaluations: "fast" (:mod:`.encoder`: folded BN, strided decimation, only the
#: needed channels, FFT convolutions on the CPU), "direct" (the same without FFT), "reference"
#: (``cdpam.models.base_encoder``'s own loop). All equal to float32 rounding.
ENCODERS = ("fast", "direct", "reference")
PARTS = ("acoustic", "content", "full")
RESAMPLERS = ("resampy", "soxr")

#: The only globals the checkpoint's pickle may name (all it needs, verified on the file).
_ALLOWED_PICKLE_GLOBALS = frozenset(
    {
        ("collections", "OrderedDict"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
    }
)

# (resolved path, size, mtime_ns, device) -> (model, sha256): one load per process.
_MODEL_CACHE: dict[tuple[str, int, int, str], tuple[torch.nn.Module, str]] = {}


# -- weights -------------------------------------------------------------------------------------
def default_weights_path() -> Path:
    """Path of the checkpoint inside the installed ``cdpam`` package.

    Raises
    ------
    WeightsUnavailableError
        If the package is not installed.
    """
    spec = importlib.util.find_spec(CDPAM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(
            f"cdpam: the {CDPAM_PACKAGE!r} package is not installed, so its trained model "
            f"{WEIGHTS_RELATIVE_PATH} (sha256 {WEIGHTS_SHA256}) is missing; install it with "
            f"`pip install {CDPAM_PACKAGE}=={CDPAM_PACKAGE_VERSION} --no-deps` or pass "
            "weights_path= to a copy of the file"
        )
    return Path(list(spec.submodule_search_locations)[0]) / WEIGHTS_RELATIVE_PATH


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global outside :data:`_ALLOWED_PICKLE_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_PICKLE_GLOBALS:
            raise WeightsVerificationError(
                f"cdpam checkpoint: refusing to unpickle global {module}.{name}; only "
                f"{sorted('.'.join(g) for g in _ALLOWED_PICKLE_GLOBALS)} are allowed"
            )
        return super().find_class(module, name)


class _RestrictedPickleModule:
    """What ``torch.load(pickle_module=...)`` needs: ``Unpickler`` and ``load``."""

    Unpickler = _RestrictedUnpickler
    __name__ = "perceptual_audio_restricted_pickle"

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return _RestrictedUnpickler(file, **kwargs).load()


def unpickle_checkpoint(data: bytes, source: str) -> dict[str, Any]:
    """Unpickle checkpoint bytes on the CPU with the restricted unpickler.

    Call only on bytes whose sha256 was checked. ``weights_only=True`` cannot read this
    legacy pickle (it uses the INT opcode); the allow-list gives the same protection.
    """
    try:
        obj = torch.load(
            io.BytesIO(data),
            map_location="cpu",
            weights_only=False,
            pickle_module=_RestrictedPickleModule,
        )
    except WeightsVerificationError as e:
        raise WeightsVerificationError(f"{source}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise WeightsVerificationError(
            f"{source}: cannot read the cdpam checkpoint ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(obj, dict):
        raise WeightsVerificationError(
            f"{source}: expected a dict checkpoint, got {type(obj).__name__}"
        )
    return obj


def read_verified_weights(
    path: str | os.PathLike, *, expected_sha256: str = WEIGHTS_SHA256
) -> tuple[dict[str, torch.Tensor], str]:
    """Read the checkpoint, check its sha256, then unpickle its ``state`` dict (CPU tensors).

    The bytes are read once, hashed, and the same bytes are unpickled: nothing is unpickled
    from a file that does not match ``expected_sha256``.

    Parameters
    ----------
    path : path-like
        The ``.pth`` checkpoint.
    expected_sha256 : str
        Hex digest the file must have.

    Returns
    -------
    state : dict[str, torch.Tensor]
        The model state dict (keys ``base_encoder.*``, ``model_dist.*``, ``model_classif.*``).
    sha256 : str
        Hex digest of the file read.

    Raises
    ------
    WeightsUnavailableError
        If the file does not exist.
    WeightsVerificationError
        If its sha256 differs, or it does not hold a ``state`` dict.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(
            f"cdpam: weights file {str(path)!r} does not exist; it ships with "
            f"`pip install {CDPAM_PACKAGE}=={CDPAM_PACKAGE_VERSION}` as "
            f"cdpam/{WEIGHTS_RELATIVE_PATH} (sha256 {WEIGHTS_SHA256})"
        )
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise WeightsVerificationError(
            f"cdpam: weights file {str(path)!r} has sha256 {digest}, expected "
            f"{expected_sha256}; refusing to unpickle it. Reinstall "
            f"{CDPAM_PACKAGE}=={CDPAM_PACKAGE_VERSION} (pip install --force-reinstall --no-deps)"
        )
    checkpoint = unpickle_checkpoint(data, str(path))
    state = checkpoint.get("state")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsVerificationError(
            f"{path}: expected a checkpoint dict with a 'state' dict of tensors, got keys "
            f"{sorted(map(str, checkpoint))}"
        )
    return state, digest


def build_model() -> torch.nn.Module:
    """``cdpam.models.FINnet`` with the hyper-parameters of ``cdpam.CDPAM.__init__`` (random
    weights; :func:`load_model` fills them)."""
    try:
        from cdpam.models import FINnet  # deferred: optional package (installed --no-deps)
    except ModuleNotFoundError as e:
        raise WeightsUnavailableError(
            f"cdpam: cannot import the model definition ({e}); install "
            f"`pip install {CDPAM_PACKAGE}=={CDPAM_PACKAGE_VERSION} --no-deps`"
        ) from None
    return FINnet(
        dev=torch.device("cpu"),
        encoder_layers=ENCODER_LAYERS,
        encoder_filters=ENCODER_FILTERS,
        ndim=list(CLASSIF_NDIM),
        classif_dp=CLASSIF_DROPOUT,
        classif_BN=CLASSIF_BATCHNORM,
        classif_act=CLASSIF_ACTIVATION,
        input_size=ACOUSTIC_DIM,
    )


def load_model(
    weights_path: str | os.PathLike | None = None, *, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, str]:
    """The trained CDPAM ``FINnet``, verified, in eval mode, frozen, on ``device``.

    Loaded once per process and file (cached by path, size, modification time and device).

    Returns
    -------
    model : torch.nn.Module
    sha256 : str
        Hex digest of the checkpoint used.
    """
    path = Path(weights_path) if weights_path is not None else default_weights_path()
    device = torch.device(device)
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, str(device))
    except OSError:
        key = None
    if key is not None and key in _MODEL_CACHE:
        return _MODEL_CACHE[key]
    state, digest = read_verified_weights(path)
    model = build_model()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsVerificationError(
            f"{path}: the state dict does not fit cdpam FINnet(encoder_layers={ENCODER_LAYERS}, "
            f"encoder_filters={ENCODER_FILTERS}, input_size={ACOUSTIC_DIM}): {e}"
        ) from None
    model.eval()
    model.requires_grad_(False)
    model.to(device)
    logger.info("loaded cdpam weights %s (sha256 %s) on %s", path, digest, device)
    if key is not None:
        _MODEL_CACHE[key] = (model, digest)
    return model, digest
