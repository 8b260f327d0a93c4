"""argparse value types shared by the stages and the models' own options (a foundation: it
imports nothing of the package, so a model can declare its options without the stage layer)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def _parse_number(text: str, convert: type, ok: Callable[[Any], bool], expected: str) -> Any:
    """``convert(text)`` if it satisfies ``ok``, else an ArgumentTypeError naming ``expected``."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    return _parse_number(text, int, lambda v: v > 0, "a positive integer")


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    return _parse_number(text, float, lambda v: 0 < v < float("inf"), "a positive number")


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _parse_number(text, int, lambda v: v >= 0, "an integer >= 0")
