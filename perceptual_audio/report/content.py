"""Results per content type (speech / music / environment) for the report.

PESQ and STOI are speech metrics, and a correlation pooled over speech, music and environmental
sound mixes domains where they mean different things. Each pair gets a content type:

1. a ``content_type`` column of ``pair_metrics.csv``, where present and not empty;
2. else the ``--content-types FILE`` table of stage 4 (columns ``path,content_type``; ``path``
   is the clean file as in ``reference_path`` (``clean/speech/a.wav``), or the input file
   relative to stage 1's ``--input`` (``speech/a.flac``));
3. else the top folder of the input file (``original_audio/speech/a.wav`` -> ``speech``); a
   file directly in the input folder is ``unspecified``.

:func:`content_breakdown` returns the key-finding sentences (which say when a conclusion holds
in one content type only) and the blocks of the report's "By content type" section:
correlations of the headline neural metrics with PESQ-WB and STOI within each content type
(Spearman with the recording bootstrap of :mod:`perceptual_audio.stats`) and the mean scores
per content type and family.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perceptual_audio import stats
from perceptual_audio.errors import PerceptualAudioError
from perceptual_audio.report.elements import (
    Cell,
    Paragraph,
    Table,
    ci_cell,
)
from perceptual_audio.report.findings import (
    Correlation,
    agreement,
    classify_agreement,
    judges,
    lookup_correlation,
)
from perceptual_audio.report.loading import (
    StudyResults,
)
from perceptual_audio.report.vocabulary import (
    PRIMARY_METHOD,
    SCOPE_ALL,
    fmt,
    fmt_n,
    metric_info,
    primary_neural_metrics,
)

CONTENT_COLUMN = "content_type"
UNSPECIFIED = "unspecified"
#: Content types PESQ and STOI were designed for.
SPEECH_TYPES = ("speech",)
#: Bootstrap replicates of the per-content CIs at most (stage 3's setting when smaller).
MAX_BOOTSTRAP = 1000


def top_folder(reference_path: str) -> str:
    """``clean/speech/a.wav`` -> ``speech``; ``clean/a.wav`` -> ``unspecified``."""
    parts = Path(str(reference_path)).parts
    if parts and parts[0] == "clean":
        parts = parts[1:]
    return parts[0] if len(parts) >= 2 else UNSPECIFIED


def read_content_table(path: str | os.PathLike) -> dict[str, str]:
    """``path -> content_type`` from a user's CSV (see the module docstring)."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str).fillna("")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise PerceptualAudioError(f"--content-types {path}: unreadable CSV ({e})") from None
    if not {"path", CONTENT_COLUMN} <= set(table.columns):
        raise PerceptualAudioError(
            f"--content-types {path}: expected columns path,{CONTENT_COLUMN}, "
            f"received {list(table.columns)}"
        )
    out = {}
    for p, c in zip(table["path"], table[CONTENT_COLUMN], strict=True):
        if p and c:
            out[Path(p).as_posix()] = c.strip()
    return out


def _lookup(mapping: dict[str, str], reference_path: str) -> str | None:
    ref = Path(reference_path)
    rel = Path(*ref.parts[1:]) if ref.parts and ref.parts[0] == "clean" else ref
    for key in (ref, rel, ref.with_suffix(""), rel.with_suffix("")):
        if key.as_posix() in mapping:
            return mapping[key.as_posix()]
    stems = {Path(k).with_suffix("").as_posix(): v for k, v in mapping.items()}
    return stems.get(rel.with_suffix("").as_posix())


def assign_content_types(results: StudyResults, mapping: dict[str, str] | None = None) -> None:
    """Give every pair a ``content_type`` (in place; see the module docstring for the order)."""
    pairs = results.pairs
    given = (
        pairs[CONTENT_COLUMN].fillna("").astype(str).str.strip()
        if CONTENT_COLUMN in pairs
        else pd.Series([""] * len(pairs), index=pairs.index)
    )
    values = []
    for g, ref in zip(given, pairs["reference_path"], strict=True):
        if g:
            values.append(g)
        elif mapping and (hit := _lookup(mapping, str(ref))):
            values.append(hit)
        else:
            values.append(top_folder(str(ref)))
    pairs[CONTENT_COLUMN] = values


def _bootstrap(results: StudyResults) -> int:
    params = results.run.get("parameters") if isinstance(results.run, dict) else None
    n = params.get("bootstrap") if isinstance(params, dict) else None
    try:
        return min(MAX_BOOTSTRAP, int(n)) if n is not None else MAX_BOOTSTRAP
    except (TypeError, ValueError):
        return MAX_BOOTSTRAP


