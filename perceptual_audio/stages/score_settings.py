"""Stage 3's settings (``calculate_metrics.py``), parsed once by the CLI layer."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from perceptual_audio.embeddings.base import model_names
from perceptual_audio.listening import DEFAULT_RATING_SCALE
from perceptual_audio.stages import cli, shards


@dataclass(frozen=True, kw_only=True)
class ScoreSettings(cli.StageSettings):
    """What stage 3 computes and where (the options of ``calculate_metrics.py``).

    Attributes
    ----------
    audio_dir, results_dir : Path
        The stage 1-2 audio folder; the output folder.
    models : str
        ``--models`` as given (a comma-separated list or ``none``).
    model_dirs : dict
        Each registered model's embedding folder (``--<model>-dir``).
    metrics : str
        ``--metrics`` as given.
    bootstrap, seed : int
        Bootstrap replicates per CI (0: none) and their seed.
    visqol_speech_model : str
        ViSQOL speech mode's MOS mapping.
    pesq_nb_rate : int
        Hz of narrow-band PESQ.
    device : str
        Torch device of a model that runs on audio for its extra metrics.
    ratings : Path or None
        A listening test's ratings (else stage 1's ``ratings.csv``, if any).
    rating_scale : (float, float)
        The ratings' valid range.
    include_reference : bool
        Keep the hidden reference in the agreement statistics.
    shard : Shard or None
        Score only this shard's pairs.
    merge_shards : bool
        A merge is required.
    """

    audio_dir: Path = Path("test_audio")
    results_dir: Path = Path("results")
    models: str = ""
    model_dirs: dict[str, Path] = field(default_factory=dict)
    metrics: str = "all"
    bootstrap: int = 1000
    seed: int = 0
    visqol_speech_model: str = "lattice"
    pesq_nb_rate: int = 16000
    device: str = "cpu"
    ratings: Path | None = None
    rating_scale: tuple[float, float] = DEFAULT_RATING_SCALE
    include_reference: bool = False
    shard: shards.Shard | None = None
    merge_shards: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace, **values: object) -> Self:
        dirs = {m: Path(getattr(args, f"{m}_dir")) for m in model_names()}
        return super().from_args(args, model_dirs=dirs, **values)
