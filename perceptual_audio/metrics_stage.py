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
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perceptual_audio import cli, metrics, shards
from perceptual_audio.embedding_manifest import (
    ModelSource,
    discover_model,
    extra_path,
    locate_embedding,
)
from perceptual_audio.embeddings.base import model_names
from perceptual_audio.errors import FolderConflictError, PerceptualAudioError, SchemaError
from perceptual_audio.files import params_digest, sha256_file, write_text_if_changed
from perceptual_audio.reference_metrics import VISQOL_SPEECH_MODELS  # no heavy import
from perceptual_audio.results import (
    CORRELATIONS_NAME,
    LEADING_COLUMNS,
    LOSS_AUDIT_NAME,
    MONOTONICITY_NAME,
    PAIR_INFO_COLUMNS,
    PAIR_METRICS_NAME,
    SUMMARY_NAME,
    read_previous_pairs,
    write_pair_table,
)
from perceptual_audio.scoring import (
    ModelJob,
    PairJob,
    PairScores,
    key_column,
    metric_columns,
    model_metric_names,
    score_pair,
    single_threaded_blas,
)

logger = logging.getLogger(__name__)

STAGE = "calculate_metrics"
#: Bumped when the computation of a cell changes, invalidating cached cells.
METRICS_VERSION = 1
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


def _parse_value(text: str) -> float:
    return float(text) if text not in ("", None) else math.nan


