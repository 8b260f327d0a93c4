"""The audio manifest (``test_audio/manifest.csv``): one row per clean or degraded file.

Stage 1 owns the ``clean`` rows and stage 2 the ``degraded`` rows; each replaces only its own
kind with :func:`replace_kind`, so either stage can be rerun alone. Column meanings are in
``docs/CONTRACTS.md``; paths are POSIX strings relative to the manifest's folder.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from perceptual_audio.errors import SchemaError
from perceptual_audio.files import write_text_if_changed
from perceptual_audio.layout import DEGRADED_DIR, MANIFEST_NAME, RESTORED_DIR  # noqa: F401

#: Bumped whenever the columns change; recorded in run.json of the stages that write it.
MANIFEST_SCHEMA_VERSION = 1
COLUMNS = (
    "id",
    "path",
    "kind",
    "source",
    "family",
    "level",
    "parameters",
    "seed",
    "sample_rate",
    "duration",
    "sha256",
    "source_sha256",
    "flags",
)
KINDS = ("clean", "degraded", "restored")


@dataclass(frozen=True)
class ManifestRow:
    """One audio file of the study.

    Attributes
    ----------
    id : str
        ``path`` without its suffix (unique).
    path : str
        Relative to the manifest's folder (``clean/a.wav``, ``degraded/noise/low/a.wav``).
    kind : str
        ``clean`` or ``degraded``.
    source : str
        Clean: the input file relative to the input root. Degraded: the clean ``path``.
    family, level : str
        Degradation family and level (empty for clean files).
    parameters : str
        JSON object: conversion settings, or the degradation's parameters and drawn values.
    seed : int or None
        Seed the file's random values were drawn from (None for clean files).
    sample_rate : int
        Hz.
    duration : float
        Seconds.
    sha256 : str
        Of the file's bytes.
    source_sha256 : str
        Of the source file's bytes.
    flags : str
        ``;``-separated flags (``silent``, ``short``, ``clipped``: the input holds a run of
        samples at full scale, ``clipped_peak``: a float peak above 1.0), or empty.
    """

    id: str
    path: str
    kind: str
    source: str
    family: str
    level: str
    parameters: str
    seed: int | None
    sample_rate: int
    duration: float
    sha256: str
    source_sha256: str
    flags: str = ""

    @property
    def params(self) -> dict[str, Any]:
        """``parameters`` decoded from JSON."""
        return json.loads(self.parameters) if self.parameters else {}

    @property
    def degradation_applied(self) -> bool:
        """False for a degraded file whose degradation was not applied (e.g. noise on a silent
        input: stage 2 records ``details.applied: false``); True otherwise."""
        details = self.params.get("details")
        if isinstance(details, dict) and details.get("applied") is False:
            return False
        return self.params.get("applied") is not False

    @property
    def flag_set(self) -> frozenset[str]:
        return frozenset(f for f in self.flags.split(";") if f)

    @staticmethod
    def make(
        path: str,
        *,
        kind: str,
        source: str,
        parameters: dict[str, Any],
        sample_rate: int,
        duration: float,
        sha256: str,
        source_sha256: str,
        family: str = "",
        level: str = "",
        seed: int | None = None,
        flags: tuple[str, ...] | list[str] = (),
    ) -> ManifestRow:
        """Build a row, deriving ``id`` from ``path`` and encoding ``parameters`` as JSON."""
        if kind not in KINDS:
            raise ValueError(f"manifest kind must be one of {KINDS}, got {kind!r}")
        return ManifestRow(
            id=path.rsplit(".", 1)[0] if "." in Path(path).name else path,
            path=path,
            kind=kind,
            source=source,
            family=family,
            level=level,
            parameters=json.dumps(parameters, sort_keys=True, default=str),
            seed=seed,
            sample_rate=int(sample_rate),
            duration=float(duration),
            sha256=sha256,
            source_sha256=source_sha256,
            flags=";".join(sorted(set(flags))),
        )


def manifest_path(folder_or_file: str | os.PathLike) -> Path:
    p = Path(folder_or_file)
    return p if p.suffix == ".csv" else p / MANIFEST_NAME


def read_manifest(folder_or_file: str | os.PathLike) -> list[ManifestRow]:
    """Rows of the manifest in a folder (or at a ``.csv`` path); [] when there is none.

    Raises
    ------
    SchemaError
        If the header is not the expected columns (an older or foreign file).
    """
    path = manifest_path(folder_or_file)
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = tuple(reader.fieldnames or ())
        if header != COLUMNS:
            raise SchemaError(
                f"{path}: unexpected manifest columns {list(header)}; expected {list(COLUMNS)} "
                f"(audio manifest, schema version {MANIFEST_SCHEMA_VERSION}). Rebuild it with "
                f"audio_conversion.py --input <your audio folder> --output {path.parent} "
                "--force, then rerun extract_embeddings.py"
            )
        rows = []
        for i, rec in enumerate(reader, start=2):
            try:
                rows.append(
                    ManifestRow(
                        id=rec["id"],
                        path=rec["path"],
                        kind=rec["kind"],
                        source=rec["source"],
                        family=rec["family"],
                        level=rec["level"],
                        parameters=rec["parameters"],
                        seed=int(rec["seed"]) if rec["seed"] not in ("", None) else None,
                        sample_rate=int(rec["sample_rate"]),
                        duration=float(rec["duration"]),
                        sha256=rec["sha256"],
                        source_sha256=rec["source_sha256"],
                        flags=rec["flags"] or "",
                    )
                )
            except (TypeError, ValueError) as e:
                raise SchemaError(f"{path}, line {i}: malformed manifest row ({e})") from None
    return rows


def write_manifest(folder_or_file: str | os.PathLike, rows: list[ManifestRow]) -> Path:
    """Write rows atomically, sorted by kind then path; returns the manifest path.

    The file is left alone when it already holds exactly these rows (an unchanged rerun
    changes no file)."""
    path = manifest_path(folder_or_file)
    ordered = sorted(rows, key=lambda r: (KINDS.index(r.kind), r.path))
    ids = [r.id for r in ordered]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"{path}: duplicate manifest ids {dup[:5]}")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in ordered:
        rec = asdict(r)
        rec["seed"] = "" if r.seed is None else r.seed
        rec["duration"] = f"{r.duration:.6f}"
        writer.writerow(rec)
    write_text_if_changed(path, buf.getvalue())
    return path


def replace_kind(folder_or_file: str | os.PathLike, kind: str, rows: list[ManifestRow]) -> Path:
    """Replace all rows of ``kind`` with ``rows``, keeping the other kinds' rows."""
    if any(r.kind != kind for r in rows):
        raise ValueError(f"replace_kind({kind!r}) got rows of another kind")
    kept = [r for r in read_manifest(folder_or_file) if r.kind != kind]
    return write_manifest(folder_or_file, kept + list(rows))


