"""The registry of degradation families (:data:`FAMILIES`, in the order stage 2 applies and
lists them), the default selection, and :func:`apply_degradation`, the one entry point of
stage 2."""

from __future__ import annotations

import logging
import textwrap
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perceptual_audio.audio_io import is_silent
from perceptual_audio.degradations import codecs, dynamics, filtering, noise
from perceptual_audio.degradations.base import (
    Family,
    Level,
    as_signal,
)
from perceptual_audio.errors import ParameterError, PerceptualAudioError

logger = logging.getLogger(__name__)

#: Line width of :func:`describe_families`.
HELP_WIDTH = 96

#: Family order (stage 2's selection order, the help text's order).
_ORDER = (
    "noise",
    "bitrate",
    "compression",
    "pink_noise",
    "babble",
    "bandlimit",
    "clipping",
    "reverb",
    "gsm",
    "opus",
    "packet_loss",
    "bitdepth",
    "neutral",
)
_DECLARED = {f.name: f for m in (noise, codecs, dynamics, filtering) for f in m.DECLARED}
if sorted(_DECLARED) != sorted(_ORDER):  # a family added to a module but not listed here
    raise ImportError(
        f"degradation families declared {sorted(_DECLARED)} and listed in _ORDER "
        f"{sorted(_ORDER)} differ"
    )
FAMILIES: Mapping[str, Family] = types.MappingProxyType({name: _DECLARED[name] for name in _ORDER})

#: The default selection (DESIGN.md section 5): every level of these families.
DEFAULT_FAMILIES = tuple(name for name, fam in FAMILIES.items() if fam.default)


def get_family(name: str) -> Family:
    """The registered family ``name``; the error lists the known names."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ParameterError(
            f"unknown degradation family {name!r}; known families: {list(FAMILIES)}"
        ) from None


# -- applying ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Degraded:
    """Result of :func:`apply_degradation`."""

    audio: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()


def apply_degradation(
    x: np.ndarray,
    sample_rate: int,
    level: Level,
    *,
    rng: np.random.Generator,
    pool: Sequence[tuple[str, np.ndarray]] | None = None,
) -> Degraded:
    """Apply one level of one family, check the output, and collect what was recorded.

    Parameters
    ----------
    x : np.ndarray [shape=(n,)]
        Mono input, any float dtype (converted to float32).
    sample_rate : int
        Hz.
    level : Level
        From ``FAMILIES[name].levels`` or :meth:`Family.make_level`.
    rng : np.random.Generator
        The file's generator (``np.random.default_rng(derive_seed(...))``).
    pool : sequence of (name, waveform), optional
        For families with ``uses_pool`` (babble).

    Returns
    -------
    Degraded
        ``audio`` float32 (n,); ``info`` with drawn and measured values plus ``output_peak``;
        ``flags`` among ``silent``, ``short``, ``clipped_peak``.

    Raises
    ------
    ParameterError
        Bad input waveform or parameters.
    PerceptualAudioError
        The degradation produced a wrong length or non-finite samples (a bug or codec fault).
    """
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ParameterError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}")
    x = as_signal(x)
    family = get_family(level.family)
    info: dict[str, Any] = {}
    kwargs: dict[str, Any] = {"params": level.params, "rng": rng, "info": info}
    if family.uses_pool:
        kwargs["pool"] = pool
    y = family.function(x, int(sample_rate), **kwargs)
    if y.shape != x.shape or y.dtype != np.float32:
        raise PerceptualAudioError(
            f"degradation {level.family}:{level.name} returned shape {y.shape} {y.dtype}; "
            f"expected {x.shape} float32"
        )
    if not np.all(np.isfinite(y)):
        raise PerceptualAudioError(
            f"degradation {level.family}:{level.name} produced NaN or infinite samples"
        )
    flags = []
    if is_silent(x):
        flags.append("silent")
    if info.pop("short", False):
        flags.append("short")
    peak = float(np.max(np.abs(y)))
    info.setdefault("applied", True)
    info["output_peak"] = peak
    if peak > 1.0:
        flags.append("clipped_peak")
    return Degraded(y, info, tuple(flags))


def describe_families() -> str:
    """Every family and level with its parameters and units (the ``--help`` epilog)."""
    lines = ["Degradation families (levels low < high < extreme; * = in the default set):"]
    for fam in FAMILIES.values():
        lines.append(
            textwrap.fill(
                f"{fam.name}{' *' if fam.default else ''}: {fam.description}",
                width=HELP_WIDTH,
                initial_indent="  ",
                subsequent_indent="      ",
            )
        )
        units = {p.name: p.unit for p in fam.params}
        for lev in fam.levels.values():
            shown = ", ".join(
                f"{k}={v}{(' ' + units[k]) if units.get(k) and isinstance(v, (int, float)) else ''}"
                for k, v in lev.params.items()
            )
            note = f"  ({lev.note})" if lev.note else ""
            lines.append(f"      {lev.name:<8} {shown}{note}")
    lines.append(
        textwrap.fill(
            "Select with --degradations: 'default', 'all', or a comma list of FAMILY or "
            "FAMILY:LEVEL (noise,bitrate:low,compression:high), or a .json/.toml file mapping "
            "FAMILY to 'all', a list of level names, or {LEVEL: {PARAM: value}} (new levels "
            "start from the family defaults, known levels from their built-in values). "
            "Noise levels are exact SNRs against the AC (DC-free) signal power; silent inputs "
            "are left unchanged and flagged 'silent'; outputs keep float peaks above 1.0.",
            width=HELP_WIDTH,
        )
    )
    return "\n".join(lines)
