"""Stage 4: figures, analysis_report.txt and a self-contained report.html from stage 3's tables.

Usage::

    python visualize_results.py --results-dir results --output-dir results/visualizations

See ``python visualize_results.py --help`` and :mod:`perceptual_audio.stages.visualize`.
"""

import sys

from perceptual_audio.stages.visualize import main

if __name__ == "__main__":
    sys.exit(main())