# -- the stage ------------------------------------------------------------------------------
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
    p.add_argument(
        "--bootstrap",
        type=cli.nonnegative_int,
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
        "a group (pesq, visqol, zimtohrli, dnsmos), a model name, or column names such as "
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
    from perceptual_audio import listening

    listening.add_ratings_arguments(p)
    shards.add_shard_arguments(p, what="the pairs")
    cli.add_common_arguments(p, workers=True)
    return p


class _Hashes:
    """sha256 of files, each computed once per run."""

    def __init__(self) -> None:
        self._cache: dict[Path, str] = {}

    def __call__(self, path: Path) -> str:
        if path not in self._cache:
            self._cache[path] = sha256_file(path) if path.is_file() else "missing"
        return self._cache[path]


@dataclass(frozen=True)
class ColumnPlan:
    """Which metrics this run writes: the value columns and the metric groups behind them."""

    settings: metrics.MetricSettings
    value_columns: list[str]
    pair_groups: list[str]
    clean_groups: list[str]
    group_params: dict[str, Any]

    @classmethod
    def of(
        cls, args: argparse.Namespace, available: Sequence[str], selected: Sequence[str]
    ) -> ColumnPlan:
        settings = metrics.MetricSettings(
            pesq_nb_sample_rate=args.pesq_nb_rate, visqol_speech_model=args.visqol_speech_model
        )
        value_cols = metric_columns(available, selected)

        def groups(role: str) -> list[str]:
            return [
                g.name
                for g in metrics.AUDIO_GROUPS.values()
                if g.role == role and set(g.columns) & set(value_cols)
            ]

        pair_groups, clean_groups = groups(metrics.ROLE_PAIR), groups(metrics.ROLE_CLEAN)
        # Every column of a selected group is written (a group is computed whole).
        value_cols = metric_columns(
            available,
            [
                *value_cols,
                *(c for g in pair_groups + clean_groups for c in metrics.AUDIO_GROUPS[g].columns),
            ],
        )
        params = {g: metrics.AUDIO_GROUPS[g].params(settings) for g in pair_groups + clean_groups}
        return cls(settings, value_cols, pair_groups, clean_groups, params)

    def table_columns(self, available: Sequence[str]) -> list[str]:
        """The columns of ``pair_metrics.csv`` (without a listening test's ratings)."""
        return [
            *LEADING_COLUMNS,
            *self.value_columns,
            *(f"{c}_status" for c in self.value_columns),
            *PAIR_INFO_COLUMNS,
            "reference_sha256",
            "degraded_sha256",
            *(f"{g}_key" for g in self.pair_groups + self.clean_groups),
            *(f"{m}_key" for m in available),
        ]


@dataclass
class WorkPlan:
    """The table as far as earlier results give it, and the jobs that fill in the rest.

    ``job_rows[i]`` is the table row of ``jobs[i]``, or the clean path of a clean-file job;
    ``clean_cells`` holds each clean file's reused or computed clean-file cells.
    """

    table: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[PairJob] = field(default_factory=list)
    job_rows: list[int | str] = field(default_factory=list)
    clean_cells: dict[str, dict[str, Any]] = field(default_factory=dict)
    clean_needed: dict[str, list[str]] = field(default_factory=dict)
    computed: int = 0
    reused: int = 0


def _model_job(
    m: str, src: ModelSource, row: Any, ref_sha: str, deg_sha: str, hashes: _Hashes
) -> tuple[str, ModelJob]:
    """The cache key of one model's cells of a pair, and the job that computes them."""
    e_ref, p_ref = locate_embedding(src, row.source, ref_sha)
    e_deg, p_deg = locate_embedding(src, row.path, deg_sha)
    problem = p_ref or p_deg
    extras = metrics.model_extras(m)
    x_ref = [extra_path(e_ref, k) for k in extras]
    x_deg = [extra_path(e_deg, k) for k in extras]
    stored = problem is None and all(p.is_file() for p in x_ref + x_deg)
    c_ref = tuple(map(str, x_ref)) if extras and stored else None
    c_deg = tuple(map(str, x_deg)) if extras and stored else None
    key_parts: dict[str, Any] = {
        "v": METRICS_VERSION,
        "model": m,
        "problem": problem,
        "ref": hashes(e_ref),
        "deg": hashes(e_deg),
    }
    if extras:  # the extra metrics read the extras (or the audio) and the weights
        key_parts["clips"] = (
            [hashes(p) for pair in zip(x_ref, x_deg, strict=True) for p in pair]
            if c_ref
            else ["audio", ref_sha, deg_sha]
        )
        key_parts["weights"] = src.entries.get(row.path, {}).get("weights_sha256", "")
    key = params_digest(key_parts) if problem is None else ""
    return key, ModelJob(m, str(e_ref), str(e_deg), problem, c_ref, c_deg)


def plan_work(
    audio_dir: Path,
    degraded: Sequence[Any],
    clean: Mapping[str, Any],
    cols: ColumnPlan,
    sources: Mapping[str, ModelSource],
    available: Sequence[str],
    previous: Mapping[str, dict[str, str]],
) -> WorkPlan:
    """One table row per degraded file, its cells reused from ``previous`` where their cache
    keys still match; a job per pair (and per clean file) with cells left to compute."""
    plan, hashes = WorkPlan(), _Hashes()
    for row in degraded:
        ref_rel = row.source
        ref_path, deg_path = audio_dir / ref_rel, audio_dir / row.path
        if ref_rel not in clean:
            logger.warning(
                "%s: its source %r is not a clean file of the manifest", row.path, ref_rel
            )
        ref_problem = None if ref_path.is_file() else f"reference {ref_path} not found"
        ref_sha, deg_sha = hashes(ref_path), hashes(deg_path)
        out: dict[str, Any] = {
            "reference_path": ref_rel,
            "degraded_path": row.path,
            "family": row.family,
            "level": row.level,
            "reference_sha256": ref_sha,
            "degraded_sha256": deg_sha,
            "flags": row.flags,
            "degradation_applied": "true" if row.degradation_applied else "false",
            "kind": row.kind,
            "loss": row.params.get("loss", "") if row.kind == "restored" else "",
        }
        prev = previous.get(row.path, {})
        need_groups = []
        for g in cols.pair_groups:
            key = params_digest(
                {
                    "v": METRICS_VERSION,
                    "group": g,
                    "ref": ref_sha,
                    "deg": deg_sha,
                    "settings": cols.group_params[g],
                    "ref_path": ref_rel,
                }
            )
            out[f"{g}_key"] = key
            if not _reuse(prev, f"{g}_key", key, metrics.AUDIO_GROUPS[g].columns, out):
                need_groups.append(g)
        for g in cols.clean_groups:
            key = params_digest(
                {"v": METRICS_VERSION, "group": g, "ref": ref_sha, "settings": cols.group_params[g]}
            )
            out[f"{g}_key"] = key
            group_cols = metrics.AUDIO_GROUPS[g].columns
            done = plan.clean_cells.setdefault(ref_rel, {})
            if all(c in done for c in group_cols) or _reuse(
                prev, f"{g}_key", key, group_cols, done
            ):
                continue
            if g not in plan.clean_needed.setdefault(ref_rel, []):
                plan.clean_needed[ref_rel].append(g)
        model_jobs = []
        for m in available:
            key, job = _model_job(m, sources[m], row, ref_sha, deg_sha, hashes)
            out[f"{m}_key"] = key
            if not _reuse(prev, f"{m}_key", key, model_metric_names(m), out):
                model_jobs.append(job)
        plan.table.append(out)
        if need_groups or model_jobs:
            plan.jobs.append(
                PairJob(
                    str(ref_path),
                    str(deg_path),
                    ref_problem,
                    cols.settings,
                    tuple(need_groups),
                    tuple(model_jobs),
                )
            )
            plan.job_rows.append(len(plan.table) - 1)
            plan.computed += 1
        else:
            plan.reused += 1
    for ref_rel, groups in plan.clean_needed.items():
        if not groups:
            continue
        ref_path = audio_dir / ref_rel
        problem = None if ref_path.is_file() else f"reference {ref_path} not found"
        # Clean-file jobs go first: each scores one file that several pairs share.
        plan.jobs.insert(0, PairJob(str(ref_path), None, problem, cols.settings, tuple(groups)))
        plan.job_rows.insert(0, ref_rel)
    return plan


def score_plan(plan: WorkPlan, args: argparse.Namespace) -> dict[str, int]:
    """Run the plan's jobs and fill its table in; returns the input failures per metric."""
    with single_threaded_blas():  # for the in-process (--workers 1) path; workers do it too
        outcomes = cli.parallel_map(
            score_pair, plan.jobs, workers=args.workers, desc="pairs", args=args, unit="pair"
        )
    input_failures: dict[str, int] = {}
    clean_failed: dict[str, frozenset[str]] = {}
    table = plan.table
    for job, i, oc in zip(plan.jobs, plan.job_rows, outcomes, strict=True):
        if oc.ok:
            scores: PairScores = oc.value
        else:  # the worker itself failed: every requested cell carries the reason
            names = [c for g in job.groups for c in metrics.AUDIO_GROUPS[g].columns]
            for mj in job.models:
                names += model_metric_names(mj.model)
            reason = metrics._one_line(oc.error or "failed")
            scores = PairScores({n: (math.nan, reason) for n in names}, frozenset(names))
        if isinstance(i, str):  # a clean file: its cells go to every pair of that file
            done = plan.clean_cells.setdefault(i, {})
            for name, (value, status) in scores.cells.items():
                done[name], done[f"{name}_status"] = value, status
            clean_failed[i] = scores.input_failed
            continue
        for name, (value, status) in scores.cells.items():
            table[i][name] = value
            table[i][f"{name}_status"] = status
        for name in scores.input_failed:
            input_failures[name] = input_failures.get(name, 0) + 1
            # An input failure is never cached: the next run tries again.
            table[i][key_column(name)] = ""
    for out in table:
        out.update(plan.clean_cells.get(out["reference_path"], {}))
        for name in clean_failed.get(out["reference_path"], ()):
            input_failures[name] = input_failures.get(name, 0) + 1
            out[key_column(name)] = ""
    return input_failures


def write_statistics(
    args: argparse.Namespace,
    results_dir: Path,
    audio_dir: Path,
    table: list[dict[str, Any]],
    value_cols: list[str],
    study_ratings: Any,
) -> tuple[dict[str, list[str]], int, Any]:
    """Summaries, correlations, monotonicity (and agreement with listeners) of the table;
    returns the level order, the number of pairs left out (degradation not applied) and the
    listening record for run.json."""
    import pandas as pd

    from perceptual_audio import stats

    # Pairs whose degradation was not applied (the 'degraded' file equals the clean one) are
    # scored in pair_metrics.csv but would fake perfect agreement in the statistics.
    write_loss_audit(results_dir, table, value_cols, args.bootstrap)
    table = [r for r in table if r.get("kind") != "restored"]  # the audit's, not the study's
    analysed_rows = [r for r in table if r["degradation_applied"] != "false"]
    not_applied = len(table) - len(analysed_rows)
    if not_applied:
        logger.warning(
            "%d pair(s) whose degradation was not applied (silent input) are left out "
            "of the summaries, correlations and monotonicity",
            not_applied,
        )
    frame = pd.DataFrame(
        {c: [r[c] for r in analysed_rows] for c in (*LEADING_COLUMNS, *value_cols)}
    )
    for c in value_cols:
        frame[c] = frame[c].astype(float)
    order = _level_order(frame, audio_dir)
    analysed = metrics.analysed_metrics(value_cols)
    summary = stats.summary_by_degradation(
        frame, value_cols, order, bounds={c: metrics.value_range(c) for c in value_cols}
    )
    corr = stats.correlation_table(
        frame,
        stats.metric_pairs(
            metrics.neural_metric_names(analysed), metrics.reference_metric_names(analysed)
        ),
        n_bootstrap=args.bootstrap,
        seed=args.seed,
    )
    # A listening test's conditions have no severity order: no monotonicity for them.
    graded = frame["family"] != LISTENING_FAMILY
    mono = stats.monotonicity(
        frame[graded], analysed, {f: o for f, o in order.items() if f != LISTENING_FAMILY}
    )
    for name, df in ((SUMMARY_NAME, summary), (CORRELATIONS_NAME, corr), (MONOTONICITY_NAME, mono)):
        write_text_if_changed(results_dir / name, df.to_csv(index=False, lineterminator="\n"))
    listening_info = _write_listener_agreement(args, results_dir, table, value_cols, study_ratings)
    return order, not_applied, listening_info


def _read_study(args: argparse.Namespace) -> tuple[list, Any] | int:
    """The audio manifest's rows and the listening test's ratings (or None), or an exit
    status after saying what is wrong."""
    from perceptual_audio.manifest import read_manifest

    audio_dir: Path = args.audio_dir
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
        [audio_dir / "degraded", *(getattr(args, f"{m}_dir") for m in model_names())]
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
    study_ratings, problem = _load_ratings(args, audio_dir, rows)
    if problem:
        logger.error("%s", problem)
        logger.error("nothing computed; %s left untouched", args.results_dir)
        return cli.EXIT_USAGE
    return rows, study_ratings


def restored_pairs(rows: Sequence[Any]) -> list[Any]:
    """Restored files as pairs with their clean file (``source`` = the clean path)."""
    import dataclasses

    out = [dataclasses.replace(r, source=r.params.get("clean", "")) for r in rows
           if r.kind == "restored"]  # fmt: skip
    return sorted(out, key=lambda r: r.path)


def write_loss_audit(
    results_dir: Path, table: list[dict[str, Any]], value_cols: list[str], n_bootstrap: int
) -> None:
    """``loss_audit.csv`` from the restored pairs (removed when there are none)."""
    import pandas as pd

    from perceptual_audio.restoration import audit

    path = results_dir / LOSS_AUDIT_NAME
    if not any(r.get("kind") == "restored" for r in table):
        if path.exists():
            path.unlink()
            logger.info("removed %s (no restorations in this study)", path)
        return
    frame = pd.DataFrame(table)
    judges = metrics.analysed_metrics(value_cols)
    if "rating_mean" in frame:  # listeners rated restored files: a judge like any other
        judges.append("rating_mean")
    result = audit.loss_audit(frame, judges, n_bootstrap=n_bootstrap)
    write_text_if_changed(
        path, result.to_csv(index=False, float_format="%.10g", lineterminator="\n")
    )
    logger.info("wrote %s: %d losses x %d judges", path, result["loss"].nunique(), len(judges))


def _unmerged_stage2(folders: Sequence[Path]) -> str | None:
    for folder in folders:
        if shards.has_fragments(folder):
            return str(Path(folder) / shards.SHARDS_DIR)
    return None


def _select(args: argparse.Namespace) -> tuple[list[str], list[str]] | int:
    """(models, metric columns) the command line asks for, or the usage exit status."""
    wanted = parse_models(args.models)
    if wanted is None:
        logger.error(
            "--models: expected a comma-separated list of %s, or 'none'; got %r",
            ", ".join(model_names()),
            args.models,
        )
        return cli.EXIT_USAGE
    try:
        selected = metrics.parse_metric_list(args.metrics, model_names())
    except PerceptualAudioError as e:
        logger.error("%s", e)
        return cli.EXIT_USAGE
    # A model none of whose metrics is selected is not needed.
    return [m for m in wanted if set(model_metric_names(m)) & set(selected)], selected


def _sources(args: argparse.Namespace, wanted: list[str]) -> dict[str, ModelSource] | int:
    """Claim the results folder and read the wanted models' folders (or an exit status)."""
    refused = cli.claim_output_folder(
        args.results_dir,
        owner=STAGE,
        option="--results-dir",
        inputs=[
            ("--audio-dir", args.audio_dir, "audio_conversion"),
            *((f"--{m}-dir", getattr(args, f"{m}_dir"), f"embeddings:{m}") for m in wanted),
        ],
        shard=args.shard,
    )
    if refused is not None:
        return refused
    try:
        sources = {m: discover_model(m, getattr(args, f"{m}_dir")) for m in wanted}
    except (FolderConflictError, SchemaError) as e:
        logger.error("%s", e)
        return cli.EXIT_USAGE
    for m in wanted:
        if not sources[m].available:
            # One line here: stage 2 already printed what to fetch and where.
            logger.warning("model %s skipped: %s", m, sources[m].reason.splitlines()[0])
    return sources


def _models_record(args: argparse.Namespace, sources: Mapping[str, ModelSource]) -> dict:
    return {
        m: (
            {"available": s.available, "reason": s.reason, "folder": str(s.folder)}
            if (s := sources.get(m)) is not None
            else {
                "available": False,
                "reason": "not requested (--models)",
                "folder": str(getattr(args, f"{m}_dir")),
            }
        )
        for m in model_names()
    }


@cli.stage_entry("calculate_metrics.py")
def main(argv: Sequence[str] | None = None) -> int:
    """Run stage 3; returns the exit status (see ``--help``)."""
    args = build_parser().parse_args(argv)
    cli.setup_logging(args)
    # Read by metrics.model_embedder in this process and in the spawned workers.
    os.environ[metrics.MODEL_DEVICE_ENV] = args.device
    t_start = time.perf_counter()
    audio_dir: Path = args.audio_dir
    results_dir: Path = args.results_dir
    study = _read_study(args)
    if isinstance(study, int):
        return study
    rows, study_ratings = study
    selection = _select(args)
    if isinstance(selection, int):
        return selection
    wanted, selected = selection
    sources = _sources(args, wanted)
    if isinstance(sources, int):
        return sources
    available = [m for m in wanted if sources[m].available]
    cols = ColumnPlan.of(args, available, selected)
    value_cols = cols.value_columns

    shard: shards.Shard | None = args.shard
    merging = shard is None and (args.merge_shards or shards.has_fragments(results_dir))
    identity = _shard_identity(cols, available, audio_dir, sources)
    clean = {r.path: r for r in rows if r.kind == "clean"}
    degraded = sorted((r for r in rows if r.kind == "degraded"), key=lambda r: r.path)
    degraded += restored_pairs(rows)  # scored against their clean file like degraded ones
    if shard is not None:
        degraded = [r for r in degraded if shard.owns(r.source)]
    previous = _earlier_results(args, shard, merging, identity)
    if isinstance(previous, int):
        return previous
    plan = plan_work(audio_dir, degraded, clean, cols, sources, available, previous)
    table = plan.table
    logger.info(
        "%d pairs: %d to score, %d fully reused from %s; %d clean files to score alone",
        len(table),
        plan.computed,
        plan.reused,
        f"the {shards.SHARDS_DIR} fragments" if merging else results_dir / PAIR_METRICS_NAME,
        sum(1 for g in plan.clean_needed.values() if g),
    )
    t_score = time.perf_counter()
    if merging:  # nothing is computed: every cell comes from a shard's fragment
        n_shards = shards.fragment_shards(results_dir)[0].count
        input_failures = merge_plan(plan, previous, n_shards)
        if isinstance(input_failures, str):
            logger.error(
                "cannot merge the shards of %s: %s; rerun those shards. Nothing merged",
                results_dir,
                input_failures,
            )
            return cli.EXIT_FAILED
    else:
        input_failures = score_plan(plan, args)
    score_seconds = time.perf_counter() - t_score

    columns = cols.table_columns(available)
    if shard is not None:
        return _finish_shard(
            results_dir, shard, table, columns, value_cols, identity, input_failures, plan,
            t_start,
        )  # fmt: skip
    if study_ratings is not None:
        from perceptual_audio import listening

        for r in table:
            r.update(listening.pair_rating_cells(study_ratings, r["degraded_path"]))
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
        args, results_dir, audio_dir, table, value_cols, study_ratings
    )
    stats_seconds = time.perf_counter() - t_stats

    from perceptual_audio import stats

    cli.write_run_json(
        results_dir,
        stage=STAGE,
        args=args,
        seed=args.seed,
        params={
            "classic": cols.settings.as_dict(),
            "metrics": metrics_record(value_cols, rows),
            "metrics_version": METRICS_VERSION,
            "bootstrap": args.bootstrap,
            "confidence": stats.CONFIDENCE,
            "summary_interval": "Student t, 95%, clipped to the metric's value range",
            "correlation_interval": "percentile cluster bootstrap over clean recordings",
        },
        timings={
            "total": time.perf_counter() - t_start,
            "scoring": score_seconds,
            "statistics": stats_seconds,
        },
        extra={
            "models": _models_record(args, sources),
            "n_pairs": len(table),
            "n_pairs_not_applied": not_applied,
            "pairs_scored": plan.computed,
            "pairs_reused": plan.reused,
            "failures": failures,
            "input_failures": input_failures,
            "level_order": order,
            "listening": listening_info,
            "metric_sample_rates_hz": _metric_rates(rows, value_cols, args.pesq_nb_rate),
            "merged_shards": len(shards.fragment_shards(results_dir)) if merging else 0,
        },
    )
    if merging:
        shards.remove_fragments(results_dir)
    n_failed = sum(failures.values())
    n_input = sum(input_failures.values())
    cli.stage_summary(
        "calculate_metrics",
        t_start,
        f"wrote {results_dir}: {len(table)} pairs, {len(value_cols)} metrics, {n_failed} "
        f"failed cells ({n_input} for missing, unreadable or stale inputs); models: "
        + (", ".join(available) or "none"),
    )
    if n_input:
        return cli.EXIT_FAILED
    if len(available) < len(wanted):
        return cli.EXIT_MODELS_UNAVAILABLE
    return cli.EXIT_OK


