"""Compare two stage-3 results folders cell by cell (e.g. ``make run`` before and after a
refactor): ``python scripts/compare_results.py BEFORE/results AFTER/results``.

For pair_metrics.csv, summary_by_degradation.csv, correlations.csv and monotonicity.csv it
prints, over the rows and columns both folders have, how many cells are equal, how many differ
only by the documented last-digit wobble of ViSQOL and DNSMOS (relative 1e-12 / 1e-6 / 1e-5),
and the first differing cells per column; rows or columns only one side has are named.
Exit status 1 when any cell differs beyond the wobble.
"""

from __future__ import annotations

import argparse
import math
import sys

import pandas as pd

#: Relative tolerance per column: the metrics whose last digits wobble between runs.
WOBBLE = {
    "visqol_audio": 1e-12,
    "visqol_speech": 1e-6,
    **{f"dnsmos_{k}{s}": 1e-5 for k in ("sig", "bak", "ovrl", "p808") for s in ("", "_clean")},
}
TABLES = {
    "pair_metrics.csv": ["degraded_path"],
    "summary_by_degradation.csv": ["family", "level"],
    "correlations.csv": ["metric_x", "metric_y", "scope"],
    "monotonicity.csv": ["family", "metric", "step"],
}


def _same(u: object, v: object, column: str) -> str:
    """'equal', 'wobble' or 'differs'."""
    if str(u) == str(v) or u == v:
        return "equal"
    if isinstance(u, float) and isinstance(v, float) and math.isnan(u) and math.isnan(v):
        return "equal"
    try:
        d = abs(float(u) - float(v)) / max(abs(float(u)), 1e-12)
    except (TypeError, ValueError):
        return "differs"
    base = column.rsplit("_", 1)[0] if column.endswith(("_mean", "_ci_low", "_ci_high")) else column
    tol = WOBBLE.get(column, WOBBLE.get(base, 0.0))
    return "wobble" if tol > 0 and d <= tol else "differs"


def compare(before: str, after: str, name: str, keys: list[str]) -> int:
    """Print the comparison of one table; returns the number of differing cells."""
    x = pd.read_csv(f"{before}/{name}").set_index(keys).sort_index()
    y = pd.read_csv(f"{after}/{name}").set_index(keys).sort_index()
    common = [c for c in x.columns if c in y.columns]
    rows = x.index.intersection(y.index)
    counts = {"equal": 0, "wobble": 0, "differs": 0}
    examples: dict[str, list] = {}
    for c in common:
        for key, u, v in zip(rows, x.loc[rows, c], y.loc[rows, c], strict=True):
            verdict = _same(u, v, c)
            counts[verdict] += 1
            if verdict == "differs":
                examples.setdefault(c, []).append((key, u, v))
    total = sum(counts.values())
    print(
        f"{name}: {len(rows)} common rows, {len(common)} common columns, {total} cells: "
        f"{counts['equal']} equal, {counts['wobble']} within the wobble, "
        f"{counts['differs']} differ"
    )
    for label, extra in (
        ("rows only before", x.index.difference(y.index)),
        ("rows only after", y.index.difference(x.index)),
        ("columns only before", [c for c in x.columns if c not in y.columns]),
        ("columns only after", [c for c in y.columns if c not in x.columns]),
    ):
        if len(extra):
            print(f"  {label}: {len(extra)} ({', '.join(map(str, list(extra)[:6]))} ...)")
    for c, cells in list(examples.items())[:10]:
        print(f"  DIFF {c}: {cells[:3]}")
    return counts["differs"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", help="a results folder (calculate_metrics.py --results-dir)")
    p.add_argument("after", help="the results folder to compare with it")
    args = p.parse_args(argv)
    differing = sum(compare(args.before, args.after, n, k) for n, k in TABLES.items())
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
