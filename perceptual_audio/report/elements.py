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
    #: A verdict: shown emphasised (At a glance).
    lead: bool = False


@dataclass
class Bullets:
    items: list[str]
    #: A short heading over the list (the findings' groups); empty: none.
    title: str = ""
    #: HTML shows each item's first :data:`FOLD_CHARS` or so (about two lines at 800 px) and
    #: folds the rest into ``<details>``; the text report keeps every word.
    fold: bool = False


#: Characters of a folded item shown before the fold (about two lines at 800 px wide).
FOLD_CHARS = 160


@dataclass(frozen=True)
class Folded:
    """A table cell with a one-line summary and the full text behind a ``<details>`` fold."""

    short: str
    detail: str


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


def cell_text(value: Any) -> str:
    if isinstance(value, Cell):
        return value.text
    if isinstance(value, Folded):
        return value.detail
    if isinstance(value, float | np.floating):
        return fmt(value)
    return "" if value is None else str(value)


def cell_sort(value: Any) -> str:
    if isinstance(value, Cell):
        value = value.sort
    if isinstance(value, Folded):
        return value.short
    if isinstance(value, int | float | np.integer | np.floating):
        return "" if math.isnan(float(value)) else repr(float(value))
    return str(value)


def ci_cell(mean: float, lo: float, hi: float) -> Cell:
    if math.isnan(lo) or math.isnan(hi):
        return Cell(fmt(mean), mean)
    return Cell(f"{fmt(mean)} [{fmt(lo)}, {fmt(hi)}]", mean)


def split_for_fold(text: str, limit: int = FOLD_CHARS) -> tuple[str, str]:
    """(shown, folded) parts of ``text``: the whole text when it is at most ``limit``
    characters; else the longest head up to ``limit`` ending at a sentence, a semicolon or a
    comma in its second half, else at a space, and the rest."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text, ""
    head = text[: limit + 1]
    # A clause boundary late enough to keep the numbers that follow a colon in view.
    for sep, earliest in ((". ", limit // 2), ("; ", limit // 2), (", ", limit // 2), (" ", 0)):
        cut = head.rfind(sep)
        if cut >= earliest:
            end = cut + (1 if sep == ". " else 0)
            return text[:end].rstrip(" ;:,"), text[cut + len(sep) :].strip()
    return text[:limit], text[limit:]
