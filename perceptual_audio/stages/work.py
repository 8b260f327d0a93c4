"""Running a stage's items: progress that counts the work, worker processes, crash isolation.

Every stage runs its items through :func:`parallel_map`; long loops show :func:`progress`.

**Progress counts the work, not the files.** Items can carry a weight (the seconds of audio
they process): the bar, its rate and its ETA are then in seconds of audio, so a study of two
5-minute recordings does not sit at ``0/2 files, ETA unknown`` for five minutes once one
shorter item is done. Without weights each item counts 1 (``unit``).

**A crash stays in its item.** Native code (PESQ's C library, ViSQOL's libsvm, ONNX Runtime)
can kill the process it runs in. With ``isolate=True`` the items run in worker processes even
with one worker (spawned; it registers the models this process knows), so a crash never
takes the stage down. When a pool breaks, the items that were running are
retried one per fresh process, which names the one that crashes (``Outcome.crashed``); the
items not yet started go on in a new pool. The stage then decides what a crashed item means
(stage 3 splits it into its metrics, so only the metric that crashed loses its cell).
"""

from __future__ import annotations

import concurrent.futures as cf
import faulthandler
import logging
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from perceptual_audio.errors import PerceptualAudioError

logger = logging.getLogger(__name__)

#: Seconds between two progress lines when stderr is not a terminal (CI logs, nohup, Slurm).
PROGRESS_INTERVAL_S = 30.0
#: The unit of weighted progress.
AUDIO_SECONDS = "audio-second"


def default_workers() -> int:
    """Number of usable cores (the default of ``--workers``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def format_duration(seconds: float) -> str:
    """``4.2 s``, ``3m05s``, ``1h02m``: a wall time or an ETA for people."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def _amount(x: float) -> str:
    return f"{x:.0f}" if float(x).is_integer() or x >= 100 else f"{x:.1f}"


def progress_line(
    desc: str, done: float, total: float | None, elapsed: float, unit: str = "file"
) -> str:
    """``cdpam: 12/60 files (20%), 0.35 files/s, ETA 2m17s`` (the log form of a progress bar);
    with weighted items ``cdpam: 95/600 audio-seconds (16%), 0.42 audio-seconds/s, ETA 20m02s``."""
    rate = done / elapsed if elapsed > 0 else 0.0
    units = unit if done == 1 and not total else unit + "s"
    head = f"{desc or 'progress'}: {_amount(done)}"
    if total:
        head += f"/{_amount(total)} {units} ({100 * done / total:.0f}%)"
    else:
        head += f" {units}"
    rate_text = f"{rate:.2f} {unit}s/s" if rate >= 0.01 or done else f"no {unit} done yet"
    if total and rate > 0:
        eta = f"ETA {format_duration((total - done) / rate)}"
    elif total:
        eta = "ETA unknown"
    else:
        eta = f"elapsed {format_duration(elapsed)}"
    return f"{head}, {rate_text}, {eta}"


class Progress:
    """Progress over a known amount of work, advanced by :meth:`advance`: a tqdm bar on a
    terminal, a :func:`progress_line` every ``interval`` seconds in logs (from a timer thread,
    so one slow item still gets its line), nothing when quiet."""

    def __init__(
        self,
        total: float | None,
        *,
        desc: str = "",
        unit: str = "file",
        quiet: bool = False,
        interval: float | None = None,
    ):
        self.total, self.desc, self.unit = total, desc, unit
        self.done = 0.0
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._bar = None
        self._timer: threading.Thread | None = None
        if quiet:
            return
        if sys.stderr.isatty():
            from tqdm import tqdm  # deferred: only a terminal needs it

            self._bar = tqdm(
                total=total,
                desc=desc,
                unit=unit,
                leave=False,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]",
            )
        else:
            wait = PROGRESS_INTERVAL_S if interval is None else interval
            self._timer = threading.Thread(target=self._report, args=(wait,), daemon=True)
            self._timer.start()

    def line(self) -> str:
        return progress_line(
            self.desc, self.done, self.total, time.perf_counter() - self._t0, self.unit
        )

    def _report(self, interval: float) -> None:
        while not self._stop.wait(interval):
            logging.getLogger("perceptual_audio.progress").info("%s", self.line())

    def advance(self, amount: float = 1.0) -> None:
        self.done += amount
        if self._bar is not None:
            self._bar.update(amount)

    def close(self) -> None:
        self._stop.set()
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(
    iterable: Iterable,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "file",
    quiet: bool = False,
    weights: Sequence[float] | None = None,
) -> Iterator:
    """Iterate ``iterable`` with a :class:`Progress`; each item advances it by its weight
    (``weights[i]``, e.g. its seconds of audio) or by 1."""
    if weights is not None:
        total = float(sum(weights))
    elif total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(total, desc=desc, unit=unit, quiet=quiet) as bar:
        for i, item in enumerate(iterable):
            yield item
            bar.advance(weights[i] if weights is not None else 1.0)


