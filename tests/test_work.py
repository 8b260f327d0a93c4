"""The stage skeleton's item runner: progress in audio-seconds, worker processes, crashes."""

from __future__ import annotations

import logging
import os
import signal
import time

import pytest

from perceptual_audio.stages import work


def crash_on_three(x: int) -> int:
    """Squares ``x``; kills its own process on 3, as a native library's segfault would."""
    if x == 3:
        os.kill(os.getpid(), signal.SIGSEGV)
    if x == 5:
        raise ValueError("five is not allowed")
    return x * x


def test_progress_line_gives_done_total_rate_and_eta():
    line = work.progress_line("cdpam", 12, 60, 30.0)
    assert line == "cdpam: 12/60 files (20%), 0.40 files/s, ETA 2m00s"
    assert work.progress_line("pairs", 0, 10, 31.0, "pair") == (
        "pairs: 0/10 pairs (0%), no pair done yet, ETA unknown"
    )
    assert work.progress_line("x", 3, None, 2.0) == "x: 3 files, 1.50 files/s, elapsed 2.0 s"


def test_format_duration():
    assert work.format_duration(4.24) == "4.2 s"
    assert work.format_duration(185) == "3m05s"
    assert work.format_duration(3720) == "1h02m"
    assert work.format_duration(float("nan")) == "?"


def test_without_a_terminal_progress_is_logged_even_during_one_slow_item(monkeypatch, caplog):
    monkeypatch.setattr(work, "PROGRESS_INTERVAL_S", 0.05)
    monkeypatch.setattr(work.sys.stderr, "isatty", lambda: False, raising=False)
    with caplog.at_level(logging.INFO, logger="perceptual_audio.progress"):
        out = []
        for x in work.progress(range(3), desc="work"):
            time.sleep(0.3 if x == 1 else 0.01)  # one item far longer than the interval
            out.append(x)
        time.sleep(0.15)  # the timer has stopped: no line after the end
    assert out == [0, 1, 2]
    lines = [r.getMessage() for r in caplog.records if r.name == "perceptual_audio.progress"]
    assert len(lines) >= 3
    assert all(line.startswith("work: ") and "/3 files" in line and "ETA" in line for line in lines)
    n = len(lines)
    time.sleep(0.15)
    assert len([r for r in caplog.records if r.name == "perceptual_audio.progress"]) == n


def test_quiet_shows_no_progress(monkeypatch, caplog):
    monkeypatch.setattr(work, "PROGRESS_INTERVAL_S", 0.01)
    monkeypatch.setattr(work.sys.stderr, "isatty", lambda: False, raising=False)
    with caplog.at_level(logging.INFO, logger="perceptual_audio.progress"):
        out = []
        for x in work.progress([1, 2], desc="q", quiet=True):
            time.sleep(0.05)
            out.append(x)
    assert out == [1, 2]
    assert not [r for r in caplog.records if r.name == "perceptual_audio.progress"]


def test_progress_line_counts_audio_seconds():
    line = work.progress_line("cdpam", 95, 600, 226.0, work.AUDIO_SECONDS)
    assert line == ("cdpam: 95/600 audio-seconds (16%), 0.42 audio-seconds/s, ETA 20m01s")
    assert work.progress_line("cdpam", 0, 60.5, 31.0, work.AUDIO_SECONDS) == (
        "cdpam: 0/60.5 audio-seconds (0%), no audio-second done yet, ETA unknown"
    )


def test_weighted_progress_logs_the_work_done_not_the_items(monkeypatch, caplog):
    monkeypatch.setattr(work.sys.stderr, "isatty", lambda: False, raising=False)
    caplog.set_level(logging.INFO, logger="perceptual_audio.progress")
    with work.Progress(310.0, desc="cdpam", unit=work.AUDIO_SECONDS, interval=0.05) as bar:
        bar.advance(10.0)  # the 10 s file is done, the 300 s one is not
        time.sleep(0.3)
    assert any("cdpam: 10/310 audio-seconds (3%)" in r.message for r in caplog.records)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_crash_fails_only_its_item(workers):
    outcomes = work.parallel_map(
        crash_on_three, range(7), workers=workers, quiet=True, isolate=True
    )
    assert [o.item for o in outcomes] == list(range(7))
    crashed = outcomes[3]
    assert crashed.crashed and not crashed.ok
    assert crashed.error == "the worker process died (SIGSEGV)"
    assert outcomes[5].error == "ValueError: five is not allowed" and not outcomes[5].crashed
    assert [o.value for i, o in enumerate(outcomes) if i not in (3, 5)] == [0, 1, 4, 16, 36]


def test_run_isolated_names_the_signal():
    outcome = work.run_isolated(crash_on_three, 3)
    assert outcome.crashed and outcome.error == "the worker process died (SIGSEGV)"
    assert work.run_isolated(crash_on_three, 4).value == 16
