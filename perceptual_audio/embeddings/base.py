"""The one interface every embedding model implements, and the model registry.

A model is a small class: a ``name``, the ``sample_rate`` it runs at, ``load()`` (heavy work:
weights lookup and conversion, raising :class:`WeightsUnavailableError` when it cannot), a
differentiable torch ``forward`` from waveform to frame embeddings, and ``timestamps``.
The NumPy convenience ``embed`` (resampling, chunking, no gradients) is shared here.

The registry is the only list of models. A model also declares, as class attributes, what
the rest of the pipeline needs from it: ``display_name``, ``column_order``,
``feature_channel_axis`` (the deep-feature loss), ``packages`` (versions recorded in
run.json), ``options`` (its stage-2 command-line options, :class:`ModelOption`) and
``extra_metrics`` (pair metrics from arrays it stores beside the frames,
:class:`ExtraMetric`, e.g. CDPAM's learned distance). Stages 2-4 and the loss ask
:func:`model_names` / :func:`model_class`; a new model is one module in this package that
defines a subclass decorated with :func:`register`.
"""

from __future__ import annotations

import abc
import contextlib
import importlib
import logging
import math
import pkgutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from perceptual_audio.audio_io import resample
from perceptual_audio.errors import ParameterError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelOption:
    """One stage-2 command-line option of a model: ``--<model>-<flag>`` -> ``keyword``.

    ``boolean`` options are switches (``store_true``); the others take a value, converted by
    ``type`` and checked against ``choices``.
    """

    keyword: str
    flag: str
    help: str
    default: Any = None
    type: Callable[[str], Any] | None = None
    choices: tuple[Any, ...] | None = None
    boolean: bool = False
    metavar: str | None = None


