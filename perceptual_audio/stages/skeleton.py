"""The one skeleton every stage runs: check, claim, read, plan, work, commit, summarise.

A stage (and each half of stage 2) subclasses :class:`StageRun` and says only what is its
own: how it checks its options and inputs, which folder it claims, what it reads, which items
it plans, how one item is done (a module-level function, so worker processes can run it), what
a finished item adds, which tables it writes and what its closing line says. :func:`run_stage`
runs the phases in one order for all of them::

    check()      options and inputs that need no lock (nothing written)
    claim()      the output folder checked and locked (cli.claim_output_folder)
    read()       earlier results and inputs, through their owners
    plan()       self.todo: the items to do; what is up to date is kept as it is
    work()       the items in parallel with progress (work.parallel_map), crashes isolated
    collect()    each outcome into the run's rows and failures
    finish_shard() with --shard K/N: the shard's fragment and record, then stop
    commit()     the tables, atomically, and run.json
    summary()    the closing line (cli.stage_summary), then exit_status()

A phase returns None to go on or an exit status to stop there (a refusal: nothing written).
Locks, reruns, shards and Ctrl-C keep their meaning: locks are released by
:func:`cli.stage_entry`, items are written atomically as they finish, and an interrupt leaves
what finished in place.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from perceptual_audio.stages import cli, work

__all__ = ["StageRun", "run_stage"]

S = TypeVar("S", bound=cli.StageSettings)


@dataclass
class StageRun(Generic[S]):
    """One run of a stage: its settings, its plan and what it did.

    Subclasses set :attr:`stage` (the closing line's name) and :attr:`desc` (the progress
    label), and override the phases they need; every phase has a do-nothing default.

    Attributes
    ----------
    settings : StageSettings
        The stage's frozen settings.
    todo : list
        The items :meth:`work` does (filled by :meth:`plan`).
    outcomes : list of work.Outcome
        One per item of ``todo``, in order (filled by :meth:`work`).
    failures : list of (str, str)
        What failed and why (an input, an item, a table), for run.json and the exit status.
    t0 : float
        When the run started (``time.perf_counter``).
    """

    settings: S
    todo: list[Any] = field(default_factory=list)
    outcomes: list[work.Outcome] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    t0: float = field(default_factory=time.perf_counter)

    #: The stage's name in its closing line (``audio_conversion: finished in ...``).
    stage: ClassVar[str] = ""
    #: The progress label of :meth:`work`.
    desc: ClassVar[str] = "items"
    #: Run the items in worker processes even with one worker (native code that may crash).
    isolate: ClassVar[bool] = False
    #: Threads per worker process (None: the library default).
    worker_threads: ClassVar[int | None] = None

    # -- the phases (override what the stage needs) -------------------------------------------
    def check(self) -> int | None:
        """Options and inputs that need no lock; None to go on."""
        return None

    def claim(self) -> int | None:
        """Check and lock the output folder; None to go on."""
        return None

    def read(self) -> int | None:
        """Earlier results and inputs, through their owners; None to go on."""
        return None

    def plan(self) -> int | None:
        """Fill :attr:`todo`; keep what is up to date. None to go on."""
        return None

    #: How one item is done: a module-level function of the item (picklable).
    do_item: ClassVar[Callable[[Any], Any] | None] = None

    def weights(self) -> Sequence[float] | None:
        """Each item's share of the work (audio-seconds), or None to count items."""
        return None

    def work(self) -> list[work.Outcome]:
        """Do :attr:`todo` in parallel with progress; one outcome per item."""
        if not self.todo:
            return []
        assert type(self).do_item is not None, f"{type(self).__name__} sets no do_item"
        weights = self.weights()
        return work.parallel_map(
            type(self).do_item,
            self.todo,
            workers=self.settings.workers,
            desc=self.desc,
            quiet=self.settings.quiet,
            weights=weights,
            unit=work.AUDIO_SECONDS if weights is not None else "file",
            isolate=self.isolate,
            threads=self.worker_threads,
        )

    def collect(self, outcomes: list[work.Outcome]) -> None:
        """Take each outcome into the run (rows, failures)."""

    @property
    def shard(self) -> Any:
        """The shard this run does (``--shard K/N``), or None."""
        return getattr(self.settings, "shard", None)

    def finish_shard(self) -> int:
        """A shard's fragment and record; its exit status."""
        raise NotImplementedError(f"{type(self).__name__} cannot run as a shard")

    def commit(self) -> int | None:
        """Write the tables (atomically) and run.json; None to go on to the summary."""
        return None

    def summary(self) -> str | None:
        """The closing line's text (None: no closing line, e.g. half of stage 2)."""
        return None

    def exit_status(self) -> int:
        """0, or 1 when anything failed (stages add their own cases)."""
        return cli.EXIT_FAILED if self.failures else cli.EXIT_OK

    # -- what every stage can ask ---------------------------------------------------------------
    @property
    def written(self) -> int:
        """Items done successfully by this run."""
        return sum(o.ok for o in self.outcomes)

    @property
    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.t0


def run_stage(run: StageRun) -> int:
    """Run ``run``'s phases in the skeleton's order; returns the exit status."""
    for phase in (run.check, run.claim, run.read, run.plan):
        status = phase()
        if status is not None:
            return status
    run.outcomes = run.work()
    run.collect(run.outcomes)
    if run.shard is not None:
        return run.finish_shard()
    status = run.commit()
    if status is not None:
        return status
    text = run.summary()
    if text is not None:
        cli.stage_summary(run.stage, run.t0, text)
    return run.exit_status()
