# Sourced by the sbatch scripts of this folder: the study's settings and the shard number.
# Every setting is an environment variable (submit_study.sh exports them; sbatch passes the
# submitting shell's environment on by default). Study paths are relative to PA_WORKDIR.
set -euo pipefail
PA_PROJECT=${PA_PROJECT:?"set PA_PROJECT to the checkout (submit_study.sh does)"}
PA_WORKDIR=${PA_WORKDIR:-${SLURM_SUBMIT_DIR:-$PWD}}  # where the study's folders are
PA_PYTHON=${PA_PYTHON:-$PA_PROJECT/.venv/bin/python} # made by `make venv`
PA_AUDIO=${PA_AUDIO:-test_audio}                     # stage 1's folder (audio_conversion.py)
PA_RESULTS=${PA_RESULTS:-results}                    # stage 3's folder
PA_DEVICE=${PA_DEVICE:-cuda}                         # stage 2's --device
PA_STAGE2_ARGS=${PA_STAGE2_ARGS:-}                   # e.g. "--degradations all --models cdpam"
PA_STAGE3_ARGS=${PA_STAGE3_ARGS:-}                   # e.g. "--metrics classic,reference,cdpam"
PA_STAGE4_ARGS=${PA_STAGE4_ARGS:-}
cd "$PA_WORKDIR"

# Exit status 3 means "some models had no weights, the others ran" (stage 2 and 3 say which):
# not a failure of the job, or the dependent jobs would never start.
run_stage() {
  local rc=0
  "$@" || rc=$?
  if [ "$rc" -eq 3 ]; then
    echo "$(basename "$2"): some models were unavailable (see above); the job counts as done" >&2
    rc=0
  fi
  return "$rc"
}

# K/N of this array task: K from SLURM_ARRAY_TASK_ID (the array must be 1-N), N from
# PA_SHARDS (set by submit_study.sh) or the array's size.
shard_of_task() {
  local k=${SLURM_ARRAY_TASK_ID:?"run this script as a job array (sbatch --array=1-N)"}
  local n=${PA_SHARDS:-${SLURM_ARRAY_TASK_COUNT:?"set PA_SHARDS to the number of shards"}}
  echo "$k/$n"
}
