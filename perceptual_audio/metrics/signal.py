"""The leaf of the metrics package: what one measurement is and the checks every metric makes
on its input. The measures, the reference metrics and the catalogue all import it; it imports
none of them (so the package has no cycle).
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from perceptual_audio.errors import MetricError, ParameterError

logger = logging.getLogger(__name__)

#: Status text of a successful measurement.
STATUS_OK = "ok"


@dataclass(frozen=True)
class Measurement:
    """One metric on one pair: ``value`` (NaN on failure) and ``status`` (``"ok"`` or why)."""

    value: float
    status: str = STATUS_OK

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK


def package_version(package: str) -> str | None:
    """Installed version of a PyPI distribution (None when absent)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def measure(func: Callable[..., float], *args: Any, **kwargs: Any) -> Measurement:
    """Call a metric function; a failure becomes ``Measurement(nan, reason)``.

    :class:`MetricError` carries its own reason; any other exception (raised inside a
    metric library) is reported as ``"<ExceptionType>: <message>"`` and logged.
    """
    try:
        value = float(func(*args, **kwargs))
    except MetricError as e:
        return Measurement(math.nan, one_line(str(e)))
    except Exception as e:  # a library error on one pair never stops the others
        logger.debug("metric %s failed", getattr(func, "__name__", func), exc_info=True)
        return Measurement(math.nan, one_line(f"{type(e).__name__}: {e}"))
    if math.isnan(value):
        return Measurement(math.nan, "the metric returned NaN")
    return Measurement(value)


def one_line(text: str) -> str:
    """A reason on one line (whitespace runs collapsed)."""
    return " ".join(text.split()) or "unknown error"


def as_signal(x: np.ndarray, name: str) -> np.ndarray:
    """``x`` as a mono signal; raises on a wrong shape (usage) or empty / non-finite audio
    (the pair's failure)."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise ParameterError(f"{name} must be a mono (n,) array, got shape {x.shape}")
    if x.size == 0:
        raise MetricError(f"the {name} signal is empty")
    if not np.all(np.isfinite(x)):
        raise MetricError(f"the {name} signal holds NaN or infinite samples")
    return x


def check_not_silent(x: np.ndarray, name: str) -> None:
    """Raise :class:`MetricError` for digital silence."""
    if not np.any(x):
        raise MetricError(f"the {name} signal is digital silence (all samples are 0)")


def common_length(reference: np.ndarray, degraded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both signals cut to the shorter length (STOI and SI-SDR compare sample by sample)."""
    n = min(len(reference), len(degraded))
    if len(reference) != len(degraded):
        logger.debug(
            "signals differ in length (%d vs %d samples): comparing the first %d",
            len(reference),
            len(degraded),
            n,
        )
    return reference[:n], degraded[:n]
