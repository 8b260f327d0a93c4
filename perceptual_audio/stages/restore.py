"""Stage 2, between the degradations and the embeddings: restorations (``--restore``).

For every selected degraded file and every loss of ``--restore``, start from the degraded
audio and optimise towards its clean reference under that loss with Adam
(:func:`perceptual_audio.restoration.restore`), then write
``test_audio/restored/<loss>/<family>/<level>/<mirrored path>.wav`` (float32, same length and
rate) with a ``restored`` row in the audio manifest: ``source`` is the degraded file,
``source_sha256`` its bytes, and ``parameters`` hold the clean file, the loss and its
options, the mode, steps, learning rate, seed, the loss before and after and the wall time.
The embedding half then embeds restored files like every other file of the manifest.

A rerun redoes only what changed: a restoration is up to date when its degraded and clean
files, its settings (digest) and its own file's sha256 are what its row records. Losses whose
model cannot be loaded are skipped with stage 2's one-line message (``<loss> skipped: ...``).
Ctrl-C keeps the restorations already finished (their rows are written first).

``--shard K/N`` restores the degraded files of the shard's recordings and writes its rows to
a fragment that the merge takes (:mod:`perceptual_audio.stages.restore_shards`).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perceptual_audio import options
from perceptual_audio.audio_io import load_audio, save_wav
from perceptual_audio.errors import ParameterError, PerceptualAudioError, WeightsUnavailableError
from perceptual_audio.files import TMP_MARKER, params_digest, sha256_file
from perceptual_audio.layout import DEGRADED_DIR, RESTORED_DIR
from perceptual_audio.listening import is_imported
from perceptual_audio.manifest import ManifestRow, read_manifest, replace_kind
from perceptual_audio.restoration import catalogue
from perceptual_audio.restoration.optimise import DEFAULT_LR, DEFAULT_STEPS, MODES, restore
from perceptual_audio.stages import cli, restore_shards, shards, work
from perceptual_audio.stages.degrade_items import parse_selection
from perceptual_audio.stages.embed_settings import model_options_of
from perceptual_audio.stages.skeleton import StageRun, run_stage

logger = logging.getLogger(__name__)

#: Owner recorded in ``restored/run.json`` (the degradation half's: same audio folder lock).
STAGE = "degradations"
#: ``--restore`` value that restores nothing (the default).
NO_RESTORE = "none"


# -- command line -----------------------------------------------------------------------------
def add_restore_arguments(parser: argparse.ArgumentParser) -> None:
    """``--restore``, ``--restore-mode``, ``--restore-steps``, ``--restore-lr``, ``--restore-on``."""
    group = parser.add_argument_group("restorations (does a loss work as a loss?)")
    group.add_argument(
        "--restore",
        default=NO_RESTORE,
        metavar="LOSS[,LOSS]",
        help="optimise each degraded file towards its clean file under each loss and write "
        f"test_audio/restored/<loss>/...; losses: {', '.join(catalogue.loss_names())}; "
        "'none' (default) restores nothing and removes earlier restorations",
    )
    group.add_argument(
        "--restore-mode",
        choices=MODES,
        default="mask",
        help="mask: a gain in [0, 1] per STFT bin of the degraded signal (can only remove); "
        "waveform: the samples themselves",
    )
    group.add_argument(
        "--restore-steps",
        type=options.positive_int,
        default=DEFAULT_STEPS,
        metavar="N",
        help="Adam steps per file and loss (the baselines move within it; a CDPAM step costs "
        "seconds per audio-second on CPU)",
    )
    group.add_argument(
        "--restore-lr",
        type=options.positive_float,
        default=None,
        metavar="LR",
        help=f"Adam learning rate (default: mask {DEFAULT_LR['mask']} in logit units, "
        f"waveform {DEFAULT_LR['waveform']} in full-scale amplitude)",
    )
    group.add_argument(
        "--restore-on",
        default="all",
        metavar="FAMILY[:LEVEL],...",
        help="which degraded files to restore: 'all' (every selected degradation) or a comma "
        "list of families or family:level items among those selected",
    )
    group.add_argument(
        "--restore-max-files",
        type=options.positive_int,
        default=None,
        metavar="N",
        help="restore at most N files per degradation level: those of the first N clean "
        "recordings in path order (default: every file)",
    )


@dataclass(frozen=True, kw_only=True)
class RestoreSettings(cli.StageSettings):
    """What the restoration half runs (from the command line, :func:`settings_from_args`)."""

    input_dir: Path
    losses: tuple[str, ...]
    mode: str
    steps: int
    lr: float
    on: tuple[tuple[str, str], ...] | None  # (family, level or ""); None: every one
    seed: int
    device: str
    max_files: int | None = None
    #: Each loss model's constructor options (device, weights folder, its own options).
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def record(self, loss: str) -> dict[str, Any]:
        """What decides a restoration besides its audio: the settings' digest covers it."""
        spec = catalogue.describe_loss(loss)
        return {
            "loss": loss,
            "loss_kind": spec.kind,
            "loss_package": spec.package,
            "mode": self.mode,
            "steps": self.steps,
            "lr": self.lr,
            "seed": self.seed,
        }

    def selects(self, row: ManifestRow) -> bool:
        if self.on is None:
            return True
        return any(row.family == f and lev in ("", row.level) for f, lev in self.on)


