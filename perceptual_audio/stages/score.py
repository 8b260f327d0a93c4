"""Stage 3 (``calculate_metrics.py``): score every clean/degraded pair, then correlate.

Reads ``test_audio/manifest.csv`` (one pair per ``degraded`` row, its ``source`` being the
clean file), the WAVs, and the embeddings of every model folder that is present and
available; writes to the results folder:

- ``pair_metrics.csv``: one row per degraded file: ``reference_path, degraded_path, family,
  level``, the metric values in the metric catalogue's order (classic, reference perceptual:
  ViSQOL, Zimtohrli, DNSMOS and the clean file's DNSMOS, then per model; ``--metrics``
  selects), one ``<metric>_status`` column per
  metric (``ok`` or why it failed; the value is then empty, i.e. NaN), and provenance columns
  (file hashes and the cache keys of each group of cells).
- ``summary_by_degradation.csv``: per family and level, mean and Student-t 95% CI per metric.
- ``correlations.csv``: every neural metric against every classic metric and each pair of
  classic metrics, over all pairs and per family: Pearson, Spearman, Kendall with p-values and
  95% cluster-bootstrap CIs (resampling clean recordings), and n.
- ``monotonicity.csv``: per family and metric, the fraction of recordings whose score moves
  the right way at each step up in severity.
- ``run.json``.

Reruns reuse unchanged cells: each group of cells (one computation of the catalogue's
``AUDIO_GROUPS`` on a pair, e.g. DNSMOS's four scores; the clean file's DNSMOS, computed once
per clean file; one model's metrics of a pair) is stored in ``<group>_key`` with a key made of
the input files' sha256, the group's settings and its packages' versions, and recomputed
only when its key changes (``--force`` recomputes everything).
Cells that failed for a missing, unreadable or stale input are never reused.

Two kinds of failed cell, both NaN with the reason in ``<metric>_status`` and counted in
``run.json`` (``failures``, ``input_failures``): a measurement undefined for the audio (PESQ
finds no speech in music, STOI on too little audio, silence) is a result and does not fail
the run; an input failure (a missing, unreadable or stale file or embedding) makes the exit
status 1. Exit status 3: some models were unavailable and skipped; 0: everything scored.

A model's extra metrics (``Embedder.extra_metrics``: CDPAM's learned distance) use the arrays
stage 2 stores beside the frame embeddings (CDPAM: ``<stem>.clip.npy``); without them they
are computed from the audio (slow: the model runs again on both files).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from perceptual_audio import listening, metrics, options, stats
from perceptual_audio.embedding_manifest import (
    ModelSource,
    discover_model,
)
from perceptual_audio.embeddings.base import model_names
from perceptual_audio.errors import FolderConflictError, PerceptualAudioError, SchemaError
from perceptual_audio.manifest import read_manifest
from perceptual_audio.metrics.reference import VISQOL_SPEECH_MODELS  # no heavy import
from perceptual_audio.results import (
    PAIR_INFO_COLUMNS,
    PAIR_METRICS_NAME,
    write_pair_table,
)
from perceptual_audio.stages import cli, shards, work
from perceptual_audio.stages.score_plan import (
    METRICS_VERSION,
    STAGE,
    ColumnPlan,
    WorkPlan,
    merge_plan,
    plan_work,
    score_plan,
)
from perceptual_audio.stages.score_settings import ScoreSettings
from perceptual_audio.stages.score_shards import earlier_results, finish_shard, shard_identity
from perceptual_audio.stages.score_tables import load_ratings, write_statistics
from perceptual_audio.stages.scoring import (
    model_metric_names,
)
from perceptual_audio.stages.skeleton import StageRun, run_stage

logger = logging.getLogger(__name__)

#: Default ``--bootstrap`` (stats.N_BOOTSTRAP; stats is imported lazily: workers need no pandas).
DEFAULT_BOOTSTRAP = 1000


# -- model folders --------------------------------------------------------------------------
def parse_models(text: str) -> list[str] | None:
    """``--models`` -> model names in the registry's order; [] for ``none``; None when invalid."""
    names = [m.strip().lower() for m in text.split(",") if m.strip()]
    if names == ["none"]:
        return []
    known = model_names()
    if not names or any(m not in known for m in names):
        return None
    return [m for m in known if m in names]


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``calculate_metrics.py``."""
    p = argparse.ArgumentParser(
        prog="calculate_metrics.py",
        description=(
            "Stage 3: score every clean/degraded pair with the classic metrics (PESQ wide band "
            "at 16 kHz; narrow band, P.862, at --pesq-nb-rate; STOI, ESTOI, SI-SDR), the "
            "reference perceptual metrics (ViSQOL v3 audio mode at 48 kHz and speech mode at "
            "16 kHz; Zimtohrli distance and MOS at 48 kHz; DNSMOS P.835/P.808 at 16 kHz, no "
            "reference, also on the clean file), and per available model the frame-aligned "
            "cosine similarity, the cosine of mean-pooled embeddings, the mean frame L2 "
            "distance, and the model's own metrics (CDPAM's learned distance); each metric runs on the audio resampled "
            "to its own rate. Then per-degradation summaries, correlations with "
            "cluster-bootstrap CIs and monotonicity. Failed cells are NaN with a reason in "
            "<metric>_status."
        ),
        epilog=(
            "exit status: 0 success; 1 some cells failed for a missing, unreadable or stale "
            "input (see the *_status columns), or another run holds the folder; 2 bad "
            "command line (also: an input folder that is not the previous stage's, a results "
            "folder of another stage, an embedding folder of another model); 3 some models "
            "unavailable (the others were scored); 130 interrupted. A measurement undefined for the audio "
            "(PESQ finding no speech, STOI on too little audio) is NaN with its reason and "
            "counted in run.json, but does not fail the run."
        ),
        formatter_class=cli.HelpFormatter,
    )
    p.add_argument(
        "--audio-dir",
        type=Path,
        default=Path("test_audio"),
        metavar="DIR",
        help="stage 1-2 audio folder holding manifest.csv, clean/ and degraded/",
    )
    p.add_argument(
        "--models",
        default=",".join(model_names(default_only=True)),
        metavar="LIST",
        help=f"comma-separated models whose embeddings to score ({', '.join(model_names())}) or "
        "'none' (classic metrics only); a listed model without embeddings is reported as "
        "unavailable (exit status 3), an unlisted one is simply not scored",
    )
    for model in model_names():
        p.add_argument(
            f"--{model}-dir",
            type=Path,
            default=Path(f"{model}_embeddings"),
            metavar="DIR",
            help=f"{model} embeddings folder (skipped when missing or unavailable)",
        )
    p.add_argument(
        "--results-dir",
        type=Path,
        default=Path("results"),
        metavar="DIR",
        help="output folder for the tables and run.json",
    )
    _add_metric_options(p)
    listening.add_ratings_arguments(p)
    shards.add_shard_arguments(p, what="the pairs")
    cli.add_common_arguments(p, workers=True)
    return p


def _add_metric_options(p: argparse.ArgumentParser) -> None:
    """``--bootstrap``, ``--seed``, ``--metrics`` and the metrics' own settings."""
    p.add_argument(
        "--bootstrap",
        type=options.nonnegative_int,
        default=DEFAULT_BOOTSTRAP,
        metavar="N",
        help="cluster-bootstrap replicates per correlation CI (0: no CIs)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap replicates")
    p.add_argument(
        "--metrics",
        default="all",
        metavar="LIST",
        help="comma-separated metrics to compute: 'all', a kind (classic, reference, neural), "
        "a group (pesq, visqol, zimtohrli, dnsmos, peaq, peaq_advanced; peaq_movs, PEAQ's model "
        "output variables, only when named), a model name, or column names such as "
        "pesq_wb,visqol_audio (an unknown name is an error that lists the valid ones)",
    )
    p.add_argument(
        "--visqol-speech-model",
        choices=VISQOL_SPEECH_MODELS,
        default=VISQOL_SPEECH_MODELS[0],
        help="ViSQOL speech mode's MOS mapping: the deep lattice network (the C++ default) "
        "or the exponential fit",
    )
    p.add_argument(
        "--pesq-nb-rate",
        type=int,
        choices=metrics.PESQ_NB_SAMPLE_RATES,
        default=metrics.PESQ_NB_SAMPLE_RATE,
        metavar="HZ",
        help="rate in Hz of narrow-band PESQ: 8000 (audio resampled with soxr VHQ) "
        "or 16000 (P.862 on the 16 kHz audio)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        metavar="DEV",
        help="torch device of a model that runs on audio for its extra metrics (no stored "
        "extras, e.g. CDPAM's clip embeddings): cpu, cuda, cuda:1, ...",
    )


