"""CDPAM (Manocha et al., ICASSP 2021) behind the project's :class:`Embedder` interface.

CDPAM is a perceptual audio metric trained on human just-noticeable-difference judgements.
The ``cdpam==0.0.6`` PyPI package ships the trained model
(``cdpam/CDPAM_trained/scratchJNDdefault_best_model.pth``). The package itself does not run on
current torch (``torch.load`` now defaults to ``weights_only=True``, which this legacy pickle
fails; the default device is ``cuda:0``; ``cdpam.load_audio`` uses the removed ``np.float``), so
this module is an adapter: it takes the network definition from ``cdpam.models.FINnet`` and
loads the checkpoint itself, after checking the file's sha256, with an unpickler that only
accepts the two globals the checkpoint uses.

What CDPAM computes (``cdpam.CDPAM.forward``)
--------------------------------------------
1. Audio at 22.05 kHz in int16 range (``cdpam.load_audio``: ``round(x * 32768)``).
2. ``base_encoder``: 16 Conv1d(kernel 15, "same") + BatchNorm + LeakyReLU(0.1) blocks, the
   signal decimated by 2 after every fourth block (16x in all), giving a (1024, ceil(n / 16))
   feature map; its mean over time is split into an "acoustic" half (channels 0-511) and a
   "content" half (512-1023).
3. The metric: both acoustic halves are L2-normalised and ``model_dist`` (a small MLP with
   learned per-channel weights) returns ``sum_k sum_c |w_kc (f_k(a_deg) - f_k(a_ref))_c|``.

Frames
------
The encoder is fully convolutional with a receptive field of +-420 samples (19 ms), so this
adapter runs it once over the whole clip (in chunks with exact overlap for long clips) and
defines frame ``t`` as the mean of the encoder's feature map over the positions whose input
sample lies in ``[t * hop, t * hop + window)`` (``framing="pooled"``, the default; the last
window is cut at the end of the clip). The clip embedding that the CDPAM distance uses falls
out of the same pass, so the distance costs nothing extra. ``framing="windows"`` instead
encodes each window on its own (the last one zero-padded), which is what CDPAM would say of
each 1 s excerpt, at ``window / hop`` times the cost. Timestamps are window starts.

The clip-level CDPAM distance is not recoverable from overlapping frames, so
:meth:`CDPAMEmbedder.embed_with_clip` also returns the normalised clip-level acoustic
embedding (the exact vector CDPAM feeds its distance network); the embedding stage stores it
beside the frames as ``<stem>.clip.npy`` (:data:`CLIP_SUFFIX`) and the metrics stage passes
two of them to :meth:`CDPAMEmbedder.distance_from_embeddings`.

Cost
----
The package's loop (``encoder="reference"``) is about 200 GFLOP per second of audio (the
1024-channel last blocks dominate): 2.5 s of CPU time per audio second (1.2 s wall on 2 idle
cores), and on an H100 6.7 ms per audio second in fp32 (1.5 ms with cuDNN's TF32, at ~4e-4
relative change of the embeddings). The default ``encoder="fast"``
(:mod:`perceptual_audio.embeddings.cdpam.encoder`: BatchNorm folded, decimation as strides,
only the acoustic half of the last block, FFT convolutions) computes the same function to
float32 rounding (frames ~1e-6, clip embedding ~4e-7, distance ~5e-7 relative) at 2.6x less
CPU time per audio second (docs/performance.md). :meth:`CDPAMEmbedder.features` (the
deep-feature loss's activations) runs the same fast encoder unstrided, so that every block's
output before decimation exists: 3x faster than the loop for 1 s of audio.

The package: :mod:`.checkpoint` (facts, weights), :mod:`.preprocess` (NumPy path),
:mod:`.encoder` (the fast encoder), :mod:`.embedder` (:class:`CDPAMEmbedder`).
"""

from __future__ import annotations

from perceptual_audio.embeddings.cdpam.checkpoint import (
    ACOUSTIC_DIM,
    BLOCKS_PER_DECIMATION,
    CDPAM_PACKAGE,
    CDPAM_PACKAGE_VERSION,
    CHUNK_MARGIN_SAMPLES,
    CLASSIF_ACTIVATION,
    CLASSIF_BATCHNORM,
    CLASSIF_DROPOUT,
    CLASSIF_NDIM,
    CLIP_SUFFIX,
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_HOP_SECONDS,
    DEFAULT_WINDOW_SECONDS,
    DISTANCE_METRIC,
    DOWNSAMPLING,
    ENCODER_DIM,
    ENCODER_FILTERS,
    ENCODER_LAYERS,
    ENCODERS,
    FRAMINGS,
    INT16_SCALE,
    LEAKY_SLOPE,
    PARTS,
    RECEPTIVE_RADIUS_SAMPLES,
    RESAMPLERS,
    SAMPLE_RATE,
    VARIANT,
    WEIGHTS_RELATIVE_PATH,
    WEIGHTS_SHA256,
    build_model,
    default_weights_path,
    load_model,
    read_verified_weights,
    unpickle_checkpoint,
)
from perceptual_audio.embeddings.cdpam.embedder import (
    CDPAMEmbedder,
)
from perceptual_audio.embeddings.cdpam.preprocess import (
    resample_like_cdpam,
    round_to_int16_grid,
    shape_of,
)

__all__ = [
    "ACOUSTIC_DIM",
    "BLOCKS_PER_DECIMATION",
    "CDPAMEmbedder",
    "CDPAM_PACKAGE",
    "CDPAM_PACKAGE_VERSION",
    "CHUNK_MARGIN_SAMPLES",
    "CLASSIF_ACTIVATION",
    "CLASSIF_BATCHNORM",
    "CLASSIF_DROPOUT",
    "CLASSIF_NDIM",
    "CLIP_SUFFIX",
    "DEFAULT_CHUNK_SECONDS",
    "DEFAULT_HOP_SECONDS",
    "DEFAULT_WINDOW_SECONDS",
    "DISTANCE_METRIC",
    "DOWNSAMPLING",
    "ENCODERS",
    "ENCODER_DIM",
    "ENCODER_FILTERS",
    "ENCODER_LAYERS",
    "FRAMINGS",
    "INT16_SCALE",
    "LEAKY_SLOPE",
    "PARTS",
    "RECEPTIVE_RADIUS_SAMPLES",
    "RESAMPLERS",
    "SAMPLE_RATE",
    "VARIANT",
    "WEIGHTS_RELATIVE_PATH",
    "WEIGHTS_SHA256",
    "shape_of",
    "build_model",
    "default_weights_path",
    "load_model",
    "read_verified_weights",
    "unpickle_checkpoint",
    "resample_like_cdpam",
    "round_to_int16_grid",
]
