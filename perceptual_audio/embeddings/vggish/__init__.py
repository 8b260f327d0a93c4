"""VGGish (Hershey et al., ICASSP 2017) in PyTorch: log-mel front end, network, PCA post-processing.

Re-implements Google's reference (``tensorflow/models`` ``research/audioset/vggish``:
``vggish_input.py``, ``mel_features.py``, ``vggish_params.py``, ``vggish_slim.py``,
``vggish_postprocess.py``) with a differentiable torch front end, and loads the pretrained
weights of the ``harritaylor/torchvggish`` port (a state dict converted from Google's
``vggish_model.ckpt``).

Pipeline, for mono audio at 16 kHz:

1. STFT magnitude: 25 ms (400-sample) frames every 10 ms (160 samples), periodic Hann window,
   512-point ``|rfft|``; only complete frames (no centring, no end padding).
2. 64 mel bands, 125-7500 Hz, HTK mel scale, unnormalised triangles whose DC-bin weight is
   forced to zero, exactly as ``mel_features.spectrogram_to_mel_matrix``; ``log(mel + 0.01)``.
3. Non-overlapping patches of 96 frames x 64 bands (0.96 s). A patch needs 15 600 samples
   (0.975 s); samples after the last complete patch are dropped (as the reference does). A clip
   shorter than one patch is zero-padded to one patch and flagged (:meth:`VGGishEmbedder.flags`),
   never returned empty.
4. Network (NCHW here, height = time, width = mel): conv 64, pool, conv 128, pool, conv 256 x 2,
   pool, conv 512 x 2, pool (3x3 'same' + ReLU, 2x2 max-pool stride 2) -> 512 x 6 x 4, flattened in
   TF's NHWC order, fc 4096, fc 4096 (ReLU), fc 128. The 128-D output is pre-activation, as in
   Google's current model; ``final_relu=True`` adds the ReLU of torchvggish.
5. Optional PCA post-processing (``vggish_postprocess.py``): ``E (x - mu)``, clip to [-2, 2],
   scale by 255/4 and truncate to 8-bit integers (returned as float32 values).

The package: :mod:`.frontend` (parameters, log-mel), :mod:`.network` (CNN, PCA),
:mod:`.checkpoint` (weight files, conversion), :mod:`.embedder` (:class:`VGGishEmbedder`).
"""

from __future__ import annotations

from perceptual_audio.embeddings.vggish.checkpoint import (
    GOOGLE_PCA_WEIGHTS,
    MODEL_CONVERSION_TAG,
    MODEL_WEIGHTS,
    PCA_CONVERSION_TAG,
    PCA_SHAPES,
    PCA_SOURCES,
    PCA_WEIGHTS,
    TORCHVGGISH_MODEL_SHAPES,
    convert_google_pca_npz,
    convert_torchvggish_model,
    convert_torchvggish_pca,
    load_torch_file,
)
from perceptual_audio.embeddings.vggish.embedder import (
    VGGishEmbedder,
)
from perceptual_audio.embeddings.vggish.frontend import (
    EMBEDDING_SIZE,
    FFT_SIZE,
    LOG_OFFSET,
    MEL_MAX_HZ,
    MEL_MIN_HZ,
    N_SPECTRUM_BINS,
    NUM_MEL_BANDS,
    PATCH_FRAMES,
    PATCH_HOP_FRAMES,
    PATCH_HOP_SAMPLES,
    PATCH_HOP_SECONDS,
    PATCH_SAMPLES,
    PATCH_SECONDS,
    QUANTIZE_LEVELS,
    QUANTIZE_MAX_VAL,
    QUANTIZE_MIN_VAL,
    RESAMPLERS,
    SAMPLE_RATE,
    STFT_HOP_SAMPLES,
    STFT_HOP_SECONDS,
    STFT_WINDOW_SAMPLES,
    STFT_WINDOW_SECONDS,
    LogMelFrontend,
    hertz_to_mel,
    is_short,
    mel_weight_matrix,
    n_patches,
    n_stft_frames,
    periodic_hann,
)
from perceptual_audio.embeddings.vggish.network import (
    VGGishNetwork,
    pca_quantize,
)

__all__ = [
    "EMBEDDING_SIZE",
    "FFT_SIZE",
    "GOOGLE_PCA_WEIGHTS",
    "LOG_OFFSET",
    "LogMelFrontend",
    "MEL_MAX_HZ",
    "MEL_MIN_HZ",
    "MODEL_CONVERSION_TAG",
    "MODEL_WEIGHTS",
    "NUM_MEL_BANDS",
    "N_SPECTRUM_BINS",
    "PATCH_FRAMES",
    "PATCH_HOP_FRAMES",
    "PATCH_HOP_SAMPLES",
    "PATCH_HOP_SECONDS",
    "PATCH_SAMPLES",
    "PATCH_SECONDS",
    "PCA_CONVERSION_TAG",
    "PCA_SHAPES",
    "PCA_SOURCES",
    "PCA_WEIGHTS",
    "QUANTIZE_LEVELS",
    "QUANTIZE_MAX_VAL",
    "QUANTIZE_MIN_VAL",
    "RESAMPLERS",
    "SAMPLE_RATE",
    "STFT_HOP_SAMPLES",
    "STFT_HOP_SECONDS",
    "STFT_WINDOW_SAMPLES",
    "STFT_WINDOW_SECONDS",
    "TORCHVGGISH_MODEL_SHAPES",
    "VGGishEmbedder",
    "VGGishNetwork",
    "convert_google_pca_npz",
    "convert_torchvggish_model",
    "convert_torchvggish_pca",
    "hertz_to_mel",
    "is_short",
    "load_torch_file",
    "mel_weight_matrix",
    "n_patches",
    "n_stft_frames",
    "pca_quantize",
    "periodic_hann",
]
