"""Audio examples (report_audio) and the breakdown by content type (report_content)."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from _visual_fixtures import make_pairs, write_results
from conftest import sine, write_audio

from perceptual_audio import report
from perceptual_audio.report import audio as report_audio
from perceptual_audio.report import content as report_content

FAMILIES = {"noise": ["low", "high"], "bitrate": ["low", "high"]}


def _study(tmp_path, *, audio: bool = True, seconds: float = 7.0, content=None):
    pairs = make_pairs(n_recordings=5, families=FAMILIES, models=("cdpam",))
    if content is not None:
        pairs["reference_path"] = [p.replace("speech", content(p)) for p in pairs["reference_path"]]
        pairs["degraded_path"] = [p.replace("speech", content(p)) for p in pairs["degraded_path"]]
    # One pair where CDPAM says "pristine" and PESQ/STOI say "ruined": the disagreement.
    pairs.loc[7, ["pesq_wb", "stoi"]] = [1.0, 0.3]
    pairs.loc[7, ["cdpam_cosine", "cdpam_distance"]] = [1.0, 0.0]
    write_results(tmp_path, pairs, n_bootstrap=50)
    if audio:
        for rel in set(pairs["reference_path"]) | set(pairs["degraded_path"]):
            write_audio(tmp_path / "test_audio" / rel, sine(440, seconds, 16000), 16000)
    return report.load_results(tmp_path / "results"), pairs


def test_one_typical_pair_per_condition_and_the_disagreement_first(tmp_path):
    results, pairs = _study(tmp_path)
    examples = report_audio.select_examples(results, 24)
    assert examples[0].kind == "metrics disagree"
    assert examples[0].row["degraded_path"] == pairs.loc[7, "degraded_path"]
    assert "1st = closest to clean" in examples[0].why
    typical = [e for e in examples if e.kind == "typical"]
    seen = {(e.row["family"], e.row["level"]) for e in typical}
    merged = [e for e in examples if "also the typical pair" in e.why]
    assert len(typical) + len(merged) == 4 and len(seen) == len(typical)
    assert len(examples) <= 24
    assert [e.kind for e in report_audio.select_examples(results, 1)] == ["metrics disagree"]
    assert report_audio.select_examples(results, 0) == []


def test_listeners_disagreement_when_ratings_exist(tmp_path):
    results, _ = _study(tmp_path, audio=False)
    ratings = results.pairs["pesq_wb"].fillna(2.0).to_numpy().copy()
    ratings[3] = 100.0  # listeners love a pair every metric ranks mid-table
    results.pairs[report_audio.RATING_COLUMN] = ratings
    kinds = [e.kind for e in report_audio.select_examples(results, 24)]
    assert kinds[0] == "listeners disagree"


def test_players_are_mp3_clips_from_the_middle_with_links_and_scores(tmp_path):
    results, _ = _study(tmp_path)
    out = tmp_path / "results" / "visualizations"
    blocks = report_audio.audio_examples_blocks(results, out, n_examples=5)
    intro, players = blocks
    assert "encoded as MP3" in intro.text and "5 pairs" in intro.text
    srcs = re.findall(r'src="(data:audio/mpeg;base64,[^"]+)"', players.html)
    assert len(srcs) == 10
    y, sr = sf.read(io.BytesIO(base64.b64decode(srcs[0].split(",", 1)[1])))
    assert sr == 16000 and abs(len(y) / sr - report_audio.CLIP_SECONDS) < 0.05
    assert "Clip: 1.0-6.0 s" in players.html  # 5 s around the middle of a 7 s file
    # The decoded clip is those samples, not shifted by the encoder's delay.
    source = sine(440, 7.0, 16000)[16000 : 16000 + len(y)]
    assert np.corrcoef(source, y[: len(source)])[0, 1] > 0.99
    assert 'href="../../test_audio/clean/speech/rec' in players.html
    assert "PESQ-WB" in players.html and " of 20</td>" in players.html
    assert "degraded/" in players.text and "players" not in players.text


def test_size_budget_leaves_examples_out_and_says_so(tmp_path):
    results, _ = _study(tmp_path)
    out = tmp_path / "vis"
    full = report_audio.audio_examples_blocks(results, out, n_examples=5)
    size = len(full[1].html)
    small = report_audio.audio_examples_blocks(results, out, n_examples=5, budget_mb=size / 2e6)
    assert len(small[1].html) <= size / 2 + 20000
    assert "left out to stay within the budget" in small[0].text


def test_missing_audio_folder_is_a_note_not_a_failure(tmp_path):
    results, _ = _study(tmp_path, audio=False)
    blocks = report_audio.audio_examples_blocks(results, tmp_path / "vis")
    assert len(blocks) == 1 and blocks[0].note and "audio folder" in blocks[0].text
    assert report_audio.audio_examples_blocks(results, tmp_path, n_examples=0) == []


def test_report_gets_a_listen_section_after_the_key_findings(tmp_path):
    results, _ = _study(tmp_path)
    listen = report_audio.audio_examples_blocks(results, tmp_path / "vis", n_examples=3)
    sections = report.build_report(results, listen=listen)
    titles = [s.title for s in sections]
    assert titles.index("Listen") == titles.index("Key findings") + 1
    page = report.render_html(sections)
    assert page.count("<audio ") == 6
    assert "<audio" not in report.render_text(sections)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("clean/speech/a.wav", "speech"),
        ("clean/music/x/b.wav", "music"),
        ("clean/c.wav", "unspecified"),
    ],
)
def test_content_type_is_the_top_folder(path, expected):
    assert report_content.top_folder(path) == expected


def test_content_table_and_column_override_the_folder(tmp_path):
    results, _ = _study(tmp_path, audio=False)
    table = tmp_path / "content.csv"
    pd.DataFrame(
        {"path": ["speech/rec0.flac", "clean/speech/rec1.wav"], "content_type": ["music", "env"]}
    ).to_csv(table, index=False)
    report_content.assign_content_types(results, report_content.read_content_table(table))
    by_ref = dict(zip(results.pairs["reference_path"], results.pairs["content_type"], strict=True))
    assert by_ref["clean/speech/rec0.wav"] == "music"
    assert by_ref["clean/speech/rec1.wav"] == "env"
    assert by_ref["clean/speech/rec2.wav"] == "speech"


def test_breakdown_says_when_a_conclusion_holds_in_one_domain_only(tmp_path):
    # rec0-rec2 speech, rec3-rec4 music; on music CDPAM is made to run against PESQ/STOI.
    results, _ = _study(
        tmp_path, audio=False, content=lambda p: "music" if p[-5] in "34" else "speech"
    )
    music = results.pairs["reference_path"].str.contains("music")
    results.pairs.loc[music, "cdpam_cosine"] = 2.0 - results.pairs.loc[music, "cdpam_cosine"]
    results.pairs.loc[music, "cdpam_distance"] = -results.pairs.loc[music, "cdpam_distance"]
    findings, blocks = report_content.content_breakdown(results)
    text = " ".join(findings)
    assert "holds on speech only" in text
    assert "PESQ and STOI are speech metrics" in text and "music" in text
    tables = [b for b in blocks if isinstance(b, report.Table)]
    assert tables[0].columns[-2:] == ["music", "speech"]
    verdicts = [c.text.rsplit(": ", 1)[-1] for row in tables[0].rows[:2] for c in row[3:]]
    assert set(verdicts) == {"agrees (point estimate)", "no agreement (point estimate)"}
    sections = report.build_report(results)
    assert "By content type" in [s.title for s in sections]
    key = next(s for s in sections if s.title == "Key findings")
    content = next(b for b in key.blocks if b.title == "By content type")
    assert any("holds on speech only" in i for i in content.items)


def test_one_content_type_gives_no_breakdown(tmp_path):
    results, _ = _study(tmp_path, audio=False)
    findings, blocks = report_content.content_breakdown(results)
    assert findings == [] and "share one content type" in blocks[0].text


def test_mp3_encoding_resamples_rates_mp3_cannot_carry():
    y = np.zeros(16000, np.float32) + 0.1 * np.sin(np.arange(16000) / 5).astype(np.float32)
    data, rate = report_audio.encode_mp3(y, 20000)
    assert rate == 22050
    z, sr = sf.read(io.BytesIO(data))
    assert sr == 22050 and len(z) > 0


def test_folders_of_one_recording_each_name_recordings_not_content_types(tmp_path):
    # A listening test's inputs live in stim_01/, stim_02/, ...: one recording per folder.
    results, _ = _study(tmp_path, audio=False, content=lambda p: f"stim_{p[-5]}")
    findings, blocks = report_content.content_breakdown(results)
    assert findings == []
    assert "Every content type holds a single recording" in blocks[0].text


def test_cards_show_the_at_a_glance_measures_from_the_catalogue(tmp_path):
    from perceptual_audio.report import glance

    results, _ = _study(tmp_path)
    shown = report_audio.headline_metrics(results)
    assert shown == glance.glance_measures(results)  # one catalogue flag drives both
    assert shown == ["pesq_wb", "stoi", "si_sdr", "cdpam_cosine", "cdpam_distance"]
    out = tmp_path / "results" / "visualizations"
    _, players = report_audio.audio_examples_blocks(results, out, n_examples=1)
    card_rows = re.findall(r"<tr><td>([^<]+)</td><td class='num'>", players.html)
    assert card_rows == [report.metric_info(m).label for m in shown]