# -- the severity order stage 2 records -------------------------------------------------------
#: Key of ``degraded/run.json`` holding each family's levels, mildest first.
LEVEL_ORDER_KEY = "level_order"


def level_order_of(selection: list[tuple[str, str]]) -> dict[str, list[str]]:
    """``[(family, level), ...]`` in the order stage 2 applies them -> ``{family: [levels]}``
    (what stage 2 records under :data:`LEVEL_ORDER_KEY`)."""
    out: dict[str, list[str]] = {}
    for family, level in selection:
        levels = out.setdefault(family, [])
        if level not in levels:
            levels.append(level)
    return out


def read_level_order(folder: str | os.PathLike) -> dict[str, list[str]]:
    """Each family's levels, mildest first, as stage 2 recorded them in
    ``<folder>/degraded/run.json`` ({} when it recorded none: no stage-2 run, or a folder
    written before the order was recorded)."""
    path = Path(folder) / DEGRADED_DIR / "run.json"
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    recorded = run.get(LEVEL_ORDER_KEY) if isinstance(run, dict) else None
    if not isinstance(recorded, dict):
        return {}
    return {
        str(f): [str(lv) for lv in levels]
        for f, levels in recorded.items()
        if isinstance(levels, list)
    }


FIELD_NAMES = tuple(f.name for f in fields(ManifestRow))
assert FIELD_NAMES == COLUMNS, "ManifestRow fields and COLUMNS must agree"
