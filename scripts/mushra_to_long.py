#!/usr/bin/env python3
"""Turn a MUSHRA table with JSON lists per row into the long format of ``--listening-test``.

Input (the layout of the Neural Codec MUSHRA rating dataset, Stahl et al., IEEE Access 2024):
one row per stimulus and condition with columns ``signal, condition, ratings,
participant_ids, file``; ``ratings`` and ``participant_ids`` are JSON lists in the same order;
``file`` is relative to the audio folder; the ``Reference`` condition's file is the reference
of every row of its ``signal``. Output: one row per rating,
``reference, degraded, condition, rating, listener`` (paths relative to the same audio
folder). Rows without a file (the MUSHRA anchor) keep an empty ``degraded``; stage 1 skips
them with one note.

    python scripts/mushra_to_long.py ../shared/data/listening_test/ratings_formated_filtered.csv \
        listening_test.csv

With ``--webmushra STIMULI_CSV`` the input is webMUSHRA's result file instead
(``results/<test id>/mushra.csv``: ``session_test_id``, the questionnaire's columns,
``trial_id, rating_stimulus, rating_score, rating_time, rating_comment``; one row per rated
stimulus) and ``STIMULI_CSV`` the ``stimuli.csv`` that ``visualize_results.py
--export-listening-test`` wrote beside the test: it maps each trial's stimulus to the study's
files. The hidden reference and the anchor keep an empty ``degraded`` (they are not files of
the study); the listener is the questionnaire's ``listener`` answer (else the session's
questionnaire answers joined).

    python scripts/mushra_to_long.py --webmushra listening_export/stimuli.csv \
        webMUSHRA/results/loss_audit/mushra.csv ratings.csv
    python calculate_metrics.py ... --ratings ratings.csv
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

#: Condition whose file is each signal's reference (the hidden reference of MUSHRA).
REFERENCE_CONDITION = "Reference"


def to_long(table: pd.DataFrame, *, reference_condition: str = REFERENCE_CONDITION) -> pd.DataFrame:
    """The long-format table (one row per rating) of a JSON-list MUSHRA table."""
    refs = table[table["condition"] == reference_condition].set_index("signal")["file"]
    rows = []
    for rec in table.itertuples(index=False):
        if rec.signal not in refs.index:
            raise SystemExit(f"signal {rec.signal!r} has no {reference_condition!r} row")
        ratings = json.loads(rec.ratings)
        listeners = json.loads(rec.participant_ids)
        if len(ratings) != len(listeners):
            raise SystemExit(
                f"{rec.signal} / {rec.condition}: {len(ratings)} ratings but "
                f"{len(listeners)} participant ids"
            )
        degraded = "" if pd.isna(rec.file) else str(rec.file)
        for listener, rating in zip(listeners, ratings, strict=True):
            rows.append(
                {
                    "reference": refs[rec.signal],
                    "degraded": degraded,
                    "condition": rec.condition,
                    "rating": rating,
                    "listener": listener,
                }
            )
    return pd.DataFrame(rows, columns=["reference", "degraded", "condition", "rating", "listener"])


#: Columns of webMUSHRA's mushra.csv after the questionnaire's (service/write.php).
WEBMUSHRA_TAIL = ("trial_id", "rating_stimulus", "rating_score", "rating_time", "rating_comment")
#: Stimuli whose ratings are kept with an empty ``degraded``.
NOT_STUDY_FILES = ("reference", "anchor35", "anchor70")


def webmushra_to_long(results: pd.DataFrame, stimuli: pd.DataFrame) -> pd.DataFrame:
    """The long-format table of a webMUSHRA ``mushra.csv`` and the export's ``stimuli.csv``."""
    missing = [c for c in ("session_test_id", *WEBMUSHRA_TAIL) if c not in results.columns]
    if missing:
        raise SystemExit(f"not a webMUSHRA mushra.csv: columns {missing} missing")
    start = list(results.columns).index("trial_id")
    answers = list(results.columns[1:start])
    where = {(str(r.trial_id), str(r.stimulus)): r for r in stimuli.itertuples(index=False)}
    rows = []
    for i, rec in enumerate(results.to_dict("records"), start=2):
        key = (str(rec["trial_id"]), str(rec["rating_stimulus"]))
        if key not in where:
            raise SystemExit(
                f"line {i}: trial {key[0]!r}, stimulus {key[1]!r} is not in the stimuli table"
            )
        st = where[key]
        if "listener" in answers:
            listener = str(rec["listener"])
        else:
            listener = "|".join(str(rec[a]) for a in answers) or str(rec["session_test_id"])
        degraded = "" if key[1] in NOT_STUDY_FILES or pd.isna(st.path) else str(st.path)
        rows.append({"reference": st.reference, "degraded": degraded,
                     "condition": st.condition, "rating": float(rec["rating_score"]),
                     "listener": listener})  # fmt: skip
    return pd.DataFrame(rows, columns=["reference", "degraded", "condition", "rating", "listener"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path, help="CSV with JSON lists per row")
    parser.add_argument("output", type=Path, help="long-format CSV to write")
    parser.add_argument(
        "--webmushra",
        type=Path,
        metavar="STIMULI_CSV",
        help="the input is webMUSHRA's mushra.csv; STIMULI_CSV: the export's stimuli.csv",
    )
    args = parser.parse_args(argv)
    if args.webmushra is not None:
        long = webmushra_to_long(
            pd.read_csv(args.input, dtype=str, keep_default_na=False),
            pd.read_csv(args.webmushra, dtype=str, keep_default_na=False),
        )
    else:
        long = to_long(pd.read_csv(args.input))
    long.to_csv(args.output, index=False)
    print(f"{args.output}: {len(long)} ratings", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