# -- shards (perceptual_audio.shards) ----------------------------------------------------------
SHARD_COMMAND = "calculate_metrics.py ... --shard"


def _shard_identity(
    cols: ColumnPlan, available: Sequence[str], audio_dir: Path, sources: Mapping[str, Any]
) -> tuple[str, str, dict[str, Any]]:
    """What every shard of a run must share: the digest of its parameters, the digest of its
    inputs (the audio and model manifests), and the parameters in words."""
    params = shards.digest(
        {
            "columns": cols.table_columns(available),
            "settings": cols.settings.as_dict(),
            "groups": cols.group_params,
            "version": METRICS_VERSION,
        }
    )
    inputs = shards.files_digest(
        [audio_dir / "manifest.csv", *(sources[m].folder / "manifest.csv" for m in available)]
    )
    return params, inputs, {"metrics": list(cols.value_columns), **cols.settings.as_dict()}


def _earlier_results(
    args: argparse.Namespace,
    shard: shards.Shard | None,
    merging: bool,
    identity: tuple[str, str, dict[str, Any]],
) -> dict[str, dict[str, str]] | int:
    """The rows whose cells this run may reuse: the last ``pair_metrics.csv`` (and a shard's
    own earlier fragment), or in a merge the shards' fragments alone (an exit status when
    they cannot be merged)."""
    results_dir: Path = args.results_dir
    if merging:
        try:
            return _fragment_pairs(results_dir, *identity)
        except shards.ShardMergeError as e:
            logger.error("%s", e)
            return cli.EXIT_FAILED
    if shard is not None:
        shards.clear_record(results_dir, shard)  # unfinished until its record is written
    if args.force:
        return {}
    previous = read_previous_pairs(results_dir / PAIR_METRICS_NAME)
    if shard is not None:
        previous.update(read_previous_pairs(shard.fragment_dir(results_dir) / PAIR_METRICS_NAME))
    return previous


