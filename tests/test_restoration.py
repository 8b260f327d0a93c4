"""The restoration library: loss catalogue and optimisation by Adam."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perceptual_audio.embeddings.base import model_names
from perceptual_audio.errors import ParameterError
from perceptual_audio.restoration import (
    build_loss,
    describe_loss,
    loss_names,
    parse_loss_list,
    restore,
)
from perceptual_audio.restoration.optimise import stft

SR = 16000
#: SI-SDR gain (dB) that 60 Adam steps of the L1 loss on the waveform must reach on 0.5 s of a
#: tone in white noise at 10 dB SNR (measured 19 dB at 100 steps).
L1_SISDR_MARGIN_DB = 6.0


def _si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    e = estimate - estimate.mean()
    r = reference - reference.mean()
    target = (e @ r) / (r @ r) * r
    return float(10 * np.log10((target @ target) / ((e - target) @ (e - target))))


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(SR // 2) / SR
    clean = (0.3 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 3 * t)).astype(np.float32)
    noise = rng.standard_normal(clean.size).astype(np.float32)
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2)) / np.sqrt(10.0)  # 10 dB SNR
    return (clean + noise).astype(np.float32), clean


def test_catalogue_has_every_model_twice_and_the_baselines() -> None:
    names = loss_names()
    assert names[:4] == ["l1", "sisdr", "mrstft", "mel"]
    for model in model_names():
        assert model in names and f"{model}-deep" in names
    assert describe_loss("sisdr").metric == "si_sdr"
    assert describe_loss("cdpam").metric == "cdpam_distance"
    assert describe_loss("mrstft").package == "auraloss"
    assert describe_loss("cdpam-deep").model == "cdpam"


def test_unknown_loss_lists_the_valid_ones() -> None:
    with pytest.raises(ParameterError) as e:
        parse_loss_list("l1,nope")
    msg = str(e.value)
    assert msg.startswith("--restore: unknown loss 'nope'; valid losses: l1, sisdr, mrstft, mel")
    assert "cdpam-deep" in msg
    with pytest.raises(ParameterError, match="unknown loss 'x'; valid losses: l1"):
        describe_loss("x")
    assert parse_loss_list(" l1, mel ,l1") == ["l1", "mel"]
    with pytest.raises(ParameterError, match="--restore: give one or more losses"):
        parse_loss_list(" , ")


def test_l1_waveform_raises_si_sdr(pair) -> None:
    degraded, clean = pair
    result = restore(degraded, clean, loss=build_loss("l1", sample_rate=SR), mode="waveform",
                     steps=60, lr=1e-3)  # fmt: skip
    gain = _si_sdr(result.audio, clean) - _si_sdr(degraded, clean)
    assert gain >= L1_SISDR_MARGIN_DB
    assert result.loss_after < result.loss_before
    assert result.loss_before == pytest.approx(float(np.mean(np.abs(degraded - clean))), rel=1e-5)
    assert result.audio.dtype == np.float32 and result.audio.shape == degraded.shape


@pytest.mark.parametrize("name", ["sisdr", "mrstft", "mel"])
def test_baselines_reduce_their_loss_with_a_mask(pair, name: str) -> None:
    degraded, clean = pair
    result = restore(degraded, clean, loss=build_loss(name, sample_rate=SR), mode="mask", steps=15)
    assert result.loss_after < result.loss_before


def test_a_mask_never_adds_energy(pair) -> None:
    degraded, clean = pair
    # sisdr rewards any scale: nothing stops a mask that could add energy from doing so.
    result = restore(degraded, clean, loss=build_loss("sisdr", sample_rate=SR), steps=20, lr=0.5)
    gains = result.gains
    assert gains is not None and gains.min() >= 0.0 and gains.max() <= 1.0
    spec_in = stft(torch.from_numpy(degraded)).abs().numpy()
    assert gains.shape == spec_in.shape
    assert np.all(gains * spec_in <= spec_in)  # per bin, before the inverse STFT
    # The inverse STFT is an orthogonal projection (Hann, 75 % overlap): energy cannot grow.
    assert np.sum(result.audio.astype(np.float64) ** 2) <= np.sum(degraded.astype(np.float64) ** 2)
    spec_out = stft(torch.from_numpy(result.audio)).abs().numpy()
    assert np.sum(spec_out**2) <= np.sum((gains * spec_in) ** 2) * (1 + 1e-5)


def test_restore_is_deterministic(pair) -> None:
    degraded, clean = pair
    runs = [restore(degraded, clean, loss=build_loss("mel", sample_rate=SR), steps=5, seed=3)
            for _ in range(2)]  # fmt: skip
    np.testing.assert_array_equal(runs[0].audio, runs[1].audio)
    assert runs[0].loss_after == runs[1].loss_after


def test_bad_restore_arguments(pair) -> None:
    degraded, clean = pair
    loss = build_loss("l1", sample_rate=SR)
    with pytest.raises(ParameterError, match="steps must be a positive integer, got 0"):
        restore(degraded, clean, loss=loss, steps=0)
    with pytest.raises(ParameterError, match="mode must be one of mask, waveform, got 'x'"):
        restore(degraded, clean, loss=loss, mode="x")
    with pytest.raises(ParameterError, match="same length, got 8000 and 7999"):
        restore(degraded, clean[:-1], loss=loss)


@pytest.mark.slow
def test_cdpam_loss_backpropagates_through_the_fast_encoder_like_the_reference_loop(pair):
    """The restoration's CDPAM loss runs the fast encoder (FFT correlation on CPU); its value
    and its gradient equal the reference loop's (cdpam's base_encoder) to float32 rounding."""
    degraded, clean = pair
    x = torch.from_numpy(degraded[: SR // 4]).requires_grad_(True)
    ref = torch.from_numpy(clean[: SR // 4])
    out = {}
    for encoder in ("fast", "reference"):
        loss = build_loss("cdpam", sample_rate=SR, model_options={"encoder": encoder})
        x.grad = None
        value = loss(x, ref)
        value.backward()
        out[encoder] = (float(value), x.grad.detach().clone())
    assert out["fast"][0] == pytest.approx(out["reference"][0], rel=1e-4, abs=1e-6)
    g_fast, g_ref = out["fast"][1], out["reference"][1]
    assert float((g_fast - g_ref).norm() / g_ref.norm()) < 1e-3
