"""Reading every format and bit depth, channel mixing, resampling accuracy, saving."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
from conftest import sine, write_audio

from perceptual_audio.audio_io import (
    find_audio_files,
    load_audio,
    resample,
    resampled_length,
    save_wav,
)
from perceptual_audio.errors import AudioFormatError, ParameterError

# (extension, soundfile format kwargs, tolerance on the max abs error of the decoded signal)
LOSSLESS = [
    ("wav", dict(subtype="PCM_U8"), 1 / 64),
    ("wav", dict(subtype="PCM_16"), 1e-4),
    ("wav", dict(subtype="PCM_24"), 1e-6),
    ("wav", dict(subtype="PCM_32"), 1e-7),
    ("wav", dict(subtype="FLOAT"), 0),
    ("flac", dict(subtype="PCM_16"), 1e-4),
    ("flac", dict(subtype="PCM_24"), 1e-6),
    ("aiff", dict(subtype="PCM_16"), 1e-4),
    ("aiff", dict(subtype="PCM_24"), 1e-6),
]


@pytest.mark.parametrize(
    ("ext", "kwargs", "tol"), LOSSLESS, ids=[f"{e}-{k['subtype']}" for e, k, _ in LOSSLESS]
)
def test_lossless_round_trip(tmp_path, ext, kwargs, tol):
    y = sine(441.0, 0.5, 44100, amplitude=0.8)
    p = write_audio(tmp_path / f"x.{ext}", y, 44100, **kwargs)
    back, sr = load_audio(p)
    assert sr == 44100 and back.dtype == np.float32 and back.shape == y.shape
    assert np.max(np.abs(back - y)) <= tol


@pytest.mark.parametrize(
    ("ext", "kwargs"),
    [
        ("ogg", dict(format="OGG", subtype="VORBIS")),
        ("mp3", dict(format="MP3", subtype="MPEG_LAYER_III")),
    ],
)
def test_lossy_formats_decode_to_the_same_tone(tmp_path, ext, kwargs):
    sr = 44100
    y = sine(1000.0, 1.0, sr, amplitude=0.5)
    back, sr_back = load_audio(write_audio(tmp_path / f"x.{ext}", y, sr, **kwargs))
    assert sr_back == sr
    spectrum = np.abs(np.fft.rfft(back * np.hanning(len(back))))
    assert np.argmax(spectrum) * sr / len(back) == pytest.approx(1000.0, abs=2.0)
    rms_db = 20 * np.log10(np.sqrt(np.mean(back[sr // 4 : -sr // 4] ** 2)) / (0.5 / np.sqrt(2)))
    assert abs(rms_db) < 0.5


def test_stereo_is_mixed_to_the_mean_of_channels(tmp_path):
    left, right = sine(300, 0.2, 8000, amplitude=0.6), sine(700, 0.2, 8000, amplitude=0.2)
    p = write_audio(tmp_path / "st.wav", np.stack([left, right], 1), 8000, subtype="FLOAT")
    mono, _ = load_audio(p)
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-7)
    both, _ = load_audio(p, mono=False)
    assert both.shape == (len(left), 2)


@pytest.mark.parametrize(
    ("sr_in", "sr_out"),
    [(44100, 16000), (48000, 16000), (8000, 16000), (22050, 16000), (16000, 48000)],
)
def test_resampling_keeps_frequency_level_and_length(sr_in, sr_out):
    y = sine(1000.0, 2.0, sr_in, amplitude=0.5)
    out = resample(y, sr_in, sr_out)
    assert len(out) == round(len(y) * sr_out / sr_in)
    core = out[len(out) // 8 : -len(out) // 8]  # away from the edges' filter transients
    spectrum = np.abs(np.fft.rfft(core * np.hanning(len(core)), n=8 * len(core)))
    peak_hz = np.argmax(spectrum) * sr_out / (8 * len(core))
    assert peak_hz == pytest.approx(1000.0, abs=0.5)
    level_db = 20 * np.log10(np.sqrt(np.mean(core**2)) / (0.5 / np.sqrt(2)))
    assert abs(level_db) < 0.1


@pytest.mark.parametrize("n", [1, 2, 100, 44099, 44100, 44101, 123457])
def test_resampled_length_is_rounded_exactly(n):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1
    assert (
        len(resample(x, 44100, 16000))
        == resampled_length(n, 44100, 16000)
        == round(n * 16000 / 44100)
    )


def test_resample_rejects_bad_rates():
    with pytest.raises(
        ParameterError, match="sample rates must be positive, got sr_in=0, sr_out=16000"
    ):
        resample(np.zeros(10, np.float32), 0, 16000)


def test_save_wav_is_deterministic_and_keeps_peaks_above_full_scale(tmp_path):
    y = np.array([0.0, 1.5, -2.0, 0.25], np.float32)
    save_wav(tmp_path / "a.wav", y, 16000)
    save_wav(tmp_path / "b.wav", y, 16000)
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    back, sr = sf.read(tmp_path / "a.wav", dtype="float32")
    np.testing.assert_array_equal(back, y)
    assert sf.info(tmp_path / "a.wav").subtype == "FLOAT"


# -- bad input: each gives a message naming the file and the problem --------------------------
def test_empty_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(AudioFormatError, match=r"empty\.wav: the file is empty \(0 bytes\)"):
        load_audio(p)


def test_text_file_named_wav(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("these are my notes, not audio\n")
    with pytest.raises(
        AudioFormatError,
        match=r"notes\.wav: not a recognised audio file .*is it really a WAV file\?",
    ):
        load_audio(p)


def test_truncated_flac(tmp_path):
    p = write_audio(tmp_path / "cut.flac", sine(440, 2.0, 16000), 16000)
    p.write_bytes(p.read_bytes()[:60])
    with pytest.raises(AudioFormatError, match=r"cut\.flac: "):
        load_audio(p)


def test_missing_and_unreadable(tmp_path, monkeypatch):
    with pytest.raises(AudioFormatError, match=r"nothere\.wav: no such file"):
        load_audio(tmp_path / "nothere.wav")
    p = write_audio(tmp_path / "locked.wav", sine(440, 0.1, 8000), 8000)
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # root ignores chmod: simulate
    with pytest.raises(AudioFormatError, match=r"locked\.wav: permission denied"):
        load_audio(p)


def test_find_audio_files_recurses_and_skips_hidden_and_other_files(tmp_path):
    for rel in ["a.WAV", "sub/b.flac", "sub/deeper/c.mp3", ".hidden/d.wav", "notes.txt", "e.aif"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in find_audio_files(tmp_path)]
    assert found == ["a.WAV", "e.aif", "sub/b.flac", "sub/deeper/c.mp3"]
    with pytest.raises(ParameterError, match="does not exist or is not a folder"):
        find_audio_files(tmp_path / "missing")


@pytest.mark.parametrize(("sr_in", "sr_out"), [(44100, 48000), (16000, 22050), (48000, 16000)])
def test_resampy02_kaiser_best_equals_an_independent_polyphase_implementation(sr_in, sr_out):
    """The parity resampler of OpenL3/CDPAM (resampy 0.2's filter) against the torch
    polyphase resampler built from the same filter parameters, and its wider pass band."""
    import torch

    from perceptual_audio.audio_io import resample_resampy02
    from perceptual_audio.embeddings.resample import resample as torch_resample

    x = np.random.default_rng(1).standard_normal(sr_in // 4)
    ours = resample_resampy02(x, sr_in, sr_out)
    assert len(ours) == int(len(x) * sr_out / sr_in)
    ref = torch_resample(torch.from_numpy(x), sr_in, sr_out, filter="kaiser_best_v02").numpy()
    np.testing.assert_allclose(ours, ref[: len(ours)], atol=2e-5)
    # Pass band: a tone at 0.85 of the lower Nyquist keeps its level within 0.05 dB.
    nyquist = min(sr_in, sr_out) / 2
    tone = sine(0.85 * nyquist, 1.0, sr_in, amplitude=0.5).astype(np.float64)
    out = resample_resampy02(tone, sr_in, sr_out)[sr_out // 10 : -sr_out // 10]
    assert abs(20 * np.log10(np.sqrt(2) * out.std() / 0.5)) < 0.05
