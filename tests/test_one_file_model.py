"""Issue 13's contract: a new model is one module, and no other package file changes.

The model below is defined here, in the test, the way a module of
``perceptual_audio/embeddings/`` would define it: a registered :class:`Embedder` subclass
declaring its display name, column order, command-line option, feature layout and one extra
metric. Registered (inside :func:`registry_scope`), it runs through stages 1-4 exactly as the
bundled models do: stage 2 grows its ``--tinyband-dir`` and ``--tinyband-bands`` options,
stage 3 its columns (three generic embedding metrics plus its own), stage 4 names it in the
report, and both perceptual losses train through it.
"""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_audio

from perceptual_audio import (
    metrics,
)
from perceptual_audio.embeddings import base
from perceptual_audio.loss import DeepFeatureLoss, EmbeddingLoss
from perceptual_audio.stages import convert as conversion
from perceptual_audio.stages import embed as embed_stage
from perceptual_audio.stages import extract as extract_stage
from perceptual_audio.stages import score as metrics_stage
from perceptual_audio.stages import visualize as visualize_stage

SR = 16000
LEVEL_METRIC = "tinyband_level_difference"


class TinyBandEmbedder(base.Embedder):
    """Log energies of ``bands`` equal-width STFT bands per 1/8-s frame; the extra array
    ``level`` is the file's RMS level in dB, and its extra metric the level difference."""

    name: ClassVar[str] = "tinyband"
    sample_rate: ClassVar[int] = SR
    display_name = "TinyBand"
    column_order = 5  # before OpenL3
    feature_channel_axis = 1  # features are (B, C, T)
    options = (base.ModelOption("bands", "bands", "number of TinyBand bands", 8, type=int),)
    extra_metrics = (
        base.ExtraMetric(
            LEVEL_METRIC,
            "TinyBand level difference",
            "dB",
            False,
            "absolute difference of the two files' RMS levels",
            extras=("level",),
        ),
    )
    n_fft = 256
    hop = SR // 8

    def __init__(self, bands: int = 8, *, device: str = "cpu", batch_size: int = 1, **_: Any):
        super().__init__(device=device)
        self.bands = int(bands)
        edges = np.linspace(0, self.n_fft // 2 + 1, self.bands + 1).astype(int)
        pool = np.zeros((self.bands, self.n_fft // 2 + 1), np.float32)
        for i in range(self.bands):
            pool[i, edges[i] : edges[i + 1]] = 1.0
        self.pool = torch.nn.Linear(self.n_fft // 2 + 1, self.bands, bias=False)
        with torch.no_grad():
            self.pool.weight.copy_(torch.from_numpy(pool))

    def load(self) -> None:
        pass

    def features(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        spec = torch.stft(
            waveform,
            self.n_fft,
            hop_length=self.hop,
            window=torch.hann_window(self.n_fft, device=waveform.device),
            center=False,
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # (B, F, T)
        bands = self.pool(power.transpose(1, 2)).transpose(1, 2)  # (B, bands, T)
        return {"power": power, "bands": torch.log(bands + 1e-8)}

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.features(waveform)["bands"].transpose(1, 2)  # (B, T, bands)

    def timestamps(self, n_samples: int) -> np.ndarray:
        return np.arange((n_samples - self.n_fft) // self.hop + 1) * self.hop / SR

    def info(self) -> dict[str, Any]:
        return {"model": self.name, "variant": f"bands{self.bands}", "hop_seconds": 0.125}

    def embed_with_extras(self, waveform, sr):
        emb, ts = self.embed(waveform, sr)
        return emb, ts, self.extras_from_audio(waveform, sr)

    def extras_from_audio(self, waveform, sr):
        rms = float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))
        return {"level": np.array([20 * math.log10(rms + 1e-12)], np.float32)}

    def extra_metric(self, name, reference, degraded):
        assert name == LEVEL_METRIC
        return abs(float(reference["level"][0]) - float(degraded["level"][0]))


@pytest.fixture
def tinyband():
    with base.registry_scope():
        base.register(TinyBandEmbedder)
        yield TinyBandEmbedder


def tone_with_gaps(seconds: float, f_hz: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = np.sin(2 * np.pi * f_hz * t) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    return (0.3 * y + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def test_the_registry_gives_the_new_model_its_options_columns_and_name(tinyband):
    assert base.model_names()[0] == "tinyband"  # column_order 5
    help_text = extract_stage.build_parser().format_help()
    assert "--tinyband-dir" in help_text and "--tinyband-bands" in help_text
    assert "--tinyband-dir" in metrics_stage.build_parser().format_help()
    assert metrics.model_metric_names("tinyband") == (
        "tinyband_cosine",
        "tinyband_cosine_pooled",
        "tinyband_l2",
        LEVEL_METRIC,
    )
    spec = metrics.describe(LEVEL_METRIC)
    assert (spec.label, spec.unit, spec.higher_is_better) == (
        "TinyBand level difference",
        "dB",
        False,
    )
    settings = embed_stage.EmbedSettings.from_args(
        extract_stage.build_parser().parse_args(["--models", "tinyband", "--tinyband-bands", "5"])
    )
    assert settings.model_options["tinyband"]["bands"] == 5


@pytest.mark.slow
def test_stages_1_to_4_run_the_model_defined_in_one_file(tinyband, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_audio(tmp_path / "original_audio" / "a.wav", tone_with_gaps(1.5, 220, 1), SR)
    write_audio(tmp_path / "original_audio" / "b.wav", tone_with_gaps(1.5, 330, 2), SR)
    quiet = ["--workers", "1", "-q"]
    assert conversion.main(["--input", "original_audio", "--output", "test_audio", *quiet]) == 0
    assert (
        extract_stage.main(
            ["--input-dir", "test_audio", "--degradations", "noise:low,noise:high", *quiet]
            + ["--models", "tinyband", "--tinyband-bands", "6"]
        )
        == 0
    )
    emb = np.load(tmp_path / "tinyband_embeddings" / "clean" / "a.npy")
    assert emb.shape[1] == 6 and emb.dtype == np.float32
    assert (tmp_path / "tinyband_embeddings" / "clean" / "a.level.npy").is_file()
    run = json.loads((tmp_path / "tinyband_embeddings" / "run.json").read_text())
    assert run["available"] is True and run["parameters"]["variant"] == "bands6"

    assert (
        metrics_stage.main(
            ["--audio-dir", "test_audio", "--models", "tinyband", "--bootstrap", "20", *quiet]
            + ["--metrics", "classic,tinyband"]  # the slower reference metrics add nothing here
        )
        == 0
    )
    pairs = pd.read_csv(tmp_path / "results" / "pair_metrics.csv")
    for column in metrics.model_metric_names("tinyband"):
        assert column in pairs.columns
        assert np.isfinite(pairs[column]).all(), column
    # The extra metric is the model's own: louder noise moves the level further.
    by_level = pairs.groupby("level")[LEVEL_METRIC].mean()
    assert by_level["high"] > by_level["low"] > 0
    by_level = pairs.groupby("level")["tinyband_cosine"].mean()
    assert by_level["high"] < by_level["low"] <= 1

    assert visualize_stage.main(["--results-dir", "results", "--dpi", "20", "-q"]) == 0
    text = (tmp_path / "results" / "visualizations" / "analysis_report.txt").read_text(
        encoding="utf-8"
    )
    assert "TinyBand" in text and "TinyBand level difference" in text


@pytest.mark.parametrize("loss_class", [EmbeddingLoss, DeepFeatureLoss])
def test_the_losses_train_through_the_new_model(tinyband, loss_class):
    reference = torch.from_numpy(tone_with_gaps(0.5, 220, 3))[None]
    estimate = (reference + 0.05 * torch.randn_like(reference)).requires_grad_(True)
    loss_fn = loss_class("tinyband", sample_rate=SR, bands=4)
    loss = loss_fn(estimate, reference)
    loss.backward()
    assert loss.item() > 0 and estimate.grad is not None
    assert torch.isfinite(estimate.grad).all() and estimate.grad.abs().max() > 0
    assert loss_fn(reference, reference).item() == pytest.approx(0.0, abs=1e-6)
