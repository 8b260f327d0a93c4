#!/usr/bin/env python3
"""Stage 3: score every clean/degraded pair (PESQ, STOI, SI-SDR, embedding similarities,
CDPAM distance) and correlate the metrics. See ``--help`` and README.md."""

import sys

from perceptual_audio.stages.score import main

if __name__ == "__main__":
    sys.exit(main())
