"""The registered CDPAM embedder: frame and clip embeddings, the learned distance, features."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from perceptual_audio.embeddings.base import Embedder, ExtraMetric, register
from perceptual_audio.embeddings.cdpam.checkpoint import (
    ACOUSTIC_DIM,
    BLOCKS_PER_DECIMATION,
    CDPAM_PACKAGE,
    CHUNK_MARGIN_SAMPLES,
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_HOP_SECONDS,
    DEFAULT_WINDOW_SECONDS,
    DISTANCE_METRIC,
    DOWNSAMPLING,
    ENCODER_DIM,
    ENCODERS,
    FRAMINGS,
    INT16_SCALE,
    LEAKY_SLOPE,
    PARTS,
    RESAMPLERS,
    SAMPLE_RATE,
    VARIANT,
    WEIGHTS_RELATIVE_PATH,
    WEIGHTS_SHA256,
    load_model,
)
from perceptual_audio.embeddings.cdpam.distance import LearnedDistance, as_clip
from perceptual_audio.embeddings.cdpam.encoder import FastEncoder
from perceptual_audio.embeddings.cdpam.preprocess import (
    resample_like_cdpam,
    round_to_int16_grid,
)
from perceptual_audio.errors import (
    MetricError,
    ParameterError,
)

logger = logging.getLogger(__name__)


def _window_sums(core: torch.Tensor, bounds: torch.Tensor) -> torch.Tensor:
    """Sums of ``core`` (B, C, P) over positions [lo, hi) per row of ``bounds`` (T, 2), in
    float64: (B, T, C). Empty windows (lo == hi) sum to 0."""
    csum = F.pad(torch.cumsum(core.to(torch.float64), dim=2), (1, 0))  # (B, C, P + 1)
    return (csum[:, :, bounds[:, 1]] - csum[:, :, bounds[:, 0]]).transpose(1, 2)


# -- the embedder ------------------------------------------------------------------------------
@register
class CDPAMEmbedder(LearnedDistance, Embedder):
    """CDPAM encoder embeddings and CDPAM's learned distance.

    Parameters
    ----------
    device : str or torch.device
        Where the model runs (default CPU).
    window_seconds : float
        Frame window length in seconds (default 1.0).
    hop_seconds : float
        Frame hop in seconds, ``0 < hop_seconds <= window_seconds`` (default 0.5).
    framing : {"pooled", "windows"}
        ``"pooled"``: one encoder pass over the clip, its feature map averaged over each
        window (default). ``"windows"``: each window encoded alone, the last zero-padded.
    part : {"acoustic", "content", "full"}
        Which half of the encoder output the frames hold: the acoustic half (512-D, what the
        CDPAM distance uses; default), the content half (512-D) or both (1024-D).
    resampler : {"resampy", "soxr"}
        Resampler of the NumPy path (:func:`resample_like_cdpam`); resampy is CDPAM's parity.
    round_to_int16 : bool
        Whether the NumPy path rounds audio to the int16 grid as ``cdpam.load_audio`` does
        (default True). :meth:`forward` never rounds (it must stay differentiable).
    encoder : {"fast", "direct", "reference"}
        How the encoder is evaluated (:data:`ENCODERS`); all give the same function to float32
        rounding. ``"fast"`` (default) is about 2x faster on the CPU than ``"reference"``
        (``cdpam.models.base_encoder``'s loop); on CUDA ``"fast"`` uses direct convolutions.
    chunk_seconds : float or None
        Longest stretch encoded at once; longer clips are encoded in chunks with
        :data:`CHUNK_MARGIN_SAMPLES` of context per side, which gives the whole-clip result
        (to float rounding) in bounded memory. None encodes every clip whole.
    weights_path : path-like or None
        The checkpoint; None looks in ``weights_dir``, then in the installed ``cdpam`` package.
    weights_dir : path-like or None
        The stage's ``--weights-dir``: ``DIR/scratchJNDdefault_best_model.pth`` or
        ``DIR/cdpam/scratchJNDdefault_best_model.pth`` is used when present (same sha256 check).
    """

    name: ClassVar[str] = "cdpam"
    sample_rate: ClassVar[int] = SAMPLE_RATE
    display_name = "CDPAM"
    column_order = 30
    feature_channel_axis = 1  # (B, C, n) for the whole clip
    packages = ("cdpam",)
    metric_package = "cdpam"
    extra_metrics = (
        ExtraMetric(
            DISTANCE_METRIC, "CDPAM distance (learned)", "CDPAM units", False,
            "CDPAM's learned distance (Manocha et al. 2021)", extras=("clip",),
        ),
    )  # fmt: skip

    def __init__(
        self,
        *,
        device: str | torch.device = "cpu",
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        hop_seconds: float = DEFAULT_HOP_SECONDS,
        framing: str = "pooled",
        part: str = "acoustic",
        resampler: str = "resampy",
        round_to_int16: bool = True,
        chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS,
        encoder: str = "fast",
        weights_path: str | os.PathLike | None = None,
        weights_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(device=device)
        if encoder not in ENCODERS:
            raise ParameterError(f"cdpam: encoder must be one of {ENCODERS}, got {encoder!r}")
        if framing not in FRAMINGS:
            raise ParameterError(f"cdpam: framing must be one of {FRAMINGS}, got {framing!r}")
        if part not in PARTS:
            raise ParameterError(f"cdpam: part must be one of {PARTS}, got {part!r}")
        if resampler not in RESAMPLERS:
            raise ParameterError(f"cdpam: resampler must be one of {RESAMPLERS}, got {resampler!r}")
        self.window_samples = int(round(window_seconds * SAMPLE_RATE))
        self.hop_samples = int(round(hop_seconds * SAMPLE_RATE))
        if self.window_samples < DOWNSAMPLING:
            raise ParameterError(
                f"cdpam: window_seconds must be at least {DOWNSAMPLING / SAMPLE_RATE:.6f} s "
                f"({DOWNSAMPLING} samples at {SAMPLE_RATE} Hz), got {window_seconds}"
            )
        if not 0 < self.hop_samples <= self.window_samples:
            raise ParameterError(
                f"cdpam: hop_seconds must be > 0 and <= window_seconds={window_seconds}, "
                f"got {hop_seconds}"
            )
        if chunk_seconds is not None:
            if not chunk_seconds > 0:
                raise ParameterError(
                    f"cdpam: chunk_seconds must be positive or None, got {chunk_seconds}"
                )
            chunk = int(round(chunk_seconds * SAMPLE_RATE))
            # Chunk starts must be multiples of DOWNSAMPLING so decimation stays in phase.
            self.chunk_samples: int | None = max(DOWNSAMPLING, chunk - chunk % DOWNSAMPLING)
        else:
            self.chunk_samples = None
        self.window_seconds = self.window_samples / SAMPLE_RATE
        self.hop_seconds = self.hop_samples / SAMPLE_RATE
        self.framing = framing
        self.part = part
        self.resampler = resampler
        self.round_to_int16 = bool(round_to_int16)
        self.chunk_seconds = chunk_seconds
        self.encoder = encoder
        # (channel slice start, stop, strided) -> FastEncoder, built on first use.
        self._fast_encoders: dict[tuple[int, int, bool], Any] = {}
        if weights_path is None and weights_dir is not None:
            name = Path(WEIGHTS_RELATIVE_PATH).name
            for candidate in (Path(weights_dir) / name, Path(weights_dir) / self.name / name):
                if candidate.is_file():
                    weights_path = candidate
                    break
        self.weights_path = Path(weights_path) if weights_path is not None else None
        self._model: torch.nn.Module | None = None
        self._weights_sha256: str | None = None

    # -- loading ---------------------------------------------------------------------------------
    def load(self) -> None:
        """Verify and load the trained model (idempotent; cached per process).

        Raises
        ------
        WeightsUnavailableError
            If the ``cdpam`` package or the checkpoint is missing.
        WeightsVerificationError
            If the checkpoint's sha256 or structure is wrong.
        """
        if self._model is None:
            self._model, self._weights_sha256 = load_model(self.weights_path, device=self.device)

    @property
    def model(self) -> torch.nn.Module:
        """The loaded ``FINnet`` (loads on first use)."""
        self.load()
        assert self._model is not None
        return self._model

    @property
    def embedding_dim(self) -> int:
        """Size D of a frame embedding (512 for one half, 1024 for ``part="full"``)."""
        return ENCODER_DIM if self.part == "full" else ACOUSTIC_DIM

    def info(self) -> dict[str, Any]:
        """Variant, framing, window/hop, embedding size, weights sha256, package version."""
        try:
            package_version = importlib.metadata.version(CDPAM_PACKAGE)
        except importlib.metadata.PackageNotFoundError:
            package_version = None
        return {
            "model": self.name,
            "variant": VARIANT,
            "part": self.part,
            "framing": self.framing,
            "window_seconds": self.window_seconds,
            "hop_seconds": self.hop_seconds,
            "window_samples": self.window_samples,
            "hop_samples": self.hop_samples,
            "embedding_dim": self.embedding_dim,
            "clip_embedding_dim": ACOUSTIC_DIM,
            "sample_rate": SAMPLE_RATE,
            "input_scale": INT16_SCALE,
            "round_to_int16": self.round_to_int16,
            "resampler": self.resampler,
            "chunk_seconds": self.chunk_seconds,
            "encoder": self.encoder,
            "weights_file": WEIGHTS_RELATIVE_PATH
            if self.weights_path is None
            else str(self.weights_path),
            "weights_sha256": self._weights_sha256 or WEIGHTS_SHA256,
            "package": CDPAM_PACKAGE,
            "package_version": package_version,
            # On CUDA, cuDNN's TF32 convolutions (PyTorch's default) are 4.5x faster on an
            # H100 but move embeddings by ~4e-4 relative (distances by ~1e-4); fp32 matches
            # the CPU to ~1e-6. Recorded because it changes the numbers.
            "cuda_allow_tf32": bool(torch.backends.cudnn.allow_tf32)
            if self.device.type == "cuda"
            else None,
        }

    # -- frame layout ----------------------------------------------------------------------------
    def n_frames(self, n_samples: int) -> int:
        """Number of windows for ``n_samples`` at 22.05 kHz: starts 0, hop, ... until a window
        reaches the end (at least one)."""
        if n_samples <= self.window_samples:
            return 1
        return 1 + math.ceil((n_samples - self.window_samples) / self.hop_samples)

    def timestamps(self, n_samples: int) -> np.ndarray:
        """Window start times in seconds, shape (T,)."""
        return np.arange(self.n_frames(n_samples), dtype=np.float64) * (
            self.hop_samples / SAMPLE_RATE
        )

    # -- torch path (differentiable) ---------------------------------------------------------------
    def _check_batch(self, waveform: torch.Tensor, what: str) -> torch.Tensor:
        if not isinstance(waveform, torch.Tensor):
            raise ParameterError(
                f"cdpam.{what}: expected a torch.Tensor, got {type(waveform).__name__}"
            )
        if waveform.ndim != 2 or waveform.shape[-1] == 0:
            raise ParameterError(
                f"cdpam.{what}: waveform must have shape (B, n) with n > 0, got {tuple(waveform.shape)}"
            )
        return waveform.to(device=self.device, dtype=torch.float32)

    def _encoder_blocks(
        self, x: torch.Tensor, *, keep: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The encoder loop of ``cdpam.models.base_encoder.forward``, optionally keeping every
        block's activation (after LeakyReLU, before decimation).

        x : (B, n) int16-scaled audio -> feature map (B, 1024, ceil(n / 16)).
        """
        enc = self.model.base_encoder
        h = x[:, None, :]
        acts: dict[str, torch.Tensor] = {}
        for i in range(enc.num_layers):
            h = F.leaky_relu(enc.ebatch[i](enc.encoder[i](h)), LEAKY_SLOPE)
            if keep:
                acts[f"layer{i:02d}"] = h
            if (i + 1) % BLOCKS_PER_DECIMATION == 0:
                h = h[:, :, ::2]
        return h, acts

    def _select(self, pooled: torch.Tensor) -> torch.Tensor:
        """The configured half of a (..., 1024) pooled output (or of a (..., 512) acoustic one,
        which is already the acoustic half)."""
        if pooled.shape[-1] == ACOUSTIC_DIM:
            if self.part != "acoustic":
                raise AssertionError("an acoustic-only pass cannot give the content half")
            return pooled
        if self.part == "acoustic":
            return pooled[..., :ACOUSTIC_DIM]
        if self.part == "content":
            return pooled[..., ACOUSTIC_DIM:]
        return pooled

    def _fast_encoder(self, channels: tuple[int, int], *, strided: bool = True) -> FastEncoder:
        """The :class:`FastEncoder` of the last block's ``channels`` (built on first use)."""
        key = (*channels, strided)
        fast = self._fast_encoders.get(key)
        if fast is None:
            algorithm = "fft" if self.encoder == "fast" and self.device.type == "cpu" else "direct"
            fast = FastEncoder(
                self.model.base_encoder,
                out_channels=slice(*channels),
                algorithm=algorithm,
                strided=strided,
            )
            self._fast_encoders[key] = fast
        return fast

    def _encode(self, x: torch.Tensor, *, acoustic_only: bool) -> torch.Tensor:
        """Encoder feature map (B, C, ceil(n / 16)) of (B, n) int16-scaled audio.

        C is 512 (the acoustic half) when ``acoustic_only`` and the encoder is not the
        reference loop, else 1024.
        """
        if self.encoder == "reference":
            h, _ = self._encoder_blocks(x)
            return h
        channels = (0, ACOUSTIC_DIM) if acoustic_only else (0, ENCODER_DIM)
        return self._fast_encoder(channels)(x)

    def _frame_position_bounds(self, n_samples: int) -> torch.Tensor:
        """Per frame, the feature-map positions [lo, hi) whose sample 16 j is in the window:
        an int64 tensor (T, 2)."""
        n_positions = -(-n_samples // DOWNSAMPLING)
        starts = torch.arange(self.n_frames(n_samples), dtype=torch.int64) * self.hop_samples
        lo = -torch.div(-starts, DOWNSAMPLING, rounding_mode="floor")
        hi = -torch.div(-(starts + self.window_samples), DOWNSAMPLING, rounding_mode="floor")
        return torch.stack([lo, hi.clamp_max(n_positions)], dim=1)

    def _pooled_pass(
        self, x: torch.Tensor, *, frames: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """One (chunked) encoder pass: window means and the clip mean of the feature map.

        x : (B, n) int16-scaled audio. Returns frames (B, T, C) or None, clip (B, C), with
        C = 512 (acoustic half only) when nothing else is needed, else 1024.

        Window sums come from a float64 running sum of each chunk's feature map, read at
        every window's bounds at once (no loop over frames; differences of float64 sums
        rounded once to float32, so no less accurate than summing each window).
        """
        acoustic_only = not frames or self.part == "acoustic"
        n = x.shape[-1]
        n_positions = -(-n // DOWNSAMPLING)
        chunk = self.chunk_samples
        if chunk is None or n <= chunk + 2 * CHUNK_MARGIN_SAMPLES:
            spans = [(0, n)]
        else:
            spans = [(c0, min(n, c0 + chunk)) for c0 in range(0, n, chunk)]
        bounds = self._frame_position_bounds(n).to(x.device) if frames else None
        window_sums: torch.Tensor | None = None
        total: torch.Tensor | None = None
        for c0, c1 in spans:
            a = max(0, c0 - CHUNK_MARGIN_SAMPLES)
            b = min(n, c1 + CHUNK_MARGIN_SAMPLES)
            h = self._encode(x[:, a:b], acoustic_only=acoustic_only)
            j0, j1 = c0 // DOWNSAMPLING, -(-c1 // DOWNSAMPLING)
            off = (c0 - a) // DOWNSAMPLING
            core = h[:, :, off : off + (j1 - j0)]
            s = torch.sum(core, dim=2)
            total = s if total is None else total + s
            if bounds is not None:
                part = _window_sums(core, bounds.clamp(j0, j1) - j0)
                window_sums = part if window_sums is None else window_sums + part
        assert total is not None
        # cdpam: torch.sum(x, dim=2) / x.shape[2]
        clip = total / n_positions
        if bounds is None:
            return None, clip
        assert window_sums is not None
        counts = (bounds[:, 1] - bounds[:, 0]).to(torch.float64)
        out = (window_sums / counts[:, None]).to(core.dtype)  # (B, T, C)
        return out, clip

    def _windowed_pass(self, x: torch.Tensor) -> torch.Tensor:
        """Each window encoded alone (last zero-padded), mean-pooled: (B, T, 1024)."""
        batch, n = x.shape
        n_frames = self.n_frames(n)
        padded_len = (n_frames - 1) * self.hop_samples + self.window_samples
        xp = F.pad(x, (0, padded_len - n))
        windows = xp.unfold(-1, self.window_samples, self.hop_samples)  # (B, T, win)
        flat = windows.reshape(batch * n_frames, self.window_samples)
        per_batch = max(
            1, (self.chunk_samples or flat.shape[0] * self.window_samples) // self.window_samples
        )
        pooled = []
        acoustic_only = self.part == "acoustic"
        for k in range(0, flat.shape[0], per_batch):
            h = self._encode(flat[k : k + per_batch], acoustic_only=acoustic_only)
            pooled.append(torch.sum(h, dim=2) / h.shape[2])
        return torch.cat(pooled, dim=0).reshape(batch, n_frames, pooled[0].shape[1])

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Frame embeddings, differentiably.

        Parameters
        ----------
        waveform : torch.Tensor [shape=(B, n)]
            Mono audio at 22.05 kHz in [-1, 1] (scaled by 32768 here, not rounded).

        Returns
        -------
        torch.Tensor [shape=(B, T, D)]
            ``T = n_frames(n)`` windows (see :meth:`timestamps`), ``D = embedding_dim``.
        """
        x = self._check_batch(waveform, "forward") * INT16_SCALE
        if self.framing == "pooled":
            frames, _ = self._pooled_pass(x)
            assert frames is not None
        else:
            frames = self._windowed_pass(x)
        return self._select(frames)

    def forward_with_clip(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame embeddings and the clip embedding, from one encoder pass when pooled.

        Returns
        -------
        frames : torch.Tensor [shape=(B, T, D)]
        clip : torch.Tensor [shape=(B, 512)]
            L2-normalised clip-level acoustic embedding: the vector ``cdpam.CDPAM.forward``
            feeds to its distance network.
        """
        x = self._check_batch(waveform, "forward") * INT16_SCALE
        if self.framing == "pooled":
            frames, clip = self._pooled_pass(x)
            assert frames is not None
        else:
            frames = self._windowed_pass(x)
            _, clip = self._pooled_pass(x, frames=False)
        return self._select(frames), F.normalize(clip[:, :ACOUSTIC_DIM], dim=1)

    def clip_embedding(self, waveform: torch.Tensor) -> torch.Tensor:
        """L2-normalised clip-level acoustic embedding (B, 512) of (B, n) audio in [-1, 1]."""
        x = self._check_batch(waveform, "clip_embedding") * INT16_SCALE
        _, clip = self._pooled_pass(x, frames=False)
        return F.normalize(clip[:, :ACOUSTIC_DIM], dim=1)

    def features(
        self, waveform: torch.Tensor, *, layers: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Intermediate encoder activations for the deep-feature loss.

        Parameters
        ----------
        waveform : torch.Tensor [shape=(B, n)]
            Audio at 22.05 kHz in [-1, 1].
        layers : sequence of str or None
            Names to return (default all): ``"layer00"`` ... ``"layer15"``, the output of each
            Conv-BatchNorm-LeakyReLU block before decimation, shape (B, C, n_i) with C = 64,
            64, 64, 128, ..., 1024 and n_i = ceil(n / 2**(i // 4)); ``"pooled"``, the (B, 1024)
            clip mean. Whole-clip pass (no chunking): keep clips short.

        The encoder is the package's loop when ``encoder="reference"``, else
        :meth:`FastEncoder.activations` (unstrided: every block's whole output; folded
        BatchNorm, FFT convolutions on the CPU), the same activations to float32 rounding.
        """
        x = self._check_batch(waveform, "features") * INT16_SCALE
        if self.encoder == "reference":
            h, acts = self._encoder_blocks(x, keep=True)
        else:
            h, acts = self._fast_encoder((0, ENCODER_DIM), strided=False).activations(x)
        acts["pooled"] = torch.sum(h, dim=2) / h.shape[2]
        if layers is None:
            return acts
        unknown = [name for name in layers if name not in acts]
        if unknown:
            raise ParameterError(
                f"cdpam.features: unknown layer names {unknown}; expected some of {sorted(acts)}"
            )
        return {name: acts[name] for name in layers}

    # -- NumPy path ----------------------------------------------------------------------------------
    def resample_numpy(self, x: np.ndarray, sr: int) -> np.ndarray:
        """Resample to 22.05 kHz with :func:`resample_like_cdpam` (``self.resampler``)."""
        return resample_like_cdpam(x, sr, resampler=self.resampler)

    def preprocess(self, waveform: np.ndarray, sr: int) -> np.ndarray:
        """What ``cdpam.load_audio`` does to audio, in [-1, 1] units.

        Resample to 22.05 kHz (:meth:`resample_numpy`) and, when ``round_to_int16``, round to
        the int16 grid; times 32768 this equals ``cdpam.load_audio``'s output.

        Returns
        -------
        np.ndarray [shape=(m,), dtype=float32]
        """
        x = np.asarray(waveform, dtype=np.float32)
        if x.ndim != 1 or x.size == 0:
            raise ParameterError(
                f"cdpam.preprocess: waveform must be 1-D (n,) with n > 0, got shape {x.shape}"
            )
        x = self.resample_numpy(x, sr)
        return round_to_int16_grid(x) if self.round_to_int16 else x

    def embed(self, waveform: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame embeddings of one mono waveform (NumPy path, no gradients).

        Returns
        -------
        embeddings : np.ndarray [shape=(T, D), dtype=float32]
        timestamps : np.ndarray [shape=(T,)], window starts in seconds
        """
        frames, timestamps, _ = self.embed_with_clip(waveform, sr)
        return frames, timestamps

    def embed_with_extras(
        self, waveform: np.ndarray, sr: int
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """:meth:`embed` plus the arrays to store beside the frames, by name:
        ``{"clip": (512,) float32}`` (save as ``<stem>.clip.npy``, :data:`CLIP_SUFFIX`)."""
        frames, timestamps, clip = self.embed_with_clip(waveform, sr)
        return frames, timestamps, {"clip": clip}

    def extras_from_audio(self, waveform: np.ndarray, sr: int) -> dict[str, np.ndarray]:
        """``{"clip": (512,) float32}`` of one file: the clip embedding only (no frames)."""
        x = self.preprocess(waveform, sr)
        with torch.no_grad():
            clip = self.clip_embedding(torch.from_numpy(x)[None])
        return {"clip": clip[0].float().cpu().numpy()}

    def extra_metric(
        self, name: str, reference: Mapping[str, np.ndarray], degraded: Mapping[str, np.ndarray]
    ) -> float:
        """The CDPAM distance of two files from their clip embeddings (``"clip"``).

        Raises
        ------
        MetricError
            When a clip embedding is not (D,), holds NaN/inf, or the two sizes differ.
        """
        if name != DISTANCE_METRIC:
            return super().extra_metric(name, reference, degraded)
        a = as_clip(reference["clip"], "reference")
        b = as_clip(degraded["clip"], "degraded")
        if a.shape != b.shape:
            raise MetricError(f"CDPAM clip embedding sizes differ: {a.shape} vs {b.shape}")
        with torch.no_grad():
            return float(self.distance_from_embeddings(a, b))

    def embed_with_clip(
        self, waveform: np.ndarray, sr: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame embeddings, timestamps and the clip embedding (for the CDPAM distance).

        Parameters
        ----------
        waveform : np.ndarray [shape=(n,)]
            Mono float audio in [-1, 1] at ``sr`` Hz.
        sr : int
            Its sample rate in Hz.

        Returns
        -------
        embeddings : np.ndarray [shape=(T, D), dtype=float32]
        timestamps : np.ndarray [shape=(T,)], window starts in seconds
        clip : np.ndarray [shape=(512,), dtype=float32]
            Normalised clip-level acoustic embedding; store it as ``<stem>.clip.npy`` and pass
            two of them to :meth:`distance_from_embeddings`.
        """
        x = self.preprocess(waveform, sr)
        with torch.inference_mode():
            frames, clip = self.forward_with_clip(torch.from_numpy(x)[None])
        return (
            frames[0].float().cpu().numpy(),
            self.timestamps(len(x)),
            clip[0].float().cpu().numpy(),
        )
