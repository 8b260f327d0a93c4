"""Stage 4 end to end on a synthetic results folder: files, reruns, exit codes, messages."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _visual_fixtures import make_pairs, write_results

from perceptual_audio.stages import cli
from perceptual_audio.stages import visualize as visualize_stage

#: Left out of ``make test-fast``: stage 4 drawn and written for each situation.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
FAMILIES = {"noise": ["low", "high"], "bitrate": ["low", "high"]}


def _small_pairs(**kwargs):
    """CDPAM's learned distance as the only neural metric: few figures, a fast test."""
    pairs = make_pairs(models=("cdpam",), **kwargs)
    drop = [c for c in pairs.columns if c.startswith(("cdpam_cosine", "cdpam_l2"))]
    return pairs.drop(columns=drop)


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    return write_results(
        folder,
        _small_pairs(n_recordings=3, families=FAMILIES),
        unavailable={
            "openl3": "no weights in --weights-dir",
            "vggish": "no weights in --weights-dir",
        },
        n_bootstrap=50,
    )


@pytest.fixture(scope="module")
def first_run(results_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("vis") / "visualizations"
    code = visualize_stage.main(
        ["--results-dir", str(results_dir), "--output-dir", str(out), "--dpi", "30", "--quiet"]
    )
    return code, out


EXPECTED_FIGURES = [
    "scatter_cdpam_distance.png",
    "heatmap_pearson.png",
    "heatmap_spearman.png",
    "bars_by_degradation.png",
    "severity_curves.png",
    "family_noise.png",
    "family_bitrate.png",
]


def test_writes_every_output(first_run):
    code, out = first_run
    assert code == cli.EXIT_OK
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([*EXPECTED_FIGURES, "analysis_report.txt", "report.html", "run.json"])
    for f in EXPECTED_FIGURES:
        assert (out / f).read_bytes().startswith(b"\x89PNG")
    run = json.loads((out / "run.json").read_text())
    assert run["stage"] == "visualize_results"
    assert run["outputs"] == [*EXPECTED_FIGURES, "analysis_report.txt", "report.html"]
    assert run["models"]["openl3"] == {"available": False, "reason": "no weights in --weights-dir"}
    assert run["parameters"] == {
        "format": "png",
        "dpi": 30,
        "audio_examples": 24,
        "audio_budget_mb": 10.0,
        "content_types": None,
    }


def test_report_embeds_every_figure_and_says_what_was_skipped(first_run):
    _, out = first_run
    page = (out / "report.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == len(EXPECTED_FIGURES)
    assert "http://" not in page and "https://" not in page
    assert (
        "OpenL3 was unavailable and is left out of this report (no weights in --weights-dir); "
        "details in the Embedding models table." in page
    )
    text = (out / "analysis_report.txt").read_text()
    assert "NOTE: VGGish was unavailable and is left out of this report" in text
    assert "Against PESQ-WB, the neural metric that agrees best is CDPAM" in text
    # 3 recordings: too few for stage 3's bootstrap CIs, and the report says so.
    assert "NOTE: Only 3 clean recording(s): the bootstrap confidence intervals" in text
    assert "95% CI not available" in text
    for f in EXPECTED_FIGURES:
        assert f"- {f}: " in text


def test_rerun_with_unchanged_inputs_does_nothing_and_force_redoes(
    first_run, results_dir, caplog, capsys
):
    _, out = first_run
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with caplog.at_level(logging.INFO):
        code = visualize_stage.main(
            ["--results-dir", str(results_dir), "--output-dir", str(out), "--dpi", "30"]
        )
    assert code == cli.EXIT_OK
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert f"{out} is up to date with {results_dir} (use --force to redraw)" in (
        capsys.readouterr().err
    )
    code = visualize_stage.main(
        [
            "--results-dir",
            str(results_dir),
            "--output-dir",
            str(out),
            "--dpi",
            "30",
            "--force",
            "--quiet",
        ]
    )
    assert code == cli.EXIT_OK
    assert (out / "report.html").stat().st_mtime_ns > before["report.html"]


def test_svg_format_replaces_the_png_figures(first_run, results_dir, tmp_path):
    out = tmp_path / "vis"
    shutil.copytree(first_run[1], out)
    assert (
        visualize_stage.main(
            [
                "--results-dir",
                str(results_dir),
                "--output-dir",
                str(out),
                "--format",
                "svg",
                "--quiet",
            ]
        )
        == cli.EXIT_OK
    )
    assert sorted(p.suffix for p in out.iterdir() if p.suffix in (".png", ".svg")) == [
        ".svg"
    ] * len(EXPECTED_FIGURES)
    page = (out / "report.html").read_text()
    assert page.count('<img src="data:image/svg+xml;base64,') == len(EXPECTED_FIGURES)


def test_figure_format_writes_every_format_and_the_page_embeds_png(results_dir, tmp_path):
    out = tmp_path / "vis"
    argv = ["--results-dir", str(results_dir), "--output-dir", str(out), "--dpi", "20"]
    assert visualize_stage.main([*argv, "--figure-format", "png,svg,pdf", "--quiet"]) == 0
    stems = [f.removesuffix(".png") for f in EXPECTED_FIGURES]
    for suffix, magic in ((".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")):
        found = sorted(p.stem for p in out.glob(f"*{suffix}"))
        assert found == sorted(stems), suffix
        assert all(p.read_bytes().startswith(magic) for p in out.glob(f"*{suffix}"))
    page = (out / "report.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == len(EXPECTED_FIGURES)
    assert "image/svg+xml" not in page and "application/pdf" not in page
    run = json.loads((out / "run.json").read_text())
    assert len(run["outputs"]) == 3 * len(EXPECTED_FIGURES) + 2
    # pdf alone: the page still needs PNGs, so they are written beside the PDFs.
    out2 = tmp_path / "vis2"
    argv[3] = str(out2)
    assert visualize_stage.main([*argv, "--figure-format", "pdf", "--quiet"]) == 0
    assert sorted(p.suffix for p in out2.glob("scatter_*")) == [".pdf", ".png"]


def test_default_output_dir_is_inside_the_results_dir(tmp_path):
    results = write_results(
        tmp_path, _small_pairs(n_recordings=2, families={"noise": ["low", "high"]}), n_bootstrap=10
    )
    assert (
        visualize_stage.main(["--results-dir", str(results), "--dpi", "20", "--quiet"])
        == cli.EXIT_OK
    )
    # One family: no per-family small multiples.
    assert not list((results / "visualizations").glob("family_*"))
    assert (results / "visualizations" / "report.html").exists()


def test_missing_results_folder_fails_with_its_path(tmp_path, caplog):
    missing = tmp_path / "nothing"
    with caplog.at_level(logging.ERROR):
        assert visualize_stage.main(["--results-dir", str(missing)]) == cli.EXIT_USAGE
    assert (
        f"--results-dir {missing}: no such folder; run calculate_metrics.py --results-dir "
        f"{missing} first, or fix the path" in caplog.text
    )


def test_older_results_schema_fails_with_a_clear_message(tmp_path, caplog):
    results = tmp_path / "results"
    results.mkdir()
    (results / "pair_metrics.csv").write_text("clean,degraded,pesq\na.wav,b.wav,2.0\n")
    with caplog.at_level(logging.ERROR):
        assert visualize_stage.main(["--results-dir", str(results)]) == cli.EXIT_FAILED
    assert (
        "expected leading columns ['reference_path', 'degraded_path', 'family', 'level']"
        in caplog.text
    )
    assert "rerun calculate_metrics.py --force" in caplog.text
    assert not (results / "visualizations").exists()


def test_bad_options_are_usage_errors(capsys):
    for argv in (["--figure-format", "png,eps"], ["--figure-format", ","], ["--dpi", "0"]):
        with pytest.raises(SystemExit) as e:
            visualize_stage.main(argv)
        assert e.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert (
        "argument --figure-format/--format: got unknown format(s) eps; expected a "
        "comma-separated list of png, svg, pdf" in err
    )
    assert "--figure-format/--format: got an empty list" in err
    assert "expected a positive integer, got 0" in err


def test_script_help_lists_the_options():
    proc = subprocess.run(
        [sys.executable, "visualize_results.py", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    for opt in (
        "--results-dir",
        "--output-dir",
        "--format",
        "--dpi",
        "--quiet",
        "--verbose",
        "--force",
    ):
        assert opt in proc.stdout
    assert "--workers" not in proc.stdout