def content_correlations(
    results: StudyResults, metric_pairs: list[tuple[str, str]]
) -> pd.DataFrame:
    """Correlations of ``metric_pairs`` within each content type (scope = content type), in the
    layout of ``correlations.csv`` as read by :func:`perceptual_audio.report.read_correlations`."""

    pairs = results.pairs.replace([np.inf, -np.inf], np.nan)
    table = stats.correlation_table(
        pairs,
        metric_pairs,
        family_column=CONTENT_COLUMN,
        n_bootstrap=_bootstrap(results),
        seed=0,
    )
    table = table[table["scope"] != SCOPE_ALL]
    return table.rename(columns={m: f"{m}_r" for m in stats.METHODS})


#: |agreement| at which a point estimate without CI counts as agreeing (a "weak" correlation).
POINT_AGREEMENT = 0.3


def content_verdict(metric: str, c: Correlation | None) -> str:
    """:func:`~perceptual_audio.report.classify_agreement`, or, where there is no CI (fewer
    than 5 recordings), ``agrees (point estimate)`` / ``no agreement (point estimate)``."""
    kind = classify_agreement(metric, c)
    if kind == "undefined" or c is None:
        return "undefined"
    if math.isnan(c.ci_low) or math.isnan(c.ci_high):
        value = agreement(metric, c)[0]
        return (
            "agrees (point estimate)"
            if value >= POINT_AGREEMENT
            else "no agreement (point estimate)"
        )
    return kind


def _describe(c: Correlation | None) -> str:
    if c is None or math.isnan(c.r):
        return "undefined"
    ci = (
        f" [{fmt(c.ci_low, 2)}, {fmt(c.ci_high, 2)}]"
        if not (math.isnan(c.ci_low) or math.isnan(c.ci_high))
        else ", no CI"
    )
    rec = "" if math.isnan(c.n_recordings) else f" from {fmt_n(c.n_recordings)} recording(s)"
    return f"ρ = {fmt(c.r, 2)}{ci}, n = {fmt_n(c.n)}{rec}"


def content_breakdown(results: StudyResults) -> tuple[list[str], list[Any]]:
    """(key-finding sentences, blocks of the "By content type" section)."""
    if CONTENT_COLUMN not in results.pairs or (results.pairs[CONTENT_COLUMN] == "").all():
        assign_content_types(results)
    pairs = results.pairs
    counts = pairs.groupby(CONTENT_COLUMN)["reference_path"].agg(["size", "nunique"])
    types = list(counts.index)
    origin = (
        "Content type of each pair: the content_type column of pair_metrics.csv or the "
        "--content-types table of visualize_results.py where given, else the top folder of "
        "the input file (original_audio/speech/... -> speech). "
        + "; ".join(
            f"{t}: {int(counts.at[t, 'size'])} pairs from {int(counts.at[t, 'nunique'])} "
            "recording(s)"
            for t in types
        )
        + "."
    )
    if len(types) < 2:
        return [], [
            Paragraph(
                origin + " All pairs share one content type, so there is no per-content "
                "breakdown; results pooled over all pairs are results for this content type."
            )
        ]
    if (counts["nunique"] < 2).all():  # e.g. a listening test's stim_01/, stim_02/, ...
        return [], [
            Paragraph(
                origin + " Every content type holds a single recording, so these folders "
                "name recordings rather than kinds of content: there is no per-content "
                "breakdown (give visualize_results.py --content-types to define types)."
            )
        ]
    refs = judges(results)
    neural = [m for m in primary_neural_metrics(results.metrics) if pairs[m].notna().any()]
    metric_pairs = [(m, r) for m in neural for r in refs]
    if len(refs) >= 2:
        metric_pairs.append((refs[0], refs[1]))
    blocks: list[Any] = [Paragraph(origin)]
    findings: list[str] = []
    if metric_pairs:
        corr = content_correlations(results, metric_pairs)
        rows = []
        for x, y in metric_pairs:
            pooled = lookup_correlation(results.correlations, SCOPE_ALL, x, y)
            row: list[Any] = [
                metric_info(x).label,
                metric_info(y).label,
                _cell(pooled),
            ]
            for t in types:
                c = lookup_correlation(corr, t, x, y)
                cell = _cell(c)
                if x in neural:
                    cell = Cell(f"{cell.text}: {content_verdict(x, c)}", cell.sort)
                row.append(cell)
            rows.append(row)
        cols = ["Metric", "Against", "All pairs"] + list(types)
        blocks.append(
            Table(
                "Spearman ρ [95% bootstrap CI over recordings] (n pairs) within each content "
                "type, and the verdict: agrees (CI on the agreeing side), uncertain, opposite "
                "or undefined; with fewer than 5 recordings there is no CI and the verdict is "
                "the point estimate's (agrees at |ρ| >= 0.3); a distance agrees when "
                "negative",
                cols,
                rows,
            )
        )
        findings += _domain_findings(results, corr, neural, refs, types)
    non_speech = [t for t in types if t not in SPEECH_TYPES and t != UNSPECIFIED]
    if non_speech and refs:
        n_ns = int(pairs[CONTENT_COLUMN].isin(non_speech).sum())
        findings.append(
            f"PESQ and STOI are speech metrics; {n_ns} of {len(pairs)} pairs are "
            f"{' / '.join(non_speech)}, where agreement with them is not agreement with a "
            "perceptual reference (see By content type)."
        )
    blocks.append(_means_table(results, types, refs + neural))
    return findings, blocks


