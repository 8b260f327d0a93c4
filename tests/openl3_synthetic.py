"""Synthetic OpenL3 weight files in the official Keras ``save_weights`` HDF5 layout (test helper).

The real files (``openl3_audio_<repr>_<content>-v0_4_0.h5.gz``) hold, at the root, the
attributes ``layer_names`` (every layer of the model after the kapre front end was removed,
Keras auto-names), ``backend`` and ``keras_version``; one group per layer with the attribute
``weight_names`` (empty for layers without weights) and one dataset per weight at
``<layer>/<layer>/<weight>:0``. Values here are random but distinct, and seeded.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import h5py
import numpy as np

BLOCK_FILTERS = (64, 128, 256, 512)


def keras_layers() -> list[tuple[str, str, tuple[int, ...]]]:
    """(keras layer name, kind, dims) for every layer of the model, in model order.

    kind: "input", "bn" (channels,), "conv" (in, out), "act", "pool".
    """
    layers = [("input_1", "input", ()), ("batch_normalization_1", "bn", (1,))]
    n_bn, n_conv, n_act, n_pool = 1, 0, 0, 0
    c_in = 1
    for b, c_out in enumerate(BLOCK_FILTERS, start=1):
        for i in (1, 2):
            last = b == len(BLOCK_FILTERS) and i == 2
            n_conv += 1
            name = "audio_embedding_layer" if last else f"conv2d_{n_conv}"
            layers.append((name, "conv", (c_in, c_out)))
            c_in = c_out
            if last:
                break
            n_bn += 1
            layers.append((f"batch_normalization_{n_bn}", "bn", (c_out,)))
            n_act += 1
            layers.append((f"activation_{n_act}", "act", ()))
        if b < len(BLOCK_FILTERS):
            n_pool += 1
            layers.append((f"max_pooling2d_{n_pool}", "pool", ()))
    return layers


def make_weights(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Distinct random values per layer: {keras layer: {weight short name: array}}.

    BN variances are positive; scales chosen so activations stay O(1) through the net.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for name, kind, dims in keras_layers():
        if kind == "bn":
            c = dims[0]
            out[name] = {
                "gamma": rng.uniform(0.5, 1.5, c).astype(np.float32),
                "beta": rng.normal(0, 0.1, c).astype(np.float32),
                "moving_mean": rng.normal(0, 0.5, c).astype(np.float32),
                "moving_variance": rng.uniform(0.5, 2.0, c).astype(np.float32),
            }
            if name == "batch_normalization_1":  # input BN sees dB values in [-80, 0]
                out[name]["moving_mean"] = np.array([-40.0], np.float32)
                out[name]["moving_variance"] = np.array([400.0], np.float32)
        elif kind == "conv":
            c_in, c_out = dims
            std = np.sqrt(2.0 / (9 * c_in))
            out[name] = {
                "kernel": rng.normal(0, std, (3, 3, c_in, c_out)).astype(np.float32),
                "bias": rng.normal(0, 0.05, c_out).astype(np.float32),
            }
    return out


def write_keras_h5(
    path: str | Path,
    weights: dict[str, dict[str, np.ndarray]],
    *,
    gzip_it: bool = True,
    model_weights_group: bool = False,
) -> Path:
    """Write ``weights`` in the Keras save_weights layout (gzipped when ``gzip_it``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_suffix("") if gzip_it and path.suffix == ".gz" else path
    raw = raw.with_name(raw.name + ".tmp.h5") if gzip_it else raw
    with h5py.File(raw, "w") as f:
        root = f.create_group("model_weights") if model_weights_group else f
        names = [n for n, _, _ in keras_layers()]
        root.attrs["layer_names"] = np.array([n.encode() for n in names])
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.3.1"
        order = {
            "bn": ["gamma", "beta", "moving_mean", "moving_variance"],
            "conv": ["kernel", "bias"],
        }
        for name, kind, _ in keras_layers():
            g = root.create_group(name)
            if kind not in order:
                g.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            wnames = [f"{name}/{w}:0" for w in order[kind]]
            g.attrs["weight_names"] = np.array([w.encode() for w in wnames])
            for w, wn in zip(order[kind], wnames, strict=False):
                g.create_dataset(wn, data=weights[name][w])
    if gzip_it:
        with open(raw, "rb") as src, gzip.open(path, "wb", compresslevel=1) as dst:
            dst.write(src.read())
        raw.unlink()
    return path
