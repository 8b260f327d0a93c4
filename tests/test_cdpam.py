"""CDPAM adapter: verified loading, parity with the cdpam package, frames, distance, gradients.

The model is slow on CPU (about 200 GFLOP, 1.1 s on 2 cores, per second of audio), so every
clip here is at most 0.3 s long, windows are short, and one loaded model is shared by the
whole module.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import io
import math

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip(
    "cdpam.models", reason="the cdpam package (trained CDPAM model) is not installed"
)

from perceptual_audio.audio_io import resample_resampy02
from perceptual_audio.embeddings import cdpam as cdpam_mod  # noqa: E402
from perceptual_audio.embeddings.base import get_embedder  # noqa: E402
from perceptual_audio.embeddings.cdpam import (  # noqa: E402
    ACOUSTIC_DIM,
    DOWNSAMPLING,
    ENCODER_DIM,
    INT16_SCALE,
    SAMPLE_RATE,
    WEIGHTS_SHA256,
    CDPAMEmbedder,
    default_weights_path,
    read_verified_weights,
)
from perceptual_audio.errors import (  # noqa: E402
    ParameterError,
    WeightsUnavailableError,
    WeightsVerificationError,
)

#: Left out of ``make test-fast``: the real CDPAM network on audio.
pytestmark = pytest.mark.slow

#: Tolerance of adapter vs package computations (same float32 operations, different batching).
PARITY_RTOL = 1e-5
PARITY_ATOL = 1e-6

#: Frame layout of the shared embedder: 1764 / 882 samples at 22.05 kHz.
WINDOW_SECONDS = 0.08
HOP_SECONDS = 0.04


def speech_like(seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A harmonic, speech-like test signal: gliding f0 (110-190 Hz), 25 harmonics shaped by
    two formant-like bumps (500 Hz, 1500 Hz), a 4 Hz syllabic envelope, peak 0.5."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    f0 = 150.0 + 40.0 * np.sin(2 * np.pi * 1.3 * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    y = np.zeros(n)
    for k in range(1, 26):
        fk = 150.0 * k
        if fk >= sample_rate / 2:
            break
        gain = np.exp(-(((fk - 500.0) / 300.0) ** 2)) + 0.5 * np.exp(
            -(((fk - 1500.0) / 400.0) ** 2)
        )
        y += (gain + 0.02) / k * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    y *= 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t) ** 2
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


def add_white_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``x`` plus white Gaussian noise scaled to ``snr_db`` dB SNR (signal power / noise power)."""
    noise = rng.standard_normal(len(x))
    noise *= math.sqrt(np.mean(x.astype(np.float64) ** 2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (x + noise).astype(np.float32)


@pytest.fixture(scope="module")
def embedder() -> CDPAMEmbedder:
    """One loaded model for the module (short windows so that short clips have frames)."""
    e = CDPAMEmbedder(window_seconds=WINDOW_SECONDS, hop_seconds=HOP_SECONDS)
    e.load()
    return e


@pytest.fixture(scope="module")
def package_encoder(embedder: CDPAMEmbedder):
    """The package's own ``base_encoder.forward`` on the loaded weights: the reference."""
    return embedder.model.base_encoder.forward


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20210601)


# -- weights ---------------------------------------------------------------------------------------
def test_tampered_weights_are_refused_before_unpickling(tmp_path, monkeypatch):
    fake = tmp_path / "scratchJNDdefault_best_model.pth"
    fake.write_bytes(b"not the CDPAM checkpoint")
    digest = hashlib.sha256(fake.read_bytes()).hexdigest()

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load was called on an unverified file")

    monkeypatch.setattr(torch, "load", forbidden)
    with pytest.raises(WeightsVerificationError) as info:
        CDPAMEmbedder(weights_path=fake).load()
    msg = str(info.value)
    assert str(fake) in msg
    assert f"has sha256 {digest}, expected {WEIGHTS_SHA256}; refusing to unpickle it" in msg


def test_missing_weights_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "model.pth"
    with pytest.raises(WeightsUnavailableError, match=f"weights file '{missing}' does not exist"):
        read_verified_weights(missing)


def test_restricted_unpickler_refuses_foreign_globals_and_reads_tensors():
    buf = io.BytesIO()
    torch.save({"state": {"w": torch.arange(3.0)}, "extra": collections.Counter("aab")}, buf)
    with pytest.raises(
        WeightsVerificationError,
        match=r"x\.pth: cdpam checkpoint: refusing to unpickle global collections\.Counter",
    ):
        cdpam_mod.unpickle_checkpoint(buf.getvalue(), "x.pth")

    ok = io.BytesIO()
    torch.save({"state": {"w": torch.arange(3.0)}}, ok)
    loaded = cdpam_mod.unpickle_checkpoint(ok.getvalue(), "ok.pth")
    assert torch.equal(loaded["state"]["w"], torch.arange(3.0))


def test_weights_dir_file_is_used_and_verified(tmp_path, monkeypatch):
    (tmp_path / "cdpam").mkdir()
    fake = tmp_path / "cdpam" / "scratchJNDdefault_best_model.pth"
    fake.write_bytes(b"\x80\x02fake")
    e = CDPAMEmbedder(weights_dir=tmp_path)
    assert e.weights_path == fake
    assert e.info()["weights_file"] == str(fake)
    with pytest.raises(WeightsVerificationError, match="refusing to unpickle it"):
        e.load()
    # A weights dir without the file falls back to the installed package.
    assert CDPAMEmbedder(weights_dir=tmp_path / "empty").weights_path is None


def test_loaded_model_is_the_verified_package_checkpoint(embedder):
    assert embedder.info()["weights_sha256"] == WEIGHTS_SHA256
    assert not embedder.model.training
    assert all(not p.requires_grad for p in embedder.model.parameters())
    assert all(p.device.type == "cpu" for p in embedder.model.parameters())
    # The loaded tensors are the checkpoint's, not FINnet's random initialisation.
    state, digest = read_verified_weights(default_weights_path())
    assert digest == WEIGHTS_SHA256
    for key in (
        "base_encoder.encoder.0.weight",
        "base_encoder.ebatch.15.running_var",
        "model_dist.chan_w.3",
    ):
        assert torch.equal(embedder.model.state_dict()[key], state[key])


# -- parity with the cdpam package ----------------------------------------------------------------
def test_distance_equals_original_cdpam(embedder, monkeypatch, rng):
    import cdpam

    # cdpam 0.0.6 calls torch.load without weights_only; current torch defaults to True.
    monkeypatch.setattr(torch, "load", functools.partial(torch.load, weights_only=False))
    original = cdpam.CDPAM(dev="cpu")
    # What cdpam.load_audio would give: 22.05 kHz audio on the int16 grid.
    clean = [embedder.preprocess(speech_like(0.1, SAMPLE_RATE, rng), SAMPLE_RATE) for _ in range(2)]
    noisy = [
        embedder.preprocess(add_white_noise(c, snr, rng), SAMPLE_RATE)
        for c, snr in zip(clean, (20.0, 5.0), strict=True)
    ]
    ref, deg = torch.from_numpy(np.stack(clean)), torch.from_numpy(np.stack(noisy))
    with torch.no_grad():
        expected = original.forward(ref * INT16_SCALE, deg * INT16_SCALE)
        got = embedder.distance(ref, deg)
    assert got.shape == (2,)
    assert (expected > 0).all()
    torch.testing.assert_close(got, expected, rtol=PARITY_RTOL, atol=PARITY_ATOL)

    # The NumPy path's stored clip embeddings give the same distance.
    _, _, clip_ref = embedder.embed_with_clip(clean[1], SAMPLE_RATE)
    frames, timestamps, extras = embedder.embed_with_extras(noisy[1], SAMPLE_RATE)
    clip_deg = extras["clip"]
    assert frames.shape == (len(timestamps), ACOUSTIC_DIM) and frames.dtype == np.float32
    assert clip_ref.shape == (ACOUSTIC_DIM,) and clip_ref.dtype == np.float32
    assert np.linalg.norm(clip_ref) == pytest.approx(1.0, abs=1e-5)
    from_stored = embedder.distance_from_embeddings(clip_ref, clip_deg)
    assert from_stored.shape == ()
    torch.testing.assert_close(from_stored, expected[1], rtol=PARITY_RTOL, atol=PARITY_ATOL)


def test_distance_of_identical_inputs_is_zero(embedder, rng):
    x = torch.from_numpy(speech_like(0.1, SAMPLE_RATE, rng))
    with torch.no_grad():
        d = embedder.distance(x, x.clone())
    assert d.shape == ()
    assert d.item() == 0.0


def test_distance_grows_with_noise(embedder, rng):
    sr = 16000  # the pipeline's clean audio rate: exercises the resampy path
    clean = speech_like(0.3, sr, rng)
    clips = [clean] + [add_white_noise(clean, snr_db, rng) for snr_db in (30.0, 15.0, 5.0)]
    batch = torch.from_numpy(np.stack([embedder.preprocess(c, sr) for c in clips]))
    with torch.no_grad():
        emb = embedder.clip_embedding(batch)  # one encoder call for the four clips
        d30, d15, d5 = embedder.distance_from_embeddings(emb[:1].expand(3, -1), emb[1:]).tolist()
    assert 0 < d30 < d15 < d5, (d30, d15, d5)


def test_preprocess_matches_cdpam_load_audio(embedder, tmp_path, monkeypatch, rng):
    import cdpam

    x = speech_like(0.2, SAMPLE_RATE, rng)
    path = tmp_path / "a.wav"
    sf.write(str(path), x, SAMPLE_RATE, subtype="FLOAT")
    monkeypatch.setattr(np, "float", float, raising=False)  # removed from NumPy, used by cdpam
    expected = cdpam.load_audio(str(path))
    assert expected.shape == (1, len(x))
    np.testing.assert_array_equal(embedder.preprocess(x, SAMPLE_RATE) * INT16_SCALE, expected[0])

    # Resampling: librosa < 0.10's default (resampy 0.2 kaiser_best, length ceil(n * ratio)).
    y = speech_like(0.2, 16000, rng)
    reference = resample_resampy02(y, 16000, SAMPLE_RATE)
    reference = np.pad(reference, (0, math.ceil(len(y) * SAMPLE_RATE / 16000) - len(reference)))
    got = embedder.resample_numpy(y, 16000)
    assert len(got) == math.ceil(len(y) * SAMPLE_RATE / 16000) == len(reference)
    np.testing.assert_allclose(got, reference, rtol=0, atol=1e-6)
    soxr_embedder = CDPAMEmbedder(resampler="soxr")
    assert len(soxr_embedder.resample_numpy(y, 16000)) == round(len(y) * SAMPLE_RATE / 16000)


# -- frames ---------------------------------------------------------------------------------------------
def test_frames_are_window_means_of_the_whole_clip_feature_map(embedder, package_encoder, rng):
    n = 4000  # windows at 0, 882, 1764, 2646 (the last one cut at 4000)
    x = torch.from_numpy(speech_like(n / SAMPLE_RATE, SAMPLE_RATE, rng))[None]
    with torch.no_grad():
        frames, clip = embedder.forward_with_clip(x)
        fmap = embedder.features(x, layers=["layer15"])["layer15"][:, :, ::2]  # (1, 1024, L)
        pooled_ref, acoustic_ref, _ = package_encoder(x[:, None] * INT16_SCALE)

    window, hop = embedder.window_samples, embedder.hop_samples
    assert (window, hop) == (1764, 882)
    starts = np.arange(4) * hop
    np.testing.assert_array_equal(embedder.timestamps(n), starts / SAMPLE_RATE)
    assert frames.shape == (1, 4, ACOUSTIC_DIM)
    assert fmap.shape[-1] == math.ceil(n / DOWNSAMPLING)

    sample_of_position = np.arange(fmap.shape[-1]) * DOWNSAMPLING
    for t, start in enumerate(starts):
        mask = torch.from_numpy(
            (sample_of_position >= start) & (sample_of_position < start + window)
        )
        expected = fmap[0][:, mask].mean(dim=1)[:ACOUSTIC_DIM]
        torch.testing.assert_close(frames[0, t], expected, rtol=PARITY_RTOL, atol=1e-5)
    # The clip embedding is the package's pooled acoustic half, L2-normalised.
    torch.testing.assert_close(
        clip, torch.nn.functional.normalize(acoustic_ref, dim=1), rtol=PARITY_RTOL, atol=PARITY_ATOL
    )
    torch.testing.assert_close(fmap.mean(dim=2), pooled_ref, rtol=PARITY_RTOL, atol=1e-5)


def test_chunked_encoding_equals_whole_clip(embedder, rng):
    x = torch.from_numpy(speech_like(0.15, SAMPLE_RATE, rng))[None]  # 3308 samples
    chunked = CDPAMEmbedder(
        window_seconds=WINDOW_SECONDS, hop_seconds=HOP_SECONDS, chunk_seconds=0.05
    )
    whole = CDPAMEmbedder(
        window_seconds=WINDOW_SECONDS, hop_seconds=HOP_SECONDS, chunk_seconds=None
    )
    assert chunked.chunk_samples == 1088  # 0.05 s rounded down to a multiple of 16 samples
    with torch.no_grad():
        f_chunk, c_chunk = chunked.forward_with_clip(x)  # 3308 > 1088 + 2 * 1024: 4 chunks
        f_whole, c_whole = whole.forward_with_clip(x)
    assert f_whole.shape == (1, 3, ACOUSTIC_DIM)  # frames straddle the chunk borders
    torch.testing.assert_close(f_chunk, f_whole, rtol=PARITY_RTOL, atol=1e-5)
    torch.testing.assert_close(c_chunk, c_whole, rtol=PARITY_RTOL, atol=PARITY_ATOL)


#: Fast encoder vs the package's loop (folded BN, strides, FFT convolutions: float32 rounding
#: in a different order). Measured on speech-like audio: about 1e-6 of the scale of the feature
#: map and 3e-7 of the pooled embeddings (docs/performance.md).
FAST_RTOL = 1e-5
FAST_ATOL = 1e-5


@pytest.mark.parametrize("encoder", ["fast", "direct"])
def test_fast_encoders_equal_the_package_loop(embedder, package_encoder, encoder, rng):
    # 0.4 s at 16 kHz (the pipeline's rate): crosses several FFT blocks at every depth, and
    # an odd length exercises the strided decimation's last sample.
    x = embedder.preprocess(speech_like(0.4, 16000, rng), 16000)[None]
    x = torch.from_numpy(x[:, : x.shape[1] - 1 if x.shape[1] % 2 == 0 else x.shape[1]])
    full = CDPAMEmbedder(
        window_seconds=WINDOW_SECONDS, hop_seconds=HOP_SECONDS, part="full", encoder=encoder
    )
    reference = CDPAMEmbedder(
        window_seconds=WINDOW_SECONDS, hop_seconds=HOP_SECONDS, part="full", encoder="reference"
    )
    acoustic = CDPAMEmbedder(
        window_seconds=WINDOW_SECONDS, hop_seconds=HOP_SECONDS, encoder=encoder
    )
    with torch.no_grad():
        fmap = full._encode(x * INT16_SCALE, acoustic_only=False)
        fmap_ref, _ = reference._encoder_blocks(x * INT16_SCALE)
        pooled_ref, acoustic_ref, _ = package_encoder(x[:, None] * INT16_SCALE)
        f_full, c_full = full.forward_with_clip(x)
        f_ref, c_ref = reference.forward_with_clip(x)
        f_ac, c_ac = acoustic.forward_with_clip(x)
    assert fmap.shape == fmap_ref.shape == (1, ENCODER_DIM, math.ceil(x.shape[1] / DOWNSAMPLING))
    scale = fmap_ref.abs().max()
    assert ((fmap - fmap_ref).abs().max() / scale).item() < FAST_RTOL
    torch.testing.assert_close(fmap.mean(dim=2), pooled_ref, rtol=FAST_RTOL, atol=FAST_ATOL)
    torch.testing.assert_close(f_full, f_ref, rtol=FAST_RTOL, atol=FAST_ATOL)
    torch.testing.assert_close(f_ac, f_ref[..., :ACOUSTIC_DIM], rtol=FAST_RTOL, atol=FAST_ATOL)
    expected_clip = torch.nn.functional.normalize(acoustic_ref, dim=1)
    for clip in (c_full, c_ref, c_ac):
        torch.testing.assert_close(clip, expected_clip, rtol=PARITY_RTOL, atol=PARITY_ATOL)
    assert full.info()["encoder"] == encoder


@pytest.mark.parametrize("shape", [(3, 5, 15), (4, 6, 8)])
def test_spectral_weights_are_the_float64_block_matrix_rounded_once(shape):
    from perceptual_audio.embeddings.cdpam.encoder import _spectral

    w = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    spec = torch.conj(torch.fft.rfft(w, n=32, dim=-1)).permute(2, 0, 1)  # (F, Cout, Cin)
    re, im = spec.real, spec.imag
    block = torch.cat([torch.cat([re, -im], dim=2), torch.cat([im, re], dim=2)], dim=1)
    got = _spectral(w, 32)
    assert got.dtype == torch.float32 and got.is_contiguous()
    assert torch.equal(got, block.float())  # bit for bit: only the memory layout changed


def test_fast_encoder_result_does_not_depend_on_the_batch(embedder, rng):
    a = torch.from_numpy(speech_like(0.1, SAMPLE_RATE, rng))
    b = torch.from_numpy(speech_like(0.1, SAMPLE_RATE, rng))
    with torch.no_grad():
        alone = embedder.clip_embedding(a[None])
        batched = embedder.clip_embedding(torch.stack([b, a]))
    assert torch.equal(batched[1:], alone)


def test_windows_framing_encodes_each_zero_padded_window(embedder, package_encoder, rng):
    e = CDPAMEmbedder(window_seconds=0.05, hop_seconds=0.025, framing="windows", part="full")
    assert (e.window_samples, e.hop_samples) == (1102, 551)
    n = 1500  # windows [0, 1102) and [551, 1653), the second zero-padded after 1500
    x = torch.from_numpy(speech_like(n / SAMPLE_RATE, SAMPLE_RATE, rng))[None]
    with torch.no_grad():
        frames = e.forward(x)
        padded = torch.nn.functional.pad(x, (0, 1653 - n))
        expected = torch.cat(
            [package_encoder(padded[:, None, s : s + 1102] * INT16_SCALE)[0] for s in (0, 551)]
        )
    assert frames.shape == (1, 2, ENCODER_DIM)
    np.testing.assert_array_equal(e.timestamps(n), [0.0, 551 / SAMPLE_RATE])
    torch.testing.assert_close(frames[0], expected, rtol=PARITY_RTOL, atol=1e-5)


def test_frame_count_and_timestamps_arithmetic():
    e = CDPAMEmbedder()  # 1 s windows, 0.5 s hop
    assert (e.window_samples, e.hop_samples) == (22050, 11025)
    assert e.n_frames(1) == 1
    assert e.n_frames(22050) == 1
    assert e.n_frames(22051) == 2
    assert e.n_frames(33075) == 2
    assert e.n_frames(33076) == 3
    np.testing.assert_array_equal(e.timestamps(66150), [0.0, 0.5, 1.0, 1.5, 2.0])


# -- gradients and features ---------------------------------------------------------------------------
def test_gradients_flow_to_the_waveform_not_the_weights(embedder, rng):
    clean = torch.from_numpy(speech_like(0.1, SAMPLE_RATE, rng))[None]
    noise = torch.from_numpy(rng.standard_normal(clean.shape).astype(np.float32))
    x = (clean + 0.01 * noise).requires_grad_(True)
    with torch.no_grad():
        clip_clean = embedder.clip_embedding(clean)
    frames, clip = embedder.forward_with_clip(x)
    d = embedder.distance_from_embeddings(clip_clean, clip)
    (grad_d,) = torch.autograd.grad(d.sum(), x, retain_graph=True)
    (frames.pow(2).mean() + d.sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().max() > 0
    assert all(p.grad is None for p in embedder.model.parameters())

    # First-order check of the distance gradient: a small step along it changes the distance
    # by <gradient, step>.
    step = 1e-4 * grad_d / grad_d.norm()
    with torch.no_grad():
        d1 = embedder.distance_from_embeddings(clip_clean, embedder.clip_embedding(x + step))
    assert (d1 - d).sum().item() == pytest.approx((grad_d * step).sum().item(), rel=0.2)


def test_features_by_layer_name(embedder):
    x = torch.zeros(2, 160)
    x[:, 40] = 0.5
    with torch.no_grad():
        feats = embedder.features(x)
    assert set(feats) == {f"layer{i:02d}" for i in range(16)} | {"pooled"}
    assert feats["layer00"].shape == (2, 64, 160)
    assert feats["layer03"].shape == (2, 128, 160)
    assert feats["layer04"].shape == (2, 128, 80)
    assert feats["layer11"].shape == (2, 512, 40)
    assert feats["layer15"].shape == (2, 1024, 20)
    assert feats["pooled"].shape == (2, ENCODER_DIM)
    with pytest.raises(ParameterError, match=r"unknown layer names \['conv1'\]"):
        embedder.features(x, layers=["layer00", "conv1"])


# -- interface and errors -------------------------------------------------------------------------------
def test_registry_and_info():
    e = get_embedder("cdpam", window_seconds=0.5, hop_seconds=0.25, part="full")
    assert isinstance(e, CDPAMEmbedder)
    info = e.info()
    assert info["model"] == "cdpam"
    assert info["variant"] == "scratchJNDdefault_best_model"
    # Window and hop are whole samples at 22.05 kHz.
    assert (info["window_samples"], info["hop_samples"]) == (11025, 5512)
    assert (info["window_seconds"], info["hop_seconds"]) == (0.5, 5512 / 22050)
    assert info["embedding_dim"] == ENCODER_DIM
    assert info["sample_rate"] == 22050
    assert info["weights_sha256"] == WEIGHTS_SHA256
    assert info["package_version"] == "0.0.6"
    assert CDPAMEmbedder().info()["embedding_dim"] == ACOUSTIC_DIM


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"window_seconds": 0.5, "hop_seconds": 0.75},
            "cdpam: hop_seconds must be > 0 and <= window_seconds=0.5, got 0.75",
        ),
        ({"hop_seconds": 0.0}, "cdpam: hop_seconds must be > 0 and <= window_seconds=1.0, got 0.0"),
        ({"window_seconds": 0.0001}, "cdpam: window_seconds must be at least"),
        (
            {"framing": "frames"},
            "cdpam: framing must be one of ('pooled', 'windows'), got 'frames'",
        ),
        (
            {"encoder": "winograd"},
            "cdpam: encoder must be one of ('fast', 'direct', 'reference'), got 'winograd'",
        ),
        (
            {"part": "both"},
            "cdpam: part must be one of ('acoustic', 'content', 'full'), got 'both'",
        ),
        (
            {"resampler": "scipy"},
            "cdpam: resampler must be one of ('resampy', 'soxr'), got 'scipy'",
        ),
        ({"chunk_seconds": -1.0}, "cdpam: chunk_seconds must be positive or None, got -1.0"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ParameterError) as info:
        CDPAMEmbedder(**options)
    assert str(info.value).startswith(message)


