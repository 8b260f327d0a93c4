"""The torch resampler: length rule, accuracy against resampy and soxr, gradients, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perceptual_audio.embeddings.resample import (
    RESAMPY_MAX_ABS_ERROR,
    SOXR_NOISE_MIN_SNR_DB,
    SOXR_SINE_MAX_ABS_ERROR,
    Resampler,
    SincFilter,
    resample,
    resampled_length,
)
from perceptual_audio.errors import ParameterError

#: The rate pairs the perceptual losses use (input rates 16/22.05/44.1/48 kHz, model rates
#: 48 kHz OpenL3, 22.05 kHz CDPAM, 16 kHz VGGish).
RATE_PAIRS = [(16000, 48000), (16000, 22050), (22050, 16000), (44100, 48000), (48000, 16000)]
#: Edge region excluded from the soxr comparison, in seconds (see the module docstring).
EDGE_SECONDS = 0.01


def _sine(freq_hz: float, sample_rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return np.sin(2 * np.pi * freq_hz * t + 0.3)


def _band_limited_noise(rng: np.random.Generator, sample_rate: int, cutoff_hz: float) -> np.ndarray:
    x = rng.standard_normal(sample_rate)
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(len(x), 1 / sample_rate) > cutoff_hz] = 0
    return np.fft.irfft(spectrum, len(x))


def _ours(x: np.ndarray, orig: int, new: int) -> np.ndarray:
    return resample(torch.from_numpy(x), orig, new).numpy()


@pytest.mark.parametrize(("orig", "new"), RATE_PAIRS)
@pytest.mark.parametrize("n", [1, 2, 147, 160, 441, 1000, 16001])
def test_output_length_is_rounded_ratio(orig: int, new: int, n: int) -> None:
    expected = int(round(n * new / orig))
    if expected < 1:
        with pytest.raises(ParameterError, match="give no sample"):
            resample(torch.zeros(n), orig, new)
        return
    assert resampled_length(n, orig, new) == expected
    assert resample(torch.zeros(3, n), orig, new).shape == (3, expected)


@pytest.mark.parametrize(("orig", "new"), RATE_PAIRS)
def test_matches_resampy_kaiser_best_on_sines_and_noise(orig: int, new: int) -> None:
    resampy = pytest.importorskip("resampy")
    rng = np.random.default_rng(1234)
    lower_nyquist_hz = min(orig, new) / 2
    signals = {f"sine {f:.0f} Hz": _sine(f, orig) for f in (440.0, 1000.0, 0.8 * lower_nyquist_hz)}
    signals["white noise"] = rng.standard_normal(orig)
    for label, x in signals.items():
        ours = _ours(x, orig, new)
        ref = resampy.resample(x, orig, new, filter="kaiser_best")
        m = min(len(ours), len(ref))
        assert abs(len(ours) - len(ref)) <= 1  # resampy floors the length, we round
        err = np.abs(ours[:m] - ref[:m]).max()
        assert err < RESAMPY_MAX_ABS_ERROR, f"{orig}->{new} {label}: max abs error {err:.2e}"


@pytest.mark.parametrize(("orig", "new"), RATE_PAIRS)
def test_matches_soxr_vhq_in_band(orig: int, new: int) -> None:
    import soxr

    rng = np.random.default_rng(99)
    lower_nyquist_hz = min(orig, new) / 2
    edge = int(EDGE_SECONDS * new)
    for freq_hz in (440.0, 3000.0, 0.8 * lower_nyquist_hz):
        x = _sine(freq_hz, orig)
        ours, ref = _ours(x, orig, new), soxr.resample(x, orig, new, quality="VHQ")
        assert len(ours) == len(ref)
        err = np.abs(ours - ref)[edge:-edge].max()
        assert err < SOXR_SINE_MAX_ABS_ERROR, f"{orig}->{new} sine {freq_hz} Hz: {err:.2e}"
    x = _band_limited_noise(rng, orig, 0.8 * lower_nyquist_hz)
    ours, ref = _ours(x, orig, new), soxr.resample(x, orig, new, quality="VHQ")
    diff = (ours - ref)[edge:-edge]
    snr_db = 10 * np.log10(np.sum(ref[edge:-edge] ** 2) / np.sum(diff**2))
    assert snr_db > SOXR_NOISE_MIN_SNR_DB, f"{orig}->{new}: SNR {snr_db:.1f} dB"


@pytest.mark.parametrize(("orig", "new"), [(o, n) for o, n in RATE_PAIRS if n < o])
def test_stopband_rejects_frequencies_above_the_new_nyquist(orig: int, new: int) -> None:
    # a tone at 0.99 of the input Nyquist, far above the output Nyquist, must vanish
    x = _sine(0.99 * orig / 2, orig)
    y = _ours(x, orig, new)
    edge = int(EDGE_SECONDS * new)
    assert np.abs(y[edge:-edge]).max() < 1e-4


def test_float32_close_to_float64_and_batch_rows_independent() -> None:
    rng = np.random.default_rng(5)
    x64 = torch.from_numpy(rng.standard_normal((3, 2205)))
    rs = Resampler(22050, 16000)
    y64 = rs(x64)
    y32 = rs(x64.float())
    assert y32.dtype == torch.float32 and y64.dtype == torch.float64
    assert torch.allclose(y32.double(), y64, atol=1e-5)
    for i in range(3):
        assert torch.allclose(rs(x64[i]), y64[i], atol=1e-12)
    # arbitrary leading dimensions are kept
    assert rs(x64.reshape(3, 1, 2205)).shape == (3, 1, 1600)


def test_same_rate_is_identity_and_keeps_graph() -> None:
    x = torch.randn(2, 100, requires_grad=True)
    assert Resampler(16000, 16000)(x) is x


@pytest.mark.parametrize(("orig", "new"), RATE_PAIRS)
def test_gradcheck_float64(orig: int, new: int) -> None:
    n = max(3, orig // 1000)  # a few ms of audio: the Jacobian stays tiny
    x = torch.randn(2, n, dtype=torch.float64, requires_grad=True)
    rs = Resampler(orig, new)
    assert torch.autograd.gradcheck(rs, (x,), eps=1e-6, atol=1e-8)


def test_gradient_is_the_adjoint_of_the_linear_map() -> None:
    # <R x, y> == <x, R^T y> with R^T obtained by autograd
    g = torch.Generator().manual_seed(3)
    x = torch.randn(500, dtype=torch.float64, generator=g, requires_grad=True)
    rs = Resampler(44100, 48000)
    y = torch.randn(resampled_length(500, 44100, 48000), dtype=torch.float64, generator=g)
    (grad,) = torch.autograd.grad((rs(x) * y).sum(), x)
    assert torch.allclose((rs(x) * y).sum(), (x * grad).sum(), atol=1e-10)


def test_kaiser_fast_preset_is_close_to_resampy_kaiser_fast() -> None:
    resampy = pytest.importorskip("resampy")
    x = _sine(1000.0, 22050)
    ours = resample(torch.from_numpy(x), 22050, 16000, filter="kaiser_fast").numpy()
    ref = resampy.resample(x, 22050, 16000, filter="kaiser_fast")
    assert np.abs(ours - ref).max() < 1e-4


def test_module_moves_with_to_and_casts() -> None:
    rs = Resampler(16000, 48000).to(torch.float64)
    assert rs.kernel.dtype == torch.float64
    assert "orig_rate=16000, new_rate=48000" in repr(rs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"orig_rate": 0, "new_rate": 16000}, "orig_rate must be a positive integer in Hz, got 0"),
        (
            {"orig_rate": 16000, "new_rate": 22050.5},
            "new_rate must be a positive integer in Hz, got 22050.5",
        ),
        ({"orig_rate": 16000, "new_rate": 48000, "filter": "sinc"}, "filter must be one of"),
        (
            {
                "orig_rate": 16000,
                "new_rate": 48000,
                "filter": SincFilter(num_zeros=0, rolloff=0.9, beta=5.0),
            },
            "expected num_zeros >= 1",
        ),
    ],
)
def test_bad_parameters_raise_with_message(kwargs: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message.replace("(", r"\(").replace(".", r"\.")):
        Resampler(**kwargs)


def test_non_float_waveform_raises() -> None:
    with pytest.raises(ParameterError, match="floating-point torch.Tensor, got Tensor torch.int64"):
        Resampler(16000, 48000)(torch.zeros(10, dtype=torch.int64))
    with pytest.raises(ParameterError, match="floating-point torch.Tensor, got ndarray"):
        Resampler(16000, 48000)(np.zeros(10))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize(("orig", "new"), RATE_PAIRS)
def test_cuda_matches_cpu(orig: int, new: int) -> None:
    x = torch.randn(2, orig // 2, generator=torch.Generator().manual_seed(0))
    rs = Resampler(orig, new)
    y_cpu = rs(x)
    y_gpu = rs.to("cuda")(x.cuda())
    assert y_gpu.device.type == "cuda"
    assert torch.allclose(y_gpu.cpu(), y_cpu, atol=1e-5)
