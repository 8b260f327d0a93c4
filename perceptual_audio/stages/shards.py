"""Shards: the heavy stages split across processes or cluster array tasks, merged exactly.

``--shard K/N`` (1-based) makes stage 2 or stage 3 do only the work of shard ``K``: the clean
recordings whose stable hash (:func:`shard_index` of the clean file's manifest path) is ``K``,
with every degraded file and pair made from them. The same recording always lands in the same
shard, and adding a recording moves no other. A shard writes its audio and embedding files
where the unsharded run would, but its table (manifest rows, pair metrics) goes to a fragment
``<folder>/.shards/K-of-N/`` with a record of what it ran with; it locks that fragment folder
only, so the N shards of one folder run at once, and it never writes another shard's files.

The stage run without ``--shard`` (or with ``--merge-shards``) merges: it checks that all N
fragments are there and finished, ran with this run's parameters and saw the same inputs
(:func:`collect`), takes their rows as the finished work (nothing is recomputed: work that no
fragment holds is an error naming its shard), writes the one table exactly as an unsharded run
would, and removes the fragments. A missing, running or unfinished shard is named and nothing
is written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perceptual_audio.errors import PerceptualAudioError
from perceptual_audio.files import atomic_write_json, live_lock
from perceptual_audio.layout import (
    DEGRADED_DIR,
    MANIFEST_NAME,
    RECORD_NAME,
    RESTORED_DIR,
    SHARDS_DIR,
)
from perceptual_audio.listening import is_imported
from perceptual_audio.manifest import ManifestRow, read_manifest

#: Bumped when the fragment layout changes.
FRAGMENT_VERSION = 1
_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_DIR_RE = re.compile(r"^(\d+)-of-(\d+)$")


class ShardMergeError(PerceptualAudioError):
    """The fragments cannot be merged (missing, unfinished, or run with other settings)."""


@dataclass(frozen=True, order=True)
class Shard:
    """Shard ``index`` of ``count`` (1-based)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def label(self) -> str:
        """Folder name of its fragment: ``2-of-3``."""
        return f"{self.index}-of-{self.count}"

    def owns(self, clean_path: str) -> bool:
        """Whether the clean recording at manifest path ``clean_path`` is this shard's."""
        return shard_index(clean_path, self.count) == self.index

    def fragment_dir(self, folder: str | os.PathLike) -> Path:
        return Path(folder) / SHARDS_DIR / self.label


def parse_shard(text: str) -> Shard:
    """``"2/8"`` -> ``Shard(2, 8)``; an argparse type.

    Raises
    ------
    argparse.ArgumentTypeError
        Unless ``text`` is ``K/N`` with integers ``1 <= K <= N``.
    """
    m = _SHARD_RE.match(str(text))
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise argparse.ArgumentTypeError(
            f"--shard must be K/N with whole numbers 1 <= K <= N (e.g. 2/8), got {text!r}"
        )
    return Shard(int(m.group(1)), int(m.group(2)))


def shard_index(clean_path: str, count: int) -> int:
    """The shard (1..count) of a clean recording: sha256 of its manifest path, mod count.

    Stable across machines, Python versions and runs (unlike ``hash()``), and independent of
    the other files of the study."""
    digest = hashlib.sha256(clean_path.encode("utf-8")).digest()
    return 1 + int.from_bytes(digest[:8], "big") % count


def group_of(row: Any) -> str:
    """The clean recording a manifest row belongs to: its own path for a clean file, its
    source (the clean file it was made from) for a degraded one."""
    if row.kind == "restored":  # its source is a degraded file; its group is that file's
        return str(row.params.get("clean") or row.source)
    return row.path if row.kind == "clean" else row.source