def _read_study(settings: ScoreSettings) -> tuple[list, Any] | int:
    """The audio manifest's rows and the listening test's ratings (or None), or an exit
    status after saying what is wrong."""
    audio_dir: Path = settings.audio_dir
    manifest_file = audio_dir / "manifest.csv"
    problem = cli.check_input_folder(
        audio_dir,
        option="--audio-dir",
        needs="manifest.csv",
        made_by="audio_conversion.py --output DIR and extract_embeddings.py --input-dir DIR",
    )
    if problem is not None:
        return problem
    try:
        rows = read_manifest(manifest_file)
    except PerceptualAudioError as e:
        logger.error("%s", e)
        return cli.EXIT_FAILED
    unmerged = _unmerged_stage2(
        [audio_dir / "degraded", *(settings.model_dirs[m] for m in model_names())]
    )
    if unmerged:
        logger.error(
            "stage 2 ran in shards that are not merged yet (%s holds their fragments): run "
            "extract_embeddings.py with the same options and without --shard to merge them, "
            "then this stage",
            unmerged,
        )
        return cli.EXIT_FAILED
    if not any(r.kind == "degraded" for r in rows):
        logger.error(
            "%s lists no degraded files: run extract_embeddings.py (stage 2) first", manifest_file
        )
        return cli.EXIT_FAILED
    study_ratings, problem = load_ratings(settings, audio_dir, rows)
    if problem:
        logger.error("%s", problem)
        logger.error("nothing computed; %s left untouched", settings.results_dir)
        return cli.EXIT_USAGE
    return rows, study_ratings


