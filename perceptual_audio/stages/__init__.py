"""The four stages, each above the libraries: its options, its settings, what one item is and
how to do it, the tables it writes.

1. :mod:`.convert` (``audio_conversion.py``): any audio to mono WAV at one rate; with
   ``--listening-test``, :mod:`.listening_import` converts exactly a test's files. Both use
   :mod:`.convert_items` (one file's conversion).
2. :mod:`.extract` (``extract_embeddings.py``) = :mod:`.degrade` then :mod:`.embed`.
3. :mod:`.score` (``calculate_metrics.py``), its workers in :mod:`.scoring`.
4. :mod:`.visualize` (``visualize_results.py``) drives :mod:`perceptual_audio.report`.

Nothing below this package imports it (import-linter checks this in ``make lint``).
"""
