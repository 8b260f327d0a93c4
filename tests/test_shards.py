"""Sharded stages (``--shard K/N``) merged into exactly what one unsharded run writes.

The study runs through the real scripts as subprocesses: stage 1, then stage 2 and stage 3 as
three concurrent shard processes each, then the merges, beside the same study run unsharded.
The embedding model is the fast deterministic stand-in of ``fake_models`` (registered as
``openl3`` in the subprocesses by a ``sitecustomize``): what is compared is the plumbing
(which file lands where, the merged tables), not a network's numbers.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, speechlike, write_audio

from perceptual_audio.files import LOCK_NAME
from perceptual_audio.manifest import read_manifest
from perceptual_audio.stages import shards

SR = 16000
DEGRADATIONS = "noise:low,bitrate:low"
METRICS = "si_sdr,stoi,pesq_wb,openl3"
N_FILES = 7


# -- assignment ---------------------------------------------------------------------------------
def test_shard_argument_is_checked():
    assert shards.parse_shard("2/8") == shards.Shard(2, 8)
    assert shards.parse_shard(" 1 / 1 ") == shards.Shard(1, 1)
    for bad in ("0/3", "4/3", "3", "a/b", "-1/2", "2/0"):
        with pytest.raises(argparse.ArgumentTypeError) as e:
            shards.parse_shard(bad)
        assert str(e.value) == (
            f"--shard must be K/N with whole numbers 1 <= K <= N (e.g. 2/8), got {bad!r}"
        )


def test_assignment_is_a_stable_hash_of_the_clean_path():
    path = "clean/speech/talker 1.wav"
    expected = 1 + int.from_bytes(hashlib.sha256(path.encode()).digest()[:8], "big") % 5
    assert shards.shard_index(path, 5) == expected
    assert shards.shard_index(path, 1) == 1
    paths = [f"clean/rec_{i}.wav" for i in range(400)]
    counts = np.bincount([shards.shard_index(p, 4) for p in paths], minlength=5)[1:]
    assert counts.sum() == 400 and counts.min() > 70  # roughly balanced
    # A file's shard depends on its own path only: adding files moves none of the others.
    before = {p: shards.shard_index(p, 4) for p in paths[:200]}
    assert {p: shards.shard_index(p, 4) for p in paths[:200]} == before


@pytest.mark.slow  # runs the scripts' --help in subprocesses (5 s)
def test_stage_3_and_4_cli_offer_the_shard_options():
    for script in ("extract_embeddings.py", "calculate_metrics.py"):
        out = subprocess.run(
            [sys.executable, str(REPO_ROOT / script), "--shard", "4/3"],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
        )
        assert out.returncode == 2
        assert "--shard must be K/N with whole numbers 1 <= K <= N (e.g. 2/8), got '4/3'" in (
            out.stderr
        )


# -- the study through the real scripts ----------------------------------------------------------
def _env(work: Path, **extra: str) -> dict[str, str]:
    hook = work / "hook"
    if not hook.is_dir():
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(
            textwrap.dedent("""
            import fake_models
            fake_models.install()
            """)
        )
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(hook), str(REPO_ROOT / "tests"), str(REPO_ROOT)]),
        **extra,
    )


def _argv(script: str, *args: str, workers: int = 1) -> list[str]:
    return [sys.executable, str(REPO_ROOT / script), *args, "--workers", str(workers)]


def _stage2(audio: str, model_dir: str, *extra: str, workers: int = 1) -> list[str]:
    return _argv(
        "extract_embeddings.py",
        "--input-dir", audio, "--degradations", DEGRADATIONS, "--models", "openl3",
        "--openl3-dir", model_dir, "-q", *extra, workers=workers,
    )  # fmt: skip


def _stage3(audio: str, model_dir: str, results: str, *extra: str) -> list[str]:
    return _argv(
        "calculate_metrics.py",
        "--audio-dir", audio, "--openl3-dir", model_dir, "--results-dir", results,
        "--models", "openl3", "--metrics", METRICS, "--bootstrap", "200", "-q", *extra,
    )  # fmt: skip


def _run(argv: list[str], work: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)


def _concurrently(argvs: list[list[str]], work: Path, env: dict) -> list[tuple[int, str]]:
    procs = [
        subprocess.Popen(a, cwd=work, env=env, stderr=subprocess.PIPE, text=True) for a in argvs
    ]
    return [(p.wait(timeout=600), p.stderr.read()) for p in procs]


def _tree(folder: Path, suffix: str) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob(f"*{suffix}")}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Stage 1 once (``stage1``), and the unsharded stage 2 on a copy (``u_audio``, ``u_emb``)."""
    work = tmp_path_factory.mktemp("shards")
    for i in range(N_FILES):
        write_audio(work / "in" / f"rec {i}.wav", speechlike(1.2, 110 + 25 * i, i), SR)
    env = _env(work)
    out = _run(_argv("audio_conversion.py", "--input", "in", "--output", "stage1", "-q"), work, env)
    assert out.returncode == 0, out.stderr
    shutil.copytree(work / "stage1", work / "u_audio")
    unsharded = _run(_stage2("u_audio", "u_emb"), work, env)
    assert unsharded.returncode == 0, unsharded.stderr
    return work, env


