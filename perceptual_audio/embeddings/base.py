"""The one interface every embedding model implements, and the model registry.

A model is a small class: a ``name``, the ``sample_rate`` it runs at, ``load()`` (heavy work:
weights lookup and conversion, raising :class:`WeightsUnavailableError` when it cannot), a
differentiable torch ``forward`` from waveform to frame embeddings, and ``timestamps``.
The NumPy convenience ``embed`` (resampling, chunking, no gradients) is shared here.
"""

from __future__ import annotations

import abc
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import numpy as np
import torch

from perceptual_audio.errors import ParameterError

logger = logging.getLogger(__name__)


class Embedder(abc.ABC):
    """Base class of the embedding models.

    Subclasses set ``name`` and ``sample_rate`` and implement :meth:`load`, :meth:`forward`,
    :meth:`timestamps` and :meth:`info`. ``forward`` must be differentiable with respect to
    the waveform (the perceptual loss backpropagates through it) and must not use NumPy.
    """

    #: Registry key and output-folder prefix (``openl3``, ``vggish``, ``cdpam``).
    name: ClassVar[str]
    #: Sample rate in Hz that :meth:`forward` expects.
    sample_rate: ClassVar[int]

    def __init__(self, *, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)

    # -- to implement --------------------------------------------------------------------
    @abc.abstractmethod
    def load(self) -> None:
        """Find, verify, convert and load the weights; idempotent.

        Raises
        ------
        WeightsUnavailableError
            With every URL to fetch and the exact path to put each file in.
        """

    @abc.abstractmethod
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Frame embeddings of a batch of waveforms, differentiably.

        Parameters
        ----------
        waveform : torch.Tensor [shape=(B, n)]
            Mono audio at :attr:`sample_rate`, float, nominally in [-1, 1].

        Returns
        -------
        torch.Tensor [shape=(B, T, D)]
            ``T`` frames as given by :meth:`timestamps` for ``n`` samples.
        """

    @abc.abstractmethod
    def timestamps(self, n_samples: int) -> np.ndarray:
        """Frame times in seconds, shape (T,), for a waveform of ``n_samples`` at the model rate."""

    @abc.abstractmethod
    def info(self) -> dict[str, Any]:
        """Variant, hop, embedding size, weights sha256: what the output manifest records."""

    # -- shared --------------------------------------------------------------------------
    def features(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        """Intermediate activations by layer name (for the deep-feature loss).

        Models that support it override this; the default says clearly that it is missing.
        """
        raise NotImplementedError(f"{self.name} does not expose intermediate features")

    def embed(self, waveform: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
        """Embed one mono waveform (NumPy path, no gradients).

        Parameters
        ----------
        waveform : np.ndarray [shape=(n,)]
            Mono audio, float, at ``sr`` Hz.
        sr : int
            Its sample rate in Hz; resampled to :attr:`sample_rate` when different.

        Returns
        -------
        embeddings : np.ndarray [shape=(T, D), dtype=float32]
        timestamps : np.ndarray [shape=(T,)], seconds
        """
        x = np.asarray(waveform, dtype=np.float32)
        if x.ndim != 1:
            raise ParameterError(
                f"{self.name}.embed: waveform must be 1-D (n,), got shape {x.shape}"
            )
        x = self.resample_numpy(x, sr)
        with torch.inference_mode():
            emb = self.forward(torch.from_numpy(x).to(self.device)[None])[0]
        return emb.float().cpu().numpy(), self.timestamps(len(x))

    def resample_numpy(self, x: np.ndarray, sr: int) -> np.ndarray:
        """Resample to the model rate for the NumPy path (models may override to match
        their reference implementation's resampler)."""
        if sr == self.sample_rate:
            return x
        from perceptual_audio.audio_io import resample

        return resample(x, sr, self.sample_rate)


@contextlib.contextmanager
def full_fp32_on_cuda(device: torch.device) -> Iterator[None]:
    """Disable TF32 for convolutions and matmuls on CUDA while inside (restored after).

    PyTorch lets cuDNN use TF32 for float32 convolutions by default; on an H100 that moved the
    VGGish embeddings by 8e-4 of their scale from the CPU result (1.9e-6 without TF32) and the
    torch resampler's output by about three decimal digits.
    """
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    matmul = torch.backends.cuda.matmul
    old_matmul = matmul.allow_tf32
    matmul.allow_tf32 = False
    try:
        with cudnn.flags(
            enabled=cudnn.enabled,
            benchmark=cudnn.benchmark,
            deterministic=cudnn.deterministic,
            allow_tf32=False,
        ):
            yield
    finally:
        matmul.allow_tf32 = old_matmul


#: name -> class. Filled by :func:`register` at the bottom of each model module.
_REGISTRY: dict[str, type[Embedder]] = {}


def register(cls: type[Embedder]) -> type[Embedder]:
    """Class decorator adding a model to the registry under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def model_names() -> list[str]:
    """Names of the known models, in a stable order."""
    _import_models()
    return sorted(_REGISTRY)


def get_embedder(name: str, **options: Any) -> Embedder:
    """Instantiate a model by name (weights are not loaded until :meth:`Embedder.load`)."""
    _import_models()
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ParameterError(
            f"unknown model {name!r}; expected one of {', '.join(sorted(_REGISTRY))}"
        ) from None
    return cls(**options)


def _import_models() -> None:
    # Model modules register themselves on import; import lazily so that `import
    # perceptual_audio` stays light.
    import importlib

    for mod in ("openl3", "vggish", "cdpam"):
        try:
            importlib.import_module(f"perceptual_audio.embeddings.{mod}")
        except ModuleNotFoundError as e:  # a model module not written yet
            if e.name != f"perceptual_audio.embeddings.{mod}":
                raise


ModelFactory = Callable[..., Embedder]
