"""Listening tests: import (stage 1), ratings (stage 3), agreement with listeners, ceiling.

A listening test is a CSV table in one of three layouts (:func:`read_rating_table`)::

    reference,degraded,condition,rating,listener          one row per listener and file
    stim_01/ref.wav,stim_01/lyra_6.wav,Lyra 6,62,3
    reference,degraded,condition,rating                   ratings, listeners not named
    reference,degraded,condition,rating_mean,rating_sd,rating_n    one row of means per file
    s1/ref.wav,s1/opus.wav,opus,3.4,0.9,24

``reference`` and ``degraded`` are paths relative to the input folder (stage 1) or, in stage 3,
either manifest paths or those input paths. A row whose ``degraded`` equals its ``reference``
rates the hidden reference; a row with an empty ``degraded`` (a MUSHRA anchor whose audio is
not shipped) is skipped with one note.

Stage 1 (:func:`perceptual_audio.stages.listening_import.run_import`) converts exactly the files of the table: references to
``clean/<mirrored path>.wav``, rated files to ``rated/<condition folder>/<mirrored path>.wav``
(:data:`RATED_DIR`, stage 1's own folder: no condition name can clash with a stage-2 family)
with ``degraded`` manifest rows (family :data:`LISTENING_FAMILY`, level = the condition as
given, source = the clean reference), and keeps the ratings beside the manifest
(``ratings.csv``, manifest paths, written by :func:`write_rating_table` in the format
:func:`read_rating_table` reads). Stage 2 never deletes these rows (:func:`is_imported`).

Stage 3 joins the ratings to ``pair_metrics.csv`` (``rating_mean``, ``rating_sd``,
``rating_n``) and writes ``listener_agreement.csv`` (:func:`agreement_table`): per metric and
level (``file``: every rated file; ``condition``: per-condition means over stimuli), Pearson,
Spearman and Kendall with 95% bootstrap CIs resampling stimuli (references), Pearson and RMSE
after the third-order monotonic mapping of ITU-T P.1401 (:func:`monotonic_cubic_fit`), and a
``ceiling`` row per level: the split-half agreement of the listeners with themselves,
Spearman-Brown corrected (:func:`listener_ceiling`; it needs per-listener ratings). A ``note``
says why a value or CI is missing (one stimulus: no bootstrap; means only: no ceiling).

The package: :mod:`.table` (the ratings table),
:mod:`.study` (stage 3's join), :mod:`.agreement` (statistics, ceiling), :mod:`.facts` (for the report).
"""

from __future__ import annotations

from pathlib import Path as _Path

from perceptual_audio.listening.agreement import (
    CubicMapping,
    agreement_table,
    listener_ceiling,
    mapped_agreement,
    monotonic_cubic_fit,
    rowwise_correlations,
    spearman_brown,
)
from perceptual_audio.listening.facts import (
    agreement_findings,
    metric_rate_hz,
    oriented,
    oriented_ci,
    ranked,
)
from perceptual_audio.listening.study import (
    StudyRatings,
    add_ratings_arguments,
    load_study_ratings,
    pair_rating_cells,
)
from perceptual_audio.listening.table import (
    AGREEMENT_COLUMNS,
    AGREEMENT_NAME,
    CEILING,
    CEILING_SPLITS,
    DEFAULT_RATING_SCALE,
    LEVEL_CONDITION,
    LEVEL_FILE,
    LEVELS,
    LISTENER_COLUMN,
    LISTENING_FAMILY,
    MAPPING_GRID_POINTS,
    MAPPING_PARAMETERS,
    MEAN_COLUMN,
    METHODS,
    MIN_RATED_FILES,
    PAIR_RATING_COLUMNS,
    RATED_DIR,
    RATING_COLUMN,
    RATINGS_COLUMNS,
    RATINGS_NAME,
    REQUIRED_COLUMNS,
    SD_COLUMN,
    VOTES_COLUMN,
    ListeningTestError,
    Rating,
    condition_folder,
    is_imported,
    parse_rating_scale,
    read_rating_table,
    write_rating_table,
)

#: The modules of this package (stage 4's inputs digest hashes their code).
MODULE_FILES = tuple(sorted(_Path(__file__).parent.glob("*.py")))

__all__ = [
    "AGREEMENT_COLUMNS",
    "AGREEMENT_NAME",
    "CEILING",
    "CEILING_SPLITS",
    "CubicMapping",
    "DEFAULT_RATING_SCALE",
    "LEVELS",
    "LEVEL_CONDITION",
    "LEVEL_FILE",
    "LISTENER_COLUMN",
    "LISTENING_FAMILY",
    "ListeningTestError",
    "MAPPING_GRID_POINTS",
    "MAPPING_PARAMETERS",
    "MEAN_COLUMN",
    "METHODS",
    "MIN_RATED_FILES",
    "PAIR_RATING_COLUMNS",
    "RATED_DIR",
    "RATING_COLUMN",
    "RATINGS_COLUMNS",
    "RATINGS_NAME",
    "REQUIRED_COLUMNS",
    "Rating",
    "SD_COLUMN",
    "StudyRatings",
    "VOTES_COLUMN",
    "add_ratings_arguments",
    "agreement_findings",
    "agreement_table",
    "condition_folder",
    "is_imported",
    "listener_ceiling",
    "load_study_ratings",
    "mapped_agreement",
    "metric_rate_hz",
    "monotonic_cubic_fit",
    "oriented",
    "oriented_ci",
    "pair_rating_cells",
    "parse_rating_scale",
    "ranked",
    "read_rating_table",
    "rowwise_correlations",
    "spearman_brown",
    "write_rating_table",
]
