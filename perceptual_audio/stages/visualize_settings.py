"""Stage 4's settings: the options of ``visualize_results.py`` as one frozen object, and the
figure formats it accepts (no matplotlib needed for ``--help``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perceptual_audio.report import audio as report_audio
from perceptual_audio.stages import cli

DEFAULT_RESULTS_DIR = "results"
DEFAULT_DPI = 110

#: Figure formats ``--figure-format`` accepts (plots.FORMATS; kept here so --help needs no
#: matplotlib).
FIGURE_FORMATS = ("png", "svg", "pdf")


def figure_formats(text: str) -> tuple[str, ...]:
    """``--figure-format`` value -> formats in the order given (``png,svg,pdf``)."""
    names = [t.strip().lower().lstrip(".") for t in str(text).split(",") if t.strip()]
    bad = [n for n in names if n not in FIGURE_FORMATS]
    if not names or bad:
        got = f"unknown format(s) {', '.join(bad)}" if bad else "an empty list"
        raise argparse.ArgumentTypeError(
            f"got {got}; expected a comma-separated list of {', '.join(FIGURE_FORMATS)}"
        )
    return tuple(dict.fromkeys(names))


def embedded_format(formats: Sequence[str]) -> str:
    """The format report.html embeds: PNG, or SVG when only SVG (and maybe PDF) is asked
    without PNG; a browser cannot show a PDF in <img>, so pdf alone adds PNG files."""
    if "png" in formats or "svg" not in formats:
        return "png"
    return "svg"


@dataclass(frozen=True, kw_only=True)
class VisualizeSettings(cli.StageSettings):
    """Stage 4's settings (the options of ``visualize_results.py``).

    Attributes
    ----------
    results_dir, output_dir : Path
        Stage 3's folder; where the figures and reports go (default
        ``<results_dir>/visualizations``).
    format : tuple of str
        Figure file formats (``--figure-format``).
    dpi : int
        PNG resolution.
    audio_dir : Path or None
        The stage 1-2 audio folder (default: as stage 3 recorded it).
    audio_examples : int
        Pairs to embed as players; audio_budget_mb their size budget in MB.
    content_types : Path or None
        A table of each clean file's content type.
    export_listening_test : Path or None
        Also write a webMUSHRA test of the restorations there.
    """

    results_dir: Path = Path(DEFAULT_RESULTS_DIR)
    output_dir: Path | None = None
    format: tuple[str, ...] = ("png",)
    dpi: int = DEFAULT_DPI
    audio_dir: Path | None = None
    audio_examples: int = report_audio.DEFAULT_EXAMPLES
    audio_budget_mb: float = report_audio.DEFAULT_BUDGET_MB
    content_types: Path | None = None
    export_listening_test: Path | None = None

    @property
    def out_dir(self) -> Path:
        return self.output_dir or self.results_dir / "visualizations"

    def params(self) -> dict[str, Any]:
        """What the drawing depends on besides the input files (its digest redraws)."""
        return {
            "format": ",".join(self.format),
            "dpi": self.dpi,
            "audio_examples": self.audio_examples,
            "audio_budget_mb": self.audio_budget_mb,
            "content_types": str(self.content_types) if self.content_types else None,
        }
