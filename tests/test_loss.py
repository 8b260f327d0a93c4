"""Perceptual losses: zero on identical inputs, monotone in degradation, exact gradients,
frozen weights, optimisation steps that reduce the loss, and the error messages.

Most tests use ``TinyEmbedder``, a seeded random two-layer conv net defined here as a test
fixture (fast, float64-capable, odd so that some losses have exact reference values). CDPAM
runs with its real weights; OpenL3 and VGGish with synthetic official-format weights (test
fixtures only: their numbers mean nothing about the real models).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from perceptual_audio.embeddings.base import Embedder
from perceptual_audio.embeddings.resample import resample
from perceptual_audio.errors import ParameterError, WeightsUnavailableError
from perceptual_audio.loss import DeepFeatureLoss, EmbeddingLoss

sys.path.insert(0, str(Path(__file__).resolve().parent))

SNRS_DB = (30.0, 15.0, 5.0)  # increasing degradation


# -- fixtures ----------------------------------------------------------------------------------
class TinyNet(nn.Module):
    """conv(1->4, k9, stride 4) -> tanh -> conv(4->6, k5, stride 2) -> tanh; no biases, so the
    network is odd: f(-x) = -f(x)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv1d(1, 4, 9, stride=4, bias=False)
        self.conv2 = nn.Conv1d(4, 6, 5, stride=2, bias=False)
        with torch.no_grad():
            self.conv1.weight.copy_(torch.randn(self.conv1.weight.shape, generator=g))
            self.conv2.weight.copy_(torch.randn(self.conv2.weight.shape, generator=g) / 3)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h1 = torch.tanh(self.conv1(x[:, None, :]))
        h2 = torch.tanh(self.conv2(h1))
        return {"conv1": h1, "conv2": h2}