def _cell(c: Correlation | None) -> Cell:
    if c is None or math.isnan(c.r):
        return Cell("n/a", math.nan)
    cell = ci_cell(c.r, c.ci_low, c.ci_high)
    return Cell(f"{cell.text} (n = {fmt_n(c.n)})", cell.sort)


def _domain_findings(
    results: StudyResults,
    corr: pd.DataFrame,
    neural: list[str],
    refs: list[str],
    types: list[str],
) -> list[str]:
    """Per reference, for the neural metric that agrees best over all pairs: does that hold in
    every content type, or in one only?"""
    out = []
    for ref in refs:
        ranked = []
        for m in neural:
            c = lookup_correlation(results.correlations, SCOPE_ALL, m, ref, PRIMARY_METHOD)
            if c is not None and not math.isnan(c.r):
                ranked.append((agreement(m, c)[0], m, c))
        if not ranked:
            continue
        _, m, pooled = max(ranked, key=lambda t: t[0])
        label, ref_label = metric_info(m).label, metric_info(ref).label
        verdicts, holds, point_only = [], [], False
        for t in types:
            c = lookup_correlation(corr, t, m, ref)
            kind = content_verdict(m, c)
            if kind == "undefined":
                verdicts.append(f"{t}: undefined (fewer than 3 pairs with both scores)")
                continue
            point_only = point_only or kind.endswith("(point estimate)")
            if kind.startswith("agrees"):
                holds.append(t)
            verdicts.append(f"{t}: {kind}, {_describe(c)}")
        defined = [v for v in verdicts if "undefined" not in v]
        if defined and len(holds) == len(defined):
            verdict = "holds in every content type with values"
        elif len(holds) == 1:
            verdict = f"holds on {holds[0]} only"
        elif holds:
            verdict = f"holds on {' and '.join(holds)} but not on the rest"
        else:
            verdict = "holds in no single content type"
        pooled_kind = classify_agreement(m, pooled)
        out.append(
            f"By content type, the agreement of {label} with {ref_label} "
            f"({'clear' if pooled_kind == 'agrees' else pooled_kind} over all pairs) {verdict}"
            + (
                " (judged by the point estimate, |ρ| >= 0.3, where a content type has fewer "
                "than 5 recordings and so no CI)"
                if point_only
                else ""
            )
            + ": "
            + "; ".join(verdicts)
            + "."
        )
    return out


def _means_table(results: StudyResults, types: list[str], metrics: list[str]) -> Table:
    pairs = results.pairs
    rows = []
    for t in types:
        for fam in results.families:
            sub = pairs[(pairs[CONTENT_COLUMN] == t) & (pairs["family"] == fam)]
            if sub.empty:
                continue
            row: list[Any] = [t, fam, Cell(str(len(sub)), float(len(sub)))]
            for m in metrics:
                v = pd.to_numeric(sub[m], errors="coerce").replace([np.inf, -np.inf], np.nan)
                row.append(float(v.mean()) if v.notna().any() else math.nan)
            rows.append(row)
    return Table(
        "Mean score per content type and degradation family (all levels of the family)",
        ["Content", "Family", "Pairs", *[metric_info(m).label for m in metrics]],
        rows,
    )