def _fragment_pairs(
    results_dir: Path, params: str, inputs: str, described: dict[str, Any]
) -> dict[str, dict[str, str]]:
    """Every finished shard's rows by degraded path (raises ShardMergeError)."""
    rows: dict[str, dict[str, str]] = {}
    for frag in shards.collect(
        results_dir,
        stage=STAGE,
        params=params,
        inputs=inputs,
        what=SHARD_COMMAND,
        described=described,
    ):
        rows.update(read_previous_pairs(frag.path(PAIR_METRICS_NAME)))
    return rows


def merge_plan(
    plan: WorkPlan, fragments: Mapping[str, dict[str, str]], n_shards: int
) -> dict[str, int] | str:
    """Fill the cells a merge's plan would compute from the shards' rows, as they are.

    After :func:`plan_work` with the fragments as the cache, a job is left only for cells a
    shard could not score (an input failure: its key is empty, and stays so) or for pairs no
    shard scored. Returns the input failures per metric as :func:`score_plan` does, or a
    message naming the pairs that no fragment holds (the merge then writes nothing).
    """
    input_failures: dict[str, int] = {}
    missing: list[tuple[str, str]] = []  # (clean file, the pair or clean file left)
    by_reference: dict[str, dict[str, str]] = {}
    for r in fragments.values():
        by_reference.setdefault(r.get("reference_path", ""), r)
    for job, i in zip(plan.jobs, plan.job_rows, strict=True):
        names = [c for g in job.groups for c in metrics.AUDIO_GROUPS[g].columns]
        if isinstance(i, str):  # a clean file's cells: every pair of that file carries them
            prev = by_reference.get(i)
            target, item = plan.clean_cells.setdefault(i, {}), (i, i)
            rows = [out for out in plan.table if out["reference_path"] == i]
        else:
            names += [n for mj in job.models for n in model_metric_names(mj.model)]
            target = plan.table[i]
            prev, rows = fragments.get(target["degraded_path"]), [target]
            item = (target["reference_path"], target["degraded_path"])
        # A shard's cell with a key would have been reused: a job left for it means the
        # fragment is stale; only a cell it failed to score (empty key) is taken as it is.
        if prev is None or any(n not in prev or prev.get(key_column(n), "") != "" for n in names):
            missing.append(item)
            continue
        for n in names:
            target[n], target[f"{n}_status"] = _parse_value(prev[n]), prev[f"{n}_status"]
            for out in rows:
                input_failures[n] = input_failures.get(n, 0) + 1
                out[key_column(n)] = ""
    if missing:
        named = shards.name_by_shard(missing, n_shards)
        return f"{len(missing)} pairs are in no shard's fragment or changed since ({named})"
    for out in plan.table:
        out.update(plan.clean_cells.get(out["reference_path"], {}))
    return input_failures


