"""Shared fixtures: a seeded RNG, the optional ../shared/data folder, audio writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator: tests are deterministic."""
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (reference recordings and outputs); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"reference data folder {SHARED_DATA} is absent (only in the project's "
            "development checkout, not in a user's clone)"
        )
    return SHARED_DATA


def sine(freq_hz: float, seconds: float, sample_rate: int, *, amplitude: float = 0.5) -> np.ndarray:
    """A float32 sine wave of ``seconds`` at ``sample_rate``."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def write_audio(path: Path, y: np.ndarray, sample_rate: int, **kwargs) -> Path:
    """Write ``y`` ((n,) or (n, channels)) with soundfile, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y, sample_rate, **kwargs)
    return path


def speechlike(seconds: float, f0_hz: float, seed: int) -> np.ndarray:
    """Voiced harmonic bursts with syllable-rate gaps (PESQ and STOI see 'speech')."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    phase = 2 * np.pi * np.cumsum(f0_hz * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / 16000
    y = sum((0.7**k) * np.sin(k * phase) for k in range(1, 10))
    y = y * np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.5
    y = y + 0.002 * rng.standard_normal(len(t))
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


#: Environment variable naming the file :func:`record_call` appends to (a spawned stage
#: worker inherits the environment, so its calls are counted too).
CALL_LOG_ENV = "PERCEPTUAL_AUDIO_TEST_CALL_LOG"


class CallLog:
    """Counts calls across processes: stage 3 computes its pairs in worker processes even with
    ``--workers 1`` (a native crash must not end the stage), so a stand-in metric is called in
    a child; each call of :func:`record_call` appends a line to a file the test reads back."""

    def __init__(self, path: Path, monkeypatch) -> None:
        self.path = Path(path)
        self.path.write_text("")
        monkeypatch.setenv(CALL_LOG_ENV, str(self.path))

    def __len__(self) -> int:
        return len(self.path.read_text().splitlines())


def record_call() -> None:
    """Count one call in the current :class:`CallLog`."""
    import os

    with open(os.environ[CALL_LOG_ENV], "a") as f:
        f.write("call\n")
