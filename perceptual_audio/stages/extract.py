"""Stage 2 entry point: degradations first, then restorations, then embeddings.

``extract_embeddings.py`` = :mod:`perceptual_audio.stages.degrade` (writes
``test_audio/degraded/...``), :mod:`perceptual_audio.stages.restore` (``--restore``: writes
``test_audio/restored/...``), then :mod:`perceptual_audio.stages.embed` (writes
``<model>_embeddings/...``). ``--models none`` runs no embeddings. With ``--shard K/N`` each
half does its shard's part; a run without it merges the three in that order.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from perceptual_audio.errors import PerceptualAudioError
from perceptual_audio.layout import RESTORED_DIR
from perceptual_audio.stages import cli, embed_items, restore_shards, shards
from perceptual_audio.stages import degrade as degrade_stage
from perceptual_audio.stages import embed as embed_stage
from perceptual_audio.stages import restore as restore_stage

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="extract_embeddings.py",
        formatter_class=cli.HelpFormatter,
        description="Stage 2: degrade every clean file of stage 1 in controlled ways, then "
        "extract OpenL3, VGGish and CDPAM embeddings of clean and degraded audio.",
        epilog=degrade_stage.describe_families() + "\n\nExit status: 0 ok; 1 some files "
        "failed, or another run holds the folder; 2 bad command line (also: an --input-dir "
        "that is not a stage-1 folder, an output folder of another stage or model); 3 some "
        "models unavailable (the others ran); 130 interrupted.",
    )
    degrade_stage.add_degradation_arguments(parser)
    embed_stage.add_embedding_arguments(parser)
    restore_stage.add_restore_arguments(parser)
    return parser


def combine_exit_codes(*codes: int) -> int:
    """Failures (1, 2) outrank 'models unavailable' (3), which outranks success (0)."""
    for code in (cli.EXIT_USAGE, cli.EXIT_FAILED, cli.EXIT_MODELS_UNAVAILABLE):
        if code in codes:
            return code
    return cli.EXIT_OK


def check_embedding_options(args: argparse.Namespace) -> str | None:
    """Problems with the embedding options, found before any work is done (None: fine)."""

    try:
        models = embed_stage.parse_models(args.models)
    except PerceptualAudioError as e:
        return str(e)
    folders = embed_stage.check_model_folders(args, models)
    if folders:
        return folders
    device = str(getattr(args, "device", "cpu") or "cpu")
    if models and device.startswith("cuda"):
        import torch  # deferred: heavy; only the embeddings and restorations need it

        if not torch.cuda.is_available():
            return (
                f"--device {device}: CUDA is not available to this torch build "
                f"({torch.__version__}); use --device cpu"
            )
    return None


def _can_merge(folders: list[tuple[Path, str]]) -> bool:
    """Whether every shard of every folder holding fragments is finished (else the problems
    are logged); a merge with no fragments anywhere is an error."""
    try:
        if not any(shards.has_fragments(d) for d, _ in folders):
            raise shards.ShardMergeError(
                f"--merge-shards: no shard fragments in {folders[0][0]} or the model "
                "folders; run the shards first (--shard K/N)"
            )
        for folder, what in folders:
            if shards.has_fragments(folder):
                shards.check_finished(folder, what=what)
    except shards.ShardMergeError as e:
        logger.error("%s", e)
        return False
    return True


@cli.stage_entry("extract_embeddings.py")
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cli.setup_logging(quiet=args.quiet, verbose=args.verbose)
    levels = restore_stage.study_levels(args)
    problem = check_embedding_options(args) or restore_stage.check_options(args, levels)
    if problem:  # before the degradation half changes any folder
        parser.error(problem)
    t0 = time.perf_counter()
    degrade_settings = degrade_stage.DegradeSettings.from_args(args)
    restore_settings = restore_stage.settings_from_args(args, levels)  # checked above
    refused = degrade_stage.claim_folders(degrade_settings)  # a busy or wrong folder: no half runs
    if refused is not None:
        return refused
    degraded_root = args.input_dir / degrade_stage.DEGRADED_DIR
    restored_root = args.input_dir / RESTORED_DIR
    model_dirs = {
        m: embed_stage.model_dir_of(m, args) for m in embed_stage.parse_models(args.models)
    }
    folders = [(degraded_root, degrade_stage.SHARD_COMMAND)]
    folders += [(restored_root, restore_shards.shard_command(restore_settings))]
    folders += [(d, embed_items.shard_command(m)) for m, d in model_dirs.items()]
    merging = args.shard is None and (
        args.merge_shards or any(shards.has_fragments(d) for d, _ in folders)
    )
    if merging and not _can_merge(folders):  # every shard of every folder is finished
        cli.stage_summary("extract_embeddings", t0, "exit status 1: nothing merged")
        return cli.EXIT_FAILED
    rc_degrade = degrade_stage.run_degradations(degrade_settings, keep_fragments=True)
    halves_merged = not merging or degrade_stage.merged(degrade_settings.input_dir)
    if halves_merged:
        rc_degrade = combine_exit_codes(
            rc_degrade,
            restore_stage.run_restorations(
                restore_settings, args.input_dir, shard=args.shard, merging=merging
            ),
        )
        halves_merged = not merging or restore_shards.merged(args.input_dir)
    if not halves_merged:
        rc_embed = cli.EXIT_FAILED  # the manifest does not list the shards' files
    else:
        rc_embed = embed_stage.run_embeddings(args)
        if merging and not any(shards.has_fragments(d) for d in model_dirs.values()):
            shards.remove_fragments(degraded_root)  # every half merged
            shards.remove_fragments(restored_root)
    rc = combine_exit_codes(rc_degrade, rc_embed)
    cli.stage_summary(
        "extract_embeddings", t0, f"exit status {rc} (degradations and embeddings: see above)"
    )
    return rc


if __name__ == "__main__":
    sys.exit(main())
