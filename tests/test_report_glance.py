"""At a glance, the report's first section (perceptual_audio.report.glance).

Without ratings: a synthetic results folder (written with stage 3's own statistics functions)
whose pairs carry a known latent quality, plus the two reference-panel columns derived from it:
ViSQOL audio (a similarity) and Zimtohrli (a distance). The panel agreement is recomputed here
from its definition (Spearman with the panel's mean rank percentile, other members only).
With ratings: the synthetic listening test of test_listening through the real stages 1-3.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from _visual_fixtures import make_pairs, write_results
from scipy import stats as sps

from perceptual_audio import metrics, report
from perceptual_audio.report import glance


def _with_panel(pairs: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    q = (pairs["pesq_wb"] - 1.0) / 3.5  # the fixture's latent quality
    out = pairs.copy()
    out["visqol_audio"] = 1.0 + 3.5 * q + rng.normal(0, 0.05, len(q))
    out["zimtohrli"] = 0.1 * (1.0 - q) + rng.normal(0, 0.004, len(q))
    out["visqol_audio_status"] = "ok"
    out["zimtohrli_status"] = "ok"
    return out


@pytest.fixture(scope="module")
def panel_study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("glance")
    return report.load_results(write_results(folder, _with_panel(make_pairs()), n_bootstrap=50))


@pytest.fixture(scope="module")
def classic_study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("glance_classic")
    return report.load_results(write_results(folder, make_pairs(), n_bootstrap=50))


def _oriented_pct(pairs: pd.DataFrame, metric: str) -> np.ndarray:
    sign = 1.0 if metrics.higher_is_better(metric) else -1.0
    return (sign * pairs[metric]).rank(pct=True).to_numpy()


def test_the_catalogue_names_the_headline_measures_and_the_panel():
    cols = metrics.metric_columns(["openl3", "cdpam"])
    assert metrics.headline_metric_names(cols) == [
        "pesq_wb", "stoi", "si_sdr", "visqol_audio", "zimtohrli", "peaq_odg", "twof_mms",
        "openl3_cosine", "cdpam_cosine", "cdpam_distance",
    ]  # fmt: skip
    assert metrics.panel_metric_names(cols) == ["visqol_audio", "zimtohrli", "peaq_odg", "twof_mms"]
    assert "ODAQ" in metrics.describe("peaq_odg").validated_by
    assert "Chinen" in metrics.describe("visqol_audio").validated_by
    assert "zimtohrli" in metrics.describe("zimtohrli").validated_by
    assert not metrics.describe("zimtohrli_mos").validated  # one vote per metric
    assert not metrics.describe("pesq_wb").validated  # a classic beside the panel, not in it


def test_panel_agreement_is_the_spearman_with_the_other_members_mean_rank(panel_study):
    table = glance.glance_section(panel_study).blocks[1]
    assert table.columns == [
        "Rank",
        "Measure",
        "Role",
        "Agreement ρ [95% CI]",
        "Pairs (recordings)",
    ]
    by_label = {r[1]: r for r in table.rows}
    pairs = panel_study.pairs
    # OpenL3's cosine against the mean rank of both members.
    panel = (_oriented_pct(pairs, "visqol_audio") + _oriented_pct(pairs, "zimtohrli")) / 2
    rho = sps.spearmanr(pairs["openl3_cosine"], panel).statistic
    row = by_label["OpenL3 cosine (frame-aligned)"]
    assert row[3].sort == pytest.approx(rho, abs=1e-12)
    assert row[3].text.startswith(f"{rho:.2f} [")
    assert row[2] == "neural"
    assert row[4].text == f"{len(pairs)} (6)"
    lo, hi = (float(x) for x in row[3].text.split("[")[1].rstrip("]").split(","))
    assert lo <= rho <= hi  # a CI: 6 recordings
    # A member is compared with the other member only; Zimtohrli (a distance) is turned.
    zim = by_label["Zimtohrli distance"]
    assert zim[2] == "panel"
    expected = -sps.spearmanr(pairs["zimtohrli"], pairs["visqol_audio"]).statistic
    assert zim[3].sort == pytest.approx(expected, abs=1e-12)
    # CDPAM's distance agrees with the panel: its orientation is turned too.
    assert by_label["CDPAM distance (learned)"][3].sort > 0.8
    # Ranked: VGGish runs the wrong way on compression, so it ranks below OpenL3.
    ranks = {r[1]: r[0].sort for r in table.rows}
    assert ranks["OpenL3 cosine (frame-aligned)"] < ranks["VGGish cosine (frame-aligned)"]
    assert [r[0].sort for r in table.rows] == list(range(1, len(table.rows) + 1))
    values = [r[3].sort for r in table.rows]
    assert values == sorted(values, reverse=True)
    # Headline measures only: no pooled cosine, no PESQ-NB.
    assert not any("pooled" in r[1] or "PESQ-NB" in r[1] for r in table.rows)


def test_panel_verdict_names_the_evidence_and_its_uncertainty(panel_study):
    section = report.build_report(panel_study)[0]
    assert section.title == "At a glance"
    verdict = section.blocks[0].text
    top = section.blocks[1].rows[0]
    assert verdict.startswith(
        "Without listening-test ratings, the best evidence here is agreement with ViSQOL "
        f"audio and Zimtohrli distance: {top[1].split(' [')[0]} agrees most (ρ = {top[3].sort:.2f} ["
    )
    assert f"{len(panel_study.pairs)} pairs from 6 recordings" in verdict
    assert "The best neural measure, " in verdict and "the best classic one, " in verdict
    assert verdict.count(". ") <= 2  # two or three sentences


def test_without_a_panel_the_classics_stand_in_and_say_so(classic_study):
    table, verdict = glance.panel_glance(classic_study)
    assert "stand-in judges (PESQ-WB and STOI: no validated metric was computed)" in table.caption
    roles = {r[1]: r[2] for r in table.rows}
    assert roles["PESQ-WB [speech]"] == "stand-in judge"
    assert roles["SI-SDR"] == "classic"  # a headline measure, ranked, not a judge
    assert "(not validated against listeners)" in verdict[0]
    assert verdict[-1].startswith("Compute ViSQOL audio and Zimtohrli")


def test_findings_judge_against_the_panel_and_the_setup_cites_it(panel_study):
    findings = report.correlation_findings(panel_study)
    assert findings[0].startswith("Against ViSQOL audio, the neural metric that agrees best")
    assert findings[1].startswith(
        "Against Zimtohrli distance, the neural metric that agrees best is OpenL3 cosine "
        "(frame-aligned) (against a distance: negative means agreement)"
    )
    sections = {s.title: s for s in report.build_report(panel_study)}
    heads = [b.title for b in sections["Key findings"].blocks]
    assert heads[0] == "Against the reference panel"
    cited = next(b for b in sections["Setup"].blocks if getattr(b, "caption", "").startswith(
        "The reference panel"))  # fmt: skip
    assert [r[0] for r in cited.rows] == ["ViSQOL audio", "Zimtohrli distance"]


def test_text_report_leads_with_at_a_glance(panel_study):
    text = report.render_text(report.build_report(panel_study))
    lines = text.splitlines()
    assert lines[4] == "At a glance"
    assert lines[6].startswith("Without listening-test ratings, the best evidence here")
    assert text.index("Spearman ρ with the mean rank of the reference panel") < (
        text.index("Key findings")
    )


def test_fewer_than_five_recordings_says_the_ranking_is_unreliable(tmp_path):
    res = report.load_results(
        write_results(tmp_path, _with_panel(make_pairs(n_recordings=3)), n_bootstrap=20)
    )
    table, verdict = glance.panel_glance(res)
    assert all("[" not in r[3].text for r in table.rows)  # no CI
    assert verdict[-1] == (
        "With 3 recordings (fewer than 5) there are no confidence intervals: the ranking is "
        "not reliable."
    )


def test_fold_keeps_short_text_and_cuts_long_text_at_a_clause():
    from perceptual_audio.report.elements import split_for_fold

    assert split_for_fold("short") == ("short", "")
    text = "The first sentence is here, and it goes on. " + "word " * 60
    shown, rest = split_for_fold(text, 60)
    assert shown == "The first sentence is here, and it goes on." and rest.startswith("word")
    # No clause boundary in the second half: cut at a space, every word kept.
    shown, rest = split_for_fold("Against X: rho = 0.98 " + "n " * 40, 40)
    assert len(shown) <= 40 and shown.startswith("Against X: rho = 0.98")
    shown, rest = split_for_fold("a; " + "b" * 200, 50)
    assert math.isclose(len(shown) + len(rest), 203, abs_tol=3)


@pytest.mark.slow
def test_with_ratings_the_table_ranks_by_the_listeners_and_ends_with_the_ceiling(
    tmp_path_factory,
):
    from test_listening import _stages_1_to_3, make_test

    root = tmp_path_factory.mktemp("glance_lt")
    audio, test = make_test(root)
    _, res, rc3 = _stages_1_to_3(root, audio, test)
    assert rc3 == 0
    results = report.load_results(res)
    table, verdict = glance.listener_glance(results)
    assert table.columns[:4] == ["Rank", "Measure", "Role", "Files: r [95% CI]"]
    last = table.rows[-1]
    assert last[1] == "Listener ceiling (split-half)" and last[2] == "listeners"
    agreement = results.listening
    ranks = {r[1]: r[0].sort for r in table.rows[:-1]}
    # The delayed stimuli break SI-SDR, not the listeners (nor PESQ).
    assert ranks["PESQ-WB [speech]"] < ranks["SI-SDR"]
    pesq = agreement[(agreement.metric == "pesq_wb") & (agreement.level == "file")].iloc[0]
    row = next(r for r in table.rows if r[1] == "PESQ-WB [speech]")
    assert row[3].sort == pytest.approx(pesq["pearson"]) and row[4].sort == pesq["n"]
    assert row[3].text.startswith(f"{pesq['pearson']:.2f} [")
    assert table.columns[-1] == "4 conditions: r"
    ceiling = agreement[(agreement.metric == "ceiling") & (agreement.level == "file")].iloc[0]
    assert f"against a listener ceiling of {ceiling['pearson']:.2f}" in verdict[0]
    against = [
        r for r in table.rows[:-1] if "[" in r[3].text and float(r[3].text.split(", ")[1][:-1]) < 0
    ]
    if against:  # SI-SDR on the delayed stimuli
        assert verdict[-1].endswith("against the listeners (95% CI below 0).")


def test_parameters_are_a_definition_table_with_units_and_folds():
    from perceptual_audio.report.elements import Folded
    from perceptual_audio.report.tables import parameter_table

    table = parameter_table(
        {
            "bootstrap": 1000,
            "classic": {"pesq_nb_sample_rate": 16000, "pesq_version": "0.0.4"},
            "metrics": {"study_sample_rate": 16000, "a": {"kind": "x"}, "b": {"kind": "y"}},
            "note": "z" * 100,
        }
    )
    assert table.columns == ["Name", "Value", "Unit"]
    plain = {r[0]: (r[1], r[2]) for r in table.rows if not isinstance(r[1], Folded)}
    assert plain["bootstrap"] == ("1000", "replicates")
    assert plain["classic.pesq_nb_sample_rate"] == ("16000", "Hz")
    assert plain["classic.pesq_version"] == ("0.0.4", "version")
    assert plain["metrics.study_sample_rate"] == ("16000", "Hz")
    folded = {r[0]: r[1] for r in table.rows if isinstance(r[1], Folded)}
    assert folded["metrics (per entry)"].short == "2 entries: a, b"
    assert folded["metrics (per entry)"].detail == '{"a":{"kind":"x"},"b":{"kind":"y"}}'
    assert folded["note"].short == "z" * 77 + "..." and folded["note"].detail == "z" * 100
    html = report.render_html([report.Section("Setup", [table])])
    assert "<details><summary>details</summary><pre>" + "z" * 100 + "</pre></details>" in html


def test_a_long_model_message_is_folded_in_the_models_table():
    from perceptual_audio.report.elements import Folded
    from perceptual_audio.report.tables import _folded_reason

    reason = "weights not found\nfetch https://example.org/a.pth\ninto /cache/a.pth\n"
    cell = _folded_reason(reason)
    assert isinstance(cell, Folded)
    assert cell.short == "weights not found" and cell.detail == reason.strip()
    assert _folded_reason("not requested (--models)") == "not requested (--models)"
