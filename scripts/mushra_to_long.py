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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path, help="CSV with JSON lists per row")
    parser.add_argument("output", type=Path, help="long-format CSV to write")
    args = parser.parse_args(argv)
    long = to_long(pd.read_csv(args.input))
    long.to_csv(args.output, index=False)
    print(f"{args.output}: {len(long)} ratings", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
