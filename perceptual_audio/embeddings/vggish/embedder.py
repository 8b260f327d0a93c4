"""The registered VGGish embedder (stage 2, stage 3's extras, the perceptual loss)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perceptual_audio.embeddings import weights
from perceptual_audio.embeddings.base import Embedder, ModelOption, full_fp32_on_cuda, register
from perceptual_audio.embeddings.vggish import checkpoint
from perceptual_audio.embeddings.vggish.checkpoint import (
    MODEL_CONVERSION_TAG,
    PCA_SHAPES,
    TORCHVGGISH_MODEL_SHAPES,
    check_tensors,
    convert_torchvggish_model,
    load_pca,
)
from perceptual_audio.embeddings.vggish.frontend import (
    EMBEDDING_SIZE,
    NUM_MEL_BANDS,
    PATCH_FRAMES,
    PATCH_HOP_SAMPLES,
    PATCH_HOP_SECONDS,
    PATCH_SAMPLES,
    PATCH_SECONDS,
    RESAMPLERS,
    SAMPLE_RATE,
    LogMelFrontend,
    is_short,
    n_patches,
)
from perceptual_audio.embeddings.vggish.network import (
    VGGishNetwork,
    pca_quantize,
)
from perceptual_audio.errors import (
    ParameterError,
    WeightsUnavailableError,
)

logger = logging.getLogger(__name__)


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
                    checkpoint.MODEL_WEIGHTS,  # looked up here: a test may swap the record
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
                loaded = load_pca(self.weights_dir)
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
        state_dict = check_tensors("VGGish state dict", state_dict, TORCHVGGISH_MODEL_SHAPES)
        with torch.device("meta"):
            network = VGGishNetwork()
        network.load_state_dict(state_dict, strict=True, assign=True)
        self.network = network.to(self.device).eval()
        for p in self.network.parameters():
            p.requires_grad_(False)

    def _set_pca(self, state_dict: dict[str, torch.Tensor]) -> None:
        pca = check_tensors("VGGish PCA parameters", state_dict, PCA_SHAPES, dtype=torch.float64)
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
            import resampy  # deferred: numba-compiled, slow to import

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
