"""Stage 3 with restorations: restored pairs scored like degraded ones, kept out of the
statistics, and loss_audit.csv equal to an independent pandas computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import speechlike, write_audio

from perceptual_audio import conversion, extract_stage, metrics_stage

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


def test_the_report_has_a_loss_audit_section_after_the_key_findings(study):
    from perceptual_audio import visualize_stage

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
    assert html.count("data:audio/wav;base64,") == 4  # clean, degraded, two restorations
    assert "restored: sisdr" in html
