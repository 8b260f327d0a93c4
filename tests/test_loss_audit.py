"""Stage 3 with restorations: restored pairs scored like degraded ones, kept out of the
statistics, and loss_audit.csv equal to an independent pandas computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import speechlike, write_audio

from perceptual_audio.stages import convert as conversion
from perceptual_audio.stages import extract as extract_stage
from perceptual_audio.stages import score as metrics_stage

SR = 16000
JUDGES = ["pesq_wb", "stoi", "si_sdr"]
HIGHER = {"pesq_wb": True, "stoi": True, "si_sdr": True}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    for i in range(3):
        write_audio(root / "in" / f"s{i}.wav", speechlike(1.5, 100 + 30 * i, seed=i), SR)
    audio = root / "test_audio"
    assert conversion.main(["--input", str(root / "in"), "--output", str(audio), "-q"]) == 0
    rc = extract_stage.main(
        ["--input-dir", str(audio), "--degradations", "noise:high,noise:low", "--models",
         "none", "--restore", "l1,sisdr", "--restore-on", "noise:high", "--restore-steps",
         "25", "--workers", "1", "-q"]
    )  # fmt: skip
    assert rc == 0
    rc = metrics_stage.main(
        ["--audio-dir", str(audio), "--results-dir", str(root / "results"), "--models", "none",
         "--metrics", ",".join(JUDGES), "--bootstrap", "200", "-q"]
    )  # fmt: skip
    assert rc == 0
    return root


@pytest.mark.slow  # the study fixture runs stages 1-3 with restorations (3 s)
def test_restored_pairs_are_scored_and_kept_out_of_the_statistics(study):
    pairs = pd.read_csv(study / "results" / "pair_metrics.csv")
    assert sorted(pairs["kind"].unique()) == ["degraded", "restored"]
    restored = pairs[pairs["kind"] == "restored"]
    assert len(restored) == 6 and set(restored["loss"]) == {"l1", "sisdr"}
    assert set(restored["reference_path"]) == {f"clean/s{i}.wav" for i in range(3)}
    assert restored["degraded_path"].str.startswith("restored/").all()
    summary = pd.read_csv(study / "results" / "summary_by_degradation.csv")
    assert set(summary["level"]) == {"high", "low"}  # no restored rows as a level
    assert (summary["n_pairs"] == 3).all()  # three recordings, degraded pairs only


def _independent(pairs: pd.DataFrame) -> pd.DataFrame:
    deg = pairs[pairs["kind"] == "degraded"].set_index(["reference_path", "family", "level"])
    rows = []
    for (loss, fam, lev), g in pairs[pairs["kind"] == "restored"].groupby(
        ["loss", "family", "level"]
    ):
        d = deg.loc[[(r, fam, lev) for r in g["reference_path"]]]
        for j in JUDGES:
            change = g[j].to_numpy() - d[j].to_numpy()
            rows.append({"loss": loss, "judge": j, "n": len(g),
                         "degraded_mean": d[j].mean(), "restored_mean": g[j].mean(),
                         "change_mean": change.mean(), "fraction_improved": (change > 0).mean(),
                         "self": loss == "sisdr" and j == "si_sdr"})  # fmt: skip
    return pd.DataFrame(rows).set_index(["loss", "judge"]).sort_index()


@pytest.mark.slow  # the study fixture runs stages 1-3 with restorations (3 s)
def test_loss_audit_equals_an_independent_computation(study):
    pairs = pd.read_csv(study / "results" / "pair_metrics.csv")
    audit = pd.read_csv(study / "results" / "loss_audit.csv")
    assert set(audit["scope"]) == {"all", "family", "level"}
    overall = audit[audit["scope"] == "all"].set_index(["loss", "judge"]).sort_index()
    expected = _independent(pairs)
    for col in ("n", "degraded_mean", "restored_mean", "change_mean", "fraction_improved"):
        np.testing.assert_allclose(overall[col], expected[col], rtol=1e-9, err_msg=col)
    assert list(overall["self"]) == list(expected["self"])
    # one family and one level restored: those scopes equal the overall rows
    level = audit[audit["scope"] == "level"].set_index(["loss", "judge"]).sort_index()
    np.testing.assert_allclose(level["change_mean"], overall["change_mean"])
    assert (overall["change_ci_low"] <= overall["change_mean"]).all()
    assert (overall["change_mean"] <= overall["change_ci_high"]).all()
    # the optimised baselines raise SI-SDR on every recording
    assert (overall.loc[(slice(None), "si_sdr"), "fraction_improved"] == 1.0).all()


@pytest.mark.slow  # the study fixture runs stages 1-3 with restorations (3 s)
def test_the_report_has_a_loss_audit_section_after_the_key_findings(study):
    from perceptual_audio.stages import visualize as visualize_stage

    out = study / "vis"
    rc = visualize_stage.main(
        ["--results-dir", str(study / "results"), "--output-dir", str(out), "-q",
         "--audio-dir", str(study / "test_audio")]
    )  # fmt: skip
    assert rc == 0
    text = (out / "analysis_report.txt").read_text()
    key, audit = text.find("Key findings"), text.find("Loss audit")
    assert 0 <= key < audit
    after_key = [text.find(t, key + 1) for t in ("Listen", "Setup")]
    assert all(audit < t for t in after_key if t >= 0)
    assert "sisdr (3 restored files): improved" in text
    assert (out / "loss_audit_heatmap.png").is_file()
    assert (out / "loss_audit_by_family.png").is_file()
    html = (out / "report.html").read_text()
    assert html.count('src="data:audio/mpeg;base64,') >= 4  # clean, degraded, two restorations
    assert "restored: sisdr" in html


@pytest.mark.slow  # each stage-3 run spawns its worker process (2-5 s)
def test_webmushra_export_and_results_round_trip(study, tmp_path):
    import csv
    import subprocess
    import sys
    from pathlib import Path

    import soundfile as sf

    from perceptual_audio.stages import visualize as visualize_stage

    export = tmp_path / "mushra"
    rc = visualize_stage.main(
        ["--results-dir", str(study / "results"), "--output-dir", str(tmp_path / "vis"),
         "--audio-dir", str(study / "test_audio"), "--export-listening-test", str(export),
         "--audio-examples", "0", "-q"]
    )  # fmt: skip
    assert rc == 0
    config = (export / "configs" / "loss_audit.yaml").read_text()
    assert config.count("    - type: mushra") == 3 and "testId: loss_audit" in config
    assert "reference: configs/resources/audio/trial001/reference.wav" in config
    assert "          anchor35: configs/resources/audio/trial001/anchor35.wav" in config
    trial = export / "configs" / "resources" / "audio" / "trial001"
    names = sorted(p.name for p in trial.iterdir())
    assert names == ["anchor35.wav", "degraded.wav", "l1.wav", "reference.wav", "sisdr.wav"]
    lengths = {sf.info(trial / n).frames for n in names}
    assert len(lengths) == 1  # webMUSHRA needs equal lengths
    # the anchor holds nothing above 3.5 kHz (60 dB down at 5 kHz and above)
    anchor, sr = sf.read(trial / "anchor35.wav")
    spec = np.abs(np.fft.rfft(anchor))
    freqs = np.fft.rfftfreq(anchor.size, 1 / sr)
    assert spec[freqs >= 5000].max() < 1e-3 * spec.max()
    # webMUSHRA's results/<testId>/mushra.csv (service/write.php), two listeners
    stimuli = pd.read_csv(export / "stimuli.csv", keep_default_na=False)
    result = tmp_path / "mushra.csv"
    with open(result, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["session_test_id", "listener", "trial_id", "rating_stimulus",
                    "rating_score", "rating_time", "rating_comment"])  # fmt: skip
        for k, listener in enumerate(("ann", "bob")):
            for j, r in enumerate(stimuli.itertuples()):
                w.writerow(["loss_audit", listener, r.trial_id, r.stimulus, 10 + j + k, 5000, ""])
    long_path = tmp_path / "ratings.csv"
    script = Path(__file__).resolve().parents[1] / "scripts" / "mushra_to_long.py"
    subprocess.run([sys.executable, str(script), "--webmushra", str(export / "stimuli.csv"),
                    str(result), str(long_path)], check=True)  # fmt: skip
    long = pd.read_csv(long_path, keep_default_na=False)
    assert len(long) == 2 * len(stimuli) == 2 * 3 * 5
    assert set(long[long["degraded"] == ""]["condition"]) == {"reference", "anchor35"}
    rated = long[long["degraded"] != ""]
    assert set(rated["condition"]) == {"noise/high", "l1/noise/high", "sisdr/noise/high"}
    first = rated[(rated["listener"] == "ann")].iloc[0]
    expected = stimuli[(stimuli["path"] == first["degraded"])].index[0] + 10
    assert first["rating"] == expected
    rc = metrics_stage.main(
        ["--audio-dir", str(study / "test_audio"), "--results-dir", str(tmp_path / "res"),
         "--models", "none", "--metrics", "si_sdr", "--bootstrap", "50", "--ratings",
         str(long_path), "-q"]
    )  # fmt: skip
    assert rc == 0
    pairs = pd.read_csv(tmp_path / "res" / "pair_metrics.csv")
    restored = pairs[pairs["kind"] == "restored"]
    assert restored["rating_mean"].notna().all()
    # the listeners are a judge of the loss audit: l1 rated 1 and sisdr 2 above the degraded file
    audit = pd.read_csv(tmp_path / "res" / "loss_audit.csv")
    listeners = audit[(audit["judge"] == "rating_mean") & (audit["scope"] == "all")]
    assert dict(zip(listeners["loss"], listeners["change_mean"], strict=True)) == {
        "l1": pytest.approx(1.0), "sisdr": pytest.approx(2.0)
    }  # fmt: skip
