"""The VGGish network (``vggish_slim.py``) and the PCA + 8-bit post-processing."""

from __future__ import annotations

import logging

import torch
from torch import nn

from perceptual_audio.embeddings.vggish.frontend import (
    EMBEDDING_SIZE,
    QUANTIZE_LEVELS,
    QUANTIZE_MAX_VAL,
    QUANTIZE_MIN_VAL,
)

logger = logging.getLogger(__name__)


#: Conv layer widths with "M" for a 2x2 max-pool (vggish_slim.py), as in torchvggish's
#: ``make_layers``: the indices of ``features`` in the state dict follow from this list.
_LAYOUT: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")
#: Names of the conv blocks reported by :meth:`VGGishEmbedder.features`, keyed by the index in
#: ``features`` of the ReLU that ends each block (Google's scopes conv1, conv2, conv3, conv4).
_BLOCK_ENDS = {1: "conv1", 4: "conv2", 9: "conv3", 14: "conv4"}


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