def _unmerged_stage2(folders: Sequence[Path]) -> str | None:
    for folder in folders:
        if shards.has_fragments(folder):
            return str(Path(folder) / shards.SHARDS_DIR)
    return None


def _select(settings: ScoreSettings) -> tuple[list[str], list[str]] | int:
    """(models, metric columns) the command line asks for, or the usage exit status."""
    wanted = parse_models(settings.models)
    if wanted is None:
        logger.error(
            "--models: expected a comma-separated list of %s, or 'none'; got %r",
            ", ".join(model_names()),
            settings.models,
        )
        return cli.EXIT_USAGE
    try:
        selected = metrics.parse_metric_list(settings.metrics, model_names())
    except PerceptualAudioError as e:
        logger.error("%s", e)
        return cli.EXIT_USAGE
    # A model none of whose metrics is selected is not needed.
    return [m for m in wanted if set(model_metric_names(m)) & set(selected)], selected


def _claim(settings: ScoreSettings, wanted: list[str]) -> int | None:
    """Check and lock the results folder (None), or the exit status of a refusal."""
    return cli.claim_output_folder(
        settings.results_dir,
        owner=STAGE,
        option="--results-dir",
        inputs=[
            ("--audio-dir", settings.audio_dir, "audio_conversion"),
            *((f"--{m}-dir", settings.model_dirs[m], f"embeddings:{m}") for m in wanted),
        ],
        shard=settings.shard,
    )


def _sources(settings: ScoreSettings, wanted: list[str]) -> dict[str, ModelSource] | int:
    """The wanted models' folders (or the usage exit status)."""
    try:
        sources = {m: discover_model(m, settings.model_dirs[m]) for m in wanted}
    except (FolderConflictError, SchemaError) as e:
        logger.error("%s", e)
        return cli.EXIT_USAGE
    for m in wanted:
        if not sources[m].available:
            # One line here: stage 2 already printed what to fetch and where.
            logger.warning("model %s skipped: %s", m, sources[m].reason.splitlines()[0])
    return sources


def _models_record(settings: ScoreSettings, sources: Mapping[str, ModelSource]) -> dict:
    return {
        m: (
            {"available": s.available, "reason": s.reason, "folder": str(s.folder)}
            if (s := sources.get(m)) is not None
            else {
                "available": False,
                "reason": "not requested (--models)",
                "folder": str(settings.model_dirs[m]),
            }
        )
        for m in model_names()
    }


@cli.stage_entry("calculate_metrics.py")
def main(argv: Sequence[str] | None = None) -> int:
    """Run stage 3; returns the exit status (see ``--help``)."""
    args = build_parser().parse_args(argv)
    cli.setup_logging(quiet=args.quiet, verbose=args.verbose)
    return run(ScoreSettings.from_args(args))


