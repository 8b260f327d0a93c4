"""Per-pair metrics: reference numbers, known signals, failures as NaN + status."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from pesq import pesq
from pystoi import stoi

from perceptual_audio import metrics
from perceptual_audio.audio_io import load_audio, resample
from perceptual_audio.errors import ParameterError

SR = 16000
#: python-pesq's own test values for its test vectors (pesq_reference/README).
PESQ_REFERENCE_WB = 1.0832337141036987
PESQ_REFERENCE_NB = 1.6072081327438354


def speech_like(seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A voiced, formant-shaped harmonic signal with a 4 Hz syllable envelope and pauses."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 120 + 25 * np.sin(2 * np.pi * 0.7 * t) + 10 * np.sin(2 * np.pi * 2.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    formants_hz = (500.0, 1500.0, 2500.0)
    x = np.zeros_like(t)
    for k in range(1, 40):
        fk = k * 120.0
        if fk > 0.45 * sample_rate:
            break
        gain = sum(math.exp(-0.5 * ((fk - f) / 150.0) ** 2) for f in formants_hz) + 0.05
        x += gain / k * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None) ** 2
    pauses = (np.sin(2 * np.pi * 0.5 * t) > -0.6).astype(float)
    x *= syllables * pauses
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(len(x))
    noise *= np.sqrt(np.mean(x.astype(np.float64) ** 2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (x + noise).astype(np.float32)


def log_spectrum_frames(x: np.ndarray, n_fft: int = 512, hop: int = 256) -> np.ndarray:
    """A stand-in 'embedding': log power spectrum per frame, (T, n_fft // 2 + 1)."""
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    return np.log10(np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-6).astype(np.float32)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return speech_like(4.0, SR, np.random.default_rng(7))


# -- reference values --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pesq_vectors(shared_data):
    folder = shared_data / "pesq_reference"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    ref, sr = load_audio(folder / "speech.wav")
    deg, _ = load_audio(folder / "speech_bab_0dB.wav")
    return ref, deg, sr


def test_pesq_reference_values(pesq_vectors):
    ref, deg, sr = pesq_vectors
    assert sr == 16000
    assert metrics.pesq_score(ref, deg, sr, mode="wb") == PESQ_REFERENCE_WB
    # P.862 narrow band on the 16 kHz files, as python-pesq's test runs it.
    assert metrics.pesq_score(ref, deg, sr, mode="nb", pesq_sample_rate=16000) == PESQ_REFERENCE_NB


def test_pesq_nb_default_runs_p862_on_16k_and_8k_option_resamples(pesq_vectors):
    ref, deg, sr = pesq_vectors
    assert metrics.pesq_score(ref, deg, sr, mode="nb") == PESQ_REFERENCE_NB
    out = metrics.classic_metrics(ref, deg, sr)
    assert out["pesq_nb"].value == PESQ_REFERENCE_NB
    assert out["pesq_wb"].value == PESQ_REFERENCE_WB
    direct_8k = pesq(8000, resample(ref, sr, 8000), resample(deg, sr, 8000), "nb")
    assert metrics.pesq_score(ref, deg, sr, mode="nb", pesq_sample_rate=8000) == direct_8k
    eight = metrics.classic_metrics(ref, deg, sr, metrics.MetricSettings(pesq_nb_sample_rate=8000))
    assert eight["pesq_nb"].value == direct_8k


def test_stoi_equals_pystoi(pesq_vectors):
    ref, deg, sr = pesq_vectors
    assert metrics.stoi_score(ref, deg, sr) == stoi(ref, deg, sr)
    # pystoi's ESTOI dithers with NumPy's global generator: equal once that is seeded alike.
    np.random.seed(metrics.ESTOI_DITHER_SEED)  # noqa: NPY002
    direct = stoi(ref, deg, sr, extended=True)
    values = {metrics.stoi_score(ref, deg, sr, extended=True) for _ in range(5)}
    assert values == {direct}


def test_estoi_leaves_the_global_generator_alone(speech):
    np.random.seed(123)  # noqa: NPY002
    expected = np.random.random()  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    metrics.stoi_score(speech, speech, SR, extended=True)
    assert np.random.random() == expected  # noqa: NPY002


# -- known signals ---------------------------------------------------------------------------
def test_identical_signals_give_maximum_scores(speech):
    out = metrics.classic_metrics(speech, speech, SR)
    assert all(m.ok for m in out.values()), out
    assert out["pesq_wb"].value == pytest.approx(4.644, abs=0.01)
    assert out["stoi"].value == pytest.approx(1.0, abs=1e-9)
    assert out["estoi"].value == pytest.approx(1.0, abs=1e-9)
    assert out["si_sdr"].value == math.inf


def test_falling_snr_lowers_every_score(speech):
    rng = np.random.default_rng(3)
    e_ref = log_spectrum_frames(speech)
    scores = {k: [] for k in ("pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "cosine")}
    for snr_db in (30, 15, 5, -5):
        noisy = add_noise(speech, snr_db, rng)
        out = metrics.classic_metrics(speech, noisy, SR)
        for k in ("pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr"):
            assert out[k].ok, out[k]
            scores[k].append(out[k].value)
        scores["cosine"].append(metrics.frame_cosine(e_ref, log_spectrum_frames(noisy)))
    for k, values in scores.items():
        assert all(np.diff(values) < 0), f"{k} does not fall with the SNR: {values}"
    # SI-SDR of additive white noise is the SNR (noise nearly orthogonal to the signal).
    assert scores["si_sdr"][0] == pytest.approx(30, abs=0.5)


# -- SI-SDR ----------------------------------------------------------------------------------
def test_si_sdr_known_value():
    # Zero-mean reference and an orthogonal zero-mean error, energies 4 and 1 per sample:
    # d = 2 r + e -> alpha = 2, target 2r (energy 16 n/4), noise e -> 10 log10(16 / 1) dB.
    r = np.array([1.0, -1.0, 1.0, -1.0] * 4)
    e = np.array([1.0, 1.0, -1.0, -1.0] * 4) * 0.5
    assert np.dot(r, e) == 0
    assert metrics.si_sdr(r, 2 * r + e) == pytest.approx(10 * math.log10(16.0), abs=1e-12)


def test_si_sdr_is_scale_invariant_and_matches_definition(rng):
    r = rng.standard_normal(4000)
    d = 0.7 * r + 0.2 * rng.standard_normal(4000)
    # Direct evaluation of Le Roux et al. (2019), eq. 6.
    rz, dz = r - r.mean(), d - d.mean()
    target = (dz @ rz) / (rz @ rz) * rz
    expected = 10 * np.log10((target @ target) / ((dz - target) @ (dz - target)))
    assert metrics.si_sdr(r, d) == pytest.approx(expected, rel=1e-12)
    assert metrics.si_sdr(r, 13.0 * d) == pytest.approx(expected, rel=1e-9)
    assert metrics.si_sdr(r, -d) == pytest.approx(expected, rel=1e-12)


# -- failures ----------------------------------------------------------------------------------
def test_silent_reference_fails_every_classic_metric(speech):
    out = metrics.classic_metrics(np.zeros_like(speech), speech, SR)
    for name in ("pesq_wb", "pesq_nb", "stoi", "estoi"):
        assert math.isnan(out[name].value)
        assert out[name].status == "the reference signal is digital silence (all samples are 0)"
    assert math.isnan(out["si_sdr"].value)
    assert out["si_sdr"].status == (
        "SI-SDR is undefined: the reference signal is constant (zero energy)"
    )


def test_silent_degraded_fails_pesq_but_not_stoi(speech):
    out = metrics.classic_metrics(speech, np.zeros_like(speech), SR)
    assert math.isnan(out["pesq_wb"].value)
    assert out["pesq_wb"].status == "the degraded signal is digital silence (all samples are 0)"
    assert out["stoi"].ok and out["stoi"].value == stoi(speech, np.zeros_like(speech), SR)
    assert out["si_sdr"].status.startswith("SI-SDR is undefined: the degraded signal")


def test_pystoi_too_few_frames_is_a_failure_not_1e5(speech):
    short = speech[: int(0.3 * SR)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert stoi(short, short, SR) == metrics.PYSTOI_TOO_SHORT_VALUE  # what pystoi does
    m = metrics.measure(metrics.stoi_score, short, short, SR)
    assert math.isnan(m.value)
    assert m.status.startswith("STOI needs at least 30 non-silent frames")


def test_pesq_too_short_is_reported(speech):
    m = metrics.measure(metrics.pesq_score, speech[:2000], speech[:2000], SR, mode="wb")
    assert math.isnan(m.value)
    assert m.status == (
        "PESQ (wb) failed: BufferTooShortError: Buffer needs to be at least 1/4 of a second long"
    )


def test_unexpected_library_errors_become_status():
    def broken(x):
        raise RuntimeError("boom\nsecond line")

    m = metrics.measure(broken, 1)
    assert math.isnan(m.value) and m.status == "RuntimeError: boom second line"


def test_bad_arguments_raise_parameter_errors(speech):
    with pytest.raises(ParameterError, match="PESQ mode must be 'wb' or 'nb', got 'xb'"):
        metrics.pesq_score(speech, speech, SR, mode="xb")
    with pytest.raises(ParameterError, match=r"pesq_nb_sample_rate must be one of \(8000, 16000\)"):
        metrics.MetricSettings(pesq_nb_sample_rate=11025)
    with pytest.raises(ParameterError, match=r"reference must be a mono \(n,\) array"):
        metrics.si_sdr(np.zeros((4, 2)), np.zeros(4))


def test_other_rates_are_resampled_for_pesq(speech):
    x44 = resample(speech, SR, 44100)
    noisy = add_noise(x44, 10, np.random.default_rng(0))
    expected = pesq(16000, resample(x44, 44100, 16000), resample(noisy, 44100, 16000), "wb")
    assert metrics.pesq_score(x44, noisy, 44100, mode="wb") == expected


# -- embeddings --------------------------------------------------------------------------------
def test_embedding_similarities_on_known_vectors():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]], dtype=np.float32)
    b = np.array([[2.0, 0.0], [1.0, 0.0]], dtype=np.float32)  # shorter: 2 aligned frames
    assert metrics.frame_cosine(a, b) == pytest.approx((1.0 + 0.0) / 2)
    assert metrics.frame_l2(a, b) == pytest.approx((1.0 + math.sqrt(5.0)) / 2)
    # Means: a -> (4/3, 5/3), b -> (1.5, 0).
    assert metrics.pooled_cosine(a, b) == pytest.approx(4 / math.sqrt(16 + 25))
    out = metrics.embedding_metrics("m", a, a)
    assert out["m_cosine"].value == pytest.approx(1.0)
    assert out["m_cosine_pooled"].value == pytest.approx(1.0)
    assert out["m_l2"].value == 0.0


def test_embedding_failures_become_status():
    good = np.ones((3, 4), dtype=np.float32)
    out = metrics.embedding_metrics("m", good, np.ones((3, 5), dtype=np.float32))
    assert out["m_cosine"].status == "embedding sizes differ: reference D=4, degraded D=5"
    out = metrics.embedding_metrics("m", good, np.zeros((0, 4), dtype=np.float32))
    assert math.isnan(out["m_l2"].value)
    assert out["m_l2"].status == "the degraded embedding has no frames (shape (0, 4))"
    zero = good.copy()
    zero[1] = 0
    out = metrics.embedding_metrics("m", good, zero)
    assert out["m_cosine"].status == (
        "cosine similarity is undefined: an embedding frame is all zeros"
    )
    assert out["m_l2"].ok


def test_si_sdr_does_not_depend_on_blas_threads(rng):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    r = rng.standard_normal(160_000).astype(np.float32)
    d = (r + 0.3 * rng.standard_normal(160_000)).astype(np.float32)
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        one = metrics.si_sdr(r, d)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        two = metrics.si_sdr(r, d)
    assert one == two
