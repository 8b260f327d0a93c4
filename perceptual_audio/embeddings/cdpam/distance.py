"""CDPAM's learned distance (``cdpam.CDPAM.forward``): the clip embeddings' acoustic halves,
L2-normalised, through the trained ``model_dist`` head; on audio (differentiable, the loss)
or on stored clip embeddings (stage 3). Mixed into the registered embedder.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from perceptual_audio.embeddings.cdpam.checkpoint import ACOUSTIC_DIM, ENCODER_DIM
from perceptual_audio.embeddings.cdpam.preprocess import shape_of
from perceptual_audio.errors import MetricError, ParameterError


def as_clip(e: np.ndarray, name: str) -> np.ndarray:
    """A stored CDPAM clip embedding as a (D,) float32 vector (raises for another shape or
    non-finite values)."""
    e = np.asarray(e)
    if e.ndim == 2 and e.shape[0] == 1:
        e = e[0]
    if e.ndim != 1 or e.size == 0:
        raise MetricError(f"the {name} CDPAM clip embedding must be (D,), got shape {e.shape}")
    if not np.all(np.isfinite(e)):
        raise MetricError(f"the {name} CDPAM clip embedding holds NaN or infinite values")
    return e.astype(np.float32)


class LearnedDistance:
    """The distance methods of :class:`~perceptual_audio.embeddings.cdpam.CDPAMEmbedder`
    (which provides ``model``, ``device`` and ``clip_embedding``)."""

    model: Any
    device: Any

    def clip_embedding(self, waveform: torch.Tensor) -> torch.Tensor:  # the embedder's
        raise NotImplementedError

    def distance(self, reference: torch.Tensor, degraded: torch.Tensor) -> torch.Tensor:
        """CDPAM distance, as ``cdpam.CDPAM.forward``: encoder on the whole clips, acoustic
        halves L2-normalised, ``model_dist``. Differentiable.

        Parameters
        ----------
        reference, degraded : torch.Tensor [shape=(n,) or (B, n)]
            Audio at 22.05 kHz in [-1, 1] (scaled by 32768 here), both 1-D or both with the
            same batch size B; their lengths may differ (each clip is pooled over its own
            length, as in CDPAM).

        Returns
        -------
        torch.Tensor [shape=() or (B,)]
            0 for identical inputs, larger for larger perceived differences.
        """
        if (
            not isinstance(reference, torch.Tensor)
            or not isinstance(degraded, torch.Tensor)
            or reference.ndim != degraded.ndim
            or reference.ndim not in (1, 2)
            or (reference.ndim == 2 and reference.shape[0] != degraded.shape[0])
        ):
            raise ParameterError(
                "cdpam.distance: reference and degraded must be tensors of shape (n,) or (B, n) "
                f"with the same B, got {shape_of(reference)} and {shape_of(degraded)}"
            )
        single = reference.ndim == 1
        if single:
            reference, degraded = reference[None], degraded[None]
        if reference.shape == degraded.shape:
            # One encoder call for both (each encoder call has a fixed cost).
            ref, deg = self.clip_embedding(torch.cat([reference, degraded])).chunk(2)
        else:
            ref = self.clip_embedding(reference)
            deg = self.clip_embedding(degraded)
        dist = self.model.model_dist(ref, deg)
        return dist[0] if single else dist

    def distance_from_embeddings(
        self, e_ref: np.ndarray | torch.Tensor, e_deg: np.ndarray | torch.Tensor
    ) -> torch.Tensor:
        """CDPAM distance from stored embeddings.

        Each row is L2-normalised (as CDPAM normalises a clip embedding; normalising an
        already normalised vector changes nothing) and the pair goes through ``model_dist``.
        With the clip embeddings of :meth:`embed_with_clip` (``<stem>.clip.npy``) this equals
        :meth:`distance` on the audio. With frame embeddings (T, 512) it gives one distance per
        frame (CDPAM applied to each window's pooled embedding), not the clip distance.

        Parameters
        ----------
        e_ref, e_deg : array or tensor [shape=(512,) or (N, 512)]
            Acoustic embeddings; a (…, 1024) full embedding is cut to its acoustic half.

        Returns
        -------
        torch.Tensor [shape=() or (N,)], on the model's device.
        """
        a = torch.as_tensor(np.asarray(e_ref) if not isinstance(e_ref, torch.Tensor) else e_ref)
        b = torch.as_tensor(np.asarray(e_deg) if not isinstance(e_deg, torch.Tensor) else e_deg)
        if (
            a.shape != b.shape
            or a.ndim not in (1, 2)
            or a.shape[-1] not in (ACOUSTIC_DIM, ENCODER_DIM)
        ):
            raise ParameterError(
                "cdpam.distance_from_embeddings: expected two embeddings of the same shape "
                f"(512,) or (N, 512) (or 1024 wide), got {tuple(a.shape)} and {tuple(b.shape)}"
            )
        single = a.ndim == 1
        a = a.reshape(-1, a.shape[-1])[:, :ACOUSTIC_DIM].to(self.device, torch.float32)
        b = b.reshape(-1, b.shape[-1])[:, :ACOUSTIC_DIM].to(self.device, torch.float32)
        dist = self.model.model_dist(F.normalize(a, dim=1), F.normalize(b, dim=1))
        return dist[0] if single else dist
