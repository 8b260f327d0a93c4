"""VGGish: front end, network and post-processing against independent NumPy references.

The real weights cannot be downloaded on the build machines, so the conversion is proved with
synthetic files in the official formats (torchvggish state-dict keys and shapes, a torch pickle
of NumPy PCA arrays, Google's ``.npz``) filled with distinct seeded values and loaded through
the real lookup / download (``file://``) / verify / convert path. Google's smoke test runs only
when the real weights are present.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from perceptual_audio.embeddings import base, weights
from perceptual_audio.embeddings import vggish as V
from perceptual_audio.errors import (
    ParameterError,
    WeightsUnavailableError,
    WeightsVerificationError,
)
from perceptual_audio.files import sha256_file

#: torch (float64 inside, float32 out) vs float64 NumPy on the log-mel values (natural-log units).
LOG_MEL_ATOL = 1e-5
#: torch network vs NumPy NHWC forward pass, relative to the output's scale.
NETWORK_TOL = 1e-4
SR = 16000


# -- independent NumPy references (written from the published algorithm) ---------------------
def ref_mel_matrix(n_bins=257, n_bands=64, sr=16000, lo_hz=125.0, hi_hz=7500.0):
    """mel_features.spectrogram_to_mel_matrix, band by band."""

    def mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    bin_mel = mel(np.linspace(0.0, sr / 2.0, n_bins))
    edges = np.linspace(mel(lo_hz), mel(hi_hz), n_bands + 2)
    m = np.empty((n_bins, n_bands))
    for i in range(n_bands):
        lower, centre, upper = edges[i], edges[i + 1], edges[i + 2]
        up = (bin_mel - lower) / (centre - lower)
        down = (upper - bin_mel) / (upper - centre)
        m[:, i] = np.maximum(0.0, np.minimum(up, down))
    m[0, :] = 0.0
    return m


def ref_log_mel(x):
    """(n,) float64 -> (frames, 64): periodic Hann, |rfft 512|, HTK mel, log(+0.01)."""
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(x, np.float64), 400)[::160]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(400) / 400)
    spectrum = np.abs(np.fft.rfft(frames * window, 512))
    return np.log(spectrum @ ref_mel_matrix() + 0.01)


def ref_patches(x):
    log_mel = ref_log_mel(x)
    n = 1 + (len(log_mel) - 96) // 96
    return log_mel[: n * 96].reshape(n, 96, 64)


def np_conv3x3_same_relu(x, kernel_hwio, bias):
    """(H, W, Cin) channels-last 'SAME' 3x3 convolution (cross-correlation, as TF) + ReLU."""
    h, w, _ = x.shape
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    cols = np.stack([xp[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=2)
    out = cols.reshape(h, w, -1) @ kernel_hwio.reshape(-1, kernel_hwio.shape[-1]) + bias
    return np.maximum(out, 0.0)


def np_maxpool2(x):
    h, w, c = x.shape
    return x.reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))


def np_dense(x, weight_out_in, bias):
    w = weight_out_in
    return (
        np.concatenate([w[i : i + 1024].astype(np.float64) @ x for i in range(0, w.shape[0], 1024)])
        + bias
    )


def np_vggish_nhwc(patch, sd, *, flatten="nhwc"):
    """VGGish as TF computes it: NHWC activations, HWIO kernels; returns the 128-D output."""
    x = np.asarray(patch, np.float64)[:, :, None]  # (96, 64, 1): height = time, width = mel
    convs = [
        "features.0",
        "M",
        "features.3",
        "M",
        "features.6",
        "features.8",
        "M",
        "features.11",
        "features.13",
        "M",
    ]
    for name in convs:
        if name == "M":
            x = np_maxpool2(x)
        else:
            kernel = sd[f"{name}.weight"].numpy().astype(np.float64).transpose(2, 3, 1, 0)
            x = np_conv3x3_same_relu(x, kernel, sd[f"{name}.bias"].numpy())
    assert x.shape == (6, 4, 512)
    x = x.reshape(-1) if flatten == "nhwc" else x.transpose(2, 0, 1).reshape(-1)
    x = np.maximum(
        np_dense(x, sd["embeddings.0.weight"].numpy(), sd["embeddings.0.bias"].numpy()), 0
    )
    x = np.maximum(
        np_dense(x, sd["embeddings.2.weight"].numpy(), sd["embeddings.2.bias"].numpy()), 0
    )
    return np_dense(x, sd["embeddings.4.weight"].numpy(), sd["embeddings.4.bias"].numpy())


def np_postprocess(raw, eigen, means):
    """vggish_postprocess.Postprocessor.postprocess."""
    pca = np.dot(eigen, (raw.T - means.reshape(-1, 1))).T
    clipped = np.clip(pca, -2.0, 2.0)
    return ((clipped + 2.0) * (255.0 / 4.0)).astype(np.uint8)


# -- synthetic official-format weights ----------------------------------------------------------
def synthetic_model_state_dict(seed=7):
    """torchvggish keys and shapes, seeded distinct values: weights uniform with He variance
    (activations stay O(1) through the 8 layers), small distinct biases."""
    rng = np.random.default_rng(seed)
    sd = {}
    for key, shape in V.TORCHVGGISH_MODEL_SHAPES.items():
        if key.endswith("bias"):
            value = 0.01 * rng.standard_normal(shape[0]) + 0.001 * np.arange(shape[0]) / shape[0]
        else:
            fan_in = int(np.prod(shape[1:]))
            gain = 1.0 if key == "embeddings.4.weight" else 2.0
            value = rng.random(shape, dtype=np.float32) - np.float32(0.5)
            value *= np.float32(np.sqrt(12.0 * gain / fan_in))
        sd[key] = torch.from_numpy(np.asarray(value, dtype=np.float32))
    return sd


def synthetic_pca(seed=8):
    rng = np.random.default_rng(seed)
    eigen = rng.standard_normal((128, 128)) / np.sqrt(128)
    means = 0.1 * rng.standard_normal(128)
    return eigen, means


def save_legacy_numpy1_pickle(obj, path):
    """torch.save in the legacy (non-zip) format, with NumPy 1.x module names in the pickle, as a
    2019-era torchvggish release would have been written."""
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False)
    path.write_bytes(buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """Synthetic weight files loaded through the real weights path (weights dir, file:// URL).

    The registry entries carry the official sha256 prefixes, which synthetic bytes cannot match,
    so they are replaced by the same entries without a known digest while loading.
    """
    root = tmp_path_factory.mktemp("vggish_weights")
    wdir = root / "weights_dir"
    wdir.mkdir()
    sd = synthetic_model_state_dict()
    model_file = wdir / V.MODEL_WEIGHTS.filename
    torch.save(sd, model_file)
    eigen, means = synthetic_pca()
    served = root / "served"
    served.mkdir()
    pca_pth = served / V.PCA_WEIGHTS.filename
    torch.save({"pca_eigen_vectors": eigen, "pca_means": means}, pca_pth)  # NumPy arrays inside
    npz_dir = root / "npz_dir"
    npz_dir.mkdir()
    np.savez(
        npz_dir / V.GOOGLE_PCA_WEIGHTS.filename,
        pca_eigen_vectors=eigen,
        pca_means=means.reshape(-1, 1),
    )

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(weights.OFFLINE_ENV, "0")
        mp.setenv(weights.CACHE_ENV, str(root / "cache"))
        model_wf = dataclasses.replace(V.MODEL_WEIGHTS, sha256_prefix=None)
        pca_wf = dataclasses.replace(V.PCA_WEIGHTS, sha256_prefix=None, url=pca_pth.as_uri())
        npz_wf = dataclasses.replace(V.GOOGLE_PCA_WEIGHTS, url=(root / "nowhere.npz").as_uri())
        mp.setattr(V.checkpoint, "MODEL_WEIGHTS", model_wf)  # where the embedder reads it
        mp.setattr(
            V.checkpoint,
            "PCA_SOURCES",
            ((pca_wf, V.convert_torchvggish_pca), (npz_wf, V.convert_google_pca_npz)),
        )
        raw = V.VGGishEmbedder(weights_dir=wdir)
        raw.load()
        # The same network serves the option variants (its loading is tested through `raw`).
        relu = V.VGGishEmbedder(final_relu=True, weights_dir=wdir)
        relu.network, relu.weights_sha256 = raw.network, dict(raw.weights_sha256)
        relu.weights_files = dict(raw.weights_files)
        pca_url = V.VGGishEmbedder(postprocess=True, weights_dir=wdir)  # PCA .pth via file://
        pca_url.network, pca_url.weights_sha256 = raw.network, dict(raw.weights_sha256)
        pca_url.weights_files = dict(raw.weights_files)
        pca_url.load()
        mp.setenv(weights.CACHE_ENV, str(root / "cache2"))
        pca_npz = V.VGGishEmbedder(postprocess=True, weights_dir=npz_dir)  # Google's .npz
        pca_npz.network, pca_npz.weights_sha256 = raw.network, dict(raw.weights_sha256)
        pca_npz.weights_files = dict(raw.weights_files)
        pca_npz.load()
        return {
            "sd": sd,
            "model_file": model_file,
            "eigen": eigen,
            "means": means,
            "pca_pth": pca_pth,
            "npz": npz_dir / V.GOOGLE_PCA_WEIGHTS.filename,
            "root": root,
            "raw": raw,
            "relu": relu,
            "pca_url": pca_url,
            "pca_npz": pca_npz,
            "cache": root / "cache",
        }


def sine(freq_hz, seconds, amplitude=0.5):
    t = np.arange(int(round(seconds * SR))) / SR
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


# -- front end --------------------------------------------------------------------------------
def test_mel_matrix_equals_reference_including_dc_bin():
    got = V.mel_weight_matrix()
    want = ref_mel_matrix()
    assert got.shape == (257, 64)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert np.all(got[0] == 0.0)  # DC bin excluded, as HTK / mel_features do
    # Unnormalised triangles: each band peaks below 1 (bins fall between centres) but > 0.5.
    assert np.all(got.max(axis=0) <= 1.0) and np.all(got.max(axis=0) > 0.5)
    # No weight outside 125-7500 Hz: bin k is at k * 31.25 Hz.
    assert np.all(got[:4] == 0.0) and np.all(got[241:] == 0.0)  # 93.75 Hz, >= 7531.25 Hz


def test_mel_matrix_rejects_bad_edges():
    with pytest.raises(ParameterError, match=r"fmax_hz must be <= Nyquist \(8000.0 Hz\), got 9000"):
        V.mel_weight_matrix(fmax_hz=9000.0)
    with pytest.raises(ParameterError, match="fmin_hz must be < fmax_hz, got fmin_hz=500"):
        V.mel_weight_matrix(fmin_hz=500.0, fmax_hz=400.0)


def test_log_mel_front_end_matches_numpy_reference(rng):
    x = np.concatenate([0.3 * rng.standard_normal(SR), sine(440.0, 1.0), sine(3000.0, 1.05, 0.9)])
    x = x.astype(np.float32)
    frontend = V.LogMelFrontend()
    got = frontend.log_mel(torch.from_numpy(x)[None])[0].numpy()
    want = ref_log_mel(x)
    assert got.shape == want.shape == (1 + (len(x) - 400) // 160, 64)
    np.testing.assert_allclose(got, want, rtol=0, atol=LOG_MEL_ATOL)
    patches = frontend(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(patches, ref_patches(x), rtol=0, atol=LOG_MEL_ATOL)
    # Silence gives log(0.01) exactly in every band (|rfft| of zeros is 0).
    silent = frontend.log_mel(torch.zeros(1, 2000))[0]
    np.testing.assert_allclose(silent.numpy(), np.log(0.01), rtol=1e-6)


def test_front_end_on_torchvggish_test_clip(shared_data):
    import soundfile as sf

    x, sr = sf.read(shared_data / "vggish_reference" / "test.wav", dtype="float32")
    assert sr == SR
    got = V.LogMelFrontend()(torch.from_numpy(x)[None])[0].numpy()
    assert got.shape == (4, 96, 64)  # 4.0 s -> 4 patches
    np.testing.assert_allclose(got, ref_patches(x), rtol=0, atol=LOG_MEL_ATOL)


@pytest.mark.parametrize(
    ("n_samples", "patches", "short"),
    [
        (48000, 3, False),
        (100, 1, True),
        (15599, 1, True),
        (15600, 1, False),
        (15600 + 15359, 1, False),
        (15600 + 15360, 2, False),
    ],
)
def test_patch_counts_and_short_flag(n_samples, patches, short):
    assert V.n_patches(n_samples) == patches
    assert V.is_short(n_samples) is short
    frontend = V.LogMelFrontend()
    assert frontend(torch.zeros(2, n_samples)).shape == (2, patches, 96, 64)


# -- weights path -----------------------------------------------------------------------------
def test_every_tensor_lands_in_its_place(synth):
    loaded = synth["raw"].network.state_dict()
    assert list(loaded) == list(V.TORCHVGGISH_MODEL_SHAPES)
    for key, value in synth["sd"].items():
        assert torch.equal(loaded[key], value), key
    info = synth["raw"].info()
    assert (
        info["weights_sha256"] == info["model_weights_sha256"] == sha256_file(synth["model_file"])
    )
    assert info["weights_files"] == ["vggish-10086976.pth"] and info["pca_weights_sha256"] is None
    # converted once into the cache, loaded from there afterwards (weights_only=True)
    converted = list((synth["cache"] / "vggish").glob("vggish-10086976.pth.vggish-sd1-*.pt"))
    assert len(converted) == 1
    again = torch.load(converted[0], weights_only=True)
    assert all(torch.equal(again[k], v) for k, v in synth["sd"].items())


def test_network_equals_numpy_nhwc_forward_pass(synth, rng):
    patch = (rng.standard_normal((96, 64)) - 2.0).astype(np.float32)  # log-mel-like values
    got = synth["raw"].network(torch.from_numpy(patch)[None, None]).detach().numpy()[0]
    want = np_vggish_nhwc(patch, synth["sd"])
    scale = np.abs(want).max()
    assert scale > 0.1  # the synthetic weights give a non-trivial output
    np.testing.assert_allclose(got, want, rtol=0, atol=NETWORK_TOL * scale)
    # The test can tell the flatten orders apart: NCHW flattening is far off.
    wrong = np_vggish_nhwc(patch, synth["sd"], flatten="nchw")
    assert np.abs(wrong - want).max() > 100 * NETWORK_TOL * scale


def network_on(synth, patches):
    """The loaded network (proven equal to the NumPy NHWC pass above) on given patches."""
    with torch.no_grad():
        x = torch.from_numpy(np.asarray(patches, np.float32))[:, None]
        return synth["raw"].network(x).numpy()


def test_embedder_end_to_end_equals_numpy(synth):
    x = sine(1000.0, 3.0, amplitude=1.0)
    emb, ts = synth["raw"].embed(x, SR)
    assert emb.shape == (3, 128) and emb.dtype == np.float32
    np.testing.assert_array_equal(ts, [0.0, 0.96, 1.92])
    # NumPy reference front end -> network: the whole pipeline, in pieces tested separately.
    want = network_on(synth, ref_patches(x))
    np.testing.assert_allclose(emb, want, rtol=0, atol=NETWORK_TOL * np.abs(want).max())


def test_embed_in_chunks_equals_one_batch(synth):
    x = np.random.default_rng(3).uniform(-0.5, 0.5, 3 * SR).astype(np.float32)
    whole = synth["raw"].forward(torch.from_numpy(x)[None])[0].detach().numpy()
    chunked = V.VGGishEmbedder(batch_size=2)
    chunked.network = synth["raw"].network
    emb, ts = chunked.embed(x, SR)
    assert emb.shape == (3, 128) and len(ts) == 3
    # equal up to float32 summation order (BLAS blocks differ with the batch size)
    np.testing.assert_allclose(emb, whole, rtol=0, atol=1e-5 * np.abs(whole).max())


def test_short_clip_is_padded_and_flagged(synth, caplog):
    x = sine(500.0, 0.5)
    with caplog.at_level(logging.WARNING, logger="perceptual_audio.embeddings.vggish"):
        emb, ts = synth["raw"].embed(x, SR)
    assert emb.shape == (1, 128) and np.all(np.isfinite(emb))
    np.testing.assert_array_equal(ts, [0.0])
    assert "clip of 8000 samples (0.500 s) is shorter than one patch (15600 samples" in caplog.text
    assert synth["raw"].flags(8000) == ["short"] and synth["raw"].flags(15600) == []
    padded = np.concatenate([x, np.zeros(15600 - 8000, np.float32)])
    want = network_on(synth, ref_patches(padded))
    np.testing.assert_allclose(emb, want, rtol=0, atol=NETWORK_TOL * np.abs(want).max())
    assert synth["raw"].embed(np.zeros(10, np.float32), SR)[0].shape == (1, 128)


def test_final_relu_option(synth):
    x = torch.from_numpy(sine(700.0, 1.0))[None]
    raw = synth["raw"].forward(x)
    assert (raw < 0).any()  # otherwise this test could not fail
    torch.testing.assert_close(synth["relu"].forward(x), torch.relu(raw), rtol=0, atol=0)
    assert synth["relu"].info()["variant"] == "vggish-relu"
    assert synth["raw"].info()["variant"] == "vggish"


def test_pca_quantization_semantics():
    x = torch.tensor([[-3.0, -2.0, -1.99, 0.0, 1.0, 1.999, 2.0, 5.0]])
    got = V.pca_quantize(x, torch.eye(8), torch.zeros(8))
    # truncation, not rounding: 0 -> 127.5 -> 127; 1 -> 191.25 -> 191; 1.999 -> 254.94 -> 254
    assert got.dtype == torch.float32
    assert got.tolist() == [[0.0, 0.0, 0.0, 127.0, 191.0, 254.0, 255.0, 255.0]]
    eigen, means = synthetic_pca()
    raw = np.random.default_rng(5).standard_normal((50, 128))
    got = V.pca_quantize(torch.from_numpy(raw), torch.from_numpy(eigen), torch.from_numpy(means))
    np.testing.assert_array_equal(got.numpy(), np_postprocess(raw, eigen, means).astype(np.float32))


@pytest.mark.parametrize("variant", ["pca_url", "pca_npz"])
def test_postprocess_through_weights_path(synth, variant):
    embedder = synth[variant]
    x = sine(1000.0, 3.0, amplitude=1.0)
    raw = synth["raw"].embed(x, SR)[0]
    got, _ = embedder.embed(x, SR)
    want = np_postprocess(raw.astype(np.float64), synth["eigen"], synth["means"])
    assert got.dtype == np.float32 and set(np.unique(got)) <= set(range(256))
    np.testing.assert_array_equal(got, want.astype(np.float32))
    info = embedder.info()
    assert info["postprocess"] is True and info["variant"] == "vggish-pca"
    source = synth["pca_pth"] if variant == "pca_url" else synth["npz"]
    assert info["pca_weights_sha256"] == sha256_file(source)
    assert info["weights_files"] == ["vggish-10086976.pth", source.name]
    model_sha = sha256_file(synth["model_file"])
    assert info["model_weights_sha256"] == model_sha
    assert info["weights_sha256"] == weights.combined_sha256([model_sha, sha256_file(source)])


def test_pca_pickled_by_numpy1_loads(tmp_path):
    eigen, means = synthetic_pca()
    path = tmp_path / "vggish_pca_params-970ea276.pth"
    save_legacy_numpy1_pickle({"pca_eigen_vectors": eigen, "pca_means": means}, path)
    assert b"numpy.core.multiarray" in path.read_bytes()
    pca = V.convert_torchvggish_pca(path)
    np.testing.assert_array_equal(pca["pca_eigen_vectors"].numpy(), eigen)
    np.testing.assert_array_equal(pca["pca_means"].numpy(), means)


def test_conversion_rejects_wrong_keys_and_shapes(tmp_path):
    path = tmp_path / "vggish-10086976.pth"
    torch.save({"features.0.weight": torch.zeros(64, 1, 3, 3)}, path)
    with pytest.raises(
        WeightsVerificationError, match=r"unexpected keys; missing \['features.0.bias'"
    ):
        V.convert_torchvggish_model(path)
    bad = {k: torch.zeros(1) for k in V.TORCHVGGISH_MODEL_SHAPES}
    torch.save(bad, path)
    with pytest.raises(
        WeightsVerificationError,
        match=r"tensor 'features.0.weight' has shape \(1,\), expected \(64, 1, 3, 3\)",
    ):
        V.convert_torchvggish_model(path)
    npz = tmp_path / "vggish_pca_params.npz"
    np.savez(npz, pca_eigen_vectors=np.zeros((128, 127)), pca_means=np.zeros(128))
    with pytest.raises(
        WeightsVerificationError,
        match=r"'pca_eigen_vectors' has shape \(128, 127\), expected \(128, 128\)",
    ):
        V.convert_google_pca_npz(npz)
    path.write_bytes(b"not a pickle")
    with pytest.raises(WeightsVerificationError, match="cannot be read as a torch state dict"):
        V.convert_torchvggish_model(path)


def test_sha256_prefix_of_the_official_name_is_verified(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    (tmp_path / "vggish-10086976.pth").write_bytes(b"same name, other bytes")
    with pytest.raises(WeightsVerificationError, match="expected sha256 prefix 10086976, received"):
        V.VGGishEmbedder(weights_dir=tmp_path).load()


def test_offline_without_files_names_urls_and_paths(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(weights.CACHE_ENV, str(cache))
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    empty = tmp_path / "empty"
    empty.mkdir()
    embedder = V.VGGishEmbedder(postprocess=True, weights_dir=empty)
    with pytest.raises(WeightsUnavailableError) as err:
        embedder.forward(torch.zeros(1, 16000))
    msg = str(err.value)
    assert msg.startswith("vggish weights are unavailable: vggish-10086976.pth is not in")
    for wf in (V.MODEL_WEIGHTS, V.PCA_WEIGHTS, V.GOOGLE_PCA_WEIGHTS):
        assert f"download: {wf.url}" in msg
        assert f"save as:  {cache / 'vggish' / wf.filename}" in msg
        assert f"or as:    {empty / wf.filename}" in msg
    assert (
        "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
        in msg
    )
    assert "needs one of two PCA parameter files" in msg
    assert embedder.network is None  # nothing random was ever built


# -- interface --------------------------------------------------------------------------------
def test_registry_options_and_info():
    e = base.get_embedder("vggish", postprocess=False, resampler="resampy")
    assert isinstance(e, V.VGGishEmbedder) and e.sample_rate == 16000
    assert "vggish" in base.model_names()
    info = e.info()
    assert info["hop_seconds"] == 0.96 and info["embedding_size"] == 128
    assert info["resampler"] == "resampy" and info["weights_sha256"] is None
    np.testing.assert_allclose(e.timestamps(48000), [0.0, 0.96, 1.92])
    with pytest.raises(
        ParameterError, match=r"resampler must be one of \('soxr', 'resampy'\), got 'sinc'"
    ):
        V.VGGishEmbedder(resampler="sinc")


def test_resampler_option(rng):
    import resampy

    from perceptual_audio.audio_io import resample

    x = rng.uniform(-0.5, 0.5, 22050).astype(np.float32)
    with_resampy = V.VGGishEmbedder(resampler="resampy").resample_numpy(x, 22050)
    np.testing.assert_array_equal(
        with_resampy, resampy.resample(x, 22050, 16000).astype(np.float32)
    )
    with_soxr = V.VGGishEmbedder().resample_numpy(x, 22050)
    np.testing.assert_array_equal(with_soxr, resample(x, 22050, 16000))
    assert len(with_soxr) == 16000


def test_gradients_and_features(synth):
    x = torch.from_numpy(sine(440.0, 2.0))[None].repeat(2, 1)
    x[1, :4000] = 0.0  # exact zeros: |rfft| has a kink at 0, its gradient must stay finite
    x.requires_grad_(True)
    feats = synth["raw"].features(x)
    assert feats["log_mel"].shape == (2, 2, 96, 64)
    assert feats["conv1"].shape == (2, 2, 64, 96, 64)
    assert feats["conv2"].shape == (2, 2, 128, 48, 32)
    assert feats["conv3"].shape == (2, 2, 256, 24, 16)
    assert feats["conv4"].shape == (2, 2, 512, 12, 8)
    assert feats["fc1"].shape == feats["fc2"].shape == (2, 2, 4096)
    torch.testing.assert_close(feats["embedding"], synth["raw"].forward(x))
    loss = feats["embedding"].pow(2).sum() + feats["conv2"].mean()
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_bad_input_messages(synth):
    with pytest.raises(
        ParameterError, match=r"waveform must be a \(B, n\) tensor at 16000 Hz, got \(16000,\)"
    ):
        synth["raw"].forward(torch.zeros(16000))
    with pytest.raises(ParameterError, match=r"waveform must be 1-D \(n,\), got shape \(2, 100\)"):
        synth["raw"].embed(np.zeros((2, 100), np.float32), SR)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu_without_tf32(synth):
    gpu = V.VGGishEmbedder(device="cuda")
    gpu._set_network(synth["sd"])
    gpu.weights_sha256 = dict(synth["raw"].weights_sha256)
    x = torch.from_numpy(
        np.random.default_rng(11).uniform(-0.5, 0.5, (2, 3 * SR)).astype(np.float32)
    )
    want = synth["raw"].forward(x)
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default, which VGGish must override
    got = gpu.forward(x.cuda()).cpu()
    assert torch.backends.cudnn.allow_tf32 is True  # restored after the call
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5 * want.abs().max().item())
    emb, _ = gpu.embed(x[0].numpy(), SR)
    np.testing.assert_allclose(emb, want[0].numpy(), rtol=0, atol=1e-5 * want.abs().max().item())


# -- Google's smoke test, with the real weights only ----------------------------------------------
@pytest.fixture
def real_weights_dir():
    wdir = os.environ.get("PERCEPTUAL_AUDIO_WEIGHTS_DIR")
    try:
        weights.resolve_weight_files(
            [V.MODEL_WEIGHTS, V.PCA_WEIGHTS], weights_dir=wdir, download=False
        )
    except WeightsUnavailableError:
        pytest.skip(
            "real VGGish weights (vggish-10086976.pth, vggish_pca_params-970ea276.pth) are "
            "not in $PERCEPTUAL_AUDIO_WEIGHTS_DIR nor the cache; they cannot be downloaded "
            "on this machine"
        )
    return None if wdir is None else Path(wdir)


def test_google_smoke_test_statistics(real_weights_dir):
    t = np.arange(0, 3, 1 / SR)
    x = np.sin(2 * np.pi * 1000 * t)
    raw, _ = V.VGGishEmbedder(weights_dir=real_weights_dir).embed(x, SR)
    post, _ = V.VGGishEmbedder(postprocess=True, weights_dir=real_weights_dir).embed(x, SR)
    assert raw.shape == post.shape == (3, 128)
    # vggish_smoke_test.py: measured by Google with TF 2.8 and 2.13, relative tolerance 10%
    np.testing.assert_allclose([raw.mean(), raw.std()], [0.000657, 0.343], rtol=0.1)
    np.testing.assert_allclose([post.mean(), post.std()], [126.0, 89.3], rtol=0.1)
