"""The report's "Loss audit" section: what optimising each loss did to the judges.

Reads ``results/loss_audit.csv`` (stage 3, :mod:`perceptual_audio.restoration.audit`) and
``pair_metrics.csv``'s restored pairs, and gives: a heatmap of losses x main judges (mean
change oriented + = better, its CI in the cell, the loss's own metric outlined), the findings
in words per loss, per-family small multiples, and players of a typical file: degraded beside
each loss's restoration. The main judges are the catalogue's ``headline`` metrics (or
:data:`FALLBACK_JUDGES` when none is flagged).
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perceptual_audio.audio_io import load_audio
from perceptual_audio.metrics import catalogue as metric_catalogue
from perceptual_audio.report.audio import encode_mp3
from perceptual_audio.report.elements import Bullets, FigureBlock, HtmlBlock, Paragraph, Table
from perceptual_audio.report.vocabulary import fmt, metric_info
from perceptual_audio.results import LOSS_AUDIT_NAME, read_pair_table

logger = logging.getLogger(__name__)

#: Main judges when no catalogue spec is flagged ``headline``.
FALLBACK_JUDGES = ("pesq_wb", "stoi", "visqol_audio", "zimtohrli", "cdpam_distance", "si_sdr")
#: Figure file stems.
HEATMAP_STEM, FAMILIES_STEM = "loss_audit_heatmap", "loss_audit_by_family"
#: Seconds of each player in the Listen block.
LISTEN_SECONDS = 4.0


def main_judges(present: list[str]) -> list[str]:
    """The headline metrics present in the audit (catalogue order), or the fallback ones."""
    flagged = [s.name for s in metric_catalogue.CATALOGUE.values() if s.headline]
    chosen = flagged or list(FALLBACK_JUDGES)
    main = [j for j in chosen if j in present]
    return main or list(present)


def read_audit(results_dir: Path) -> pd.DataFrame | None:
    path = Path(results_dir) / LOSS_AUDIT_NAME
    if not path.is_file():
        return None
    frame = pd.read_csv(path, keep_default_na=True, dtype={"family": str, "level": str})
    frame["self"] = frame["self"].astype(str).str.lower() == "true"
    return frame.fillna({"family": "", "level": ""})


def _grid(audit: pd.DataFrame, judges: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    losses = list(dict.fromkeys(audit["loss"]))
    table = audit.set_index(["loss", "judge"])
    values = np.full((len(losses), len(judges), 4), np.nan)  # mean, low, high, self
    for i, loss in enumerate(losses):
        for k, judge in enumerate(judges):
            if (loss, judge) in table.index:
                r = table.loc[(loss, judge)]
                values[i, k] = [r["change_mean"], r["change_ci_low"], r["change_ci_high"],
                                float(bool(r["self"]))]  # fmt: skip
    scale = np.nanmax(np.abs(values[..., 0]), axis=0)
    scale[~np.isfinite(scale) | (scale == 0)] = 1.0
    return losses, values, values[..., 0] / scale


def _draw(ax: Any, losses: list[str], judges: list[str], values: np.ndarray, norm: np.ndarray,
          *, annotate: bool) -> Any:  # fmt: skip
    from matplotlib.patches import Rectangle

    image = ax.imshow(norm, cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(len(judges)), [metric_info(j).label for j in judges], rotation=30,
                  ha="right", fontsize=8)  # fmt: skip
    ax.set_yticks(range(len(losses)), losses, fontsize=8)
    for i in range(len(losses)):
        for k in range(len(judges)):
            mean, low, high, own = values[i, k]
            if annotate and math.isfinite(mean):
                text = fmt(mean, 2) + (
                    "" if math.isnan(low) else f"\n[{fmt(low, 2)}, {fmt(high, 2)}]"
                )
                ax.text(k, i, text, ha="center", va="center", fontsize=6.5)
            if own == 1.0:
                ax.add_patch(Rectangle((k - 0.5, i - 0.5), 1, 1, fill=False, lw=2.5, ec="black"))
    return image


def heatmap_figure(audit: pd.DataFrame, judges: list[str]) -> Any:
    """Losses x judges over every restored pair; colour = mean change / the judge's largest."""
    import matplotlib.pyplot as plt  # deferred: matplotlib is slow to import

    overall = audit[audit["scope"] == "all"]
    losses, values, norm = _grid(overall, judges)
    fig, ax = plt.subplots(figsize=(1.3 * len(judges) + 2.5, 0.55 * len(losses) + 1.8))
    image = _draw(ax, losses, judges, values, norm, annotate=True)
    fig.colorbar(image, ax=ax, label="mean change / largest |change| of the judge (+ = better)")
    ax.set_title("Loss audit: judge change, restored vs degraded (95% CI; outlined = own metric)",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    return fig


def families_figure(audit: pd.DataFrame, judges: list[str]) -> Any:
    """One small heatmap per degradation family (colour only)."""
    import matplotlib.pyplot as plt  # deferred: matplotlib is slow to import

    fam = audit[audit["scope"] == "family"]
    families = sorted(fam["family"].unique())
    fig, axes = plt.subplots(1, len(families), figsize=(3.2 * len(families) + 1, 3.2),
                             squeeze=False)  # fmt: skip
    for ax, family in zip(axes[0], families, strict=True):
        losses, values, norm = _grid(fam[fam["family"] == family], judges)
        _draw(ax, losses, judges, values, norm, annotate=False)
        ax.set_title(family, fontsize=9)
    fig.tight_layout()
    return fig


def loss_findings(audit: pd.DataFrame, judges: list[str]) -> list[str]:
    """Per loss, one sentence: which independent judges it improved or worsened (CIs
    excluding 0), and whether it improved its own metric."""
    overall = audit[(audit["scope"] == "all") & audit["judge"].isin(judges)]
    out = []
    for loss, g in overall.groupby("loss", sort=False):
        n = int(g["n"].max())
        own = g[g["self"]]
        ind = g[~g["self"]]
        no_ci = bool(g["change_ci_low"].isna().all())  # one recording: directions only
        low = g["change_mean"] if no_ci else g["change_ci_low"]
        high = g["change_mean"] if no_ci else g["change_ci_high"]
        up = ind[low[~g["self"]] > 0]
        down = ind[high[~g["self"]] < 0]
        unclear = len(ind) - len(up) - len(down)

        def names(rows: pd.DataFrame) -> str:
            return ", ".join(f"{metric_info(j).label} ({fmt(c, 2):s})"
                             for j, c in zip(rows["judge"], rows["change_mean"], strict=True))  # fmt: skip

        if len(ind) and len(up) == len(ind):
            verdict = f"improved every independent judge ({names(up)})"
        elif len(own) and (low[g["self"]] > 0).all() and len(up) == 0:
            verdict = (f"improved its own metric ({names(own)}) but no independent judge"
                       + (f"; worse: {names(down)}" if len(down) else ""))  # fmt: skip
        else:
            verdict = (f"improved {names(up) or 'no independent judge'}"
                       + (f"; worse: {names(down)}" if len(down) else ""))  # fmt: skip
        tail = f"; {unclear} judge(s) with CIs spanning 0" if unclear else ""
        if len(own) and "own metric" not in verdict:
            tail = f"; own metric {names(own)}" + tail
        if no_ci:
            tail += " (no CIs: fewer than 2 recordings, signs of the mean change only)"
        out.append(f"{loss} ({n} restored files): {verdict}{tail}.")
    return out


def _audio_uri(y: np.ndarray, sr: int) -> str:
    """An MP3 data URI (the report's other players' format)."""

    data, _ = encode_mp3(np.clip(y, -1, 1), sr)
    return "data:audio/mpeg;base64," + base64.b64encode(data).decode("ascii")


def listen_block(pairs: pd.DataFrame, audio_dir: Path | None, judge: str) -> HtmlBlock | None:
    """Players for the typical restored recording: the one whose change in ``judge``,
    averaged over losses, is nearest the median."""

    if audio_dir is None or "kind" not in pairs:
        return None
    restored = pairs[pairs["kind"] == "restored"]
    if restored.empty:
        return None
    keys = ["reference_path", "family", "level"]
    typical = restored.groupby(keys)[judge].mean() if judge in restored else None
    if typical is None or typical.dropna().empty:
        key = tuple(restored[keys].iloc[0])
    else:
        t = typical.dropna()
        key = (t - t.median()).abs().idxmin()
    ref, family, level = key
    deg = pairs[(pairs["kind"] == "degraded") & (pairs["reference_path"] == ref)
                & (pairs["family"] == family) & (pairs["level"] == level)]  # fmt: skip
    group = restored[(restored["reference_path"] == ref) & (restored["family"] == family)
                     & (restored["level"] == level)]  # fmt: skip
    items = [("clean", ref)] + [("degraded", p) for p in deg["degraded_path"]]
    items += [(f"restored: {loss}", p) for loss, p in zip(group["loss"], group["degraded_path"],
                                                            strict=True)]  # fmt: skip
    html, text = [], []
    for label, rel in items:
        try:
            y, sr = load_audio(Path(audio_dir) / rel, mono=True)
        except Exception as e:  # noqa: BLE001 - one unreadable file costs one player
            text.append(f"{label}: {rel} unreadable ({type(e).__name__})")
            continue
        y = y[: int(LISTEN_SECONDS * sr)]
        html.append(f'<div><b>{label}</b> <code>{rel}</code><br><audio controls preload="none" '
                    f'src="{_audio_uri(y, sr)}"></audio></div>')  # fmt: skip
        text.append(f"{label}: {rel}")
    caption = (f"Typical file ({ref}, {family}/{level}; first {LISTEN_SECONDS:g} s): the "
               "degraded file beside each loss's restoration.")  # fmt: skip
    return HtmlBlock(f"<p>{caption}</p>" + "".join(html), caption + "\n" + "\n".join(text))


def loss_audit_blocks(
    results: Any, output_dir: Path, *, audio_dir: Path | None = None, dpi: int = 110,
    formats: Sequence[str] = ("png",),
) -> list[Any]:  # fmt: skip
    """The section's blocks ([] when the study has no restorations); figures are written to
    ``output_dir`` in each of ``formats`` (the page shows the PNG, else the SVG)."""
    from perceptual_audio.report.plots import save_figures  # deferred: matplotlib

    audit = read_audit(results.results_dir)
    if audit is None or audit.empty:
        return []
    judges = main_judges(list(dict.fromkeys(audit["judge"])))
    blocks: list[Any] = [
        Paragraph(
            "Each degraded file was optimised towards its clean file under each loss "
            "(stage 2 --restore) and scored again by every metric. + = the judge says "
            "better. The outlined cell is the metric that measures what the loss "
            "optimised; every other judge is independent. A loss that improves only "
            "its own measure is being gamed."
        ),  # fmt: skip
        Bullets(loss_findings(audit, judges)),
    ]
    for stem, build, caption in (
        (HEATMAP_STEM, heatmap_figure, "Mean change per loss and judge (95% CI over recordings)"),
        (FAMILIES_STEM, families_figure, "Mean change per degradation family"),
    ):
        shown = "png" if "png" in formats or "svg" not in formats else "svg"
        paths = [Path(output_dir) / f"{stem}.{f}" for f in dict.fromkeys([shown, *formats])]
        path = paths[0]
        try:
            save_figures(build(audit, judges), paths, dpi=dpi)
            blocks.append(FigureBlock(path, caption, "Loss audit"))
        except Exception as e:  # noqa: BLE001 - a figure must not cost the section
            logger.error("figure %s failed: %s: %s", path, type(e).__name__, e)
    overall = audit[(audit["scope"] == "all") & audit["judge"].isin(judges)]
    rows = [[r.loss, metric_info(r.judge).label + (" (self)" if r.self else ""), int(r.n),
             fmt(r.degraded_mean), fmt(r.restored_mean),
             f"{fmt(r.change_mean)} [{fmt(r.change_ci_low)}, {fmt(r.change_ci_high)}]",
             fmt(r.fraction_improved, 2)] for r in overall.itertuples()]  # fmt: skip
    blocks.append(Table("Loss audit, every restored pair",
                        ["Loss", "Judge", "n", "Degraded", "Restored", "Change [95% CI]",
                         "Improved"], rows))  # fmt: skip
    pairs = getattr(results, "all_pairs", None)
    if pairs is None:
        pairs = read_pair_table(Path(results.results_dir) / "pair_metrics.csv")
    listen = listen_block(pairs, audio_dir, judges[0])
    if listen is not None:
        blocks.append(listen)
    return blocks


def figure_names(blocks: list[Any], formats: Sequence[str] = ("png",)) -> list[str]:
    """The names of the figure files the section wrote (each format of each figure)."""
    stems = [b.path.stem for b in blocks if isinstance(b, FigureBlock)]
    shown = [b.path.suffix.lstrip(".") for b in blocks if isinstance(b, FigureBlock)]
    return [
        f"{s}.{f}"
        for s, own in zip(stems, shown, strict=True)
        for f in dict.fromkeys([own, *formats])
    ]
