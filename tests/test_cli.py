"""The closing summary line shared by every stage (cli.py)."""

from __future__ import annotations

import time

from perceptual_audio.stages import cli


def test_stage_summary_is_one_line_with_the_wall_time(capsys):
    t0 = time.perf_counter() - 65
    line = cli.stage_summary("calculate_metrics", t0, "wrote results: 6 pairs")
    assert line == "calculate_metrics: finished in 1m05s: wrote results: 6 pairs"
    assert capsys.readouterr().err == line + "\n"