@dataclass
class _Scoring(StageRun[ScoreSettings]):
    """Stage 3 in the stage skeleton: what a run scores (the manifest's rows, the models, the
    columns), its plan, and what it found."""

    stage: ClassVar[str] = "calculate_metrics"

    rows: list[Any] = field(default_factory=list)
    ratings: Any = None
    wanted: list[str] = field(default_factory=list)
    selected: list[str] = field(default_factory=list)
    available: list[str] = field(default_factory=list)
    sources: dict[str, ModelSource] = field(default_factory=dict)
    cols: ColumnPlan | None = None
    merging: bool = False
    identity: tuple[str, str, dict[str, Any]] = ("", "", {})
    previous: Mapping[str, dict[str, str]] = field(default_factory=dict)
    pairs: WorkPlan | None = None
    input_failures: dict[str, int] = field(default_factory=dict)
    cell_failures: dict[str, int] = field(default_factory=dict)
    score_seconds: float = 0.0

    def check(self) -> int | None:
        """The study, its ratings and the models and metrics asked for (nothing written)."""
        # Read by metrics.model_embedder in this process and in the workers.
        os.environ[metrics.MODEL_DEVICE_ENV] = self.settings.device
        study = _read_study(self.settings)
        if isinstance(study, int):
            return study
        self.rows, self.ratings = study
        selection = _select(self.settings)
        if isinstance(selection, int):
            return selection
        self.wanted, self.selected = selection
        return None

    def claim(self) -> int | None:
        return _claim(self.settings, self.wanted)

    def read(self) -> int | None:
        """The models' folders and what earlier runs (or the shards) computed."""
        settings = self.settings
        sources = _sources(settings, self.wanted)
        if isinstance(sources, int):
            return sources
        self.sources = sources
        self.available = [m for m in self.wanted if sources[m].available]
        self.cols = ColumnPlan.of(settings, self.available, self.selected)
        self.merging = settings.shard is None and (
            settings.merge_shards or shards.has_fragments(settings.results_dir)
        )
        self.identity = shard_identity(self.cols, self.available, settings.audio_dir, sources)
        previous = earlier_results(settings, settings.shard, self.merging, self.identity)
        if isinstance(previous, int):
            return previous
        self.previous = previous
        return None

    def plan(self) -> int | None:
        """Every pair's cells: reused, to compute, or (a merge) taken from the shards."""
        settings = self.settings
        clean = {r.path: r for r in self.rows if r.kind == "clean"}
        degraded = sorted((r for r in self.rows if r.kind == "degraded"), key=lambda r: r.path)
        degraded += restored_pairs(self.rows)  # scored against their clean file like degraded
        if settings.shard is not None:
            degraded = [r for r in degraded if settings.shard.owns(r.source)]
        self.pairs = plan = plan_work(
            settings.audio_dir, degraded, clean, self.cols, self.sources, self.available,
            self.previous,
        )  # fmt: skip
        logger.info(
            "%d pairs: %d to score, %d fully reused from %s; %d clean files to score alone",
            len(plan.table),
            plan.computed,
            plan.reused,
            f"the {shards.SHARDS_DIR} fragments"
            if self.merging
            else settings.results_dir / PAIR_METRICS_NAME,
            sum(1 for g in plan.clean_needed.values() if g),
        )
        if not self.merging:
            return None
        n_shards = shards.fragment_shards(settings.results_dir)[0].count
        input_failures = merge_plan(plan, self.previous, n_shards)
        if isinstance(input_failures, str):
            logger.error(
                "cannot merge the shards of %s: %s; rerun those shards. Nothing merged",
                settings.results_dir,
                input_failures,
            )
            return cli.EXIT_FAILED
        self.input_failures = input_failures
        return None

    def work(self) -> list[work.Outcome]:
        """Compute the plan's cells (score_plan: pairs in isolated workers; a merge computes
        nothing)."""
        t = time.perf_counter()
        if not self.merging:
            self.input_failures = score_plan(self.pairs, self.settings)
        self.score_seconds = time.perf_counter() - t
        return []

    def finish_shard(self) -> int:
        plan, cols = self.pairs, self.cols
        return finish_shard(
            self.settings.results_dir, self.settings.shard, plan.table,
            cols.table_columns(self.available), cols.value_columns, self.identity,
            self.input_failures, plan, self.t0,
        )  # fmt: skip

    def commit(self) -> int | None:
        self.cell_failures = _write_results(self)
        return None

    def summary(self) -> str:
        n_failed = sum(self.cell_failures.values())
        n_input = sum(self.input_failures.values())
        return (
            f"wrote {self.settings.results_dir}: {len(self.pairs.table)} pairs, "
            f"{len(self.cols.value_columns)} metrics, {n_failed} failed cells ({n_input} for "
            "missing, unreadable or stale inputs); models: " + (", ".join(self.available) or "none")
        )

    def exit_status(self) -> int:
        if sum(self.input_failures.values()):
            return cli.EXIT_FAILED
        if len(self.available) < len(self.wanted):
            return cli.EXIT_MODELS_UNAVAILABLE
        return cli.EXIT_OK


