#!/usr/bin/env python3
"""Stage 1: convert any audio to 16 kHz mono WAV. See ``--help`` and README.md."""

import sys

from perceptual_audio.stages.convert import main

if __name__ == "__main__":
    sys.exit(main())