def test_bad_inputs_are_refused(embedder):
    with pytest.raises(
        ParameterError,
        match=r"cdpam.forward: waveform must have shape \(B, n\) "
        r"with n > 0, got \(100,\)",
    ):
        embedder.forward(torch.zeros(100))
    with pytest.raises(
        ParameterError,
        match=r"cdpam.distance: reference and degraded must be tensors of shape \(n,\) or "
        r"\(B, n\) with the same B, got \(100,\) and \(1, 100\)",
    ):
        embedder.distance(torch.zeros(100), torch.zeros(1, 100))
    with pytest.raises(ParameterError, match=r"got \(2, 100\) and ndarray of shape \(2, 100\)"):
        embedder.distance(torch.zeros(2, 100), np.zeros((2, 100)))
    with pytest.raises(ParameterError, match=r"got \(2, 512\) and \(2, 256\)"):
        embedder.distance_from_embeddings(np.ones((2, 512)), np.ones((2, 256)))
    with pytest.raises(
        ParameterError,
        match=r"cdpam.preprocess: waveform must be 1-D \(n,\) "
        r"with n > 0, got shape \(2, 3\)",
    ):
        embedder.embed(np.zeros((2, 3), dtype=np.float32), SAMPLE_RATE)


def test_distance_from_embeddings_per_frame_and_full_width(embedder, rng):
    a = rng.standard_normal((3, ENCODER_DIM)).astype(np.float32)
    b = rng.standard_normal((3, ENCODER_DIM)).astype(np.float32)
    per_row = embedder.distance_from_embeddings(a, b)
    assert per_row.shape == (3,)
    # Only the acoustic half matters, and the scale of an embedding does not.
    b2 = b.copy()
    b2[:, ACOUSTIC_DIM:] = 0
    torch.testing.assert_close(embedder.distance_from_embeddings(a, 3 * b2), per_row)
    assert embedder.distance_from_embeddings(a[0], a[0]).item() == 0.0
