"""File plumbing shared by every stage: atomic writes, hashing, path mapping, folder
ownership and locks.

Rule: nothing is ever written straight to its final path. Outputs go to a temporary file in
the same folder (same filesystem, so the final ``os.replace`` is atomic) and are renamed only
once complete, so a crash never leaves a half-written file that a rerun would take as done.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from perceptual_audio.errors import FolderBusyError, FolderConflictError
from perceptual_audio.layout import LOCK_NAME

logger = logging.getLogger(__name__)

#: Temporary files are named ``.<final name>.<TMP_MARKER><random>`` + the final suffix, so that
#: format-sniffing writers (soundfile) still see the right extension, and a cleanup pass can
#: recognise leftovers of a crashed run.
TMP_MARKER = ".partial-"

_HASH_CHUNK_BYTES = 1 << 20


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``final_path``; rename it into place on success.

    On an exception inside the block the temporary file is deleted and the final path is
    left exactly as it was (absent, or the previous complete version).
    """
    final = Path(final_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}{TMP_MARKER}{secrets.token_hex(4)}{final.suffix}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_text_if_changed(path: str | os.PathLike, text: str) -> bool:
    """Write ``text`` atomically unless ``path`` already holds exactly it; True if written.

    An unchanged rerun then leaves the file (and its modification time) alone, so that the
    stages after it see nothing new.
    """
    p = Path(path)
    data = text.encode("utf-8")
    try:
        if p.is_file() and p.stat().st_size == len(data) and p.read_bytes() == data:
            return False
    except OSError:
        pass
    atomic_write_bytes(p, data)
    return True


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    """``np.save`` to ``path`` atomically (``path`` should end in ``.npy``)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary files left in ``folder`` (recursively) by a crashed run.

    Returns the removed paths. Only files whose names carry :data:`TMP_MARKER` are touched.
    """
    removed = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    for p in root.rglob(f".*{TMP_MARKER}*"):
        if p.is_file():
            p.unlink()
            removed.append(p)
            logger.info("removed temporary file of an interrupted run: %s", p)
    return removed


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in chunks (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def sha256_array(array: np.ndarray) -> str:
    """Hex sha256 of an array's dtype, shape and samples (independent of file headers)."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def params_digest(params: Any) -> str:
    """Short stable digest of a JSON-serialisable parameter set (key order irrelevant)."""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def mirror_path(
    path: str | os.PathLike,
    input_root: str | os.PathLike,
    output_root: str | os.PathLike,
    *,
    suffix: str | None = None,
) -> Path:
    """Map ``input_root/<rel>`` to ``output_root/<rel>``, optionally replacing the suffix.

    This is the one function that decides where an output of an input file goes; every stage
    uses it, so the folder trees always mirror each other.

    Parameters
    ----------
    path : path-like
        A file below ``input_root``.
    input_root, output_root : path-like
        Root folders of the input and output trees.
    suffix : str or None
        New file extension including the dot (``".wav"``, ``".npy"``); None keeps it.
    """
    # Absolute, normalised, but symlinks not resolved: a symlinked input file (or folder) below
    # the root keeps its place in the tree even when it points elsewhere.
    rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(input_root))
    out = Path(output_root) / rel
    if suffix is not None:
        out = out.with_suffix(suffix)
    return out


# -- folder ownership -------------------------------------------------------------------------
#: A running stage holds this lock file in its output folder.
RUN_JSON = "run.json"

#: What each stage owner is called in messages.
OWNER_NAMES = {
    "audio_conversion": "audio_conversion.py (stage 1)",
    "degradations": "extract_embeddings.py (stage 2, degradations)",
    "embeddings": "extract_embeddings.py (stage 2, embeddings)",
    "calculate_metrics": "calculate_metrics.py (stage 3)",
    "visualize_results": "visualize_results.py (stage 4)",
}
#: The pipeline's own nesting: a stage's folder may lie inside the folder of these stages
#: (``test_audio/degraded``; ``results/visualizations``).
NESTS_IN = {"degradations": ("audio_conversion",), "visualize_results": ("calculate_metrics",)}


def owner_label(owner: str) -> str:
    """``embeddings:cdpam`` -> ``extract_embeddings.py (stage 2, cdpam embeddings)``."""
    stage, _, model = owner.partition(":")
    if stage == "embeddings" and model:
        return f"extract_embeddings.py (stage 2, {model} embeddings)"
    return OWNER_NAMES.get(stage, stage)


def folder_owner(folder: str | os.PathLike) -> str | None:
    """Who wrote ``folder``: ``stage`` or ``embeddings:<model>``; None when nobody known.

    Read from the folder's ``run.json`` (``stage`` and ``model``, written by every stage), or
    while a stage runs in a new folder, from its lock file (``owner``).
    """
    folder = Path(folder)
    for name in (RUN_JSON, LOCK_NAME):
        p = folder / name
        if not p.is_file():
            continue
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(rec, dict):
            continue
        if name == LOCK_NAME:
            # A lock marks its folder's owner only when it was taken on the owned folder
            # itself (the degradations lock the audio folder that stage 1 owns).
            if not rec.get("marks_owner", True) or not isinstance(rec.get("owner"), str):
                continue
            stage, _, model = rec["owner"].partition(":")
            rec = {"stage": stage, "model": model}
        if not isinstance(rec.get("stage"), str):
            continue
        if rec["stage"] not in OWNER_NAMES:
            continue
        model = rec.get("model")
        return f"{rec['stage']}:{model}" if rec["stage"] == "embeddings" and model else rec["stage"]
    return None


def same_or_inside(path: Path, folder: Path) -> bool:
    """True when ``path`` is ``folder`` or lies below it (paths compared as given)."""
    return path == folder or folder in path.parents


def check_stage_folders(
    output: str | os.PathLike,
    *,
    owner: str,
    option: str,
    inputs: Sequence[tuple[str, str | os.PathLike, str | None]] = (),
) -> None:
    """Refuse an output folder that belongs to another stage or holds this stage's input.

    Parameters
    ----------
    output : path-like
        The folder the stage is about to write.
    owner : str
        The writing stage (``audio_conversion``, ``degradations``, ``embeddings:<model>``,
        ``calculate_metrics``, ``visualize_results``).
    option : str
        The command-line option that named ``output`` (for the message).
    inputs : sequence of (option, folder, expected owner or None)
        The folders the stage reads. Each must not be ``output`` nor lie inside it, and when it
        records an owner, that owner must be the expected one.

    Raises
    ------
    FolderConflictError
        Naming both folders, who wrote them, and what to give instead.
    """
    out = Path(os.path.abspath(output))
    me = owner_label(owner)
    for in_option, in_folder, expected in inputs:
        inp = Path(os.path.abspath(in_folder))
        if same_or_inside(inp, out):
            where = "is" if inp == out else "contains"
            raise FolderConflictError(
                f"{option} {output} {where} the input folder {in_option} {in_folder}: "
                f"{me} would overwrite its own input; give {option} a folder of its own"
            )
        found = folder_owner(inp) if expected else None
        if expected and found and found != expected:
            raise FolderConflictError(
                f"{in_option} {in_folder} was written by {owner_label(found)}, not by "
                f"{owner_label(expected)}; give {in_option} the folder {owner_label(expected)} "
                "wrote"
            )
    # The nearest folder at or above the output that records an owner decides.
    for folder in (out, *out.parents):
        found = folder_owner(folder)
        if found is None:
            continue
        if found == owner:
            return
        stage = found.partition(":")[0]
        if folder != out and stage in NESTS_IN.get(owner.partition(":")[0], ()):
            return
        where = "" if folder == out else f" is inside {folder}, which"
        raise FolderConflictError(
            f"{option} {output}{where} belongs to {owner_label(found)}, as "
            f"{folder / RUN_JSON} records; {me} would overwrite its files. Give {option} a "
            "folder of its own"
        )


# -- locks ------------------------------------------------------------------------------------
def _process_start(pid: int) -> str | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux), None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _process_start(pid)
    return start is None or now is None or now == start  # same pid, other process: stale


#: Locks this process holds: folder -> token (a stage run twice in one process re-enters).
_HELD: dict[Path, str] = {}


def read_lock(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The lock record of ``folder`` (None when unlocked or unreadable)."""
    try:
        rec = json.loads((Path(folder) / LOCK_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def live_lock(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The lock record of ``folder`` when a live process (or one on another host) holds it."""
    rec = read_lock(folder)
    return rec if rec is not None and not _lock_is_stale(rec) else None


def _describe_lock(folder: Path, rec: dict[str, Any]) -> str:
    return (
        f"{owner_label(str(rec.get('owner', '?')))} has held its lock since "
        f"{rec.get('started_at', '?')} (pid {rec.get('pid', '?')} on host "
        f"{rec.get('host', '?')}, command: {' '.join(rec.get('command') or []) or '?'})"
    )


def _lock_is_stale(rec: dict[str, Any]) -> bool:
    if rec.get("host") != socket.gethostname():
        return False  # another machine: cannot tell
    try:
        pid = int(rec["pid"])
    except (KeyError, TypeError, ValueError):
        return True
    return not _alive(pid, rec.get("pid_start"))


def acquire_lock(
    folder: str | os.PathLike,
    *,
    owner: str,
    command: Sequence[str] = (),
    marks_owner: bool = True,
) -> Path:
    """Take the lock of ``folder`` for this process, or raise :class:`FolderBusyError`.

    The lock file holds pid, host, start time and command of the holder. A lock left by a
    process of this host that no longer runs (killed, crashed) is removed with a warning.
    Re-entrant within one process. Release with :func:`release_lock`. ``marks_owner``: the
    lock also says who owns ``folder`` while no ``run.json`` does (False when a stage locks a
    folder it does not own).
    """
    folder = Path(os.path.abspath(folder))
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    if folder in _HELD:
        return lock
    token = secrets.token_hex(8)
    rec = {
        "owner": owner,
        "pid": os.getpid(),
        "pid_start": _process_start(os.getpid()),
        "host": socket.gethostname(),
        "started_at": _now(),
        "command": list(command),
        "token": token,
        "marks_owner": marks_owner,
    }
    for _ in range(3):
        tmp = folder / f".{LOCK_NAME}{TMP_MARKER}{token}"
        tmp.write_text(json.dumps(rec, indent=2) + "\n", encoding="utf-8")
        try:
            os.link(tmp, lock)  # atomic: fails when a lock exists; the lock is never partial
        except FileExistsError:
            held = read_lock(folder)
            if held is not None and not _lock_is_stale(held):
                raise FolderBusyError(
                    f"{folder} is in use: {_describe_lock(folder, held)}. Wait for that run "
                    f"to finish; if it is no longer running, delete {lock}"
                ) from None
            logger.warning(
                "removed a stale lock of %s: %s, but that process is no longer running",
                folder,
                _describe_lock(folder, held) if held else "unreadable lock file",
            )
            lock.unlink(missing_ok=True)
            continue
        finally:
            tmp.unlink(missing_ok=True)
        _HELD[folder] = token
        return lock
    raise FolderBusyError(f"{folder}: could not take its lock {lock}; try again")


def release_lock(folder: str | os.PathLike) -> None:
    """Give back a lock this process holds (a lock taken over by another run is left)."""
    folder = Path(os.path.abspath(folder))
    token = _HELD.pop(folder, None)
    if token is None:
        return
    held = read_lock(folder)
    if held is not None and held.get("token") == token:
        (folder / LOCK_NAME).unlink(missing_ok=True)


def release_all_locks() -> None:
    """Give back every lock this process holds (the stage entry points call this last)."""
    for folder in list(_HELD):
        release_lock(folder)


# A library caller of a stage's run function (no stage_entry around it) gives its locks back
# when the process ends.
atexit.register(release_all_locks)


def check_not_locked(folder: str | os.PathLike, *, option: str) -> None:
    """Refuse to read an input folder while another live run writes it."""
    folder = Path(os.path.abspath(folder))
    held = read_lock(folder)
    if held is None or folder in _HELD or _lock_is_stale(held):
        return
    raise FolderBusyError(
        f"{option} {folder} is being written: {_describe_lock(folder, held)}. Wait for that "
        "run to finish, then run this stage again"
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
