"""Stage 2, first half: its selection and its item. Which levels a ``--degradations`` value
selects (:func:`parse_selection`), what one degraded file is (:class:`DegradeJob`), how it is
made (:func:`degrade_file`) and when an earlier one is still up to date. The run itself (read,
plan, shard or merge, commit) is :mod:`perceptual_audio.stages.degrade`.
"""

from __future__ import annotations

import json
import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perceptual_audio import degradations as deg
from perceptual_audio.audio_io import load_audio, save_wav
from perceptual_audio.errors import ParameterError, PerceptualAudioError
from perceptual_audio.files import params_digest, sha256_file
from perceptual_audio.layout import CLEAN_DIR, DEGRADED_DIR
from perceptual_audio.manifest import ManifestRow

logger = logging.getLogger(__name__)

STAGE = "degradations"
DEFAULT_SELECTION = "default"
#: ``--degradations none``: degrade nothing (a listening test's rated files come from stage 1).
NO_SELECTION = "none"
#: Flags of a clean row that its degraded files carry too (same length; a silent source makes
#: the pair degenerate). ``clipped_peak`` is not inherited: it describes each file's own peak.
INHERITED_FLAGS = frozenset({"short", "silent"})


# -- selection --------------------------------------------------------------------------------
def parse_selection(spec: str) -> list[deg.Level]:
    """Turn a ``--degradations`` value into validated levels (family order, then level order).

    Parameters
    ----------
    spec : str
        ``default`` (every level of the default families), ``all`` (every level of every
        family), a comma list of ``FAMILY`` or ``FAMILY:LEVEL`` items
        (``noise,bitrate:low,compression:high``), or the path of a ``.json`` / ``.toml`` file
        mapping each family to ``"all"``, a list of level names, or a table
        ``{level: {param: value}}`` (a known level name starts from its built-in parameters, a
        new name from the family's defaults).

    Raises
    ------
    ParameterError
        Unknown family, level or parameter, bad value, or an unreadable file; the message
        names the item and what is accepted.
    """
    text = (spec or "").strip()
    if not text:
        raise ParameterError(
            "--degradations is empty; give 'default', 'all', a list such as "
            "'noise,bitrate:low' or a .json/.toml file"
        )
    if text.lower() == NO_SELECTION:  # only the files stage 1 imported (a listening test)
        return []
    path = Path(text)
    if path.suffix.lower() in (".json", ".toml"):
        return _levels_from_file(path)
    chosen: dict[tuple[str, str], deg.Level] = {}
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        if item in ("default", "all"):
            names = deg.DEFAULT_FAMILIES if item == "default" else tuple(deg.FAMILIES)
            for name in names:
                for lev in deg.FAMILIES[name].levels.values():
                    chosen[(name, lev.name)] = lev
            continue
        fam_name, _, lev_name = item.partition(":")
        fam = deg.get_family(fam_name.strip())
        levels = [fam.level(lev_name.strip())] if lev_name else list(fam.levels.values())
        for lev in levels:
            chosen[(fam.name, lev.name)] = lev
    if not chosen:
        raise ParameterError(f"--degradations {spec!r} selects nothing")
    return _ordered(chosen.values())


def _ordered(levels: Any) -> list[deg.Level]:
    """Family order, then severity: the built-in levels in their order, then new levels in
    the order they were given (stage 2 records this order; stages 3-4 plot by it)."""
    fam_order = {name: i for i, name in enumerate(deg.FAMILIES)}

    def key(lev: deg.Level) -> tuple:
        known = list(deg.FAMILIES[lev.family].levels)
        return (fam_order[lev.family], known.index(lev.name) if lev.name in known else len(known))

    return sorted(levels, key=key)  # stable: new levels keep the order given


def _levels_from_file(path: Path) -> list[deg.Level]:
    if not path.is_file():
        raise ParameterError(f"--degradations file {str(path)!r} does not exist")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
        else:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise ParameterError(f"--degradations file {path}: cannot parse it ({e})") from None
    if not isinstance(data, dict) or not data:
        raise ParameterError(
            f"--degradations file {path}: expected a non-empty mapping of "
            f"family -> levels, got {type(data).__name__}"
        )
    chosen: dict[tuple[str, str], deg.Level] = {}
    for fam_name, levels in data.items():
        fam = deg.get_family(fam_name)
        if levels == "all":
            items: dict[str, Any] = {name: None for name in fam.levels}
        elif isinstance(levels, list):
            items = {str(name): None for name in levels}
            for name in items:
                fam.level(name)  # only known levels may be named without parameters
        elif isinstance(levels, dict):
            items = levels
        else:
            raise ParameterError(
                f"--degradations file {path}: family {fam_name!r} must map to "
                f"'all', a list of level names or a table of levels, got "
                f"{levels!r}"
            )
        for lev_name, overrides in items.items():
            if overrides is not None and not isinstance(overrides, dict):
                raise ParameterError(
                    f"--degradations file {path}: level {fam_name}:{lev_name} "
                    f"must be a table of parameters, got {overrides!r}"
                )
            chosen[(fam.name, lev_name)] = fam.make_level(lev_name, overrides)
    return _ordered(chosen.values())


