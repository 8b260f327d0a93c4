"""OpenL3 audio embeddings (Cramer et al., ICASSP 2019) in PyTorch, matching marl/openl3 0.4.2.

Pipeline (all torch, differentiable from the waveform):

1. mono audio at 48 kHz (the NumPy path resamples: soxr by default, resampy ``kaiser_best``
   like openl3 with ``resampler="resampy"``);
2. 1-s windows (48 000 samples) every ``hop_seconds`` (openl3 truncates ``hop * 48000`` to an
   int); ``center=True`` prepends 24 000 zeros; the end is zero-padded so that every sample is
   in a window; timestamps are ``frame index * hop_seconds``;
3. the kapre spectrogram of :class:`~perceptual_audio.embeddings.frontends.OpenL3Frontend`;
4. the network: input BatchNorm; four blocks of two (3x3 'same' conv, BN, ReLU) with
   64/128/256/512 filters, 2x2 max-pool after blocks 1-3; the last conv
   (``audio_embedding_layer``) has no BN and no ReLU; a final max-pool whose size gives the
   embedding size; flatten in channels-last (Keras) order. BatchNorm epsilon is Keras' 1e-3.

Weights: the official gzipped Keras HDF5 files (``model.save_weights`` layout: root attribute
``layer_names``, one group per layer with attribute ``weight_names`` and one dataset per
weight, e.g. ``conv2d_1/conv2d_1/kernel:0``; possibly under a ``model_weights`` group). Layer
names are Keras auto-names that differ between files, so layers with weights are mapped by
order (16 of them); inside a layer, weights are mapped by their name (``gamma``, ``beta``,
``moving_mean``, ``moving_variance``, ``kernel``, ``bias``). Kernels go from Keras
``(kh, kw, in, out)`` to torch ``(out, in, kh, kw)``.
"""

from __future__ import annotations

import gzip
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from perceptual_audio.audio_io import resample_resampy02
from perceptual_audio.embeddings.base import Embedder, ModelOption, register
from perceptual_audio.embeddings.frontends import (
    OPENL3_SAMPLE_RATE,
    OpenL3Frontend,
    openl3_window_count,
)
from perceptual_audio.embeddings.weights import (
    LoadedWeights,
    WeightFile,
    load_converted,
    register_weight_file,
)
from perceptual_audio.errors import ParameterError, WeightsVerificationError
from perceptual_audio.options import positive_float

logger = logging.getLogger(__name__)

INPUT_REPRS = ("linear", "mel128", "mel256")
CONTENT_TYPES = ("music", "env")
EMBEDDING_SIZES = (6144, 512)
#: Window length in samples (1 s at 48 kHz).
WINDOW_SAMPLES = OPENL3_SAMPLE_RATE
#: Keras BatchNormalization default epsilon.
KERAS_BN_EPSILON = 1e-3
#: Final max-pool size (freq, time) per input representation and embedding size.
POOL_SIZES: dict[str, dict[int, tuple[int, int]]] = {
    "linear": {6144: (8, 8), 512: (32, 24)},
    "mel128": {6144: (4, 8), 512: (16, 24)},
    "mel256": {6144: (8, 8), 512: (32, 24)},
}
#: Filters of the four blocks.
BLOCK_FILTERS = (64, 128, 256, 512)
WEIGHTS_URL_TEMPLATE = "https://github.com/marl/openl3/raw/models/openl3_audio_{input_repr}_{content_type}-v0_4_0.h5.gz"
#: Bump when the conversion changes (old converted caches are then ignored).
CONVERTER_TAG = "torch-v1"


def _register_files() -> dict[tuple[str, str], WeightFile]:
    files = {}
    for rep in INPUT_REPRS:
        for ct in CONTENT_TYPES:
            url = WEIGHTS_URL_TEMPLATE.format(input_repr=rep, content_type=ct)
            files[rep, ct] = register_weight_file(
                WeightFile(
                    model="openl3",
                    filename=url.rsplit("/", 1)[1],
                    url=url,
                    sha256=None,  # not published by the authors; the used file's hash is recorded
                    description=f"OpenL3 {rep}/{ct} audio model, Keras HDF5 weights, gzip",
                )
            )
    return files


