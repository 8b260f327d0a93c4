"""Differentiable perceptual losses built on the embedding models (torch ``nn.Module``).

Two losses, both comparing an ``estimate`` waveform with a ``reference`` waveform at the
caller's ``sample_rate`` and backpropagating to the estimate through the whole torch path:
resampling to the model's rate (:class:`~perceptual_audio.embeddings.resample.Resampler`),
the model's front end and network. Model weights are frozen (``requires_grad=False``, eval
mode); nothing in the path uses NumPy; the modules run on CPU or CUDA (``.to(device)``).

- :class:`EmbeddingLoss`: distance between frame-aligned embeddings (B, T, D), averaged over
  frames: ``cosine`` (1 - cosine similarity), ``l1`` (mean absolute difference) or ``l2``
  (mean squared difference).
- :class:`DeepFeatureLoss`: the LPIPS idea (Zhang et al., CVPR 2018, eq. 1 with unit channel
  weights) applied to audio networks: at every layer, activations are unit-normalised along
  the channel axis, the squared difference is summed over channels and averaged over
  time/space, and layers are combined with weights.

Example
-------
>>> loss_fn = EmbeddingLoss("cdpam", sample_rate=16000)            # doctest: +SKIP
>>> loss = loss_fn(model(noisy), clean)                             # doctest: +SKIP
>>> loss.backward()                                                 # doctest: +SKIP
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from perceptual_audio.embeddings.base import Embedder, get_embedder
from perceptual_audio.embeddings.resample import Resampler
from perceptual_audio.errors import ParameterError

logger = logging.getLogger(__name__)

#: Distances of :class:`EmbeddingLoss`.
DISTANCES = ("cosine", "l1", "l2")
#: Reductions over the batch.
REDUCTIONS = ("mean", "sum", "none")
#: Guard against division by zero when unit-normalising vectors (embeddings, channel vectors).
NORM_EPS = 1e-10

#: Feature names left out when ``layers=None``: inputs (spectrograms) and final outputs,
#: which are not intermediate activations.
NON_FEATURE_LAYERS = frozenset({"spectrogram", "log_mel", "embedding", "pooled", "waveform"})


# -- shared machinery -------------------------------------------------------------------------
class _PerceptualLoss(nn.Module):
    """Model resolution, freezing, input checks and resampling shared by both losses."""

    def __init__(
        self,
        model: str | Embedder,
        *,
        sample_rate: int,
        reduction: str,
        owner: str,
        model_options: dict[str, Any],
    ) -> None:
        super().__init__()
        self._owner = owner
        if (
            isinstance(sample_rate, bool)
            or not isinstance(sample_rate, numbers.Integral)
            or sample_rate <= 0
        ):
            raise ParameterError(
                f"{owner}: sample_rate must be a positive integer in Hz, got {sample_rate!r}"
            )
        if reduction not in REDUCTIONS:
            raise ParameterError(
                f"{owner}: reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}"
            )
        if isinstance(model, Embedder):
            if model_options:
                raise ParameterError(
                    f"{owner}: model options {sorted(model_options)} can only be given with a "
                    f"model name, not with an Embedder instance ({model.name})"
                )
            embedder = model
        elif isinstance(model, str):
            embedder = get_embedder(model, **model_options)
        else:
            raise ParameterError(
                f"{owner}: model must be a model name (str) or an Embedder, got {type(model).__name__}"
            )
        embedder.load()
        self.embedder = embedder
        self.sample_rate = int(sample_rate)
        self.reduction = reduction
        self.resampler = Resampler(self.sample_rate, embedder.sample_rate)
        #: Reuse the reference's features while the same reference comes back (see
        #: :meth:`_reference_state`); False recomputes them on every call.
        self.cache_reference = True
        self._cached: tuple[torch.Tensor, Any] | None = None
        for module in self._model_modules():
            module.eval()
            module.requires_grad_(False)
        device = getattr(embedder, "device", None)
        if device is not None:
            self.resampler.to(device)

    # Model weights are deliberately not registered as submodules: they are not the loss's
    # parameters (no optimiser should see them, no checkpoint should carry them), but they
    # must follow .to(device) / .cuda() / .cpu(), which all go through _apply.
    def _model_modules(self) -> Iterator[nn.Module]:
        seen: set[int] = set()
        if isinstance(self.embedder, nn.Module):
            seen.add(id(self.embedder))
            yield self.embedder
        for value in vars(self.embedder).values():
            if isinstance(value, nn.Module) and id(value) not in seen:
                seen.add(id(value))
                yield value

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        super()._apply(fn, recurse)
        self._cached = None
        for module in self._model_modules():
            module._apply(fn)
        new_device = self.resampler.kernel.device
        if (
            getattr(self.embedder, "device", None) is not None
            and self.embedder.device != new_device
        ):
            logger.debug("%s: moving %s to %s", self._owner, self.embedder.name, new_device)
            self.embedder.device = new_device
        return self

    def train(self, mode: bool = True) -> _PerceptualLoss:
        """The model always stays in eval mode (BatchNorm statistics and dropout frozen)."""
        super().train(mode)
        for module in self._model_modules():
            module.eval()
        return self

    def _prepare(
        self, estimate: torch.Tensor, reference: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Check shapes, make (B, n); resample the estimate to the model rate (the reference
        is resampled by :meth:`_reference_state`)."""
        for label, x in (("estimate", estimate), ("reference", reference)):
            if not torch.is_tensor(x):
                raise ParameterError(
                    f"{self._owner}: {label} must be a torch.Tensor, got {type(x).__name__}"
                )
            if not x.is_floating_point():
                raise ParameterError(
                    f"{self._owner}: {label} must be a floating-point tensor, got {x.dtype}"
                )
            if x.ndim not in (1, 2) or x.shape[-1] == 0:
                raise ParameterError(
                    f"{self._owner}: {label} must have shape (n,) or (B, n) with n > 0, "
                    f"got {tuple(x.shape)}"
                )
        if estimate.shape != reference.shape:
            raise ParameterError(
                f"{self._owner}: estimate and reference must have the same shape, got "
                f"{tuple(estimate.shape)} and {tuple(reference.shape)}"
            )
        single = estimate.ndim == 1
        if single:
            estimate, reference = estimate[None], reference[None]
        return self.resampler(estimate), reference, single

    def _reference_state(self, reference: torch.Tensor, compute) -> Any:
        """``compute(resampled reference)``, cached while the same reference comes back.

        An optimiser calls the loss with one fixed reference at every step; its features do
        not depend on the estimate, so they are computed once, without autograd, and reused
        while the next reference equals the cached one exactly (``torch.equal``: same shape,
        dtype, device and values; an O(n) comparison, negligible beside the model). A
        reference that requires a gradient is never cached (its gradient is wanted).
        """
        if reference.requires_grad:
            return compute(self.resampler(reference))
        if not self.cache_reference:
            with torch.no_grad():
                return compute(self.resampler(reference))
        hit = self._cached
        if (
            hit is not None
            and hit[0].shape == reference.shape
            and hit[0].dtype == reference.dtype
            and hit[0].device == reference.device
            and torch.equal(hit[0], reference)
        ):
            return hit[1]
        with torch.no_grad():
            state = compute(self.resampler(reference))
        self._cached = (reference.detach().clone(), state)
        return state

    def _reduce(self, per_item: torch.Tensor, single: bool) -> torch.Tensor:
        if self.reduction == "mean":
            return per_item.mean()
        if self.reduction == "sum":
            return per_item.sum()
        return per_item[0] if single else per_item

    def extra_repr(self) -> str:
        return (
            f"model={self.embedder.name}, sample_rate={self.sample_rate}, "
            f"model_rate={self.embedder.sample_rate}, reduction={self.reduction}"
        )


