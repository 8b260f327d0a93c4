"""extract_embeddings.py as a whole: option checks before any work, combined exit status."""

from __future__ import annotations

import pytest
import torch
from conftest import sine, write_audio

from perceptual_audio.stages import convert as conversion
from perceptual_audio.stages import extract as extract_stage


@pytest.fixture
def audio_dir(tmp_path):
    write_audio(tmp_path / "in" / "a.wav", sine(300, 1.0, 16000), 16000)
    assert (
        conversion.main(
            [
                "--input",
                str(tmp_path / "in"),
                "--output",
                str(tmp_path / "test_audio"),
                "--workers",
                "1",
                "-q",
            ]
        )
        == 0
    )
    return tmp_path / "test_audio"


def test_unknown_model_is_refused_before_the_degradations_run(audio_dir, capsys):
    with pytest.raises(SystemExit) as exc:
        extract_stage.main(["--input-dir", str(audio_dir), "--models", "openl3,foo", "-q"])
    assert exc.value.code == 2
    assert "--models: unknown model(s) foo" in capsys.readouterr().err
    assert not (audio_dir / "degraded").exists()


def test_cuda_without_cuda_is_refused_before_any_work(audio_dir, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exc:
        extract_stage.main(["--input-dir", str(audio_dir), "--device", "cuda", "-q"])
    assert exc.value.code == 2
    assert "--device cuda: CUDA is not available to this torch build" in capsys.readouterr().err
    assert not (audio_dir / "degraded").exists()


def test_models_none_runs_only_the_degradations(audio_dir, tmp_path):
    rc = extract_stage.main(
        [
            "--input-dir",
            str(audio_dir),
            "--models",
            "none",
            "--workers",
            "1",
            "--degradations",
            "noise:low",
            "--openl3-dir",
            str(tmp_path / "o"),
            "-q",
        ]
    )
    assert rc == 0
    assert (audio_dir / "degraded" / "noise" / "low" / "a.wav").is_file()
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("codes", "expected"), [((0, 0), 0), ((0, 3), 3), ((1, 3), 1), ((3, 2), 2), ((1, 0), 1)]
)
def test_exit_codes_combine_failures_over_unavailable_models(codes, expected):
    assert extract_stage.combine_exit_codes(*codes) == expected