def settings_from_args(
    args: argparse.Namespace, selected: list[tuple[str, str]]
) -> RestoreSettings | None:
    """The settings of ``args`` (None when ``--restore none``).

    ``selected``: the (family, level) pairs of the study's degradations.

    Raises
    ------
    ParameterError
        Naming the option: an unknown loss, a ``--restore-on`` family or level not in the study.
    """
    text = str(getattr(args, "restore", NO_RESTORE) or NO_RESTORE).strip()
    if text.lower() == NO_RESTORE:
        return None
    losses = tuple(catalogue.parse_loss_list(text, option="--restore"))
    on_text = str(getattr(args, "restore_on", "all") or "all").strip()
    on = None if on_text.lower() == "all" else tuple(_parse_on(on_text, selected))
    mode = str(getattr(args, "restore_mode", "mask"))
    lr = getattr(args, "restore_lr", None)
    models = {catalogue.describe_loss(loss).model for loss in losses} - {None}
    return RestoreSettings(
        arguments=dict(vars(args)),
        quiet=bool(getattr(args, "quiet", False)),
        verbose=bool(getattr(args, "verbose", False)),
        force=bool(getattr(args, "force", False)),
        workers=int(getattr(args, "workers", 1) or 1),
        input_dir=Path(args.input_dir),
        model_options={m: model_options_of(m, args) for m in sorted(models)},
        losses=losses,
        mode=mode,
        steps=int(getattr(args, "restore_steps", DEFAULT_STEPS)),
        lr=float(lr) if lr is not None else DEFAULT_LR[mode],
        on=on,
        seed=int(getattr(args, "seed", 0)),
        device=str(getattr(args, "device", "cpu") or "cpu"),
        max_files=getattr(args, "restore_max_files", None),
    )


def _parse_on(text: str, selected: list[tuple[str, str]]) -> list[tuple[str, str]]:

    families = {f for f, _ in selected}
    items = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        family, _, level = item.partition(":")
        if family not in families:
            raise ParameterError(
                f"--restore-on {item!r}: family {family!r} is not in the study's degradations "
                f"({', '.join(sorted(families)) or 'none selected'}; see --degradations)"
            )
        if level and (family, level) not in selected:
            levels = [lv for f, lv in selected if f == family]
            raise ParameterError(
                f"--restore-on {item!r}: level {level!r} of {family} is not in the study's "
                f"degradations (selected: {', '.join(levels)})"
            )
        items.append((family, level))
    if not items:
        raise ParameterError("--restore-on is empty; give 'all' or FAMILY[:LEVEL],...")
    return items


def check_options(args: argparse.Namespace, selected: list[tuple[str, str]]) -> str | None:
    """Why the restoration options cannot run (None: fine), before any work is done."""
    try:
        settings_from_args(args, selected)
    except PerceptualAudioError as e:
        return str(e)
    return None


# -- jobs -------------------------------------------------------------------------------------
def output_rel_path(loss: str, degraded_rel: str) -> str:
    """``degraded/<family>/<level>/<rel>.wav`` -> ``restored/<loss>/<family>/<level>/<rel>.wav``."""
    parts = Path(degraded_rel).parts
    rest = Path(*parts[1:]) if parts and parts[0] == DEGRADED_DIR else Path(degraded_rel)
    return (Path(RESTORED_DIR) / loss / rest).as_posix()


@dataclass(frozen=True)
class RestoreJob:
    loss: str
    degraded: ManifestRow
    clean: ManifestRow
    output_rel: str
    digest: str


