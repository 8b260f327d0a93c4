"""Progress lines and the closing summary line shared by every stage (cli.py)."""

from __future__ import annotations

import argparse
import logging
import time

from perceptual_audio.stages import cli


def test_progress_line_gives_done_total_rate_and_eta():
    line = cli.progress_line("cdpam", 12, 60, 30.0)
    assert line == "cdpam: 12/60 files (20%), 0.40 files/s, ETA 2m00s"
    assert cli.progress_line("pairs", 0, 10, 31.0, "pair") == (
        "pairs: 0/10 pairs (0%), no pair done yet, ETA unknown"
    )
    assert cli.progress_line("x", 3, None, 2.0) == "x: 3 files, 1.50 files/s, elapsed 2.0 s"


def test_format_duration():
    assert cli.format_duration(4.24) == "4.2 s"
    assert cli.format_duration(185) == "3m05s"
    assert cli.format_duration(3720) == "1h02m"
    assert cli.format_duration(float("nan")) == "?"


def test_without_a_terminal_progress_is_logged_even_during_one_slow_item(monkeypatch, caplog):
    monkeypatch.setattr(cli, "PROGRESS_INTERVAL_S", 0.05)
    monkeypatch.setattr(cli.sys.stderr, "isatty", lambda: False, raising=False)
    with caplog.at_level(logging.INFO, logger="perceptual_audio.progress"):
        out = []
        for x in cli.progress(range(3), desc="work", args=argparse.Namespace(quiet=False)):
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
    monkeypatch.setattr(cli, "PROGRESS_INTERVAL_S", 0.01)
    items = [1, 2]
    assert cli.progress(items, desc="q", args=argparse.Namespace(quiet=True)) is items


def test_stage_summary_is_one_line_with_the_wall_time(capsys):
    t0 = time.perf_counter() - 65
    line = cli.stage_summary("calculate_metrics", t0, "wrote results: 6 pairs")
    assert line == "calculate_metrics: finished in 1m05s: wrote results: 6 pairs"
    assert capsys.readouterr().err == line + "\n"