def _finish_shard(
    results_dir: Path,
    shard: shards.Shard,
    table: list[dict[str, Any]],
    columns: list[str],
    value_cols: list[str],
    run: tuple[str, str, dict[str, Any]],
    input_failures: Mapping[str, int],
    plan: WorkPlan,
    t_start: float,
) -> int:
    """Write shard ``shard``'s rows to its fragment, then its record; no statistics.
    ``run``: this run's parameter digest, input digest and parameters in words."""
    params, inputs, described = run
    fragment = shard.fragment_dir(results_dir)
    write_pair_table(fragment / PAIR_METRICS_NAME, table, columns, value_cols)
    shards.write_record(
        results_dir,
        shard,
        stage=STAGE,
        params=params,
        inputs=inputs,
        described=described,
        extra={
            "pairs": len(table),
            "pairs_scored": plan.computed,
            "pairs_reused": plan.reused,
            "input_failures": dict(input_failures),
        },
    )
    cli.stage_summary(
        "calculate_metrics",
        t_start,
        f"shard {shard}: {len(table)} pairs -> {fragment}; run calculate_metrics.py without "
        "--shard to merge the shards and compute the statistics",
    )
    return cli.EXIT_FAILED if sum(input_failures.values()) else cli.EXIT_OK


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


# -- listening tests (perceptual_audio.listening does the work) ------------------------------
LISTENING_FAMILY = "listening_test"  # = listening.LISTENING_FAMILY (workers need no import)


