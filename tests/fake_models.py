"""Fast stand-ins registered under the real model names, for tests of the stage plumbing.

``install()`` replaces ``openl3``/``vggish`` in the registry with a tiny deterministic
embedder (0.25 s frames: mean and RMS). Its numbers mean nothing; the tests use it only to
build real stage folders quickly. ``PERCEPTUAL_AUDIO_FAKE_SECONDS`` makes each file take
that long (for interrupt tests); a ``sitecustomize`` calling ``install()`` brings the fakes
into a subprocess.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

import numpy as np
import torch

from perceptual_audio.embeddings import base

SR = 16000


class _Fake(base.Embedder):
    name: ClassVar[str] = "fake"
    sample_rate: ClassVar[int] = SR
    frame = SR // 4

    def __init__(self, *, device: str = "cpu", **options: Any) -> None:
        super().__init__(device=device)

    def load(self) -> None:
        pass

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        n = max(waveform.shape[-1] // self.frame, 1) * self.frame
        w = torch.nn.functional.pad(waveform, (0, max(0, n - waveform.shape[-1])))
        f = w[:, :n].reshape(w.shape[0], -1, self.frame)
        return torch.stack([f.mean(-1), f.square().mean(-1).sqrt()], dim=-1)

    def timestamps(self, n_samples: int) -> np.ndarray:
        return np.arange(max(n_samples // self.frame, 1)) * 0.25

    def embed(self, waveform, sr):
        delay = float(os.environ.get("PERCEPTUAL_AUDIO_FAKE_SECONDS", "0") or 0)
        if delay:
            time.sleep(delay)
        return super().embed(waveform, sr)

    def info(self) -> dict[str, Any]:
        return {"model": self.name, "variant": "fake", "hop_seconds": 0.25, "weights_sha256": ""}


class FakeOpenL3(_Fake):
    name: ClassVar[str] = "openl3"


class FakeVGGish(_Fake):
    name: ClassVar[str] = "vggish"


#: What a fake takes over from the real model it stands in for: where its columns go, its name
#: in the report, its command-line options (the fake accepts and ignores them).
_DECLARED = ("display_name", "column_order", "enabled_by_default", "options", "packages")


def install() -> None:
    """Register the fakes under ``openl3`` and ``vggish`` in place of the real models."""
    for fake in (FakeOpenL3, FakeVGGish):
        real = base.model_class(fake.name)
        if real is not fake:
            for attr in _DECLARED:
                setattr(fake, attr, getattr(real, attr))
        base.register(fake)
