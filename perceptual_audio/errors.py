"""The project's exception hierarchy: one base class, a few specific kinds.

Every message names the file or argument at fault, what was expected, what was received,
and, where there is one, what to do about it.
"""

from __future__ import annotations


class PerceptualAudioError(Exception):
    """Base class of every error this package raises on purpose."""


class ParameterError(PerceptualAudioError, ValueError):
    """An argument has a value outside what the function accepts."""


class AudioFormatError(PerceptualAudioError):
    """An audio file cannot be read: empty, truncated, not audio, or unreadable."""


class OutputConflictError(PerceptualAudioError):
    """Two inputs would be written to the same output path."""


class SchemaError(PerceptualAudioError):
    """A saved artifact (manifest, results table) has a schema this version cannot read."""


class WeightsUnavailableError(PerceptualAudioError):
    """Pretrained weights are neither cached, nor in the weights dir, nor downloadable."""


class WeightsVerificationError(PerceptualAudioError):
    """A weights file is present but fails its checksum or structure check."""


class FolderConflictError(OutputConflictError):
    """A stage was pointed at a folder that belongs to another stage, or at its own input."""


class FolderBusyError(PerceptualAudioError):
    """Another run holds the lock of the output folder."""


class MetricError(PerceptualAudioError):
    """A metric cannot be computed on this pair; the message is the status text."""
