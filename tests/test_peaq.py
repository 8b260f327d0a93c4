"""PEAQ (ITU-R BS.1387-1) and the 2f-model: conformance on the ITU's items, the
Recommendation's tables, sanity facts on known signals, failures, catalogue columns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from perceptual_audio import metrics
from perceptual_audio.errors import MetricError, ParameterError
from perceptual_audio.metrics.peaq import (
    MIN_SAMPLES,
    peaq_advanced,
    peaq_basic,
    twof_mms,
    twof_mms_from_movs,
)
from perceptual_audio.metrics.peaq.ear_fft import make_bands
from perceptual_audio.metrics.peaq.network import odg

SR = 48000

#: The ITU's expected DI (Tables 22 and 23; ../shared/data/peaq_conformance/README.md) of
#: the 14 conformance pairs present: (basic, advanced).
ITU_DI = {
    "acodsna": (1.304, 1.632),
    "bcodtri": (1.949, 2.000),
    "ccodsax": (0.048, 0.567),
    "ecodsmg": (1.731, 1.594),
    "fcodtr1": (1.419, 1.555),
    "fcodtr2": (-0.045, 0.162),
    "fcodtr3": (-0.715, -0.783),
    "gcodcla": (1.781, 1.457),
    "icodsna": (-3.029, -2.510),
    "kcodsme": (3.093, 2.765),
    "lcodhrp": (1.041, 1.538),
    "mcodcla": (-0.436, 0.430),
    "ncodsfe": (3.135, 3.163),
    "scodclv": (1.689, 1.972),
}
#: Required of the basic version: every item within 0.2 DI, mean absolute error <= 0.06
#: (the best open implementations: 0.15 and 0.05).
BASIC_MAX_ERROR = 0.2
BASIC_MEAN_ERROR = 0.06
#: Advanced version: what this implementation reaches (see its test), not the aim of 0.2.
ADVANCED_MAX_ERROR = 0.55
ADVANCED_MEAN_ERROR = 0.15


def music(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """A music-like test signal at 48 kHz: harmonic tones with vibrato and note onsets over a
    broadband part up to 20 kHz (like cymbals and room noise). PEAQ's bandwidth MOVs assume
    wideband items: a reference with nothing above a few kHz has no bandwidth frames."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    for f0 in (220.0, 330.0, 440.0):
        phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.003 * np.sin(2 * np.pi * 5 * t))) / SR
        y += sum(0.6**k * np.sin(k * phase + rng.uniform(0, 6)) for k in range(1, 12))
    y *= 0.6 + 0.4 * np.abs(np.sin(2 * np.pi * 1.5 * t))  # note onsets
    y /= np.max(np.abs(y))
    air = np.fft.irfft(
        np.fft.rfft(rng.standard_normal(len(t))) * (np.fft.rfftfreq(len(t), 1 / SR) < 20000)
    )
    y += 0.03 * air / np.std(air)
    return 0.3 * y / np.max(np.abs(y))


def noisy(y: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(y))
    return y + noise * np.sqrt(np.mean(y**2) / 10 ** (snr_db / 10))


# -- the Recommendation's tables ---------------------------------------------------------------
def test_frequency_groups_match_tables_6_and_7():
    basic, advanced = make_bands(0.25), make_bands(0.5)
    assert basic.count == 109 and advanced.count == 55
    # Table 6, groups 0, 1 and 108 (Hz, 3 decimals).
    np.testing.assert_allclose(basic.lower_hz[:2], [80.0, 103.445], atol=5e-4)
    np.testing.assert_allclose(basic.centre_hz[:2], [91.708, 115.216], atol=5e-4)
    assert basic.upper_hz[-1] == 18000.0
    # Table 7, group 0.
    np.testing.assert_allclose(
        [advanced.lower_hz[0], advanced.centre_hz[0], advanced.upper_hz[0]],
        [80.0, 103.445, 127.023],
        atol=5e-4,
    )


def test_odg_mapping_spans_the_tables_output_range():
    assert odg(-50.0) == pytest.approx(-3.98)
    assert odg(50.0) == pytest.approx(0.22)
    assert odg(0.0) == pytest.approx(-3.98 + 4.2 / 2)


def test_twof_formula_and_clipping():
    for amd1, adb in [(0.0, 0.0), (5.0, 1.0), (20.0, 0.8), (40.0, 2.0)]:
        expected = 56.1345 / (1 + (-0.0282 * amd1 - 0.8628) ** 2) - 27.1451 * adb + 86.3515
        assert twof_mms_from_movs(amd1, adb) == pytest.approx(min(100.0, max(0.0, expected)))
    assert twof_mms_from_movs(0.0, 0.0) == 100.0  # 122.8 before clipping
    assert twof_mms_from_movs(100.0, 4.0) == 0.0
    assert twof_mms_from_movs(20.0, 0.8) == pytest.approx(
        56.1345 / (1 + (-0.0282 * 20 - 0.8628) ** 2) - 27.1451 * 0.8 + 86.3515
    )