def level_record(level: deg.Level) -> dict[str, Any]:
    """What decides a level's output: family, level, parameters, algorithm version."""
    return {
        "family": level.family,
        "level": level.name,
        "params": level.as_dict(),
        "version": deg.FAMILIES[level.family].version,
    }


# -- jobs -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DegradeJob:
    """One clean file under one level (picklable for the worker processes)."""

    clean_path: str  # absolute or cwd-relative path of the clean WAV
    clean_rel: str  # manifest path of the clean file (``clean/...``)
    output_path: str
    output_rel: str  # manifest path of the output (``degraded/<family>/<level>/...``)
    level: deg.Level
    seed: int
    source_sha256: str
    digest: str  # of level_record + babble talkers' sha256
    pool: tuple[tuple[str, str], ...] = ()  # babble: (clean manifest path, file path)
    clean_flags: tuple[str, ...] = ()  # INHERITED_FLAGS of the clean row


def degrade_file(job: DegradeJob) -> ManifestRow:
    """Degrade one clean file, write it atomically, return its manifest row."""
    x, sr = load_audio(job.clean_path, mono=True)
    pool = []
    for name, p in job.pool:
        talker, talker_sr = load_audio(p, mono=True)
        if talker_sr != sr:
            raise PerceptualAudioError(
                f"{p}: babble talker at {talker_sr} Hz, {job.clean_path} "
                f"at {sr} Hz; rerun stage 1 so all clean files share a rate"
            )
        pool.append((name, talker))
    rng = np.random.default_rng(job.seed)
    untouched = rng.bit_generator.state
    result = deg.apply_degradation(x, sr, job.level, rng=rng, pool=pool)
    # A degradation that drew no random value (MP3, compression, ...) does not depend on the
    # seed: it is recorded without one, so that another --seed leaves the file alone.
    seed = job.seed if job.pool or rng.bit_generator.state != untouched else None
    save_wav(job.output_path, result.audio, sr)
    params = {
        **level_record(job.level),
        "digest": job.digest,
        "seed": seed,
        "details": result.info,
    }
    return ManifestRow.make(
        job.output_rel,
        kind="degraded",
        source=job.clean_rel,
        parameters=params,
        sample_rate=sr,
        duration=len(result.audio) / sr,
        sha256=sha256_file(job.output_path),
        source_sha256=job.source_sha256,
        family=job.level.family,
        level=job.level.name,
        seed=seed,
        flags=sorted(set(result.flags) | set(job.clean_flags)),
    )


def output_rel_path(clean_rel: str, level: deg.Level) -> str:
    """``clean/<rel>.wav`` -> ``degraded/<family>/<level>/<rel>.wav`` (POSIX, relative)."""
    parts = Path(clean_rel).parts
    rel = Path(*parts[1:]) if parts and parts[0] == CLEAN_DIR else Path(clean_rel)
    return (Path(DEGRADED_DIR) / level.family / level.name / rel).with_suffix(".wav").as_posix()


def plan_jobs(
    root: Path,
    clean_rows: list[ManifestRow],
    levels: list[deg.Level],
    run_seed: int,
    source_hashes: dict[str, str],
) -> list[DegradeJob]:
    """Every (clean file, level) job, with seeds, digests and babble pools."""
    clean_paths = sorted(source_hashes)
    jobs = []
    for level in levels:
        fam = deg.FAMILIES[level.family]
        for row in clean_rows:
            if row.path not in source_hashes:
                continue
            seed = deg.derive_seed(run_seed, level.family, level.name, row.path)
            record = level_record(level)
            pool: tuple[tuple[str, str], ...] = ()
            if fam.uses_pool:
                talkers = deg.select_babble_talkers(
                    clean_paths,
                    seed=seed,
                    n_talkers=int(level.params.get("talkers", 4)),
                    exclude=row.path,
                )
                pool = tuple((t, str(root / t)) for t in talkers)
                record["talkers_sha256"] = {t: source_hashes[t] for t in talkers}
            out_rel = output_rel_path(row.path, level)
            jobs.append(
                DegradeJob(
                    clean_path=str(root / row.path),
                    clean_rel=row.path,
                    output_path=str(root / out_rel),
                    output_rel=out_rel,
                    level=level,
                    seed=seed,
                    source_sha256=source_hashes[row.path],
                    digest=params_digest(record),
                    pool=pool,
                    clean_flags=tuple(sorted(row.flag_set & INHERITED_FLAGS)),
                )
            )
    return jobs


def is_up_to_date(old: ManifestRow | None, job: DegradeJob, root: Path) -> bool:
    if old is None or old.source != job.clean_rel or old.source_sha256 != job.source_sha256:
        return False
    if old.params.get("digest") != job.digest:
        return False
    if old.seed is not None and old.seed != job.seed:  # None: the output used no random value
        return False
    out = root / old.path
    return out.is_file() and sha256_file(out) == old.sha256
