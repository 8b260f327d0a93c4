#!/usr/bin/env python3
"""Stage 2: degradations + OpenL3 / VGGish / CDPAM embeddings. See ``--help`` and README.md."""

import sys

from perceptual_audio.stages.extract import main

if __name__ == "__main__":
    sys.exit(main())