# -- sanity facts ------------------------------------------------------------------------------
def test_identical_signals_score_the_top_of_the_scale():
    y = music()
    r = peaq_basic(y, y, SR)
    assert r.odg > 0.2 and r.di > 6.0  # the network tops out at 0.22
    assert r.movs["AvgModDiff1B"] == 0.0 and r.movs["ADBB"] == 0.0
    assert r.movs["MFPDB"] == 0.0 and r.movs["RmsNoiseLoudB"] == 0.0
    assert r.movs["BandwidthTestB"] == r.movs["BandwidthRefB"]
    assert twof_mms(y, y, SR) == 100.0


def test_more_noise_scores_lower():
    y = music()
    results = [peaq_basic(y, noisy(y, snr), SR) for snr in (70, 50, 35, 20, 5)]
    odgs = [r.odg for r in results]
    assert odgs == sorted(odgs, reverse=True) and odgs[0] - odgs[-1] > 2.0
    assert all(-3.98 <= v <= 0.22 for v in odgs)
    assert peaq_basic(y, y, SR).odg > odgs[0]
    loud = [r.movs["RmsNoiseLoudB"] for r in results]
    assert loud == sorted(loud)


def test_advanced_version_sanity():
    y = music()
    top = peaq_advanced(y, y, SR)
    assert top.odg > 0.1 and set(top.movs) == {
        "RmsModDiffA",
        "RmsNoiseLoudAsymA",
        "SegmentalNMRB",
        "EHSB",
        "AvgLinDistA",
    }
    assert top.movs["RmsModDiffA"] == 0.0 and top.movs["AvgLinDistA"] < 1e-3
    odgs = [peaq_advanced(y, noisy(y, snr), SR).odg for snr in (50, 35, 20)]
    assert top.odg > odgs[0] > odgs[1] > odgs[2]
    y2, z2 = np.stack([y, y], axis=1), np.stack([noisy(y, 30)] * 2, axis=1)
    assert peaq_advanced(y2, z2, SR).di == pytest.approx(peaq_advanced(y, noisy(y, 30), SR).di)


def test_a_louder_test_item_scores_lower():
    y = music()
    assert peaq_basic(y, 2.0 * y, SR).odg < peaq_basic(y, y, SR).odg - 0.5


def test_stereo_with_equal_channels_equals_mono():
    y, z = music(), noisy(music(), 25)
    mono = peaq_basic(y, z, SR)
    stereo = peaq_basic(np.stack([y, y], axis=1), np.stack([z, z], axis=1), SR)
    assert stereo.di == pytest.approx(mono.di, abs=1e-12)
    assert stereo.movs == pytest.approx(mono.movs, abs=1e-9)


# -- failures ----------------------------------------------------------------------------------
def test_too_short_input_gives_the_reason():
    y = music(0.6)
    assert len(y) < MIN_SAMPLES
    with pytest.raises(MetricError, match=r"PEAQ needs at least 29696 samples \(0\.619 s\)"):
        peaq_basic(y, y, SR)
    m = metrics.AUDIO_GROUPS["peaq"].compute(y, y, SR, metrics.MetricSettings())
    assert (
        math.isnan(m["peaq_odg"].value) and "needs at least 29696 samples" in m["twof_mms"].status
    )


def test_silent_input_gives_the_reason():
    y = music()
    with pytest.raises(MetricError, match="the reference signal is digital silence"):
        peaq_basic(np.zeros_like(y), y, SR)
    with pytest.raises(MetricError, match="the degraded signal is digital silence"):
        peaq_basic(y, np.zeros_like(y), SR)
    with pytest.raises(MetricError, match="below PEAQ's data boundary everywhere"):
        peaq_basic(np.full_like(y, 1e-5), y, SR)


def test_bad_rate_or_shape_is_a_parameter_error():
    y = music()
    with pytest.raises(ParameterError, match="PEAQ is defined at 48000 Hz; got sample_rate=16000"):
        peaq_basic(y, y, 16000)
    with pytest.raises(ParameterError, match=r"must be \(n,\) mono or \(n, 2\) stereo"):
        peaq_basic(np.zeros((len(y), 3)), y, SR)


# -- catalogue ---------------------------------------------------------------------------------
def test_catalogue_columns_and_optional_movs():
    cols = metrics.metric_columns([])
    assert {"peaq_odg", "peaq_di", "twof_mms"} <= set(cols)
    assert "peaq_adb" not in cols  # MOVs only on request
    movs = metrics.parse_metric_list("peaq_movs", [])
    assert len(movs) == 11 and movs[0] == "peaq_bandwidth_ref"
    assert metrics.parse_metric_list("twof_mms", []) == ["peaq_odg", "peaq_di", "twof_mms"]
    assert metrics.parse_metric_list("peaq_adv_odg", []) == ["peaq_adv_odg", "peaq_adv_di"]
    odg_spec, mms = metrics.describe("peaq_odg"), metrics.describe("twof_mms")
    assert (odg_spec.kind, odg_spec.sample_rate, odg_spec.domain) == ("reference", 48000, "any")
    assert odg_spec.higher_is_better and mms.bounds == (0.0, 100.0)
    assert odg_spec.validated and mms.validated and "ODAQ" in mms.validated_by
    assert not metrics.describe("peaq_adb").higher_is_better
    assert metrics.describe("peaq_bandwidth_test").higher_is_better


