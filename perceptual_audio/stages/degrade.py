"""Stage 2, first half: write every selected degradation of every clean file of stage 1.

For each ``clean`` row of ``INPUT_DIR/manifest.csv`` and each selected family/level this writes
``INPUT_DIR/degraded/<family>/<level>/<clean path below clean/>.wav`` (float32 WAV, same rate
and length as the clean file) and one ``degraded`` manifest row: family, level, parameters
JSON (the level's parameters, what was drawn and measured, and a digest), the per-file seed,
sha256 of the output and of its source. ``INPUT_DIR/degraded/run.json`` records the run.

Reruns redo only what changed: a file is regenerated when its source bytes, its level's
parameters (digest), its seed or the family's algorithm version changed, or when the output
is missing or altered; outputs of selections or clean files no longer present are deleted.
``--force`` regenerates everything.

``extract_embeddings.py`` calls :func:`add_degradation_arguments` and
:func:`run_degradations`; ``python -m perceptual_audio.stages.degrade`` runs this half alone.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from perceptual_audio import degradations as deg
from perceptual_audio.errors import ParameterError, PerceptualAudioError
from perceptual_audio.files import (
    TMP_MARKER,
    params_digest,
    remove_stale_temporaries,
    sha256_file,
)
from perceptual_audio.layout import MANIFEST_NAME
from perceptual_audio.listening import is_imported
from perceptual_audio.manifest import (
    DEGRADED_DIR,
    LEVEL_ORDER_KEY,
    ManifestRow,
    level_order_of,
    read_manifest,
    replace_kind,
    write_manifest,
)
from perceptual_audio.stages import cli, shards, work
from perceptual_audio.stages.degrade_items import (
    DEFAULT_SELECTION,
    STAGE,
    degrade_file,
    is_up_to_date,
    level_record,
    parse_selection,
    plan_jobs,
)
from perceptual_audio.stages.skeleton import StageRun, run_stage

logger = logging.getLogger(__name__)


# -- command line -----------------------------------------------------------------------------
def describe_families() -> str:
    """Every family and level with parameters and units (for the ``--help`` epilog)."""
    return deg.describe_families()


def add_degradation_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--input-dir``, ``--degradations``, ``--seed`` and the common options
    (``--workers``, ``--force``, ``--quiet``/``--verbose``)."""
    parser.add_argument(
        "--input-dir",
        type=Path,
        default=Path("test_audio"),
        metavar="DIR",
        help="stage 1 output folder (clean/ and manifest.csv); degraded/ is written here",
    )
    parser.add_argument(
        "--degradations",
        default=DEFAULT_SELECTION,
        metavar="SPEC",
        help="'default' (noise, bitrate, compression: all levels), 'all', a "
        "comma list of FAMILY or FAMILY:LEVEL, a .json/.toml file "
        "defining levels (families and levels are listed below), or 'none' (no "
        "degradations: e.g. a listening test imported by stage 1)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="run seed; each file's seed is derived from it, the family, level and file path",
    )
    shards.add_shard_arguments(parser, what="the degradations and embeddings")
    cli.add_common_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    """Parser for running the degradation half alone."""
    parser = argparse.ArgumentParser(
        prog="python -m perceptual_audio.stages.degrade",
        formatter_class=cli.HelpFormatter,
        description="Stage 2, first half: degrade every clean file of stage 1 and record each "
        "output in INPUT_DIR/manifest.csv.",
        epilog=describe_families() + "\n\nExit status: 0 ok; 1 some files failed; "
        "2 bad command line.",
    )
    add_degradation_arguments(parser)
    return parser


@dataclass(frozen=True, kw_only=True)
class DegradeSettings(cli.StageSettings):
    """The degradation half's settings (``extract_embeddings.py``'s first half).

    Attributes
    ----------
    input_dir : Path
        The stage-1 folder; ``degraded/`` is written inside it.
    degradations : str
        The selection as given (``default``, ``noise:low,bitrate``, a file, ``none``).
    seed : int
        The run seed (each file's seed derives from it).
    shard : Shard or None
        Run only this shard (``--shard K/N``).
    merge_shards : bool
        ``--merge-shards``: a merge is required (an error when there is nothing to merge).
    """

    input_dir: Path
    degradations: str = DEFAULT_SELECTION
    seed: int = 0
    shard: shards.Shard | None = None
    merge_shards: bool = False


