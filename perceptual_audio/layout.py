"""Every on-disk name of a study, one owner: the folders and files each stage writes.

The stages, the report and the tests ask this module (or the table owners that import from
it: :mod:`perceptual_audio.manifest`, :mod:`perceptual_audio.results`,
:mod:`perceptual_audio.listening`) instead of spelling a name. A foundation: it imports
nothing.

::

    test_audio/                      stage 1 (and stage 2's degraded/ and restored/)
        clean/<mirrored path>.wav
        degraded/<family>/<level>/<mirrored path>.wav
        rated/<condition>/<mirrored path>.wav      a listening test's rated files (stage 1)
        restored/<loss>/<family>/<level>/<mirrored path>.wav
        manifest.csv  ratings.csv  run.json
    <model>_embeddings/              stage 2: <audio path>.npy, manifest.csv, run.json
    results/                         stage 3: pair_metrics.csv, summary_by_degradation.csv,
                                     correlations.csv, monotonicity.csv,
                                     listener_agreement.csv, loss_audit.csv, run.json
    results/visualizations/          stage 4: report.html, analysis_report.txt, figures
    any of them/.shards/K-of-N/      a shard's fragment (record.json written last)
    any of them/.perceptual_audio.lock
"""

from __future__ import annotations

# -- the audio folder (stages 1 and 2) --------------------------------------------------------
#: Stage 1's converted recordings.
CLEAN_DIR = "clean"
#: Stage 2's degraded files.
DEGRADED_DIR = "degraded"
#: Stage 2's restorations (``--restore``): ``restored/<loss>/<family>/<level>/<rel>.wav``.
RESTORED_DIR = "restored"
#: A listening test's rated files (stage 1), ``rated/<condition folder>/``: a namespace of
#: stage 1's own, so no condition name can clash with a stage-2 family.
RATED_DIR = "rated"
#: The audio manifest of the audio folder, and every embedding folder's manifest.
MANIFEST_NAME = "manifest.csv"
#: The ratings stage 1 keeps beside the manifest (manifest paths).
RATINGS_NAME = "ratings.csv"

# -- every output folder ----------------------------------------------------------------------
#: How a folder was made (command line, parameters, versions, timings).
RUN_JSON_NAME = "run.json"
#: The lock a running stage holds in its output folder.
LOCK_NAME = ".perceptual_audio.lock"
#: Folder of the shard fragments inside a stage's output folder.
SHARDS_DIR = ".shards"
#: A finished shard's record in its fragment folder (written last, atomically).
RECORD_NAME = "record.json"

# -- the results folder (stage 3) -------------------------------------------------------------
PAIR_METRICS_NAME = "pair_metrics.csv"
SUMMARY_NAME = "summary_by_degradation.csv"
CORRELATIONS_NAME = "correlations.csv"
MONOTONICITY_NAME = "monotonicity.csv"
#: Every metric against the listeners (with listening-test ratings).
AGREEMENT_NAME = "listener_agreement.csv"
#: Loss x judge metric audit of the restorations (:mod:`perceptual_audio.restoration.audit`).
LOSS_AUDIT_NAME = "loss_audit.csv"

# -- the report folder (stage 4) --------------------------------------------------------------
TEXT_REPORT_NAME = "analysis_report.txt"
HTML_REPORT_NAME = "report.html"