def test_group_resamples_study_audio_to_48k():
    from perceptual_audio.audio_io import resample

    y16 = music()[::3].copy()  # a 16 kHz study (the signal has nothing above 8 kHz)
    z16 = noisy(y16, 20)
    m = metrics.AUDIO_GROUPS["peaq"].compute(y16, z16, 16000, metrics.MetricSettings())
    direct = peaq_basic(resample(y16, 16000, SR), resample(z16, 16000, SR), SR)
    assert m["peaq_odg"].value == direct.odg and m["peaq_di"].value == direct.di
    movs = metrics.AUDIO_GROUPS["peaq_movs"].compute(y16, z16, 16000, metrics.MetricSettings())
    assert movs["peaq_adb"].value == direct.movs["ADBB"]


# -- conformance -------------------------------------------------------------------------------
def _conformance_pair(folder, item):
    ref, sr_ref = sf.read(str(folder / f"{item.replace('cod', 'ref')}.wav"))
    test, sr_test = sf.read(str(folder / f"{item}.wav"))
    assert sr_ref == sr_test == SR and ref.shape[1] == 2
    return ref, test


@pytest.fixture(scope="module")
def conformance(shared_data):
    folder = shared_data / "peaq_conformance"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent (the ITU's conformance items)")
    return folder


@pytest.mark.slow
def test_basic_version_conformance(conformance):
    errors = {}
    for item, (expected, _) in ITU_DI.items():
        di = peaq_basic(*_conformance_pair(conformance, item), SR).di
        errors[item] = di - expected
    table = ", ".join(f"{k} {v:+.3f}" for k, v in errors.items())
    worst = max(abs(e) for e in errors.values())
    mean = float(np.mean(np.abs(list(errors.values()))))
    assert worst <= BASIC_MAX_ERROR, f"DI errors: {table}"
    assert mean <= BASIC_MEAN_ERROR, f"mean |error| {mean:.3f}; DI errors: {table}"


@pytest.mark.slow
def test_advanced_version_conformance(conformance):
    """Reported item by item (the aim is 0.2; GstPEAQ's advanced version is off by up to
    0.58): the bounds hold what this implementation reaches, so a regression shows."""
    errors = {}
    for item, (_, expected) in ITU_DI.items():
        di = peaq_advanced(*_conformance_pair(conformance, item), SR).di
        errors[item] = di - expected
    table = ", ".join(f"{k} {v:+.3f}" for k, v in errors.items())
    print(f"advanced DI - ITU: {table}")
    assert max(abs(e) for e in errors.values()) <= ADVANCED_MAX_ERROR, table
    assert np.mean(np.abs(list(errors.values()))) <= ADVANCED_MEAN_ERROR, table


# -- stage 3 -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_stage_fills_peaq_columns_and_movs_on_request(tmp_path):
    from test_metrics_stage import make_dataset, read_table, run

    make_dataset(tmp_path, n_recordings=2)
    assert run(tmp_path, "results", "--workers", "1", "--models", "none", "--metrics", "peaq") == 0
    df = read_table(tmp_path / "results" / "pair_metrics.csv")
    assert len(df) == 6 and "peaq_adb" not in df.columns
    assert (df[["peaq_odg_status", "peaq_di_status", "twof_mms_status"]] == "ok").all().all()
    assert "peaq_adv_odg" not in df.columns  # a group of its own
    assert df.peaq_odg.between(-3.98, 0.22).all() and df.twof_mms.between(0, 100).all()
    # More noise, lower ODG, recording by recording.
    for _, rows in df.groupby("reference_path"):
        by_level = rows.set_index("level").peaq_odg
        assert by_level["low"] > by_level["high"] > by_level["extreme"]
    assert (
        run(tmp_path, "movs", "--workers", "1", "--models", "none", "--metrics", "peaq_movs") == 0
    )
    movs = read_table(tmp_path / "movs" / "pair_metrics.csv")
    assert (movs.peaq_adb_status == "ok").all() and "peaq_odg" not in movs.columns
    # The same basic-version run behind both: the 2f-model from the MOV columns.
    both = df.merge(movs, on=["reference_path", "degraded_path"])
    for _, row in both.iterrows():
        assert row.twof_mms == twof_mms_from_movs(row.peaq_avg_mod_diff1, row.peaq_adb)
