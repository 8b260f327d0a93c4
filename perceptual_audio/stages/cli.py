"""Shared command-line pieces: argparse types and options, logging, progress, parallel map,
``run.json`` and exit codes. Only the stage entry points use this module's logging and
progress setup; library code just logs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib.metadata
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Self

from perceptual_audio import __version__, files
from perceptual_audio.errors import FolderBusyError, FolderConflictError
from perceptual_audio.files import atomic_write_json
from perceptual_audio.options import positive_int
from perceptual_audio.stages import shards
from perceptual_audio.stages.work import default_workers, format_duration

logger = logging.getLogger(__name__)

EXIT_OK = 0
#: At least one input failed; the others were processed.
EXIT_FAILED = 1
#: Bad command line (argparse's own convention).
EXIT_USAGE = 2
#: Some models were unavailable (no weights); the others ran. A warning, not a failure.
EXIT_MODELS_UNAVAILABLE = 3
#: Interrupted (Ctrl-C, SIGINT): the shell's convention, 128 + signal 2.
EXIT_INTERRUPTED = 130

#: Packages whose versions every run.json records, besides those the models declare
#: (``Embedder.packages``, see :func:`package_versions`).
RECORDED_PACKAGES = (
    "numpy",
    "scipy",
    "torch",
    "soundfile",
    "soxr",
    "librosa",
    "resampy",
    "pedalboard",
    "pesq",
    "pystoi",
    "pandas",
    "matplotlib",
)


def add_common_arguments(parser: argparse.ArgumentParser, *, workers: bool = True) -> None:
    """Add ``--force``, ``--quiet``/``--verbose`` and (optionally) ``--workers``."""
    parser.add_argument(
        "--force",
        action="store_true",
        help="redo every output, even those whose inputs and parameters are unchanged",
    )
    loud = parser.add_mutually_exclusive_group()
    loud.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only warnings, errors and the final summary; no progress bar",
    )
    loud.add_argument("-v", "--verbose", action="store_true", help="print debug messages")
    if workers:
        n = default_workers()
        parser.add_argument(
            "--workers",
            type=positive_int,
            default=n,
            metavar="N",
            help=f"parallel worker processes (default: {n}, the usable cores here)",
        )


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's and epilog's line breaks; appends ``(default: X)`` to options
    that take a value, unless their help already states the default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or action.default in (None, argparse.SUPPRESS)
            or action.nargs == 0
            or not action.option_strings
        ):
            return text
        return text + " (default: %(default)s)"


# -- settings -------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class StageSettings:
    """What every stage's frozen settings hold. The CLI layer parses the command line into a
    subclass (one per stage, and per half of stage 2) with :meth:`from_args`; nothing below it
    sees an argparse Namespace.

    Attributes
    ----------
    arguments : dict
        The options as given on the command line (recorded in ``run.json``).
    quiet, verbose : bool
        Less / more logging; no progress when quiet.
    force : bool
        Redo everything, ignoring earlier results.
    workers : int
        Parallel worker processes.
    """

    arguments: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    quiet: bool = False
    verbose: bool = False
    force: bool = False
    workers: int = 1

    @classmethod
    def from_args(cls, args: argparse.Namespace, **values: Any) -> Self:
        """The settings of parsed ``args``: each field from the option of the same name
        (``values`` override or add converted ones)."""
        names = {f.name for f in fields(cls)} - {"arguments"}
        taken = {n: getattr(args, n) for n in names if hasattr(args, n) and n not in values}
        return cls(arguments=dict(vars(args)), **taken, **values)


# -- logging and progress ---------------------------------------------------------------------
def setup_logging(*, quiet: bool = False, verbose: bool = False) -> None:
    """Configure the root logger for a stage script (``--quiet``: warnings and errors only;
    ``--verbose``: debug)."""
    level = logging.INFO
    if quiet:
        level = logging.WARNING
    elif verbose:
        level = logging.DEBUG
    root = logging.getLogger()
    root.setLevel(level)
    # Replace only the handler this function installed before (keeps pytest's capture handler).
    for h in [h for h in root.handlers if getattr(h, "_perceptual_audio", False)]:
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    handler._perceptual_audio = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    # Third-party chatter (numba, matplotlib font cache) stays quiet unless debugging.
    for noisy in ("numba", "matplotlib", "PIL", "h5py"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def stage_summary(stage: str, t0: float, text: str) -> str:
    """The one closing line of every stage, on stderr even with ``--quiet``:
    ``<stage>: finished in 1m05s: <text>``. Returns the line."""
    line = f"{stage}: finished in {format_duration(time.perf_counter() - t0)}: {text}"
    print(line, file=sys.stderr, flush=True)
    return line


# -- run.json ---------------------------------------------------------------------------------
def package_versions(names: Iterable[str] | None = None) -> dict[str, str | None]:
    """Installed versions of ``names`` (None where a package is absent); by default
    :data:`RECORDED_PACKAGES` and the packages of the registered models."""
    if names is None:
        from perceptual_audio.embeddings.base import (
            model_packages,  # deferred: the model registry imports torch
        )

        names = (*RECORDED_PACKAGES, *model_packages())
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_run_json(
    folder: str | os.PathLike,
    *,
    stage: str,
    settings: StageSettings | Mapping[str, Any] | None,
    params: dict[str, Any] | None = None,
    seed: int | None = None,
    timings: dict[str, float] | None = None,
    extra: dict[str, Any] | None = None,
    name: str = "run.json",
) -> Path:
    """Record how a folder was made: command line, parameters, seed, versions, timings.

    A rerun that made the same record apart from :data:`RUN_JSON_VOLATILE` (times, counts of
    this run's work) leaves the existing file alone: run.json then still describes the run
    that produced the folder's contents, and an unchanged rerun changes no file. ``settings``
    are the stage's settings (their ``arguments``, the options as given, are recorded) or
    a mapping of the options.
    """
    args = settings.arguments if isinstance(settings, StageSettings) else settings
    record: dict[str, Any] = {
        "stage": stage,
        "command": _command_line(),
        "arguments": dict(args) if args is not None else {},
        "parameters": params or {},
        "seed": seed,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "perceptual_audio_version": __version__,
        "packages": package_versions(),
        "timings_seconds": timings or {},
    }
    if extra:
        record.update(extra)
    path = Path(folder) / name
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    new = json.loads(json.dumps(record, default=str))
    if isinstance(old, dict) and _stable(old) == _stable(new):
        logger.debug("%s unchanged (only times and counts differ): not rewritten", path)
        return path
    atomic_write_json(path, record)
    return path


#: run.json keys that describe only the work of one run (how long, how much was redone):
#: a rerun that differs from the recorded run only in these keys does not rewrite it.
RUN_JSON_VOLATILE = (
    "finished_at",
    "timings_seconds",
    "counts",
    "pairs_scored",
    "pairs_reused",
)


def _stable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in RUN_JSON_VOLATILE}


# -- folders: ownership, locks, inputs ---------------------------------------------------------
def claim_output_folder(
    folder: str | os.PathLike,
    *,
    owner: str,
    option: str,
    inputs: Sequence[tuple[str, str | os.PathLike, str | None]] = (),
    lock: str | os.PathLike | None = None,
    shard: Any = None,
) -> int | None:
    """Check and lock a stage's output folder before anything is written.

    ``lock`` is the folder whose lock the stage takes (default ``folder``); the degradations
    lock the whole audio folder, whose ``manifest.csv`` they share with stage 1. With a
    ``shard`` (:class:`perceptual_audio.stages.shards.Shard`) the stage takes only the lock of that
    shard's fragment folder (the other shards run at the same time) and refuses while an
    unsharded run holds the folder's lock; without one it refuses while a shard of ``folder``
    runs.

    Refuses (logged error + exit status) an output folder that belongs to another stage or is
    (or contains) one of ``inputs`` (:func:`files.check_stage_folders`: exit 2), and an input
    or output folder that another run is writing (:func:`files.acquire_lock`: exit 1). On
    success the folder is locked until the stage entry point returns (:func:`stage_entry`);
    returns None.
    """
    try:
        files.check_stage_folders(folder, owner=owner, option=option, inputs=inputs)
        locked = os.path.abspath(lock or folder)
        for in_option, in_folder, _ in inputs:
            if os.path.abspath(in_folder) != locked:  # else acquire_lock says who holds it
                files.check_not_locked(in_folder, option=in_option)
        if shard is not None:
            files.check_not_locked(lock or folder, option=option)
            files.acquire_lock(
                shard.fragment_dir(folder), owner=owner, command=_command_line(), marks_owner=False
            )
            return None
        running = shards.describe_running(folder)
        if running:
            raise FolderBusyError(
                f"{option} {running}; wait for the shards to finish, then run this stage "
                "without --shard to merge them"
            )
        files.acquire_lock(
            lock or folder,
            owner=owner,
            command=_command_line(),
            marks_owner=lock is None or os.path.abspath(lock) == os.path.abspath(folder),
        )
    except FolderConflictError as e:
        logger.error("%s", e)
        return EXIT_USAGE
    except FolderBusyError as e:
        logger.error("%s", e)
        return EXIT_FAILED
    return None


def check_input_folder(
    folder: str | os.PathLike, *, option: str, needs: str, made_by: str
) -> int | None:
    """The same check and advice for every stage's input folder (None: usable).

    ``needs`` is the file the folder must hold (``manifest.csv``); ``made_by`` the command
    that writes the folder (``audio_conversion.py --output DIR``, where ``DIR`` is replaced
    by the folder). A missing folder, a file given as a folder, or a folder without ``needs``
    is a bad command line: exit 2, with what to run.
    """
    p = Path(folder)
    advice = made_by.replace("DIR", str(p))
    if p.is_file():
        logger.error(
            "%s %s is a file; give the folder that holds %s (%s writes it)",
            option,
            p,
            needs,
            made_by.replace("DIR", str(p.parent)),
        )
        return EXIT_USAGE
    if not p.is_dir():
        logger.error("%s %s: no such folder; run %s first, or fix the path", option, p, advice)
        return EXIT_USAGE
    if not (p / needs).is_file():
        logger.error("%s %s holds no %s; run %s first", option, p, needs, advice)
        return EXIT_USAGE
    return None


def _command_line() -> list[str]:
    return [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else []


def stage_entry(prog: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorate a stage's ``main``: Ctrl-C gives one line and exit 130; locks are released.

    The stage's own code saves what it finished when interrupted (outputs are written
    atomically, so nothing half-written is left); this wrapper only turns the interrupt into
    one message instead of a traceback.
    """

    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(*a: Any, **kw: Any) -> int:
            try:
                return main(*a, **kw)
            except KeyboardInterrupt:
                print(
                    f"{prog}: interrupted; finished outputs are kept (nothing half-written), "
                    "run the same command again to do the rest",
                    file=sys.stderr,
                )
                return EXIT_INTERRUPTED
            finally:
                files.release_all_locks()

        return run

    return wrap