def name_by_shard(items: Iterable[tuple[str, str]], count: int, *, per_shard: int = 3) -> str:
    """``shard 2/3: a, b, c, ...; shard 3/3: d`` for (clean path, what) pairs: what a merge
    lacks, named under the shard that should have done it."""
    by_shard: dict[int, list[str]] = {}
    for clean_path, what in items:
        by_shard.setdefault(shard_index(clean_path, count), []).append(what)
    return "; ".join(
        f"shard {k}/{count}: {', '.join(v[:per_shard])}{', ...' if len(v) > per_shard else ''}"
        for k, v in sorted(by_shard.items())
    )


def add_shard_arguments(parser: argparse.ArgumentParser, *, what: str) -> None:
    """``--shard K/N`` and ``--merge-shards`` (mutually exclusive)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--shard",
        type=parse_shard,
        default=None,
        metavar="K/N",
        help=f"do only shard K of N of {what} (recordings assigned by a stable hash of the "
        "clean file's path) and write its table to a fragment under .shards/; run the stage "
        "again without --shard to merge the N fragments",
    )
    group.add_argument(
        "--merge-shards",
        action="store_true",
        help="merge the finished fragments of a sharded run (what a run without --shard does "
        "when fragments exist), and fail if there are none",
    )


def digest(obj: Any) -> str:
    """sha256 of a JSON-able object (sorted keys): the parameters or inputs a shard ran on."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def inputs_digest(rows: Iterable[Any]) -> str:
    """Digest of the clean recordings a stage-2 run sees (path and sha256 of each)."""
    return digest(sorted((r.path, r.sha256) for r in rows if r.kind == "clean"))


def files_digest(paths: Sequence[str | os.PathLike]) -> str:
    """Digest of the bytes of input tables (stage 3: the audio and embedding manifests)."""
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        h.update(str(p.name).encode() + b"\0")
        h.update(p.read_bytes() if p.is_file() else b"<missing>")
        h.update(b"\0")
    return h.hexdigest()