# -- outcomes ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """Result of one work item: ``value`` on success, else ``error`` (one line); ``crashed``
    when the process running it died (a native crash, named by ``error``)."""

    item: Any
    value: Any = None
    error: str | None = None
    seconds: float = 0.0
    crashed: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def run_one(func: Callable[[Any], Any], item: Any) -> Outcome:
    """``func(item)`` as an :class:`Outcome`: an exception becomes the item's error."""
    t0 = time.perf_counter()
    try:
        value = func(item)
    except PerceptualAudioError as e:
        return Outcome(item, error=str(e), seconds=time.perf_counter() - t0)
    except Exception as e:  # one bad item never stops the others
        return Outcome(item, error=f"{type(e).__name__}: {e}", seconds=time.perf_counter() - t0)
    return Outcome(item, value=value, seconds=time.perf_counter() - t0)


def signal_name(exitcode: int | None) -> str:
    """``SIGSEGV`` for a process killed by signal 11; ``exit status N`` otherwise."""
    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit status {exitcode}"


# -- worker processes ---------------------------------------------------------------------------
_STARTED: Any = None  # the queue a worker reports the items it starts on


def _quiet_crashes() -> None:
    # The stage reports a worker's crash in one line; pytest's or -X faulthandler's traceback
    # dump of the dying worker would only repeat it at length.
    if faulthandler.is_enabled():
        faulthandler.disable()


def _init_worker(threads: int, started: Any, models: tuple[Any, ...] = ()) -> None:
    global _STARTED
    _STARTED = started
    _quiet_crashes()
    _register(models)
    # Ctrl-C reaches the whole process group: the parent alone handles it (one message, no
    # traceback per worker); a worker finishes its item and is then shut down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Each process gets its share of the cores: no oversubscription with BLAS/torch threads.
    # Set before torch/BLAS are imported in the worker (importing torch here would cost every
    # worker a second or two even when its work never touches torch).
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _models() -> tuple[Any, ...]:
    """The model classes this process has registered (a worker registers them too: a model a
    test or a plugin registered at run time is known there)."""
    base = sys.modules.get("perceptual_audio.embeddings.base")
    if base is None:
        return ()  # nothing imported the models: the worker needs none
    # The package's own models register themselves when the worker imports them.
    return tuple(
        c for c in base.registered_classes() if not c.__module__.startswith("perceptual_audio.")
    )


def _register(models: tuple[Any, ...]) -> None:
    if models:
        # Deferred: the registry imports torch, which a worker without models never needs.
        from perceptual_audio.embeddings.base import register_missing

        register_missing(models)


def _run_tracked(func: Callable[[Any], Any], item: Any, index: int) -> Outcome:
    if _STARTED is not None:
        _STARTED.put(index)
    return run_one(func, item)


def _context() -> multiprocessing.context.BaseContext:
    # Spawned, never forked: a fork of a process that has used OpenMP (torch, ViSQOL's
    # libraries) aborts in the child ("fork() called from a process already using GNU
    # OpenMP"). A worker gets what it needs through its item and the registered models.
    return multiprocessing.get_context("spawn")


