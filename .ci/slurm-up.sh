#!/usr/bin/env bash
# Bring up a real single-node Slurm (slurmctld + slurmd + munge) on this machine, for CI and tests.
# Usage: source <(.ci/slurm-up.sh)  -> prints "export SLURM_CONF=..." ; state lives in $SLURM_LOCAL_DIR.
# Needs root (apt-get, munge, daemons). Advertises 16 CPUs and a fake GPU with 8 shards so that the
# course command `srun --gres=shard:1 --cpus-per-task=8 --mem=12GB ...` runs unchanged.
set -euo pipefail
dir=${SLURM_LOCAL_DIR:-/tmp/cvpr-slurm}
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >&2 2>&1 | grep -v "policy-rc.d" >&2 || true
fi
mkdir -p "$dir/state" "$dir/spool" "$dir/log"
chown -R slurm:slurm "$dir/state" 2>/dev/null || chown -R slurm "$dir/state"
ln -sf /dev/null "$dir/nvidia0"
cat > "$dir/slurm.conf" <<CONF
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
SlurmdParameters=config_overrides
GresTypes=gpu,shard
NodeName=ci-node NodeAddr=127.0.0.1 CPUs=16 Boards=1 SocketsPerBoard=1 CoresPerSocket=16 ThreadsPerCore=1 RealMemory=32000 Gres=gpu:1,shard:8 State=UNKNOWN
PartitionName=debug Nodes=ci-node Default=YES MaxTime=INFINITE State=UP
CONF
cat > "$dir/gres.conf" <<CONF
NodeName=ci-node Name=gpu File=$dir/nvidia0
NodeName=ci-node Name=shard Count=8
CONF
export SLURM_CONF="$dir/slurm.conf"
mkdir -p /run/munge && chown munge:munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
fi
[ -f /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null || runuser -u munge -- /usr/sbin/munged
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
running "$dir/slurmctld.pid" || /usr/sbin/slurmctld
running "$dir/slurmd.pid" || /usr/sbin/slurmd -N ci-node
for _ in $(seq 1 60); do
  state=$(sinfo -h -n ci-node -o %T 2>/dev/null || true)
  [ "$state" = "idle" ] && break
  sleep 0.5
done
[ "$state" = "idle" ] || { echo "slurm did not come up (node state: '${state:-none}'); logs in $dir/log" >&2; exit 1; }
echo "export SLURM_CONF=$SLURM_CONF"