def write_record(
    folder: str | os.PathLike,
    shard: Shard,
    *,
    stage: str,
    params: str,
    inputs: str,
    described: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Mark shard ``shard`` of ``folder`` finished: its record, written last and atomically.

    ``params`` and ``inputs`` are the digests :func:`collect` compares; ``described`` the
    parameters in words, for the message when they differ."""
    path = shard.fragment_dir(folder) / RECORD_NAME
    atomic_write_json(
        path,
        {
            "fragment_version": FRAGMENT_VERSION,
            "stage": stage,
            "shard": str(shard),
            "index": shard.index,
            "count": shard.count,
            "status": "complete",
            "params_digest": params,
            "inputs_digest": inputs,
            "parameters": described or {},
            **(extra or {}),
        },
    )
    return path


def clear_record(folder: str | os.PathLike, shard: Shard) -> None:
    """A shard starting again is unfinished until it writes its record."""
    (shard.fragment_dir(folder) / RECORD_NAME).unlink(missing_ok=True)


def fragment_shards(folder: str | os.PathLike) -> list[Shard]:
    """Every shard that has a fragment folder in ``folder`` (any N), sorted."""
    root = Path(folder) / SHARDS_DIR
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        m = _DIR_RE.match(d.name)
        if d.is_dir() and m and 1 <= int(m.group(1)) <= int(m.group(2)):
            found.append(Shard(int(m.group(1)), int(m.group(2))))
    return sorted(found)


def has_fragments(folder: str | os.PathLike) -> bool:
    return bool(fragment_shards(folder))


def running_shards(folder: str | os.PathLike) -> list[tuple[Shard, dict[str, Any]]]:
    """The shards of ``folder`` whose process holds its fragment lock now."""
    out = []
    for shard in fragment_shards(folder):
        rec = live_lock(shard.fragment_dir(folder))
        if rec is not None:
            out.append((shard, rec))
    return out


def describe_running(folder: str | os.PathLike) -> str | None:
    """A message naming the running shards of ``folder`` (None when none runs)."""
    running = running_shards(folder)
    if not running:
        return None
    parts = [
        f"shard {s} (pid {rec.get('pid', '?')} on {rec.get('host', '?')}, since "
        f"{rec.get('started_at', '?')})"
        for s, rec in running
    ]
    return f"{folder}: {', '.join(parts)} still running"


@dataclass(frozen=True)
class Fragment:
    """A finished shard's fragment folder and record."""

    shard: Shard
    folder: Path
    record: dict[str, Any]

    def path(self, name: str) -> Path:
        return self.folder / name


def _finished(folder: str | os.PathLike, what: str) -> tuple[int, list[Fragment], list[str]]:
    """(N, the finished fragments, a problem per missing, running or unfinished shard)."""
    shards = fragment_shards(folder)
    if not shards:
        raise ShardMergeError(f"{Path(folder) / SHARDS_DIR}: no shard fragments to merge")
    counts = sorted({s.count for s in shards})
    if len(counts) > 1:
        raise ShardMergeError(
            f"{Path(folder) / SHARDS_DIR} holds fragments of runs split in different numbers of "
            f"shards ({', '.join(str(n) for n in counts)}); delete the folders of the run you do "
            "not want, then merge"
        )
    n = counts[0]
    problems, fragments = [], []
    for k in range(1, n + 1):
        shard = Shard(k, n)
        fdir = shard.fragment_dir(folder)
        lock = live_lock(fdir)
        if lock is not None:
            problems.append(
                f"shard {shard} is still running (pid {lock.get('pid', '?')} on "
                f"{lock.get('host', '?')} since {lock.get('started_at', '?')})"
            )
            continue
        rec_path = fdir / RECORD_NAME
        try:
            record = json.loads(rec_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            if fdir.is_dir():
                problems.append(
                    f"shard {shard} is unfinished (no {RECORD_NAME} in {fdir}: it was killed or "
                    f"failed before the end); run it again: {what} {shard}"
                )
            else:
                problems.append(f"shard {shard} is missing (no {fdir}); run {what} {shard}")
            continue
        except (OSError, ValueError) as e:
            problems.append(f"shard {shard} has an unreadable {rec_path} ({e}); run {what} {shard}")
            continue
        fragments.append(Fragment(shard, fdir, record))
    return n, fragments, problems


def _cannot(folder: str | os.PathLike, n: int, problems: list[str]) -> ShardMergeError:
    """One message; shards with the same problem are named together."""
    same: dict[str, list[str]] = {}
    for p in problems:  # "shard K/N <problem>"
        k, _, rest = p.removeprefix("shard ").partition(" ")
        same.setdefault(rest, []).append(k)
    parts = [
        f"shard {ks[0]} {rest}" if len(ks) == 1 else f"shards {', '.join(ks)} {rest}"
        for rest, ks in same.items()
    ]
    return ShardMergeError(
        f"cannot merge the {n} shards of {folder}: " + "; ".join(parts) + ". Nothing merged"
    )


def check_finished(folder: str | os.PathLike, *, what: str) -> None:
    """Raise :class:`ShardMergeError` naming every missing, running or unfinished shard of
    ``folder`` (a stage checks all its folders before it merges any)."""
    n, _, problems = _finished(folder, what)
    if problems:
        raise _cannot(folder, n, problems)


def collect(
    folder: str | os.PathLike,
    *,
    stage: str,
    params: str,
    inputs: str,
    what: str,
    described: dict[str, Any] | None = None,
) -> list[Fragment]:
    """All N finished fragments of ``folder``, checked against this run.

    Parameters
    ----------
    folder : path-like
        The stage's output folder holding ``.shards/``.
    stage : str
        Which stage's fragments (``degradations``, ``embeddings:<model>``, ``calculate_metrics``).
    params, inputs : str
        This run's parameter and input digests; every shard must have run with the same.
    what : str
        The command that runs a shard, in messages (``extract_embeddings.py ... --shard``).
    described : dict, optional
        This run's parameters in words (a shard records its own as ``parameters``): a
        mismatch names the parameters that differ.

    Raises
    ------
    ShardMergeError
        Naming every missing, running, unfinished or mismatched shard (nothing is merged).
    """
    n, fragments, problems = _finished(folder, what)
    good = []
    for frag in fragments:
        record, shard = frag.record, frag.shard
        if record.get("stage") != stage or record.get("status") != "complete":
            problems.append(
                f"shard {shard}: {frag.folder / RECORD_NAME} is not a finished {stage} shard"
            )
        elif record.get("params_digest") != params:
            theirs = record.get("parameters") or {}
            differ = [
                f"{k}: {theirs.get(k)!r} there, {v!r} here"
                for k, v in (described or {}).items()
                if theirs.get(k) != v
            ]
            problems.append(
                f"shard {shard} ran with other parameters than this run"
                + (f" ({'; '.join(differ)})" if differ else "")
                + "; rerun it with this run's options, or merge with the options the shards had"
            )
        elif record.get("inputs_digest") != inputs:
            problems.append(
                f"shard {shard} saw other inputs than this run (its input files changed since "
                f"it ran); run it again: {what} {shard}"
            )
        else:
            good.append(frag)
    if problems:
        raise _cannot(folder, n, problems)
    return good


def remove_fragments(folder: str | os.PathLike) -> None:
    """Delete ``folder/.shards`` after a merge (the merged table now holds its rows)."""
    root = Path(folder) / SHARDS_DIR
    if root.is_dir():
        shutil.rmtree(root)


def fragment_rows(
    audio_dir: str | os.PathLike, folder: str, shard: Shard
) -> list[ManifestRow] | None:
    """The rows shard ``shard`` wrote to its fragment of ``<audio_dir>/<folder>/`` (the audio
    manifest lists them only after the merge); None: no such fragment."""
    path = shard.fragment_dir(Path(audio_dir) / folder) / MANIFEST_NAME
    return read_manifest(path) if path.is_file() else None


def fragments_merged(audio_dir: str | os.PathLike, folder: str) -> bool:
    """Whether the audio manifest lists every row of ``<audio_dir>/<folder>/``'s fragments
    (their merge succeeded, or there was nothing to merge)."""
    root = Path(audio_dir)
    listed = {r.path: r for r in read_manifest(root)}
    return all(
        listed.get(r.path) == r
        for shard in fragment_shards(root / folder)
        for r in fragment_rows(root, folder, shard) or ()
    )


def degraded_rows(audio_dir: str | os.PathLike, shard: Shard) -> list[ManifestRow] | None:
    """The degraded rows shard ``shard`` wrote to its fragment of ``<audio_dir>/degraded/``;
    None: no such fragment. Read by both halves of stage 2: the degradations (a rerun shard
    keeps its work) and the embeddings (a shard embeds the files it degraded)."""
    return fragment_rows(audio_dir, DEGRADED_DIR, shard)


def restored_rows(audio_dir: str | os.PathLike, shard: Shard) -> list[ManifestRow] | None:
    """The restored rows shard ``shard`` wrote to its fragment of ``<audio_dir>/restored/``
    (``--restore``); None: no such fragment."""
    return fragment_rows(audio_dir, RESTORED_DIR, shard)


def with_fragments(
    audio_dir: str | os.PathLike, shard: Shard, rows: list[ManifestRow]
) -> list[ManifestRow]:
    """The audio manifest's ``rows`` as shard ``shard`` sees them: when it degraded files
    (its fragment of ``degraded/`` exists), its degraded and restored rows are those of its
    fragments (none restored without a ``restored/`` fragment: it ran ``--restore none``);
    clean and imported rows stay. Every shard's rows, not only its own."""
    degraded = degraded_rows(audio_dir, shard)
    if degraded is None:
        return list(rows)
    kept = [r for r in rows if r.kind == "clean" or is_imported(r)]
    return kept + degraded + (restored_rows(audio_dir, shard) or [])
