"""The degradation registry's types (:class:`ParamSpec`, :class:`Level`, :class:`Family`)
and the helpers the families share (AC power, alignment, seeds)."""

from __future__ import annotations

import hashlib
import logging
import math
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from perceptual_audio.errors import ParameterError

logger = logging.getLogger(__name__)

#: Level names are path components: letters, digits, ``_`` and ``-``.
LEVEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
#: The built-in level names, in increasing order of damage.
STANDARD_LEVELS = ("low", "high", "extreme")
#: Seeds are kept below 2**53 so that any CSV reader (even one going through float64) keeps
#: them exact.
SEED_MODULUS = 2**53


# -- registry types ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a family: its unit, meaning, default and allowed values."""

    name: str
    unit: str
    description: str
    default: Any
    kind: type = float
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None

    def check(self, value: Any, where: str) -> Any:
        """Validate and normalise one value; ``where`` names the family and level."""
        what = f"{where}: parameter {self.name!r}"
        if self.kind is str:
            if not isinstance(value, str):
                raise ParameterError(f"{what} must be a string, got {value!r}")
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ParameterError(f"{what} must be a number ({self.unit}), got {value!r}")
            if not math.isfinite(float(value)):
                raise ParameterError(f"{what} must be finite, got {value!r}")
            if self.kind is int:
                if float(value) != int(value):
                    raise ParameterError(f"{what} must be an integer, got {value!r}")
                value = int(value)
            else:
                value = float(value)
            if self.low is not None and value < self.low:
                raise ParameterError(f"{what} must be >= {self.low} {self.unit}, got {value}")
            if self.high is not None and value > self.high:
                raise ParameterError(f"{what} must be <= {self.high} {self.unit}, got {value}")
        if self.choices is not None and value not in self.choices:
            raise ParameterError(f"{what} must be one of {list(self.choices)}, got {value!r}")
        return value


@dataclass(frozen=True)
class Level:
    """A named, fully specified parameter set of one family."""

    family: str
    name: str
    params: Mapping[str, Any]
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.params)

    def __reduce__(self) -> tuple:
        # A read-only mapping does not pickle; worker processes get a rebuilt copy.
        return (_make_level, (self.family, self.name, dict(self.params), self.note))


def _make_level(family: str, name: str, params: dict[str, Any], note: str) -> Level:
    return Level(family, name, types.MappingProxyType(params), note)


@dataclass(frozen=True)
class Family:
    """A kind of degradation: its function, parameters and named levels.

    Attributes
    ----------
    name : str
        Folder name under ``degraded/``.
    description : str
        One line for ``--help``.
    function : callable
        ``function(x, sample_rate, *, params, rng, info=None[, pool]) -> y``.
    params : tuple of ParamSpec
    levels : Mapping[str, Level]
        Built-in levels, in increasing order of damage.
    version : int
        Bumped when the algorithm changes its output for the same parameters (reruns then
        regenerate the family's files).
    default : bool
        Part of the default selection.
    uses_pool : bool
        The function needs ``pool``: other clean recordings of the run (babble).
    """

    name: str
    description: str
    function: Callable[..., np.ndarray]
    params: tuple[ParamSpec, ...]
    levels: Mapping[str, Level]
    version: int = 1
    default: bool = False
    uses_pool: bool = False

    @property
    def param_specs(self) -> dict[str, ParamSpec]:
        return {p.name: p for p in self.params}

    def level(self, name: str) -> Level:
        """The built-in level ``name``; the error lists the valid names."""
        try:
            return self.levels[name]
        except KeyError:
            raise ParameterError(
                f"degradation family {self.name!r} has no level {name!r}; "
                f"choose one of {list(self.levels)} or define it in a JSON/TOML file"
            ) from None

    def make_level(
        self, name: str, overrides: Mapping[str, Any] | None = None, note: str = ""
    ) -> Level:
        """A validated level: the built-in level ``name`` (or the family's defaults when there
        is none) with ``overrides`` applied."""
        where = f"degradation {self.name}:{name}"
        if not LEVEL_NAME_PATTERN.match(name):
            raise ParameterError(
                f"{where}: level names may hold only letters, digits, '_' and "
                f"'-' (they become folder names), got {name!r}"
            )
        specs = self.param_specs
        base = (
            dict(self.levels[name].params)
            if name in self.levels
            else {p.name: p.default for p in self.params}
        )
        for key, value in (overrides or {}).items():
            if key not in specs:
                raise ParameterError(
                    f"{where}: unknown parameter {key!r}; {self.name} takes {sorted(specs)}"
                )
            base[key] = value
        checked = {k: specs[k].check(v, where) for k, v in sorted(base.items())}
        return Level(
            self.name,
            name,
            types.MappingProxyType(checked),
            note or (self.levels[name].note if name in self.levels else ""),
        )