def plan(
    rows: list[ManifestRow], settings: RestoreSettings, *, shard: shards.Shard | None = None
) -> list[RestoreJob]:
    """Every (loss, selected degraded file) job, loss by loss; with ``shard``, those of its
    recordings only (``rows`` hold every clean file: ``--restore-max-files`` picks among
    all of them, so a shard restores what the unsharded run restores of its recordings)."""
    clean = {r.path: r for r in rows if r.kind == "clean"}
    first = set(sorted(clean)[: settings.max_files]) if settings.max_files is not None else None
    degraded = sorted(
        (
            r
            for r in rows
            if r.kind == "degraded"
            and not is_imported(r)
            and r.source in clean
            and settings.selects(r)
            and (first is None or r.source in first)  # the first N recordings of each level
            and (shard is None or shard.owns(r.source))
        ),
        key=lambda r: r.path,
    )
    return [
        RestoreJob(
            loss=loss,
            degraded=r,
            clean=clean[r.source],
            output_rel=output_rel_path(loss, r.path),
            digest=params_digest(settings.record(loss)),
        )
        for loss in settings.losses
        for r in degraded
    ]


def is_up_to_date(old: ManifestRow | None, job: RestoreJob, root: Path) -> bool:
    if old is None or old.source != job.degraded.path:
        return False
    if old.source_sha256 != job.degraded.sha256:
        return False
    params = old.params
    if params.get("digest") != job.digest or params.get("clean_sha256") != job.clean.sha256:
        return False
    out = root / old.path
    return out.is_file() and sha256_file(out) == old.sha256


def restore_file(
    job: RestoreJob, loss_fn: Any, settings: RestoreSettings, root: Path
) -> ManifestRow:
    """Restore one degraded file under one loss, write it atomically, return its row."""
    x, sr = load_audio(root / job.degraded.path, mono=True)
    ref, ref_sr = load_audio(root / job.clean.path, mono=True)
    if sr != ref_sr or x.shape != ref.shape:
        raise PerceptualAudioError(
            f"{root / job.degraded.path}: {x.size} samples at {sr} Hz, its clean file "
            f"{job.clean.path} {ref.size} at {ref_sr} Hz; rerun extract_embeddings.py --force"
        )
    result = restore(
        x, ref, loss=loss_fn, mode=settings.mode, steps=settings.steps, lr=settings.lr,
        seed=settings.seed, device=settings.device,
    )  # fmt: skip
    out = root / job.output_rel
    out.parent.mkdir(parents=True, exist_ok=True)
    save_wav(out, result.audio, sr)
    params = {
        **settings.record(job.loss),
        "digest": job.digest,
        "clean": job.clean.path,
        "clean_sha256": job.clean.sha256,
        "loss_before": result.loss_before,
        "loss_after": result.loss_after,
        "seconds": round(result.seconds, 3),
        "device": settings.device,
    }
    return ManifestRow.make(
        job.output_rel,
        kind="restored",
        source=job.degraded.path,
        parameters=params,
        sample_rate=sr,
        duration=len(result.audio) / sr,
        sha256=sha256_file(out),
        source_sha256=job.degraded.sha256,
        family=job.degraded.family,
        level=job.degraded.level,
        seed=settings.seed,
        flags=sorted(job.degraded.flag_set & {"short", "silent"}),
    )


# -- the half ---------------------------------------------------------------------------------
def _build(loss: str, settings: RestoreSettings, sample_rate: int) -> Any:
    """The loss module, or None after the one-line 'skipped' message (model unavailable)."""
    spec = catalogue.describe_loss(loss)
    options = settings.model_options.get(spec.model, {}) if spec.model else {}
    try:
        return catalogue.build_loss(loss, sample_rate=sample_rate, model_options=options)
    except WeightsUnavailableError as e:
        logger.warning("%s skipped: %s", loss, e)
        return None


