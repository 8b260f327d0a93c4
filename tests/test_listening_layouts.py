"""Listening tests as people publish them: every accepted ratings layout through stage 1
(``--listening-test``) and stage 3 (``ratings.csv`` and ``--ratings``), conditions named after
stage-2 families (``opus``, ``mp3``, ``noise``), small studies, and bad tables.

The rated audio is made here with the project's real codecs and noise (Opus, MP3, white
noise, band-limiting) from short harmonic tones; every study is built through the real stages
(``main(argv)``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import write_audio

from perceptual_audio import (
    degradations,
    listening,
)
from perceptual_audio import results as results_format
from perceptual_audio.manifest import read_manifest
from perceptual_audio.stages import convert as conversion
from perceptual_audio.stages import extract as extract_stage
from perceptual_audio.stages import score as metrics_stage
from perceptual_audio.stages import visualize as visualize_stage

SR = 16000
#: Condition name as a listening test gives it -> (stage-2 family, level) that makes its audio.
CONDITIONS = {
    "opus": ("opus", "high"),
    "mp3": ("bitrate", "high"),
    "noise": ("noise", "high"),
    "Low-pass 2 kHz": ("bandlimit", "high"),
}
#: MOS (1-5) of each condition, the same for every stimulus up to STIMULUS_OFFSET.
MOS = {"opus": 3.0, "mp3": 3.9, "noise": 2.0, "Low-pass 2 kHz": 2.6}
STIMULUS_OFFSET = 0.1
N_STIMULI = 2
LISTENERS = ("A", "B", "C")
LISTENER_OFFSETS = (-0.5, 0.0, 0.5)


def _tone(seconds: float, f0_hz: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    y = sum((0.85**k) * np.sin(2 * np.pi * k * f0_hz * t) for k in range(1, 30))  # to ~5 kHz
    y = y * (0.6 + 0.4 * np.sin(2 * np.pi * 2.0 * t))
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


def make_audio(root, *, seconds=1.0):
    """``root/audio/s<k>/ref.wav`` and one file per condition made by real processing."""
    audio = root / "audio"
    for s in range(N_STIMULI):
        clean = _tone(seconds, 150 + 60 * s)
        write_audio(audio / f"s{s}/ref.wav", clean, SR, subtype="FLOAT")
        for cond, (family, level) in CONDITIONS.items():
            lev = degradations.FAMILIES[family].levels[level]
            out = degradations.apply_degradation(clean, SR, lev, rng=np.random.default_rng(s))
            write_audio(audio / f"s{s}/{_stem(cond)}.wav", out.audio, SR, subtype="FLOAT")
    return audio


def _stem(condition: str) -> str:
    return condition.replace(" ", "_").lower()


def _mos(cond: str, s: int) -> float:
    return round(MOS[cond] + STIMULUS_OFFSET * s, 3)


def _files():
    for s in range(N_STIMULI):
        for cond in CONDITIONS:
            yield s, cond, f"s{s}/ref.wav", f"s{s}/{_stem(cond)}.wav"


# -- the layouts: rows of the input table and what stage 3 must make of each file ----------------
def _per_listener():
    rows = [
        {"reference": r, "degraded": d, "condition": c, "rating": _mos(c, s) + o, "listener": li}
        for s, c, r, d in _files()
        for li, o in zip(LISTENERS, LISTENER_OFFSETS, strict=True)
    ]
    expect = {(s, c): (_mos(c, s), 0.5, 3) for s, c, *_ in _files()}
    return rows, expect


def _anonymous():
    rows, expect = _per_listener()
    return [{k: v for k, v in r.items() if k != "listener"} for r in rows], expect


def _single_rating():
    rows = [{"reference": r, "degraded": d, "condition": c, "rating": _mos(c, s)}
            for s, c, r, d in _files()]  # fmt: skip
    return rows, {(s, c): (_mos(c, s), math.nan, 1) for s, c, *_ in _files()}


def _means():
    rows = [{"reference": r, "degraded": d, "condition": c, "rating_mean": _mos(c, s)}
            for s, c, r, d in _files()]  # fmt: skip
    return rows, {(s, c): (_mos(c, s), math.nan, math.nan) for s, c, *_ in _files()}


def _means_sd_n():
    rows = [
        {"reference": r, "degraded": d, "condition": c, "rating_mean": _mos(c, s),
         "rating_sd": 0.25 * (s + 1), "rating_n": 20 + s}
        for s, c, r, d in _files()
    ]  # fmt: skip
    return rows, {(s, c): (_mos(c, s), 0.25 * (s + 1), 20 + s) for s, c, *_ in _files()}


def _mixed_files():
    """Per-listener rows for stimulus 0, a row of means per file of stimulus 1."""
    per, exp_per = _per_listener()
    mean, exp_mean = _means_sd_n()
    rows = [r for r in per if r["reference"] == "s0/ref.wav"]
    rows += [r for r in mean if r["reference"] == "s1/ref.wav"]
    expect = {k: (exp_per if k[0] == 0 else exp_mean)[k] for k in exp_per}
    return rows, expect


LAYOUTS = {
    "rating+listener": _per_listener,
    "rating, no listener": _anonymous,
    "one rating per file, no listener": _single_rating,
    "rating_mean": _means,
    "rating_mean+sd+n": _means_sd_n,
    "listeners for some files, means for others": _mixed_files,
}


def _write_table(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _run_123(root, audio, test, *, ratings=None, metrics="pesq_wb,si_sdr", models="none",
             bootstrap="0"):  # fmt: skip
    ta, res = root / "test_audio", root / "results"
    assert conversion.main(["--input", str(audio), "--output", str(ta), "--sr", str(SR),
                            "--listening-test", str(test), "--rating-scale", "1:5", "-q"]) == 0  # fmt: skip
    assert extract_stage.main(["--input-dir", str(ta), "--degradations", "none", "--models",
                               models, "--cdpam-dir", str(root / "cdpam_embeddings"),
                               "--workers", "1", "-q"]) == 0  # fmt: skip
    args = ["--audio-dir", str(ta), "--results-dir", str(res), "--models", models, "--metrics",
            metrics, "--cdpam-dir", str(root / "cdpam_embeddings"), "--rating-scale", "1:5",
            "--bootstrap", bootstrap, "--workers", "1", "-q"]  # fmt: skip
    if ratings is not None:
        args += ["--ratings", str(ratings)]
    assert metrics_stage.main(args) == 0
    return ta, res


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    return make_audio(tmp_path_factory.mktemp("lt_audio"))


# -- every layout through stage 1 and stage 3 --------------------------------------------------
def _check_pairs(res, expect):
    pairs = results_format.read_pair_table(res / results_format.PAIR_METRICS_NAME)
    assert len(pairs) == len(expect)
    for (s, cond), (mean, sd, n) in expect.items():
        row = pairs[pairs["degraded_path"] == f"rated/{_folder(cond)}/s{s}/{_stem(cond)}.wav"]
        row = row.iloc[0]
        assert row["condition"] == cond and row["level"] == cond
        assert row["rating_mean"] == pytest.approx(mean, abs=1e-12)
        for got, want in ((row["rating_sd"], sd), (row["rating_n"], n)):
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want)
    return pairs


def _folder(cond):
    return listening.condition_folder(cond)


@pytest.mark.slow
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_through_stage1_and_stage3(tmp_path, audio, layout):
    rows, expect = LAYOUTS[layout]()
    test = _write_table(tmp_path / "test.csv", rows)
    ta, res = _run_123(tmp_path, audio, test)
    # ratings.csv: the one format, read back by the one reader to the table's rows.
    given = listening.read_rating_table(test, scale=(1, 5))
    kept = listening.read_rating_table(ta / listening.RATINGS_NAME, scale=(1, 5))
    assert len(kept) == len(given)
    for g, k in zip(given, kept, strict=True):
        assert (k.input_reference, k.input_degraded) == (g.reference, g.degraded)
        assert k.degraded == f"rated/{_folder(g.condition)}/{g.degraded}"
        assert (k.condition, k.listener, k.votes) == (g.condition, g.listener, g.votes)
        for a, b in ((k.rating, g.rating), (k.mean, g.mean), (k.sd, g.sd)):
            assert (math.isnan(a) and math.isnan(b)) or a == b
    _check_pairs(res, expect)
    agr = pd.read_csv(res / listening.AGREEMENT_NAME, keep_default_na=False)
    ceil = agr[agr["metric"] == "ceiling"].set_index("level")
    if layout == "rating+listener":  # listeners differ by an offset only: perfect halves
        assert float(ceil.loc["file", "pearson"]) == pytest.approx(1.0)
        assert ceil.loc["file", "note"] == (
            "no CI: 2 stimuli (the bootstrap resamples stimuli and needs at least 5)"
        )
    elif layout == "one rating per file, no listener":
        assert ceil.loc["file", "note"] == (
            "ceiling not estimated: the table names no listeners and gives one rating per "
            "file, so no file's ratings can be split into halves"
        )
    elif layout == "rating, no listener":
        assert ceil.loc["file", "note"].startswith(
            "no listener column: each rating counted as its own listener"
        )
    else:
        n_means = 4 if layout.startswith("listeners for some") else 8
        assert ceil.loc["file", "note"] == (
            "ceiling not estimated: a split-half needs per-listener ratings, and "
            f"{n_means} of 8 rated files have only a mean rating (rating_mean)"
        )
        assert ceil.loc["file", "pearson"] == ""
    # The same table given to stage 3 (input paths) gives the same pair ratings.
    res2 = tmp_path / "results_from_option"
    assert metrics_stage.main(["--audio-dir", str(ta), "--results-dir", str(res2), "--models",
                               "none", "--metrics", "si_sdr", "--rating-scale", "1:5",
                               "--bootstrap", "0", "--ratings", str(test), "-q"]) == 0  # fmt: skip
    _check_pairs(res2, expect)


# -- bad tables: one message naming file and line, nothing written -------------------------------
HEADER_MEANS = "reference,degraded,condition,rating_mean,rating_sd,rating_n\n"
HEADER_BOTH = "reference,degraded,condition,rating,listener,rating_mean\n"
GOOD_MEANS = "s0/ref.wav,s0/opus.wav,opus,3.9,0.5,20\ns0/ref.wav,s0/mp3.wav,mp3,3.4,0.5,20\n"


@pytest.mark.parametrize(
    "text, message",
    [
        (
            HEADER_MEANS + GOOD_MEANS + "s0/ref.wav,s0/noise.wav,noise,5.5,0.5,20\n",
            "line 4: rating_mean 5.5 is outside the scale 1-5 (set --rating-scale MIN:MAX for "
            "another scale)",
        ),
        (
            HEADER_MEANS + GOOD_MEANS + "s0/ref.wav,s0/noise.wav,noise,2.1,-0.2,20\n",
            "line 4: rating_sd -0.2 is below zero",
        ),
        (
            HEADER_MEANS + "s0/ref.wav,s0/opus.wav,opus,3.9,0.5,0\n" + GOOD_MEANS,
            "line 2: rating_n '0' is not a positive integer (the number of ratings behind "
            "rating_mean)",
        ),
        (
            HEADER_MEANS + GOOD_MEANS + "s0/ref.wav,s0/noise.wav,noise,2.1,0.5,12.5\n",
            "line 4: rating_n '12.5' is not a positive integer",
        ),
        (
            HEADER_MEANS + GOOD_MEANS + "s0/ref.wav,s0/noise.wav,noise,2.1,0.5,many\n",
            "line 4: rating_n 'many' is not a positive integer",
        ),
        (
            HEADER_BOTH + "s0/ref.wav,s0/opus.wav,opus,4,A,\n"
            "s0/ref.wav,s0/mp3.wav,mp3,,,3.4\ns0/ref.wav,s0/opus.wav,opus,,,3.9\n",
            "line 4: s0/opus.wav (opus) has a row of means and per-listener ratings (first on "
            "line 2); give a file one or the other",
        ),
        (
            HEADER_BOTH + "s0/ref.wav,s0/opus.wav,opus,4,A,3.9\n",
            "line 2: both rating and rating_mean; a row is one listener's rating or a file's "
            "mean rating, not both",
        ),
        (
            HEADER_BOTH + "s0/ref.wav,s0/opus.wav,opus,4,A,\ns0/ref.wav,s0/mp3.wav,mp3,3,,\n",
            "line 3: empty listener (line 2 names one: name the listener of every rating, or "
            "of none)",
        ),
        (
            HEADER_MEANS + GOOD_MEANS + "s0/ref.wav,s0/opus.wav,opus,3.0,,\n",
            "line 4: a second rating_mean for s0/opus.wav (opus) (first on line 2); one mean "
            "per file",
        ),
        ("reference,degraded,condition\na,b,c\n", "missing column(s) rating (or rating_mean)"),
    ],
)
def test_bad_tables_one_message_nothing_written(tmp_path, audio, caplog, text, message):
    test = tmp_path / "bad.csv"
    test.write_text(text)
    with pytest.raises(listening.ListeningTestError) as e:
        listening.read_rating_table(test, scale=(1, 5))
    assert str(e.value).startswith(f"{test}") and message in str(e.value)
    out = tmp_path / "ta"
    rc = conversion.main(["--input", str(audio), "--output", str(out), "--listening-test",
                          str(test), "--rating-scale", "1:5"])  # fmt: skip
    assert rc == 2 and f"{test}" in caplog.text and message in caplog.text
    assert not out.exists()


@pytest.mark.slow
def test_stage3_mixed_across_names_writes_nothing(tmp_path, audio, caplog):
    """One file rated per listener under its input path and as a mean under its manifest
    path: caught after both names resolve to the same file."""
    rows, _ = _means_sd_n()
    ta, _res = _run_123(tmp_path, audio, _write_table(tmp_path / "t.csv", rows), metrics="si_sdr")
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "reference,degraded,condition,rating,listener,rating_mean\n"
        "s0/ref.wav,s0/opus.wav,opus,4,A,\n"
        "s0/ref.wav,s0/mp3.wav,mp3,3,A,\n"
        "s0/ref.wav,s0/noise.wav,noise,2,A,\n"
        "clean/s0/ref.wav,rated/opus/s0/opus.wav,opus,,,3.9\n"
    )
    res = tmp_path / "res_bad"
    rc = metrics_stage.main(["--audio-dir", str(ta), "--results-dir", str(res), "--models",
                             "none", "--metrics", "si_sdr", "--rating-scale", "1:5",
                             "--ratings", str(bad), "-q"])  # fmt: skip
    assert rc == 2 and not res.exists()
    assert (
        f"{bad}, line 5: rated/opus/s0/opus.wav has a row of means and per-listener ratings "
        "(first on line 2); give a file one or the other"
    ) in caplog.text


# -- a published-style MOS table through all four stages -----------------------------------------
@pytest.mark.slow
def test_mos_table_with_codec_conditions_through_all_four_stages(tmp_path, audio):
    """Per-file MOS, no listener column, conditions named opus/mp3/noise: imported as given,
    embedded by stage 2, scored and ranked by stage 3, reported by stage 4; two stimuli, so no
    CIs and no ceiling, and the report says why instead of naming a winner."""
    rows, expect = _means_sd_n()
    test = _write_table(tmp_path / "mos.csv", rows)
    ta, res = _run_123(tmp_path, audio, test, metrics="classic,cdpam", models="cdpam",
                       bootstrap="200")  # fmt: skip
    deg = {r.path: r for r in read_manifest(ta) if r.kind == "degraded"}
    opus = deg["rated/opus/s0/opus.wav"]
    assert (opus.family, opus.level, opus.source) == ("listening_test", "opus", "clean/s0/ref.wav")
    assert deg["rated/Low-pass_2_kHz/s1/low-pass_2_khz.wav"].level == "Low-pass 2 kHz"
    assert not list(ta.glob("degraded/**/*.wav"))  # stage 2's folder stays stage 2's
    emb = pd.read_csv(tmp_path / "cdpam_embeddings" / "manifest.csv")
    assert set(deg) <= set(emb["path"]) and (emb["status"] == "ok").all()
    pairs = _check_pairs(res, expect)
    assert pairs["cdpam_distance"].notna().all() and pairs["pesq_wb"].notna().all()
    summary = pd.read_csv(res / results_format.SUMMARY_NAME)
    assert set(summary["level"]) == set(CONDITIONS)
    agr = pd.read_csv(res / listening.AGREEMENT_NAME, keep_default_na=False)
    f = agr[agr["level"] == "file"].set_index("metric")
    assert (f.drop("ceiling")["note"] == "no CI: 2 stimuli (the bootstrap resamples stimuli "
            "and needs at least 5)").all()  # fmt: skip
    assert f.loc["ceiling", "note"].startswith("ceiling not estimated: a split-half needs")
    c = agr[agr["level"] == "condition"].set_index("metric")
    assert c.loc["pesq_wb", "n"] == 4 and c.loc["pesq_wb", "note"].startswith("no CI: 2 stimuli")
    assert "no P.1401 mapping: 4 conditions" in c.loc["pesq_wb", "note"]

    out = res / "visualizations"
    assert visualize_stage.main(["--results-dir", str(res), "--output-dir", str(out), "-q"]) == 0
    text = " ".join((out / "analysis_report.txt").read_text().split())
    assert "What this study cannot give: File level, all metrics: no CI: 2 stimuli" in text
    assert "File level: ceiling not estimated: a split-half needs per-listener ratings" in text
    assert "agrees best with the listeners" not in text
    assert "ranks first by its point value" in text and "cannot say that either leads" in text
    for cond in CONDITIONS:
        assert cond in text
    assert "Listening test (" not in text  # conditions as the test names them


# -- key findings: a winner only where the CIs support its lead ---------------------------------
def _agreement(a_ci, b_ci, note=""):
    """Two metrics at file level (Pearson with the given CIs) and a ceiling row."""
    rows = []
    for metric, r, (lo, hi) in (("pesq_wb", 0.8, a_ci), ("stoi", 0.6, b_ci)):
        rows.append({"metric": metric, "level": "file", "n": 8, "pearson": r,
                     "pearson_ci_low": lo, "pearson_ci_high": hi, "note": note})  # fmt: skip
    rows.append({"metric": "ceiling", "level": "file", "n": 8, "pearson": 0.9,
                 "pearson_ci_low": 0.85, "pearson_ci_high": 0.95, "note": ""})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "a_ci, b_ci, note, words",
    [
        ((0.7, 0.9), (0.4, 0.65), "", "PESQ-WB agrees best with the listeners: Pearson r 0.80 "
         "[0.70, 0.90], its CI above the runner-up STOI's (0.60 [0.40, 0.65])"),
        ((0.5, 0.9), (0.4, 0.7), "", "PESQ-WB ranks first: Pearson r 0.80 [0.50, 0.90]; the "
         "runner-up STOI (0.60 [0.40, 0.70]): the CIs overlap, so this test does not separate "
         "the two"),
        ((math.nan, math.nan), (math.nan, math.nan), "no CI: 1 stimulus (the bootstrap "
         "resamples stimuli and needs at least 5)", "PESQ-WB ranks first by its point value, "
         "Pearson r 0.80 (no CI: 1 stimulus), ahead of STOI (0.60); without CIs this test cannot "
         "say that either leads"),
    ],
)  # fmt: skip
def test_key_findings_name_a_winner_only_when_cis_separate(a_ci, b_ci, note, words):
    from perceptual_audio.report.vocabulary import metric_info

    text = listening.agreement_findings(
        _agreement(a_ci, b_ci, note), lambda m: metric_info(m).label, classic=["pesq_wb", "stoi"]
    )
    assert text[0] == f"At file level (n = 8), {words}; the listener ceiling is 0.90."


def test_listening_condition_labels_are_the_tests_own_names():
    from perceptual_audio.report.vocabulary import condition_label

    assert condition_label("listening_test", "Proposed 1.38 16kHz") == "Proposed 1.38 16kHz"
    assert condition_label("listening_test", "opus") == "opus"
    assert condition_label("opus", "high") == "Opus (High)"