def claim_folders(settings: DegradeSettings) -> int | None:
    """Check ``--input-dir`` and lock it for this run (None), or the exit status of a refusal.

    The lock covers the whole audio folder: ``manifest.csv`` is shared with stage 1.
    """
    root = Path(settings.input_dir)
    problem = cli.check_input_folder(
        root,
        option="--input-dir",
        needs="manifest.csv",
        made_by="audio_conversion.py --input <your audio folder> --output DIR",
    )
    if problem is not None:
        return problem
    return cli.claim_output_folder(
        root / DEGRADED_DIR,
        owner=STAGE,
        option="--input-dir",
        inputs=[("--input-dir", root, "audio_conversion")],
        lock=root,
        shard=settings.shard,
    )


#: How a merge names the command that redoes a shard.
SHARD_COMMAND = "extract_embeddings.py ... --shard"


def selection_digest(levels: list[deg.Level], seed: int) -> str:
    """What decides every degraded file of a run: the levels and the run seed."""
    return shards.digest({"selection": [level_record(lev) for lev in levels], "seed": seed})


def selection_words(levels: list[deg.Level], seed: int) -> dict[str, Any]:
    """The same, as a merge names it when a shard differs."""
    return {"degradations": [f"{lev.family}:{lev.name}" for lev in levels], "seed": seed}


def merged(input_dir: Path) -> bool:
    """Whether the audio manifest lists every row of the degradation fragments (a merge of
    the degradation half succeeded, or there was nothing to merge)."""
    return shards.fragments_merged(input_dir, DEGRADED_DIR)


def _merge_inputs(
    root: Path, levels: list[deg.Level], seed: int, clean_rows: list[ManifestRow]
) -> tuple[dict[str, ManifestRow], dict[str, str], int]:
    """The finished shards' rows and recorded failures (raises ShardMergeError)."""
    fragments = shards.collect(
        root / DEGRADED_DIR,
        stage=STAGE,
        params=selection_digest(levels, seed),
        inputs=shards.inputs_digest(clean_rows),
        what=SHARD_COMMAND,
        described=selection_words(levels, seed),
    )
    rows: dict[str, ManifestRow] = {}
    failed: dict[str, str] = {}
    for frag in fragments:
        for r in read_manifest(frag.path(MANIFEST_NAME)):
            rows[r.path] = r
        for f in frag.record.get("failures", []):
            failed[str(f.get("file"))] = str(f.get("error"))
    return rows, failed, len(fragments)


@dataclass
class _Run(StageRun[DegradeSettings]):
    """The degradation half in the stage skeleton: what it read, planned and did."""

    desc: ClassVar[str] = "degrading"
    do_item: ClassVar = degrade_file

    keep_fragments: bool = False
    levels: list[deg.Level] = field(default_factory=list)
    merging: bool = False
    clean_rows: list[ManifestRow] = field(default_factory=list)
    imported: list[ManifestRow] = field(default_factory=list)
    old_rows: dict[str, ManifestRow] = field(default_factory=dict)
    new_rows: list[ManifestRow] = field(default_factory=list)
    n_shards: int = 0

    @property
    def root(self) -> Path:
        return Path(self.settings.input_dir)

    @property
    def degraded_root(self) -> Path:
        return self.root / DEGRADED_DIR

    @property
    def skipped(self) -> int:
        return len(self.new_rows) - self.written

    def check(self) -> int | None:
        try:
            self.levels = parse_selection(self.settings.degradations)
        except ParameterError as e:
            logger.error("%s", e)
            return cli.EXIT_USAGE
        return None

    def claim(self) -> int | None:
        return claim_folders(self.settings)

    def read(self) -> int | None:
        self.merging = self.shard is None and shards.has_fragments(self.degraded_root)
        if self.settings.merge_shards and not self.merging and not self.keep_fragments:
            logger.error("--merge-shards: %s holds no shard fragments to merge", self.degraded_root)
            return cli.EXIT_FAILED
        return _read_inputs(self)

    def plan(self) -> int | None:
        return _plan(self)

    def collect(self, outcomes: list[work.Outcome]) -> None:
        for oc in outcomes:
            if oc.ok:
                self.new_rows.append(oc.value)
            else:
                self.failures.append((oc.item.output_rel, oc.error))
                stale = Path(oc.item.output_path)
                if stale.exists():  # an older version would no longer match its row
                    stale.unlink()
        for what, msg in self.failures:
            logger.error("%s", msg if what in msg else f"{what}: {msg}")

    def finish_shard(self) -> int:
        return _finish_shard(self)

    def commit(self) -> int | None:
        return _commit(self)


