"""Stage 4's reading of results/ and the written report (text and HTML)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _visual_fixtures import make_pairs, write_results

from perceptual_audio import report
from perceptual_audio import results as results_format
from perceptual_audio.errors import PerceptualAudioError, SchemaError

VGGISH_REASON = "weights not found: put vggish-10086976.pth into /cache/vggish"


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> report.StudyResults:
    """Three families, all three models; VGGish runs the wrong way on compression."""
    folder = tmp_path_factory.mktemp("full")
    pairs = make_pairs(n_recordings=5)
    pairs.loc[2, "pesq_wb"] = np.nan
    pairs.loc[2, "pesq_wb_status"] = "NoUtterancesError: no utterances detected"
    write_results(folder, pairs, n_bootstrap=200)
    # An audio manifest beside the results: degradation parameters for the setup section.
    audio = folder / "test_audio"
    audio.mkdir()
    rows = [
        {
            "id": "clean/speech/rec0",
            "path": "clean/speech/rec0.wav",
            "kind": "clean",
            "source": "speech/rec0.flac",
            "family": "",
            "level": "",
            "parameters": "{}",
            "seed": "",
            "sample_rate": 16000,
            "duration": 2.5,
            "sha256": "a",
            "source_sha256": "b",
            "flags": "",
        }
    ]
    for i, snr in enumerate([30, 15, 5]):
        lev = ["low", "high", "extreme"][i]
        for rec in range(2):
            rows.append(
                {
                    **rows[0],
                    "id": f"degraded/noise/{lev}/speech/rec{rec}",
                    "path": f"degraded/noise/{lev}/speech/rec{rec}.wav",
                    "kind": "degraded",
                    "family": "noise",
                    "level": lev,
                    "parameters": json.dumps({"snr_db": snr, "color": "white", "gain": rec * 0.1}),
                    "seed": 7,
                }
            )
    pd.DataFrame(rows).to_csv(audio / "manifest.csv", index=False)
    return report.load_results(folder / "results")


@pytest.fixture(scope="module")
def no_vggish(tmp_path_factory) -> report.StudyResults:
    folder = tmp_path_factory.mktemp("novgg")
    write_results(
        folder,
        make_pairs(n_recordings=5, models=("openl3", "cdpam")),
        unavailable={"vggish": VGGISH_REASON},
        n_bootstrap=100,
    )
    return report.load_results(folder / "results")


# -- vocabulary -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, label, unit, higher, model",
    [
        ("pesq_wb", "PESQ-WB", "MOS-LQO, 1-4.64", True, None),
        ("si_sdr", "SI-SDR", "dB", True, None),
        ("openl3_cosine", "OpenL3 cosine (frame-aligned)", "-1 to 1", True, "openl3"),
        ("vggish_cosine_pooled", "VGGish cosine (mean-pooled)", "-1 to 1", True, "vggish"),
        ("cdpam_l2", "CDPAM L2 distance", "embedding units", False, "cdpam"),
        ("cdpam_distance", "CDPAM distance (learned)", "CDPAM units", False, "cdpam"),
        ("my_new_distance", "my new distance", "", False, None),
    ],
)
def test_metric_info(name, label, unit, higher, model):
    info = report.metric_info(name)
    assert (info.label, info.unit, info.higher_is_better, info.model) == (
        label,
        unit,
        higher,
        model,
    )


def test_condition_label_is_the_seed_studys_row_name():
    assert report.condition_label("noise", "low") == "Noise (Low)"
    assert report.condition_label("band_limit", "very_high") == "Band limit (Very high)"


# -- loading --------------------------------------------------------------------------------
def test_old_pair_table_schema_is_a_clear_schema_error(tmp_path):
    path = tmp_path / "pair_metrics.csv"
    path.write_text("clean_file,degraded_file,pesq\na.wav,b.wav,3.1\n")
    with pytest.raises(SchemaError) as err:
        report.read_pair_metrics(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "expected leading columns ['reference_path', 'degraded_path', 'family', 'level']" in msg
    assert "received ['clean_file', 'degraded_file', 'pesq']" in msg
    assert "rerun calculate_metrics.py --force" in msg


def test_old_correlation_and_summary_schemas_are_schema_errors(tmp_path):
    corr = tmp_path / "correlations.csv"
    corr.write_text("scope,metric_x,metric_y,r\nall,a,b,0.5\n")
    with pytest.raises(SchemaError, match="expected pearson / spearman / kendall columns"):
        results_format.read_correlations(corr)
    summary = tmp_path / "summary_by_degradation.csv"
    summary.write_text("degradation,pesq\nnoise_low,3.0\n")
    with pytest.raises(SchemaError, match=r"expected columns \['family', 'level'\]"):
        results_format.read_summary(summary)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(SchemaError, match="the file is empty"):
        results_format.read_summary(empty)


def test_missing_inputs_name_the_path(tmp_path):
    with pytest.raises(
        PerceptualAudioError, match=f"--results-dir {tmp_path / 'nope'}: no such folder"
    ):
        report.load_results(tmp_path / "nope")
    (tmp_path / "results").mkdir()
    with pytest.raises(PerceptualAudioError, match="pair_metrics.csv: not found"):
        report.load_results(tmp_path / "results")


def test_bookkeeping_columns_are_not_metrics(full):
    assert "classic_key" not in full.metrics and "reference_sha256" not in full.metrics
    assert full.metrics[:5] == ["pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr"]
    assert "cdpam_distance" in full.metrics and "vggish_cosine" in full.metrics


def test_levels_are_ordered_by_severity(full):
    assert full.level_order == {
        "noise": ["low", "high", "extreme"],
        "bitrate": ["low", "medium", "high"],
        "compression": ["mild", "strong", "extreme"],
    }


def test_unavailable_model_is_noted_and_left_out(no_vggish):
    vgg = next(m for m in no_vggish.models if m.name == "vggish")
    assert not vgg.available and vgg.reason == VGGISH_REASON
    assert (
        f"VGGish was unavailable and is left out of this report ({VGGISH_REASON.rstrip('.')}); "
        "details in the Embedding models table." in no_vggish.notes
    )
    assert not any(m.startswith("vggish") for m in no_vggish.metrics)


def test_stale_columns_of_a_model_called_unavailable_are_left_out(tmp_path):
    write_results(
        tmp_path,
        make_pairs(n_recordings=3, models=("openl3", "vggish")),
        unavailable={"vggish": "no weights"},
        n_bootstrap=50,
    )
    results = report.load_results(tmp_path / "results")
    assert not any(m.startswith("vggish") for m in results.metrics)


# -- findings -------------------------------------------------------------------------------
def _corr(results, x, y, scope="all"):
    return report.lookup_correlation(results.correlations, scope, x, y)


def test_findings_name_the_best_neural_metric_with_ci_and_n(full):
    findings = report.correlation_findings(full)
    c = _corr(full, "openl3_cosine", "pesq_wb")
    assert c.n == len(full.pairs) - 1  # one PESQ value failed
    expected = (
        f"Against PESQ-WB, the neural metric that agrees best is OpenL3 cosine "
        f"(frame-aligned): Spearman ρ = {c.r:.2f} (95% CI {c.ci_low:.2f} to "
        f"{c.ci_high:.2f}, n = {int(c.n)} pairs from {int(c.n_recordings)} recordings)"
    )
    assert c.n_recordings == full.pairs["reference_path"].nunique()
    assert findings[0].startswith(expected)
    # Runner-up from another model (CDPAM), not OpenL3's own pooled cosine.
    assert "Runner-up: CDPAM" in findings[0]
    assert findings[1].startswith(
        "Against STOI, the neural metric that agrees best is OpenL3 cosine"
    )
    assert (
        "The same neural metric, OpenL3 cosine (frame-aligned), agrees best with both PESQ-WB and STOI."
        in findings
    )


def test_a_distance_agrees_when_its_correlation_is_negative(no_vggish):
    # Without OpenL3's cosine the learned CDPAM distance (negative rho) must still rank as agreeing.
    res = no_vggish
    only_cdpam = report.StudyResults(
        **{
            **res.__dict__,
            "metrics": [
                m for m in res.metrics if not report.metric_info(m).neural or m == "cdpam_distance"
            ],
        }
    )
    c = _corr(res, "cdpam_distance", "pesq_wb")
    assert c.r < 0
    assert report.classify_agreement("cdpam_distance", c) == "agrees"
    findings = report.correlation_findings(only_cdpam)
    assert findings[0].startswith(
        "Against PESQ-WB, the neural metric that agrees best is CDPAM "
        "distance (learned) (a distance: negative means agreement)"
    )


def test_family_findings_find_the_disagreement(full):
    lines = report.family_findings(full)
    compression = next(s for s in lines if s.startswith("On compression, against PESQ-WB"))
    c = _corr(full, "vggish_cosine", "pesq_wb", scope="compression")
    assert c.r < 0
    assert f"run the opposite way: VGGish cosine (frame-aligned) ({c.short()})" in compression
    assert lines[-1].startswith("Where the neural metrics disagree with the classic ones")
    assert "VGGish cosine (frame-aligned) vs PESQ-WB on compression" in lines[-1]
    noise = next(s for s in lines if s.startswith("On noise, against STOI"))
    assert "agree: OpenL3 cosine (frame-aligned)" in noise


def test_classify_agreement_cases():
    c = report.Correlation("all", "a", "b", "spearman", 0.2, -0.1, 0.5, 0.3, 10)
    assert report.classify_agreement("openl3_cosine", c) == "uncertain"
    assert (
        report.classify_agreement(
            "cdpam_distance",
            report.Correlation("all", "a", "b", "spearman", 0.6, 0.3, 0.8, 0.01, 10),
        )
        == "opposite"
    )
    assert report.classify_agreement("openl3_cosine", None) == "undefined"


def test_monotonicity_findings(full):
    sentences, right, monotone = report.monotonicity_findings(full)
    assert right.loc["vggish_cosine", "compression"] == 0.0  # always the wrong way
    assert right.loc["pesq_wb", "noise"] == pytest.approx(1.0)
    assert "VGGish cosine (frame-aligned) on compression (0%)" in sentences[-1]
    assert list(right.columns) == ["noise", "bitrate", "compression", "mean over families"]
    assert not monotone.empty


def test_failure_summary_counts_nan_with_reasons(full):
    sentences, per_metric, per_pair = report.failure_summary(full)
    assert per_metric == [
        ["PESQ-WB", 1, len(full.pairs), "NoUtterancesError: no utterances detected (x1)"]
    ]
    assert per_pair == [
        [full.pairs.loc[2, "degraded_path"], "PESQ-WB", "NoUtterancesError: no utterances detected"]
    ]
    assert sentences[0].startswith("1 metric values out of")
    assert "The metrics stage counted failed pairs per metric: pesq_wb: 1." in sentences


def test_sample_results_table_rows_and_values(full):
    table = report.sample_results_table(full)
    labels = [
        "OpenL3 similarity",
        "VGGish similarity",
        "CDPAM similarity",
        "CDPAM distance (learned)",
    ]
    labels += ["PESQ", "STOI", "SI-SDR"]  # the catalogue's headline measures (headline=True)
    assert table.columns == ["Degradation", "pairs", *[h for x in labels for h in (x, f"{x} n")]]
    assert [r[0] for r in table.rows][:3] == ["Noise (Low)", "Noise (High)", "Noise (Extreme)"]
    assert len(table.rows) == 9
    s = full.summary
    row = s[(s.family == "bitrate") & (s.level == "medium")].iloc[0]
    got = next(r for r in table.rows if r[0] == "Bitrate (Medium)")
    assert got[2] == pytest.approx(row["openl3_cosine_mean"])
    assert got[-4] == pytest.approx(row["stoi_mean"])
    assert got[-3].sort == row["stoi_n"]  # n per metric


def test_setup_lists_degradation_parameters_and_models(full):
    blocks = report.setup_blocks(full)
    degr = next(
        b for b in blocks if isinstance(b, report.Table) and b.caption.startswith("Degradations")
    )
    noise_low = next(r for r in degr.rows if r[0] == "Noise (Low)")
    # Shared parameters are shown; the per-file drawn value is named, not averaged.
    assert noise_low[1] == "snr_db=30, color=white; drawn per file: gain"
    assert noise_low[2] == 2
    models = next(
        b for b in blocks if isinstance(b, report.Table) and b.caption == "Embedding models"
    )
    assert [r[:2] for r in models.rows] == [["OpenL3", "yes"], ["VGGish", "yes"], ["CDPAM", "yes"]]


# -- rendering ------------------------------------------------------------------------------
class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "data", "poster", "srcset", "action") and v is not None:
                self.refs.append((tag, k, v))


@pytest.fixture(scope="module")
def figure_files(tmp_path_factory) -> list[report.FigureBlock]:
    folder = tmp_path_factory.mktemp("figs")
    png = folder / "a.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
    svg = folder / "b.svg"
    svg.write_text('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>')
    return [report.FigureBlock(png, "a figure"), report.FigureBlock(svg, "b figure")]


def test_html_is_self_contained(no_vggish, figure_files):
    page = report.render_html(report.build_report(no_vggish, figure_files))
    parser = _Links()
    parser.feed(page)
    srcs = [v for tag, k, v in parser.refs if tag == "img"]
    assert len(srcs) == 2
    assert srcs[0].startswith("data:image/png;base64,") and srcs[1].startswith(
        "data:image/svg+xml;base64,"
    )
    # Only in-page anchors and data URIs: nothing remote, nothing on disk.
    assert all(v.startswith(("#", "data:")) for _, _, v in parser.refs), parser.refs
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert page.count("<script>") == 1 and "<script src" not in page
    assert 'class="sortable"' in page and "addEventListener('click'" in page


def test_html_puts_the_unavailable_model_note_first(no_vggish):
    page = report.render_html(report.build_report(no_vggish))
    note = page.index('<p class="note"><strong>Note:</strong> VGGish was unavailable')
    assert note < page.index('id="key-findings"') < page.index('id="sample-results"')
    assert VGGISH_REASON in page


def test_html_tables_carry_sort_keys(full):
    page = report.render_html(report.build_report(full))
    # A "mean [low, high]" cell sorts by its mean.
    cell = re.search(r'<td class="num" data-sort="([^"]+)">(-?\d\.\d{3}) \[', page)
    assert cell and float(cell.group(1)) == pytest.approx(float(cell.group(2)), abs=5e-4)
    assert page.count("<table") >= 6


def test_text_report_sections_and_sentences(full):
    text = report.render_text(report.build_report(full), generated_at="T")
    for title in (
        "Key findings",
        "Setup",
        "Sample Results",
        "Correlation findings",
        "Monotonicity",
        "Failures",
    ):
        assert f"\n{title}\n{'-' * len(title)}\n" in text
    assert "Against PESQ-WB, the neural metric that agrees best is OpenL3 cosine" in text
    assert "Noise (Low)" in text and "Compression (Extreme)" in text
    assert "NoUtterancesError: no utterances detected" in text
    assert "Generated T" in text
    assert "NOTE:" not in text  # every model available, nothing to warn about


def test_one_family_one_pair_still_reports(tmp_path):
    pairs = make_pairs(n_recordings=1, families={"noise": ["low"]}, models=("cdpam",))
    write_results(tmp_path, pairs, n_bootstrap=20)
    results = report.load_results(tmp_path / "results")
    sections = report.build_report(results)
    text = report.render_text(sections)
    assert (
        "NOTE: Only 1 pair(s) were scored: correlations need at least 3 and are undefined here."
        in text
    )
    assert "No neural metric has a defined correlation with PESQ-WB" in text
    assert "Monotonicity was not computed" in text
    assert "Noise (Low)" in text
    report.render_html(sections)  # renders without error


def test_correlation_value_column_named_with_r_suffix_is_accepted(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(
        "scope,metric_x,metric_y,n,pearson_r,pearson_ci_low,pearson_ci_high,pearson_p\n"
        "all,openl3_cosine,pesq_wb,10,0.5,0.2,0.7,0.01\n"
    )
    c = report.lookup_correlation(
        results_format.read_correlations(path), "all", "pesq_wb", "openl3_cosine", "pearson"
    )
    assert (c.r, c.ci_low, c.ci_high, c.n) == (0.5, 0.2, 0.7, 10)
    assert c.describe() == "Pearson r = 0.50 (95% CI 0.20 to 0.70, n = 10)"


def test_figure_data_uri_rejects_unknown_types(tmp_path):
    p = tmp_path / "x.gif"
    p.write_bytes(b"GIF89a")
    with pytest.raises(PerceptualAudioError, match=r"cannot embed a figure of type '\.gif'"):
        report.figure_data_uri(p)
    assert Path(p).exists()


def test_describe_parameters_of_stage_2_records():
    files = [
        {
            "params": {"bitrate_kbps": 8},
            "seed": s,
            "digest": "d",
            "family": "bitrate",
            "level": "extreme",
            "version": 1,
            "details": {"achieved_kbps": kbps, "codec": "MP3 (LAME)", "encoded_bytes": s},
        }
        for s, kbps in ((1, 8.0), (2, 8.2))
    ]
    text = report.describe_parameters(json.dumps(f) for f in files)
    assert text == "bitrate_kbps=8; measured mean: achieved_kbps=8.1; codec=MP3 (LAME)"
    assert report.describe_parameters([]) == ""


def test_pairs_whose_degradation_was_not_applied_are_left_out_with_a_note(tmp_path):
    pairs = make_pairs(n_recordings=5, seed=3)
    pairs["flags"] = ""
    pairs["degradation_applied"] = "true"
    pairs.loc[0, ["flags", "degradation_applied"]] = ["silent", "false"]
    results = write_results(tmp_path, pairs, n_bootstrap=50)
    loaded = report.load_results(results)
    assert len(loaded.pairs) == len(pairs) - 1
    assert pairs.loc[0, "degraded_path"] not in set(loaded.pairs["degraded_path"])
    assert "flags" not in loaded.metrics and "degradation_applied" not in loaded.metrics
    assert any("1 pair(s) whose degradation was not applied" in n for n in loaded.notes)


# -- reference perceptual metrics -----------------------------------------------------------
def test_reference_metrics_take_part_and_findings_name_the_best(tmp_path):
    pairs = make_pairs(n_recordings=5, models=("openl3",))
    rng = np.random.default_rng(1)
    # Zimtohrli (a distance) follows OpenL3 closely; ViSQOL audio only loosely.
    pairs["zimtohrli"] = 1.0 - pairs["openl3_cosine"] + rng.normal(0, 1e-3, len(pairs))
    pairs["visqol_audio"] = 1 + 4 * pairs["openl3_cosine"] + rng.normal(0, 0.5, len(pairs))
    pairs["dnsmos_ovrl_clean"] = 3.0
    for c in ("zimtohrli", "visqol_audio", "dnsmos_ovrl_clean"):
        pairs[f"{c}_status"] = "ok"
    write_results(tmp_path, pairs, n_bootstrap=50)
    res = report.load_results(tmp_path / "results")
    assert "zimtohrli" in res.reference_metrics and "dnsmos_ovrl_clean" not in res.analysed_metrics
    text = report.render_text(report.build_report(res))
    assert "Zimtohrli distance" in text and "ViSQOL audio" in text
    finding = next(f for f in report.reference_tracking_findings(res) if "OpenL3 cosine (f" in f)
    assert "reference perceptual metrics, it tracks Zimtohrli distance best" in finding or (
        "tracks the reference perceptual metric Zimtohrli distance best" in finding
    )
    (note,) = report.rate_notes(res)
    assert note.startswith("The study's audio is at 16 kHz, so it holds nothing above 8 kHz;")
    assert "ViSQOL audio, Zimtohrli distance run at up to 48 kHz" in note
    table = report.reference_correlation_table(res)
    assert {r[1] for r in table.rows} >= {"PESQ-WB [speech]", "Zimtohrli distance"}


def test_text_tables_right_align_numbers_not_names_that_start_with_a_digit():
    from perceptual_audio.report.elements import Section, Table
    from perceptual_audio.report.render import render_text

    table = Table("t", ["Measure", "ρ"], [["PESQ-WB", "0.92"], ["2f-model MMS", "0.54"]])
    lines = render_text([Section("S", [table])], generated_at="x").splitlines()
    assert "2f-model MMS  0.54" in lines
    assert "PESQ-WB       0.92" in lines
