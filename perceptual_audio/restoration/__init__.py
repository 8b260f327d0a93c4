"""Restoration by optimisation: does a loss, optimised, improve what independent judges say?

- :mod:`.catalogue`: the loss catalogue (one owner of what a loss is: name, label, what it
  compares, its package, the stage-3 metric that measures the same thing).
- :mod:`.optimise`: :func:`restore`, Adam on a per-bin STFT mask or on the waveform itself,
  from the degraded audio towards its clean reference under one loss.

No stage module is imported here; stage 2 (:mod:`perceptual_audio.stages.restore`) and stage 3 ask these modules.
"""

from perceptual_audio.restoration.catalogue import (
    LossSpec,
    build_loss,
    describe_loss,
    loss_names,
    loss_specs,
    parse_loss_list,
)
from perceptual_audio.restoration.optimise import MODES, RestoreResult, restore

__all__ = [
    "MODES",
    "LossSpec",
    "RestoreResult",
    "build_loss",
    "describe_loss",
    "loss_names",
    "loss_specs",
    "parse_loss_list",
    "restore",
]
