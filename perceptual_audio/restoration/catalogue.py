"""The loss catalogue: the one owner of what a restoration loss is.

Every registered embedding model gives two losses: ``<model>`` (:class:`EmbeddingLoss`, the
cosine distance of frame-aligned embeddings) and ``<model>-deep`` (:class:`DeepFeatureLoss`,
LPIPS-style over every intermediate layer). Baselines people train with today come from
maintained packages: ``l1`` (torch), ``sisdr`` (negative SI-SDR, auraloss), ``mrstft``
(auraloss's multi-resolution STFT loss) and ``mel`` (auraloss's mel-STFT loss).

Each :class:`LossSpec` names the stage-3 metric column that measures what the loss optimises
(``metric``), when one exists: the loss audit marks that judge ``self``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from perceptual_audio.embeddings.base import model_class, model_names
from perceptual_audio.errors import ParameterError

logger = logging.getLogger(__name__)

#: Suffix of a model's deep-feature loss (``cdpam-deep``).
DEEP_SUFFIX = "-deep"
#: Loss kinds.
KIND_BASELINE, KIND_EMBEDDING, KIND_DEEP = "baseline", "embedding", "deep"
#: auraloss's mel-STFT loss: FFT size and hop in samples at 16 kHz, mel bands.
MEL_FFT_SIZE, MEL_HOP_SIZE, MEL_BANDS = 1024, 256, 128


@dataclass(frozen=True)
class LossSpec:
    """One restoration loss.

    Attributes
    ----------
    name : str
        Command-line name (``l1``, ``sisdr``, ``mrstft``, ``mel``, ``<model>``, ``<model>-deep``).
    label : str
        For tables and plots.
    compares : str
        What the loss compares, in words.
    kind : {"baseline", "embedding", "deep"}
    package : str
        Where the computation comes from (``torch``, ``auraloss``, ``perceptual_audio``).
    metric : str or None
        The stage-3 ``pair_metrics.csv`` column measuring the same thing (the loss audit's
        ``self`` judge), or None.
    model : str or None
        The embedding model it needs (its weights may be unavailable).
    """

    name: str
    label: str
    compares: str
    kind: str
    package: str
    metric: str | None = None
    model: str | None = None


class _WaveformLoss(nn.Module):
    """Adapts a loss on (B, C, n) or (B, n) tensors to the (n,) / (B, n) convention of
    :mod:`perceptual_audio.loss` (estimate first, reference second, mean over the batch)."""

    def __init__(self, inner: nn.Module, *, channel_axis: bool) -> None:
        super().__init__()
        self.inner = inner
        self.channel_axis = channel_axis

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        if estimate.shape != reference.shape or estimate.ndim not in (1, 2):
            raise ParameterError(
                f"loss: estimate and reference must have the same shape (n,) or (B, n), got "
                f"{tuple(estimate.shape)} and {tuple(reference.shape)}"
            )
        if estimate.ndim == 1:
            estimate, reference = estimate[None], reference[None]
        if self.channel_axis:
            estimate, reference = estimate[:, None], reference[:, None]
        return self.inner(estimate, reference)


def _baselines() -> list[LossSpec]:
    return [
        LossSpec("l1", "L1 (waveform)", "mean absolute sample difference", KIND_BASELINE, "torch"),
        LossSpec(
            "sisdr", "negative SI-SDR", "scale-invariant signal-to-distortion ratio, negated",
            KIND_BASELINE, "auraloss", metric="si_sdr",
        ),
        LossSpec(
            "mrstft", "multi-resolution STFT", "spectral convergence + log magnitude at FFT "
            "sizes 1024, 2048, 512", KIND_BASELINE, "auraloss",
        ),
        LossSpec(
            "mel", "mel-STFT", f"spectral convergence + log magnitude of {MEL_BANDS} mel bands "
            f"(FFT {MEL_FFT_SIZE}, hop {MEL_HOP_SIZE})", KIND_BASELINE, "auraloss",
        ),
    ]  # fmt: skip


def _model_losses(model: str) -> list[LossSpec]:
    cls = model_class(model)
    display = cls.label()
    extra = cls.extra_metrics[0].name if cls.extra_metrics else None
    return [
        LossSpec(
            model, f"{display} embedding", f"cosine distance of {display}'s frame embeddings",
            KIND_EMBEDDING, "perceptual_audio", metric=extra or f"{model}_cosine", model=model,
        ),
        LossSpec(
            f"{model}{DEEP_SUFFIX}", f"{display} deep features",
            f"LPIPS-style distance of every intermediate {display} layer", KIND_DEEP,
            "perceptual_audio", model=model,
        ),
    ]  # fmt: skip


def loss_specs() -> list[LossSpec]:
    """Every loss: the baselines, then per registered model (registry order) its two losses."""
    specs = _baselines()
    for model in model_names():
        specs += _model_losses(model)
    return specs


def loss_names() -> list[str]:
    return [s.name for s in loss_specs()]


def describe_loss(name: str) -> LossSpec:
    """The spec of loss ``name``.

    Raises
    ------
    ParameterError
        For an unknown name, listing the valid ones.
    """
    for spec in loss_specs():
        if spec.name == name:
            return spec
    raise ParameterError(f"unknown loss {name!r}; valid losses: {', '.join(loss_names())}")


def parse_loss_list(text: str, *, option: str = "--restore") -> list[str]:
    """``"l1,cdpam"`` -> ``["l1", "cdpam"]`` (order kept, duplicates dropped).

    Raises
    ------
    ParameterError
        Naming ``option`` and the valid losses, for an empty list or an unknown name.
    """
    names = list(dict.fromkeys(n.strip() for n in str(text).split(",") if n.strip()))
    if not names:
        raise ParameterError(f"{option}: give one or more losses ({', '.join(loss_names())})")
    valid = loss_names()
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ParameterError(
            f"{option}: unknown loss {', '.join(map(repr, unknown))}; valid losses: "
            f"{', '.join(valid)}"
        )
    return names


def _baseline_module(name: str, sample_rate: int) -> nn.Module:
    import auraloss  # maintained STFT/SI-SDR losses; imported only when asked for

    builders: dict[str, Callable[[], nn.Module]] = {
        "l1": lambda: _WaveformLoss(nn.L1Loss(), channel_axis=False),
        "sisdr": lambda: _WaveformLoss(auraloss.time.SISDRLoss(), channel_axis=True),
        "mrstft": lambda: _WaveformLoss(
            auraloss.freq.MultiResolutionSTFTLoss(), channel_axis=True
        ),
        "mel": lambda: _WaveformLoss(
            auraloss.freq.MelSTFTLoss(
                sample_rate, fft_size=MEL_FFT_SIZE, hop_size=MEL_HOP_SIZE,
                win_length=MEL_FFT_SIZE, n_mels=MEL_BANDS,
            ),
            channel_axis=True,
        ),
    }  # fmt: skip
    return builders[name]()


def build_loss(
    name: str, *, sample_rate: int, model_options: Mapping[str, Any] | None = None
) -> nn.Module:
    """The ``nn.Module`` of loss ``name``: ``loss(estimate, reference)`` on (n,) or (B, n)
    waveforms at ``sample_rate`` Hz, a scalar (mean over the batch).

    ``model_options`` go to the embedding model (device, weights folder, its own options).

    Raises
    ------
    ParameterError
        For an unknown name.
    WeightsUnavailableError
        When the loss's model cannot be loaded (its weights are absent).
    """
    from perceptual_audio.loss import DeepFeatureLoss, EmbeddingLoss  # deferred: torch

    spec = describe_loss(name)
    if spec.kind == KIND_BASELINE:
        return _baseline_module(name, sample_rate)
    assert spec.model is not None
    embedder = _make_embedder(spec.model, dict(model_options or {}))
    if spec.kind == KIND_EMBEDDING:
        return EmbeddingLoss(embedder, sample_rate=sample_rate)
    return DeepFeatureLoss(embedder, sample_rate=sample_rate)


def _make_embedder(model: str, options: dict[str, Any]):
    """Instantiate ``model`` with the options its constructor takes (others dropped)."""
    cls = model_class(model)
    params = inspect.signature(cls.__init__).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = {k: v for k, v in options.items() if takes_kwargs or k in params}
    for k in sorted(set(options) - set(accepted)):
        logger.debug("model %s takes no option %s; ignored", model, k)
    return cls(**accepted)
