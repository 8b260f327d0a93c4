"""Stage 3 in shards: what every shard of a run shares, the rows a run may reuse (or a merge
takes from the fragments), and a shard's fragment and record."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from perceptual_audio.results import (
    PAIR_METRICS_NAME,
    read_previous_pairs,
    write_pair_table,
)
from perceptual_audio.stages import cli, shards
from perceptual_audio.stages.score_plan import METRICS_VERSION, STAGE, ColumnPlan, WorkPlan
from perceptual_audio.stages.score_settings import ScoreSettings

logger = logging.getLogger(__name__)


SHARD_COMMAND = "calculate_metrics.py ... --shard"


def shard_identity(
    cols: ColumnPlan, available: Sequence[str], audio_dir: Path, sources: Mapping[str, Any]
) -> tuple[str, str, dict[str, Any]]:
    """What every shard of a run must share: the digest of its parameters, the digest of its
    inputs (the audio and model manifests), and the parameters in words."""
    params = shards.digest(
        {
            "columns": cols.table_columns(available),
            "settings": cols.settings.as_dict(),
            "groups": cols.group_params,
            "version": METRICS_VERSION,
        }
    )
    inputs = shards.files_digest(
        [audio_dir / "manifest.csv", *(sources[m].folder / "manifest.csv" for m in available)]
    )
    return params, inputs, {"metrics": list(cols.value_columns), **cols.settings.as_dict()}


def earlier_results(
    settings: ScoreSettings,
    shard: shards.Shard | None,
    merging: bool,
    identity: tuple[str, str, dict[str, Any]],
) -> dict[str, dict[str, str]] | int:
    """The rows whose cells this run may reuse: the last ``pair_metrics.csv`` (and a shard's
    own earlier fragment), or in a merge the shards' fragments alone (an exit status when
    they cannot be merged)."""
    results_dir: Path = settings.results_dir
    if merging:
        try:
            return fragment_pairs(results_dir, *identity)
        except shards.ShardMergeError as e:
            logger.error("%s", e)
            return cli.EXIT_FAILED
    if shard is not None:
        shards.clear_record(results_dir, shard)  # unfinished until its record is written
    if settings.force:
        return {}
    previous = read_previous_pairs(results_dir / PAIR_METRICS_NAME)
    if shard is not None:
        previous.update(read_previous_pairs(shard.fragment_dir(results_dir) / PAIR_METRICS_NAME))
    return previous


def fragment_pairs(
    results_dir: Path, params: str, inputs: str, described: dict[str, Any]
) -> dict[str, dict[str, str]]:
    """Every finished shard's rows by degraded path (raises ShardMergeError)."""
    rows: dict[str, dict[str, str]] = {}
    for frag in shards.collect(
        results_dir,
        stage=STAGE,
        params=params,
        inputs=inputs,
        what=SHARD_COMMAND,
        described=described,
    ):
        rows.update(read_previous_pairs(frag.path(PAIR_METRICS_NAME)))
    return rows


def finish_shard(
    results_dir: Path,
    shard: shards.Shard,
    table: list[dict[str, Any]],
    columns: list[str],
    value_cols: list[str],
    run: tuple[str, str, dict[str, Any]],
    input_failures: Mapping[str, int],
    plan: WorkPlan,
    t_start: float,
) -> int:
    """Write shard ``shard``'s rows to its fragment, then its record; no statistics.
    ``run``: this run's parameter digest, input digest and parameters in words."""
    params, inputs, described = run
    fragment = shard.fragment_dir(results_dir)
    write_pair_table(fragment / PAIR_METRICS_NAME, table, columns, value_cols)
    shards.write_record(
        results_dir,
        shard,
        stage=STAGE,
        params=params,
        inputs=inputs,
        described=described,
        extra={
            "pairs": len(table),
            "pairs_scored": plan.computed,
            "pairs_reused": plan.reused,
            "input_failures": dict(input_failures),
        },
    )
    cli.stage_summary(
        "calculate_metrics",
        t_start,
        f"shard {shard}: {len(table)} pairs -> {fragment}; run calculate_metrics.py without "
        "--shard to merge the shards and compute the statistics",
    )
    return cli.EXIT_FAILED if sum(input_failures.values()) else cli.EXIT_OK