WEIGHT_FILES = _register_files()


def weight_file(input_repr: str, content_type: str) -> WeightFile:
    """The registered official file for one (input_repr, content_type)."""
    _check_choice("input_repr", input_repr, INPUT_REPRS)
    _check_choice("content_type", content_type, CONTENT_TYPES)
    return WEIGHT_FILES[input_repr, content_type]


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ParameterError(
            f"OpenL3 {name} must be one of {', '.join(map(str, choices))}, got {value!r}"
        )


# -- layer table ---------------------------------------------------------------------------
def layer_table() -> list[tuple[str, str, tuple[int, ...]]]:
    """The 16 layers with weights, in Keras order: (kind, torch module name, shape info).

    ``kind`` is ``"bn"`` (shape info ``(channels,)``) or ``"conv"`` (``(in, out)``).
    """
    table: list[tuple[str, str, tuple[int, ...]]] = [("bn", "bn_input", (1,))]
    c_in = 1
    for b, c_out in enumerate(BLOCK_FILTERS, start=1):
        for i in (1, 2):
            table.append(("conv", f"conv{b}_{i}", (c_in, c_out)))
            c_in = c_out
            if not (b == len(BLOCK_FILTERS) and i == 2):  # audio_embedding_layer: no BN
                table.append(("bn", f"bn{b}_{i}", (c_out,)))
    return table


