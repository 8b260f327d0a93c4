"""The report's building blocks: cells, paragraphs, bullets, tables, figures, sections."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perceptual_audio.report.vocabulary import (
    fmt,
)

logger = logging.getLogger(__name__)


# =============================================================================================
# Report structure: sections of blocks, rendered to text and to HTML
# =============================================================================================
@dataclass(frozen=True)
class Cell:
    """A table cell whose displayed text differs from the value it sorts by."""

    text: str
    sort: float | str


@dataclass
class Paragraph:
    text: str
    #: ``note`` paragraphs are warnings (shown in a box at the top of the HTML).
    note: bool = False


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    caption: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class FigureBlock:
    """A figure file (PNG or SVG) made by :mod:`perceptual_audio.report.plots`; figures of one
    ``group`` are shown under one sub-heading."""

    path: Path
    caption: str
    group: str = ""


@dataclass
class HtmlBlock:
    """Ready-made HTML (audio players) and the plain text the text report shows instead."""

    html: str
    text: str


@dataclass
class Section:
    title: str
    blocks: list[Any]


def _cell_text(value: Any) -> str:
    if isinstance(value, Cell):
        return value.text
    if isinstance(value, float | np.floating):
        return fmt(value)
    return "" if value is None else str(value)


def _cell_sort(value: Any) -> str:
    if isinstance(value, Cell):
        value = value.sort
    if isinstance(value, int | float | np.integer | np.floating):
        return "" if math.isnan(float(value)) else repr(float(value))
    return str(value)


def _ci_cell(mean: float, lo: float, hi: float) -> Cell:
    if math.isnan(lo) or math.isnan(hi):
        return Cell(fmt(mean), mean)
    return Cell(f"{fmt(mean)} [{fmt(lo)}, {fmt(hi)}]", mean)
