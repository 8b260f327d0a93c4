"""Stage 2, second half: embeddings of every clean and degraded file with each model.

For each model in ``--models`` (default ``openl3,vggish,cdpam``; ``none`` skips this half):

- load the weights; when they are unavailable, report the model with the fetch instructions,
  write its ``manifest.csv`` with no rows and ``run.json`` with ``"available": false`` and the
  reason, and go on with the other models (exit status 3 at the end);
- embed every file of ``<input-dir>/manifest.csv`` to ``<model dir>/<audio path>.npy``
  ((T, D) float32) and ``<same stem>.timestamps.npy`` ((T,) float64 seconds), atomically;
- skip a file whose audio sha256 and model settings (including the weights sha256) are those
  recorded in the model's manifest and whose outputs exist (``--force`` redoes all);
- remove the outputs of files that are no longer in the audio manifest;
- write ``<model dir>/manifest.csv`` (columns :data:`EMBEDDING_COLUMNS`) and ``run.json``.

Exit status: 0 all done; 1 some files (or a model's loading) failed; 3 some models were
unavailable (the others ran).
"""

from __future__ import annotations

import argparse
import csv
import inspect
import io
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perceptual_audio import cli, files
from perceptual_audio.audio_io import load_audio, resampled_length
from perceptual_audio.embeddings.base import Embedder, get_embedder, model_names
from perceptual_audio.errors import (
    PerceptualAudioError,
    SchemaError,
    WeightsUnavailableError,
)
from perceptual_audio.files import (
    mirror_path,
    params_digest,
    remove_stale_temporaries,
    save_npy_atomic,
    sha256_file,
)
from perceptual_audio.manifest import read_manifest

logger = logging.getLogger(__name__)

DEFAULT_MODELS = ("openl3", "vggish", "cdpam")
#: Columns of ``<model>_embeddings/manifest.csv``, in order (docs/CONTRACTS.md).
EMBEDDING_COLUMNS = (
    "path",
    "embedding",
    "model",
    "variant",
    "n_frames",
    "dim",
    "hop_seconds",
    "audio_sha256",
    "settings",
    "settings_digest",
    "weights_sha256",
    "extras",
    "flags",
    "status",
)
EMBEDDING_MANIFEST = "manifest.csv"
TIMESTAMPS_SUFFIX = ".timestamps.npy"
#: The model manifest is rewritten at most this often (seconds) during a long run, so that an
#: interrupted run keeps what it finished.
CHECKPOINT_SECONDS = 30.0
STATUS_OK = "ok"


# -- paths and manifest --------------------------------------------------------------------
def embedding_paths(
    audio_rel: str, model_dir: str | Path, audio_dir: str | Path
) -> tuple[Path, Path]:
    """(embedding .npy, timestamps .npy) for an audio path relative to ``audio_dir``."""
    npy = mirror_path(Path(audio_dir) / audio_rel, audio_dir, model_dir, suffix=".npy")
    return npy, npy.with_name(npy.stem + TIMESTAMPS_SUFFIX)


def extra_path(npy: Path, key: str) -> Path:
    """Where a model's extra array ``key`` for embedding ``a.npy`` goes: ``a.<key>.npy``
    (CDPAM's clip embedding: ``a.clip.npy``)."""
    return npy.with_name(f"{npy.stem}.{key}.npy")


def _split(text: str | None) -> list[str]:
    return [t for t in (text or "").split(";") if t]


def read_embedding_manifest(model_dir: str | Path) -> list[dict[str, str]]:
    """Rows of ``<model_dir>/manifest.csv`` as dicts of strings ([] when absent).

    Raises
    ------
    SchemaError
        When the header is not :data:`EMBEDDING_COLUMNS`.
    """
    path = Path(model_dir) / EMBEDDING_MANIFEST
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = tuple(reader.fieldnames or ())
        if header != EMBEDDING_COLUMNS:
            raise SchemaError(
                f"{path}: unexpected embedding-manifest columns {list(header)}; expected "
                f"{list(EMBEDDING_COLUMNS)}. Rerun extract_embeddings.py with --force."
            )
        return list(reader)


