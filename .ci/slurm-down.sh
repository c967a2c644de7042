#!/usr/bin/env bash
# Stop the daemons started by slurm-up.sh, by the PIDs in their pid files.
dir=${SLURM_LOCAL_DIR:-/tmp/cvpr-slurm}
for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" /run/munge/munged.pid; do
  if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  fi
done
exit 0