def _level_order(frame: Any, audio_dir: Path) -> dict[str, list[str]]:
    """Each family's levels, mildest first, as stage 2 recorded them; a listening test's
    conditions (no severity) and levels stage 2 did not record in name order, with a warning
    for the latter."""
    from perceptual_audio import stats
    from perceptual_audio.manifest import read_level_order

    present = {f: g["level"] for f, g in frame.groupby("family")}
    recorded = read_level_order(audio_dir)
    unrecorded = {
        f: sorted(set(levels) - set(recorded.get(f, ())))
        for f, levels in present.items()
        if f != LISTENING_FAMILY
    }
    for family, levels in unrecorded.items():
        if levels:
            logger.warning(
                "%s records no severity order for %s levels %s; they are ordered by name "
                "(rerun extract_embeddings.py to record it)",
                audio_dir / "degraded" / "run.json",
                family,
                ", ".join(levels),
            )
    return stats.level_order(present, recorded)


def _load_ratings(args: argparse.Namespace, audio_dir: Path, rows: list) -> tuple[Any, str | None]:
    """(ratings or None, problem or None): ``--ratings``, else stage 1's ``ratings.csv``."""
    from perceptual_audio import listening

    try:
        ratings = listening.load_study_ratings(
            audio_dir,
            rows,
            ratings_path=args.ratings,
            scale=args.rating_scale,
            include_reference=args.include_reference,
        )
    except PerceptualAudioError as e:
        return None, str(e)
    return ratings, None