def run_degradations(settings: DegradeSettings, *, keep_fragments: bool = False) -> int:
    """Run the degradation half; returns the exit status.

    0 when every file is written or up to date, 1 when any failed (the others are written),
    2 for a bad ``--degradations`` value. A merge removes the shards' fragments unless
    ``keep_fragments`` (stage 2 removes them once the embeddings are merged too, so that a
    shard rerun after a failed embedding merge still finds its degradations).
    """
    return run_stage(_Run(settings, keep_fragments=keep_fragments))


def _read_inputs(run: _Run) -> int | None:
    """The manifest's clean, imported and earlier degraded rows, and the clean files' hashes
    checked against it (a changed clean file is that file's failure). None: go on."""
    root, shard = run.root, run.settings.shard
    try:
        rows = read_manifest(root)
        own_fragment = shards.degraded_rows(root, shard) if shard is not None else None
    except PerceptualAudioError as e:  # SchemaError: a foreign or older manifest
        logger.error("%s", e)
        return cli.EXIT_FAILED
    if shard is None:  # a running shard's temporaries are its own
        remove_stale_temporaries(run.degraded_root)
    else:
        shards.clear_record(run.degraded_root, shard)  # unfinished until its record is written
    run.clean_rows = sorted((r for r in rows if r.kind == "clean"), key=lambda r: r.path)
    # Rated files of a listening test belong to stage 1: kept, never degraded or deleted here.
    run.imported = [r for r in rows if is_imported(r)]
    run.old_rows = {r.path: r for r in rows if r.kind == "degraded" and not is_imported(r)}
    run.old_rows.update({r.path: r for r in own_fragment or ()})  # a rerun shard keeps its work
    if not run.clean_rows:  # never take "no clean files" as "remove every degraded file"
        logger.error(
            "%s lists no clean files; run audio_conversion.py --output %s first "
            "(degraded files left untouched)",
            root / "manifest.csv",
            root,
        )
        return cli.EXIT_FAILED
    return None


def _clean_hashes(run: _Run) -> dict[str, str]:
    """Each clean file's sha256 where it matches the manifest; the others become failures."""
    root = run.root
    hashes: dict[str, str] = {}
    for row in run.clean_rows:
        try:
            digest = sha256_file(root / row.path)
        except OSError as e:
            run.failures.append(
                (
                    row.path,
                    f"{root / row.path}: cannot read the clean file "
                    f"({e.strerror}); rerun audio_conversion.py",
                )
            )
            continue
        if digest != row.sha256:  # edited or replaced after stage 1: not what it records
            run.failures.append(
                (
                    row.path,
                    f"{root / row.path}: changed since audio_conversion.py wrote it (sha256 "
                    f"{digest[:12]}, manifest {row.sha256[:12]}); rerun audio_conversion.py",
                )
            )
            continue
        hashes[row.path] = digest
    return hashes


def _plan(run: _Run) -> int | None:
    """The jobs to run (``run.todo``) and the rows kept as they are; a merge takes the
    fragments as its only earlier results and must find nothing to do. None: go on."""
    settings, shard = run.settings, run.settings.shard
    jobs = plan_jobs(run.root, run.clean_rows, run.levels, int(settings.seed), _clean_hashes(run))
    if shard is not None:  # talkers are drawn from every clean file; the jobs are the shard's
        jobs = [j for j in jobs if shard.owns(j.clean_rel)]
        run.failures = [(w, m) for w, m in run.failures if shard.owns(w)]
    shard_failed: dict[str, str] = {}
    if run.merging:
        try:
            run.old_rows, shard_failed, run.n_shards = _merge_inputs(
                run.root, run.levels, int(settings.seed), run.clean_rows
            )
        except shards.ShardMergeError as e:
            logger.error("%s", e)
            return cli.EXIT_FAILED
    for job in jobs:
        old = run.old_rows.get(job.output_rel)
        if (run.merging or not settings.force) and is_up_to_date(old, job, run.root):
            run.new_rows.append(old)
        else:
            run.todo.append(job)
    if not run.merging:
        return None
    # A merge computes nothing: what no shard wrote is a failure or missing.
    missing = [j for j in run.todo if j.output_rel not in shard_failed]
    if missing:
        logger.error(
            "cannot merge the shards of %s: %d degraded files are in no shard's fragment or "
            "changed since it ran (%s); rerun those shards. Nothing merged",
            run.degraded_root,
            len(missing),
            shards.name_by_shard(((j.clean_rel, j.output_rel) for j in missing), run.n_shards),
        )
        return cli.EXIT_FAILED
    run.failures += [(j.output_rel, shard_failed[j.output_rel]) for j in run.todo]
    run.todo = []
    return None


