#!/bin/bash
# A single-node Slurm on this machine, bound to localhost, for trying the sbatch scripts of
# this folder: `start`, `stop`, `status`. Needs Debian's slurm-wlm and munge
# (apt-get install slurm-wlm munge) and root (slurmd starts the jobs as their users).
# Everything it writes lives in $PA_SLURM_DIR (default /tmp/perceptual_audio_slurm): its
# slurm.conf, the daemons' state, logs and pid files. Two partitions, "cpu" and "gpu", share
# the one node; the node has no GPU, so submit with --gres=none and PA_DEVICE=cpu:
#   scripts/slurm/local_cluster.sh start
#   PA_DEVICE=cpu scripts/slurm/submit_study.sh 3 --gres=none
#   scripts/slurm/local_cluster.sh stop
set -euo pipefail
dir=${PA_SLURM_DIR:-/tmp/perceptual_audio_slurm}
conf=$dir/slurm.conf
host=$(hostname -s)
export SLURM_CONF=$conf

write_conf() {
  mkdir -p "$dir"/{state,spool,log,run}
  # CPUs and memory as slurmd sees them (slurmd -C), so that the node is not drained.
  local node
  node=$(slurmd -C | head -1)
  cat > "$conf" <<CONF
ClusterName=pa-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldTimeout=30
SlurmdTimeout=30
$node State=UNKNOWN NodeAddr=127.0.0.1
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host MaxTime=INFINITE State=UP
CONF
}

start() {
  command -v slurmctld >/dev/null || { echo "slurm-wlm is not installed" >&2; exit 1; }
  write_conf
  if ! pgrep -x munged >/dev/null; then
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    [ -s /etc/munge/munge.key ] || mungekey --create
    chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    if id munge >/dev/null 2>&1; then
      su -s /bin/sh munge -c "munged" || munged --force
    else
      munged --force
    fi
  fi
  slurmctld -f "$conf"
  slurmd -f "$conf"
  for _ in $(seq 60); do
    if sinfo -h -o "%t" 2>/dev/null | grep -qE "^(idle|mix|alloc)"; then
      sinfo
      echo "local Slurm is up (SLURM_CONF=$conf); stop it with: $0 stop"
      return 0
    fi
    sleep 1
  done
  echo "local Slurm did not come up; logs in $dir/log" >&2
  tail -20 "$dir"/log/*.log >&2 || true
  exit 1
}

stop() {
  local pids=()
  for d in slurmd slurmctld; do
    local pidfile=$dir/run/$d.pid
    if [ -s "$pidfile" ]; then pids+=("$(cat "$pidfile")"); fi
  done
  [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 30); do  # the daemons take a moment to finish their state files
    kill -0 "${pids[@]}" 2>/dev/null || break
    sleep 0.5
  done
  echo "local Slurm stopped (munged left running: other programs may use it)"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) write_conf >/dev/null; sinfo; squeue ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
