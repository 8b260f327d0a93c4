"""Stage 2, second half: embeddings of every clean and degraded file with each model.

For each model in ``--models`` (default: every registered model enabled by default, see
:func:`perceptual_audio.embeddings.base.model_names`; ``none`` skips this half):

- load the weights; when they are unavailable, report the model with the fetch instructions,
  write its ``manifest.csv`` with no rows and ``run.json`` with ``"available": false`` and the
  reason, and go on with the other models (exit status 3 at the end);
- embed every file of ``<input-dir>/manifest.csv`` to ``<model dir>/<audio path>.npy``
  ((T, D) float32) and ``<same stem>.timestamps.npy`` ((T,) float64 seconds), atomically;
- skip a file whose audio sha256 and model settings (including the weights sha256) are those
  recorded in the model's manifest and whose outputs exist (``--force`` redoes all);
- remove the outputs of files that are no longer in the audio manifest;
- write ``<model dir>/manifest.csv`` (:mod:`perceptual_audio.embedding_manifest`) and
  ``run.json``.

The command-line options of the models (``--<model>-dir`` and each model's
``Embedder.options``) come from the registry. The command line becomes an
:class:`EmbedSettings` at :func:`run_embeddings`; the rest of the module takes that.

Exit status: 0 all done; 1 some files (or a model's loading) failed; 3 some models were
unavailable (the others ran).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from perceptual_audio import files, options
from perceptual_audio.embedding_manifest import (
    EMBEDDING_COLUMNS,
    write_embedding_manifest,
)
from perceptual_audio.embeddings.base import Embedder, model_class, model_names
from perceptual_audio.errors import (
    PerceptualAudioError,
    SchemaError,
    WeightsUnavailableError,
)
from perceptual_audio.files import (
    remove_stale_temporaries,
)
from perceptual_audio.manifest import ManifestRow, read_manifest
from perceptual_audio.stages import cli, shards, work
from perceptual_audio.stages.embed_items import (
    REFUSED,
    ModelResult,
    ModelRun,
    jsonable,
    make_embedder,
    merge_rows,
    previous_rows,
    torch_threads,
)
from perceptual_audio.stages.embed_settings import (
    EmbedSettings,
    model_dir_of,
    option_dest,
    parse_models,
)
from perceptual_audio.stages.skeleton import StageRun, run_stage

__all__ = [
    "EMBEDDING_COLUMNS",
    "EmbedSettings",
    "add_embedding_arguments",
    "build_parser",
    "check_model_folders",
    "parse_models",
    "run_embeddings",
]

logger = logging.getLogger(__name__)

#: The model manifest is rewritten at most this often (seconds) during a long run, so that an
#: interrupted run keeps what it finished.
CHECKPOINT_SECONDS = 30.0


# -- arguments -----------------------------------------------------------------------------
def add_embedding_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the embedding half (``--input-dir``, ``--force``, ``--quiet``/``--verbose``
    and ``--workers`` come from the degradation half or :func:`build_parser`).

    ``--<model>-dir`` and the models' own options are made from the registry.
    """
    known = model_names()
    g = parser.add_argument_group("embeddings")
    g.add_argument(
        "--models",
        default=",".join(model_names(default_only=True)),
        metavar="LIST",
        help=f"comma-separated models to run ({', '.join(known)}), or 'none' to "
        "skip the embedding half",
    )
    for name in known:
        g.add_argument(
            f"--{name}-dir",
            default=f"{name}_embeddings",
            metavar="DIR",
            help=f"output folder of {model_class(name).label()} embeddings",
        )
    for name in known:
        for opt in model_class(name).options:
            flag, dest = f"--{name}-{opt.flag}", option_dest(name, opt.flag)
            if opt.boolean:
                g.add_argument(flag, dest=dest, action="store_true", help=opt.help)
                continue
            g.add_argument(
                flag,
                dest=dest,
                default=opt.default,
                type=opt.type,
                choices=opt.choices,
                metavar=opt.metavar,
                help=opt.help,
            )
    g.add_argument(
        "--batch-size",
        default=None,
        type=options.positive_int,
        metavar="N",
        help="windows/patches per network call, bounds memory (default: each "
        "model's own: OpenL3 8 windows, VGGish 64 patches)",
    )
    g.add_argument(
        "--device", default="cpu", metavar="DEV", help="torch device: cpu, cuda, cuda:1, ..."
    )
    g.add_argument(
        "--weights-dir",
        default=None,
        metavar="DIR",
        help="folder holding weight files fetched by hand (searched before the cache "
        "$PERCEPTUAL_AUDIO_CACHE, default ~/.cache/perceptual_audio)",
    )


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser for the embedding half (the script combines both halves)."""
    parser = argparse.ArgumentParser(
        prog="embed_stage",
        formatter_class=cli.HelpFormatter,
        description="Embed every clean and degraded file of stage 1/2 with each model "
        f"({', '.join(model_class(m).label() for m in model_names())}).",
        epilog="Exit status: 0 ok; 1 some files failed; 2 bad command line; 3 some models "
        "unavailable (the others ran).",
    )
    parser.add_argument(
        "--input-dir",
        default="test_audio",
        metavar="DIR",
        help="folder with manifest.csv, clean/ and degraded/ (stages 1-2)",
    )
    cli.add_common_arguments(parser)
    add_embedding_arguments(parser)
    return parser


def check_model_folders(args: argparse.Namespace, models: list[str]) -> str | None:
    """Why the models' output folders cannot be used (None: fine), before any work.

    Each model needs a folder of its own (a folder holds one model's embeddings and one
    manifest), which is neither another stage's folder nor the audio folder.
    """
    return _check_folders({m: model_dir_of(m, args) for m in models}, Path(args.input_dir))


def _check_folders(model_dirs: Mapping[str, Path], input_dir: Path) -> str | None:
    seen: dict[Path, str] = {}
    for name, folder in model_dirs.items():
        key = Path(os.path.abspath(folder))
        if key in seen:
            other = seen[key]
            return (
                f"--{other}-dir and --{name}-dir are both {folder}: each model needs a "
                f"folder of its own (e.g. --{other}-dir {other}_embeddings --{name}-dir "
                f"{name}_embeddings)"
            )
        seen[key] = name
        try:
            files.check_stage_folders(
                folder,
                owner=f"embeddings:{name}",
                option=f"--{name}-dir",
                inputs=[("--input-dir", input_dir, "audio_conversion")],
            )
        except PerceptualAudioError as e:
            return str(e)
    return None


#: ModelResult.reason of a model whose output folder was refused (busy, another stage's).
#: The running model's "save what is done" function, called when the run is interrupted.
_checkpoint: list[Callable[[], None]] = []


def _unavailable(
    name: str, settings: EmbedSettings, reason: str, *, load_failed: bool
) -> ModelResult:
    model_dir = settings.model_dirs[name]
    model_dir.mkdir(parents=True, exist_ok=True)
    # Outputs of an earlier run with weights are stale for this run's settings: the manifest
    # now lists none of them (later stages see the model as skipped).
    write_embedding_manifest(model_dir, [])
    cli.write_run_json(
        model_dir,
        stage="embeddings",
        settings=settings,
        params=jsonable(settings.model_options[name]),
        extra={"model": name, "available": False, "reason": reason},
    )
    return ModelResult(name, available=False, reason=reason, load_failed=load_failed)


def _load(
    name: str, settings: EmbedSettings, *, shard: shards.Shard | None = None
) -> Embedder | ModelResult:
    """The loaded model, or the result of a model that cannot run (a shard records nothing
    for it: the merge finds the model unavailable in the same way and records that)."""
    try:
        embedder = make_embedder(name, settings.model_options[name])
        embedder.load()
    except WeightsUnavailableError as e:
        logger.warning("%s skipped: %s", name, e)
        if shard is not None:
            return ModelResult(name, available=False, reason=str(e))
        return _unavailable(name, settings, str(e), load_failed=False)
    except Exception as e:  # a corrupt file, a bad option: this model fails, others go on
        reason = f"{type(e).__name__}: {e}"
        logger.error("%s could not be loaded: %s", name, reason)
        if shard is not None:
            return ModelResult(name, available=False, reason=reason, load_failed=True)
        return _unavailable(name, settings, reason, load_failed=True)
    return embedder


def embed_model(
    name: str, settings: EmbedSettings, audio_rows: list[ManifestRow], inputs: str = ""
) -> ModelResult:
    """Run one model over every audio manifest row; never raises for a single file's failure.

    With ``settings.shard`` the rows are the shard's and go to its fragment; in a merge
    (no ``settings.shard`` and fragments in the model folder) they come from the
    fragments. ``inputs`` is the digest of the study's clean files the shards must share.
    """
    model = _ModelEmbedding(settings, name=name, audio_rows=audio_rows, inputs=inputs)
    run_stage(model)
    return model.result


@dataclass
class _ModelEmbedding(StageRun[EmbedSettings]):
    """One model's pass in the stage skeleton. Its items are the audio files, embedded in this
    process (the network's threads do the parallel work), with checkpoints; ``result`` is
    what the stage reports for the model."""

    name: str = ""
    audio_rows: list[ManifestRow] = field(default_factory=list)
    inputs: str = ""
    result: ModelResult | None = None
    run: ModelRun | None = None
    departed: dict[str, dict[str, str]] = field(default_factory=dict)
    load_seconds: float = 0.0
    embed_seconds: float = 0.0

    def claim(self) -> int | None:
        refused = cli.claim_output_folder(
            self.settings.model_dirs[self.name],
            owner=f"embeddings:{self.name}",
            option=f"--{self.name}-dir",
            inputs=[("--input-dir", self.settings.input_dir, "audio_conversion")],
            shard=self.shard,
        )
        if refused is not None:
            self.result = ModelResult(self.name, available=False, reason=REFUSED, load_failed=True)
        return refused

    def read(self) -> int | None:
        """Load the model; its earlier rows (in a merge, its shards' rows)."""
        opened = _open_model(self.name, self.settings, self.inputs)
        if isinstance(opened, ModelResult):
            self.result = opened
            return (
                cli.EXIT_FAILED
                if opened.n_failed or opened.load_failed
                else cli.EXIT_MODELS_UNAVAILABLE
            )
        self.run, self.departed = opened
        self.load_seconds = self.elapsed
        return None

    def work(self) -> list[work.Outcome]:
        """Embed every file (a merge only checks the shards' rows), saving the finished rows
        every CHECKPOINT_SECONDS and on Ctrl-C."""
        run, settings, audio_rows = self.run, self.settings, self.audio_rows
        t_embed = last_checkpoint = time.perf_counter()
        _checkpoint[:] = [lambda: run.checkpoint(audio_rows)] if not run.merging else []
        seconds = [max(float(r.duration), 1e-3) for r in audio_rows]
        for row in work.progress(
            audio_rows, desc=self.name, quiet=settings.quiet, unit=work.AUDIO_SECONDS,
            weights=seconds,
        ):  # fmt: skip
            if not run.merging and time.perf_counter() - last_checkpoint > CHECKPOINT_SECONDS:
                run.checkpoint(audio_rows)
                last_checkpoint = time.perf_counter()
            run.embed_file(row)
        _checkpoint.clear()
        self.embed_seconds = time.perf_counter() - t_embed
        self.result = run.result
        return []

    def merge_incomplete(self) -> int | None:
        """A merge whose shards lack files fails the model (nothing merged)."""
        run = self.run
        groups = {r.path: shards.group_of(r) for r in self.audio_rows}
        named = shards.name_by_shard(
            ((groups[p], p) for p in run.missing), shards.fragment_shards(run.model_dir)[0].count
        )
        msg = (
            f"cannot merge the shards of {run.model_dir}: {len(run.missing)} files are in no "
            f"shard's fragment or changed since it ran ({named}); rerun those shards. "
            "Nothing merged"
        )
        logger.error("%s: %s", self.name, msg)
        self.result = ModelResult(self.name, available=True, n_failed=len(run.missing), reason=msg)
        return cli.EXIT_FAILED

    def finish_shard(self) -> int:
        if self.run.missing:
            return self.merge_incomplete()
        self.result = _finish_shard(self.run, self.shard, self.inputs)
        return cli.EXIT_OK

    def commit(self) -> int | None:
        """The model's manifest and run.json; outputs of files no longer listed go."""
        run = self.run
        if run.missing:
            return self.merge_incomplete()
        run.old = self.departed  # what the folder held before: outputs of files no longer listed
        run.remove_departed(self.audio_rows)
        write_embedding_manifest(run.model_dir, run.rows)
        _write_model_run_json(run, self.load_seconds, self.embed_seconds)
        if run.merging:
            shards.remove_fragments(run.model_dir)
            logger.info(
                "%s: merged the shards' embeddings into %s",
                self.name,
                run.model_dir / "manifest.csv",
            )
        r = run.result
        logger.info(
            "%s: %d embedded, %d unchanged, %d failed, %d removed -> %s",
            self.name, r.n_ok, r.n_skipped, r.n_failed, r.n_removed, run.model_dir,
        )  # fmt: skip
        return None


def _open_model(
    name: str, settings: EmbedSettings, inputs: str
) -> tuple[ModelRun, dict[str, dict[str, str]]] | ModelResult:
    """Load the model and read its earlier rows (in a merge, its shards' rows); the run and
    what the folder held before, or the result of a model that does not run."""
    model_dir, shard = settings.model_dirs[name], settings.shard
    merging = shard is None and shards.has_fragments(model_dir)
    embedder = _load(name, settings, shard=shard)
    if isinstance(embedder, ModelResult):
        return embedder
    model_dir.mkdir(parents=True, exist_ok=True)
    old = previous_rows(name, model_dir)
    table_dir = model_dir
    if shard is None:  # a running shard's temporaries are its own
        remove_stale_temporaries(model_dir)
    else:
        table_dir = shard.fragment_dir(model_dir)
        shards.clear_record(model_dir, shard)  # unfinished until its record is written
        old.update(previous_rows(name, table_dir) if table_dir.is_dir() else {})
    info = jsonable(embedder.info())
    departed = old
    if merging:
        try:
            old = merge_rows(name, model_dir, info, inputs)
        except shards.ShardMergeError as e:
            logger.error("%s: %s", name, e)
            return ModelResult(name, available=True, n_failed=1, reason=str(e))
    run = ModelRun(
        name,
        settings,
        embedder,
        model_dir,
        settings.input_dir,
        old=old,
        info=info,
        table_dir=table_dir,
        merging=merging,
    )
    return run, departed


def _finish_shard(run: ModelRun, shard: shards.Shard, inputs: str) -> ModelResult:
    """A shard's rows to its fragment, then its record (the shard is done)."""
    write_embedding_manifest(run.table_dir, run.rows)
    r = run.result
    shards.write_record(
        run.model_dir,
        shard,
        stage=f"embeddings:{run.name}",
        params=run.digest,
        inputs=inputs,
        described=run.info,
        extra={
            "counts": {"embedded": r.n_ok, "unchanged": r.n_skipped, "failed": r.n_failed},
            "torch_threads": torch_threads(),
        },
    )
    logger.info(
        "%s, shard %s: %d embedded, %d unchanged, %d failed -> %s",
        run.name, shard, r.n_ok, r.n_skipped, r.n_failed, run.table_dir,
    )  # fmt: skip
    return r


def _write_model_run_json(run: ModelRun, load_seconds: float, embed_seconds: float) -> None:
    r = run.result
    cli.write_run_json(
        run.model_dir,
        stage="embeddings",
        settings=run.settings,
        params=run.info,
        timings={
            "load": round(load_seconds, 3),
            "embed": round(embed_seconds, 3),
            "audio_seconds_embedded": round(run.audio_seconds, 3),
        },
        extra={
            "model": run.name,
            "available": True,
            "weights_sha256": run.info.get("weights_sha256") or "",
            "counts": {
                "embedded": r.n_ok,
                "unchanged": r.n_skipped,
                "failed": r.n_failed,
                "removed": r.n_removed,
            },
        },
    )


def _read_audio_rows(audio_dir: Path) -> list[ManifestRow] | int:
    """The audio manifest's rows, or an exit status after saying what is wrong."""
    try:
        rows = read_manifest(audio_dir)
    except SchemaError as e:
        logger.error("%s", e)
        return cli.EXIT_FAILED
    if not rows:
        logger.error(
            "%s lists no audio files; run audio_conversion.py --output %s first",
            audio_dir / "manifest.csv",
            audio_dir,
        )
        return cli.EXIT_FAILED
    return rows


def _shard_audio_rows(
    audio_dir: Path, shard: shards.Shard, rows: list[ManifestRow]
) -> list[ManifestRow] | int:
    """The files of ``shard``, in manifest order: its clean files and the degraded and
    restored files made from them, those of its fragments when this shard degraded (and
    restored) them (the manifest lists them only after the merge), else the manifest's."""
    try:
        rows = shards.with_fragments(audio_dir, shard, rows)
    except SchemaError as e:
        logger.error("%s", e)
        return cli.EXIT_FAILED
    mine = [r for r in rows if shard.owns(shards.group_of(r))]
    return sorted(mine, key=lambda r: (r.kind != "clean", r.path))


def run_embeddings(args: argparse.Namespace) -> int:
    """The embedding half of stage 2 from a parsed command line; returns an exit status
    (see the module docstring)."""
    try:
        settings = EmbedSettings.from_args(args)
    except PerceptualAudioError as e:
        logger.error("%s", e)
        return cli.EXIT_USAGE
    return embed_all(settings)


def embed_all(settings: EmbedSettings) -> int:
    """The embedding half of stage 2; returns an exit status (see the module docstring)."""
    if not settings.models:
        logger.info("--models none: no embeddings computed")
        return cli.EXIT_OK
    problem = cli.check_input_folder(
        settings.input_dir,
        option="--input-dir",
        needs="manifest.csv",
        made_by="audio_conversion.py --input <your audio folder> --output DIR",
    )
    if problem is not None:
        return problem
    refused = _check_folders(settings.model_dirs, settings.input_dir)
    if refused:
        logger.error("%s", refused)
        return cli.EXIT_USAGE
    audio_rows = _read_audio_rows(settings.input_dir)
    if isinstance(audio_rows, int):
        return audio_rows
    inputs = shards.inputs_digest(audio_rows)
    if settings.shard is not None:
        audio_rows = _shard_audio_rows(settings.input_dir, settings.shard, audio_rows)
        if isinstance(audio_rows, int):
            return audio_rows

    # The networks run in this process; --workers sets torch's intra-op threads.
    import torch

    threads_before = torch.get_num_threads()
    if settings.workers:
        torch.set_num_threads(int(settings.workers))
    try:
        results = [embed_model(name, settings, audio_rows, inputs) for name in settings.models]
    except KeyboardInterrupt:
        for save in _checkpoint:  # the model being embedded keeps the files it finished
            save()
        raise
    finally:
        _checkpoint.clear()
        torch.set_num_threads(threads_before)
    return _report(results)


def _report(results: list[ModelResult]) -> int:
    for r in results:
        (logger.warning if (not r.available or r.n_failed) else logger.info)("%s", r.summary())
    unavailable = [r for r in results if not r.available and not r.load_failed]
    if unavailable:
        logger.warning(
            "models skipped for lack of weights: %s (see the messages above for what "
            "to fetch and where)",
            ", ".join(r.name for r in unavailable),
        )
    if any(r.n_failed or r.load_failed for r in results):
        return cli.EXIT_FAILED
    if unavailable:
        return cli.EXIT_MODELS_UNAVAILABLE
    return cli.EXIT_OK


@cli.stage_entry("python -m perceptual_audio.stages.embed")
def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m perceptual_audio.stages.embed --input-dir ...``."""
    args = build_parser().parse_args(argv)
    cli.setup_logging(quiet=args.quiet, verbose=args.verbose)
    return run_embeddings(args)


if __name__ == "__main__":
    sys.exit(main())
