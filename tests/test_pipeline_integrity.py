"""Results a researcher can trust (issue 12): each situation built through the real stages.

Stage 1 runs on generated audio, stage 2 with the real degradations and fast stand-in models
registered under the names ``openl3`` and ``vggish`` (``fake_models``; their numbers mean
nothing), stages 3 and 4 as a user runs them. Every refusal is asserted with its message.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import fake_models
import numpy as np
import pandas as pd
import pytest
from conftest import REPO_ROOT, speechlike, write_audio

from perceptual_audio import (
    embeddings,
    report,
)
from perceptual_audio import results as results_format
from perceptual_audio.files import LOCK_NAME
from perceptual_audio.manifest import read_manifest
from perceptual_audio.stages import cli
from perceptual_audio.stages import convert as conversion
from perceptual_audio.stages import extract as extract_stage
from perceptual_audio.stages import score as metrics_stage
from perceptual_audio.stages import visualize as visualize_stage

#: Left out of ``make test-fast``: every situation is built through the real stages.
pytestmark = pytest.mark.slow

SR = 16000


@pytest.fixture(autouse=True)
def fakes():
    with embeddings.base.registry_scope():
        fake_models.install()
        yield


@pytest.fixture
def work(tmp_path, monkeypatch):
    """tmp_path as the working folder, with original_audio/ holding two recordings."""
    monkeypatch.chdir(tmp_path)
    write_audio(tmp_path / "original_audio" / "a.wav", speechlike(1.5, 120, 1), SR)
    write_audio(tmp_path / "original_audio" / "b.wav", speechlike(1.5, 200, 2), SR)
    return tmp_path


def stage1(*extra: str) -> int:
    return conversion.main(
        ["--input", "original_audio", "--output", "test_audio", "--workers", "1", "-q", *extra]
    )


def stage2(*extra: str, degradations: str = "noise:low,bitrate:low") -> int:
    return extract_stage.main(
        ["--input-dir", "test_audio", "--degradations", degradations, "--workers", "1", "-q"]
        + ["--models", "openl3,vggish", *extra]
    )


def stage3(*extra: str) -> int:
    # The classic metrics and the models' only: the reference metrics (ViSQOL, Zimtohrli,
    # DNSMOS, PEAQ) have their own tests, and what is checked here does not depend on them.
    return metrics_stage.main(
        ["--audio-dir", "test_audio", "--models", "openl3,vggish", "--bootstrap", "20"]
        + ["--metrics", "classic,openl3,vggish", "--workers", "1", "-q", *extra]
    )


def stage4(*extra: str) -> int:
    return visualize_stage.main(["--results-dir", "results", "--dpi", "20", "-q", *extra])


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file below ``root``: (modification time in ns, sha256)."""
    return {
        p.relative_to(root).as_posix(): (
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# -- 0. the severity order is recorded by stage 2, not guessed from level names --------------
def test_stage_2_records_the_level_order_and_stages_3_and_4_follow_it(work, caplog):
    assert stage1() == 0
    # New levels whose names sort against their severity (snr10 < snr3 < snr30 by name).
    selection = work / "levels.json"
    selection.write_text(
        json.dumps({"noise": {lv: {"snr_db": float(lv[3:])} for lv in ("snr30", "snr10", "snr3")}})
    )
    assert stage2(degradations=str(selection)) == 0
    recorded = json.loads((work / "test_audio" / "degraded" / "run.json").read_text())
    assert recorded["level_order"] == {"noise": ["snr30", "snr10", "snr3"]}
    assert stage3() == 0
    run = json.loads((work / "results" / "run.json").read_text())
    assert run["level_order"] == {"noise": ["snr30", "snr10", "snr3"]}
    summary = pd.read_csv(work / "results" / "summary_by_degradation.csv")
    assert summary["level"].tolist() == ["snr30", "snr10", "snr3"]
    assert report.load_results("results").level_order == {"noise": ["snr30", "snr10", "snr3"]}

    # A stage-2 folder that recorded no order (written by an older version): name order,
    # said once per family.
    del recorded["level_order"]
    (work / "test_audio" / "degraded" / "run.json").write_text(json.dumps(recorded))
    caplog.clear()
    assert stage3() == 0
    assert (
        f"{Path('test_audio') / 'degraded' / 'run.json'} records no severity order for noise "
        "levels snr10, snr3, snr30; they are ordered by name (rerun extract_embeddings.py to "
        "record it)" in caplog.text
    )
    summary = pd.read_csv(work / "results" / "summary_by_degradation.csv")
    assert summary["level"].tolist() == ["snr10", "snr3", "snr30"]


# -- 1. one folder for several models -------------------------------------------------------
def test_stage_2_refuses_one_folder_for_two_models(work, capsys):
    assert stage1() == 0
    with pytest.raises(SystemExit) as exc:
        stage2("--openl3-dir", "E", "--vggish-dir", "E", "--cdpam-dir", "E")
    assert exc.value.code == cli.EXIT_USAGE
    assert (
        "error: --openl3-dir and --vggish-dir are both E: each model needs a folder of its own "
        "(e.g. --openl3-dir openl3_embeddings --vggish-dir vggish_embeddings)"
        in capsys.readouterr().err
    )
    assert not (work / "E").exists() and not (work / "test_audio" / "degraded").exists()


def test_stage_3_checks_the_model_of_every_embedding_folder(work, caplog):
    assert stage1() == 0
    assert extract_stage.main(
        ["--input-dir", "test_audio", "--degradations", "noise:low", "--workers", "1", "-q"]
        + ["--models", "vggish", "--vggish-dir", "E"]
    ) in (0, 3)
    # E holds VGGish embeddings: read as OpenL3 they would be scored as OpenL3.
    assert stage3("--openl3-dir", "E", "--vggish-dir", "E") == cli.EXIT_USAGE
    assert (
        "--openl3-dir E was written by extract_embeddings.py (stage 2, vggish embeddings), not "
        "by extract_embeddings.py (stage 2, openl3 embeddings); give --openl3-dir the folder "
        "extract_embeddings.py (stage 2, openl3 embeddings) wrote" in caplog.text
    )
    assert not (work / "results").exists()
    # Without its run.json the manifest's model column still gives the folder away.
    (work / "E" / "run.json").unlink()
    caplog.clear()
    assert stage3("--openl3-dir", "E", "--vggish-dir", "E") == cli.EXIT_USAGE
    assert (
        f"--openl3-dir E holds vggish embeddings ({Path('E') / 'manifest.csv'}, column "
        "'model'), not openl3; give --openl3-dir the folder extract_embeddings.py wrote with "
        "--openl3-dir" in caplog.text
    )


# -- 2. a stage writing into another stage's folder -----------------------------------------
def test_every_stage_refuses_another_stages_folder(work, caplog):
    assert stage1() == 0
    manifest_before = (work / "test_audio" / "manifest.csv").read_bytes()

    with pytest.raises(SystemExit) as exc:
        stage2("--openl3-dir", "test_audio")
    assert exc.value.code == cli.EXIT_USAGE
    with pytest.raises(SystemExit):
        stage2("--vggish-dir", "test_audio/clean")
    assert (work / "test_audio" / "manifest.csv").read_bytes() == manifest_before
    assert not list((work / "test_audio").rglob("*.npy"))

    assert stage2() == 0
    assert stage3() == 0
    run3 = (work / "results" / "run.json").read_bytes()
    caplog.clear()
    assert stage3("--results-dir", "test_audio") == cli.EXIT_USAGE
    assert (
        "--results-dir test_audio is the input folder --audio-dir test_audio: "
        "calculate_metrics.py (stage 3) would overwrite its own input; give --results-dir a "
        "folder of its own" in caplog.text
    )
    assert stage3("--results-dir", "openl3_embeddings") == cli.EXIT_USAGE
    assert (
        "--results-dir openl3_embeddings is the input folder --openl3-dir openl3_embeddings"
        in caplog.text
    )
    assert (
        conversion.main(["--input", "original_audio", "--output", "results", "-q"])
        == cli.EXIT_USAGE
    )
    assert (
        f"--output results belongs to calculate_metrics.py (stage 3), as {work / 'results'}"
        f"/run.json records; audio_conversion.py (stage 1) would overwrite its files. Give "
        "--output a folder of its own" in caplog.text
    )
    assert stage4("--output-dir", "results") == cli.EXIT_USAGE
    assert (
        "--output-dir results is the input folder --results-dir results: visualize_results.py "
        "(stage 4) would overwrite its own input" in caplog.text
    )
    assert (work / "results" / "run.json").read_bytes() == run3
    assert json.loads((work / "test_audio" / "run.json").read_text())["stage"] == (
        "audio_conversion"
    )


def test_the_printed_recovery_advice_works(work, caplog):
    assert stage1() == 0
    # A manifest this version cannot read (older version, or overwritten by hand).
    (work / "test_audio" / "manifest.csv").write_text("path,embedding\nx.wav,x.npy\n")
    assert stage2() == cli.EXIT_FAILED
    advice = (
        "Rebuild it with audio_conversion.py --input <your audio folder> --output test_audio "
        "--force, then rerun extract_embeddings.py"
    )
    assert advice in caplog.text
    assert stage1() == cli.EXIT_FAILED  # without --force it says the same, no traceback
    assert stage1("--force") == 0  # the advice, followed
    assert stage2() == 0
    assert {r.kind for r in read_manifest(work / "test_audio")} == {"clean", "degraded"}
    # A results table of another version: stage 4's advice rebuilds it.
    assert stage3() == 0
    (work / "results" / "pair_metrics.csv").write_text("clean,degraded,pesq\na.wav,b.wav,2\n")
    caplog.clear()
    assert stage4() == cli.EXIT_FAILED
    assert "rerun calculate_metrics.py --force to rebuild it" in caplog.text
    assert stage3("--force") == 0
    assert stage4() == 0


# -- 3. pairs whose degradation was not applied ---------------------------------------------
def test_not_applied_pairs_stay_out_of_the_statistics(work):
    write_audio(work / "original_audio" / "silent.wav", np.zeros(SR * 3 // 2, np.float32), SR)
    assert stage1() == 0
    assert stage2(degradations="noise:low") == 0
    assert stage3() == 0
    pairs = results_format.read_pair_table(work / "results" / "pair_metrics.csv")
    silent = pairs[pairs.degraded_path == "degraded/noise/low/silent.wav"].iloc[0]
    assert silent["degradation_applied"] == "false" and "silent" in silent["flags"]
    assert (pairs[pairs.degraded_path != silent.degraded_path].degradation_applied == "true").all()
    summary = pd.read_csv(work / "results" / "summary_by_degradation.csv")
    assert summary["n_pairs"].tolist() == [2]  # the silent pair is left out
    run = json.loads((work / "results" / "run.json").read_text())
    assert run["n_pairs_not_applied"] == 1


# -- 4. truncated files ----------------------------------------------------------------------
def test_truncated_wav_and_ogg_are_reported_as_bad_input(work, caplog):
    import soundfile as sf

    y = speechlike(3.0, 150, 3)
    full = work / "full.wav"
    sf.write(full, y, SR, subtype="PCM_16")
    data = full.read_bytes()
    (work / "original_audio" / "cut.wav").write_bytes(data[: 44 + (len(data) - 44) // 2])
    ogg = work / "full.ogg"
    sf.write(ogg, y, SR, format="OGG", subtype="VORBIS")
    data = ogg.read_bytes()
    (work / "original_audio" / "cut_ogg.ogg").write_bytes(data[: len(data) * 2 // 3])
    assert stage1() == cli.EXIT_FAILED
    assert (
        f"{Path('original_audio') / 'cut.wav'}: truncated: its header promises 96000 bytes of "
        "audio (3.000 s) but the file holds 48000 (1.500 s); copy or export the file again"
        in caplog.text
    )
    assert (
        f"{Path('original_audio') / 'cut_ogg.ogg'}: truncated: the Ogg page at byte" in caplog.text
    )
    clean = sorted(r.path for r in read_manifest(work / "test_audio"))
    assert clean == ["clean/a.wav", "clean/b.wav"]  # the good files are converted


# -- 5. two runs on one folder ---------------------------------------------------------------
def test_a_second_run_says_who_holds_the_folder_and_stale_locks_are_taken_over(work, caplog):
    assert stage1() == 0
    assert stage2() == 0
    before = snapshot(work / "test_audio")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from perceptual_audio.files import acquire_lock\n"
            "acquire_lock('test_audio', owner='degradations', command=['extract_embeddings.py'])\n"
            "print('locked', flush=True)\n"
            "time.sleep(120)\n",
        ],
        cwd=work,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        lock = json.loads((work / "test_audio" / LOCK_NAME).read_text())
        # A second stage 2 with other degradations would remove files: it must not start.
        assert stage2(degradations="noise:high") == cli.EXIT_FAILED
        assert (
            f"{work / 'test_audio'} is in use: extract_embeddings.py (stage 2, degradations) has "
            f"held its lock since {lock['started_at']} (pid {holder.pid} on host "
            f"{socket.gethostname()}, command: extract_embeddings.py). Wait for that run to "
            f"finish; if it is no longer running, delete {work / 'test_audio' / LOCK_NAME}"
            in caplog.text
        )
        assert stage1() == cli.EXIT_FAILED  # stage 1 shares the folder's lock
        assert stage3() == cli.EXIT_FAILED  # and stage 3 does not read a folder being written
        assert f"--audio-dir {work / 'test_audio'} is being written: " in caplog.text
        assert snapshot(work / "test_audio") == {
            **before,
            LOCK_NAME: snapshot(work / "test_audio")[LOCK_NAME],
        }
    finally:
        holder.kill()
        holder.wait()
    # The holder died without cleaning up: its lock is stale and taken over, with a warning.
    caplog.clear()
    assert stage2(degradations="noise:high") == 0
    assert "removed a stale lock of" in caplog.text
    assert f"(pid {holder.pid} on host" in caplog.text
    assert "but that process is no longer running" in caplog.text
    assert not (work / "test_audio" / LOCK_NAME).exists()


# -- 6. an unchanged rerun changes no file; --seed changes only what it affects ---------------
def test_unchanged_rerun_changes_no_file_and_the_seed_only_the_noise(work):
    assert stage1() == 0
    assert stage2() == 0
    assert stage3() == 0
    assert stage4() == 0
    first = snapshot(work)
    time.sleep(0.01)
    assert stage1() == 0
    assert stage2() == 0
    assert stage3() == 0
    assert stage4() == 0
    assert snapshot(work) == first

    assert stage2("--seed", "1") == 0
    changed = {p for p, v in snapshot(work).items() if first.get(p) != v}
    noise = {p for p in changed if "/noise/" in p}
    assert {p for p in noise if p.endswith(".wav")} == {
        "test_audio/degraded/noise/low/a.wav",
        "test_audio/degraded/noise/low/b.wav",
    }
    assert noise == {
        f"{m}_embeddings/degraded/noise/low/{f}.{ext}"
        for m in ("openl3", "vggish")
        for f in "ab"
        for ext in ("npy", "timestamps.npy")
    } | {"test_audio/degraded/noise/low/a.wav", "test_audio/degraded/noise/low/b.wav"}
    assert changed - noise == {
        "test_audio/manifest.csv",
        "test_audio/degraded/run.json",
        "openl3_embeddings/manifest.csv",
        "openl3_embeddings/run.json",
        "vggish_embeddings/manifest.csv",
        "vggish_embeddings/run.json",
    }
    # Stage 3's --seed drives only the bootstrap: the pair cells, summaries and monotonicity
    # stay (with 2 recordings there is no bootstrap CI, so correlations.csv stays too).
    assert stage3() == 0
    before = snapshot(work / "results")
    assert stage3("--seed", "1") == 0
    changed = {p for p, v in snapshot(work / "results").items() if before.get(p) != v}
    assert changed == {"run.json"}


# -- 7. symbolic links -----------------------------------------------------------------------
def test_symlinked_files_and_folders_are_followed_and_broken_links_reported(work, caplog):
    outside = work / "elsewhere"
    write_audio(outside / "c.wav", speechlike(1.0, 150, 4), SR)
    write_audio(outside / "folder" / "d.wav", speechlike(1.0, 170, 5), SR)
    src = work / "original_audio"
    (src / "c_link.wav").symlink_to(outside / "c.wav")
    (src / "linked").symlink_to(outside / "folder", target_is_directory=True)
    (src / "gone.wav").symlink_to(work / "deleted.wav")
    (src / "loop").symlink_to(src, target_is_directory=True)
    assert stage1() == cli.EXIT_FAILED  # the broken link; everything else converted
    assert (
        f"{Path('original_audio') / 'gone.wav'}: a symbolic link to {work / 'deleted.wav'}, "
        "which does not exist" in caplog.text
    )
    assert "Traceback" not in caplog.text
    rows = {r.path: r.source for r in read_manifest(work / "test_audio")}
    assert rows == {
        "clean/a.wav": "a.wav",
        "clean/b.wav": "b.wav",
        "clean/c_link.wav": "c_link.wav",
        "clean/linked/d.wav": "linked/d.wav",
    }
    assert f"{Path('original_audio') / 'loop'}: already searched as {src}" in caplog.text


# -- 8. exit codes and advice ----------------------------------------------------------------
def test_a_bad_input_folder_is_exit_2_with_working_advice_in_every_stage(work, caplog):
    assert conversion.main(["--input", "nothing", "--output", "test_audio"]) == cli.EXIT_USAGE
    assert "input folder 'nothing' does not exist or is not a folder" in caplog.text
    assert stage2() == cli.EXIT_USAGE
    assert (
        "--input-dir test_audio: no such folder; run audio_conversion.py --input <your audio "
        "folder> --output test_audio first, or fix the path" in caplog.text
    )
    assert stage3() == cli.EXIT_USAGE
    assert "--audio-dir test_audio: no such folder; run audio_conversion.py" in caplog.text
    assert stage4() == cli.EXIT_USAGE
    assert (
        "--results-dir results: no such folder; run calculate_metrics.py --results-dir "
        "results first, or fix the path" in caplog.text
    )
    assert stage1() == 0
    caplog.clear()
    rc = extract_stage.main(
        ["--input-dir", "test_audio/manifest.csv", "--models", "none", "-q", "--workers", "1"]
    )
    assert rc == cli.EXIT_USAGE
    assert (
        "--input-dir test_audio/manifest.csv is a file; give the folder that holds manifest.csv "
        "(audio_conversion.py --input <your audio folder> --output test_audio writes it)"
        in caplog.text
    )


# -- 9. Ctrl-C -------------------------------------------------------------------------------
def test_interrupt_saves_the_embeddings_done_prints_one_line_and_exits_130(work):
    write_audio(work / "original_audio" / "c.wav", speechlike(1.5, 160, 6), SR)
    assert stage1() == 0
    hook = work / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        textwrap.dedent("""
        import fake_models
        fake_models.install()
        """)
    )
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(hook), str(REPO_ROOT / "tests"), str(REPO_ROOT)]),
        PERCEPTUAL_AUDIO_FAKE_SECONDS="0.4",
    )
    argv = [sys.executable, str(REPO_ROOT / "extract_embeddings.py"), "--input-dir"]
    argv += ["test_audio", "--degradations", "noise:low", "--models", "openl3", "--workers", "1"]
    proc = subprocess.Popen(argv, cwd=work, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while len(list((work / "openl3_embeddings").rglob("*.timestamps.npy"))) < 2:
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == cli.EXIT_INTERRUPTED
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "extract_embeddings.py: interrupted; finished outputs are kept (nothing half-written), "
        "run the same command again to do the rest"
    )
    import csv

    with open(work / "openl3_embeddings" / "manifest.csv", newline="") as f:
        saved = [r for r in csv.DictReader(f) if r["status"] == "ok"]
    assert len(saved) >= 2  # the checkpoint written on the interrupt
    assert not (work / "openl3_embeddings" / LOCK_NAME).exists()
    assert not (work / "test_audio" / LOCK_NAME).exists()


# -- 10, 11. report numbers and layout --------------------------------------------------------
def test_report_numbers_ties_bounded_cis_seed_clipping_and_one_line_notes(
    work, caplog, monkeypatch
):
    from perceptual_audio import report
    from perceptual_audio.embeddings.openl3 import OpenL3Embedder
    from perceptual_audio.report import plots_families

    # A recording at int16 full scale: a flattened top, as a clipped recording has.
    loud = np.clip(6 * speechlike(1.5, 140, 7), -1, 1)
    write_audio(work / "original_audio" / "loud.wav", loud, SR, subtype="PCM_16")
    assert stage1() == 0
    rows = {r.path: r for r in read_manifest(work / "test_audio")}
    assert "clipped" in rows["clean/loud.wav"].flag_set
    assert "clean/a.wav" in rows and "clipped" not in rows["clean/a.wav"].flag_set
    assert "consecutive samples at full scale: the input was probably clipped" in caplog.text

    # OpenL3 with its real class and no weights (offline): unavailable, with fetch details.
    embeddings.base.register(OpenL3Embedder)
    monkeypatch.setenv("PERCEPTUAL_AUDIO_OFFLINE", "1")
    monkeypatch.setenv("PERCEPTUAL_AUDIO_CACHE", str(work / "cache"))
    argv2 = ["--input-dir", "test_audio", "--degradations", "noise:low,noise:extreme"]
    argv2 += ["--models", "openl3,vggish", "--workers", "1", "-q", "--seed", "5"]
    with monkeypatch.context() as m:  # run.json records the command line as given
        m.setattr(sys, "argv", ["extract_embeddings.py", *argv2])
        assert extract_stage.main(argv2) == cli.EXIT_MODELS_UNAVAILABLE
    assert stage3() == cli.EXIT_MODELS_UNAVAILABLE
    assert stage4() == 0
    report_text = (work / "results" / "visualizations" / "analysis_report.txt").read_text()
    text = " ".join(report_text.split())  # the text report wraps its lines

    # The stage-2 seed and command.
    assert f"Degraded by: extract_embeddings.py {' '.join(argv2)} (run seed 5;" in text
    # Bounded metrics: intervals inside the range, and the method said.
    summary = pd.read_csv(work / "results" / "summary_by_degradation.csv")
    for m in ("stoi", "estoi", "openl3_cosine", "vggish_cosine"):
        if f"{m}_ci_high" in summary:
            assert (summary[f"{m}_ci_high"].dropna() <= 1.0).all(), m
    assert (summary["stoi_ci_high"] == 1.0).any()  # a t-interval that went above 1, clipped
    assert "clipped to its range, which keeps the coverage" in text
    # n per metric in the Sample Results table.
    assert "pairs OpenL3" not in text and "PESQ n" in text and "STOI n" in text
    # Ties named.
    mono = pd.read_csv(work / "results" / "monotonicity.csv")
    pooled = mono[mono.step == "all"].groupby("metric")["fraction_right"].mean()
    tied = pooled[pooled == pooled.max()]
    assert len(tied) > 1  # noise low -> extreme: every metric falls for every recording
    assert (
        f"The {len(tied)} metrics that most often move the right way at each step up in "
        "severity are tied: PESQ-WB, " in text
    )
    # One line per unavailable model; the details in the models table.
    start = text.index("OpenL3 was unavailable")
    note = text[start : text.index("details in the Embedding models table.", start)]
    assert len(note) < 250
    assert "https://github.com/marl/openl3/raw/models/" not in note
    html = (work / "results" / "visualizations" / "report.html").read_text()
    assert "download: https://github.com/marl/openl3/raw/models/" in html  # in the table
    # Family figure titles do not claim an n the panels do not show.
    results = report.load_results(work / "results")
    fig = plots_families.family_small_multiples(
        results.pairs,
        family="noise",
        neural_metrics=["vggish_cosine"],
        references=["pesq_wb", "stoi"],
        level_order=results.level_order,
        correlations=results.correlations,
    )
    title = " ".join(fig._suptitle.get_text().split())
    assert "(6 pairs; each panel shows those both its metrics scored, n in its legend;" in title
