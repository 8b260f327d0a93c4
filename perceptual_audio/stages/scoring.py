"""Stage 3's workers: the cells of one pair (or of one clean file), computed in a worker
process from a picklable :class:`PairJob` (:func:`score_pair`).

:mod:`perceptual_audio.stages.score` plans the jobs, runs them with
:func:`perceptual_audio.stages.work.parallel_map` (isolated: a native crash fails only its
job) and writes the tables; this module is what each worker imports (no pandas).
:func:`score_crashed` splits a job whose process died into one job per metric group and per
model, each in a process of its own, so only the metric that crashed loses its cells.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from perceptual_audio import metrics
from perceptual_audio.audio_io import audio_info, load_audio
from perceptual_audio.errors import PerceptualAudioError
from perceptual_audio.metrics.reference import limit_threads
from perceptual_audio.stages.work import Outcome, run_isolated

logger = logging.getLogger(__name__)


# -- work items -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelJob:
    """One model's cells of one pair: files to compare, or the problem that prevents it."""

    model: str
    reference: str
    degraded: str
    problem: str | None = None
    #: The stored extra arrays the model's extra metrics read (CDPAM's clip embedding), in
    #: :func:`metrics.model_extras` order; None: compute them from the audio.
    reference_extras: tuple[str, ...] | None = None
    degraded_extras: tuple[str, ...] | None = None


@dataclass(frozen=True)
class PairJob:
    """Everything a worker needs to score one pair (picklable).

    ``groups`` are the :class:`metrics.MetricGroup` s to compute on the pair's audio (the
    objects themselves: a worker computes what the stage planned, not what its own catalogue
    holds); for a clean-file job (``degraded`` is None) the :data:`metrics.ROLE_CLEAN` groups,
    computed on the reference alone, once per clean file.
    """

    reference: str
    degraded: str | None
    reference_problem: str | None
    settings: metrics.MetricSettings
    groups: tuple[metrics.MetricGroup, ...] = ()
    models: tuple[ModelJob, ...] = ()


def metric_columns(models: Sequence[str], selected: Sequence[str] | None = None) -> list[str]:
    """Value columns for the available ``models`` (and the ``--metrics`` selection), in
    table order (the metric catalogue's)."""
    return metrics.metric_columns(models, selected)


def model_metric_names(model: str) -> list[str]:
    return list(metrics.model_metric_names(model))


def key_column(name: str) -> str:
    """The cache-key column of a metric column: ``<group>_key``."""
    return f"{metrics.describe(name).group or name}_key"


def _failed(names: Sequence[str], reason: str) -> dict[str, metrics.Measurement]:
    return {n: metrics.Measurement(math.nan, metrics.one_line(reason)) for n in names}


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit BLAS (OpenBLAS/MKL) to one thread inside the block.

    The metrics work on arrays of a few thousand values, where BLAS threads only add
    hand-over cost, and on a busy machine a lot of it: measured here under load, SI-SDR of
    10 s took 30 ms with 2 OpenBLAS threads and 0.5 ms with one, STOI 250-1000 ms vs 85 ms.
    Parallelism comes from worker processes instead. No-op when threadpoolctl is absent.
    """
    try:
        # optional package: absent, BLAS threads stay as they are
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


_WORKER_LIMITED = False


def _limit_worker_blas() -> None:
    """In a worker process, once: BLAS to one thread for the life of the process."""
    global _WORKER_LIMITED
    if _WORKER_LIMITED or multiprocessing.parent_process() is None:
        return
    _WORKER_LIMITED = True
    limit_threads()
    try:
        # optional package: absent, BLAS threads stay as they are
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=1, user_api="blas")


@dataclass(frozen=True)
class PairScores:
    """A worker's answer: ``cells`` (metric -> (value, status)) and ``input_failed``, the
    metrics that failed because an input was missing, unreadable or stale (as opposed to a
    measurement that is undefined for this audio, such as PESQ on music without speech)."""

    cells: dict[str, tuple[float, str]]
    input_failed: frozenset[str] = frozenset()


def score_pair(job: PairJob) -> PairScores:
    """Compute the requested cells of one pair, or of one clean file (runs in a worker)."""
    _limit_worker_blas()
    if job.degraded is None:
        return _score_clean(job)

    out: dict[str, metrics.Measurement] = {}
    input_failed: set[str] = set()

    def failed(names: Sequence[str], reason: str) -> dict[str, metrics.Measurement]:
        input_failed.update(names)
        return _failed(names, reason)

    audio: tuple[np.ndarray, np.ndarray, int] | None = None
    audio_problem = job.reference_problem
    needs_audio = bool(job.groups) or any(
        metrics.model_extras(mj.model) and mj.reference_extras is None for mj in job.models
    )
    if audio_problem is None and needs_audio:
        try:
            ref, sr_ref = load_audio(job.reference)
            deg, sr_deg = load_audio(job.degraded)
            if sr_ref != sr_deg:
                audio_problem = f"sample rates differ: reference {sr_ref} Hz, degraded {sr_deg} Hz"
            else:
                audio = (ref, deg, sr_ref)
        except PerceptualAudioError as e:
            audio_problem = str(e)
    for group in job.groups:
        if audio is None:
            out.update(failed(group.columns, audio_problem or "no audio"))
        else:
            out.update(group.compute(*audio, job.settings))
    for mj in job.models:
        names = model_metric_names(mj.model)
        if mj.problem is not None:
            out.update(failed(names, mj.problem))
            continue
        try:
            e_ref = np.load(mj.reference, allow_pickle=False)
            e_deg = np.load(mj.degraded, allow_pickle=False)
        except (OSError, ValueError) as e:
            out.update(failed(names, f"cannot read {mj.model} embedding: {e}"))
            continue
        out.update(metrics.embedding_metrics(mj.model, e_ref, e_deg))
        if metrics.extra_metrics(mj.model):
            cells, is_input = _extra_cells(mj, audio, audio_problem)
            out.update(cells)
            if is_input:
                input_failed.update(cells)
    return PairScores({k: (v.value, v.status) for k, v in out.items()}, frozenset(input_failed))


def _score_clean(job: PairJob) -> PairScores:
    """The clean-file groups (DNSMOS of the reference) of one clean file."""
    out: dict[str, metrics.Measurement] = {}
    problem = job.reference_problem
    audio = None
    if problem is None:
        try:
            audio = load_audio(job.reference)
        except PerceptualAudioError as e:
            problem = str(e)
    failed: set[str] = set()
    for group in job.groups:
        if audio is None:
            out.update(_failed(group.columns, problem or "no audio"))
            failed.update(group.columns)
        else:
            out.update(group.compute(audio[0], None, audio[1], job.settings))
    return PairScores({k: (v.value, v.status) for k, v in out.items()}, frozenset(failed))


def _extra_cells(
    mj: ModelJob, audio: tuple[np.ndarray, np.ndarray, int] | None, audio_problem: str | None
) -> tuple[dict[str, metrics.Measurement], bool]:
    """A model's extra metrics of one pair (CDPAM's distance), and whether a failure is an
    input failure. The extra arrays come from stage 2's files, else from the audio."""
    names = [e.name for e in metrics.extra_metrics(mj.model)]
    keys = metrics.model_extras(mj.model)
    display = metrics.model_display_name(mj.model)

    def all_failed(status: str) -> dict[str, metrics.Measurement]:
        return {n: metrics.Measurement(math.nan, status) for n in names}

    if mj.reference_extras is not None and mj.degraded_extras is not None:
        try:
            ref = {
                k: np.load(p, allow_pickle=False)
                for k, p in zip(keys, mj.reference_extras, strict=True)
            }
            deg = {
                k: np.load(p, allow_pickle=False)
                for k, p in zip(keys, mj.degraded_extras, strict=True)
            }
        except (OSError, ValueError) as e:
            return all_failed(f"cannot read {display} {'/'.join(keys)} embedding: {e}"), True
    else:  # no stored extras: the model on the audio (slow; the reference is cached per worker)
        if audio is None:
            return all_failed(metrics.one_line(audio_problem or "no audio")), True
        y_ref, y_deg, sr = audio
        try:
            ref = _cached_extras(mj.model, mj.reference, y_ref, sr)
            deg = metrics.extras_from_audio(mj.model, y_deg, sr)
        except Exception as e:  # model missing or failing: these cells only
            return all_failed(metrics.one_line(f"{display}: {type(e).__name__}: {e}")), True
    cells = {n: metrics.measure(metrics.extra_metric_value, mj.model, n, ref, deg) for n in names}
    return cells, False


