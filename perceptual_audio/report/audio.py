"""Audio examples of the report: which pairs to listen to, compressed clips, HTML players.

:func:`select_examples` picks, from ``pair_metrics.csv``, one *typical* pair per degradation
family and level (the pair whose headline scores sit closest to the median of its condition)
and the pairs where the metrics *disagree* most: where one headline metric ranks a pair among
the best of the study and another among the worst (rank percentiles over all pairs, each metric
oriented so that 1 = closest to clean), and, when a ``rating_mean`` column holds listening-test
ratings, where a metric's rank is farthest from the listeners' rank.

:func:`audio_examples_blocks` cuts :data:`CLIP_SECONDS` from the middle of each clean and
degraded file (the same samples of both), encodes them as MP3 with libsndfile (the encoder the
``bitrate`` degradation uses), embeds them as ``data:`` URIs next to the pair's scores and links
the full-resolution files by their path relative to the report. A size budget bounds the page;
examples past it are left out and counted. Without the audio folder the block is a note.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perceptual_audio.audio_io import load_audio, resample
from perceptual_audio.report.elements import (
    HtmlBlock,
    Paragraph,
)
from perceptual_audio.report.loading import (
    StudyResults,
)
from perceptual_audio.report.vocabulary import (
    condition_label,
    fmt,
    metric_info,
)
from perceptual_audio.report.vocabulary import headline_metrics as catalogue_headline

logger = logging.getLogger(__name__)

#: Pairs at most in the report by default (``--audio-examples``; 0 turns the section off).
DEFAULT_EXAMPLES = 24
#: Size budget of the embedded audio by default, MB of the HTML page (``--audio-budget-mb``).
DEFAULT_BUDGET_MB = 10.0
#: Seconds of each clip, from the middle of the file.
CLIP_SECONDS = 5.0
#: libsndfile's MP3 (LAME) in variable-bitrate mode: the encoder delay is removed, so clean
#: and degraded clips stay aligned. 0.3 is about 60 kbps for 16 kHz mono (measured).
MP3_QUALITY = 0.3
#: Sample rates MPEG-1/2/2.5 layer III can carry.
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
#: The listening-test column the disagreement with listeners is computed from.
RATING_COLUMN = "rating_mean"


@dataclass
class Example:
    """One pair to listen to: why it was chosen and its row of ``pair_metrics.csv``."""

    kind: str  # "typical", "metrics disagree", "listeners disagree"
    why: str
    row: pd.Series
    #: metric -> rank percentile over all pairs (1 = closest to clean)
    percentiles: dict[str, float] = field(default_factory=dict)
    #: metric -> ``3rd of 54`` (1st = closest to clean)
    ranks: dict[str, str] = field(default_factory=dict)


def headline_metrics(results: StudyResults) -> list[str]:
    """Metrics shown beside the players and used to choose pairs: the catalogue's headline
    measures (the At-a-glance table's), where they have values."""
    names = catalogue_headline(results.metrics)
    return [m for m in names if results.pairs[m].notna().sum() >= 1]


def quality_percentiles(pairs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Rank percentile of every pair under each metric, oriented: 1 = the most clean-like pair
    of the study, 0 = the least (a distance is reversed). NaN stays NaN."""
    out = {}
    for m in metrics:
        values = pd.to_numeric(pairs[m], errors="coerce").replace([np.inf, -np.inf], np.nan)
        pct = values.rank(pct=True, method="average")
        out[m] = pct if metric_info(m).higher_is_better else 1.0 - pct + 1.0 / values.notna().sum()
    return pd.DataFrame(out, index=pairs.index)


def quality_ranks(pairs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Rank of every pair under each metric: 1 = the most clean-like pair of the study."""
    out = {}
    for m in metrics:
        values = pd.to_numeric(pairs[m], errors="coerce").replace([np.inf, -np.inf], np.nan)
        out[m] = values.rank(ascending=not metric_info(m).higher_is_better, method="min")
    return pd.DataFrame(out, index=pairs.index)


def _ordinal(p: float) -> str:
    """A rank percentile in words (used for listeners' ranks, whose n may differ)."""
    if p >= 0.5:
        return f"among the best {max(1, round(100 * (1 - p) + 0.5)):.0f}%"
    return f"among the worst {max(1, round(100 * p + 0.5)):.0f}%"


def _rank_text(rank: float, n: int) -> str:
    """``3rd of 54`` (1st = closest to clean)."""
    if pd.isna(rank):
        return "not scored"
    r = int(rank)
    suffix = "th" if 10 <= r % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(r % 10, "th")
    return f"{r}{suffix} of {n}"


def select_examples(results: StudyResults, n: int = DEFAULT_EXAMPLES) -> list[Example]:
    """Up to ``n`` pairs: a quarter (at least one) where metrics (or metrics and listeners)
    disagree most, the rest one typical pair per family and level, in report order."""
    if n <= 0:
        return []
    pairs = results.pairs
    metrics = headline_metrics(results)
    if not metrics:
        return []
    pct = quality_percentiles(pairs, metrics)
    typical = _typical_examples(results, metrics, pct)
    n_disagree = max(1, n // 4)
    disagree = _listener_disagreements(pairs, pct)
    if len(metrics) >= 2:
        disagree += _metric_disagreements(pairs, pct, taken=disagree, limit=n_disagree)
    chosen = disagree[:n_disagree]
    for ex in typical:
        twin = next((e for e in chosen if e.row.name == ex.row.name), None)
        if twin is not None:  # one player for both reasons
            twin.why += " It is also the typical pair of its condition."
        else:
            chosen.append(ex)
    ranks = quality_ranks(pairs, metrics)
    counts = {m: int(pairs[m].replace([np.inf, -np.inf], np.nan).notna().sum()) for m in metrics}
    for ex in chosen:
        ex.ranks = {m: _rank_text(ranks.at[ex.row.name, m], counts[m]) for m in metrics}
    return chosen[:n]


def _typical_examples(
    results: StudyResults, metrics: list[str], pct: pd.DataFrame
) -> list[Example]:
    """Per condition, the pair whose headline scores are closest to the condition's median."""
    pairs = results.pairs
    typical: list[Example] = []
    for fam, lev in results.conditions:
        idx = pairs.index[(pairs["family"] == fam) & (pairs["level"] == lev)]
        if len(idx) == 0:
            continue
        within = quality_percentiles(pairs.loc[idx], metrics)
        distance = (within - 0.5).abs().mean(axis=1, skipna=True).fillna(1.0)
        best = distance.idxmin()
        typical.append(
            Example(
                "typical",
                f"{condition_label(fam, lev)}: the pair whose headline scores are closest to "
                f"the median of the {len(idx)} pairs of this condition.",
                pairs.loc[best],
                pct.loc[best].to_dict(),
            )
        )
    return typical


def _listener_disagreements(pairs: pd.DataFrame, pct: pd.DataFrame) -> list[Example]:
    """The two pairs a metric ranks furthest from the listeners (with ratings of 3 or more
    pairs; else none)."""
    if (
        RATING_COLUMN not in pairs.columns
        or pd.to_numeric(pairs[RATING_COLUMN], errors="coerce").notna().sum() < 3
    ):
        return []
    ratings = pd.to_numeric(pairs[RATING_COLUMN], errors="coerce").rank(pct=True)
    gap = pct.sub(ratings, axis=0).abs()
    worst = gap.max(axis=1).dropna().sort_values(ascending=False)
    out = []
    for i in worst.index[:2]:
        m = gap.loc[i].idxmax()
        out.append(
            Example(
                "listeners disagree",
                f"{metric_info(m).label} ranks this pair {_ordinal(pct.at[i, m])} of the "
                f"study, the listeners {_ordinal(ratings[i])} (mean rating "
                f"{fmt(pairs.at[i, RATING_COLUMN], 1)}).",
                pairs.loc[i],
                {**pct.loc[i].to_dict(), "listeners": float(ratings[i])},
            )
        )
    return out


def _metric_disagreements(
    pairs: pd.DataFrame, pct: pd.DataFrame, *, taken: list[Example], limit: int
) -> list[Example]:
    """Up to ``limit`` pairs the headline metrics rank furthest apart, not already ``taken``;
    for variety one pair per recording and disagreeing metric pair."""
    spread = (pct.max(axis=1) - pct.min(axis=1)).dropna().sort_values(ascending=False)
    seen: set[tuple[str, str, str]] = set()
    out: list[Example] = []
    for i in spread.index:
        if len(out) >= limit:
            break
        if any(e.row.name == i for e in taken):
            continue
        hi, lo = pct.loc[i].idxmax(), pct.loc[i].idxmin()
        key = (pairs.at[i, "reference_path"], hi, lo)
        if key in seen:
            continue
        seen.add(key)
        rk = quality_ranks(pairs, [hi, lo])
        out.append(
            Example(
                "metrics disagree",
                f"{metric_info(hi).label} ranks this pair "
                f"{_rank_text(rk.at[i, hi], int(pairs[hi].notna().sum()))}, "
                f"{metric_info(lo).label} "
                f"{_rank_text(rk.at[i, lo], int(pairs[lo].notna().sum()))} "
                "(1st = closest to clean).",
                pairs.loc[i],
                pct.loc[i].to_dict(),
            )
        )
    return out


# -- audio ------------------------------------------------------------------------------------
def middle_clip(y: np.ndarray, sr: int, seconds: float = CLIP_SECONDS) -> tuple[int, int]:
    """(start, stop) samples of ``seconds`` around the middle of ``y`` (all of a shorter file)."""
    n = int(round(seconds * sr))
    if len(y) <= n:
        return 0, len(y)
    start = (len(y) - n) // 2
    return start, start + n


def encode_mp3(y: np.ndarray, sr: int, *, quality: float = MP3_QUALITY) -> tuple[bytes, int]:
    """MP3 bytes of a mono float signal (resampled to the next rate MP3 carries if needed)."""
    import soundfile as sf  # deferred: only the Listen section reads audio

    rate = next((r for r in MP3_RATES if r >= sr), MP3_RATES[-1])
    if rate != sr:
        y = resample(y, sr, rate)
    buf = io.BytesIO()
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > 1.0:  # a clipped degraded file: scale rather than wrap
        y = y / peak
    sf.write(
        buf,
        np.asarray(y, dtype=np.float32),
        rate,
        format="MP3",
        subtype="MPEG_LAYER_III",
        bitrate_mode="VARIABLE",
        compression_level=quality,
    )
    return buf.getvalue(), rate


@dataclass
class EncodedPair:
    example: Example
    clean: str  # data URI
    degraded: str
    seconds: float
    start_s: float
    n_bytes: int  # of both data URIs
    kbps: float
    clean_link: str
    degraded_link: str


def _encode_pair(ex: Example, audio_dir: Path, output_dir: Path) -> EncodedPair:

    ref = audio_dir / str(ex.row["reference_path"])
    deg = audio_dir / str(ex.row["degraded_path"])
    y_ref, sr = load_audio(ref)
    y_deg, sr_deg = load_audio(deg, sample_rate=sr)
    start, stop = middle_clip(y_ref, sr)
    uris, total_bytes, raw = [], 0, 0
    for y in (y_ref, y_deg):
        data, _ = encode_mp3(y[start:stop], sr)
        raw += len(data)
        uri = "data:audio/mpeg;base64," + base64.b64encode(data).decode("ascii")
        uris.append(uri)
        total_bytes += len(uri)
    seconds = (stop - start) / sr
    return EncodedPair(
        ex,
        uris[0],
        uris[1],
        seconds,
        start / sr,
        total_bytes,
        8 * raw / (2 * seconds) / 1000 if seconds > 0 else math.nan,
        Path(os.path.relpath(ref, output_dir)).as_posix(),
        Path(os.path.relpath(deg, output_dir)).as_posix(),
    )


def find_audio_dir(results: StudyResults) -> Path | None:
    """The stage 1-2 audio folder the results name (``inputs['audio_dir']``), if it exists."""
    recorded = results.inputs.get("audio_dir")
    if recorded and Path(recorded).is_dir():
        return Path(recorded)
    return None


_CARD_CSS = """
.example{border:1px solid #d8dde3;border-radius:6px;padding:8px 14px;margin:12px 0;background:#fbfcfd}
.example h4{margin:4px 0}.example .why{margin:2px 0 8px;color:#444;font-size:0.92em}
.players{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.player{display:flex;flex-direction:column;gap:2px;font-size:0.88em}
.player audio{width:300px}
.example table{margin:6px 0}
.kind{font-size:0.8em;background:#e3ecf7;border-radius:3px;padding:1px 6px;margin-right:6px}
"""


def _scores_table(ex: Example, metrics: list[str]) -> str:
    esc = html.escape
    rows = []
    for m in metrics:
        v = ex.row.get(m, math.nan)
        rows.append(
            f"<tr><td>{esc(metric_info(m).label)}</td><td class='num'>{esc(fmt(v))}</td>"
            f"<td class='num'>{esc(ex.ranks.get(m, ''))}</td></tr>"
        )
    if RATING_COLUMN in ex.row.index and pd.notna(ex.row.get(RATING_COLUMN)):
        p = ex.percentiles.get("listeners", math.nan)
        rows.append(
            f"<tr><td>Listeners (mean rating)</td><td class='num'>"
            f"{esc(fmt(ex.row[RATING_COLUMN], 2))}</td>"
            f"<td>{esc('' if pd.isna(p) else _ordinal(p))}</td></tr>"
        )
    return (
        "<table><thead><tr><th>Metric</th><th>Score</th><th>Rank among all pairs (1st = "
        "closest to clean)</th></tr>"
        "</thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _card(enc: EncodedPair, metrics: list[str]) -> str:
    esc = html.escape
    ex = enc.example
    content = ex.row.get("content_type", "")
    title = (
        f"{condition_label(ex.row['family'], ex.row['level'])}: "
        f"{Path(str(ex.row['reference_path'])).name}" + (f" ({content})" if content else "")
    )
    span = f"{enc.start_s:.1f}-{enc.start_s + enc.seconds:.1f} s"

    def player(label: str, uri: str, link: str) -> str:
        return (
            f"<div class='player'><strong>{esc(label)}</strong>"
            f'<audio controls preload="metadata" src="{uri}"></audio>'
            f'<a href="{esc(link)}">{esc(link)}</a></div>'
        )

    return (
        f"<div class='example'><h4><span class='kind'>{esc(ex.kind)}</span>{esc(title)}</h4>"
        f"<p class='why'>{esc(ex.why)} Clip: {span}.</p><div class='players'>"
        + player("clean", enc.clean, enc.clean_link)
        + player(
            f"degraded ({ex.row['family']}, {ex.row['level']})", enc.degraded, enc.degraded_link
        )
        + "</div>"
        + _scores_table(ex, metrics)
        + "</div>"
    )


def audio_examples_blocks(
    results: StudyResults,
    output_dir: str | os.PathLike,
    *,
    n_examples: int = DEFAULT_EXAMPLES,
    budget_mb: float = DEFAULT_BUDGET_MB,
) -> list[Any]:
    """The blocks of the report's "Listen" section (empty list when ``n_examples`` is 0)."""
    if n_examples <= 0:
        return []
    audio_dir = find_audio_dir(results)
    if audio_dir is None:
        return [
            Paragraph(
                f"No audio examples: the audio folder ({results.inputs.get('audio_dir')}) "
                "was not found. Pass --audio-dir to visualize_results.py to add players.",
                note=True,
            )
        ]
    examples = select_examples(results, n_examples)
    metrics = headline_metrics(results)
    budget = int(budget_mb * 1e6)
    encoded: list[EncodedPair] = []
    failed: list[str] = []
    over_budget = 0
    used = 0
    for ex in examples:
        try:
            enc = _encode_pair(ex, audio_dir, Path(output_dir))
        except Exception as e:  # noqa: BLE001 - one unreadable file costs one example
            failed.append(f"{ex.row['degraded_path']}: {type(e).__name__}: {e}")
            continue
        if used + enc.n_bytes > budget:
            over_budget += 1
            continue
        used += enc.n_bytes
        encoded.append(enc)
    if not encoded:
        text = "No audio examples could be embedded"
        text += (": " + "; ".join(failed[:3])) if failed else " (no pair fits the size budget)."
        return [Paragraph(text, note=True)]
    kbps = np.nanmean([e.kbps for e in encoded])
    intro = (
        f"{len(encoded)} pairs to listen to, clean beside degraded, with their headline scores "
        "and each score's rank among all pairs of the study: one typical pair per family and "
        "level, and first the pairs where the metrics disagree most (one metric ranks the "
        "pair near the top, another near the bottom). Each clip is at most "
        f"{CLIP_SECONDS:g} s from the middle of the file (the same samples of clean and "
        "degraded), mono, encoded as MP3 by libsndfile's LAME in variable-bitrate mode "
        f"(quality {MP3_QUALITY:g}, {kbps:.0f} kbps on average here) and embedded in report.html "
        f"({used / 1e6:.1f} MB of audio; budget {budget_mb:g} MB). The MP3 encoding adds its "
        "own small artefacts; the links open the full-resolution WAV files by their path "
        "relative to report.html (they work while the study's folders stay together)."
    )
    if over_budget:
        intro += f" {over_budget} more chosen pair(s) were left out to stay within the budget."
    if failed:
        intro += f" {len(failed)} pair(s) could not be read: " + "; ".join(failed[:3]) + "."
    cards = "".join(_card(e, metrics) for e in encoded)
    text_lines = [
        f"{e.example.kind}: {e.example.row['degraded_path']} vs {e.example.row['reference_path']}"
        f" ({e.example.why}) "
        + ", ".join(f"{metric_info(m).label} {fmt(e.example.row.get(m))}" for m in metrics)
        for e in encoded
    ]
    return [
        Paragraph(intro),
        HtmlBlock(
            f"<style>{_CARD_CSS}</style>{cards}",
            "\n".join(
                textwrap.fill(t, 100, initial_indent="- ", subsequent_indent="  ")
                for t in text_lines
            ),
        ),
    ]