@dataclass
class _Run(StageRun[RestoreSettings]):
    """The restoration half in the stage skeleton: the jobs kept (up to date) and to do, and
    what they gave. Its items run in this process, loss by loss (torch threads: --workers)."""

    root: Path = Path()
    in_shard: shards.Shard | None = None
    merging: bool = False
    clean_rows: list[ManifestRow] = field(default_factory=list)
    seen: list[ManifestRow] = field(default_factory=list)
    old: dict[str, ManifestRow] = field(default_factory=dict)
    kept: list[ManifestRow] = field(default_factory=list)
    done: list[ManifestRow] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    merged_shards: int = 0

    @property
    def shard(self) -> shards.Shard | None:
        return self.in_shard

    def save(self, rows: list[ManifestRow]) -> None:
        """Keep ``rows`` as the restorations so far (Ctrl-C): the manifest's, or the shard's
        fragment."""
        if self.shard is not None:
            restore_shards.save_fragment(self.root, self.shard, rows)
        else:
            replace_kind(self.root, "restored", rows)

    def read(self) -> int | None:
        """The manifest (a shard's view includes its fragments) and the earlier restorations
        (a merge: the shards')."""
        root, shard = self.root, self.shard
        try:
            rows = read_manifest(root)
            self.seen = shards.with_fragments(root, shard, rows) if shard is not None else rows
        except PerceptualAudioError as e:  # an input failure, reported by the degradations too
            logger.error("%s", e)
            return cli.EXIT_FAILED
        self.clean_rows = [r for r in rows if r.kind == "clean"]
        if shard is not None:
            self.old = restore_shards.old_rows(root, shard, rows)
        else:
            self.old = {r.path: r for r in rows if r.kind == "restored"}
        if self.merging:
            try:
                self.old = _merge_old(self)
            except shards.ShardMergeError as e:
                logger.error("%s", e)
                return cli.EXIT_FAILED
        return None

    def plan(self) -> int | None:
        settings = self.settings
        for job in plan(self.seen, settings, shard=self.shard):
            prev = self.old.get(job.output_rel)
            if (self.merging or not settings.force) and is_up_to_date(prev, job, self.root):
                self.kept.append(prev)
            else:
                self.todo.append(job)
        if self.merging and not _settle_merge(self, self.old):
            return cli.EXIT_FAILED
        return None

    def work(self) -> list[work.Outcome]:
        _run_jobs(self)
        return []

    def finish_shard(self) -> int:
        return restore_shards.finish_shard(
            self.root, self.shard, self.settings, self.clean_rows, self.kept + self.done,
            failures=self.failures, unavailable=self.unavailable, written=len(self.done),
        )  # fmt: skip

    def commit(self) -> int | None:
        return _commit(self)


def run_restorations(
    settings: RestoreSettings | None,
    input_dir: Path,
    *,
    shard: shards.Shard | None = None,
    merging: bool = False,
) -> int:
    """The restoration half of stage 2; returns an exit status (0 ok or nothing asked, 1 some
    files failed, the manifest is unreadable or the shards cannot be merged, 3 a loss was
    unavailable).

    ``settings`` None: ``--restore none``, which removes earlier restorations. ``shard``: do
    only that shard's restorations, rows to its fragment. ``merging``: take the shards'
    fragments as the finished restorations (:mod:`perceptual_audio.stages.restore_shards`).
    """
    root = Path(input_dir)
    if settings is None:
        try:
            rows = read_manifest(root)
        except PerceptualAudioError:  # nothing asked, nothing to clean up that can be read
            return cli.EXIT_OK
        return _no_restorations(root, rows, shard=shard, merging=merging)
    return run_stage(_Run(settings, root=root, in_shard=shard, merging=merging))


def _no_restorations(
    root: Path, rows: list[ManifestRow], *, shard: shards.Shard | None, merging: bool
) -> int:
    """``--restore none``: a shard drops its fragment; otherwise earlier restorations go
    (a merge first checks that the shards did not restore either)."""
    if shard is not None:
        restore_shards.drop_fragment(root, shard)
        return cli.EXIT_OK
    if merging:
        try:
            restore_shards.merge_inputs(root, None, [r for r in rows if r.kind == "clean"])
        except shards.ShardMergeError as e:
            logger.error("%s", e)
            return cli.EXIT_FAILED
    if any(r.kind == "restored" for r in rows) or (root / RESTORED_DIR).is_dir():
        removed = _remove_outputs(root, keep=set())  # also what shards left unmerged
        replace_kind(root, "restored", [])
        logger.info("restorations: --restore none, removed %d earlier restorations", removed)
    return cli.EXIT_OK


def _merge_old(run: _Run) -> dict[str, ManifestRow]:
    """The merge's earlier results: the fragments' rows (their failures and unavailable losses
    are kept on ``run`` for :func:`_settle_merge`); raises ShardMergeError."""
    merge = restore_shards.merge_inputs(run.root, run.settings, run.clean_rows)
    run.merged_shards = merge.count
    run.failures = [(w, m) for w, m in merge.failed.items()]
    run.unavailable = merge.unavailable
    return merge.rows