@dataclass(frozen=True)
class ExtraMetric:
    """A pair metric a model computes from arrays it stores beside its frame embeddings.

    ``extras`` names the arrays (``clip`` is stored as ``<stem>.clip.npy``); stage 3 passes
    them to :meth:`Embedder.extra_metric`. The rest describes the ``pair_metrics.csv`` column
    for the metric catalogue (:func:`perceptual_audio.metrics.describe`).
    """

    name: str
    label: str
    unit: str
    higher_is_better: bool
    description: str
    extras: tuple[str, ...]
    bounds: tuple[float, float] = (0.0, math.inf)
    #: A headline measure of the report (the catalogue's ``MetricSpec.headline``): a model's
    #: own learned metric is, by default.
    headline: bool = True


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
    #: Name in tables, plots and the report ("" -> :attr:`name`).
    display_name: ClassVar[str] = ""
    #: Position among the models (table columns, default ``--models``); ties by name.
    column_order: ClassVar[int] = 100
    #: Whether stage 2 and 3 run the model when ``--models`` is not given.
    enabled_by_default: ClassVar[bool] = True
    #: Channel axis of the tensors :meth:`features` returns (the deep-feature loss).
    feature_channel_axis: ClassVar[int] = 1
    #: Python packages the model needs beyond torch/numpy; run.json records their versions.
    packages: ClassVar[tuple[str, ...]] = ()
    #: The package whose version the metric catalogue names for this model's metrics.
    metric_package: ClassVar[str | None] = None
    #: Stage-2 command-line options (``--<name>-<flag>``), passed to the constructor.
    options: ClassVar[tuple[ModelOption, ...]] = ()
    #: Pair metrics computed from stored extra arrays (:meth:`extra_metric`).
    extra_metrics: ClassVar[tuple[ExtraMetric, ...]] = ()

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

    def embed_with_extras(
        self, waveform: np.ndarray, sr: int
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """:meth:`embed` plus the arrays stored beside the frames, by name (default: none).

        Stage 2 saves each as ``<stem>.<name>.npy``; :attr:`extra_metrics` use them.
        """
        emb, ts = self.embed(waveform, sr)
        return emb, ts, {}

    def extras_from_audio(self, waveform: np.ndarray, sr: int) -> dict[str, np.ndarray]:
        """The extra arrays of one file computed from its audio (stage 3's fallback when stage 2
        stored none). Models override it when the extras are cheaper than the frames."""
        return self.embed_with_extras(waveform, sr)[2]

    def extra_metric(
        self, name: str, reference: Mapping[str, np.ndarray], degraded: Mapping[str, np.ndarray]
    ) -> float:
        """Value of extra metric ``name`` from the two files' extra arrays (by name)."""
        raise NotImplementedError(f"{self.name} declares no extra metric {name!r}")

    def flags(self, n_samples: int) -> list[str]:
        """Manifest flags of a file of ``n_samples`` at the model rate (VGGish: ``short``)."""
        return []

    @classmethod
    def label(cls) -> str:
        """The display name (:attr:`display_name`, else :attr:`name`)."""
        return cls.display_name or cls.name

    def resample_numpy(self, x: np.ndarray, sr: int) -> np.ndarray:
        """Resample to the model rate for the NumPy path (models may override to match
        their reference implementation's resampler)."""
        if sr == self.sample_rate:
            return x

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


#: name -> class. Filled by :func:`register` in each model module.
_REGISTRY: dict[str, type[Embedder]] = {}


def register(cls: type[Embedder]) -> type[Embedder]:
    """Class decorator adding a model to the registry under ``cls.name`` (replacing any
    model of that name)."""
    _REGISTRY[cls.name] = cls
    return cls


def registered_classes() -> tuple[type[Embedder], ...]:
    """Every registered model class (a worker process registers the same ones: a model a
    test or a plugin registered at run time is known there too)."""
    _import_models()
    return tuple(_REGISTRY.values())


def register_missing(classes: Sequence[type[Embedder]]) -> None:
    """Register each of ``classes`` whose name is not registered yet."""
    _import_models()
    for cls in classes:
        _REGISTRY.setdefault(cls.name, cls)


def model_names(*, default_only: bool = False) -> list[str]:
    """Names of the registered models in column order (``column_order``, then name).

    ``default_only`` keeps the models run when ``--models`` is not given.
    """
    _import_models()
    classes = sorted(_REGISTRY.values(), key=lambda c: (c.column_order, c.name))
    return [c.name for c in classes if c.enabled_by_default or not default_only]


def model_class(name: str) -> type[Embedder]:
    """The registered class of model ``name``.

    Raises
    ------
    ParameterError
        For a name no model registered, listing the known ones.
    """
    _import_models()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ParameterError(
            f"unknown model {name!r}; expected one of {', '.join(model_names())}"
        ) from None


def get_embedder(name: str, **options: Any) -> Embedder:
    """Instantiate a model by name (weights are not loaded until :meth:`Embedder.load`)."""
    return model_class(name)(**options)


def model_packages() -> tuple[str, ...]:
    """The packages the registered models declare, each once, in model order."""
    out: dict[str, None] = {}
    for name in model_names():
        out.update(dict.fromkeys(model_class(name).packages))
    return tuple(out)


@contextlib.contextmanager
def registry_scope() -> Iterator[None]:
    """Restore the registry on exit (for tests that register stand-in models)."""
    _import_models()
    saved = dict(_REGISTRY)
    try:
        yield
    finally:
        _REGISTRY.clear()
        _REGISTRY.update(saved)


#: Modules of this package that define no model (not imported by :func:`_import_models`).
_SUPPORT_MODULES = frozenset({"base", "frontends", "resample", "weights"})
_imported = False


def _import_models() -> None:
    # Model modules register themselves on import. Every module of this package that is not a
    # support module is a model module; import them lazily so that `import perceptual_audio`
    # stays light.
    global _imported
    if _imported:
        return
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.name in _SUPPORT_MODULES:
            continue
        importlib.import_module(f"{__package__}.{info.name}")
    _imported = True