def run(settings: ScoreSettings) -> int:
    """Stage 3 with its settings; returns the exit status."""
    return run_stage(_Scoring(settings))


def restored_pairs(rows: Sequence[Any]) -> list[Any]:
    """Restored files as pairs with their clean file (``source`` = the clean path)."""
    out = [replace(r, source=r.params.get("clean", "")) for r in rows if r.kind == "restored"]
    return sorted(out, key=lambda r: r.path)


def _write_results(study: _Scoring) -> dict[str, int]:
    """pair_metrics.csv, the statistics and run.json; the failed cells per metric."""
    settings, plan = study.settings, study.pairs
    columns = study.cols.table_columns(study.available)
    table, value_cols, results_dir = plan.table, study.cols.value_columns, settings.results_dir
    if study.ratings is not None:
        for r in table:
            r.update(listening.pair_rating_cells(study.ratings, r["degraded_path"]))
        at = columns.index(PAIR_INFO_COLUMNS[-1]) + 1
        columns[at:at] = list(listening.PAIR_RATING_COLUMNS)
    results_dir.mkdir(parents=True, exist_ok=True)
    write_pair_table(results_dir / PAIR_METRICS_NAME, table, columns, value_cols)
    failures = {
        c: sum(1 for r in table if r.get(f"{c}_status") != metrics.STATUS_OK) for c in value_cols
    }
    for c, n in failures.items():
        if n:
            reasons = sorted({r[f"{c}_status"] for r in table if r[f"{c}_status"] != "ok"})
            logger.warning("%s failed on %d of %d pairs (e.g. %s)", c, n, len(table), reasons[0])
    t_stats = time.perf_counter()
    order, not_applied, listening_info = write_statistics(
        settings, results_dir, settings.audio_dir, table, value_cols, study.ratings
    )
    cli.write_run_json(
        results_dir,
        stage=STAGE,
        settings=settings,
        seed=settings.seed,
        params={
            "classic": study.cols.settings.as_dict(),
            "metrics": metrics_record(value_cols, study.rows),
            "metrics_version": METRICS_VERSION,
            "bootstrap": settings.bootstrap,
            "confidence": stats.CONFIDENCE,
            "summary_interval": "Student t, 95%, clipped to the metric's value range",
            "correlation_interval": "percentile cluster bootstrap over clean recordings",
        },
        timings={
            "total": study.elapsed,
            "scoring": study.score_seconds,
            "statistics": time.perf_counter() - t_stats,
        },
        extra={
            "models": _models_record(settings, study.sources),
            "n_pairs": len(table),
            "n_pairs_not_applied": not_applied,
            "pairs_scored": plan.computed,
            "pairs_reused": plan.reused,
            "failures": failures,
            "input_failures": study.input_failures,
            "level_order": order,
            "listening": listening_info,
            "metric_sample_rates_hz": _metric_rates(study.rows, value_cols, settings.pesq_nb_rate),
            "merged_shards": len(shards.fragment_shards(results_dir)) if study.merging else 0,
        },
    )
    if study.merging:
        shards.remove_fragments(results_dir)
    return failures


def metrics_record(columns: Sequence[str], rows: Sequence[Any]) -> dict[str, Any]:
    """run.json's account of the metrics: per column its catalogue facts (kind, rate, domain,
    package and version), and the study's sample rate, which bounds what a metric running
    at a higher rate can judge (nothing above half the study's rate is in the audio)."""
    rates = sorted({int(r.sample_rate) for r in rows if getattr(r, "sample_rate", None)})
    out: dict[str, Any] = {"study_sample_rate": rates[0] if len(rates) == 1 else rates}
    for c in columns:
        s = metrics.describe(c)
        out[c] = {
            "kind": s.kind,
            "sample_rate": s.sample_rate,
            "full_reference": s.full_reference,
            "domain": s.domain,
            "role": s.role,
            "package": s.package,
            "version": s.version,
        }
    return out


def _metric_rates(rows: list, value_cols: list[str], pesq_nb_rate: int) -> dict[str, Any]:
    """Rate (Hz) each metric computed at, from the study's rate (for the report)."""
    rates = sorted({int(r.sample_rate) for r in rows})
    study = rates[0] if rates else 16000
    return {
        "study_sample_rates_hz": rates,
        "metrics": {
            c: listening.metric_rate_hz(c, study, pesq_nb_rate=pesq_nb_rate) for c in value_cols
        },
    }
