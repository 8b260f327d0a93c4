"""The on-disk format of a model's embedding folder: ``<model>_embeddings/manifest.csv``,
the array files beside it, and ``run.json``'s availability (docs/CONTRACTS.md).

The one owner of that format: stage 2 (:mod:`perceptual_audio.stages.embed`) writes it with
:func:`write_embedding_manifest`; stage 3 reads it with :func:`discover_model` (which uses
:func:`read_embedding_manifest`) and :func:`locate_embedding`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perceptual_audio import files
from perceptual_audio.errors import FolderConflictError, SchemaError
from perceptual_audio.files import mirror_path

logger = logging.getLogger(__name__)

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
#: ``status`` of a row whose outputs were written.
STATUS_OK = "ok"


# -- paths ------------------------------------------------------------------------------------
def embedding_paths(
    audio_rel: str, model_dir: str | Path, audio_dir: str | Path
) -> tuple[Path, Path]:
    """(embedding .npy, timestamps .npy) for an audio path relative to ``audio_dir``."""
    npy = mirror_path(Path(audio_dir) / audio_rel, audio_dir, model_dir, suffix=".npy")
    return npy, timestamps_path(npy)


def timestamps_path(npy: Path) -> Path:
    """``a.npy`` -> ``a.timestamps.npy``."""
    return npy.with_name(npy.stem + TIMESTAMPS_SUFFIX)


def extra_path(npy: Path, key: str) -> Path:
    """Where a model's extra array ``key`` for embedding ``a.npy`` goes: ``a.<key>.npy``
    (CDPAM's clip embedding: ``a.clip.npy``)."""
    return npy.with_name(f"{npy.stem}.{key}.npy")


def split_names(text: str | None) -> list[str]:
    """A ``;``-separated manifest cell (``extras``, ``flags``) -> names."""
    return [t for t in (text or "").split(";") if t]


# -- the manifest -----------------------------------------------------------------------------
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


# -- reading a model folder (stage 3) ---------------------------------------------------------
@dataclass(frozen=True)
class ModelSource:
    """One model's embedding folder as a reader sees it.

    Attributes
    ----------
    name : str
        The model's registry name.
    folder : Path
    available : bool
        False when the folder is missing or its run.json says ``"available": false``.
    reason : str
        Why it is unavailable ("" when available).
    entries : dict
        Audio path (relative to the audio folder) -> row of the folder's ``manifest.csv``.
    """

    name: str
    folder: Path
    available: bool
    reason: str = ""
    entries: dict[str, dict[str, str]] = field(default_factory=dict)


def discover_model(name: str, folder: str | Path) -> ModelSource:
    """Read a model folder's ``run.json`` and ``manifest.csv`` (both optional).

    Raises
    ------
    FolderConflictError
        When the folder holds another model's embeddings.
    SchemaError
        When its manifest's columns are not :data:`EMBEDDING_COLUMNS`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return ModelSource(name, folder, False, f"folder {folder} does not exist")
    run_path = folder / "run.json"
    if run_path.exists():
        try:
            run = json.loads(run_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            logger.warning("%s: cannot read %s (%s); using the embeddings found", name, run_path, e)
            run = {}
        if isinstance(run, dict) and run.get("available") is False:
            reason = run.get("reason") or run.get("unavailable_reason") or "no reason given"
            return ModelSource(name, folder, False, f"{run_path} says unavailable: {reason}")
    entries = {r["path"]: r for r in read_embedding_manifest(folder) if r.get("path")}
    others = sorted({r["model"] for r in entries.values() if r.get("model")} - {name})
    if others:  # a folder of another model's embeddings must never be scored as this one
        raise FolderConflictError(
            f"--{name}-dir {folder} holds {', '.join(others)} embeddings "
            f"({folder / EMBEDDING_MANIFEST}, column 'model'), not {name}; give --{name}-dir "
            f"the folder extract_embeddings.py wrote with --{name}-dir"
        )
    return ModelSource(name, folder, True, "", entries)


def locate_embedding(
    model: ModelSource, audio_path: str, audio_sha256: str
) -> tuple[Path, str | None]:
    """Frame-embedding file of an audio file, and a problem (None when usable).

    The folder's manifest gives the file and says whether stage 2 succeeded and from which
    audio (``audio_sha256``); without a manifest row, the path is the contract's mirror path
    ``<model dir>/<audio path with .npy>``.
    """
    entry = model.entries.get(audio_path)
    if entry is not None and entry.get("embedding"):
        path = model.folder / entry["embedding"]
    else:
        path = model.folder / Path(audio_path).with_suffix(".npy")
    if entry is not None:
        status = entry.get("status", STATUS_OK) or STATUS_OK
        if status != STATUS_OK:
            return path, f"{model.name} embedding of {audio_path} failed in stage 2: {status}"
        emb_sha = entry.get("audio_sha256", "")
        if emb_sha and audio_sha256 and emb_sha != audio_sha256:
            return path, (
                f"{model.name} embedding of {audio_path} is stale: made from audio "
                f"sha256 {emb_sha[:12]}, the file is now {audio_sha256[:12]}; rerun "
                "extract_embeddings.py"
            )
    if not path.is_file():
        return path, f"missing {model.name} embedding {path}"
    return path, None