def _write_listener_agreement(
    args: argparse.Namespace,
    results_dir: Path,
    table: list[dict[str, Any]],
    value_cols: list[str],
    ratings: Any,
) -> dict[str, Any] | None:
    """Write (or, without ratings, remove a stale) ``listener_agreement.csv``."""
    import pandas as pd

    from perceptual_audio import listening

    path = results_dir / listening.AGREEMENT_NAME
    if ratings is None:
        if path.exists():
            path.unlink()
            logger.info("removed %s (this study has no ratings)", path)
        return None
    cols = [*LEADING_COLUMNS, *value_cols, *listening.PAIR_RATING_COLUMNS]
    frame = pd.DataFrame({c: [r.get(c) for r in table] for c in cols})
    for c in (*value_cols, "rating_mean"):
        frame[c] = frame[c].astype(float)
    agreement = listening.agreement_table(
        frame,
        metrics.analysed_metrics(value_cols),  # the clean file's own scores are context
        ratings,
        include_reference=args.include_reference,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
    )
    write_text_if_changed(path, agreement.to_csv(index=False, lineterminator="\n"))
    rated = frame[frame["rating_mean"].notna()]
    return {
        "ratings": ratings.source,
        "rated_files": int(len(rated)),
        "hidden_reference_files": int((rated["hidden_reference"] == "true").sum()),
        "include_reference": bool(args.include_reference),
        "ratings_n": int(sum(len(v) for v in ratings.per_file.values())),
        "listeners_named": ratings.has_listeners,
        "rating_scale": list(args.rating_scale),
        "mapping": "ITU-T P.1401 third-order polynomial, least squares, monotonic on the "
        "observed metric range (SLSQP slope constraints); RMSE divides by N - 4",
        "ceiling": f"split-half listener correlation, Spearman-Brown corrected, mean of "
        f"{listening.CEILING_SPLITS} random splits",
        "interval": "percentile bootstrap over stimuli (references), 95%",
    }


def _metric_rates(rows: list, value_cols: list[str], pesq_nb_rate: int) -> dict[str, Any]:
    """Rate (Hz) each metric computed at, from the study's rate (for the report)."""
    from perceptual_audio import listening

    rates = sorted({int(r.sample_rate) for r in rows})
    study = rates[0] if rates else 16000
    return {
        "study_sample_rates_hz": rates,
        "metrics": {
            c: listening.metric_rate_hz(c, study, pesq_nb_rate=pesq_nb_rate) for c in value_cols
        },
    }


def _reuse(
    prev: dict[str, str], key_column: str, key: str, names: Sequence[str], out: dict[str, Any]
) -> bool:
    """Copy cached cells into ``out`` when the previous row has the same key and all cells."""
    if not prev or not key or prev.get(key_column) != key:
        return False
    if any(n not in prev or f"{n}_status" not in prev for n in names):
        return False
    for n in names:
        out[n] = _parse_value(prev[n])
        out[f"{n}_status"] = prev[f"{n}_status"]
    return True