@pytest.mark.slow
def test_three_shards_merge_into_exactly_the_unsharded_study(study):
    work, env = study
    shutil.copytree(work / "stage1", work / "s_audio")
    runs = _concurrently(
        [_stage2("s_audio", "s_emb", "--shard", f"{k}/3") for k in (1, 2, 3)], work, env
    )
    assert [rc for rc, _ in runs] == [0, 0, 0], runs

    # Each shard wrote the files of its own recordings, and its rows to its fragment only.
    manifest_before = (work / "s_audio" / "manifest.csv").read_bytes()
    assert {r.kind for r in read_manifest(work / "s_audio")} == {"clean"}
    group = {r.path: r.path for r in read_manifest(work / "s_audio")}  # clean files
    placed = []
    for k in (1, 2, 3):
        shard = shards.Shard(k, 3)
        rows = read_manifest(shard.fragment_dir(work / "s_audio" / "degraded") / "manifest.csv")
        assert all(shard.owns(r.source) for r in rows)
        group.update({r.path: r.source for r in rows})
        placed += [r.path for r in rows]
    assert len(placed) == len(set(placed)) == N_FILES * 2
    embedded = []
    for k in (1, 2, 3):
        shard = shards.Shard(k, 3)
        with open(shard.fragment_dir(work / "s_emb") / "manifest.csv", newline="") as f:
            paths = [r["path"] for r in csv.DictReader(f)]
        assert all(shard.owns(group[p]) for p in paths)
        embedded += paths
    assert sorted(embedded) == sorted(group)  # every file once, in its recording's shard
    assert not (work / "s_emb" / "manifest.csv").exists()  # nothing merged yet

    # Stage 3 refuses to read stage 2's unmerged shards.
    early = _run(_stage3("s_audio", "s_emb", "s_results"), work, env)
    assert early.returncode == 1
    assert "stage 2 ran in shards that are not merged yet (s_audio/degraded/.shards holds" in (
        early.stderr
    )
    assert (work / "s_audio" / "manifest.csv").read_bytes() == manifest_before

    merge = _run(_stage2("s_audio", "s_emb"), work, env)  # no --shard: the merge
    assert merge.returncode == 0, merge.stderr
    for folder in ("s_audio/degraded", "s_emb"):
        assert not (work / folder / shards.SHARDS_DIR).exists()
    assert (work / "s_audio" / "manifest.csv").read_bytes() == (
        work / "u_audio" / "manifest.csv"
    ).read_bytes()
    assert (work / "s_emb" / "manifest.csv").read_bytes() == (
        work / "u_emb" / "manifest.csv"
    ).read_bytes()
    assert _tree(work / "s_audio", ".wav") == _tree(work / "u_audio", ".wav")
    s_npy, u_npy = _tree(work / "s_emb", ".npy"), _tree(work / "u_emb", ".npy")
    assert len(s_npy) == 2 * 3 * N_FILES and s_npy == u_npy

    # Stage 3: three shards at once, then the merge, against the unsharded run.
    unsharded = _run(_stage3("u_audio", "u_emb", "u_results"), work, env)
    assert unsharded.returncode == 0, unsharded.stderr
    runs = _concurrently(
        [_stage3("s_audio", "s_emb", "s_results", "--shard", f"{k}/3") for k in (1, 2, 3)],
        work,
        env,
    )
    assert [rc for rc, _ in runs] == [0, 0, 0], runs
    assert not (work / "s_results" / "pair_metrics.csv").exists()
    merged = _run(_stage3("s_audio", "s_emb", "s_results"), work, env)
    assert merged.returncode == 0, merged.stderr
    assert not (work / "s_results" / shards.SHARDS_DIR).exists()
    for name in ("pair_metrics.csv", "summary_by_degradation.csv", "correlations.csv"):
        assert (work / "s_results" / name).read_bytes() == (
            work / "u_results" / name
        ).read_bytes(), name
    with open(work / "s_results" / "pair_metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 * N_FILES
    assert all(r["pesq_wb_status"] == "ok" and r["openl3_cosine_status"] == "ok" for r in table)


@pytest.mark.slow
def test_a_killed_shard_is_named_and_the_merge_succeeds_after_its_rerun(study, tmp_path):
    src, env = study
    work = tmp_path
    shutil.copytree(src / "stage1", work / "audio")
    for k in (1, 3):
        out = _run(_stage2("audio", "emb", "--shard", f"{k}/3"), work, env)
        assert out.returncode == 0, out.stderr
    slow = subprocess.Popen(
        _stage2("audio", "emb", "--shard", "2/3"),
        cwd=work,
        env=_env(work, PERCEPTUAL_AUDIO_FAKE_SECONDS="2"),
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = shards.Shard(2, 3).fragment_dir(work / "emb") / LOCK_NAME
    deadline = time.time() + 120
    while not lock.exists():
        assert time.time() < deadline and slow.poll() is None
        time.sleep(0.05)
    busy = _run(_stage2("audio", "emb"), work, env)
    assert busy.returncode == 1
    assert "shard 2/3 (pid" in busy.stderr and "still running" in busy.stderr
    slow.send_signal(signal.SIGKILL)
    slow.wait(timeout=60)

    before = (work / "audio" / "manifest.csv").read_bytes()
    failed = _run(_stage2("audio", "emb"), work, env)
    assert failed.returncode == 1
    assert (
        "cannot merge the 3 shards of emb: shard 2/3 is unfinished (no record.json in "
        "emb/.shards/2-of-3: it was killed or failed before the end); run it again: "
        "extract_embeddings.py ... --models openl3 --shard 2/3. Nothing merged"
    ) in failed.stderr
    assert (work / "audio" / "manifest.csv").read_bytes() == before  # nothing half-merged
    assert not (work / "emb" / "manifest.csv").exists()

    rerun = _run(_stage2("audio", "emb", "--shard", "2/3", workers=2), work, env)
    assert rerun.returncode == 0, rerun.stderr
    other = _run(_stage2("audio", "emb", "--seed", "3"), work, env)
    assert other.returncode == 1
    assert (
        "shards 1/3, 2/3, 3/3 ran with other parameters than this run (seed: 0 there, 3 here)"
        in (other.stderr)
    )

    merged = _run(_stage2("audio", "emb"), work, env)
    assert merged.returncode == 0, merged.stderr
    # Thread counts change a real network's rounding (the stand-in's values do not depend on it).
    assert (
        "openl3: the shards ran with different torch thread counts (shard 1: 1, shard 2: 2, "
        "shard 3: 1)"
    ) in merged.stderr
    assert (work / "audio" / "manifest.csv").read_bytes() == (
        src / "u_audio" / "manifest.csv"
    ).read_bytes()
    assert _tree(work / "emb", ".npy") == _tree(src / "u_emb", ".npy")
    again = _run(_stage2("audio", "emb", "--merge-shards"), work, env)
    assert again.returncode == 1
    assert "--merge-shards: no shard fragments in audio/degraded or the model folders" in (
        again.stderr
    )


@pytest.mark.slow
def test_stage_4_refuses_unmerged_pair_metrics(study, tmp_path):
    work, env = study
    results = tmp_path / "results"
    (results / shards.SHARDS_DIR / "1-of-2").mkdir(parents=True)  # shards ran, no merge yet
    out = _run(
        [sys.executable, str(REPO_ROOT / "visualize_results.py"), "--results-dir", str(results)],
        work,
        env,
    )
    assert out.returncode == 1
    assert (
        f"{results / shards.SHARDS_DIR} holds shard results that are not merged yet: run "
        "calculate_metrics.py with the same options and without --shard to merge them, then "
        "this stage"
    ) in out.stderr
    assert "holds no pair_metrics.csv" not in out.stderr  # the one message that helps


@pytest.mark.slow
def test_the_slurm_scripts_run_a_sharded_study_as_array_tasks_would(study, tmp_path):
    """The sbatch scripts run by bash with the variables Slurm sets for array tasks (the
    ``#SBATCH`` lines are comments to bash); a real single-node Slurm run is in the README."""
    src, env = study
    work = tmp_path
    shutil.copytree(src / "stage1", work / "test_audio")
    slurm = REPO_ROOT / "scripts" / "slurm"
    env = dict(
        env,
        PA_PROJECT=str(REPO_ROOT),
        PA_WORKDIR=str(work),
        PA_PYTHON=sys.executable,
        PA_DEVICE="cpu",
        PA_SHARDS="3",
        SLURM_CPUS_PER_TASK="1",
        PA_STAGE2_ARGS=f"--degradations {DEGRADATIONS} --models openl3 --openl3-dir emb -q",
        PA_STAGE3_ARGS=f"--models openl3 --openl3-dir emb --metrics {METRICS} --bootstrap 200 -q",
        PA_STAGE4_ARGS="-q",
    )

    def job(script: str, task: int | None = None) -> subprocess.Popen:
        e = dict(env, **({"SLURM_ARRAY_TASK_ID": str(task)} if task else {}))
        return subprocess.Popen(
            ["bash", str(slurm / script)], cwd=work, env=e, stderr=subprocess.PIPE, text=True
        )

    for script in ("stage2_shard.sbatch", "stage3_shard.sbatch"):
        tasks = [job(script, k) for k in (1, 2, 3)]
        assert [p.wait(timeout=600) for p in tasks] == [0, 0, 0], [p.stderr.read() for p in tasks]
        merge = (
            "stage2_merge.sbatch" if script.startswith("stage2") else "stage3_merge_report.sbatch"
        )
        p = job(merge)
        assert p.wait(timeout=600) == 0, p.stderr.read()
    assert (work / "test_audio" / "manifest.csv").read_bytes() == (
        src / "u_audio" / "manifest.csv"
    ).read_bytes()
    assert _tree(work / "emb", ".npy") == _tree(src / "u_emb", ".npy")
    with open(work / "results" / "pair_metrics.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 2 * N_FILES
    assert (work / "results" / "visualizations" / "report.html").is_file()
    for folder in ("test_audio/degraded", "emb", "results"):
        assert not (work / folder / shards.SHARDS_DIR).exists()
    unset = subprocess.run(
        ["bash", str(slurm / "stage2_shard.sbatch")],
        cwd=work,
        env={k: v for k, v in env.items()},
        capture_output=True,
        text=True,
    )
    assert unset.returncode != 0
    assert "run this script as a job array (sbatch --array=1-N)" in unset.stderr