_EXTRAS_CACHE: dict[tuple[str, str, int], dict[str, np.ndarray]] = {}


def _cached_extras(model: str, path: str, y: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    key = (model, path, hash(y.tobytes()))
    if key not in _EXTRAS_CACHE:
        if len(_EXTRAS_CACHE) > 32:
            _EXTRAS_CACHE.clear()
        _EXTRAS_CACHE[key] = metrics.extras_from_audio(model, y, sr)
    return _EXTRAS_CACHE[key]


def job_seconds(job: PairJob) -> float:
    """Seconds of audio a job scores (its progress weight): the reference's duration, 1 when
    it cannot be read (the job then fails fast anyway)."""
    try:
        return max(float(audio_info(job.reference).duration), 1e-3)
    except (PerceptualAudioError, OSError):
        return 1.0


def job_columns(job: PairJob) -> list[str]:
    """Every cell a job fills."""
    names = [c for g in job.groups for c in g.columns]
    for mj in job.models:
        names += model_metric_names(mj.model)
    return names


def _crash_reason(outcome: Outcome, what: str, job: PairJob) -> str:
    seconds = job_seconds(job)
    return metrics.one_line(
        f"crashed: {what} killed its worker process ({outcome.error}) on this "
        f"{seconds:.1f} s pair; native code failed on input it cannot handle (length, level, "
        "rate); the pair's other metrics were computed"
    )


def score_crashed(job: PairJob, outcome: Outcome) -> PairScores:
    """A job whose process died: each metric group and each model again, one per process,
    so that only the cells of what crashed carry the crash (named, with its likely cause)."""
    logger.warning(
        "%s: a metric crashed its worker; scoring each metric of this pair on its own",
        job.degraded or job.reference,
    )
    parts = [
        (
            "/".join(metrics.describe(c).label for c in g.columns),
            replace(job, groups=(g,), models=()),
        )
        for g in job.groups
    ]
    parts += [
        (metrics.model_display_name(mj.model), replace(job, groups=(), models=(mj,)))
        for mj in job.models
    ]
    cells: dict[str, tuple[float, str]] = {}
    failed: set[str] = set()
    for what, part in parts:
        oc = run_isolated(score_pair, part)
        if oc.ok:
            cells.update(oc.value.cells)
            failed |= oc.value.input_failed
            continue
        reason = _crash_reason(oc, what, job) if oc.crashed else metrics.one_line(oc.error or "")
        cells.update({c: (math.nan, reason) for c in job_columns(part)})
        failed.update(job_columns(part))  # a crash fails the run (exit 1); a rerun retries it
    return PairScores(cells, frozenset(failed))