class TinyEmbedder(Embedder):
    """Frames = the conv2 channel vectors (B, T, 6) of :class:`TinyNet`, at 24 kHz."""

    name = "tiny"
    sample_rate = 24000
    feature_channel_axis = 1

    def __init__(self, *, device: str | torch.device = "cpu") -> None:
        super().__init__(device=device)
        self.net = TinyNet().to(self.device)
        self.loads = 0

    def load(self) -> None:
        self.loads += 1

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.net.features(waveform.to(self.device))["conv2"].transpose(1, 2)

    def features(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.net.features(waveform.to(self.device))
        feats["embedding"] = feats["conv2"].transpose(1, 2)
        return feats

    def timestamps(self, n_samples: int) -> np.ndarray:
        return np.arange(((n_samples - 9) // 4 + 1 - 5) // 2 + 1) * 8 / self.sample_rate

    def info(self) -> dict[str, Any]:
        return {"model": self.name}


def speech_like(seconds: float, sample_rate: int, *, seed: int = 0) -> torch.Tensor:
    """A harmonic signal with a gliding pitch and a syllable-rate envelope, peak about 0.5."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sample_rate), dtype=torch.float64) / sample_rate
    f0 = 140 + 30 * torch.sin(2 * math.pi * 1.5 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sample_rate
    x = sum(torch.sin(k * phase + float(torch.rand(1, generator=g)) * 6) / k for k in range(1, 12))
    envelope = 0.55 + 0.45 * torch.sin(2 * math.pi * 4 * t)
    x = x * envelope
    return (0.5 * x / x.abs().max()).float()


def add_noise(clean: torch.Tensor, snr_db: float, *, seed: int = 1) -> torch.Tensor:
    """``clean`` plus white noise (the same realisation for every SNR) at ``snr_db``."""
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed))
    noise = noise * clean.norm() / noise.norm() / 10 ** (snr_db / 20)
    return clean + noise


def adam_steps(
    loss_fn: nn.Module, noisy: torch.Tensor, clean: torch.Tensor, *, steps: int, lr: float
) -> list[float]:
    """Optimise the waveform itself from ``noisy`` towards ``clean``; losses before each step
    and after the last."""
    x = noisy.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(x, clean)
        loss.backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().max() > 0
        losses.append(loss.item())
        opt.step()
    with torch.no_grad():
        losses.append(loss_fn(x, clean).item())
    return losses


@pytest.fixture
def tiny() -> TinyEmbedder:
    return TinyEmbedder()


# -- tiny model: exact properties ----------------------------------------------------------------
@pytest.mark.parametrize("distance", ["cosine", "l1", "l2"])
def test_identical_inputs_give_zero(tiny: TinyEmbedder, distance: str) -> None:
    x = speech_like(0.25, 16000)
    assert EmbeddingLoss(tiny, sample_rate=16000, distance=distance)(x, x).item() == pytest.approx(
        0, abs=1e-6
    )
    assert DeepFeatureLoss(tiny, sample_rate=16000)(x, x).item() == pytest.approx(0, abs=1e-6)


def test_negated_input_gives_reference_values(tiny: TinyEmbedder) -> None:
    # The tiny net is odd, so e(-x) = -e(x): cosine distance 2 per frame, every unit channel
    # vector flips (squared distance 4), l2 = mean((2 e)^2), l1 = mean |2 e|.
    x = speech_like(0.25, 24000)
    e = tiny.forward(x[None])
    assert EmbeddingLoss(tiny, sample_rate=24000)(-x, x).item() == pytest.approx(2.0, abs=1e-5)
    assert DeepFeatureLoss(tiny, sample_rate=24000)(-x, x).item() == pytest.approx(4.0, abs=1e-5)
    l2 = EmbeddingLoss(tiny, sample_rate=24000, distance="l2")(-x, x).item()
    assert l2 == pytest.approx((2 * e).pow(2).mean().item(), rel=1e-5)
    l1 = EmbeddingLoss(tiny, sample_rate=24000, distance="l1")(-x, x).item()
    assert l1 == pytest.approx((2 * e).abs().mean().item(), rel=1e-5)


def test_cosine_equals_one_minus_cosine_similarity(tiny: TinyEmbedder) -> None:
    x = speech_like(0.25, 24000)
    y = add_noise(x, 10.0)
    ex, ey = tiny.forward(x[None]), tiny.forward(y[None])
    expected = (1 - F.cosine_similarity(ey, ex, dim=-1)).mean().item()
    assert EmbeddingLoss(tiny, sample_rate=24000)(y, x).item() == pytest.approx(expected, rel=1e-5)


def test_resampling_happens_inside(tiny: TinyEmbedder) -> None:
    x16 = speech_like(0.25, 16000)
    y16 = add_noise(x16, 10.0)
    at16 = EmbeddingLoss(tiny, sample_rate=16000)(y16, x16)
    at24 = EmbeddingLoss(tiny, sample_rate=24000)(
        resample(y16, 16000, 24000), resample(x16, 16000, 24000)
    )
    assert at16.item() == pytest.approx(at24.item(), rel=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: EmbeddingLoss(m, sample_rate=16000, distance="cosine"),
        lambda m: EmbeddingLoss(m, sample_rate=16000, distance="l1"),
        lambda m: EmbeddingLoss(m, sample_rate=16000, distance="l2"),
        lambda m: DeepFeatureLoss(m, sample_rate=16000),
    ],
)
def test_larger_degradation_gives_larger_loss(tiny: TinyEmbedder, make) -> None:
    loss_fn = make(tiny)
    clean = speech_like(0.5, 16000)
    losses = [loss_fn(add_noise(clean, snr), clean).item() for snr in SNRS_DB]
    assert 0 < losses[0] < losses[1] < losses[2], losses


def test_reductions_and_batch_shapes(tiny: TinyEmbedder) -> None:
    clean = torch.stack([speech_like(0.2, 16000, seed=s) for s in range(3)])
    noisy = torch.stack([add_noise(clean[i], snr) for i, snr in enumerate(SNRS_DB)])
    none = EmbeddingLoss(tiny, sample_rate=16000, reduction="none")(noisy, clean)
    assert none.shape == (3,)
    for i in range(3):  # each batch item equals its own loss
        single = EmbeddingLoss(tiny, sample_rate=16000, reduction="none")(noisy[i], clean[i])
        assert single.shape == () and single.item() == pytest.approx(none[i].item(), rel=1e-5)
    assert EmbeddingLoss(tiny, sample_rate=16000)(noisy, clean).item() == pytest.approx(
        none.mean().item(), rel=1e-6
    )
    assert EmbeddingLoss(tiny, sample_rate=16000, reduction="sum")(
        noisy, clean
    ).item() == pytest.approx(none.sum().item(), rel=1e-6)
    dfl = DeepFeatureLoss(tiny, sample_rate=16000, reduction="none")(noisy, clean)
    assert dfl.shape == (3,) and torch.all(dfl > 0)


def test_deep_feature_layers_and_weights(tiny: TinyEmbedder) -> None:
    clean = speech_like(0.25, 16000)
    noisy = add_noise(clean, 10.0)
    default = DeepFeatureLoss(tiny, sample_rate=16000)
    total = default(noisy, clean).item()
    assert default.layers == ["conv1", "conv2"]  # "embedding" is left out by default
    d1 = DeepFeatureLoss(tiny, sample_rate=16000, layers=["conv1"])(noisy, clean).item()
    d2 = DeepFeatureLoss(tiny, sample_rate=16000, layers=["conv2"])(noisy, clean).item()
    assert total == pytest.approx((d1 + d2) / 2, rel=1e-6)
    weighted = DeepFeatureLoss(
        tiny, sample_rate=16000, layers=["conv1", "conv2"], layer_weights=[3.0, 0.5]
    )
    assert weighted(noisy, clean).item() == pytest.approx(3 * d1 + 0.5 * d2, rel=1e-6)
    by_name = DeepFeatureLoss(
        tiny,
        sample_rate=16000,
        layers=["conv1", "conv2"],
        layer_weights={"conv2": 1.0, "conv1": 0.0},
    )
    assert by_name(noisy, clean).item() == pytest.approx(d2, rel=1e-6)
    # by hand: unit channel vectors along axis 1 of (B, C, T), squared distance, mean over T
    fa, fb = (
        tiny.features(resample(noisy, 16000, 24000)[None]),
        tiny.features(resample(clean, 16000, 24000)[None]),
    )
    a, b = (
        fa["conv1"] / fa["conv1"].norm(dim=1, keepdim=True),
        fb["conv1"] / fb["conv1"].norm(dim=1, keepdim=True),
    )
    assert d1 == pytest.approx((a - b).pow(2).sum(1).mean().item(), rel=1e-5)


# -- gradients --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda m: EmbeddingLoss(m, sample_rate=16000, distance="cosine", reduction="sum"),
        lambda m: EmbeddingLoss(m, sample_rate=16000, distance="l2"),
        lambda m: EmbeddingLoss(m, sample_rate=16000, distance="l1", reduction="none"),
        lambda m: DeepFeatureLoss(m, sample_rate=16000, reduction="none"),
    ],
)
def test_gradcheck_float64_through_resampler_and_model(make) -> None:
    tiny = TinyEmbedder()
    tiny.net.double()
    loss_fn = make(tiny)
    g = torch.Generator().manual_seed(7)
    reference = torch.randn(2, 32, dtype=torch.float64, generator=g)
    estimate = (
        reference + 0.3 * torch.randn(2, 32, dtype=torch.float64, generator=g)
    ).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda e: loss_fn(e, reference), (estimate,), eps=1e-6, atol=1e-6, fast_mode=True
    )


def test_gradient_flows_to_both_inputs_when_asked(tiny: TinyEmbedder) -> None:
    clean = speech_like(0.2, 16000).requires_grad_(True)
    noisy = add_noise(clean.detach(), 10.0).requires_grad_(True)
    EmbeddingLoss(tiny, sample_rate=16000)(noisy, clean).backward()
    for x in (noisy, clean):
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_weights_frozen_and_stay_in_eval_mode(tiny: TinyEmbedder) -> None:
    tiny.net.train()
    loss_fn = EmbeddingLoss(tiny, sample_rate=16000)
    assert tiny.loads == 1
    assert not tiny.net.training
    assert all(not p.requires_grad for p in tiny.net.parameters())
    loss_fn.train()
    assert not tiny.net.training
    # the model's weights are not parameters or state of the loss module
    assert list(loss_fn.parameters()) == [] and loss_fn.state_dict() == {}
    x = add_noise(speech_like(0.2, 16000), 10.0).requires_grad_(True)
    loss_fn(x, speech_like(0.2, 16000)).backward()
    assert all(p.grad is None for p in tiny.net.parameters())


def test_adam_steps_reduce_the_loss_tiny(tiny: TinyEmbedder) -> None:
    clean = speech_like(0.25, 16000)
    noisy = add_noise(clean, 10.0)
    for loss_fn in (
        EmbeddingLoss(tiny, sample_rate=16000),
        DeepFeatureLoss(tiny, sample_rate=16000),
    ):
        losses = adam_steps(loss_fn, noisy, clean, steps=5, lr=2e-3)
        assert losses[-1] < 0.8 * losses[0], losses


class CountingEmbedder(TinyEmbedder):
    """:class:`TinyEmbedder` counting the waveforms it embeds or featurises."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().forward(waveform)

    def features(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        return super().features(waveform)


@pytest.mark.parametrize("cls", [EmbeddingLoss, DeepFeatureLoss])
def test_reference_features_computed_once_per_reference(cls) -> None:
    model = CountingEmbedder()
    loss_fn = cls(model, sample_rate=16000)
    clean = speech_like(0.2, 16000)
    noisy = add_noise(clean, 10.0)
    uncached = cls(TinyEmbedder(), sample_rate=16000)
    uncached.cache_reference = False
    values = []
    for _ in range(3):  # an optimiser's steps: the same reference every time
        x = noisy.clone().requires_grad_(True)
        value = loss_fn(x, clean.clone())  # an equal tensor, not the same object
        value.backward()
        values.append((value.item(), x.grad))
    assert model.calls == 3 + 1  # the estimate each time, the reference once
    y = noisy.clone().requires_grad_(True)
    expected = uncached(y, clean)
    expected.backward()
    for value, grad in values:  # cached features give exactly the uncached loss and gradient
        assert value == expected.item() and torch.equal(grad, y.grad)

    other = add_noise(clean, 30.0)
    loss_fn(noisy, other)  # another reference: computed again
    assert model.calls == 4 + 2
    other[100] += 0.25  # changed in place: computed again
    assert loss_fn(noisy, other).item() == pytest.approx(uncached(noisy, other).item(), abs=0)
    assert model.calls == 6 + 2
    wanted = clean.clone().requires_grad_(True)  # a reference that wants its gradient
    loss_fn(noisy, wanted).backward()
    assert wanted.grad is not None and wanted.grad.abs().sum() > 0


# -- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_rate": 0}, "EmbeddingLoss: sample_rate must be a positive integer in Hz, got 0"),
        (
            {"sample_rate": 16000.0},
            "EmbeddingLoss: sample_rate must be a positive integer in Hz, got 16000.0",
        ),
        (
            {"sample_rate": 16000, "distance": "l3"},
            "EmbeddingLoss: distance must be one of cosine, l1, l2, got 'l3'",
        ),
        (
            {"sample_rate": 16000, "reduction": "max"},
            "EmbeddingLoss: reduction must be one of mean, sum, none, got 'max'",
        ),
        (
            {"sample_rate": 16000, "device": "cpu"},
            r"EmbeddingLoss: model options \['device'\] can only be given with a model name",
        ),
    ],
)
def test_bad_construction_raises(tiny: TinyEmbedder, kwargs: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        EmbeddingLoss(tiny, **kwargs)


def test_bad_model_raises() -> None:
    with pytest.raises(ParameterError, match="unknown model 'wav2vec'"):
        EmbeddingLoss("wav2vec", sample_rate=16000)
    with pytest.raises(
        ParameterError, match="model must be a model name .str. or an Embedder, got int"
    ):
        EmbeddingLoss(3, sample_rate=16000)


def test_bad_inputs_raise(tiny: TinyEmbedder) -> None:
    loss_fn = EmbeddingLoss(tiny, sample_rate=16000)
    x = torch.zeros(2, 800)
    with pytest.raises(
        ParameterError,
        match=r"estimate and reference must have the same shape, got \(2, 800\) and \(800,\)",
    ):
        loss_fn(x, x[0])
    with pytest.raises(
        ParameterError,
        match=r"estimate must have shape \(n,\) or \(B, n\) with n > 0, got \(1, 2, 800\)",
    ):
        loss_fn(x[None], x[None])
    with pytest.raises(
        ParameterError, match="reference must be a floating-point tensor, got torch.int64"
    ):
        loss_fn(x, x.long())
    with pytest.raises(ParameterError, match="estimate must be a torch.Tensor, got ndarray"):
        loss_fn(x.numpy(), x)


def test_bad_layers_raise(tiny: TinyEmbedder) -> None:
    x = speech_like(0.1, 16000)
    with pytest.raises(
        ParameterError,
        match=r"unknown layers \['conv9'\] for tiny; features available: \['conv1', 'conv2', 'embedding'\]",
    ):
        DeepFeatureLoss(tiny, sample_rate=16000, layers=["conv9"])(x, x)
    with pytest.raises(
        ParameterError, match=r"one weight per layer \(2: \['conv1', 'conv2'\]\), got 1"
    ):
        DeepFeatureLoss(tiny, sample_rate=16000, layers=["conv1", "conv2"], layer_weights=[1.0])
    with pytest.raises(ParameterError, match="layer_weights must be >= 0"):
        DeepFeatureLoss(tiny, sample_rate=16000, layers=["conv1"], layer_weights=[-1.0])
    with pytest.raises(
        ParameterError, match="layers must be a non-empty sequence of names, got 'conv1'"
    ):
        DeepFeatureLoss(tiny, sample_rate=16000, layers="conv1")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu(tiny: TinyEmbedder) -> None:
    clean = speech_like(0.25, 16000)
    noisy = add_noise(clean, 10.0)
    loss_fn = EmbeddingLoss(tiny, sample_rate=16000)
    on_cpu = loss_fn(noisy, clean).item()
    loss_fn.to("cuda")
    assert tiny.device.type == "cuda" and next(tiny.net.parameters()).is_cuda
    x = noisy.cuda().requires_grad_(True)
    value = loss_fn(x, clean.cuda())
    value.backward()
    assert value.item() == pytest.approx(on_cpu, rel=1e-4) and x.grad.is_cuda


# -- real and synthetic-weight models --------------------------------------------------------------
@pytest.fixture(scope="module")
def cdpam_loss() -> EmbeddingLoss:
    try:
        return EmbeddingLoss("cdpam", sample_rate=16000)
    except (WeightsUnavailableError, ParameterError) as e:  # package or module missing
        pytest.skip(f"CDPAM unavailable: {e}")


@pytest.mark.slow
def test_cdpam_real_weights_identity_monotone_and_adam(cdpam_loss: EmbeddingLoss) -> None:
    clean = speech_like(0.3, 16000)
    assert cdpam_loss(clean, clean).item() == pytest.approx(0, abs=1e-6)
    losses = [cdpam_loss(add_noise(clean, snr), clean).item() for snr in SNRS_DB]
    assert 0 < losses[0] < losses[1] < losses[2], losses
    steps = adam_steps(cdpam_loss, add_noise(clean, 10.0), clean, steps=2, lr=2e-3)
    assert steps[-1] < steps[0], steps


@pytest.mark.slow
def test_cdpam_deep_feature_loss_real_weights(cdpam_loss: EmbeddingLoss) -> None:
    dfl = DeepFeatureLoss(
        cdpam_loss.embedder, sample_rate=16000, layers=["layer00", "layer07", "layer15"]
    )
    clean = speech_like(0.2, 16000)
    assert dfl(clean, clean).item() == pytest.approx(0, abs=1e-6)
    losses = [dfl(add_noise(clean, snr), clean).item() for snr in SNRS_DB]
    assert 0 < losses[0] < losses[1] < losses[2], losses


#: Fast CDPAM paths (the fast encoder, the cached reference) against the package's loop
#: recomputing the reference at every call, on 0.25 s at 16 kHz. Loss values: relative 1e-5
#: (measured: 5e-7 and 1.2e-7). Gradients: relative L2 error below 1e-3 and cosine above
#: 1 - 1e-6 (measured here: 3.0e-4 for EmbeddingLoss, 4.2e-4 for DeepFeatureLoss; the reference
#: loop's own float32 gradient is 3e-6 from float64 on a similar signal). A
#: per-sample tolerance would have to be loose: the gradient is as sensitive as that to
#: float32-size changes of the input whatever the encoder, because the LeakyReLU kinks flip
#: where an activation is within rounding of zero; moving the input by 3e-8 (1e-3 of an int16
#: step) moves the reference loop's own layer-10 gradient by 1e-3 of its largest sample
#: (measured), more than the fast path differs by.
CDPAM_VALUE_RTOL = 1e-5
CDPAM_GRAD_REL_L2 = 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("cls", [EmbeddingLoss, DeepFeatureLoss])
def test_cdpam_fast_paths_equal_the_reference_loop(cls) -> None:
    cdpam = pytest.importorskip("perceptual_audio.embeddings.cdpam")
    clean = speech_like(0.25, 16000)
    noisy = add_noise(clean, 10.0)
    framing = {"window_seconds": 0.08, "hop_seconds": 0.04}  # several frames in 0.25 s
    results = {}
    for encoder in ("fast", "reference"):
        try:
            loss_fn = cls(cdpam.CDPAMEmbedder(encoder=encoder, **framing), sample_rate=16000)
        except WeightsUnavailableError as e:
            pytest.skip(f"CDPAM unavailable: {e}")
        loss_fn.cache_reference = encoder == "fast"
        runs = []
        for _ in range(2):  # the second fast call reuses the cached reference
            x = noisy.clone().requires_grad_(True)
            value = loss_fn(x, clean)
            value.backward()
            runs.append((value.item(), x.grad))
        results[encoder] = runs
    (v_fast, g_fast), (v_fast2, g_fast2) = results["fast"]
    (v_ref, g_ref), _ = results["reference"]
    assert v_fast2 == v_fast and torch.equal(g_fast2, g_fast)
    assert v_fast == pytest.approx(v_ref, rel=CDPAM_VALUE_RTOL)
    assert v_ref > 0.05  # a real difference, not two zeros
    rel_l2 = ((g_fast - g_ref).norm() / g_ref.norm()).item()
    print(f"{cls.__name__}: value {v_fast!r} vs {v_ref!r}, gradient relative L2 {rel_l2:.2e}")
    assert rel_l2 < CDPAM_GRAD_REL_L2
    assert F.cosine_similarity(g_fast, g_ref, dim=0).item() > 1 - 1e-6


@pytest.fixture(scope="module")
def openl3_synthetic(tmp_path_factory) -> Embedder:
    ol3 = pytest.importorskip("perceptual_audio.embeddings.openl3")
    synthetic = pytest.importorskip("openl3_synthetic")
    root = tmp_path_factory.mktemp("openl3_synthetic_weights")
    wf = ol3.weight_file("mel128", "env")
    synthetic.write_keras_h5(root / wf.filename, synthetic.make_weights(seed=3))
    embedder = ol3.OpenL3Embedder(
        input_repr="mel128",
        content_type="env",
        embedding_size=512,
        hop_seconds=0.5,
        weights_dir=root,
        cache_dir=root / "cache",
        download=False,
    )
    embedder.load()
    return embedder


@pytest.mark.slow
def test_openl3_synthetic_weights(openl3_synthetic: Embedder) -> None:
    clean = speech_like(0.3, 16000)
    noisy = add_noise(clean, 10.0)
    loss_fn = EmbeddingLoss(openl3_synthetic, sample_rate=16000)
    assert loss_fn(clean, clean).item() == pytest.approx(0, abs=1e-6)
    steps = adam_steps(loss_fn, noisy, clean, steps=3, lr=2e-3)
    assert steps[-1] < steps[0], steps
    dfl = DeepFeatureLoss(openl3_synthetic, sample_rate=16000)
    assert dfl.channel_axis == 2
    assert dfl(clean, clean).item() == pytest.approx(0, abs=1e-6)
    assert dfl(noisy, clean).item() > 0
    assert dfl.layers == ["block1", "block2", "block3", "block4"]


@pytest.fixture(scope="module")
def vggish_synthetic() -> Embedder:
    """Test fixture: the VGGish embedder with a seeded, randomly initialised network (no file:
    its full-size fc layers would cost ~300 MB of disk per run; loading from files is tested in
    tests/test_vggish.py)."""
    V = pytest.importorskip("perceptual_audio.embeddings.vggish")
    torch.manual_seed(11)
    embedder = V.VGGishEmbedder()
    embedder.network = V.VGGishNetwork().eval()
    embedder.load()  # a no-op now: the network is present
    return embedder


def test_vggish_synthetic_weights(vggish_synthetic: Embedder) -> None:
    clean = speech_like(1.0, 16000)
    noisy = add_noise(clean, 10.0)
    loss_fn = EmbeddingLoss(vggish_synthetic, sample_rate=16000, distance="l2")
    assert loss_fn(clean, clean).item() == pytest.approx(0, abs=1e-6)
    steps = adam_steps(loss_fn, noisy, clean, steps=2, lr=2e-3)
    assert steps[-1] < steps[0], steps
    dfl = DeepFeatureLoss(vggish_synthetic, sample_rate=22050)
    c22 = resample(clean, 16000, 22050)
    assert dfl(c22, c22).item() == pytest.approx(0, abs=1e-6)
    assert dfl(resample(noisy, 16000, 22050), c22).item() > 0
    assert dfl.layers == ["conv1", "conv2", "conv3", "conv4", "fc1", "fc2"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_vggish_architecture_matches_cpu() -> None:
    V = pytest.importorskip("perceptual_audio.embeddings.vggish")
    torch.manual_seed(12)
    embedder = V.VGGishEmbedder()
    embedder.network = V.VGGishNetwork().eval()  # test fixture: random weights
    clean = speech_like(1.0, 22050)
    noisy = add_noise(clean, 10.0)
    for cls in (EmbeddingLoss, DeepFeatureLoss):
        loss_fn = cls(embedder, sample_rate=22050).to("cpu")
        x = noisy.clone().requires_grad_(True)
        on_cpu = loss_fn(x, clean)
        on_cpu.backward()
        loss_fn.to("cuda")
        assert embedder.device.type == "cuda" and next(embedder.network.parameters()).is_cuda
        xg = noisy.cuda().requires_grad_(True)
        on_gpu = loss_fn(xg, clean.cuda())
        on_gpu.backward()
        assert on_gpu.item() == pytest.approx(on_cpu.item(), rel=1e-3)
        assert torch.allclose(
            xg.grad.cpu(), x.grad, rtol=1e-2, atol=1e-3 * x.grad.abs().max().item()
        )
