"""File plumbing shared by every stage: atomic writes, hashing, path mapping.

Rule: nothing is ever written straight to its final path. Outputs go to a temporary file in
the same folder (same filesystem, so the final ``os.replace`` is atomic) and are renamed only
once complete, so a crash never leaves a half-written file that a rerun would take as done.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

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
    rel = Path(path).resolve().relative_to(Path(input_root).resolve())
    out = Path(output_root) / rel
    if suffix is not None:
        out = out.with_suffix(suffix)
    return out