def _unit(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x`` divided by its L2 norm along ``dim`` (zero vectors stay zero)."""
    return x / x.norm(dim=dim, keepdim=True).clamp_min(NORM_EPS)


# -- embedding distance ---------------------------------------------------------------------------
class EmbeddingLoss(_PerceptualLoss):
    """Distance between the frame embeddings of two waveforms, differentiable.

    Parameters
    ----------
    model : str or Embedder
        ``"openl3"``, ``"vggish"``, ``"cdpam"`` (built with :func:`get_embedder` from
        ``model_options``), or an :class:`Embedder` instance. Its weights are loaded here
        (:class:`WeightsUnavailableError` when they cannot be) and frozen.
    sample_rate : int
        Rate in Hz of the waveforms given to :meth:`forward`; they are resampled to the
        model's rate in torch.
    distance : {"cosine", "l1", "l2"}
        Per frame ``t``, with ``e`` the estimate's and ``r`` the reference's embedding:
        ``cosine`` = ``1 - <e, r> / (|e| |r|)`` (computed as ``|e/|e| - r/|r||^2 / 2``, which
        is exactly 0 for identical inputs), ``l1`` = ``mean_d |e - r|``,
        ``l2`` = ``mean_d (e - r)^2``; then the mean over frames.
    reduction : {"mean", "sum", "none"}
        Over the batch; ``"none"`` gives shape (B,) (or () for 1-D inputs).
    **model_options
        Passed to :func:`get_embedder` (e.g. ``device="cuda"``, ``weights_dir=...``,
        ``input_repr="mel128"`` for OpenL3).

    Notes
    -----
    Both waveforms go through the same model, so frames are aligned by construction. When the
    reference does not require a gradient it is embedded under ``torch.no_grad()``, once: its
    embeddings are reused while the same reference comes back (an optimiser's fixed target;
    ``cache_reference = False`` turns this off).
    """

    def __init__(
        self,
        model: str | Embedder,
        *,
        sample_rate: int,
        distance: str = "cosine",
        reduction: str = "mean",
        **model_options: Any,
    ) -> None:
        if distance not in DISTANCES:
            raise ParameterError(
                f"EmbeddingLoss: distance must be one of {', '.join(DISTANCES)}, got {distance!r}"
            )
        super().__init__(
            model,
            sample_rate=sample_rate,
            reduction=reduction,
            owner="EmbeddingLoss",
            model_options=model_options,
        )
        self.distance = distance

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, distance={self.distance}"

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """The loss of ``estimate`` against ``reference``.

        Parameters
        ----------
        estimate, reference : torch.Tensor [shape=(n,) or (B, n)]
            Waveforms at :attr:`sample_rate`, float, nominally in [-1, 1], same shape.

        Returns
        -------
        torch.Tensor
            Shape () for ``reduction="mean"``/``"sum"``; (B,) (or () for 1-D inputs) for
            ``"none"``. Dimensionless.
        """
        est, ref, single = self._prepare(estimate, reference)
        e = self.embedder.forward(est)
        r = self._reference_state(ref, self.embedder.forward)
        if e.shape != r.shape or e.ndim != 3:
            raise ParameterError(
                f"EmbeddingLoss: {self.embedder.name}.forward gave embeddings of shapes "
                f"{tuple(e.shape)} and {tuple(r.shape)}; expected two equal (B, T, D) shapes"
            )
        r = r.to(e.dtype)
        if self.distance == "cosine":
            per_frame = 0.5 * (_unit(e, -1) - _unit(r, -1)).pow(2).sum(-1)
        elif self.distance == "l1":
            per_frame = (e - r).abs().mean(-1)
        else:
            per_frame = (e - r).pow(2).mean(-1)
        return self._reduce(per_frame.mean(-1), single)


# -- deep features (LPIPS-style) ---------------------------------------------------------------------
class DeepFeatureLoss(_PerceptualLoss):
    """LPIPS-style distance between intermediate activations of a frozen audio network.

    For each layer ``l`` with activations ``a`` (estimate) and ``b`` (reference), channel
    vectors are unit-normalised, ``d_l = mean_over_time_space( sum_c (a_hat - b_hat)^2 )``,
    a value in [0, 4]; the loss is ``sum_l w_l d_l``.

    Parameters
    ----------
    model : str or Embedder
        As for :class:`EmbeddingLoss`; the model must implement ``features``.
    sample_rate : int
        Rate in Hz of the input waveforms.
    layers : sequence of str or None
        Names from ``model.features`` (OpenL3: ``block1``-``block4``; VGGish: ``conv1``-``conv4``,
        ``fc1``, ``fc2``; CDPAM: ``layer00``-``layer15``). None: every returned activation except
        those in :data:`NON_FEATURE_LAYERS` (inputs and final outputs).
    layer_weights : sequence of float, mapping name -> float, or None
        Weight per layer, non-negative; None gives ``1 / len(layers)`` each (so the loss is
        the mean of the per-layer distances).
    reduction : {"mean", "sum", "none"}
        Over the batch.
    **model_options
        Passed to :func:`get_embedder`.

    Notes
    -----
    The channel axis is 2 for OpenL3/VGGish features (B, T, C, ...) and 1 for CDPAM's (B, C, n)
    (each model's ``feature_channel_axis``; 2-D tensors (B, C) always use axis 1).
    LPIPS learns a weight per channel on human judgements; here channels weigh equally.
    A reference that needs no gradient has its unit-normalised activations computed once
    under ``torch.no_grad()`` and reused while the same reference comes back
    (``cache_reference = False`` turns this off).
    """

    def __init__(
        self,
        model: str | Embedder,
        *,
        sample_rate: int,
        layers: Sequence[str] | None = None,
        layer_weights: Sequence[float] | Mapping[str, float] | None = None,
        reduction: str = "mean",
        **model_options: Any,
    ) -> None:
        super().__init__(
            model,
            sample_rate=sample_rate,
            reduction=reduction,
            owner="DeepFeatureLoss",
            model_options=model_options,
        )
        self.channel_axis = int(self.embedder.feature_channel_axis)
        if layers is not None:
            if isinstance(layers, str) or len(layers) == 0:
                raise ParameterError(
                    f"DeepFeatureLoss: layers must be a non-empty sequence of names, got {layers!r}"
                )
            layers = list(layers)
        self.layers: list[str] | None = layers
        self._weights_arg = layer_weights
        self.layer_weights: dict[str, float] | None = None
        if layers is not None:
            self.layer_weights = self._resolve_weights(layers)

    def _resolve_weights(self, layers: list[str]) -> dict[str, float]:
        w = self._weights_arg
        if w is None:
            return {name: 1.0 / len(layers) for name in layers}
        if isinstance(w, Mapping):
            missing = [name for name in layers if name not in w]
            extra = [name for name in w if name not in layers]
            if missing or extra:
                raise ParameterError(
                    f"DeepFeatureLoss: layer_weights keys must be the layers {layers}; "
                    f"missing {missing}, unknown {extra}"
                )
            values = {name: float(w[name]) for name in layers}
        else:
            w = list(w)
            if len(w) != len(layers):
                raise ParameterError(
                    f"DeepFeatureLoss: layer_weights must have one weight per layer "
                    f"({len(layers)}: {layers}), got {len(w)}"
                )
            values = {name: float(v) for name, v in zip(layers, w, strict=True)}
        bad = {k: v for k, v in values.items() if not v >= 0}
        if bad:
            raise ParameterError(f"DeepFeatureLoss: layer_weights must be >= 0, got {bad}")
        return values

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.embedder.features(x)
        if self.layers is None:
            chosen = [name for name in feats if name not in NON_FEATURE_LAYERS]
            if not chosen:
                raise ParameterError(
                    f"DeepFeatureLoss: {self.embedder.name}.features returned no intermediate "
                    f"activations (got {sorted(feats)}); pass layers=[...]"
                )
            self.layers = chosen
            self.layer_weights = self._resolve_weights(chosen)
            logger.debug("DeepFeatureLoss(%s): layers %s", self.embedder.name, chosen)
        unknown = [name for name in self.layers if name not in feats]
        if unknown:
            raise ParameterError(
                f"DeepFeatureLoss: unknown layers {unknown} for {self.embedder.name}; "
                f"features available: {sorted(feats)}"
            )
        return {name: feats[name] for name in self.layers}

    def _axis(self, a: torch.Tensor, name: str) -> int:
        """The channel axis of a layer's activation ``a``."""
        axis = 1 if a.ndim == 2 else self.channel_axis
        if not 0 < axis < a.ndim:
            raise ParameterError(
                f"DeepFeatureLoss: channel axis {axis} does not fit layer {name!r} of shape "
                f"{tuple(a.shape)}"
            )
        return axis

    def _layer_distance(self, a: torch.Tensor, b: torch.Tensor, name: str) -> torch.Tensor:
        """``b`` is the reference's activation, already unit-normalised."""
        if a.shape != b.shape:
            raise ParameterError(
                f"DeepFeatureLoss: layer {name!r} gave shapes {tuple(a.shape)} and {tuple(b.shape)}"
            )
        axis = self._axis(a, name)
        sq = (_unit(a, axis) - b.to(a.dtype)).pow(2).sum(axis)  # (B, ...)
        return sq.reshape(sq.shape[0], -1).mean(-1)

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """The loss of ``estimate`` against ``reference``.

        Parameters
        ----------
        estimate, reference : torch.Tensor [shape=(n,) or (B, n)]
            Waveforms at :attr:`sample_rate`, same shape.

        Returns
        -------
        torch.Tensor
            Shape () for ``"mean"``/``"sum"``; (B,) (or ()) for ``"none"``.
        """
        est, ref, single = self._prepare(estimate, reference)
        fa = self._features(est)
        fb = self._reference_state(ref, self._unit_features)
        assert self.layer_weights is not None  # set by _features
        total = None
        for name, weight in self.layer_weights.items():
            d = weight * self._layer_distance(fa[name], fb[name], name)
            total = d if total is None else total + d
        return self._reduce(total, single)

    def _unit_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The chosen layers' activations, unit-normalised along the channel axis."""
        return {name: _unit(a, self._axis(a, name)) for name, a in self._features(x).items()}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, layers={self.layers}"
