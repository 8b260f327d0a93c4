"""Stage 2's embedding half: its settings, parsed from the command line once
(:meth:`EmbedSettings.from_args`); the models' own options come from the registry."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from perceptual_audio.embeddings.base import model_class, model_names
from perceptual_audio.errors import PerceptualAudioError
from perceptual_audio.stages import cli, shards


def option_dest(model: str, flag: str) -> str:
    """The argparse destination of a model's option ``--<model>-<flag>``."""
    return f"{model}_{flag}".replace("-", "_")


def parse_models(text: str) -> list[str]:
    """``--models`` value -> model names (``none`` -> []), validated against the registry."""
    names = [m.strip().lower() for m in text.split(",") if m.strip()]
    if names == ["none"]:
        return []
    known = model_names()
    bad = [m for m in names if m not in known]
    if bad or not names:
        raise PerceptualAudioError(
            f"--models: unknown model(s) {', '.join(bad) or repr(text)}; expected a "
            f"comma-separated list of {', '.join(known)}, or 'none'"
        )
    return list(dict.fromkeys(names))


def model_dir_of(name: str, args: argparse.Namespace) -> Path:
    """The output folder of model ``name`` (``--<name>-dir``, default ``<name>_embeddings``)."""
    return Path(getattr(args, f"{name}_dir", None) or f"{name}_embeddings")


def model_options_of(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Constructor options of model ``name`` from the command line: the shared ones and the
    model's own (:attr:`Embedder.options`)."""
    opts: dict[str, Any] = {
        "device": getattr(args, "device", "cpu"),
        "weights_dir": getattr(args, "weights_dir", None),
    }
    if getattr(args, "batch_size", None) is not None:
        opts["batch_size"] = args.batch_size
    for opt in model_class(name).options:
        value = getattr(args, option_dest(name, opt.flag), opt.default)
        opts[opt.keyword] = bool(value) if opt.boolean else value
    return opts


@dataclass(frozen=True, kw_only=True)
class EmbedSettings(cli.StageSettings):
    """What the embedding half runs, from the command line (:meth:`from_args`).

    Attributes
    ----------
    input_dir : Path
        Stage 1/2's audio folder (``manifest.csv``, ``clean/``, ``degraded/``).
    models : tuple of str
        The models to run, in ``--models`` order.
    model_dirs : Mapping
        Model -> its output folder.
    model_options : Mapping
        Model -> its constructor options (device, weights folder, batch size, own options).
    force, quiet : bool
    workers : int or None
        torch's intra-op threads while the networks run (None: torch's default).
    arguments : Mapping
        The parsed command line, as run.json records it.
    shard : Shard or None
        ``--shard K/N``: only the files of that shard, rows to its fragment
        (:mod:`perceptual_audio.stages.shards`); without it a model folder holding fragments is
        merged.
    """

    input_dir: Path
    models: tuple[str, ...]
    model_dirs: Mapping[str, Path] = field(default_factory=dict)
    model_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    workers: int | None = None  # type: ignore[assignment]  (None: torch's default threads)
    shard: shards.Shard | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace, **values: Any) -> Self:
        """The settings of a parsed command line.

        Raises
        ------
        PerceptualAudioError
            For a ``--models`` value that names no registered model.
        """
        models = tuple(parse_models(getattr(args, "models", None) or ",".join(model_names())))
        return cls(
            input_dir=Path(args.input_dir),
            models=models,
            model_dirs={m: model_dir_of(m, args) for m in models},
            model_options={m: model_options_of(m, args) for m in models},
            force=bool(getattr(args, "force", False)),
            quiet=bool(getattr(args, "quiet", False)),
            verbose=bool(getattr(args, "verbose", False)),
            workers=getattr(args, "workers", None) or None,
            arguments=dict(vars(args)),
            shard=getattr(args, "shard", None),
            **values,
        )