def _commit(run: _Run) -> int:
    """Write the manifest's degraded rows and ``degraded/run.json``; remove what no row
    lists; a merge removes the fragments (unless ``keep_fragments``)."""
    root, levels, settings, skipped = run.root, run.levels, run.settings, run.skipped
    removed = _remove_stale_outputs(root, keep={r.path for r in run.new_rows + run.imported})
    replace_kind(root, "degraded", run.new_rows + run.imported)
    flags = Counter(f for r in run.new_rows for f in r.flag_set)
    cli.write_run_json(
        run.degraded_root,
        stage=STAGE,
        settings=settings,
        seed=int(settings.seed),
        params={
            "selection": [
                {**level_record(lev), "digest": params_digest(level_record(lev))} for lev in levels
            ],
            "seed_derivation": "sha256(run seed|family|level|clean path) mod 2**53",
        },
        timings={
            "total": round(run.elapsed, 3),
            "degrading": round(sum(o.seconds for o in run.outcomes), 3),
        },
        extra={
            # Mildest first: stages 3 and 4 order levels by this, never by their names.
            LEVEL_ORDER_KEY: level_order_of([(lev.family, lev.name) for lev in levels]),
            "counts": {
                "clean_files": len(run.clean_rows),
                "levels": len(levels),
                "written": run.written,
                "skipped": skipped,
                "failed": len(run.failures),
                "removed": removed,
            },
            "flags": dict(sorted(flags.items())),
            "failures": [{"file": w, "error": m} for w, m in run.failures],
            "merged_shards": run.n_shards,
        },
    )
    if run.merging:
        if not run.keep_fragments:
            shards.remove_fragments(run.degraded_root)
        logger.info("degradations: merged %d shards into %s", run.n_shards, root / "manifest.csv")
    logger.info(  # the half's summary; the stage's closing line is extract_stage's
        "degradations: wrote %d, skipped %d (up to date), failed %d, removed %d stale -> %s",
        run.written,
        skipped,
        len(run.failures),
        removed,
        run.degraded_root,
    )
    return cli.EXIT_FAILED if run.failures else cli.EXIT_OK


def _finish_shard(run: _Run) -> int:
    """Write the shard's rows to its fragment, then its record (the shard is done)."""
    shard, degraded_root, failures = run.shard, run.degraded_root, run.failures
    seed = int(run.settings.seed)
    write_manifest(shard.fragment_dir(degraded_root) / MANIFEST_NAME, run.new_rows)
    shards.write_record(
        degraded_root,
        shard,
        stage=STAGE,
        params=selection_digest(run.levels, seed),
        inputs=shards.inputs_digest(run.clean_rows),
        described=selection_words(run.levels, seed),
        extra={
            "counts": {"written": run.written, "skipped": run.skipped, "failed": len(failures)},
            "failures": [{"file": w, "error": m} for w, m in failures],
        },
    )
    logger.info(
        "degradations, shard %s: wrote %d, skipped %d (up to date), failed %d -> %s",
        shard, run.written, run.skipped, len(failures), shard.fragment_dir(degraded_root),
    )  # fmt: skip
    return cli.EXIT_FAILED if failures else cli.EXIT_OK


def _remove_stale_outputs(root: Path, *, keep: set[str]) -> int:
    """Delete WAVs under ``degraded/`` that no current row points to; prune empty folders."""
    degraded_root = root / DEGRADED_DIR
    if not degraded_root.is_dir():
        return 0
    removed = 0
    for p in sorted(degraded_root.rglob("*.wav")):
        rel = p.relative_to(root).as_posix()
        if rel not in keep and TMP_MARKER not in p.name:
            p.unlink()
            removed += 1
            logger.debug("removed %s (no longer selected, or its clean file is gone)", p)
    for d in sorted(
        (p for p in degraded_root.rglob("*") if p.is_dir()),
        key=lambda p: len(p.parts),
        reverse=True,
    ):
        if not any(d.iterdir()):
            d.rmdir()
    return removed


@cli.stage_entry("python -m perceptual_audio.stages.degrade")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(quiet=args.quiet, verbose=args.verbose)
    return run_degradations(DegradeSettings.from_args(args))


if __name__ == "__main__":
    sys.exit(main())