def level_table(
    family: str, table: Mapping[str, tuple[dict[str, Any], str]]
) -> Mapping[str, Level]:
    """A family's levels from ``{level: (parameters, note)}`` (read-only, parameters sorted)."""
    return types.MappingProxyType(
        {
            name: Level(family, name, types.MappingProxyType(dict(sorted(p.items()))), note)
            for name, (p, note) in table.items()
        }
    )


# -- helpers ----------------------------------------------------------------------------------
def as_signal(x: np.ndarray, what: str = "x") -> np.ndarray:
    """``x`` as a finite mono float signal (raises ParameterError otherwise)."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise ParameterError(f"{what}: expected a mono waveform of shape (n,), got shape {x.shape}")
    if x.size == 0:
        raise ParameterError(f"{what}: the waveform is empty (0 samples)")
    if not np.all(np.isfinite(x)):
        raise ParameterError(f"{what}: the waveform holds NaN or infinite samples")
    return x.astype(np.float32, copy=False)


def power_db(power_ratio: float) -> float:
    """A power ratio in dB (-inf for 0)."""
    return 10.0 * math.log10(power_ratio) if power_ratio > 0 else float("-inf")


def ac_power(x: np.ndarray) -> float:
    """Mean square of ``x`` after removing its mean (the DC), in full-scale units squared."""
    x64 = np.asarray(x, dtype=np.float64)
    return float(np.mean((x64 - x64.mean()) ** 2))


def crest_factor_db(x: np.ndarray) -> float:
    """Peak-to-RMS ratio of ``x`` in dB (AC part)."""
    x64 = np.asarray(x, dtype=np.float64)
    x64 = x64 - x64.mean()
    rms = math.sqrt(float(np.mean(x64**2)))
    return 20 * math.log10(float(np.max(np.abs(x64))) / rms) if rms > 0 else float("nan")


def xcorr_lag(reference: np.ndarray, delayed: np.ndarray, *, max_lag: int) -> int:
    """Lag (samples) in [-max_lag, max_lag] that maximises the cross-correlation.

    A positive lag means ``delayed`` is late: ``delayed[k + lag] ~ reference[k]``.
    """
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(delayed, dtype=np.float64)
    n_fft = 1 << int(math.ceil(math.log2(len(a) + len(b) + 1)))
    cc = np.fft.irfft(np.fft.rfft(b, n_fft) * np.conj(np.fft.rfft(a, n_fft)), n_fft)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    values = np.concatenate([cc[: max_lag + 1], cc[n_fft - max_lag :]])
    return int(lags[int(np.argmax(values))])


def derive_seed(run_seed: int, family: str, level: str, path: str) -> int:
    """The per-file seed: a hash of (run seed, family, level, clean file path).

    Depends on nothing else, so adding or removing other files never changes a file's noise.
    Returns an int in [0, 2**53).
    """
    blob = f"{int(run_seed)}|{family}|{level}|{path}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") % SEED_MODULUS


def fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` cut or zero-padded to ``n`` samples."""
    if len(y) >= n:
        return y[:n]
    return np.concatenate([y, np.zeros(n - len(y), dtype=y.dtype)])


def not_applied(x: np.ndarray, info: dict | None, reason: str) -> np.ndarray:
    """``x`` unchanged, recorded in ``info`` as not applied and why."""
    if info is not None:
        info["applied"] = False
        info["reason"] = reason
    return x.astype(np.float32, copy=True)
