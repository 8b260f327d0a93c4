"""Stage 2's embedding item: one model's pass over the audio manifest (:class:`ModelRun`: a
file embedded, or kept when unchanged; the checkpoint; departed files), the model built from
its options, and a model's earlier rows (its folder, or in a merge its shards' fragments).
The run of the half is :mod:`perceptual_audio.stages.embed`."""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perceptual_audio.audio_io import load_audio, resampled_length
from perceptual_audio.embedding_manifest import (
    STATUS_OK,
    embedding_paths,
    extra_path,
    read_embedding_manifest,
    split_names,
    timestamps_path,
    write_embedding_manifest,
)
from perceptual_audio.embeddings.base import Embedder, model_class
from perceptual_audio.errors import PerceptualAudioError, SchemaError
from perceptual_audio.files import params_digest, save_npy_atomic, sha256_file
from perceptual_audio.manifest import ManifestRow
from perceptual_audio.stages import shards
from perceptual_audio.stages.embed_settings import EmbedSettings

logger = logging.getLogger(__name__)

REFUSED = "its output folder was refused (see the message above)"


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


def jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    """``d`` as JSON would give it back (paths and other objects as text)."""
    return json.loads(json.dumps(dict(d), default=str))


@dataclass
class ModelRun:
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


def previous_rows(name: str, model_dir: Path) -> dict[str, dict[str, str]]:
    """The rows of ``model_dir``'s manifest by audio path ({} when it is unreadable)."""
    try:
        return {r["path"]: r for r in read_embedding_manifest(model_dir)}
    except SchemaError as e:
        logger.warning("%s; rebuilding it", e)
        return {}


def shard_command(name: str) -> str:
    """How a merge names the command that redoes one of ``name``'s shards."""
    return f"extract_embeddings.py ... --models {name} --shard"


def merge_rows(
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


def torch_threads() -> int:
    """torch's intra-op threads (a shard records them: rounding depends on them)."""
    import torch  # deferred: a heavy import the stage needs only here

    return int(torch.get_num_threads())
