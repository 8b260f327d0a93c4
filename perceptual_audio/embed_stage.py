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
import inspect
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perceptual_audio import cli, files, shards
from perceptual_audio.audio_io import load_audio, resampled_length
from perceptual_audio.embedding_manifest import (
    EMBEDDING_COLUMNS,
    STATUS_OK,
    embedding_paths,
    extra_path,
    read_embedding_manifest,
    split_names,
    timestamps_path,
    write_embedding_manifest,
)
from perceptual_audio.embeddings.base import Embedder, model_class, model_names
from perceptual_audio.errors import (
    PerceptualAudioError,
    SchemaError,
    WeightsUnavailableError,
)
from perceptual_audio.files import (
    params_digest,
    remove_stale_temporaries,
    save_npy_atomic,
    sha256_file,
)
from perceptual_audio.listening import is_imported
from perceptual_audio.manifest import ManifestRow, read_manifest

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
def _dest(model: str, flag: str) -> str:
    return f"{model}_{flag}".replace("-", "_")


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
            flag, dest = f"--{name}-{opt.flag}", _dest(name, opt.flag)
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
        type=cli.positive_int,
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


def _model_options(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Constructor options of model ``name`` from the command line: the shared ones and the
    model's own (:attr:`Embedder.options`)."""
    opts: dict[str, Any] = {
        "device": getattr(args, "device", "cpu"),
        "weights_dir": getattr(args, "weights_dir", None),
    }
    if getattr(args, "batch_size", None) is not None:
        opts["batch_size"] = args.batch_size
    for opt in model_class(name).options:
        value = getattr(args, _dest(name, opt.flag), opt.default)
        opts[opt.keyword] = bool(value) if opt.boolean else value
    return opts


#: The constructor options of a model from the command line (also the restoration losses').
model_options_of = _model_options


@dataclass(frozen=True)
class EmbedSettings:
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
        (:mod:`perceptual_audio.shards`); without it a model folder holding fragments is
        merged.
    """

    input_dir: Path
    models: tuple[str, ...]
    model_dirs: Mapping[str, Path] = field(default_factory=dict)
    model_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    force: bool = False
    quiet: bool = False
    workers: int | None = None
    arguments: Mapping[str, Any] = field(default_factory=dict)
    shard: shards.Shard | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EmbedSettings:
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
            model_options={m: _model_options(m, args) for m in models},
            force=bool(getattr(args, "force", False)),
            quiet=bool(getattr(args, "quiet", False)),
            workers=getattr(args, "workers", None) or None,
            arguments=dict(vars(args)),
            shard=getattr(args, "shard", None),
        )


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
REFUSED = "its output folder was refused (see the message above)"
#: The running model's "save what is done" function, called when the run is interrupted.
_checkpoint: list[Callable[[], None]] = []


def make_embedder(name: str, options: Mapping[str, Any]) -> Embedder:
    """Instantiate ``name`` with the options its constructor accepts.

    A shared option (device, weights folder, batch size) the model does not take is dropped
    with a debug message; a switch the model does not take, turned on, is an error.
    """
    cls = model_class(name)
    params = inspect.signature(cls.__init__).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = {k: v for k, v in options.items() if takes_kwargs or k in params}
    for k in sorted(set(options) - set(accepted)):
        if options[k] is True:
            raise PerceptualAudioError(f"model {name} does not support the option {k}")
        logger.debug("model %s takes no option %s; ignored", name, k)
    return cls(**accepted)


# -- per model -----------------------------------------------------------------------------
@dataclass
class ModelResult:
    name: str
    available: bool
    reason: str = ""
    n_ok: int = 0
    n_skipped: int = 0
    n_failed: int = 0
    n_removed: int = 0
    load_failed: bool = False

    def summary(self) -> str:
        """``openl3: available; 12 embedded, 0 unchanged, 0 failed`` (or why not run)."""
        if self.available:
            return (
                f"{self.name}: available; {self.n_ok} embedded, {self.n_skipped} unchanged, "
                f"{self.n_failed} failed"
            )
        if self.reason == REFUSED:
            return f"{self.name}: not run: {REFUSED}"
        if self.load_failed:
            return f"{self.name}: FAILED to load"
        return f"{self.name}: UNAVAILABLE (weights missing)"


def _jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(d), default=str))


@dataclass
class _ModelRun:
    """One model's pass over the audio manifest: its settings record and the rows so far."""

    name: str
    settings: EmbedSettings
    embedder: Embedder
    model_dir: Path
    audio_dir: Path
    old: dict[str, dict[str, str]]
    info: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    result: ModelResult = field(init=False)
    audio_seconds: float = 0.0
    #: Where the rows go: the model folder, or a shard's fragment folder.
    table_dir: Path | None = None
    #: A merge: rows come from the fragments (``old``), nothing is embedded.
    merging: bool = False
    missing: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.result = ModelResult(self.name, available=True)
        self.settings_json = json.dumps(self.info, sort_keys=True)
        self.digest = params_digest(self.info)
        if self.table_dir is None:
            self.table_dir = self.model_dir

    def base_record(self, audio_path: str, npy: Path) -> dict[str, Any]:
        return {
            "path": audio_path,
            "embedding": npy.relative_to(self.model_dir).as_posix(),
            "model": self.name,
            "variant": str(self.info.get("variant", "")),
            "hop_seconds": self.info.get("hop_seconds", ""),
            "settings": self.settings_json,
            "settings_digest": self.digest,
            "weights_sha256": self.info.get("weights_sha256") or "",
        }

    def unchanged(self, prev: dict[str, str] | None, audio_sha: str, npy: Path) -> bool:
        """Whether the earlier row of a file still holds: same audio, same settings, and its
        files exist."""
        return (
            (self.merging or not self.settings.force)  # a merge never recomputes
            and prev is not None
            and prev.get("status") == STATUS_OK
            and prev.get("audio_sha256") == audio_sha
            and prev.get("settings_digest") == self.digest
            and npy.is_file()
            and timestamps_path(npy).is_file()
            and all(extra_path(npy, k).is_file() for k in split_names(prev.get("extras")))
        )

    def embed_file(self, row: ManifestRow) -> None:
        """Embed one file (or keep its unchanged outputs); a failure is recorded in its row."""
        npy, ts_path = embedding_paths(row.path, self.model_dir, self.audio_dir)
        rec = self.base_record(row.path, npy)
        prev = self.old.get(row.path)
        try:
            rec["audio_sha256"] = audio_sha = sha256_file(self.audio_dir / row.path)
            if self.unchanged(prev, audio_sha, npy):
                self.rows.append(prev)  # type: ignore[arg-type]
                self.result.n_skipped += 1
                return
            if self.merging:  # a shard's failure stays a failure; what no shard did is missing
                if prev is not None and prev.get("status", "").startswith("error"):
                    self.rows.append(prev)
                    self.result.n_failed += 1
                else:
                    self.missing.append(row.path)
                return
            rec.update(self._write_outputs(npy, ts_path, row.path))
            self.result.n_ok += 1
        except Exception as e:  # one bad file never stops the others
            msg = str(e) if isinstance(e, PerceptualAudioError) else f"{type(e).__name__}: {e}"
            msg = " ".join(msg.split())
            logger.error("%s: %s failed: %s", self.name, row.path, msg)
            old_extras = split_names((prev or {}).get("extras"))
            for p in (npy, ts_path, *(extra_path(npy, k) for k in old_extras)):
                p.unlink(missing_ok=True)
            rec.update(n_frames="", dim="", extras="", flags="", status=f"error: {msg}")
            self.result.n_failed += 1
        self.rows.append(rec)

    def _write_outputs(self, npy: Path, ts_path: Path, audio_path: str) -> dict[str, Any]:
        y, sr = load_audio(self.audio_dir / audio_path)
        emb, ts, extras = self.embedder.embed_with_extras(y, sr)
        emb = np.asarray(emb, dtype=np.float32)
        ts = np.asarray(ts, dtype=np.float64)
        if emb.ndim != 2 or emb.shape[0] != ts.shape[0] or emb.shape[0] == 0:
            raise PerceptualAudioError(
                f"{self.name} returned embeddings of shape {emb.shape} and timestamps of shape "
                f"{ts.shape}; expected (T, D) and (T,) with T >= 1"
            )
        save_npy_atomic(npy, emb)
        save_npy_atomic(ts_path, ts)
        for key, value in sorted(extras.items()):
            save_npy_atomic(extra_path(npy, key), np.asarray(value, dtype=np.float32))
        flags = self.embedder.flags(resampled_length(len(y), sr, self.embedder.sample_rate))
        self.audio_seconds += len(y) / sr
        return {
            "n_frames": emb.shape[0],
            "dim": emb.shape[1],
            "status": STATUS_OK,
            "extras": ";".join(sorted(extras)),
            "flags": ";".join(flags),
        }

    def checkpoint(self, audio_rows: list[ManifestRow]) -> None:
        """Write the manifest of what is done so far: the rows handled (one per file, in order)
        and the earlier rows of the files still to do (their outputs are untouched until they
        are redone), so that a killed or interrupted run keeps what it embedded."""
        pending = [self.old[r.path] for r in audio_rows[len(self.rows) :] if r.path in self.old]
        write_embedding_manifest(self.table_dir, self.rows + pending)

    def remove_departed(self, audio_rows: list[ManifestRow]) -> None:
        """Delete the outputs of audio files that left the audio manifest."""
        current = {r.path for r in audio_rows}
        for path, prev in self.old.items():
            if path in current:
                continue
            npy = self.model_dir / prev["embedding"]
            extra_files = [extra_path(npy, k) for k in split_names(prev.get("extras"))]
            for p in (npy, timestamps_path(npy), *extra_files):
                p.unlink(missing_ok=True)
            self.result.n_removed += 1
            logger.info(
                "%s: removed embeddings of %s (no longer in the audio manifest)", self.name, path
            )


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
        args=settings.arguments,
        params=_jsonable(settings.model_options[name]),
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


def _previous_rows(name: str, model_dir: Path) -> dict[str, dict[str, str]]:
    try:
        return {r["path"]: r for r in read_embedding_manifest(model_dir)}
    except SchemaError as e:
        logger.warning("%s; rebuilding it", e)
        return {}


def shard_command(name: str) -> str:
    return f"extract_embeddings.py ... --models {name} --shard"


def _merge_rows(
    name: str, model_dir: Path, info: dict[str, Any], inputs: str
) -> dict[str, dict[str, str]]:
    """The rows of every finished shard of ``model_dir`` (raises ShardMergeError)."""
    rows: dict[str, dict[str, str]] = {}
    fragments = shards.collect(
        model_dir,
        stage=f"embeddings:{name}",
        params=params_digest(info),
        inputs=inputs,
        what=shard_command(name),
        described=info,
    )
    for frag in fragments:
        rows.update({r["path"]: r for r in read_embedding_manifest(frag.folder)})
    threads = {f.shard.index: f.record.get("torch_threads") for f in fragments}
    if len(set(threads.values())) > 1:
        logger.warning(
            "%s: the shards ran with different torch thread counts (%s): a network's float32 "
            "rounding depends on it (about 1e-6 of the values), so these embeddings are not "
            "the bits of one run; give every shard the same --workers for that",
            name,
            ", ".join(f"shard {k}: {t}" for k, t in sorted(threads.items())),
        )
    return rows


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def embed_model(
    name: str, settings: EmbedSettings, audio_rows: list[ManifestRow], inputs: str = ""
) -> ModelResult:
    """Run one model over every audio manifest row; never raises for a single file's failure.

    With ``settings.shard`` the rows are the shard's and go to its fragment; in a merge
    (no ``settings.shard`` and fragments in the model folder) they come from the
    fragments. ``inputs`` is the digest of the study's clean files the shards must share.
    """
    model_dir = settings.model_dirs[name]
    shard = settings.shard
    refused = cli.claim_output_folder(
        model_dir,
        owner=f"embeddings:{name}",
        option=f"--{name}-dir",
        inputs=[("--input-dir", settings.input_dir, "audio_conversion")],
        shard=shard,
    )
    if refused is not None:
        return ModelResult(name, available=False, reason=REFUSED, load_failed=True)
    merging = shard is None and shards.has_fragments(model_dir)
    t0 = time.perf_counter()
    embedder = _load(name, settings, shard=shard)
    if isinstance(embedder, ModelResult):
        return embedder
    load_seconds = time.perf_counter() - t0

    model_dir.mkdir(parents=True, exist_ok=True)
    old = _previous_rows(name, model_dir)
    table_dir = model_dir
    if shard is None:  # a running shard's temporaries are its own
        remove_stale_temporaries(model_dir)
    else:
        table_dir = shard.fragment_dir(model_dir)
        shards.clear_record(model_dir, shard)  # unfinished until its record is written
        old.update(_previous_rows(name, table_dir) if table_dir.is_dir() else {})
    info = _jsonable(embedder.info())
    departed = old
    if merging:
        try:
            old = _merge_rows(name, model_dir, info, inputs)
        except shards.ShardMergeError as e:
            logger.error("%s: %s", name, e)
            return ModelResult(name, available=True, n_failed=1, reason=str(e))
    run = _ModelRun(
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
    t_embed = last_checkpoint = time.perf_counter()
    _checkpoint[:] = [lambda: run.checkpoint(audio_rows)] if not merging else []
    for row in cli.progress(audio_rows, total=len(audio_rows), desc=name, quiet=settings.quiet):
        if not merging and time.perf_counter() - last_checkpoint > CHECKPOINT_SECONDS:
            run.checkpoint(audio_rows)
            last_checkpoint = time.perf_counter()
        run.embed_file(row)
    _checkpoint.clear()
    if run.missing:
        groups = {r.path: shards.group_of(r) for r in audio_rows}
        named = shards.name_by_shard(
            ((groups[p], p) for p in run.missing), shards.fragment_shards(model_dir)[0].count
        )
        msg = (
            f"cannot merge the shards of {model_dir}: {len(run.missing)} files are in no "
            f"shard's fragment or changed since it ran ({named}); rerun those shards. "
            "Nothing merged"
        )
        logger.error("%s: %s", name, msg)
        return ModelResult(name, available=True, n_failed=len(run.missing), reason=msg)
    if shard is not None:
        write_embedding_manifest(table_dir, run.rows)
        r = run.result
        shards.write_record(
            model_dir,
            shard,
            stage=f"embeddings:{name}",
            params=run.digest,
            inputs=inputs,
            described=run.info,
            extra={
                "counts": {"embedded": r.n_ok, "unchanged": r.n_skipped, "failed": r.n_failed},
                "torch_threads": _torch_threads(),
            },
        )
        logger.info(
            "%s, shard %s: %d embedded, %d unchanged, %d failed -> %s",
            name, shard, r.n_ok, r.n_skipped, r.n_failed, table_dir,
        )  # fmt: skip
        return r
    run.old = departed  # what the folder held before: outputs of files no longer listed go
    run.remove_departed(audio_rows)
    write_embedding_manifest(model_dir, run.rows)
    _write_model_run_json(run, load_seconds, time.perf_counter() - t_embed)
    if merging:
        shards.remove_fragments(model_dir)
        logger.info("%s: merged the shards' embeddings into %s", name, model_dir / "manifest.csv")
    r = run.result
    logger.info(
        "%s: %d embedded, %d unchanged, %d failed, %d removed -> %s",
        name, r.n_ok, r.n_skipped, r.n_failed, r.n_removed, model_dir,
    )  # fmt: skip
    return r


def _write_model_run_json(run: _ModelRun, load_seconds: float, embed_seconds: float) -> None:
    r = run.result
    cli.write_run_json(
        run.model_dir,
        stage="embeddings",
        args=run.settings.arguments,
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
    """The files of ``shard``, in manifest order: its clean files and the degraded files made
    from them, those of its degradation fragment when this shard degraded them (the manifest
    lists them only after the merge), else the manifest's."""
    from perceptual_audio.degrade_stage import shard_rows

    try:
        fragment = shard_rows(audio_dir, shard)
    except SchemaError as e:
        logger.error("%s", e)
        return cli.EXIT_FAILED
    if fragment is not None:
        fragment_paths = {r.path for r in fragment}
        rows = [r for r in rows if r.kind == "clean" or r.path not in fragment_paths]
        rows = [r for r in rows if r.kind == "clean" or is_imported(r)] + fragment
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


@cli.stage_entry("python -m perceptual_audio.embed_stage")
def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m perceptual_audio.embed_stage --input-dir ...``."""
    args = build_parser().parse_args(argv)
    cli.setup_logging(args)
    return run_embeddings(args)


if __name__ == "__main__":
    sys.exit(main())
