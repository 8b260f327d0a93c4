"""Stage 2's restorations (``--restore``) in shards, and their merge.

A shard (``--shard K/N``) restores the degraded files of its own recordings (the same
assignment as the degradations: :func:`shards.group_of` of a restored row is its clean file),
writes the WAVs where the unsharded run would and its ``restored`` manifest rows to
``test_audio/restored/.shards/K-of-N/manifest.csv``, then its ``record.json`` (the digest of the
restoration settings and of the study's clean files, the losses it found unavailable and the
files that failed). The merge (stage 2 without ``--shard``) takes the fragments' rows as the
finished restorations, computes nothing, and writes the rows the unsharded run would; a
missing, running, unfinished or mismatched shard is named and nothing is merged.

:mod:`perceptual_audio.stages.restore` runs the jobs; this module owns the fragments.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from perceptual_audio.layout import MANIFEST_NAME, RESTORED_DIR
from perceptual_audio.manifest import ManifestRow, read_manifest, write_manifest
from perceptual_audio.stages import cli, shards


class RestoreSettings(Protocol):
    """What this module reads of :class:`perceptual_audio.stages.restore.RestoreSettings`
    (restore.py imports this module, not the other way)."""

    losses: tuple[str, ...]
    mode: str
    steps: int
    lr: float
    on: tuple[tuple[str, str], ...] | None
    max_files: int | None
    seed: int
    device: str
    workers: int


logger = logging.getLogger(__name__)

#: The ``stage`` of a restoration fragment's record.
STAGE = "restorations"


def shard_command(settings: RestoreSettings | None) -> str:
    """How a merge names the command that redoes a restoration shard."""
    losses = ",".join(settings.losses) if settings is not None else "LOSS[,LOSS]"
    return f"extract_embeddings.py ... --restore {losses} --shard"


def settings_words(settings: RestoreSettings | None) -> dict[str, Any]:
    """What decides every restoration of a run, in words (a merge names those that differ);
    its digest is what shards and merge compare."""
    if settings is None:
        return {"restore": "none"}
    return {
        "restore": ",".join(settings.losses),
        "restore_mode": settings.mode,
        "restore_steps": settings.steps,
        "restore_lr": settings.lr,
        "restore_on": ",".join(f"{f}:{lv}" if lv else f for f, lv in settings.on or ()) or "all",
        "restore_max_files": settings.max_files,
        "seed": settings.seed,
        "device": settings.device,
    }


def old_rows(root: Path, shard: shards.Shard, rows: list[ManifestRow]) -> dict[str, ManifestRow]:
    """The restorations a shard may keep: the manifest's, then those of its own fragment (a
    rerun shard keeps what it finished, also when Ctrl-C stopped it). Its record is cleared:
    the shard is unfinished until :func:`finish_shard`."""
    old = {r.path: r for r in rows if r.kind == "restored"}
    old.update({r.path: r for r in shards.restored_rows(root, shard) or ()})
    shards.clear_record(root / RESTORED_DIR, shard)
    return old


def save_fragment(root: Path, shard: shards.Shard, rows: list[ManifestRow]) -> None:
    """Shard ``shard``'s restored rows so far to its fragment (no record: unfinished)."""
    write_manifest(shard.fragment_dir(root / RESTORED_DIR) / MANIFEST_NAME, rows)


def drop_fragment(root: Path, shard: shards.Shard) -> None:
    """A shard run with ``--restore none`` restores nothing: its earlier fragment goes (the
    merge, run with ``--restore none`` too, removes the restorations)."""
    folder = shard.fragment_dir(root / RESTORED_DIR)
    if folder.is_dir():
        shutil.rmtree(folder)
    if folder.parent.is_dir() and not any(folder.parent.iterdir()):
        folder.parent.rmdir()


