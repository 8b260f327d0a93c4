#!/bin/bash
# Submit a whole study as four dependent Slurm jobs:
#   stage 2 array (N shards, GPU) -> stage 2 merge -> stage 3 array (N shards, CPU)
#   -> stage 3 merge + stage 4
# Usage: scripts/slurm/submit_study.sh N [extra sbatch options for every job]
# Run it from the study's folder (PA_WORKDIR, default: the current folder) after stage 1
# (audio_conversion.py) wrote $PA_AUDIO there; settings are the PA_* variables of common.sh:
#   PA_STAGE2_ARGS="--degradations all" PA_STAGE3_ARGS="--metrics all" \
#     scripts/slurm/submit_study.sh 32 --account=myproject
# A job fails when its stage does; the jobs after it then never start (afterok), and
# `squeue`/`sacct` show which. Rerun a failed shard with sbatch --array=K ..., then the rest.
set -euo pipefail
n=${1:?"usage: $0 N [sbatch options]   (N = number of shards)"}
shift
here=$(cd "$(dirname "$0")" && pwd)
export PA_PROJECT=${PA_PROJECT:-$(cd "$here/../.." && pwd)}
export PA_WORKDIR=${PA_WORKDIR:-$PWD}
export PA_SHARDS=$n
cd "$PA_WORKDIR"
s2=$(sbatch --parsable --array=1-"$n" "$@" "$here/stage2_shard.sbatch")
m2=$(sbatch --parsable --dependency=afterok:"$s2" "$@" "$here/stage2_merge.sbatch")
s3=$(sbatch --parsable --array=1-"$n" --dependency=afterok:"$m2" "$@" "$here/stage3_shard.sbatch")
m3=$(sbatch --parsable --dependency=afterok:"$s3" "$@" "$here/stage3_merge_report.sbatch")
echo "submitted: stage 2 shards $s2, stage 2 merge $m2, stage 3 shards $s3, merge + report $m3"
echo "watch: squeue -j $s2,$m2,$s3,$m3   logs: $PA_WORKDIR/slurm-pa-*.out"