def write_embedding_manifest(model_dir: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Write rows (sorted by path) atomically to ``<model_dir>/manifest.csv``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=EMBEDDING_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in sorted(rows, key=lambda r: r["path"]):
        writer.writerow({k: r.get(k, "") for k in EMBEDDING_COLUMNS})
    path = Path(model_dir) / EMBEDDING_MANIFEST
    files.write_text_if_changed(path, buf.getvalue())
    return path


def load_embedding(model_dir: str | Path, row: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings (T, D) float32, timestamps (T,) seconds) of one manifest row."""
    npy = Path(model_dir) / row["embedding"]
    return np.load(npy), np.load(npy.with_name(npy.stem + TIMESTAMPS_SUFFIX))


# -- arguments -----------------------------------------------------------------------------
def add_embedding_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the embedding half (``--input-dir``, ``--force``, ``--quiet``/``--verbose``
    and ``--workers`` come from the degradation half or :func:`build_parser`)."""
    g = parser.add_argument_group("embeddings")
    g.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        metavar="LIST",
        help="comma-separated models to run (openl3, vggish, cdpam), or 'none' to "
        "skip the embedding half",
    )
    g.add_argument(
        "--openl3-dir",
        default="openl3_embeddings",
        metavar="DIR",
        help="output folder of OpenL3 embeddings",
    )
    g.add_argument(
        "--vggish-dir",
        default="vggish_embeddings",
        metavar="DIR",
        help="output folder of VGGish embeddings",
    )
    g.add_argument(
        "--cdpam-dir",
        default="cdpam_embeddings",
        metavar="DIR",
        help="output folder of CDPAM embeddings",
    )
    g.add_argument(
        "--openl3-input-repr",
        default="mel256",
        choices=("mel256", "mel128", "linear"),
        help="OpenL3 spectrogram front end",
    )
    g.add_argument(
        "--openl3-content-type",
        default="music",
        choices=("music", "env"),
        help="OpenL3 training content",
    )
    g.add_argument(
        "--openl3-embedding-size",
        default=6144,
        type=int,
        choices=(6144, 512),
        help="OpenL3 embedding dimension",
    )
    g.add_argument(
        "--openl3-hop",
        default=0.1,
        type=cli.positive_float,
        metavar="SECONDS",
        help="OpenL3 hop between 1-s windows, in seconds",
    )
    g.add_argument(
        "--vggish-postprocess",
        action="store_true",
        help="apply VGGish's PCA + 8-bit quantisation post-processing (default: raw "
        "128-d embeddings)",
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
        description="Embed every clean and degraded file of stage 1/2 with OpenL3, VGGish, CDPAM.",
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


def model_options(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Constructor options for model ``name`` from the command line."""
    opts: dict[str, Any] = {
        "device": getattr(args, "device", "cpu"),
        "weights_dir": getattr(args, "weights_dir", None),
    }
    if getattr(args, "batch_size", None) is not None:
        opts["batch_size"] = args.batch_size
    if name == "openl3":
        opts.update(
            input_repr=args.openl3_input_repr,
            content_type=args.openl3_content_type,
            embedding_size=args.openl3_embedding_size,
            hop_seconds=args.openl3_hop,
        )
    elif name == "vggish":
        opts["postprocess"] = bool(getattr(args, "vggish_postprocess", False))
    return opts


def model_dir_of(name: str, args: argparse.Namespace) -> Path:
    """The output folder of model ``name`` (``--<name>-dir``, default ``<name>_embeddings``)."""
    return Path(getattr(args, f"{name}_dir", None) or f"{name}_embeddings")


def check_model_folders(args: argparse.Namespace, models: list[str]) -> str | None:
    """Why the models' output folders cannot be used (None: fine), before any work.

    Each model needs a folder of its own (a folder holds one model's embeddings and one
    manifest), which is neither another stage's folder nor the audio folder.
    """
    seen: dict[Path, str] = {}
    for name in models:
        folder = model_dir_of(name, args)
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
                inputs=[("--input-dir", args.input_dir, "audio_conversion")],
            )
        except PerceptualAudioError as e:
            return str(e)
    return None


#: ModelResult.reason of a model whose output folder was refused (busy, another stage's).
REFUSED = "its output folder was refused (see the message above)"
#: The running model's "save what is done" function, called when the run is interrupted.
_checkpoint: list[Any] = []


def make_embedder(name: str, options: dict[str, Any]) -> Embedder:
    """Instantiate ``name`` with the options its constructor accepts.

    An option the model does not take is dropped with a debug message, unless it was asked
    for explicitly (truthy model-specific option), which is an error.
    """
    from perceptual_audio.embeddings.base import _REGISTRY, _import_models

    _import_models()
    cls = _REGISTRY.get(name)
    params = inspect.signature(cls.__init__).parameters if cls is not None else {}
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = {k: v for k, v in options.items() if takes_kwargs or k in params}
    dropped = sorted(set(options) - set(accepted))
    for k in dropped:
        if k == "postprocess" and options[k]:
            raise PerceptualAudioError(f"model {name} does not support the option {k}")
        logger.debug("model %s takes no option %s; ignored", name, k)
    return get_embedder(name, **accepted)


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


def _unavailable(
    model_dir: Path,
    name: str,
    reason: str,
    args: argparse.Namespace,
    options: dict[str, Any],
    *,
    load_failed: bool,
) -> ModelResult:
    model_dir.mkdir(parents=True, exist_ok=True)
    # Outputs of an earlier run with weights are stale for this run's settings: the manifest
    # now lists none of them (later stages see the model as skipped).
    write_embedding_manifest(model_dir, [])
    cli.write_run_json(
        model_dir,
        stage="embeddings",
        args=args,
        params=_jsonable(options),
        extra={"model": name, "available": False, "reason": reason},
    )
    return ModelResult(name, available=False, reason=reason, load_failed=load_failed)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=str))


def embed_model(name: str, args: argparse.Namespace, audio_dir: Path, rows: list) -> ModelResult:
    """Run one model over every manifest row; never raises for a single file's failure."""
    model_dir = model_dir_of(name, args)
    options = model_options(name, args)
    refused = cli.claim_output_folder(
        model_dir,
        owner=f"embeddings:{name}",
        option=f"--{name}-dir",
        inputs=[("--input-dir", audio_dir, "audio_conversion")],
    )
    if refused is not None:
        return ModelResult(name, available=False, reason=REFUSED, load_failed=True)
    t0 = time.perf_counter()
    try:
        embedder = make_embedder(name, options)
        embedder.load()
    except WeightsUnavailableError as e:
        logger.warning("%s skipped: %s", name, e)
        return _unavailable(model_dir, name, str(e), args, options, load_failed=False)
    except Exception as e:  # a corrupt file, a bad option: this model fails, others go on
        reason = f"{type(e).__name__}: {e}"
        logger.error("%s could not be loaded: %s", name, reason)
        return _unavailable(model_dir, name, reason, args, options, load_failed=True)
    load_seconds = time.perf_counter() - t0

    info = _jsonable(embedder.info())
    settings = json.dumps(info, sort_keys=True)
    digest = params_digest(info)
    weights_sha = info.get("weights_sha256") or ""
    variant = str(info.get("variant", ""))
    hop = info.get("hop_seconds", "")
    force = bool(getattr(args, "force", False))

    model_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(model_dir)
    try:
        old = {r["path"]: r for r in read_embedding_manifest(model_dir)}
    except SchemaError as e:
        logger.warning("%s; rebuilding it", e)
        old = {}

    result = ModelResult(name, available=True)
    new_rows: list[dict[str, Any]] = []
    t_embed = time.perf_counter()
    audio_seconds = 0.0
    last_checkpoint = time.perf_counter()

    def checkpoint() -> None:
        # A killed or interrupted run keeps what it embedded: rows done so far (one per file
        # handled, in order) + the earlier rows of the files still to do (their outputs are
        # untouched until they are redone).
        pending = [old[r.path] for r in rows[len(new_rows) :] if r.path in old]
        write_embedding_manifest(model_dir, new_rows + pending)

    _checkpoint[:] = [checkpoint]
    for row in cli.progress(rows, total=len(rows), desc=name, args=args):
        if time.perf_counter() - last_checkpoint > CHECKPOINT_SECONDS:
            checkpoint()
            last_checkpoint = time.perf_counter()
        npy, ts_path = embedding_paths(row.path, model_dir, audio_dir)
        rec: dict[str, Any] = {
            "path": row.path,
            "embedding": npy.relative_to(model_dir).as_posix(),
            "model": name,
            "variant": variant,
            "hop_seconds": hop,
            "settings": settings,
            "settings_digest": digest,
            "weights_sha256": weights_sha,
        }
        try:
            audio_sha = sha256_file(audio_dir / row.path)
            rec["audio_sha256"] = audio_sha
            prev = old.get(row.path)
            if (
                not force
                and prev is not None
                and prev.get("status") == STATUS_OK
                and prev.get("audio_sha256") == audio_sha
                and prev.get("settings_digest") == digest
                and npy.is_file()
                and ts_path.is_file()
                and all(extra_path(npy, k).is_file() for k in _split(prev.get("extras")))
            ):
                new_rows.append(prev)
                result.n_skipped += 1
                continue
            y, sr = load_audio(audio_dir / row.path)
            extras: dict[str, np.ndarray] = {}
            if hasattr(embedder, "embed_with_extras"):  # e.g. CDPAM's clip embedding
                emb, ts, extras = embedder.embed_with_extras(y, sr)
            else:
                emb, ts = embedder.embed(y, sr)
            emb = np.asarray(emb, dtype=np.float32)
            ts = np.asarray(ts, dtype=np.float64)
            if emb.ndim != 2 or emb.shape[0] != ts.shape[0] or emb.shape[0] == 0:
                raise PerceptualAudioError(
                    f"{name} returned embeddings of shape {emb.shape} and timestamps of shape "
                    f"{ts.shape}; expected (T, D) and (T,) with T >= 1"
                )
            save_npy_atomic(npy, emb)
            save_npy_atomic(ts_path, ts)
            for key, value in sorted(extras.items()):
                save_npy_atomic(extra_path(npy, key), np.asarray(value, dtype=np.float32))
            flags = []
            if hasattr(embedder, "flags"):  # e.g. VGGish: "short" when zero-padded to a patch
                flags = embedder.flags(resampled_length(len(y), sr, embedder.sample_rate))
            audio_seconds += len(y) / sr
            rec.update(
                n_frames=emb.shape[0],
                dim=emb.shape[1],
                status=STATUS_OK,
                extras=";".join(sorted(extras)),
                flags=";".join(flags),
            )
            result.n_ok += 1
        except Exception as e:  # one bad file never stops the others
            msg = str(e) if isinstance(e, PerceptualAudioError) else f"{type(e).__name__}: {e}"
            msg = " ".join(msg.split())
            logger.error("%s: %s failed: %s", name, row.path, msg)
            for p in (
                npy,
                ts_path,
                *(extra_path(npy, k) for k in _split((old.get(row.path) or {}).get("extras"))),
            ):
                p.unlink(missing_ok=True)
            rec.update(n_frames="", dim="", extras="", flags="", status=f"error: {msg}")
            result.n_failed += 1
        new_rows.append(rec)

    # Outputs of audio files that left the manifest.
    current = {r.path for r in rows}
    for path, prev in old.items():
        if path in current:
            continue
        npy = model_dir / prev["embedding"]
        extra_files = [extra_path(npy, k) for k in _split(prev.get("extras"))]
        for p in (npy, npy.with_name(npy.stem + TIMESTAMPS_SUFFIX), *extra_files):
            if p.is_file():
                p.unlink()
        result.n_removed += 1
        logger.info("%s: removed embeddings of %s (no longer in the audio manifest)", name, path)

    _checkpoint.clear()
    write_embedding_manifest(model_dir, new_rows)
    embed_seconds = time.perf_counter() - t_embed
    cli.write_run_json(
        model_dir,
        stage="embeddings",
        args=args,
        params=info,
        timings={
            "load": round(load_seconds, 3),
            "embed": round(embed_seconds, 3),
            "audio_seconds_embedded": round(audio_seconds, 3),
        },
        extra={
            "model": name,
            "available": True,
            "weights_sha256": weights_sha,
            "counts": {
                "embedded": result.n_ok,
                "unchanged": result.n_skipped,
                "failed": result.n_failed,
                "removed": result.n_removed,
            },
        },
    )
    logger.info(
        "%s: %d embedded, %d unchanged, %d failed, %d removed -> %s",
        name,
        result.n_ok,
        result.n_skipped,
        result.n_failed,
        result.n_removed,
        model_dir,
    )
    return result


def run_embeddings(args: argparse.Namespace) -> int:
    """The embedding half of stage 2; returns an exit status (see the module docstring)."""
    try:
        models = parse_models(getattr(args, "models", ",".join(DEFAULT_MODELS)))
    except PerceptualAudioError as e:
        logger.error("%s", e)
        return cli.EXIT_USAGE
    if not models:
        logger.info("--models none: no embeddings computed")
        return cli.EXIT_OK
    audio_dir = Path(args.input_dir)
    problem = cli.check_input_folder(
        audio_dir,
        option="--input-dir",
        needs="manifest.csv",
        made_by="audio_conversion.py --input <your audio folder> --output DIR",
    )
    if problem is not None:
        return problem
    refused = check_model_folders(args, models)
    if refused:
        logger.error("%s", refused)
        return cli.EXIT_USAGE
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

    # The networks run in this process; --workers sets torch's intra-op threads.
    import torch

    threads_before = torch.get_num_threads()
    workers = getattr(args, "workers", None)
    if workers:
        torch.set_num_threads(int(workers))
    try:
        results = [embed_model(name, args, audio_dir, rows) for name in models]
    except KeyboardInterrupt:
        for save in _checkpoint:  # the model being embedded keeps the files it finished
            save()
        raise
    finally:
        _checkpoint.clear()
        torch.set_num_threads(threads_before)
    unavailable = [r for r in results if not r.available and not r.load_failed]
    failed = any(r.n_failed or r.load_failed for r in results)
    for r in results:
        status = (
            "available"
            if r.available
            else f"not run: {REFUSED}"
            if r.reason == REFUSED
            else "FAILED to load"
            if r.load_failed
            else "UNAVAILABLE (weights missing)"
        )
        summary = f"{r.name}: {status}" + (
            f"; {r.n_ok} embedded, {r.n_skipped} unchanged, {r.n_failed} failed"
            if r.available
            else ""
        )
        (logger.warning if (not r.available or r.n_failed) else logger.info)("%s", summary)
    if unavailable:
        logger.warning(
            "models skipped for lack of weights: %s (see the messages above for what "
            "to fetch and where)",
            ", ".join(r.name for r in unavailable),
        )
    if failed:
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