def finish_shard(
    root: Path,
    shard: shards.Shard,
    settings: RestoreSettings,
    clean_rows: list[ManifestRow],
    rows: list[ManifestRow],
    *,
    failures: list[tuple[str, str]],
    unavailable: list[str],
    written: int,
) -> int:
    """Write shard ``shard``'s rows to its fragment, then its record (the shard is done)."""
    save_fragment(root, shard, rows)
    shards.write_record(
        root / RESTORED_DIR,
        shard,
        stage=STAGE,
        params=shards.digest(settings_words(settings)),
        inputs=shards.inputs_digest(clean_rows),
        described=settings_words(settings),
        extra={
            "counts": {
                "written": written,
                "skipped": len(rows) - written,
                "failed": len(failures),
            },
            "unavailable_losses": unavailable,
            "failures": [{"file": w, "error": m} for w, m in failures],
            "torch_threads": settings.workers,
        },
    )
    logger.info(
        "restorations, shard %s: wrote %d, skipped %d (up to date), failed %d -> %s",
        shard, written, len(rows) - written, len(failures),
        shard.fragment_dir(root / RESTORED_DIR),
    )  # fmt: skip
    if failures:
        return cli.EXIT_FAILED
    return cli.EXIT_MODELS_UNAVAILABLE if unavailable else cli.EXIT_OK


class MergeInputs:
    """What the finished restoration shards hold: their rows, the files that failed in them
    and the losses they found unavailable."""

    def __init__(self, fragments: list[shards.Fragment]) -> None:
        self.count = fragments[0].shard.count if fragments else 0
        self.rows: dict[str, ManifestRow] = {}
        self.failed: dict[str, str] = {}
        unavailable: set[str] = set()
        #: Each shard's torch threads (``--workers``): float32 rounding depends on them.
        self.threads = {f.shard.index: f.record.get("torch_threads") for f in fragments}
        for frag in fragments:
            self.rows.update((r.path, r) for r in read_manifest(frag.path(MANIFEST_NAME)))
            for f in frag.record.get("failures", []):
                self.failed[str(f.get("file"))] = str(f.get("error"))
            unavailable.update(frag.record.get("unavailable_losses", []))
        self.unavailable = sorted(unavailable)


def merge_inputs(
    root: Path, settings: RestoreSettings | None, clean_rows: list[ManifestRow]
) -> MergeInputs:
    """The N finished restoration fragments of ``root/restored``, checked against this run.

    Raises
    ------
    shards.ShardMergeError
        Naming every missing, running, unfinished or mismatched shard, or saying that the
        shards ran without ``--restore`` while this run asks for restorations.
    """
    folder = root / RESTORED_DIR
    if not shards.has_fragments(folder):
        if settings is None:  # nothing restored in the shards, nothing asked here
            return MergeInputs([])
        raise shards.ShardMergeError(
            f"cannot merge the restorations: {folder / shards.SHARDS_DIR} holds no fragments "
            f"(the shards ran without --restore); run the shards with --restore "
            f"{','.join(settings.losses)}, or merge without --restore. Nothing merged"
        )
    words = settings_words(settings)
    merge = MergeInputs(
        shards.collect(
            folder,
            stage=STAGE,
            params=shards.digest(words),
            inputs=shards.inputs_digest(clean_rows),
            what=shard_command(settings),
            described=words,
        )
    )
    if len(set(merge.threads.values())) > 1:
        logger.warning(
            "restorations: the shards ran with different torch thread counts (%s): float32 "
            "rounding may differ from one unsharded run; give every shard the same --workers",
            ", ".join(f"shard {k}: {t}" for k, t in sorted(merge.threads.items())),
        )
    return merge


def missing_message(folder: Path, missing: Iterable[tuple[str, str]], count: int) -> str:
    """The merge's error for restorations that no shard holds: (clean path, output) pairs."""
    missing = list(missing)
    return (
        f"cannot merge the shards of {folder}: {len(missing)} restored files are in no "
        f"shard's fragment or changed since it ran ({shards.name_by_shard(missing, count)}); "
        "rerun those shards. Nothing merged"
    )


def merged(root: Path) -> bool:
    """Whether the audio manifest lists every row of the restoration fragments (their merge
    succeeded, or there was nothing to merge)."""
    return shards.fragments_merged(root, RESTORED_DIR)