def _settle_merge(run: _Run, old: dict[str, ManifestRow]) -> bool:
    """A merge computes nothing: what no fragment holds up to date must have failed in its
    shard or belong to an unavailable loss; else it is named by shard (False: nothing merged)."""
    failed = dict(run.failures)
    missing = [j for j in run.todo if j.output_rel not in failed and j.loss not in run.unavailable]
    if missing:
        logger.error(
            "%s",
            restore_shards.missing_message(
                run.root / RESTORED_DIR,
                ((j.clean.path, j.output_rel) for j in missing),
                run.merged_shards,
            ),
        )
        return False
    todo = {j.output_rel for j in run.todo}
    run.failures = [(w, m) for w, m in run.failures if w in todo]
    run.todo = []
    return True


def _commit(run: _Run) -> int:
    """Write the manifest's restored rows and ``restored/run.json``; remove what no row
    lists; a merge says so (stage 2 removes the fragments once the embeddings merged)."""
    settings, root = run.settings, run.root
    new_rows = run.kept + run.done
    _remove_outputs(root, keep={r.path for r in new_rows})
    replace_kind(root, "restored", new_rows)
    cli.write_run_json(
        root / RESTORED_DIR,
        stage=STAGE,
        settings=settings,
        seed=settings.seed,
        params={"losses": list(settings.losses), "mode": settings.mode,
                "steps": settings.steps, "lr": settings.lr,
                "restore_on": [f"{f}:{lv}" if lv else f for f, lv in settings.on or ()] or "all",
                "max_files": settings.max_files},
        timings={"total": round(run.elapsed, 3)},
        extra={"counts": {"written": len(run.done), "skipped": len(run.kept),
                          "failed": len(run.failures)},
               "unavailable_losses": run.unavailable,
               "failures": [{"file": w, "error": m} for w, m in run.failures],
               "merged_shards": run.merged_shards},
    )  # fmt: skip
    if run.merged_shards:
        logger.info(
            "restorations: merged %d shards into %s", run.merged_shards, root / "manifest.csv"
        )
    logger.info(
        "restorations: wrote %d, skipped %d (up to date), failed %d -> %s",
        len(run.done), len(run.kept), len(run.failures), root / RESTORED_DIR,
    )  # fmt: skip
    if run.failures:
        return cli.EXIT_FAILED
    return cli.EXIT_MODELS_UNAVAILABLE if run.unavailable else cli.EXIT_OK


def _run_jobs(run: _Run) -> None:
    """Run ``run.todo`` loss by loss in this process (torch threads: ``--workers``); Ctrl-C
    keeps what finished (:meth:`_Run.save`)."""
    if not run.todo:
        return
    import torch  # deferred: heavy, and only restorations need it here

    settings = run.settings
    threads_before = torch.get_num_threads()
    if settings.workers:
        torch.set_num_threads(int(settings.workers))
    try:
        for loss in dict.fromkeys(j.loss for j in run.todo):
            mine = [j for j in run.todo if j.loss == loss]
            loss_fn = _build(loss, settings, mine[0].degraded.sample_rate)
            if loss_fn is None:
                run.unavailable.append(loss)
                continue
            seconds = [max(float(j.degraded.duration), 1e-3) for j in mine]
            for job in work.progress(
                mine,
                desc=f"restoring ({loss})",
                quiet=settings.quiet,
                unit=work.AUDIO_SECONDS,
                weights=seconds,
            ):
                try:
                    run.done.append(restore_file(job, loss_fn, settings, run.root))
                except (PerceptualAudioError, OSError, RuntimeError) as e:
                    run.failures.append((job.output_rel, f"{job.output_rel}: {e}"))
                    logger.error("%s: %s", job.output_rel, e)
    except KeyboardInterrupt:  # keep what finished
        run.save(run.kept + run.done)
        raise
    finally:
        torch.set_num_threads(threads_before)


def _remove_outputs(root: Path, *, keep: set[str]) -> int:
    """Delete WAVs under ``restored/`` that no current row points to; prune empty folders."""
    top = root / RESTORED_DIR
    if not top.is_dir():
        return 0
    removed = 0
    for p in sorted(top.rglob("*.wav")):
        if p.relative_to(root).as_posix() not in keep and TMP_MARKER not in p.name:
            p.unlink()
            removed += 1
    for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(d.iterdir()):
            d.rmdir()
    return removed


def study_levels(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The (family, level) pairs ``--degradations`` selects (for ``--restore-on``)."""
    try:
        return [(lev.family, lev.name) for lev in parse_selection(args.degradations)]
    except PerceptualAudioError:
        return []  # the degradation half reports a bad --degradations itself


__all__ = [
    "RestoreSettings",
    "add_restore_arguments",
    "check_options",
    "run_restorations",
    "study_levels",
]