def _isolated_child(
    func: Callable[[Any], Any], item: Any, conn: Any, models: tuple[Any, ...] = ()
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _quiet_crashes()
    _register(models)
    conn.send(run_one(func, item))
    conn.close()


def run_isolated(func: Callable[[Any], Any], item: Any) -> Outcome:
    """``func(item)`` in a process of its own: a crash of that process becomes an
    :class:`Outcome` with ``crashed=True`` and the signal in ``error``."""
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    t0 = time.perf_counter()
    proc = ctx.Process(target=_isolated_child, args=(func, item, send, _models()), daemon=True)
    proc.start()
    send.close()
    try:
        outcome: Outcome | None = receive.recv()
    except EOFError:
        outcome = None
    proc.join()
    if outcome is not None:
        return outcome
    return Outcome(
        item,
        error=f"the worker process died ({signal_name(proc.exitcode)})",
        seconds=time.perf_counter() - t0,
        crashed=True,
    )


def parallel_map(
    func: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    workers: int = 1,
    desc: str = "",
    quiet: bool = False,
    unit: str = "file",
    weights: Sequence[float] | None = None,
    isolate: bool = False,
    threads: int | None = None,
) -> list[Outcome]:
    """Apply ``func`` to every item, in ``workers`` processes, keeping the order of ``items``.

    ``func`` must be a module-level function (it is pickled). An exception on an item becomes
    that item's :class:`Outcome` ``error``; the other items go on. ``weights`` (one per item,
    e.g. seconds of audio) make the progress count work instead of items. With
    ``workers == 1`` and not ``isolate`` the work runs in this process (no pickling; easier
    debugging); with ``isolate`` a native crash fails only the item that crashed.
    ``threads``: each worker's OpenMP/BLAS threads (default: its share of the cores); 1 makes
    results independent of the number of workers (the order of parallel sums).
    """
    items = list(items)
    w = list(weights) if weights is not None else [1.0] * len(items)
    if not isolate and (workers <= 1 or len(items) <= 1):
        return [
            run_one(func, it)
            for it in progress(items, desc=desc, unit=unit, quiet=quiet, weights=w)
        ]
    results: list[Outcome | None] = [None] * len(items)
    with Progress(sum(w), desc=desc, unit=unit, quiet=quiet) as bar:
        todo = list(range(len(items)))
        while todo:
            suspects = _pool_round(func, items, todo, results, bar, w, workers, threads)
            for i in suspects:  # running when the pool broke: one per process names the crash
                results[i] = run_isolated(func, items[i])
                bar.advance(w[i])
            todo = [i for i in todo if results[i] is None]
    return [r for r in results if r is not None]


def _pool_round(
    func: Callable[[Any], Any],
    items: list[Any],
    todo: list[int],
    results: list[Outcome | None],
    bar: Progress,
    weights: list[float],
    workers: int,
    threads: int | None = None,
) -> list[int]:
    """Run ``todo`` in one pool; fill ``results``. Returns the items that were running when
    the pool broke (a worker died), [] when it did not break."""
    n = max(1, min(workers, len(todo)))
    threads = threads or max(1, default_workers() // n)
    ctx = _context()
    started = ctx.Queue()
    broken = False
    pool = cf.ProcessPoolExecutor(
        max_workers=n,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(threads, started, _models()),
    )
    try:
        futures = {pool.submit(_run_tracked, func, items[i], i): i for i in todo}
        for fut in cf.as_completed(futures):
            i = futures[fut]
            try:
                results[i] = fut.result()
            except cf.process.BrokenProcessPool:
                broken = True
                continue
            bar.advance(weights[i])
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    if not broken:
        return []
    began = set()
    while True:
        try:
            began.add(started.get(timeout=0.1))
        except Exception:  # queue.Empty: every start was reported before the pool broke
            break
    unfinished = [i for i in todo if results[i] is None]
    # Every start is reported before the item runs; should none have arrived, all unfinished
    # items are suspects (slower, but each still gets its own process and its answer).
    suspects = [i for i in unfinished if i in began] or unfinished
    logger.warning(
        "%s: a worker process died; retrying the %d item(s) it was running one per process",
        "work",
        len(suspects),
    )
    return suspects
