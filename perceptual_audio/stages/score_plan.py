"""Stage 3's plan: which cells a run writes (:class:`ColumnPlan`), which it reuses from
earlier results by their cache keys and which it computes (:func:`plan_work`), running the
jobs (:func:`score_plan`) or, in a merge, taking the shards' cells (:func:`merge_plan`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perceptual_audio import metrics
from perceptual_audio.embedding_manifest import (
    ModelSource,
    extra_path,
    locate_embedding,
)
from perceptual_audio.files import params_digest, sha256_file
from perceptual_audio.results import (
    LEADING_COLUMNS,
    PAIR_INFO_COLUMNS,
)
from perceptual_audio.stages import shards, work
from perceptual_audio.stages.score_settings import ScoreSettings
from perceptual_audio.stages.scoring import (
    ModelJob,
    PairJob,
    PairScores,
    job_columns,
    job_seconds,
    key_column,
    metric_columns,
    model_metric_names,
    score_crashed,
    score_pair,
    single_threaded_blas,
)

logger = logging.getLogger(__name__)

#: The stage's name in run.json, locks and shard records.
STAGE = "calculate_metrics"
#: Bumped when the computation of a cell changes, invalidating cached cells.
METRICS_VERSION = 1


def _parse_value(text: str) -> float:
    return float(text) if text not in ("", None) else math.nan


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
        cls, settings: ScoreSettings, available: Sequence[str], selected: Sequence[str]
    ) -> ColumnPlan:
        settings = metrics.MetricSettings(
            pesq_nb_sample_rate=settings.pesq_nb_rate,
            visqol_speech_model=settings.visqol_speech_model,
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
        need_groups = _pair_groups(cols, ref_rel, ref_sha, deg_sha, prev, out)
        _clean_groups(plan, cols, ref_rel, ref_sha, prev, out)
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
                    tuple(metrics.AUDIO_GROUPS[g] for g in need_groups),
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
        groups_of = tuple(metrics.AUDIO_GROUPS[g] for g in groups)
        plan.jobs.insert(0, PairJob(str(ref_path), None, problem, cols.settings, groups_of))
        plan.job_rows.insert(0, ref_rel)
    return plan


def _pair_groups(
    cols: ColumnPlan,
    ref_rel: str,
    ref_sha: str,
    deg_sha: str,
    prev: dict[str, str],
    out: dict[str, Any],
) -> list[str]:
    """The pair's audio groups to compute; the others' cells are copied from ``prev``."""
    need = []
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
            need.append(g)
    return need


def _clean_groups(
    plan: WorkPlan,
    cols: ColumnPlan,
    ref_rel: str,
    ref_sha: str,
    prev: dict[str, str],
    out: dict[str, Any],
) -> None:
    """Note the clean file's groups (DNSMOS of the reference) still to compute, once per clean
    file; reused cells go to ``plan.clean_cells``."""
    for g in cols.clean_groups:
        key = params_digest(
            {"v": METRICS_VERSION, "group": g, "ref": ref_sha, "settings": cols.group_params[g]}
        )
        out[f"{g}_key"] = key
        group_cols = metrics.AUDIO_GROUPS[g].columns
        done = plan.clean_cells.setdefault(ref_rel, {})
        if all(c in done for c in group_cols) or _reuse(prev, f"{g}_key", key, group_cols, done):
            continue
        if g not in plan.clean_needed.setdefault(ref_rel, []):
            plan.clean_needed[ref_rel].append(g)


def score_plan(plan: WorkPlan, settings: ScoreSettings) -> dict[str, int]:
    """Run the plan's jobs and fill its table in; returns the input failures per metric."""
    with single_threaded_blas():  # for the in-process (--workers 1) path; workers do it too
        outcomes = work.parallel_map(
            score_pair,
            plan.jobs,
            workers=settings.workers,
            desc="pairs",
            quiet=settings.quiet,
            unit=work.AUDIO_SECONDS,
            weights=[job_seconds(j) for j in plan.jobs],
            isolate=True,  # a native crash (PESQ, ViSQOL, ONNX) fails only its metric
            threads=1,  # parallel work comes from the workers: equal cells for any --workers
        )
    input_failures: dict[str, int] = {}
    clean_failed: dict[str, frozenset[str]] = {}
    table = plan.table
    for job, i, oc in zip(plan.jobs, plan.job_rows, outcomes, strict=True):
        if oc.ok:
            scores: PairScores = oc.value
        elif oc.crashed:
            scores = score_crashed(job, oc)
        else:  # the job itself failed: every requested cell carries the reason
            names = job_columns(job)
            reason = metrics.one_line(oc.error or "failed")
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
        names = [c for g in job.groups for c in g.columns]
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