# -- network -------------------------------------------------------------------------------
class OpenL3Network(nn.Module):
    """The OpenL3 audio CNN on (B, 1, F, T) dB spectrograms.

    Parameters
    ----------
    input_repr : str
        Only used for the final pool size.
    embedding_size : {6144, 512}
    """

    def __init__(self, input_repr: str = "mel256", embedding_size: int = 6144) -> None:
        super().__init__()
        _check_choice("input_repr", input_repr, INPUT_REPRS)
        _check_choice("embedding_size", embedding_size, EMBEDDING_SIZES)
        self.pool_size = POOL_SIZES[input_repr][embedding_size]
        self._fused: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
        for kind, name, dims in layer_table():
            if kind == "bn":
                setattr(self, name, nn.BatchNorm2d(dims[0], eps=KERAS_BN_EPSILON))
            else:
                setattr(self, name, nn.Conv2d(dims[0], dims[1], kernel_size=3, padding=1))
        self.eval()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._fused = None  # folded weights of the previous parameters are stale
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def fuse(self) -> None:
        """Fold each BatchNorm that follows a conv into that conv (inference speed-up).

        ``conv -> BN`` equals one conv with weight ``W * g / sqrt(v + eps)`` and bias
        ``(b - m) * g / sqrt(v + eps) + beta`` in eval mode. The input BN is not folded: Keras
        zero-pads *its output* for conv1_1, which a folded conv could not reproduce at the
        borders. The folded tensors are constants (the network is a frozen feature extractor);
        gradients still flow to the input. Kept in channels-last memory layout, which oneDNN
        convolves faster on CPU. Call again after changing the parameters.
        """
        fused = {}
        with torch.no_grad():
            for kind, name, _ in layer_table():
                if kind != "conv":
                    continue
                conv = getattr(self, name)
                w, b = conv.weight.detach(), conv.bias.detach()
                bn = getattr(self, "bn" + name[4:], None)
                if bn is not None:
                    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                    w = w * scale[:, None, None, None]
                    b = (b - bn.running_mean) * scale + bn.bias
                fused[name] = (w.contiguous(memory_format=torch.channels_last), b.contiguous())
        self._fused = fused

    @staticmethod
    def _conv_single_channel(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # A 3x3 'same' conv with one input channel as im2col + batched matmul: oneDNN is
        # inefficient for C_in = 1 (about 2x slower here). Output in channels-last layout.
        n, _, h, wd = x.shape
        cols = F.unfold(F.pad(x, (1, 1, 1, 1)), kernel_size=3)  # (B, 9, H*W)
        kernel = w.reshape(w.shape[0], 9).t().expand(n, 9, w.shape[0])
        y = torch.baddbmm(b[None, None, :], cols.transpose(1, 2), kernel)  # (B, H*W, C)
        return y.view(n, h, wd, -1).permute(0, 3, 1, 2)

    def _features_fused(self, spec: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        x = self.bn_input(spec)
        # Without autograd the ReLUs run in place (the activations are a large share of the
        # memory traffic: ~12% of the time was the out-of-place ReLU).
        inplace = not (torch.is_grad_enabled() and spec.requires_grad)
        for b in range(1, len(BLOCK_FILTERS) + 1):
            w, bias = self._fused[f"conv{b}_1"]
            if b == 1:
                x = self._conv_single_channel(x, w, bias)
            else:
                x = F.conv2d(x, w, bias, padding=1)
            x = F.relu(x, inplace=inplace)
            w, bias = self._fused[f"conv{b}_2"]
            x = F.conv2d(x, w, bias, padding=1)
            if b < len(BLOCK_FILTERS):
                # max-pool then ReLU equals ReLU then max-pool (ReLU is monotone), on 4x fewer
                # values.
                x = F.relu(F.max_pool2d(x, kernel_size=2, stride=2), inplace=inplace)
            out[f"block{b}"] = x
        return out

    def _bn_relu(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return F.relu(getattr(self, name)(x))

    def features(self, spec: torch.Tensor) -> dict[str, torch.Tensor]:
        """Activations of each block.

        Uses the folded weights of :meth:`fuse` when present (eval mode), else the layers
        as in Keras.

        Returns
        -------
        dict
            ``block1``-``block3``: after the block's max-pool, (B, C, F', T');
            ``block4``: the ``audio_embedding_layer`` output (before the final pool).
        """
        if self._fused is not None and not self.training:
            return self._features_fused(spec)
        out = {}
        x = self.bn_input(spec)
        for b in range(1, len(BLOCK_FILTERS) + 1):
            x = self._bn_relu(f"bn{b}_1", getattr(self, f"conv{b}_1")(x))
            x = getattr(self, f"conv{b}_2")(x)
            if b < len(BLOCK_FILTERS):
                x = F.max_pool2d(self._bn_relu(f"bn{b}_2", x), kernel_size=2, stride=2)
            out[f"block{b}"] = x
        return out

    def pool_flatten(self, x: torch.Tensor) -> torch.Tensor:
        """Final max-pool ('same' padding as Keras) and channels-last flatten: (B, D)."""
        x = F.max_pool2d(x, kernel_size=self.pool_size, stride=self.pool_size, ceil_mode=True)
        return x.permute(0, 2, 3, 1).flatten(1)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.pool_flatten(self.features(spec)["block4"])


# -- conversion ----------------------------------------------------------------------------
def _open_hdf5(path: Path):
    import h5py  # deferred: only converting the official Keras weights needs it

    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        with gzip.open(path, "rb") as f:
            return h5py.File(io.BytesIO(f.read()), "r")
    return h5py.File(path, "r")


def _decode(names: Any) -> list[str]:
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in names]


def read_keras_weights(path: str | Path) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Layers with weights of a Keras ``save_weights`` HDF5 file, in file order.

    Returns
    -------
    list of (layer name, {short weight name: array})
        Short names drop the layer prefix and ``:0`` (``conv2d_1/kernel:0`` -> ``kernel``).
    """
    path = Path(path)
    try:
        f = _open_hdf5(path)
    except (OSError, EOFError) as e:
        raise WeightsVerificationError(
            f"OpenL3 weights file {path} is not a (gzipped) HDF5 file: {e}"
        ) from None
    with f:
        root = f
        if "layer_names" not in root.attrs and "model_weights" in root:
            root = root["model_weights"]
        if "layer_names" not in root.attrs:
            raise WeightsVerificationError(
                f"OpenL3 weights file {path} has no 'layer_names' attribute (expected a Keras "
                f"save_weights HDF5 file); found top-level keys {sorted(f.keys())}"
            )
        layers = []
        for lname in _decode(root.attrs["layer_names"]):
            g = root[lname]
            wnames = _decode(g.attrs.get("weight_names", []))
            if not wnames:
                continue
            weights = {}
            for wn in wnames:
                short = wn.rsplit("/", 1)[-1].split(":", 1)[0]
                weights[short] = np.asarray(g[wn], dtype=np.float32)
            layers.append((lname, weights))
    return layers


def convert_keras_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Official OpenL3 Keras HDF5 (``.h5`` or ``.h5.gz``) -> :class:`OpenL3Network` state dict.

    Checks the number of layers with weights, each layer's kind and every shape.

    Raises
    ------
    WeightsVerificationError
        Naming the file, the layer, and the expected and received structure.
    """
    path = Path(path)
    layers = read_keras_weights(path)
    table = layer_table()
    if len(layers) != len(table):
        raise WeightsVerificationError(
            f"OpenL3 weights file {path}: expected {len(table)} layers with weights, received "
            f"{len(layers)} ({', '.join(n for n, _ in layers)})"
        )
    sd: dict[str, torch.Tensor] = {}
    for (kind, tname, dims), (kname, w) in zip(table, layers, strict=False):
        if kind == "bn":
            expected = {k: (dims[0],) for k in ("gamma", "beta", "moving_mean", "moving_variance")}
        else:
            expected = {"kernel": (3, 3, dims[0], dims[1]), "bias": (dims[1],)}
        got = {k: tuple(v.shape) for k, v in w.items()}
        if got != expected:
            raise WeightsVerificationError(
                f"OpenL3 weights file {path}: layer {kname!r} (mapped to {tname}) should hold "
                f"{expected}, received {got}"
            )
        if kind == "bn":
            sd[f"{tname}.weight"] = torch.from_numpy(w["gamma"].copy())
            sd[f"{tname}.bias"] = torch.from_numpy(w["beta"].copy())
            sd[f"{tname}.running_mean"] = torch.from_numpy(w["moving_mean"].copy())
            sd[f"{tname}.running_var"] = torch.from_numpy(w["moving_variance"].copy())
            sd[f"{tname}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
        else:
            # Keras (kh, kw, in, out) -> torch (out, in, kh, kw); both cross-correlate.
            sd[f"{tname}.weight"] = torch.from_numpy(
                np.ascontiguousarray(w["kernel"].transpose(3, 2, 0, 1))
            )
            sd[f"{tname}.bias"] = torch.from_numpy(w["bias"].copy())
    return sd


# -- embedder ------------------------------------------------------------------------------
@register
class OpenL3Embedder(Embedder):
    """OpenL3 audio embeddings, one frame per 1-s window.

    Parameters
    ----------
    input_repr : {"mel256", "mel128", "linear"}
    content_type : {"music", "env"}
    embedding_size : {6144, 512}
    hop_seconds : float
        Seconds between window starts (openl3 default 0.1).
    center : bool
        Prepend half a window of zeros so that timestamp ``t`` is the window centre.
    device : str or torch.device
    weights_dir : path-like or None
        Folder of weight files fetched by hand (searched before the cache).
    cache_dir : path-like or None
        Cache root (default ``$PERCEPTUAL_AUDIO_CACHE`` or ``~/.cache/perceptual_audio``).
    download : bool
        Download the official file when it is nowhere local.
    batch_size : int
        Windows per network call; bounds memory (about 40 MB per mel256 window at the peak).
    resampler : {"soxr", "resampy"}
        NumPy-path resampler to 48 kHz; ``"resampy"`` (kaiser_best) is what openl3 uses
        (slow; use it for parity), soxr VHQ is the fast default.
    """

    name = "openl3"
    sample_rate = OPENL3_SAMPLE_RATE
    display_name = "OpenL3"
    column_order = 10
    feature_channel_axis = 2  # (B, T, C, ...) per window
    packages = ("h5py",)
    options = (
        ModelOption(
            "input_repr", "input-repr", "OpenL3 spectrogram front end", "mel256",
            choices=INPUT_REPRS,
        ),
        ModelOption(
            "content_type", "content-type", "OpenL3 training content", "music",
            choices=CONTENT_TYPES,
        ),
        ModelOption(
            "embedding_size", "embedding-size", "OpenL3 embedding dimension", 6144, type=int,
            choices=EMBEDDING_SIZES,
        ),
        ModelOption(
            "hop_seconds", "hop", "OpenL3 hop between 1-s windows, in seconds", 0.1,
            type=positive_float, metavar="SECONDS",
        ),
    )  # fmt: skip

    def __init__(
        self,
        *,
        input_repr: str = "mel256",
        content_type: str = "music",
        embedding_size: int = 6144,
        hop_seconds: float = 0.1,
        center: bool = True,
        device: str | torch.device = "cpu",
        weights_dir: str | Path | None = None,
        cache_dir: str | Path | None = None,
        download: bool = True,
        batch_size: int = 8,
        resampler: str = "soxr",
    ) -> None:
        super().__init__(device=device)
        _check_choice("input_repr", input_repr, INPUT_REPRS)
        _check_choice("content_type", content_type, CONTENT_TYPES)
        _check_choice("embedding_size", embedding_size, EMBEDDING_SIZES)
        _check_choice("resampler", resampler, ("soxr", "resampy"))
        if not hop_seconds > 0:
            raise ParameterError(f"OpenL3 hop_seconds must be > 0, got {hop_seconds!r}")
        self.hop_length = int(hop_seconds * OPENL3_SAMPLE_RATE)  # openl3 truncates
        if self.hop_length < 1:
            raise ParameterError(
                f"OpenL3 hop_seconds must be at least 1/{OPENL3_SAMPLE_RATE} s, got {hop_seconds!r}"
            )
        if int(batch_size) < 1:
            raise ParameterError(f"OpenL3 batch_size must be >= 1, got {batch_size!r}")
        self.input_repr = input_repr
        self.content_type = content_type
        self.embedding_size = int(embedding_size)
        self.hop_seconds = float(hop_seconds)
        self.center = bool(center)
        self.weights_dir = weights_dir
        self.cache_dir = cache_dir
        self.download = download
        self.batch_size = int(batch_size)
        self.resampler = resampler
        self.weight_file = weight_file(input_repr, content_type)
        self.frontend = OpenL3Frontend(input_repr).to(self.device)
        self.network = OpenL3Network(input_repr, self.embedding_size).to(self.device)
        self.loaded: LoadedWeights | None = None

    # -- weights ---------------------------------------------------------------------------
    def load(self) -> None:
        """Find (weights dir, cache, download), verify, convert once and load the weights."""
        if self.loaded is not None:
            return
        loaded = load_converted(
            self.weight_file,
            convert_keras_weights,
            tag=CONVERTER_TAG,
            weights_dir=self.weights_dir,
            cache_dir=self.cache_dir,
            download=self.download,
        )
        self.network.load_state_dict(loaded.state_dict)
        self.network.to(self.device).eval()
        for p in self.network.parameters():  # a frozen feature extractor: gradients flow to
            p.requires_grad_(False)  # the waveform only
        self.network.fuse()
        self.loaded = loaded
        logger.info(
            "OpenL3 %s/%s weights from %s (sha256 %s)",
            self.input_repr,
            self.content_type,
            loaded.sources[0].path,
            loaded.sha256,
        )

    # -- windows ---------------------------------------------------------------------------
    def n_windows(self, n_samples: int) -> int:
        """Number of windows for ``n_samples`` at 48 kHz (as openl3's ``_get_num_windows``)."""
        return openl3_window_count(
            n_samples, hop_length=self.hop_length, center=self.center, frame_length=WINDOW_SAMPLES
        )

    def timestamps(self, n_samples: int) -> np.ndarray:
        """Window times in seconds: ``arange(T) * hop_seconds``, shape (T,), float64."""
        return np.arange(self.n_windows(n_samples), dtype=np.float64) * self.hop_seconds

    def windows(self, waveform: torch.Tensor) -> torch.Tensor:
        """Padded, strided 1-s windows (a view, no copy of the overlaps).

        Parameters
        ----------
        waveform : torch.Tensor [shape=(B, n)]

        Returns
        -------
        torch.Tensor [shape=(B, T, 48000)]
        """
        if waveform.dim() != 2:
            raise ParameterError(
                f"OpenL3 expects waveforms of shape (B, n), got {tuple(waveform.shape)}"
            )
        n = waveform.shape[-1]
        t = self.n_windows(n)
        front = WINDOW_SAMPLES // 2 if self.center else 0
        total = (t - 1) * self.hop_length + WINDOW_SAMPLES
        x = F.pad(waveform, (front, total - n - front))
        return x.unfold(-1, WINDOW_SAMPLES, self.hop_length)

    def _window_chunks(self, waveform: torch.Tensor):
        self.load()  # never run the randomly initialised network: load (or raise) first
        w = self.windows(waveform)
        b, t, _ = w.shape
        step = max(1, self.batch_size // b) if b <= self.batch_size else 1
        for start in range(0, t, step):
            chunk = w[:, start : start + step]
            yield chunk.reshape(-1, WINDOW_SAMPLES), chunk.shape[1]

    # -- forward ---------------------------------------------------------------------------
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, T, D) of 48 kHz waveforms (B, n); differentiable; chunked over
        windows so that at most ``batch_size`` windows go through the network at once."""
        b = waveform.shape[0]
        outs = []
        for flat, t_chunk in self._window_chunks(waveform):
            emb = self.network(self.frontend(flat))
            outs.append(emb.reshape(b, t_chunk, -1))
        return torch.cat(outs, dim=1)

    def features(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-block activations, each (B, T, C, F', T') (see :meth:`OpenL3Network.features`),
        plus ``spectrogram`` (B, T, 1, F, frames) and ``embedding`` (B, T, D)."""
        b = waveform.shape[0]
        acc: dict[str, list[torch.Tensor]] = {}
        for flat, t_chunk in self._window_chunks(waveform):
            spec = self.frontend(flat)
            feats = {"spectrogram": spec, **self.network.features(spec)}
            feats["embedding"] = self.network.pool_flatten(feats["block4"])
            for k, v in feats.items():
                acc.setdefault(k, []).append(v.reshape(b, t_chunk, *v.shape[1:]))
        return {k: torch.cat(v, dim=1) for k, v in acc.items()}

    def resample_numpy(self, x: np.ndarray, sr: int) -> np.ndarray:
        """To 48 kHz with soxr (default) or, for parity, resampy 0.2's ``kaiser_best`` in float64
        (openl3 0.4.2 pins resampy<0.3; see :func:`perceptual_audio.audio_io.resample_resampy02`)."""
        if sr == self.sample_rate:
            return x
        if self.resampler == "resampy":
            return resample_resampy02(x, sr, self.sample_rate).astype(np.float32)
        return super().resample_numpy(x, sr)

    def info(self) -> dict[str, Any]:
        """What the output manifest records (weights file and sha256 once loaded)."""
        return {
            "model": self.name,
            "variant": f"{self.input_repr}_{self.content_type}_{self.embedding_size}",
            "input_repr": self.input_repr,
            "content_type": self.content_type,
            "embedding_size": self.embedding_size,
            "dim": self.embedding_size,
            "hop_seconds": self.hop_seconds,
            "center": self.center,
            "sample_rate": self.sample_rate,
            "resampler": self.resampler,
            "weights_file": self.weight_file.filename,
            "weights_url": self.weight_file.url,
            "weights_sha256": self.loaded.sha256 if self.loaded is not None else None,
            # On CUDA, cuDNN may run the convs in TF32 (about 1e-3 relative error); recorded
            # so that runs can be compared. Measured fp32 CUDA vs CPU: 4e-6 relative.
            "cuda_allow_tf32": (
                bool(torch.backends.cudnn.allow_tf32) if self.device.type == "cuda" else None
            ),
        }
